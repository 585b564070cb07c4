package gemini

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// setup starts a fakellm and a provider talking to it.
func setup(t *testing.T, opts fakellm.Options, cfg Config) (*fakellm.Server, *Provider) {
	t.Helper()
	s := fakellm.New(opts)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	cfg.Name = "gem"
	if cfg.BaseURL == "" {
		cfg.BaseURL = ts.URL
	}
	h := provider.NewHTTP("gem", provider.Timeouts{Idle: 5 * time.Second})
	t.Cleanup(h.Close)
	p, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	return s, p
}

func do(t *testing.T, p *Provider, op openai.Op, body string) (*provider.Response, error) {
	t.Helper()
	req := parseReq(t, op, body)
	return p.Do(context.Background(), &provider.Call{Req: req, Model: "gemini-test"})
}

func TestIntegrationChat(t *testing.T) {
	s, p := setup(t, fakellm.Options{Chunks: 5}, Config{APIKey: "secret-key"})
	body := `{"model":"my-alias","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello"}],"max_tokens":100}`
	resp, err := do(t, p, openai.OpChat, body)
	if err != nil {
		t.Fatal(err)
	}
	r := gjson.ParseBytes(resp.Body)
	if c := r.Get("choices.0.message.content").Str; c != "Hello from fakellm word3 word4" {
		t.Errorf("content %q", c)
	}
	if r.Get("object").Str != "chat.completion" || r.Get("model").Str != "gemini-test" || r.Get("choices.0.finish_reason").Str != "stop" ||
		!strings.HasPrefix(r.Get("id").Str, "chatcmpl-") {
		t.Errorf("answer %s", resp.Body)
	}
	// 1 content: 3 + 2 words, + 2 system words
	if u := openai.UsageOf(resp.Body); u.InputTokens != 7 || u.OutputTokens != 5 {
		t.Errorf("usage %+v", u)
	}
	st := s.Stats()
	last := len(st.Paths) - 1
	if st.Paths[last] != "/v1beta/models/gemini-test:generateContent" {
		t.Errorf("path %q", st.Paths[last])
	}
	if h := st.Headers[last]; h.Get("X-Goog-Api-Key") != "secret-key" || h.Get("Authorization") != "" {
		t.Errorf("headers %v", h)
	}
	sent := gjson.ParseBytes(st.Bodies[last])
	if sent.Get("systemInstruction.parts.0.text").Str != "Be brief." || sent.Get("generationConfig.maxOutputTokens").Int() != 100 {
		t.Errorf("sent %s", st.Bodies[last])
	}

	// max tokens reached
	resp, err = do(t, p, openai.OpChat, `{"model":"m","messages":[{"role":"user","content":"x"}],"max_completion_tokens":2,"n":2}`)
	if err != nil {
		t.Fatal(err)
	}
	r = gjson.ParseBytes(resp.Body)
	if r.Get("choices.#").Int() != 2 || r.Get("choices.1.finish_reason").Str != "length" || r.Get("choices.1.message.content").Str != "Hello from" {
		t.Errorf("length: %s", resp.Body)
	}
}

func readAll(t *testing.T, st provider.Stream) ([]string, error) {
	t.Helper()
	defer st.Close()
	var evs []string
	for {
		ev, err := st.Next()
		if err != nil {
			return evs, err
		}
		evs = append(evs, string(ev.Data))
	}
}

