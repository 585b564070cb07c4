package anthropic

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	provanthropic "github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/anthropic"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/jsontest"
)

func TestRequestToOpenAI(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"minimal", `{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello, Claude"}]}`,
			`{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hello, Claude"}],"max_tokens":1024}`},
		{"system blocks, sampling, stop, stream, metadata", `{"model":"m","max_tokens":10,
			"system":[{"type":"text","text":"You are terse.","cache_control":{"type":"ephemeral"}},{"type":"text","text":"Be kind."}],
			"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],
			"temperature":0.5,"top_p":0.9,"top_k":5,"stop_sequences":["END"],"stream":true,"metadata":{"user_id":"u1"},"thinking":{"type":"enabled","budget_tokens":1024}}`,
			`{"model":"m","messages":[{"role":"system","content":"You are terse.\n\nBe kind."},{"role":"user","content":"hi"}],
			"max_tokens":10,"temperature":0.5,"top_p":0.9,"stop":["END"],"stream":true,"stream_options":{"include_usage":true},"user":"u1"}`},
		{"images and documents", `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":[
			{"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/4AAQ"}},
			{"type":"image","source":{"type":"url","url":"https://example.com/a.png"}},
			{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="},"title":"r.pdf"},
			{"type":"document","source":{"type":"text","media_type":"text/plain","data":"plain doc"}},
			{"type":"text","text":"Describe"}]}]}`,
			`{"model":"m","messages":[{"role":"user","content":[
			{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQ"}},
			{"type":"image_url","image_url":{"url":"https://example.com/a.png"}},
			{"type":"file","file":{"filename":"r.pdf","file_data":"data:application/pdf;base64,JVBERi0="}},
			{"type":"text","text":"plain doc"},
			{"type":"text","text":"Describe"}]}],"max_tokens":10}`},
		{"tool round trip", `{"model":"m","max_tokens":10,
			"tools":[{"name":"get_weather","description":"Get the weather","input_schema":{"type":"object","properties":{"location":{"type":"string"}}}}],
			"tool_choice":{"type":"any","disable_parallel_tool_use":true},
			"messages":[
				{"role":"user","content":"Weather?"},
				{"role":"assistant","content":[{"type":"thinking","thinking":"x","signature":"s"},{"type":"text","text":"Checking."},
					{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"location": "Paris"}}]},
				{"role":"user","content":[
					{"type":"tool_result","tool_use_id":"toolu_01","content":[{"type":"text","text":"15C"},{"type":"image","source":{"type":"url","url":"https://x/chart.png"}}]},
					{"type":"tool_result","tool_use_id":"toolu_02","content":"done","is_error":true},
					{"type":"text","text":"Thanks"}]}]}`,
			`{"model":"m","messages":[
				{"role":"user","content":"Weather?"},
				{"role":"assistant","content":"Checking.","tool_calls":[{"id":"toolu_01","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}}]},
				{"role":"tool","tool_call_id":"toolu_01","content":"15C"},
				{"role":"tool","tool_call_id":"toolu_02","content":"done"},
				{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/chart.png"}},{"type":"text","text":"Thanks"}]}],
			"max_tokens":10,
			"tools":[{"type":"function","function":{"name":"get_weather","description":"Get the weather","parameters":{"type":"object","properties":{"location":{"type":"string"}}}}}],
			"tool_choice":"required","parallel_tool_calls":false}`},
		{"tool_choice tool, only tool_use", `{"model":"m","max_tokens":10,"tools":[{"name":"f"}],"tool_choice":{"type":"tool","name":"f"},
			"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{}}]}]}`,
			`{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}]}],"max_tokens":10,
			"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{}}}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := RequestToOpenAI([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !jsontest.Equal(t, string(got), tt.want) {
				t.Errorf("got  %s\nwant %s", got, jsontest.Compact(tt.want))
			}
		})
	}
	for _, bad := range []string{
		`{"max_tokens":1,"messages":[]}`,
		`{"model":"m","messages":[]}`,
		`{"model":"m","max_tokens":1}`,
		`{"model":"m","max_tokens":1,"messages":[{"role":"system","content":"x"}]}`,
		`{"model":"m","max_tokens":1,"messages":[],"tools":[{"type":"web_search_20250305","name":"web_search"}]}`,
		`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}`,
		`nope`,
	} {
		_, err := RequestToOpenAI([]byte(bad))
		var oe *openai.Error
		if !errors.As(err, &oe) || oe.Status != 400 || oe.Message == "" {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

// TestRoundTrip checks that an Anthropic request survives the trip through
// OpenAI's shape and back (minus what OpenAI cannot hold).
func TestRoundTrip(t *testing.T) {
	in := `{"model":"claude-sonnet-4-5","max_tokens":300,"system":"Be brief.","temperature":0.2,"stop_sequences":["X"],
		"tools":[{"name":"f","description":"d","input_schema":{"type":"object","properties":{"a":{"type":"integer"}}}}],
		"tool_choice":{"type":"tool","name":"f"},
		"messages":[{"role":"user","content":"hi"},
			{"role":"assistant","content":[{"type":"text","text":"calling"},{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":1}}]},
			{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"2"},{"type":"text","text":"ok?"}]}]}`
	oa, err := RequestToOpenAI([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	back, err := provanthropic.RequestFromOpenAI(oa, provanthropic.RequestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"claude-sonnet-4-5","max_tokens":300,"system":"Be brief.",
		"messages":[{"role":"user","content":"hi"},
			{"role":"assistant","content":[{"type":"text","text":"calling"},{"type":"tool_use","id":"toolu_1","name":"f","input":{"a":1}}]},
			{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"2"},{"type":"text","text":"ok?"}]}],
		"temperature":0.2,"stop_sequences":["X"],
		"tools":[{"name":"f","description":"d","input_schema":{"type":"object","properties":{"a":{"type":"integer"}}}}],
		"tool_choice":{"type":"tool","name":"f"}}`
	if !jsontest.Equal(t, string(back), want) {
		t.Errorf("got  %s\nwant %s", back, jsontest.Compact(want))
	}
}

