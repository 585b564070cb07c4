package gemini

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

func parseReq(t testing.TB, op openai.Op, body string) *openai.Request {
	t.Helper()
	req, oe := openai.ParseRequest(op, []byte(body), 0)
	if oe != nil {
		t.Fatalf("ParseRequest(%s): %v", body, oe)
	}
	return req
}

// jsonEqual compares two JSON texts semantically.
func jsonEqual(t testing.TB, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad fixture: %v\n%s", err, want)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("JSON mismatch\n got: %s\nwant: %s", got, compact(want))
	}
}

func compact(s string) string {
	return string(appendCompact(nil, s))
}

func TestBuildChat(t *testing.T) {
	cases := []struct {
		name string
		in   string // request body
		want string // Gemini request
	}{
		{
			name: "system, developer, merged turns",
			in: `{"model":"m","messages":[
				{"role":"system","content":"Be terse."},
				{"role":"user","content":"Hi"},
				{"role":"developer","content":[{"type":"text","text":"Use metric."}]},
				{"role":"user","content":[{"type":"text","text":"there"},{"type":"text","text":""}]},
				{"role":"assistant","content":"Hello"},
				{"role":"assistant","content":[{"type":"text","text":"again"}]},
				{"role":"user","content":""}]}`,
			want: `{"contents":[
				{"role":"user","parts":[{"text":"Hi"},{"text":"there"}]},
				{"role":"model","parts":[{"text":"Hello"},{"text":"again"}]}],
				"systemInstruction":{"parts":[{"text":"Be terse."},{"text":"Use metric."}]}}`,
		},
		{
			name: "images, audio, files",
			in: `{"model":"m","messages":[{"role":"user","content":[
				{"type":"text","text":"What is this?"},
				{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo=","detail":"high"}},
				{"type":"image_url","image_url":{"url":"data:image/svg+xml,%3Csvg%2F%3E"}},
				{"type":"image_url","image_url":{"url":"https://example.com/cat.JPG?size=large"}},
				{"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}},
				{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBERi0=","filename":"a.pdf"}}]}]}`,
			want: `{"contents":[{"role":"user","parts":[
				{"text":"What is this?"},
				{"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}},
				{"inlineData":{"mimeType":"image/svg+xml","data":"PHN2Zy8+"}},
				{"fileData":{"mimeType":"image/jpeg","fileUri":"https://example.com/cat.JPG?size=large"}},
				{"inlineData":{"mimeType":"audio/wav","data":"UklGRg=="}},
				{"inlineData":{"mimeType":"application/pdf","data":"JVBERi0="}}]}]}`,
		},
		{
			name: "tool round trip",
			in: `{"model":"m","messages":[
				{"role":"user","content":"Weather in Paris and Rome?"},
				{"role":"assistant","content":null,"tool_calls":[
					{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\": \"Paris\"}"},
					 "extra_content":{"google":{"thought_signature":"c2ln"}}},
					{"id":"call_2","type":"function","function":{"name":"get_weather","arguments":""}}]},
				{"role":"tool","tool_call_id":"call_1","content":"{\"temp\": 21, \"unit\": \"C\"}"},
				{"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"sunny"}]},
				{"role":"assistant","content":"Paris 21C, Rome sunny."}],
				"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather of a city",
					"strict":true,
					"parameters":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
						"properties":{"city":{"type":"string","description":"City"},"unit":{"type":["string","null"],"enum":["C","F"]}},
						"required":["city","unit"],"additionalProperties":false}}},
					{"type":"function","function":{"name":"now","parameters":{"type":"object","properties":{}}}}],
				"tool_choice":"required"}`,
			want: `{"contents":[
				{"role":"user","parts":[{"text":"Weather in Paris and Rome?"}]},
				{"role":"model","parts":[
					{"functionCall":{"id":"call_1","name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"c2ln"},
					{"functionCall":{"id":"call_2","name":"get_weather","args":{}}}]},
				{"role":"user","parts":[
					{"functionResponse":{"id":"call_1","name":"get_weather","response":{"temp":21,"unit":"C"}}},
					{"functionResponse":{"id":"call_2","name":"get_weather","response":{"result":"sunny"}}}]},
				{"role":"model","parts":[{"text":"Paris 21C, Rome sunny."}]}],
				"tools":[{"functionDeclarations":[
					{"name":"get_weather","description":"Weather of a city","parameters":{"type":"object",
						"properties":{"city":{"type":"string","description":"City"},"unit":{"type":"string","nullable":true,"enum":["C","F"]}},
						"propertyOrdering":["city","unit"],"required":["city","unit"]}},
					{"name":"now"}]}],
				"toolConfig":{"functionCallingConfig":{"mode":"ANY"}}}`,
		},
		{
			name: "named tool choice and legacy functions",
			in: `{"model":"m","messages":[{"role":"user","content":"x"},
				{"role":"assistant","function_call":{"name":"f","arguments":"{\"a\":1}"}},
				{"role":"function","name":"f","content":"42"}],
				"functions":[{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer","format":"int64"}}}}],
				"tool_choice":{"type":"function","function":{"name":"f"}}}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]},
				{"role":"model","parts":[{"functionCall":{"name":"f","args":{"a":1}},"thoughtSignature":"skip_thought_signature_validator"}]},
				{"role":"user","parts":[{"functionResponse":{"name":"f","response":{"result":"42"}}}]}],
				"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer","format":"int64"}}}}]}],
				"toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["f"]}}}`,
		},
		{
			name: "allowed tools auto filters declarations",
			in: `{"model":"m","messages":[{"role":"user","content":"x"}],
				"tools":[{"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}],
				"tool_choice":{"type":"allowed_tools","allowed_tools":{"mode":"auto","tools":[{"type":"function","function":{"name":"b"}}]}}}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]}],
				"tools":[{"functionDeclarations":[{"name":"b"}]}],
				"toolConfig":{"functionCallingConfig":{"mode":"AUTO"}}}`,
		},
		{
			name: "generation config",
			in: `{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":0.2,"top_p":0.9,
				"max_tokens":50,"max_completion_tokens":100,"stop":["END",""],"n":2,"seed":7,
				"presence_penalty":0.5,"frequency_penalty":-0.5,"reasoning_effort":"low",
				"logprobs":false,"logit_bias":{},"parallel_tool_calls":true,"modalities":["text"],
				"user":"u1","metadata":{"a":"b"},"store":false,"stream_options":{"include_usage":true}}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{
				"temperature":0.2,"topP":0.9,"maxOutputTokens":100,"stopSequences":["END"],"candidateCount":2,"seed":7,
				"presencePenalty":0.5,"frequencyPenalty":-0.5,"thinkingConfig":{"thinkingBudget":1024}}}`,
		},
		{
			name: "stop string, json_object",
			in:   `{"model":"m","messages":[{"role":"user","content":"x"}],"stop":"\n\n","response_format":{"type":"json_object"},"reasoning_effort":"none"}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{
				"thinkingConfig":{"thinkingBudget":0},"stopSequences":["\n\n"],"responseMimeType":"application/json"}}`,
		},
		{
			name: "json_schema",
			in: `{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"r","strict":true,
				"schema":{"type":"object","properties":{"b":{"type":"string","format":"uri"},"a":{"$ref":"#/$defs/Item"}},"required":["a","b"],
				"additionalProperties":false,"$defs":{"Item":{"type":"object","properties":{"n":{"type":"integer"}},"additionalProperties":false}}}}}}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json",
				"responseSchema":{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"object","properties":{"n":{"type":"integer"}}}},
				"propertyOrdering":["b","a"],"required":["a","b"]}}}`,
		},
		{
			name: "dropped unsupported parameters",
			in: `{"model":"m","messages":[{"role":"user","content":"x"}],"logit_bias":{"50256":-100},"logprobs":true,"top_logprobs":3,
				"parallel_tool_calls":false,"modalities":["text","audio"],"audio":{"voice":"alloy"},
				"tools":[{"type":"web_search"},{"type":"function","function":{"name":"f"}}]}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"tools":[{"functionDeclarations":[{"name":"f"}]}]}`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := buildChat(parseReq(t, openai.OpChat, c.in), true)
			if err != nil {
				t.Fatalf("error: %v (%+v)", err, *err)
			}
			jsonEqual(t, got, c.want)
		})
	}
}

