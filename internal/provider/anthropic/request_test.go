package anthropic

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/jsontest"
)

func TestRequestFromOpenAI(t *testing.T) {
	opt := RequestOptions{Model: "claude-sonnet-4-5", MaxTokens: 1000}
	tests := []struct {
		name string
		opt  *RequestOptions
		in   string
		want string
	}{
		{"minimal", nil,
			`{"model":"gpt-4o","messages":[{"role":"user","content":"Hello, Claude"}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":"Hello, Claude"}]}`},
		{"model kept, default max tokens", &RequestOptions{},
			`{"model":"claude-x","messages":[{"role":"user","content":"hi"}]}`,
			`{"model":"claude-x","max_tokens":4096,"messages":[{"role":"user","content":"hi"}]}`},
		{"max_completion_tokens beats max_tokens and the route default", nil,
			`{"model":"m","max_tokens":50,"max_completion_tokens":20,"messages":[{"role":"user","content":"hi"}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`},
		{"system string", nil,
			`{"model":"m","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"hi"}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"system":"You are terse.","messages":[{"role":"user","content":"hi"}]}`},
		{"system and developer become blocks, cache_control kept", nil,
			`{"model":"m","messages":[{"role":"system","content":[{"type":"text","text":"Long context","cache_control":{"type":"ephemeral"}}]},{"role":"developer","content":"Be kind."},{"role":"user","content":"hi"}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"system":[{"type":"text","text":"Long context","cache_control":{"type":"ephemeral"}},{"type":"text","text":"Be kind."}],"messages":[{"role":"user","content":"hi"}]}`},
		{"consecutive same-role messages merged, empty skipped", nil,
			`{"model":"m","messages":[{"role":"user","content":"one"},{"role":"user","content":[{"type":"text","text":"two"}]},{"role":"assistant","content":""},{"role":"user","content":"three"},{"role":"assistant","content":"four"},{"role":"assistant","content":[{"type":"refusal","refusal":"no"}]}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":[{"type":"text","text":"one"},{"type":"text","text":"two"},{"type":"text","text":"three"}]},{"role":"assistant","content":[{"type":"text","text":"four"},{"type":"text","text":"no"}]}]}`},
		{"images", nil,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}},{"type":"image_url","image_url":{"url":"https://example.com/cat.jpg"}}]}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}}]}]}`},
		{"pdf file", nil,
			`{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,JVBERi0="}}]}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0="}}]}]}`},
		{"tool round trip", nil,
			`{"model":"m","messages":[
				{"role":"user","content":"Weather in Paris and Rome?"},
				{"role":"assistant","content":"Let me check.","tool_calls":[
					{"id":"toolu_01","type":"function","function":{"name":"get_weather","arguments":"{\"location\": \"Paris\"}"}},
					{"id":"toolu_02","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Rome\"}"}},
					{"id":"toolu_03","type":"function","function":{"name":"now","arguments":""}}]},
				{"role":"tool","tool_call_id":"toolu_01","content":"15 degrees"},
				{"role":"tool","tool_call_id":"toolu_02","content":[{"type":"text","text":"20 degrees"}]},
				{"role":"tool","tool_call_id":"toolu_03","content":""},
				{"role":"user","content":"Thanks"}],
			 "tools":[{"type":"function","function":{"name":"get_weather","description":"Get the weather","parameters":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]},"strict":true}},
			          {"type":"function","function":{"name":"now"}}],
			 "tool_choice":"auto"}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[
				{"role":"user","content":"Weather in Paris and Rome?"},
				{"role":"assistant","content":[{"type":"text","text":"Let me check."},
					{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{"location":"Paris"}},
					{"type":"tool_use","id":"toolu_02","name":"get_weather","input":{"location":"Rome"}},
					{"type":"tool_use","id":"toolu_03","name":"now","input":{}}]},
				{"role":"user","content":[
					{"type":"tool_result","tool_use_id":"toolu_01","content":"15 degrees"},
					{"type":"tool_result","tool_use_id":"toolu_02","content":[{"type":"text","text":"20 degrees"}]},
					{"type":"tool_result","tool_use_id":"toolu_03"},
					{"type":"text","text":"Thanks"}]}],
			 "tools":[{"name":"get_weather","description":"Get the weather","input_schema":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}},
			          {"name":"now","input_schema":{"type":"object","properties":{}}}],
			 "tool_choice":{"type":"auto"}}`},
		{"tool_choice required, no parallel", nil,
			`{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","parallel_tool_calls":false}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"any","disable_parallel_tool_use":true}}`},
		{"tool_choice function", nil,
			`{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"tool","name":"f"}}`},
		{"tool_choice none", nil,
			`{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none","parallel_tool_calls":false}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"none"}}`},
		{"parallel false alone", nil,
			`{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"parallel_tool_calls":false}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}],"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}],"tool_choice":{"type":"auto","disable_parallel_tool_use":true}}`},
		{"empty tools drop tool_choice", nil,
			`{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[],"tool_choice":"auto"}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}]}`},
		{"sampling, stop, stream, user", nil,
			`{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":0.7,"top_p":0.9,"top_k":40,"stop":"END","stream":true,"stream_options":{"include_usage":true},"user":"u-1","store":false,"n":1,"logprobs":false,"presence_penalty":0,"seed":null}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}],"temperature":0.7,"top_p":0.9,"top_k":40,"stop_sequences":["END"],"stream":true,"metadata":{"user_id":"u-1"}}`},
		{"stop array, metadata.user_id wins", nil,
			`{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b"],"user":"u-1","metadata":{"user_id":"u-2","other":"x"},"stream":false}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}],"stop_sequences":["a","b"],"metadata":{"user_id":"u-2"}}`},
		{"drop unsupported and clamp temperature", &RequestOptions{Model: "claude-sonnet-4-5", MaxTokens: 1000, DropUnsupported: true},
			`{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":1.5,"n":2,"logprobs":true,"top_logprobs":3,"presence_penalty":0.5,"frequency_penalty":1,"logit_bias":{"50256":-100},"seed":42,"response_format":{"type":"json_object"},"tools":[{"type":"web_search"},{"type":"function","function":{"name":"f"}}]}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}],"temperature":1,"tools":[{"name":"f","input_schema":{"type":"object","properties":{}}}]}`},
		{"response_format text is harmless", nil,
			`{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"text"},"logit_bias":{}}`,
			`{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":"x"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := opt
			if tt.opt != nil {
				o = *tt.opt
			}
			got, err := RequestFromOpenAI([]byte(tt.in), o)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(got) || !jsontest.Equal(t, string(got), tt.want) {
				t.Errorf("got  %s\nwant %s", got, jsontest.Compact(tt.want))
			}
		})
	}
}

func TestRequestFromOpenAIErrors(t *testing.T) {
	msgs := `"messages":[{"role":"user","content":"x"}]`
	tests := []struct {
		name, in, param, code string
	}{
		{"n", `{"model":"m",` + msgs + `,"n":2}`, "n", "unsupported_parameter"},
		{"logprobs", `{"model":"m",` + msgs + `,"logprobs":true}`, "logprobs", "unsupported_parameter"},
		{"presence_penalty", `{"model":"m",` + msgs + `,"presence_penalty":0.1}`, "presence_penalty", "unsupported_parameter"},
		{"frequency_penalty", `{"model":"m",` + msgs + `,"frequency_penalty":-1}`, "frequency_penalty", "unsupported_parameter"},
		{"logit_bias", `{"model":"m",` + msgs + `,"logit_bias":{"1":2}}`, "logit_bias", "unsupported_parameter"},
		{"seed", `{"model":"m",` + msgs + `,"seed":1}`, "seed", "unsupported_parameter"},
		{"response_format", `{"model":"m",` + msgs + `,"response_format":{"type":"json_schema","json_schema":{"name":"x"}}}`, "response_format", "unsupported_parameter"},
		{"functions", `{"model":"m",` + msgs + `,"functions":[{"name":"f"}]}`, "functions", "unsupported_parameter"},
		{"non-function tool", `{"model":"m",` + msgs + `,"tools":[{"type":"code_interpreter"}]}`, "tools[0].type", "unsupported_parameter"},
		{"temperature above 1", `{"model":"m",` + msgs + `,"temperature":1.2}`, "temperature", "unsupported_value"},
		{"temperature type", `{"model":"m",` + msgs + `,"temperature":"hot"}`, "temperature", "invalid_type"},
		{"invalid tool arguments", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{not json"}}]}]}`,
			"messages[0].tool_calls[0].function.arguments", "invalid_value"},
		{"non-object tool arguments", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`,
			"messages[0].tool_calls[0].function.arguments", "invalid_value"},
		{"tool message without id", `{"model":"m","messages":[{"role":"tool","content":"x"}]}`, "messages[0].tool_call_id", "missing_required_parameter"},
		{"unknown role", `{"model":"m","messages":[{"role":"wizard","content":"x"}]}`, "messages[0].role", "invalid_value"},
		{"audio part", `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]}`, "messages[0].content[0].type", "unsupported_value"},
		{"image ftp", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}`, "messages[0].content[0].image_url.url", "invalid_value"},
		{"image data not base64", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,abc"}}]}]}`, "messages[0].content[0].image_url.url", "invalid_value"},
		{"no messages", `{"model":"m"}`, "messages", "missing_required_parameter"},
		{"bad tool_choice", `{"model":"m",` + msgs + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}`, "tool_choice", "invalid_value"},
		{"bad max_tokens", `{"model":"m",` + msgs + `,"max_tokens":0}`, "max_tokens", "invalid_value"},
		{"not JSON", `{"model":`, "", "invalid_json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RequestFromOpenAI([]byte(tt.in), RequestOptions{Model: "c", MaxTokens: 10})
			var pe *provider.Error
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v", err)
			}
			if pe.Kind != provider.KindStatus || pe.Status != 400 || pe.Type != "invalid_request_error" || pe.Param != tt.param || pe.Code != tt.code || pe.Retryable() {
				t.Errorf("error %+v", pe)
			}
			if tt.code == "unsupported_parameter" && !strings.Contains(pe.Message, tt.param) {
				t.Errorf("message does not name %s: %s", tt.param, pe.Message)
			}
			ce := pe.ClientError()
			if ce.Status != 400 || ce.Param != tt.param {
				t.Errorf("client error %+v", ce)
			}
		})
	}
}

func TestResponseToOpenAI(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"text", `{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
			"content":[{"type":"text","text":"Hi! My name is Claude."}],"stop_reason":"end_turn","stop_sequence":null,
			"usage":{"input_tokens":2095,"output_tokens":503}}`,
			`{"id":"chatcmpl-msg_013Zva2CMHLNnXjNJJKqJ2EF","object":"chat.completion","created":1700000000,"model":"claude-sonnet-4-5-20250929",
			"choices":[{"index":0,"message":{"role":"assistant","content":"Hi! My name is Claude.","refusal":null},"logprobs":null,"finish_reason":"stop"}],
			"usage":{"prompt_tokens":2095,"completion_tokens":503,"total_tokens":2598,"prompt_tokens_details":{"cached_tokens":0}}}`},
		{"thinking, text and tools, cache usage", `{"id":"msg_1","type":"message","role":"assistant","model":"claude-opus-4-1",
			"content":[{"type":"thinking","thinking":"hmm","signature":"x"},{"type":"text","text":"Checking "},{"type":"text","text":"both."},
			{"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"location": "San Francisco, CA", "unit": "celsius"}},
			{"type":"tool_use","id":"toolu_01B","name":"now","input":{}}],
			"stop_reason":"tool_use","stop_sequence":null,
			"usage":{"input_tokens":50,"cache_creation_input_tokens":20,"cache_read_input_tokens":100,"output_tokens":30,"service_tier":"standard"}}`,
			`{"id":"chatcmpl-msg_1","object":"chat.completion","created":1700000000,"model":"claude-opus-4-1",
			"choices":[{"index":0,"message":{"role":"assistant","content":"Checking both.","tool_calls":[
				{"id":"toolu_01A","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"San Francisco, CA\",\"unit\":\"celsius\"}"}},
				{"id":"toolu_01B","type":"function","function":{"name":"now","arguments":"{}"}}],"refusal":null},"logprobs":null,"finish_reason":"tool_calls"}],
			"usage":{"prompt_tokens":170,"completion_tokens":30,"total_tokens":200,"prompt_tokens_details":{"cached_tokens":100}}}`},
		{"only tools: content null", `{"id":"msg_2","type":"message","model":"m","content":[{"type":"tool_use","id":"t","name":"f","input":{}}],"stop_reason":"tool_use","usage":{}}`,
			`{"id":"chatcmpl-msg_2","object":"chat.completion","created":1700000000,"model":"m",
			"choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"t","type":"function","function":{"name":"f","arguments":"{}"}}],"refusal":null},"logprobs":null,"finish_reason":"tool_calls"}],
			"usage":{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0,"prompt_tokens_details":{"cached_tokens":0}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ResponseToOpenAI([]byte(tt.in), created)
			if err != nil {
				t.Fatal(err)
			}
			if !jsontest.Equal(t, string(got), tt.want) {
				t.Errorf("got  %s\nwant %s", got, jsontest.Compact(tt.want))
			}
		})
	}
	for stop, want := range map[string]string{"end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
		"max_tokens": "length", "tool_use": "tool_calls", "refusal": "content_filter"} {
		got, err := ResponseToOpenAI([]byte(`{"type":"message","id":"m","content":[],"stop_reason":"`+stop+`"}`), 1)
		if err != nil || !strings.Contains(string(got), `"finish_reason":"`+want+`"`) {
			t.Errorf("%s: %s %v", stop, got, err)
		}
	}
	_, err := ResponseToOpenAI([]byte(`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`), 1)
	if pe, ok := err.(*provider.Error); !ok || pe.Kind != provider.KindStatus || pe.Status != 529 || pe.Message != "Overloaded" || !pe.Retryable() {
		t.Errorf("error body: %v", err)
	}
	for _, bad := range []string{`not json`, `{"type":"other"}`, `{"id":"x"}`, `[]`} {
		_, err := ResponseToOpenAI([]byte(bad), 1)
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Kind != provider.KindProtocol {
			t.Errorf("%s: %v", bad, err)
		}
	}
}