func TestResponseFromOpenAI(t *testing.T) {
	in := `{"id":"chatcmpl-msg_01AB","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,
		"message":{"role":"assistant","content":"Let me look.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\": \"Paris\"}"}}]},
		"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":120,"completion_tokens":9,"total_tokens":129,"prompt_tokens_details":{"cached_tokens":100}}}`
	want := `{"id":"msg_01AB","type":"message","role":"assistant","model":"gpt-4o",
		"content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"call_1","name":"get_weather","input":{"location":"Paris"}}],
		"stop_reason":"tool_use","stop_sequence":null,
		"usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":9}}`
	got, err := ResponseFromOpenAI([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if !jsontest.Equal(t, string(got), want) {
		t.Errorf("got  %s\nwant %s", got, jsontest.Compact(want))
	}
	// Round trip with ResponseToOpenAI keeps content, calls and usage.
	oa, err := provanthropic.ResponseToOpenAI(got, 1)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Choices []struct {
			Message struct {
				Content   string
				ToolCalls []struct{ Function struct{ Arguments string } } `json:"tool_calls"`
			}
			FinishReason string `json:"finish_reason"`
		}
		Usage struct {
			PromptTokens  int `json:"prompt_tokens"`
			PromptDetails struct {
				CachedTokens int `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		}
	}
	if err := json.Unmarshal(oa, &r); err != nil || r.Choices[0].Message.Content != "Let me look." ||
		r.Choices[0].Message.ToolCalls[0].Function.Arguments != `{"location":"Paris"}` || r.Choices[0].FinishReason != "tool_calls" ||
		r.Usage.PromptTokens != 120 || r.Usage.PromptDetails.CachedTokens != 100 {
		t.Errorf("round trip: %s (%v)", oa, err)
	}

	for finish, stop := range map[string]string{"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal", "function_call": "tool_use"} {
		got, err := ResponseFromOpenAI([]byte(`{"id":"x","choices":[{"message":{"content":"a"},"finish_reason":"` + finish + `"}]}`))
		if err != nil || !strings.Contains(string(got), `"stop_reason":"`+stop+`"`) || !strings.Contains(string(got), `"id":"msg_x"`) {
			t.Errorf("%s: %s %v", finish, got, err)
		}
	}
	got, err = ResponseFromOpenAI([]byte(`{"id":"x","choices":[{"message":{"content":null,"refusal":"I can't."},"finish_reason":"stop"}]}`))
	if err != nil || !strings.Contains(string(got), `"content":[{"type":"text","text":"I can't."}],"stop_reason":"refusal"`) {
		t.Errorf("refusal: %s %v", got, err)
	}
	for _, bad := range []string{`nope`, `{"error":{"message":"x"}}`,
		`{"choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"f","arguments":"{bad"}}]}}]}`} {
		if _, err := ResponseFromOpenAI([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

type emitted struct{ event, data string }

func translateAll(t *testing.T, model string, chunks ...string) []emitted {
	t.Helper()
	var out []emitted
	emit := func(ev, data []byte) {
		if !json.Valid(data) {
			t.Errorf("invalid JSON in %s: %s", ev, data)
		}
		out = append(out, emitted{string(ev), string(data)})
	}
	s := NewOpenAIToAnthropicStream(model)
	for _, c := range chunks {
		if err := s.Translate([]byte(c), emit); err != nil {
			t.Fatal(err)
		}
	}
	s.Finish(emit)
	s.Finish(emit) // no-op
	return out
}

func TestOpenAIToAnthropicStream(t *testing.T) {
	const h = `{"id":"chatcmpl-abc","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[`
	got := translateAll(t, "",
		h+`{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
		h+`{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}`,
		h+`{"index":0,"delta":{"content":" \"world\"\n"},"finish_reason":null}]}`,
		h+`{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}`,
		h+`{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\":"}}]},"finish_reason":null}]}`,
		h+`{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]}`,
		h+`{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"now","arguments":"{}"}}]},"finish_reason":null}]}`,
		h+`{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
		h+`],"usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42,"prompt_tokens_details":{"cached_tokens":10}}}`,
		`[DONE]`,
	)
	want := []emitted{
		{"message_start", `{"type":"message_start","message":{"id":"msg_abc","type":"message","role":"assistant","model":"gpt-4o","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}}`},
		{"content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" \"world\"\n"}}`},
		{"content_block_stop", `{"type":"content_block_stop","index":0}`},
		{"content_block_start", `{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"call_1","name":"get_weather","input":{}}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}`},
		{"content_block_stop", `{"type":"content_block_stop","index":1}`},
		{"content_block_start", `{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"call_2","name":"now","input":{}}}`},
		{"content_block_delta", `{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{}"}}`},
		{"content_block_stop", `{"type":"content_block_stop","index":2}`},
		{"message_delta", `{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"input_tokens":20,"cache_creation_input_tokens":0,"cache_read_input_tokens":10,"output_tokens":12}}`},
		{"message_stop", `{"type":"message_stop"}`},
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d:\n%v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}

	// A fixed model, a stream with no chunk at all, ids repeated in every
	// delta (some compatible servers do), and length.
	got = translateAll(t, "claude-alias")
	if len(got) != 3 || got[0].event != "message_start" || !strings.Contains(got[0].data, `"model":"claude-alias"`) ||
		!strings.Contains(got[1].data, `"stop_reason":"end_turn"`) || got[2].event != "message_stop" {
		t.Errorf("empty stream: %v", got)
	}
	got = translateAll(t, "",
		h+`{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":"{\"a\""}}]}}]}`,
		h+`{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"arguments":":1}"}}]}}]}`,
		h+`{"index":0,"delta":{},"finish_reason":"length"}]}`)
	starts := 0
	for _, e := range got {
		if e.event == "content_block_start" {
			starts++
		}
	}
	if starts != 1 || !strings.Contains(got[len(got)-2].data, `"stop_reason":"max_tokens"`) {
		t.Errorf("repeated ids: %v", got)
	}

	s := NewOpenAIToAnthropicStream("")
	if err := s.Translate([]byte(`{"error":{"message":"boom"}}`), func(_, _ []byte) {}); err == nil || err.Error() != "boom" {
		t.Errorf("error chunk: %v", err)
	}
	if err := s.Translate([]byte(`{"choices":[`), func(_, _ []byte) {}); err == nil {
		t.Error("malformed chunk accepted")
	}
}

func TestErrorBody(t *testing.T) {
	for status, typ := range map[int]string{400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
		403: "permission_error", 404: "not_found_error", 413: "request_too_large", 422: "invalid_request_error",
		429: "rate_limit_error", 500: "api_error", 502: "api_error", 503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error"} {
		got := string(ErrorBody(status, `bad "thing"`))
		want := `{"type":"error","error":{"type":"` + typ + `","message":"bad \"thing\""}}`
		if got != want {
			t.Errorf("%d: %s", status, got)
		}
		// What the gateway emits is what this package parses back.
		if e := provanthropic.ParseError(status, []byte(got)); e.Message != `bad "thing"` {
			t.Errorf("%d: parsed %+v", status, e)
		}
	}
}