func TestIntegrationStream(t *testing.T) {
	s, p := setup(t, fakellm.Options{Chunks: 4}, Config{APIKey: "k"})
	resp, err := do(t, p, openai.OpChat, `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := readAll(t, resp.Stream)
	if err != io.EOF {
		t.Fatalf("end %v", err)
	}
	var text strings.Builder
	id := gjson.Get(evs[0], "id").Str
	var finish string
	for i, ev := range evs {
		r := gjson.Parse(ev)
		if r.Get("id").Str != id || r.Get("object").Str != "chat.completion.chunk" || r.Get("model").Str != "gemini-test" {
			t.Errorf("event %d header: %s", i, ev)
		}
		if i == 0 && r.Get("choices.0.delta.role").Str != "assistant" {
			t.Errorf("first event: %s", ev)
		}
		text.WriteString(r.Get("choices.0.delta.content").Str)
		if f := r.Get("choices.0.finish_reason").Str; f != "" {
			finish = f
		}
	}
	if text.String() != "Hello from fakellm word3" || finish != "stop" {
		t.Errorf("text %q finish %q", text.String(), finish)
	}
	last := gjson.Parse(evs[len(evs)-1])
	if last.Get("choices.#").Int() != 0 || last.Get("usage.prompt_tokens").Int() != 4 || last.Get("usage.completion_tokens").Int() != 4 {
		t.Errorf("usage chunk %s", evs[len(evs)-1])
	}
	st := s.Stats()
	if p := st.Paths[len(st.Paths)-1]; p != "/v1beta/models/gemini-test:streamGenerateContent?alt=sse" {
		t.Errorf("path %q", p)
	}
}

func TestIntegrationToolCall(t *testing.T) {
	s, p := setup(t, fakellm.Options{}, Config{APIKey: "k"})
	tools := `"tools":[{"type":"function","function":{"name":"get_weather","description":"d","strict":true,
		"parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"],"additionalProperties":false}}}]`
	s.Enqueue(fakellm.Behavior{ToolCall: true})
	resp, err := do(t, p, openai.OpChat, `{"model":"m","messages":[{"role":"user","content":"weather?"}],`+tools+`}`)
	if err != nil {
		t.Fatal(err)
	}
	c := gjson.GetBytes(resp.Body, "choices.0")
	if c.Get("finish_reason").Str != "tool_calls" || c.Get("message.content").Type != gjson.Null ||
		c.Get("message.tool_calls.0.function.name").Str != "get_weather" ||
		c.Get("message.tool_calls.0.function.arguments").Str != `{"city":"Paris","days":1}` {
		t.Fatalf("tool call: %s", resp.Body)
	}
	callID := c.Get("message.tool_calls.0.id").Str

	// stream
	s.Enqueue(fakellm.Behavior{ToolCall: true})
	resp, err = do(t, p, openai.OpChat, `{"model":"m","stream":true,"messages":[{"role":"user","content":"weather?"}],`+tools+`}`)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := readAll(t, resp.Stream)
	if err != io.EOF {
		t.Fatal(err)
	}
	var call, finish gjson.Result
	for _, ev := range evs {
		if tc := gjson.Get(ev, "choices.0.delta.tool_calls.0"); tc.Exists() {
			call = tc
		}
		if f := gjson.Get(ev, "choices.0.finish_reason"); f.Type == gjson.String {
			finish = f
		}
	}
	if call.Get("index").Int() != 0 || call.Get("type").Str != "function" || !strings.HasPrefix(call.Get("id").Str, "call_") ||
		call.Get("function.arguments").Str != `{"city":"Paris","days":1}` || finish.Str != "tool_calls" {
		t.Errorf("stream tool call %v / %v", call, finish)
	}

	// round trip: the answer to the call goes back; Echo shows what Gemini got
	s.Enqueue(fakellm.Behavior{Echo: true})
	resp, err = do(t, p, openai.OpChat, `{"model":"m","messages":[{"role":"user","content":"weather?"},
		{"role":"assistant","content":null,"tool_calls":[{"id":"`+callID+`","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"days\":1}"}}]},
		{"role":"tool","tool_call_id":"`+callID+`","content":"{\"temp\":21}"}],`+tools+`}`)
	if err != nil {
		t.Fatal(err)
	}
	sent := gjson.Parse(gjson.GetBytes(resp.Body, "choices.0.message.content").Str)
	if sent.Get("contents.1.role").Str != "model" || sent.Get("contents.1.parts.0.functionCall.args.city").Str != "Paris" ||
		sent.Get("contents.2.role").Str != "user" || sent.Get("contents.2.parts.0.functionResponse.name").Str != "get_weather" ||
		sent.Get("contents.2.parts.0.functionResponse.response.temp").Int() != 21 ||
		sent.Get("tools.0.functionDeclarations.0.parameters.additionalProperties").Exists() {
		t.Errorf("sent to Gemini: %s", sent.Raw)
	}
}

func TestIntegrationEmbeddings(t *testing.T) {
	s, p := setup(t, fakellm.Options{}, Config{APIKey: "k"})
	resp, err := do(t, p, openai.OpEmbeddings, `{"model":"m","input":["hello world","good bye"],"dimensions":8}`)
	if err != nil {
		t.Fatal(err)
	}
	r := gjson.ParseBytes(resp.Body)
	if r.Get("object").Str != "list" || r.Get("data.#").Int() != 2 || r.Get("model").Str != "gemini-test" ||
		r.Get("data.1.index").Int() != 1 || r.Get("data.1.object").Str != "embedding" || r.Get("usage.prompt_tokens").Int() != 5 { // (11+3)/4 + (8+3)/4
		t.Errorf("answer %s", resp.Body)
	}
	want := fakellm.Embed("good bye", 8)
	got := r.Get("data.1.embedding").Array()
	if len(got) != 8 {
		t.Fatalf("dims %d", len(got))
	}
	for i := range want {
		if float32(got[i].Num) != want[i] {
			t.Errorf("value %d: %v, want %v", i, got[i].Num, want[i])
		}
	}
	if st := s.Stats(); st.Paths[len(st.Paths)-1] != "/v1beta/models/gemini-test:batchEmbedContents" {
		t.Errorf("path %q", st.Paths[len(st.Paths)-1])
	}

	resp, err = do(t, p, openai.OpEmbeddings, `{"model":"m","input":"hello world","encoding_format":"base64"}`)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(gjson.GetBytes(resp.Body, "data.0.embedding").Str)
	if err != nil || len(raw) != 4*fakellm.DefaultDimensions {
		t.Fatalf("base64: %v, %d bytes", err, len(raw))
	}
	for i, f := range fakellm.Embed("hello world", 0) {
		if g := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])); g != f {
			t.Fatalf("value %d: %v, want %v", i, g, f)
		}
	}

	if _, err := do(t, p, openai.OpEmbeddings, `{"model":"m","input":[[1,2,3]]}`); err == nil || err.(*provider.Error).Param != "input" {
		t.Errorf("token input: %v", err)
	}
}

func TestIntegrationErrors(t *testing.T) {
	s, p := setup(t, fakellm.Options{}, Config{APIKey: "k"})
	chat := `{"model":"m","messages":[{"role":"user","content":"hi"}]}`

	s.Enqueue(fakellm.Behavior{Status: 429, RetryAfter: "30"})
	_, err := do(t, p, openai.OpChat, chat)
	pe, ok := err.(*provider.Error)
	if !ok || pe.Kind != provider.KindStatus || pe.Status != 429 || pe.Type != openai.TypeRateLimit || pe.Code != "resource_exhausted" ||
		pe.RetryAfter != 30*time.Second || !pe.Retryable() || pe.Provider != "gem" {
		t.Fatalf("429: %#v", err)
	}
	if ce := pe.ClientError(); ce.Status != 429 || ce.RetryAfter != 30 {
		t.Errorf("client error %+v", *ce)
	}

	s.Enqueue(fakellm.Behavior{Status: 503})
	_, err = do(t, p, openai.OpChat, `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if pe, ok := err.(*provider.Error); !ok || pe.Status != 503 || pe.Code != "unavailable" || !pe.Retryable() {
		t.Errorf("503: %#v", err)
	}

	s.Enqueue(fakellm.Behavior{Garbage: true})
	_, err = do(t, p, openai.OpChat, chat)
	if pe, ok := err.(*provider.Error); !ok || pe.Kind != provider.KindProtocol {
		t.Errorf("garbage: %#v", err)
	}
	s.Enqueue(fakellm.Behavior{Garbage: true})
	_, err = do(t, p, openai.OpChat, `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if pe, ok := err.(*provider.Error); !ok || pe.Kind != provider.KindProtocol {
		t.Errorf("garbage stream: %#v", err)
	}

	// unsupported operation and parameter: refused before any request
	before := s.Stats().Total
	_, err = do(t, p, openai.OpCompletions, `{"model":"m","prompt":"hi"}`)
	if pe, ok := err.(*provider.Error); !ok || pe.Status != 400 || pe.Code != "unsupported_operation" || pe.Retryable() {
		t.Errorf("completions: %#v", err)
	}
	_, err = do(t, p, openai.OpChat, `{"model":"m","messages":[{"role":"user","content":"hi"}],"logit_bias":{"1":1}}`)
	if pe, ok := err.(*provider.Error); !ok || pe.Param != "logit_bias" || pe.Provider != "gem" {
		t.Errorf("logit_bias: %#v", err)
	}
	if s.Stats().Total != before {
		t.Error("refused requests reached the upstream")
	}

	// no key: Google's 403
	_, p2 := setup(t, fakellm.Options{}, Config{})
	_, err = do(t, p2, openai.OpChat, chat)
	if pe, ok := err.(*provider.Error); !ok || pe.Status != 403 || pe.Type != openai.TypePermission || pe.ClientError().Status != 502 {
		t.Errorf("no key: %#v", err)
	}
}

func TestIntegrationMidStreamCut(t *testing.T) {
	s, p := setup(t, fakellm.Options{Chunks: 5}, Config{APIKey: "k"})
	s.Enqueue(fakellm.Behavior{FailAfter: 2})
	resp, err := do(t, p, openai.OpChat, `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := readAll(t, resp.Stream)
	pe, ok := err.(*provider.Error)
	if !ok || !pe.StreamStarted || (pe.Kind != provider.KindProtocol && pe.Kind != provider.KindConnect) {
		t.Fatalf("cut: %#v after %d events", err, len(evs))
	}
	var text strings.Builder
	for _, ev := range evs {
		text.WriteString(gjson.Get(ev, "choices.0.delta.content").Str)
	}
	if text.String() != "Hello from" {
		t.Errorf("text before the cut %q", text.String())
	}

	// the same cut of a non-stream answer
	s.Enqueue(fakellm.Behavior{FailAfter: 1})
	_, err = do(t, p, openai.OpChat, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if _, ok := err.(*provider.Error); !ok {
		t.Errorf("non-stream cut: %#v", err)
	}
}

// TestRetryAfterHeader checks that a Retry-After header wins over
// RetryInfo, and that a rejected API key reads as an authentication
// failure.
func TestRetryAfterHeaderAndBadKey(t *testing.T) {
	var status int
	var body string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("key") != "" {
			t.Error("API key in the URL")
		}
		if status == 429 {
			w.Header().Set("Retry-After", "5")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(ts.Close)
	_, p := setup(t, fakellm.Options{}, Config{BaseURL: ts.URL + "/v1beta/", APIKey: "k"})
	if p.URL("models/x", "generateContent") != ts.URL+"/v1beta/models/x:generateContent" {
		t.Errorf("URL %s", p.URL("models/x", "generateContent"))
	}

	status, body = 429, `{"error":{"code":429,"message":"slow down","status":"RESOURCE_EXHAUSTED","details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}}`
	_, err := do(t, p, openai.OpChat, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if pe, ok := err.(*provider.Error); !ok || pe.RetryAfter != 5*time.Second {
		t.Errorf("429 with header: %#v", err)
	}

	status, body = 400, `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
		"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}`
	_, err = do(t, p, openai.OpChat, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	pe, ok := err.(*provider.Error)
	if !ok || pe.Status != 401 || pe.Type != openai.TypeAuthentication {
		t.Fatalf("bad key: %#v", err)
	}
	if ce := pe.ClientError(); ce.Status != 502 || strings.Contains(ce.Message, "API key") {
		t.Errorf("bad key reaches the client as %+v", *ce)
	}
}

func TestNew(t *testing.T) {
	h := provider.NewHTTP("x", provider.Timeouts{})
	defer h.Close()
	p, err := New(Config{Name: "x"}, h)
	if err != nil || p.URL("gemini-2.5-flash", "generateContent") != DefaultBaseURL+"/v1beta/models/gemini-2.5-flash:generateContent" || p.Name() != "x" {
		t.Errorf("default: %v %v", p, err)
	}
	p, _ = New(Config{Name: "x", BaseURL: "https://proxy.test/google/v1/"}, h)
	if got := p.URL("tunedModels/mine", "generateContent"); got != "https://proxy.test/google/v1/tunedModels/mine:generateContent" {
		t.Errorf("v1 base: %s", got)
	}
	for _, bad := range []string{"ftp://x", "https://user:pw@x", "https://x/?key=1", "not a url"} {
		if _, err := New(Config{Name: "x", BaseURL: bad}, h); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, m := range []string{"a:streamGenerateContent", "../x", "a/b", "", "a?b"} {
		_, err := p.Do(context.Background(), &provider.Call{Req: parseReq(t, openai.OpChat, `{"model":"m","messages":[]}`), Model: m})
		if pe, ok := err.(*provider.Error); !ok || pe.Param != "model" {
			t.Errorf("model %q: %v", m, err)
		}
	}
}
