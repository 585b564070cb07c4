package openai

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"
)

// parseRequestRef is what ParseRequest means, written plainly with gjson
// over a copy of the body: the reference the differential tests compare
// the in-place parser and splicer against.
func parseRequestRef(op Op, body []byte) (*Request, *Error) {
	if oe := CheckBody(body, 0); oe != nil {
		return nil, oe // CheckBody has tests of its own
	}
	root := gjson.ParseBytes(body)
	if !root.IsObject() {
		return nil, BadRequest("not an object", "", "invalid_json")
	}
	req := &Request{Op: op, Body: body}
	var model, stream, streamOpts, maxTokens, maxCompletion, maxOutput, messages gjson.Result
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "model":
			model = v
		case "stream":
			stream = v
		case "stream_options":
			streamOpts = v
		case "max_tokens":
			maxTokens = v
		case "max_completion_tokens":
			maxCompletion = v
		case "max_output_tokens":
			maxOutput = v
		case "messages":
			messages = v
		case "input":
			if op == OpResponses {
				messages = v
			}
		}
		return true
	})
	if model.Type != gjson.String || model.Str == "" {
		return nil, BadRequest("model", "model", "missing_model")
	}
	if len(model.Str) > MaxModelName || strings.ContainsFunc(model.Str, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, BadRequest("model", "model", "invalid_value")
	}
	req.Model = model.Str
	switch stream.Type {
	case gjson.True:
		req.Stream = true
	case gjson.False, gjson.Null:
	default:
		if stream.Exists() {
			return nil, BadRequest("stream", "stream", "invalid_type")
		}
	}
	if req.Stream && op == OpEmbeddings {
		return nil, BadRequest("stream", "stream", "invalid_value")
	}
	req.ClientUsage = streamOpts.Get("include_usage").Type == gjson.True
	for _, mt := range [...]gjson.Result{maxCompletion, maxTokens, maxOutput} {
		if !mt.Exists() || mt.Type == gjson.Null {
			continue
		}
		if mt.Type != gjson.Number || mt.Int() < 1 || float64(mt.Int()) != mt.Num {
			return nil, BadRequest("max", "max_tokens", "invalid_value")
		}
		req.MaxTokens = max(req.MaxTokens, mt.Int())
	}
	switch {
	case messages.IsArray():
		n := 0
		messages.ForEach(func(_, _ gjson.Result) bool { n++; return true })
		req.Messages = n
	case op == OpChat:
		return nil, BadRequest("messages", "messages", "missing_required_parameter")
	}
	if n := root.Get("n"); n.Exists() && n.Type != gjson.Null && (n.Type != gjson.Number || n.Num < 1 || n.Num > MaxChoices || n.Num != float64(int64(n.Num))) {
		return nil, BadRequest("n", "n", "invalid_value")
	}
	if len(root.Get("tools").Array()) > MaxTools {
		return nil, BadRequest("tools", "tools", "invalid_value")
	}
	if in := root.Get("input"); op == OpEmbeddings && in.IsArray() && len(in.Array()) > MaxEmbeddingInputs {
		return nil, BadRequest("input", "input", "invalid_value")
	}
	return req, nil
}

// upstreamBodyRef is what UpstreamBody means: sjson edits.
func upstreamBodyRef(r *Request, model string) ([]byte, error) {
	body := r.Body
	var err error
	for _, k := range SteeringMembers {
		if gjson.GetBytes(body, k).Exists() {
			if body, err = sjson.DeleteBytes(body, k); err != nil {
				return nil, err
			}
		}
	}
	if model != r.Model {
		if body, err = sjson.SetBytes(body, "model", model); err != nil {
			return nil, err
		}
	}
	if r.Stream && !r.ClientUsage && (r.Op == OpChat || r.Op == OpCompletions) {
		if body, err = sjson.SetBytes(body, "stream_options.include_usage", true); err != nil {
			return nil, err
		}
	}
	return body, nil
}

var ops = [...]Op{OpChat, OpCompletions, OpEmbeddings, OpResponses}