func TestBuildChatErrors(t *testing.T) {
	const user = `{"role":"user","content":"x"}`
	cases := []struct {
		name, in, param, code string
		drop                  bool // the same request with DropUnsupported succeeds
	}{
		{"logit_bias", `{"model":"m","messages":[` + user + `],"logit_bias":{"1":2}}`, "logit_bias", "unsupported_parameter", true},
		{"logprobs", `{"model":"m","messages":[` + user + `],"logprobs":true}`, "logprobs", "unsupported_parameter", true},
		{"top_logprobs", `{"model":"m","messages":[` + user + `],"top_logprobs":2}`, "top_logprobs", "unsupported_parameter", true},
		{"parallel_tool_calls", `{"model":"m","messages":[` + user + `],"parallel_tool_calls":false}`, "parallel_tool_calls", "unsupported_parameter", true},
		{"audio", `{"model":"m","messages":[` + user + `],"audio":{"voice":"x"}}`, "audio", "unsupported_parameter", true},
		{"modalities", `{"model":"m","messages":[` + user + `],"modalities":["audio"]}`, "modalities", "unsupported_parameter", true},
		{"custom tool", `{"model":"m","messages":[` + user + `],"tools":[{"type":"custom","custom":{"name":"x"}}]}`, "tools[0].type", "unsupported_parameter", true},
		{"image type", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x.test/pic"}}]}]}`,
			"messages[0].content[0].image_url.url", "invalid_value", false},
		{"image scheme", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x.test/a.png"}}]}]}`,
			"messages[0].content[0].image_url.url", "invalid_value", false},
		{"file id", `{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}`,
			"messages[0].content[0].file.file_id", "unsupported_value", false},
		{"unknown tool call", `{"model":"m","messages":[` + user + `,{"role":"tool","tool_call_id":"nope","content":"1"}]}`,
			"messages[1].tool_call_id", "invalid_value", false},
		{"bad arguments", `{"model":"m","messages":[` + user + `,{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`,
			"messages[1].tool_calls[0].function.arguments", "invalid_value", false},
		{"bad role", `{"model":"m","messages":[{"role":"robot","content":"x"}]}`, "messages[0].role", "invalid_value", false},
		{"system image", `{"model":"m","messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]}]}`,
			"messages[0].content[0].type", "invalid_value", false},
		{"temperature type", `{"model":"m","messages":[` + user + `],"temperature":"hot"}`, "temperature", "invalid_type", false},
		{"response_format type", `{"model":"m","messages":[` + user + `],"response_format":{"type":"yaml"}}`, "response_format.type", "invalid_value", false},
		{"reasoning_effort", `{"model":"m","messages":[` + user + `],"reasoning_effort":"max"}`, "reasoning_effort", "invalid_value", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := parseReq(t, openai.OpChat, c.in)
			_, err := buildChat(req, false)
			if err == nil {
				t.Fatal("no error")
			}
			if err.Kind != provider.KindStatus || err.Status != 400 || err.Type != "invalid_request_error" ||
				err.Param != c.param || err.Code != c.code || err.Message == "" {
				t.Errorf("error = %+v", *err)
			}
			if ce := err.ClientError(); ce.Status != 400 || ce.Param != c.param {
				t.Errorf("client error = %+v", *ce)
			}
			if c.code == "unsupported_parameter" && !strings.Contains(err.Message, "'"+c.param+"'") {
				t.Errorf("message does not name the parameter: %q", err.Message)
			}
			_, err = buildChat(req, true)
			if c.drop && err != nil {
				t.Errorf("dropped: %+v", *err)
			}
			if !c.drop && err == nil {
				t.Error("dropping unsupported parameters hid an invalid request")
			}
		})
	}
}

