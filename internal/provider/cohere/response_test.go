package cohere

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

func TestChatResponse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{
			"text, usage from tokens",
			`{"id":"c14c80c3-18eb-4519-9460-6c92edd8cfb4","finish_reason":"COMPLETE",
			  "message":{"role":"assistant","content":[{"type":"text","text":"Hello "},{"type":"text","text":"\"world\""}],"citations":[]},
			  "usage":{"billed_units":{"input_tokens":5,"output_tokens":3},"tokens":{"input_tokens":71,"output_tokens":4},"cached_tokens":64}}`,
			`{"id":"c14c80c3-18eb-4519-9460-6c92edd8cfb4","object":"chat.completion","created":1700000000,"model":"command-r",
			  "choices":[{"index":0,"message":{"role":"assistant","content":"Hello \"world\"","refusal":null},"logprobs":null,"finish_reason":"stop"}],
			  "usage":{"prompt_tokens":71,"completion_tokens":4,"total_tokens":75,"prompt_tokens_details":{"cached_tokens":64}}}`,
		},
		{
			"usage from billed_units, max tokens",
			`{"id":"x","finish_reason":"MAX_TOKENS","message":{"role":"assistant","content":[{"type":"text","text":"Hel"}]},
			  "usage":{"billed_units":{"input_tokens":5,"output_tokens":3}}}`,
			`{"id":"x","object":"chat.completion","created":1700000000,"model":"command-r",
			  "choices":[{"index":0,"message":{"role":"assistant","content":"Hel","refusal":null},"logprobs":null,"finish_reason":"length"}],
			  "usage":{"prompt_tokens":5,"completion_tokens":3,"total_tokens":8}}`,
		},
		{
			"tool calls, tool_plan left out, no usage, no id",
			`{"finish_reason":"TOOL_CALL","message":{"role":"assistant","tool_plan":"I will check the weather.",
			  "tool_calls":[{"id":"get_weather_1byjy32y4hvq","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Toronto\"}"}},
			  {"type":"function","function":{"name":"noop"}}]}}`,
			`{"id":"chatcmpl-fallback","object":"chat.completion","created":1700000000,"model":"command-r",
			  "choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[
			    {"id":"get_weather_1byjy32y4hvq","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Toronto\"}"}},
			    {"id":"call_1","type":"function","function":{"name":"noop","arguments":"{}"}}],"refusal":null},
			  "logprobs":null,"finish_reason":"tool_calls"}]}`,
		},
		{
			"empty content, thinking left out",
			`{"id":"y","finish_reason":"STOP_SEQUENCE","message":{"role":"assistant","content":[{"type":"thinking","thinking":"hmm"}]}}`,
			`{"id":"y","object":"chat.completion","created":1700000000,"model":"command-r",
			  "choices":[{"index":0,"message":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":"stop"}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, perr := chatResponse([]byte(tt.in), "command-r", 1700000000, "chatcmpl-fallback")
			if perr != nil {
				t.Fatal(perr)
			}
			jsonEqual(t, out, tt.want)
			if u := openai.UsageOf(out); u.Known != (json.Valid(out) && strings.Contains(tt.want, `"usage"`)) {
				t.Errorf("usage %+v", u)
			}
		})
	}
}

func TestFinishReasons(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"COMPLETE": "stop", "complete": "stop", "STOP_SEQUENCE": "stop", "MAX_TOKENS": "length",
		"TOOL_CALL": "tool_calls", "tool_call": "tool_calls", "CONTENT_BLOCKED": "content_filter",
		"ERROR_LIMIT": "length", "": "stop", "SOMETHING_NEW": "stop",
	} {
		if got, perr := finishReason(in, ""); got != want || perr != nil {
			t.Errorf("%q → %q, %v; want %q", in, got, perr, want)
		}
	}
	for in, status := range map[string]int{"ERROR": 502, "error": 502, "TIMEOUT": 504} {
		_, perr := finishReason(in, "")
		if perr == nil || perr.Status != status || perr.Kind != provider.KindStatus || perr.Message == "" {
			t.Errorf("%q → %+v", in, perr)
		}
		perr.Provider = "co"
		if ce := perr.ClientError(); ce.Status != status {
			t.Errorf("%q client error %+v", in, ce)
		}
	}
	_, perr := finishReason("ERROR", "internal failure")
	if perr.Message != "Cohere failed to generate the answer: internal failure" {
		t.Errorf("message %q", perr.Message)
	}
	_, perr = chatResponse([]byte(`{"id":"x","finish_reason":"ERROR","message":{"role":"assistant","content":[]}}`), "m", 1, "f")
	if perr == nil || perr.Status != 502 {
		t.Errorf("ERROR answer: %+v", perr)
	}
}

func TestChatResponseMalformed(t *testing.T) {
	t.Parallel()
	for _, in := range []string{``, `<html>`, `{"id":"x"`, `[]`, `{"id":"x","finish_reason":"COMPLETE"}`, `{"message":"oops"}`} {
		if _, perr := chatResponse([]byte(in), "m", 1, "f"); perr == nil || perr.Kind != provider.KindProtocol {
			t.Errorf("%q: %+v", in, perr)
		}
	}
}

func TestEmbedResponse(t *testing.T) {
	t.Parallel()
	in := `{"id":"da6e531f","embeddings":{"float":[[0.016296387,-0.008354187,0.5],[1,2,-3.25]]},
	  "texts":["hello","goodbye"],"meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens":2}},
	  "response_type":"embeddings_by_type"}`
	out, perr := embedResponse([]byte(in), "embed-v4.0", false)
	if perr != nil {
		t.Fatal(perr)
	}
	jsonEqual(t, out, `{"object":"list","data":[
	  {"object":"embedding","index":0,"embedding":[0.016296387,-0.008354187,0.5]},
	  {"object":"embedding","index":1,"embedding":[1,2,-3.25]}],
	  "model":"embed-v4.0","usage":{"prompt_tokens":2,"total_tokens":2}}`)
	if u := openai.UsageOf(out); !u.Known || u.InputTokens != 2 {
		t.Errorf("usage %+v", u)
	}

	out, perr = embedResponse([]byte(in), "embed-v4.0", true)
	if perr != nil {
		t.Fatal(perr)
	}
	var got struct {
		Data []struct{ Embedding string }
	}
	if err := json.Unmarshal(out, &got); err != nil || len(got.Data) != 2 {
		t.Fatalf("%s: %v", out, err)
	}
	for i, want := range [][]float32{{0.016296387, -0.008354187, 0.5}, {1, 2, -3.25}} {
		raw, err := base64.StdEncoding.DecodeString(got.Data[i].Embedding)
		if err != nil || len(raw) != 4*len(want) {
			t.Fatalf("vector %d: %q %v", i, got.Data[i].Embedding, err)
		}
		for j, w := range want {
			if f := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:])); f != w {
				t.Errorf("vector %d[%d] = %v, want %v", i, j, f, w)
			}
		}
	}

	for _, bad := range []string{`nope`, `{"embeddings":{"int8":[[1]]}}`, `{"embeddings":{"float":[1,2]}}`} {
		if _, perr := embedResponse([]byte(bad), "e", false); perr == nil || perr.Kind != provider.KindProtocol {
			t.Errorf("%s: %+v", bad, perr)
		}
	}
	if _, perr := embedResponse([]byte(`{"embeddings":{"float":[["x"]]}}`), "e", true); perr == nil {
		t.Errorf("non-number accepted")
	}
}
