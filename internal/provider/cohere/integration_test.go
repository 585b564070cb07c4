package cohere

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

const upstreamModel = "command-r-plus-08-2024"

// newFake starts a fakellm and a provider pointing at it.
func newFake(t *testing.T, apiKey string) (*fakellm.Server, *Provider) {
	t.Helper()
	fake := fakellm.New(fakellm.Options{})
	ts := httptest.NewServer(fake)
	t.Cleanup(ts.Close)
	h := provider.NewHTTP("co", provider.Timeouts{Idle: 5 * time.Second})
	t.Cleanup(h.Close)
	p, err := New(Config{Name: "co", BaseURL: ts.URL + "/", APIKey: apiKey}, h)
	if err != nil {
		t.Fatal(err)
	}
	return fake, p
}

func do(t *testing.T, p *Provider, op openai.Op, body string) (*provider.Response, error) {
	t.Helper()
	return p.Do(context.Background(), &provider.Call{Req: parse(t, op, body), Model: upstreamModel})
}

// events drains a stream: the chunks and the final error (io.EOF when clean).
func events(t *testing.T, st provider.Stream) ([]string, error) {
	t.Helper()
	defer st.Close()
	var out []string
	for {
		ev, err := st.Next()
		if err != nil {
			return out, err
		}
		if !gjson.ValidBytes(ev.Data) || len(ev.Name) != 0 {
			t.Fatalf("bad event %q %s", ev.Name, ev.Data)
		}
		out = append(out, string(ev.Data))
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	h := provider.NewHTTP("x", provider.Timeouts{})
	defer h.Close()
	p, err := New(Config{Name: "x"}, h)
	if err != nil || p.URL("v2/chat") != "https://api.cohere.com/v2/chat" || p.URL("v2/embed") != "https://api.cohere.com/v2/embed" || p.Name() != "x" {
		t.Fatalf("defaults: %v %+v", err, p)
	}
	for _, base := range []string{"ftp://x", "api.cohere.com", "https://user:pw@api.cohere.com", "http://"} {
		if _, err := New(Config{Name: "x", BaseURL: base}, h); err == nil {
			t.Errorf("%s accepted", base)
		}
	}
}

func TestIntegrationChat(t *testing.T) {
	t.Parallel()
	fake, p := newFake(t, "test-key")
	resp, err := do(t, p, openai.OpChat, `{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there"}],"temperature":0.2}`)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Stream != nil || !gjson.ValidBytes(resp.Body) {
		t.Fatalf("response %+v", resp)
	}
	b := string(resp.Body)
	if gjson.Get(b, "object").Str != "chat.completion" || gjson.Get(b, "model").Str != upstreamModel ||
		gjson.Get(b, "choices.0.message.content").Str != "Hello from fakellm word3 word4" ||
		gjson.Get(b, "choices.0.finish_reason").Str != "stop" || len(gjson.Get(b, "id").Str) != 36 {
		t.Errorf("answer %s", b)
	}
	if u := openai.UsageOf(resp.Body); !u.Known || u.InputTokens != 3+2+3+2 || u.OutputTokens != 5 {
		t.Errorf("usage %+v", u)
	}
	st := fake.Stats()
	if st.Requests["/v2/chat"] != 1 || st.Headers[0].Get("Authorization") != "Bearer test-key" {
		t.Fatalf("upstream saw %v %v", st.Requests, st.Headers)
	}
	sent := string(st.Bodies[0])
	if gjson.Get(sent, "model").Str != upstreamModel || gjson.Get(sent, "temperature").Num != 0.2 || gjson.Get(sent, "stream").Exists() {
		t.Errorf("upstream body %s", sent)
	}

	resp, err = do(t, p, openai.OpChat, `{"model":"m","max_completion_tokens":2,"messages":[{"role":"user","content":"hi"}]}`)
	if err != nil || gjson.GetBytes(resp.Body, "choices.0.finish_reason").Str != "length" {
		t.Errorf("max tokens: %v %s", err, resp.Body)
	}
}

func TestIntegrationEcho(t *testing.T) {
	t.Parallel()
	fake, p := newFake(t, "k")
	fake.Enqueue(fakellm.Behavior{Echo: true})
	resp, err := do(t, p, openai.OpChat, `{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required","stop":"x"}`)
	if err != nil {
		t.Fatal(err)
	}
	// The echoed content is the body Cohere received.
	jsonEqual(t, []byte(gjson.GetBytes(resp.Body, "choices.0.message.content").Str),
		`{"model":"`+upstreamModel+`","messages":[{"role":"user","content":"hi"}],"stop_sequences":["x"],
		  "tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"REQUIRED"}`)
}

func TestIntegrationStream(t *testing.T) {
	t.Parallel()
	_, p := newFake(t, "k")
	resp, err := do(t, p, openai.OpChat, `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Stream == nil || resp.Body != nil {
		t.Fatalf("response %+v", resp)
	}
	chunks, err := events(t, resp.Stream)
	if err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	if len(chunks) != 1+5+1+1 {
		t.Fatalf("%d chunks:\n%s", len(chunks), strings.Join(chunks, "\n"))
	}
	id := gjson.Get(chunks[0], "id").Str
	var text strings.Builder
	for i, c := range chunks {
		if gjson.Get(c, "id").Str != id || gjson.Get(c, "model").Str != upstreamModel || gjson.Get(c, "object").Str != "chat.completion.chunk" {
			t.Errorf("chunk %d: %s", i, c)
		}
		text.WriteString(gjson.Get(c, "choices.0.delta.content").Str)
	}
	if gjson.Get(chunks[0], "choices.0.delta.role").Str != "assistant" || text.String() != "Hello from fakellm word3 word4" ||
		gjson.Get(chunks[6], "choices.0.finish_reason").Str != "stop" || gjson.Get(chunks[7], "choices.#").Int() != 0 {
		t.Errorf("chunks:\n%s", strings.Join(chunks, "\n"))
	}
	if u := openai.ParseUsage(gjson.Get(chunks[7], "usage")); u.InputTokens != 4 || u.OutputTokens != 5 {
		t.Errorf("usage %+v", u)
	}
}

const toolBody = `"messages":[{"role":"user","content":"weather?"}],
  "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"unit":{"enum":["c","f"]}}}}}]`

func TestIntegrationToolCall(t *testing.T) {
	t.Parallel()
	fake, p := newFake(t, "k")
	fake.Enqueue(fakellm.Behavior{ToolCall: true}, fakellm.Behavior{ToolCall: true, Chunks: 3})

	resp, err := do(t, p, openai.OpChat, `{"model":"m",`+toolBody+`}`)
	if err != nil {
		t.Fatal(err)
	}
	b := string(resp.Body)
	call := gjson.Get(b, "choices.0.message.tool_calls.0")
	if gjson.Get(b, "choices.0.finish_reason").Str != "tool_calls" || gjson.Get(b, "choices.0.message.content").Type != gjson.Null ||
		call.Get("function.name").Str != "get_weather" || call.Get("function.arguments").Str != `{"city":"Paris","unit":"c"}` ||
		!strings.HasPrefix(call.Get("id").Str, "get_weather_") {
		t.Fatalf("answer %s", b)
	}

	// Send the call and its result back, streaming the next answer.
	resp, err = do(t, p, openai.OpChat, `{"model":"m","stream":true,"messages":[{"role":"user","content":"weather?"},
	  {"role":"assistant","content":null,"tool_calls":[`+call.Raw+`]},
	  {"role":"tool","tool_call_id":`+call.Get("id").Raw+`,"content":"{\"temp\":21}"}],`+toolBody[len(`"messages":[{"role":"user","content":"weather?"}],`):]+`,"stream_options":{"include_usage":true}}`)
	if err != nil {
		t.Fatal(err)
	}
	sent := string(fake.Stats().Bodies[1])
	if gjson.Get(sent, "messages.1.tool_calls.0.id").Str != call.Get("id").Str || gjson.Get(sent, "messages.2.role").Str != "tool" ||
		gjson.Get(sent, "messages.2.content.0.document.data").Str != `{"temp":21}` {
		t.Errorf("upstream body %s", sent)
	}
	chunks, err := events(t, resp.Stream)
	if err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	// role, tool-call-start, 3 argument pieces, finish, usage
	if len(chunks) != 7 {
		t.Fatalf("%d chunks:\n%s", len(chunks), strings.Join(chunks, "\n"))
	}
	var args strings.Builder
	for _, c := range chunks[1:5] {
		tc := gjson.Get(c, "choices.0.delta.tool_calls.0")
		if tc.Get("index").Int() != 0 {
			t.Errorf("index in %s", c)
		}
		args.WriteString(tc.Get("function.arguments").Str)
	}
	if gjson.Get(chunks[1], "choices.0.delta.tool_calls.0.function.name").Str != "get_weather" ||
		args.String() != `{"city":"Paris","unit":"c"}` || gjson.Get(chunks[5], "choices.0.finish_reason").Str != "tool_calls" {
		t.Errorf("chunks:\n%s", strings.Join(chunks, "\n"))
	}
}

func TestIntegrationEmbeddings(t *testing.T) {
	t.Parallel()
	fake, p := newFake(t, "k")
	resp, err := do(t, p, openai.OpEmbeddings, `{"model":"m","input":["hello world","the cat sat"],"dimensions":16}`)
	if err != nil {
		t.Fatal(err)
	}
	b := string(resp.Body)
	if gjson.Get(b, "object").Str != "list" || gjson.Get(b, "data.#").Int() != 2 || gjson.Get(b, "model").Str != upstreamModel {
		t.Fatalf("answer %s", b)
	}
	if u := openai.UsageOf(resp.Body); u.InputTokens != 5 {
		t.Errorf("usage %+v", u)
	}
	for i, text := range []string{"hello world", "the cat sat"} {
		want := fakellm.Embed(text, 16)
		got := gjson.Get(b, "data."+string(rune('0'+i))+".embedding").Array()
		if len(got) != 16 || gjson.Get(b, "data."+string(rune('0'+i))+".index").Int() != int64(i) {
			t.Fatalf("vector %d: %v", i, got)
		}
		for j := range want {
			if float32(got[j].Num) != want[j] {
				t.Fatalf("vector %d[%d] = %v, want %v", i, j, got[j].Num, want[j])
			}
		}
	}
	sent := string(fake.Stats().Bodies[0])
	if gjson.Get(sent, "input_type").Str != "search_document" || gjson.Get(sent, "output_dimension").Int() != 16 {
		t.Errorf("upstream body %s", sent)
	}

	resp, err = do(t, p, openai.OpEmbeddings, `{"model":"m","input":"hello","encoding_format":"base64","input_type":"search_query"}`)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(gjson.GetBytes(resp.Body, "data.0.embedding").Str)
	want := fakellm.Embed("hello", 0)
	if err != nil || len(raw) != 4*len(want) {
		t.Fatalf("base64: %v %d", err, len(raw))
	}
	for j := range want {
		if f := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:])); f != want[j] {
			t.Fatalf("[%d] = %v, want %v", j, f, want[j])
		}
	}
	if gjson.Get(string(fake.Stats().Bodies[1]), "input_type").Str != "search_query" {
		t.Errorf("input_type override lost")
	}
}