func TestParseError(t *testing.T) {
	tests := []struct {
		status              int
		body                string
		msg, typ, code      string
		retryable           bool
		clientStatus        int
		clientType, clientC string
	}{
		{529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}`,
			"Overloaded", "server_error", "overloaded", true, 503, "upstream_error", "upstream_overloaded"},
		{429, `{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}`,
			"Number of request tokens has exceeded your per-minute rate limit", "rate_limit_exceeded", "rate_limit_exceeded", true, 429, "rate_limit_exceeded", "rate_limit_exceeded"},
		{400, `{"type":"error","error":{"type":"invalid_request_error","message":"messages: roles must alternate between \"user\" and \"assistant\""}}`,
			`messages: roles must alternate between "user" and "assistant"`, "invalid_request_error", "", false, 400, "invalid_request_error", ""},
		{404, `{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"}}`,
			"model: claude-x", "not_found_error", "", false, 404, "not_found_error", ""},
		{413, `{"type":"error","error":{"type":"request_too_large","message":"Request exceeds the maximum allowed number of bytes."}}`,
			"Request exceeds the maximum allowed number of bytes.", "invalid_request_error", "request_too_large", false, 413, "invalid_request_error", "request_too_large"},
		{401, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`,
			"invalid x-api-key", "authentication_error", "invalid_api_key", false, 502, "upstream_error", "upstream_auth_failed"},
		{500, `{"type":"error","error":{"type":"api_error","message":"Internal server error"}}`,
			"Internal server error", "server_error", "api_error", true, 502, "upstream_error", "upstream_error"},
		{502, `<html>bad gateway</html>`, "", "", "", true, 502, "upstream_error", "upstream_error"},
	}
	for _, tt := range tests {
		e := ParseError(tt.status, []byte(tt.body))
		e.Provider = "anth"
		if e.Kind != provider.KindStatus || e.Status != tt.status || e.Message != tt.msg || e.Type != tt.typ || e.Code != tt.code || e.Retryable() != tt.retryable {
			t.Errorf("%d: %+v", tt.status, e)
		}
		ce := e.ClientError()
		if ce.Status != tt.clientStatus || ce.Type != tt.clientType || ce.Code != tt.clientC {
			t.Errorf("%d: client error %+v", tt.status, ce)
		}
	}
}
