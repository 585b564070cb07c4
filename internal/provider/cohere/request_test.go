package cohere

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// jsonEqual fails the test unless got and want hold the same JSON value.
func jsonEqual(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("invalid wanted JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func parse(t *testing.T, op openai.Op, body string) *openai.Request {
	t.Helper()
	req, oe := openai.ParseRequest(op, []byte(body), 0)
	if oe != nil {
		t.Fatalf("ParseRequest(%s): %v", body, oe)
	}
	return req
}

func TestBuildChat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{
			"parameters",
			`{"model":"gpt","stream":true,"stream_options":{"include_usage":true},"user":"u1","metadata":{"a":"b"},
			  "messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],
			  "max_tokens":50,"temperature":0.3,"top_p":0.9,"top_k":40,"stop":"END","seed":7,
			  "frequency_penalty":0.1,"presence_penalty":0.2,"n":1,"logprobs":false,"logit_bias":{},
			  "parallel_tool_calls":true,"top_logprobs":null,"modalities":["text"]}`,
			`{"model":"command-r-plus","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],
			  "stream":true,"max_tokens":50,"temperature":0.3,"p":0.9,"k":40,"seed":7,"frequency_penalty":0.1,
			  "presence_penalty":0.2,"stop_sequences":["END"]}`,
		},
		{
			"max_completion_tokens wins, stop array, nulls ignored",
			`{"model":"m","messages":[],"max_tokens":9,"max_completion_tokens":20,"stop":["a","b"],"temperature":null,"tools":null}`,
			`{"model":"command-r-plus","messages":[],"max_tokens":20,"stop_sequences":["a","b"]}`,
		},
		{
			"content parts",
			`{"model":"m","messages":[
			  {"role":"developer","content":[{"type":"text","text":"rule 1"},{"type":"text","text":"rule 2"}]},
			  {"role":"user","name":"bob","content":[{"type":"text","text":"what is this?"},
			    {"type":"image_url","image_url":{"url":"https://x.test/cat.png","detail":"low"}},
			    {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
			  {"role":"assistant","content":[{"type":"text","text":"a cat"},{"type":"refusal","refusal":" no"}]},
			  {"role":"assistant","content":null}]}`,
			`{"model":"command-r-plus","messages":[
			  {"role":"system","content":[{"type":"text","text":"rule 1"},{"type":"text","text":"rule 2"}]},
			  {"role":"user","content":[{"type":"text","text":"what is this?"},
			    {"type":"image_url","image_url":{"url":"https://x.test/cat.png","detail":"low"}},
			    {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},
			  {"role":"assistant","content":[{"type":"text","text":"a cat"},{"type":"text","text":" no"}]},
			  {"role":"assistant","content":""}]}`,
		},
		{
			"tool round trip",
			`{"model":"m","messages":[
			  {"role":"user","content":"weather in Paris and Rome?"},
			  {"role":"assistant","content":"I will look both up.","tool_calls":[
			    {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
			    {"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},
			  {"role":"tool","tool_call_id":"call_1","content":"{\"temp\":21}"},
			  {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"19 degrees"}]},
			  {"role":"assistant","content":null,"tool_calls":[{"id":"call_3","type":"function","function":{"name":"noop","arguments":"{}"}}]}],
			 "tools":[{"type":"function","function":{"name":"get_weather","description":"Get the weather","strict":true,
			   "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
			   {"type":"function","function":{"name":"noop"}}],
			 "tool_choice":"required"}`,
			`{"model":"command-r-plus","messages":[
			  {"role":"user","content":"weather in Paris and Rome?"},
			  {"role":"assistant","tool_plan":"I will look both up.","tool_calls":[
			    {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
			    {"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},
			  {"role":"tool","tool_call_id":"call_1","content":[{"type":"document","document":{"data":"{\"temp\":21}"}}]},
			  {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"19 degrees"}]},
			  {"role":"assistant","tool_calls":[{"id":"call_3","type":"function","function":{"name":"noop","arguments":"{}"}}]}],
			 "tools":[{"type":"function","function":{"name":"get_weather","description":"Get the weather",
			   "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}},
			   {"type":"function","function":{"name":"noop"}}],
			 "strict_tools":true,"tool_choice":"REQUIRED"}`,
		},
		{
			"tool_choice none",
			`{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none"}`,
			`{"model":"command-r-plus","messages":[],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"NONE"}`,
		},
		{
			"tool_choice auto",
			`{"model":"m","messages":[],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto"}`,
			`{"model":"command-r-plus","messages":[],"tools":[{"type":"function","function":{"name":"f"}}]}`,
		},
		{
			"json_object",
			`{"model":"m","messages":[],"response_format":{"type":"json_object"}}`,
			`{"model":"command-r-plus","messages":[],"response_format":{"type":"json_object"}}`,
		},
		{
			"json_schema",
			`{"model":"m","messages":[],"response_format":{"type":"json_schema","json_schema":{"name":"x","strict":true,
			  "schema":{"type":"object","properties":{"a":{"type":"integer"}}}}}}`,
			`{"model":"command-r-plus","messages":[],"response_format":{"type":"json_object",
			  "json_schema":{"type":"object","properties":{"a":{"type":"integer"}}}}}`,
		},
		{
			"text format",
			`{"model":"m","messages":[],"response_format":{"type":"text"}}`,
			`{"model":"command-r-plus","messages":[]}`,
		},
		{
			"escapes survive",
			`{"model":"m","messages":[{"role":"user","content":"quote \" back\\ nl\n \u00e9 \u2028"}]}`,
			`{"model":"command-r-plus","messages":[{"role":"user","content":"quote \" back\\ nl\n é \u2028"}]}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, perr := buildChat(parse(t, openai.OpChat, tt.in), "command-r-plus", false)
			if perr != nil {
				t.Fatalf("error: %v", perr)
			}
			jsonEqual(t, body, tt.want)
		})
	}
}

func TestBuildChatUnsupported(t *testing.T) {
	t.Parallel()
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name, in, param, dropped string
	}{
		{"n", `{"model":"m",` + msgs + `,"n":2}`, "n", ""},
		{"logit_bias", `{"model":"m",` + msgs + `,"logit_bias":{"50256":-100}}`, "logit_bias", ""},
		{"logprobs", `{"model":"m",` + msgs + `,"logprobs":true}`, "logprobs", ""},
		{"top_logprobs", `{"model":"m",` + msgs + `,"top_logprobs":3}`, "top_logprobs", ""},
		{"parallel_tool_calls", `{"model":"m",` + msgs + `,"parallel_tool_calls":false}`, "parallel_tool_calls", ""},
		{"audio", `{"model":"m",` + msgs + `,"audio":{"voice":"alloy"}}`, "audio", ""},
		{"modalities", `{"model":"m",` + msgs + `,"modalities":["text","audio"]}`, "modalities", ""},
		{"functions", `{"model":"m",` + msgs + `,"functions":[{"name":"f"}]}`, "functions", ""},
		{
			"specific tool_choice",
			`{"model":"m",` + msgs + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"}}}`,
			"tool_choice", `,"tools":[{"type":"function","function":{"name":"f"}}]`,
		},
		{
			"custom tool",
			`{"model":"m",` + msgs + `,"tools":[{"type":"custom","custom":{"name":"g"}},{"type":"function","function":{"name":"f"}}]}`,
			"tools", `,"tools":[{"type":"function","function":{"name":"f"}}]`,
		},
		{"only custom tools", `{"model":"m",` + msgs + `,"tools":[{"type":"custom","custom":{"name":"g"}}]}`, "tools", ""},
		{
			"audio part",
			`{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"AA","format":"wav"}},{"type":"text","text":"hi"}]}]}`,
			"messages", `__[{"role":"user","content":[{"type":"text","text":"hi"}]}]`,
		},
		{
			"function role",
			`{"model":"m","messages":[{"role":"function","name":"f","content":"x"},{"role":"user","content":"hi"}]}`,
			"messages", "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := parse(t, openai.OpChat, tt.in)
			_, perr := buildChat(req, "c", false)
			if perr == nil || perr.Status != 400 || perr.Param != tt.param || perr.Code != "unsupported_parameter" ||
				perr.Type != openai.TypeInvalidRequest || perr.Message == "" {
				t.Fatalf("error = %+v", perr)
			}
			if ce := (&provider.Error{Provider: "co", Kind: provider.KindStatus, Status: perr.Status, Type: perr.Type,
				Code: perr.Code, Param: perr.Param, Message: perr.Message}).ClientError(); ce.Status != 400 || ce.Param != tt.param {
				t.Errorf("client error %+v", ce)
			}
			body, perr := buildChat(req, "c", true)
			if perr != nil {
				t.Fatalf("dropping: %v", perr)
			}
			want := `{"model":"c",` + msgs + tt.dropped + `}`
			if len(tt.dropped) > 2 && tt.dropped[:2] == "__" {
				want = `{"model":"c","messages":` + tt.dropped[2:] + `}`
			}
			jsonEqual(t, body, want)
		})
	}
}