func TestIntegrationErrors(t *testing.T) {
	t.Parallel()
	fake, p := newFake(t, "k")
	fake.Enqueue(fakellm.Behavior{Status: 429, RetryAfter: "7"})
	_, err := do(t, p, openai.OpChat, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Kind != provider.KindStatus || pe.Status != 429 || pe.RetryAfter != 7*time.Second ||
		!pe.Retryable() || pe.Provider != "co" || pe.Type != openai.TypeRateLimit || !strings.Contains(pe.Message, "Trial key") {
		t.Fatalf("429: %#v", err)
	}
	if ce := pe.ClientError(); ce.Status != 429 || ce.RetryAfter != 7 || ce.Code != "rate_limit_exceeded" {
		t.Errorf("client error %+v", ce)
	}

	fake.Enqueue(fakellm.Behavior{Status: 498})
	_, err = do(t, p, openai.OpChat, `{"model":"m","messages":[]}`)
	if !errors.As(err, &pe) || pe.Status != 401 || pe.Type != openai.TypeAuthentication || pe.Retryable() {
		t.Errorf("498: %#v", err)
	}

	fake.Enqueue(fakellm.Behavior{Status: 503})
	_, err = do(t, p, openai.OpEmbeddings, `{"model":"m","input":"x"}`)
	if !errors.As(err, &pe) || pe.Status != 503 || !pe.Retryable() || pe.Type != openai.TypeServer {
		t.Errorf("503: %#v", err)
	}

	// Refused before any upstream request.
	before := fake.Stats().Total
	_, err = do(t, p, openai.OpChat, `{"model":"m","n":3,"messages":[]}`)
	if !errors.As(err, &pe) || pe.Status != 400 || pe.Param != "n" || pe.Retryable() || pe.Provider != "co" {
		t.Errorf("n: %#v", err)
	}
	_, err = do(t, p, openai.OpCompletions, `{"model":"m","prompt":"x"}`)
	if !errors.As(err, &pe) || pe.Status != 400 || pe.Code != "unsupported_operation" {
		t.Errorf("completions: %#v", err)
	}
	if fake.Stats().Total != before {
		t.Errorf("refused requests reached the upstream")
	}

	fake.Enqueue(fakellm.Behavior{Garbage: true})
	_, err = do(t, p, openai.OpChat, `{"model":"m","messages":[]}`)
	if !errors.As(err, &pe) || pe.Kind != provider.KindProtocol {
		t.Errorf("garbage: %#v", err)
	}
	fake.Enqueue(fakellm.Behavior{FailAfter: 1})
	_, err = do(t, p, openai.OpChat, `{"model":"m","messages":[]}`)
	if !errors.As(err, &pe) || !pe.Retryable() {
		t.Errorf("cut JSON: %#v", err)
	}
}

func TestIntegrationUnauthorized(t *testing.T) {
	t.Parallel()
	_, p := newFake(t, "")
	_, err := do(t, p, openai.OpChat, `{"model":"m","messages":[]}`)
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Status != 401 || pe.Type != openai.TypeAuthentication || pe.Message != "no api key supplied" || pe.Retryable() {
		t.Fatalf("401: %#v", err)
	}
	if ce := pe.ClientError(); ce.Status != 502 || ce.Code != "upstream_auth_failed" {
		t.Errorf("client error %+v", ce)
	}
}

func TestIntegrationMidStreamCut(t *testing.T) {
	t.Parallel()
	fake, p := newFake(t, "k")
	fake.Enqueue(fakellm.Behavior{FailAfter: 2})
	resp, err := do(t, p, openai.OpChat, `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := events(t, resp.Stream)
	var pe *provider.Error
	if len(chunks) != 3 || !errors.As(err, &pe) || !pe.StreamStarted || pe.Provider != "co" ||
		(pe.Kind != provider.KindConnect && pe.Kind != provider.KindProtocol) {
		t.Fatalf("%d chunks, error %#v", len(chunks), err)
	}
	if ce := pe.ClientError(); ce.Status != 502 {
		t.Errorf("client error %+v", ce)
	}
}

func TestIntegrationCancel(t *testing.T) {
	t.Parallel()
	fake, p := newFake(t, "k")
	fake.Enqueue(fakellm.Behavior{ChunkDelay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := p.Do(ctx, &provider.Call{Req: parse(t, openai.OpChat, `{"model":"m","stream":true,"messages":[]}`), Model: "c"})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Stream.Close()
	for range 2 { // role chunk, first word
		if _, err := resp.Stream.Next(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if _, err := resp.Stream.Next(); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v", err)
	}
}
