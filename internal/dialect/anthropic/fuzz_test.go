package anthropic

import (
	"encoding/json"
	"testing"
)

// FuzzInbound feeds arbitrary bodies to the /v1/messages translations:
// they must never panic, and whatever they return without an error must be
// valid JSON.
func FuzzInbound(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","max_tokens":5,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image","source":{"type":"url","url":"u"}}]},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]},{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"a":[1]}}]}],"tools":[{"name":"f","input_schema":{}}],"tool_choice":{"type":"tool","name":"f"},"stream":true}`,
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
		out, err := RequestToOpenAI(body)
		check("RequestToOpenAI", out, err)
		out, err = ResponseFromOpenAI(body)
		check("ResponseFromOpenAI", out, err)

		s := NewOpenAIToAnthropicStream("")
		emit := func(ev, data []byte) {
			if !json.Valid(data) {
				t.Fatalf("%s: invalid JSON %s", ev, data)
			}
		}
		_ = s.Translate(body, emit)
		_ = s.Translate(body, emit)
		s.Finish(emit)
	})
}