func TestBuildChatInvalid(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"model":"m","messages":[{"role":"wizard","content":"x"}]}`,
		`{"model":"m","messages":["hi"]}`,
		`{"model":"m","messages":[],"tool_choice":"sometimes"}`,
		`{"model":"m","messages":[],"response_format":{"type":"xml"}}`,
		`{"model":"m","messages":[],"stop":5}`,
		`{"model":"m","messages":[],"tools":[{"type":"function","function":{}}]}`,
		`{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`,
	} {
		for _, drop := range []bool{false, true} {
			_, perr := buildChat(parse(t, openai.OpChat, in), "c", drop)
			if perr == nil || perr.Status != 400 || perr.Code != "invalid_value" || perr.Param == "" {
				t.Errorf("%s (drop %v): %+v", in, drop, perr)
			}
		}
	}
}

func TestBuildEmbed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		b64      bool
	}{
		{`{"model":"m","input":"hello"}`,
			`{"model":"embed-v4.0","texts":["hello"],"input_type":"search_document","embedding_types":["float"]}`, false},
		{`{"model":"m","input":["a","b"],"dimensions":256,"encoding_format":"float","user":"u"}`,
			`{"model":"embed-v4.0","texts":["a","b"],"input_type":"search_document","embedding_types":["float"],"output_dimension":256}`, false},
		{`{"model":"m","input":["q"],"encoding_format":"base64","input_type":"search_query"}`,
			`{"model":"embed-v4.0","texts":["q"],"input_type":"search_query","embedding_types":["float"]}`, true},
	}
	for _, tt := range tests {
		body, b64, perr := buildEmbed(parse(t, openai.OpEmbeddings, tt.in), "embed-v4.0", DefaultInputType)
		if perr != nil {
			t.Fatalf("%s: %v", tt.in, perr)
		}
		if b64 != tt.b64 {
			t.Errorf("%s: b64 = %v", tt.in, b64)
		}
		jsonEqual(t, body, tt.want)
	}
	for in, param := range map[string]string{
		`{"model":"m","input":[1,2,3]}`:                      "input",
		`{"model":"m","input":[[1,2]]}`:                      "input",
		`{"model":"m","input":[]}`:                           "input",
		`{"model":"m"}`:                                      "input",
		`{"model":"m","input":"x","encoding_format":"int8"}`: "encoding_format",
		`{"model":"m","input":"x","dimensions":0}`:           "dimensions",
		`{"model":"m","input":"x","dimensions":"big"}`:       "dimensions",
	} {
		_, _, perr := buildEmbed(parse(t, openai.OpEmbeddings, in), "e", DefaultInputType)
		if perr == nil || perr.Status != 400 || perr.Param != param {
			t.Errorf("%s: %+v", in, perr)
		}
	}
}

func TestParseError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status                    int
		body                      string
		message, typ, code, param string
	}{
		{400, `{"id":"5d2a","message":"invalid request: temperature must be between 0 and 1.0 inclusive."}`,
			"invalid request: temperature must be between 0 and 1.0 inclusive.", "invalid_request_error", "", ""},
		{401, `{"message":"invalid api token"}`, "invalid api token", "authentication_error", "", ""},
		{498, `{"message":"invalid api token"}`, "invalid api token", "authentication_error", "", ""},
		{402, `{"message":"Please add a payment method"}`, "Please add a payment method", "insufficient_quota", "", ""},
		{404, `{"message":"model 'x' not found"}`, "model 'x' not found", "not_found_error", "", ""},
		{429, `{"id":"1","message":"You are using a Trial key"}`, "You are using a Trial key", "rate_limit_exceeded", "rate_limit_exceeded", ""},
		{500, `{"message":"internal server error"}`, "internal server error", "server_error", "", ""},
		{503, `<html>busy</html>`, "", "server_error", "", ""},
		{400, `{"error":{"message":"bad","type":"invalid_request_error","param":"x","code":"c"}}`, "bad", "invalid_request_error", "c", "x"},
	}
	for _, tt := range tests {
		e := ParseError(tt.status, []byte(tt.body))
		if e.Status != tt.status || e.Message != tt.message || e.Type != tt.typ || e.Code != tt.code || e.Param != tt.param {
			t.Errorf("%d %s: %+v", tt.status, tt.body, e)
		}
	}
}
