package anthropic

import (
	"encoding/json"
	"testing"
)

// FuzzTranslate feeds arbitrary bodies to the request and response
// translators: they must never panic, and whatever they return without an
// error must be valid JSON. (The other direction, for /v1/messages
// clients, is fuzzed in internal/dialect/anthropic.)
func FuzzTranslate(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","messages":[{"role":"system","content":[{"type":"text","text":"s","cache_control":{"type":"ephemeral"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},{"role":"tool","tool_call_id":"a","content":[{"type":"text","text":"r"}]}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","parallel_tool_calls":false,"stop":["x"],"temperature":0.5}`,
		`{"model":"m","max_tokens":5,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{"type":"url","url":"u"}}]},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"a":[1]}}]}],"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"tool","name":"f"},"stream":true}`,
		`{"id":"msg_1","type":"message","model":"m","content":[{"type":"text","text":"a"},{"type":"tool_use","id":"t","name":"f","input":{"b":"\u00e9"}}],"stop_reason":"tool_use","usage":{"input_tokens":1,"cache_read_input_tokens":2}}`,
		`{"id":"c","choices":[{"message":{"content":"x","refusal":"r","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"length"}],"usage":{"prompt_tokens":3}}`,
		`{"id":"c","choices":[{"index":0,"delta":{"content":"x","tool_calls":[{"index":0,"id":"c","function":{"name":"f","arguments":"{"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":2}}`,
		`[DONE]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(name string, out []byte, err error) {
			if err == nil && !json.Valid(out) {
				t.Fatalf("%s: invalid JSON %s", name, out)
			}
		}
		out, err := RequestFromOpenAI(body, RequestOptions{Model: "m"})
		check("RequestFromOpenAI", out, err)
		out, err = RequestFromOpenAI(body, RequestOptions{DropUnsupported: true})
		check("RequestFromOpenAI drop", out, err)
		out, err = ResponseToOpenAI(body, 1)
		check("ResponseToOpenAI", out, err)
	})
}