// checkRequest compares ParseRequest and UpstreamBody with the references
// for one body, every operation and a few upstream model names.
func checkRequest(t *testing.T, body []byte, models ...string) {
	t.Helper()
	orig := bytes.Clone(body)
	for _, op := range ops {
		got, gerr := ParseRequest(op, body, 0)
		want, werr := parseRequestRef(op, bytes.Clone(body))
		if (gerr == nil) != (werr == nil) || gerr != nil && (gerr.Code != werr.Code || gerr.Param != werr.Param) {
			t.Fatalf("op %v body %q: error %v, want %v", op, body, gerr, werr)
		}
		if gerr != nil {
			continue
		}
		if got.Model != want.Model || got.Stream != want.Stream || got.ClientUsage != want.ClientUsage ||
			got.MaxTokens != want.MaxTokens || got.Messages != want.Messages || got.Op != want.Op {
			t.Fatalf("op %v body %q: got %+v, want %+v", op, body, got, want)
		}
		for _, m := range append(models, got.Model) {
			ub, uerr := got.UpstreamBody(m)
			rb, rerr := upstreamBodyRef(want, m)
			if (uerr == nil) != (rerr == nil) || !bytes.Equal(ub, rb) {
				t.Fatalf("op %v stream %v body %q model %q:\n got %q (%v)\nwant %q (%v)", op, got.Stream, body, m, ub, uerr, rb, rerr)
			}
		}
		if !bytes.Equal(body, orig) {
			t.Fatalf("body modified: %q", body)
		}
	}
}

var requestBodies = []string{
	`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`,
	`{"model":"gpt-4o","messages":[],"stream":true}`,
	`{"model":"gpt-4o","messages":[],"stream":false}`,
	`{"model":"gpt-4o","messages":[],"stream":null}`,
	`{"model":"gpt-4o","messages":[],"stream":"yes"}`,
	`{"messages":[],"stream":true,"model":"last"}`,
	`  {"model" : "spaced" ,	"messages" : [ ] , "stream" : true }  ` + "\n",
	"\n\t{\n  \"model\": \"gpt-4o\",\n  \"messages\": [],\n  \"stream\": true\n}\n",
	`{"model":"gpt-4o","messages":[],"stream":true,"stream_options":{"include_usage":false}}`,
	`{"model":"gpt-4o","messages":[],"stream":true,"stream_options":{"include_usage":true}}`,
	`{"model":"gpt-4o","messages":[],"stream":true,"stream_options":{}}`,
	`{"model":"gpt-4o","messages":[],"stream":true,"stream_options":null}`,
	`{"model":"gpt-4o","messages":[],"stream":true,"stream_options":{"include_usage":"true"}}`,
	`{"model":"gpt-4o","messages":[],"stream":true,"stream_options":{"continuous_usage_stats":true}}`,
	`{"stream_options":{"include_usage":false},"model":"gpt-4o","messages":[],"stream":true}`,
	`{"model":"a\"b","messages":[],"stream":true}`,
	`{"model":"caf\u00e9","messages":[],"stream":true}`,
	`{"model":"café","messages":[],"stream":true}`,
	`{"model":"x\\y","messages":[],"stream":true}`,
	`{"model":"x\/y","messages":[]}`,
	`{"mod\u0065l":"escaped-key","messages":[],"stream":true}`,
	`{"model":"first","model":"second","messages":[],"stream":true}`,
	`{"model":"dup","messages":[],"stream":true,"stream_options":{},"stream_options":{"include_usage":true}}`,
	`{"model":"gpt-4o","messages":[{"role":"user","content":"{\"model\":\"inner\",\"stream_options\":1}"}],"stream":true}`,
	`{"model":"gpt-4o","metadata":{"model":"nested"},"messages":[],"stream":true}`,
	`{"model":"gpt-4o","prompt":"hi","stream":true,"max_tokens":16}`,
	`{"model":"gpt-4o","input":[1,2,3],"stream":true,"max_output_tokens":5}`,
	`{"model":"gpt-4o","input":"hi"}`,
	`{"model":"gpt-4o","messages":[],"max_completion_tokens":1.5}`,
	`{"model":"gpt-4o","messages":[],"max_tokens":0}`,
	`{"model":"","messages":[]}`,
	`{"model":3,"messages":[]}`,
	`{"messages":[]}`,
	`["model"]`,
	`"model"`,
	`{"model":"gpt-4o","messages":[]`,
	``,
	`   `,
	`{"model":"gpt-4o","messages":[],"stream":true}garbage`,
	`{"model":"gpt-4o","messages":[],"max_tokens":5,"max_completion_tokens":900}`,
	`{"model":"gpt-4o","api_base":"http://evil","messages":[],"base_url":"x","api_key":"k","user_config":{}}`,
	`{"model":"gpt-4o","messages":[{"role":"user","role":"system"}]}`,
	"{\"model\":\"a\\nb\",\"messages\":[]}",
	`{"model":"` + strings.Repeat("m", 300) + `","messages":[]}`,
	"{\"model\":\"bad\xffutf8\",\"messages\":[]}",
	`{"model":"deep","messages":[` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `]}`,
	`{"model":"m","messages":[],"n":129}`,
	`{"model":"m","messages":[],"n":128}`,
	`{"model":"m","messages":[],"n":1.5}`,
	`{"model":"m","messages":[],"n":"2"}`,
	`{"model":"m","messages":[],"tools":[` + strings.Repeat(`{},`, 128) + `{}]}`,
	`{"model":"m","input":[` + strings.Repeat(`"a",`, 2048) + `"a"]}`,
}

