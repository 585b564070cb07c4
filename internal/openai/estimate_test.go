package openai

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestEstimateInputTokens(t *testing.T) {
	text := strings.Repeat("abcd", 100) // 100 tokens
	cases := []struct {
		name     string
		body     string
		min, max int64
	}{
		{"one message", `{"model":"m","messages":[{"role":"user","content":"` + text + `"}]}`, 100, 110},
		{"image is not counted by bytes", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,` + strings.Repeat("A", 100000) + `"}}]}]}`, 765, 800},
		{"embeddings array", `{"model":"m","input":["` + text + `","` + text + `"]}`, 200, 210},
		{"responses string", `{"model":"m","input":"` + text + `"}`, 100, 110},
	}
	for _, c := range cases {
		op := OpChat
		if !strings.Contains(c.body, "messages") {
			op = OpResponses
		}
		r, err := ParseRequest(op, []byte(c.body), 0)
		if err != nil {
			t.Fatal(err)
		}
		if got := EstimateInputTokens(r); got < c.min || got > c.max {
			t.Errorf("%s: %d not in [%d,%d]", c.name, got, c.min, c.max)
		}
	}
}

// specEstimate is the documented estimate computed from encoding/json's
// reading of the body: the oracle for EstimateInputTokens's single pass.
func specEstimate(t *testing.T, body string) int64 {
	t.Helper()
	tokens := func(n int) int64 { return int64((n + 3) / 4) }
	str := func(raw json.RawMessage) (string, bool) {
		var s string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	}
	text := func(raw json.RawMessage) int64 { s, _ := str(raw); return tokens(len(s)) }
	var content func(raw json.RawMessage) int64
	item := func(raw json.RawMessage) int64 {
		switch c := raw[0]; {
		case c == '"':
			return text(raw)
		case c == '-' || c >= '0' && c <= '9':
			return 1
		case c == '[':
			return content(raw)
		case c != '{':
			return 0
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		n := int64(4)
		for k, v := range m {
			switch k {
			case "content":
				var parts []json.RawMessage
				if v[0] != '[' || json.Unmarshal(v, &parts) != nil {
					n += text(v)
					continue
				}
				for _, p := range parts {
					var pm map[string]json.RawMessage
					_ = json.Unmarshal(p, &pm)
					switch typ, _ := str(pm["type"]); typ {
					case "image_url", "input_image", "image":
						n += 765
					case "text", "input_text", "output_text":
						n += text(pm["text"])
					default:
						n += tokens(len(p))
					}
				}
			case "text", "arguments", "output":
				n += text(v)
			case "tool_calls", "function_call":
				n += tokens(len(v))
			case "type":
				if s, _ := str(v); s == "image_url" || s == "input_image" || s == "image" {
					n += 765
				}
			}
		}
		return n
	}
	content = func(raw json.RawMessage) int64 {
		if _, ok := str(raw); ok {
			return text(raw)
		}
		var items []json.RawMessage
		if raw[0] != '[' || json.Unmarshal(raw, &items) != nil {
			return tokens(len(raw))
		}
		var n int64
		for _, it := range items {
			n += item(it)
		}
		return n
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &top); err != nil {
		t.Fatal(err)
	}
	n := int64(3)
	for k, v := range top {
		switch k {
		case "messages", "input", "prompt":
			n += content(v)
		case "tools", "functions", "response_format", "system", "instructions":
			n += tokens(len(v))
		}
	}
	return n
}

// The single pass gives the documented estimate for every shape: escapes
// in names and text, whitespace, parts, images, token ids, nested arrays,
// tool calls, values of the wrong type.
func TestEstimateInputTokensMatchesTheRules(t *testing.T) {
	msgs := []string{
		`{"role":"user","content":"Say hello to the gateway."}`,
		`{"role":"user","content":"caf\u00e9 \"quoted\" line\nbreak \ud83d\ude00"}`,
		` { "role" : "system" , "content" : "spaced out" } `,
		`{"role":"user","content":[{"type":"text","text":"look"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},{"text":"no type"},"bare",{"type":"input_text","text":"x\\y"}]}`,
		`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]}`,
		`{"role":"tool","tool_call_id":"c1","content":"42"}`,
		`{"type":"input_image","image_url":"https://x/y.png"}`,
		`{"type":"function_call_output","call_id":"c","output":"done"}`,
		`{"typ\u0065":"image","con\u0074ent":"escaped names"}`,
		`{"role":"user","content":{"not":"a string"},"text":7,"arguments":{"a":1}}`,
		`"a bare string item"`, `12345`, `-7`, `[1,2,3]`, `["nested","strings"]`, `true`, `null`, `{}`, `[]`,
	}
	tops := []string{
		`"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]`,
		`"response_format":{"type":"json_object"}`, `"system":"You are terse."`, `"instructions":"Be brief."`,
		`"functions":[]`, `"temperature":0.2`, `"stream":true`, `"metadata":{"messages":"not counted"}`,
	}
	rng := rand.New(rand.NewPCG(7, 8))
	bodies := []string{`{}`, `{"model":"m"}`, `{"model":"m","messages":[]}`, `{"model":"m","messages":"a string"}`,
		`{"model":"m","input":"text"}`, `{"model":"m","prompt":["a","b"]}`, `{"model":"m","prompt":[[1,2],[3]]}`,
		`{"model":"m","input":{"odd":"shape"}}`, `{"model":"m","me\u0073sages":[{"content":"escaped key"}]}`}
	for range 500 {
		var b strings.Builder
		b.WriteString(`{"model":"m"`)
		for _, top := range tops {
			if rng.IntN(3) == 0 {
				b.WriteString("," + top)
			}
		}
		key := [...]string{"messages", "input", "prompt"}[rng.IntN(3)]
		b.WriteString(`, "` + key + `" : [`)
		for i := range rng.IntN(6) {
			if i > 0 {
				b.WriteString(" ,\n")
			}
			b.WriteString(msgs[rng.IntN(len(msgs))])
		}
		b.WriteString("]}")
		bodies = append(bodies, b.String())
	}
	for _, body := range bodies {
		r := &Request{Body: []byte(body)}
		if got, want := EstimateInputTokens(r), specEstimate(t, body); got != want {
			t.Fatalf("%s\nestimate %d, want %d", body, got, want)
		}
	}
}

func BenchmarkEstimateInputTokens(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant for a software company."}`)
	for sb.Len() < 1024 {
		sb.WriteString(`,{"role":"user","content":"How do I put a reverse proxy in front of two backends with health checks?"}`)
	}
	sb.WriteString(`],"temperature":0.2}`)
	r := &Request{Body: []byte(sb.String())}
	b.ReportAllocs()
	b.SetBytes(int64(len(r.Body)))
	for b.Loop() {
		EstimateInputTokens(r)
	}
}