func TestSchemaCleaner(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"nullable union", `{"type":["integer","null"],"minimum":0,"exclusiveMinimum":0}`, `{"type":"integer","nullable":true,"minimum":0}`},
		{"multi type", `{"type":["string","number"]}`, `{"anyOf":[{"type":"string"},{"type":"number"}]}`},
		{"optional anyOf", `{"anyOf":[{"type":"string","maxLength":5},{"type":"null"}],"default":null,"title":"T"}`,
			`{"type":"string","nullable":true,"maxLength":5,"default":null,"title":"T"}`},
		{"oneOf", `{"oneOf":[{"type":"string"},{"type":"object","properties":{"x":{"type":"boolean"}},"additionalProperties":{"type":"string"}}]}`,
			`{"anyOf":[{"type":"string"},{"type":"object","properties":{"x":{"type":"boolean"}}}]}`},
		{"const and enums", `{"properties":{"k":{"const":"fixed"},"n":{"type":"integer","enum":[1,2,null]}}}`,
			`{"type":"object","properties":{"k":{"type":"string","enum":["fixed"]},"n":{"type":"integer","nullable":true,"enum":["1","2"]}},"propertyOrdering":["k","n"]}`},
		{"allOf merge", `{"allOf":[{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]},{"properties":{"b":{"type":"number","format":"double"}},"required":["b","zz"]}],"description":"d"}`,
			`{"type":"object","description":"d","properties":{"a":{"type":"string"},"b":{"type":"number","format":"double"}},"propertyOrdering":["a","b"],"required":["a","b"]}`},
		{"recursive ref", `{"$defs":{"Node":{"type":"object","properties":{"v":{"type":"string"},"kids":{"type":"array","items":{"$ref":"#/$defs/Node"}}}}},"$ref":"#/$defs/Node"}`,
			`{"type":"object","properties":{"v":{"type":"string"},"kids":{"type":"array","items":{"type":"object"}}},"propertyOrdering":["v","kids"]}`},
		{"definitions ref and tuple items", `{"definitions":{"A":{"type":"string","format":"date-time"}},"type":"array","items":[{"$ref":"#/definitions/A"},{"type":"number"}],"minItems":1}`,
			`{"type":"array","minItems":1,"items":{"type":"string","format":"date-time"}}`},
		{"keeps ordering", `{"type":"object","properties":{"a":{},"b":{}},"propertyOrdering":["b","a"],"strict":true,"$id":"x"}`,
			`{"type":"object","properties":{"a":{},"b":{}},"propertyOrdering":["b","a"]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var sc schemaCleaner
			got, err := sc.clean(parse([]byte(c.in)), "p")
			if err != nil {
				t.Fatal(err)
			}
			jsonEqual(t, got, c.want)
		})
	}

	// exponential references are bounded
	var sb strings.Builder
	sb.WriteString(`{"$defs":{"L0":{"type":"string"}`)
	for i := 1; i <= 40; i++ {
		n, p := "L"+itoa(i), "#/$defs/L"+itoa(i-1)
		sb.WriteString(`,"` + n + `":{"type":"object","properties":{"a":{"$ref":"` + p + `"},"b":{"$ref":"` + p + `"}}}`)
	}
	sb.WriteString(`},"$ref":"#/$defs/L40"}`)
	var sc schemaCleaner
	if _, err := sc.clean(parse([]byte(sb.String())), "tools[0].function.parameters"); err == nil || err.Param != "tools[0].function.parameters" {
		t.Errorf("huge schema: %v", err)
	}
}

func itoa(i int) string { return string(appendInt(nil, int64(i))) }