var upstreamModels = []string{"gpt-4o", "upstream-model", "", "a\"b", "café", "tab\there", "x\\y", "<&>", "\u2028", "deployments/x y"}

func TestRequestMatchesReference(t *testing.T) {
	for _, b := range requestBodies {
		checkRequest(t, []byte(b), upstreamModels...)
	}
}

func FuzzRequest(f *testing.F) {
	for _, b := range requestBodies {
		f.Add([]byte(b), "upstream")
	}
	f.Fuzz(func(t *testing.T, body []byte, model string) {
		checkRequest(t, body, model, "upstream-model")
	})
}

func TestParseRequestDoesNotAliasModel(t *testing.T) {
	body := []byte(`{"model":"gpt-4o","messages":[]}`)
	req, oerr := ParseRequest(OpChat, body, 0)
	if oerr != nil {
		t.Fatal(oerr)
	}
	copy(body[10:], "XXXXXX")
	if req.Model != "gpt-4o" {
		t.Fatalf("model changed with the body: %q", req.Model)
	}
}

func TestUpstreamBody(t *testing.T) {
	cases := []struct {
		body, model, want string
	}{
		{`{"model":"m","messages":[]}`, "m", `{"model":"m","messages":[]}`},
		{`{"model":"m","messages":[]}`, "up", `{"model":"up","messages":[]}`},
		{`{"model":"m","messages":[],"stream":true}`, "m", `{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}`},
		{`{"model":"m","messages":[],"stream":true}`, "up", `{"model":"up","messages":[],"stream":true,"stream_options":{"include_usage":true}}`},
		{` { "model" : "m" , "messages":[],"stream":true } `, "up", `{ "model" : "up" , "messages":[],"stream":true ,"stream_options":{"include_usage":true}}`},
		{`{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":false}}`, "up", `{"model":"up","messages":[],"stream":true,"stream_options":{"include_usage":true}}`},
		{`{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}`, "up", `{"model":"up","messages":[],"stream":true,"stream_options":{"include_usage":true}}`},
		{`{"model":"m\u00e9","messages":[]}`, "a\"b", `{"model":"a\"b","messages":[]}`},
	}
	for _, c := range cases {
		req, oerr := ParseRequest(OpChat, []byte(c.body), 0)
		if oerr != nil {
			t.Fatal(oerr)
		}
		got, err := req.UpstreamBody(c.model)
		if err != nil || string(got) != c.want {
			t.Errorf("%s with %q:\n got %s (%v)\nwant %s", c.body, c.model, got, err, c.want)
		}
		if !gjson.ValidBytes(got) {
			t.Errorf("invalid JSON: %s", got)
		}
	}
	// A Body replaced after parsing is rewritten from scratch.
	req, _ := ParseRequest(OpChat, []byte(`{"model":"m","messages":[],"stream":true}`), 0)
	req.Body = []byte(`{"messages":[],"model":"m","stream":true}`)
	got, _ := req.UpstreamBody("up")
	if want := `{"messages":[],"model":"up","stream":true,"stream_options":{"include_usage":true}}`; string(got) != want {
		t.Errorf("replaced body: got %s, want %s", got, want)
	}
	// So is a Request built by hand.
	req = &Request{Op: OpChat, Body: []byte(`{"model":"m"}`), Model: "m", Stream: true}
	got, _ = req.UpstreamBody("up")
	if want := `{"model":"up","stream_options":{"include_usage":true}}`; string(got) != want {
		t.Errorf("hand-built request: got %s, want %s", got, want)
	}
}

// benchBody is a chat request of at least size bytes (like the gateway's
// benchmark body).
func benchBody(model string, stream bool, size int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"` + model + `","messages":[`)
	b.WriteString(`{"role":"system","content":"You are a helpful assistant for a software company. Answer concisely and cite the documentation when you can."}`)
	turns := []string{
		`{"role":"user","content":"How do I put a reverse proxy in front of two backends with health checks?"}`,
		`{"role":"assistant","content":"Use reverse_proxy with two upstreams and enable active health checks with health_uri and health_interval."}`,
	}
	for i := 0; b.Len() < size-80; i++ {
		b.WriteString(",")
		b.WriteString(turns[i%len(turns)])
	}
	b.WriteString(`],"temperature":0.2,"user":"bench-user-0001"`)
	if stream {
		b.WriteString(`,"stream":true`)
	}
	b.WriteString(`}`)
	return []byte(b.String())
}

func BenchmarkParseRequest(b *testing.B) {
	for _, size := range []int{2 << 10, 256 << 10} {
		b.Run(byteSize(size), func(b *testing.B) {
			body := benchBody("bench", true, size)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				req, oerr := ParseRequest(OpChat, body, 0)
				if oerr != nil || req.Model != "bench" {
					b.Fatal(oerr)
				}
			}
		})
	}
}

func BenchmarkUpstreamBody(b *testing.B) {
	cases := []struct {
		name   string
		stream bool
		model  string
	}{
		{"model", false, "fake-model"},
		{"stream", true, "bench"},
		{"model+stream", true, "fake-model"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			body := benchBody("bench", c.stream, 2<<10)
			req, oerr := ParseRequest(OpChat, body, 0)
			if oerr != nil {
				b.Fatal(oerr)
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := req.UpstreamBody(c.model); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func byteSize(n int) string { return strconv.Itoa(n>>10) + "KB" }

func TestCheckBody(t *testing.T) {
	cases := []struct{ body, param, msg string }{
		{`{"model":"a","model":"b"}`, "model", `duplicate member "model"`},
		{`{"model":"a","mod\u0065l":"b"}`, "model", `duplicate member "model"`},
		{`{"max_tokens":1,"max_tokens":9}`, "max_tokens", `duplicate member "max_tokens"`},
		{`{"messages":[{"role":"user","content":"x","content":"y"}]}`, "messages[0].content", `duplicate member "messages[0].content"`},
		{`{"a":` + strings.Repeat("[", 129) + strings.Repeat("]", 129) + `}`, "", "deeper than 128 levels"},
		{"{\"a\":\"\xc3\"}", "", "not valid UTF-8"},
		{`{"a":}`, "", "could not parse the JSON body"},
	}
	for _, c := range cases {
		oe := CheckBody([]byte(c.body), 0)
		if oe == nil || oe.Status != 400 || oe.Code != "invalid_json" || oe.Param != c.param || !strings.Contains(oe.Message, c.msg) {
			t.Errorf("CheckBody(%s) = %+v, want param %q and %q", c.body, oe, c.param, c.msg)
		}
	}
	if oe := CheckBody([]byte(`{"a":[[[]]]}`), 3); oe == nil || !strings.Contains(oe.Message, "deeper than 3") {
		t.Errorf("maxDepth 3: %v", oe)
	}
	if oe := CheckBody([]byte(`{"a":[[]]}`), 3); oe != nil {
		t.Errorf("depth 3 within 3: %v", oe)
	}
}

func TestUpstreamBodyDropsSteering(t *testing.T) {
	req, oe := ParseRequest(OpChat, []byte(`{"model":"m","api_base":"http://x","messages":[],"user_config":{"a":1},"api_key":"sk"}`), 0)
	if oe != nil {
		t.Fatal(oe)
	}
	for _, model := range []string{"m", "up"} {
		got, err := req.UpstreamBody(model)
		if want := `{"model":"` + model + `","messages":[]}`; err != nil || string(got) != want {
			t.Errorf("UpstreamBody(%q) = %s, want %s", model, got, want)
		}
	}
}

func TestMaxTokensIsTheLargestCap(t *testing.T) {
	req, oe := ParseRequest(OpChat, []byte(`{"model":"m","messages":[],"max_completion_tokens":5,"max_tokens":900}`), 0)
	if oe != nil || req.MaxTokens != 900 {
		t.Fatalf("MaxTokens = %v (%v), want 900", req, oe)
	}
}
