package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

// Table tests of the pipeline with scripted providers: the attempt loop,
// the reply seam and the admission, without HTTP upstreams.

// step is one scripted answer of a scriptedProvider.
type step struct {
	err    *provider.Error
	body   string   // a non-stream answer
	events []string // a stream's data events
	cut    bool     // the stream breaks after its events
	hang   bool     // wait for the context
}

// scriptedProvider answers from its script, one step per call (the last step
// repeats), and records the calls.
type scriptedProvider struct {
	name   string
	mu     sync.Mutex
	script []step
	calls  []string // upstream model of each call
	native []string // native bodies received
}

func (p *scriptedProvider) Name() string { return p.name }

func (p *scriptedProvider) next(model string) step {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, model)
	s := p.script[0]
	if len(p.script) > 1 {
		p.script = p.script[1:]
	}
	return s
}

func (p *scriptedProvider) Do(ctx context.Context, call *provider.Call) (*provider.Response, error) {
	return p.answer(ctx, p.next(call.Model), provider.FormatOpenAI)
}

func (p *scriptedProvider) answer(ctx context.Context, s step, f provider.Format) (*provider.Response, error) {
	if s.hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if s.err != nil {
		e := *s.err
		e.Provider = p.name
		return nil, &e
	}
	if s.events == nil {
		return &provider.Response{Format: f, Body: []byte(s.body)}, nil
	}
	return &provider.Response{Format: f, Stream: &scriptedStream{events: s.events, cut: s.cut, name: p.name}}, nil
}

type scriptedStream struct {
	events []string
	cut    bool
	name   string
	i      int
	closed bool
}

func (s *scriptedStream) Next() (sse.Event, error) {
	if s.i < len(s.events) {
		s.i++
		return sse.Event{Data: []byte(s.events[s.i-1])}, nil
	}
	if s.cut {
		return sse.Event{}, &provider.Error{Provider: s.name, Kind: provider.KindConnect, StreamStarted: true}
	}
	return sse.Event{}, io.EOF
}

func (s *scriptedStream) Close() error { s.closed = true; return nil }

// scriptedNative also speaks Anthropic's format.
type scriptedNative struct{ scriptedProvider }

func (p *scriptedNative) Speaks(f provider.Format) bool { return f == provider.FormatAnthropic }

func (p *scriptedNative) DoNative(ctx context.Context, call *provider.NativeCall) (*provider.Response, error) {
	p.mu.Lock()
	p.native = append(p.native, string(call.Body))
	p.mu.Unlock()
	resp, err := p.answer(ctx, p.next(call.Model), provider.FormatAnthropic)
	if err == nil && resp.Body != nil {
		// As the Anthropic provider does: it reads its own usage.
		resp.Usage = openai.Usage{InputTokens: gjson.GetBytes(resp.Body, "usage.input_tokens").Int(),
			OutputTokens: gjson.GetBytes(resp.Body, "usage.output_tokens").Int(), Known: true}
	}
	return resp, err
}

const (
	okBody     = `{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`
	chunk      = `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}`
	usageChunk = `{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}`
)

var (
	status429 = &provider.Error{Kind: provider.KindStatus, Status: 429, RetryAfter: 30 * time.Millisecond}
	status500 = &provider.Error{Kind: provider.KindStatus, Status: 500}
	status400 = &provider.Error{Kind: provider.KindStatus, Status: 400, Message: "bad"}
	timeout   = &provider.Error{Kind: provider.KindTimeout}
)

type env struct {
	g     *Gateway
	stubs map[string]*scriptedProvider
	taps  *recordingTap
}

// newEnv builds a gateway over the stub providers and routes.
func newEnv(t *testing.T, routes []route.Route, stubs map[string]provider.Provider, mod func(*Config)) *env {
	t.Helper()
	tbl, err := route.New(routes, func(p string) bool { _, ok := stubs[p]; return ok })
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingTap{}
	cfg := Config{Providers: stubs, Routes: tbl, Health: route.NewHealth(2, time.Minute),
		RetryBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Stages: []Stage{tapStage{rec}}}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{g: g, stubs: map[string]*scriptedProvider{}, taps: rec}
	for name, p := range stubs {
		switch s := p.(type) {
		case *scriptedProvider:
			e.stubs[name] = s
		case *scriptedNative:
			e.stubs[name] = &s.scriptedProvider
		}
	}
	return e
}

// serve sends one request and returns the recorder and the info.
func (e *env) serve(t *testing.T, path, body string, hdr ...string) (*httptest.ResponseRecorder, *Info) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	var info Info
	e.g.Serve(w, r, &info)
	return w, &info
}

// recordingTap records what a tap sees.
type recordingTap struct {
	mu       sync.Mutex
	events   []string
	bodies   int
	outcomes []Outcome
}

func (r *recordingTap) Event(ev *dialect.Event, _ provider.Format) {
	r.mu.Lock()
	r.events = append(r.events, string(ev.Data))
	r.mu.Unlock()
}
func (r *recordingTap) Body(b []byte, _ provider.Format) []byte { r.bodies++; return b }
func (r *recordingTap) End(o Outcome, _ *Info)                  { r.outcomes = append(r.outcomes, o) }

// tapStage adds the recording tap to every request.
type tapStage struct{ t *recordingTap }

func (s tapStage) Name() string { return "tap" }

func (s tapStage) Run(x *Exchange) (*Reply, *openai.Error) { x.AddTap(s.t); return nil, nil }

func stub(script ...step) *scriptedProvider { return &scriptedProvider{script: script} }

func chat(model string, stream bool) string {
	s := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]`
	if stream {
		s += `,"stream":true`
	}
	return s + `}`
}

func TestAttemptLoop(t *testing.T) {
	tests := []struct {
		name     string
		routes   []route.Route
		stubs    map[string]*scriptedProvider
		model    string
		status   int
		attempts int
		outcome  Outcome
		calls    map[string]int
		code     string
	}{
		{
			name:   "first target answers",
			routes: []route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "a"}}}},
			stubs:  map[string]*scriptedProvider{"a": stub(step{body: okBody})},
			model:  "m", status: 200, attempts: 1, outcome: OutcomeCompleted, calls: map[string]int{"a": 1},
		},
		{
			name:   "retry after 500 then success",
			routes: []route.Route{{Pattern: "m", Retries: 2, Targets: []route.Target{{Provider: "a"}}}},
			stubs:  map[string]*scriptedProvider{"a": stub(step{err: status500}, step{body: okBody})},
			model:  "m", status: 200, attempts: 2, outcome: OutcomeCompleted, calls: map[string]int{"a": 2},
		},
		{
			name:   "retries exhausted",
			routes: []route.Route{{Pattern: "m", Retries: 1, Targets: []route.Target{{Provider: "a"}}}},
			stubs:  map[string]*scriptedProvider{"a": stub(step{err: status500})},
			model:  "m", status: 502, attempts: 2, outcome: OutcomeUpstreamError, calls: map[string]int{"a": 2}, code: "upstream_error",
		},
		{
			name:   "a 400 is not retried",
			routes: []route.Route{{Pattern: "m", Retries: 3, Targets: []route.Target{{Provider: "a"}}}},
			stubs:  map[string]*scriptedProvider{"a": stub(step{err: status400})},
			model:  "m", status: 400, attempts: 1, outcome: OutcomeUpstreamError, calls: map[string]int{"a": 1},
		},
		{
			name: "fallbacks in order",
			routes: []route.Route{
				{Pattern: "m", Targets: []route.Target{{Provider: "a"}}, Fallbacks: []string{"f1", "f2"}},
				{Pattern: "f1", Targets: []route.Target{{Provider: "b"}}},
				{Pattern: "f2", Targets: []route.Target{{Provider: "c"}}},
			},
			stubs: map[string]*scriptedProvider{"a": stub(step{err: status500}), "b": stub(step{err: timeout}), "c": stub(step{body: okBody})},
			model: "m", status: 200, attempts: 3, outcome: OutcomeCompleted, calls: map[string]int{"a": 1, "b": 1, "c": 1},
		},
		{
			name:   "timeouts end as a timeout",
			routes: []route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "a"}}}},
			stubs:  map[string]*scriptedProvider{"a": stub(step{err: timeout})},
			model:  "m", status: 504, attempts: 1, outcome: OutcomeTimeout, calls: map[string]int{"a": 1}, code: "upstream_timeout",
		},
		{
			name:   "a stream's first event is awaited",
			routes: []route.Route{{Pattern: "m", Retries: 1, Targets: []route.Target{{Provider: "a"}}}},
			stubs:  map[string]*scriptedProvider{"a": stub(step{events: []string{}}, step{events: []string{chunk, usageChunk}})},
			model:  "m", status: 200, attempts: 2, outcome: OutcomeCompleted, calls: map[string]int{"a": 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := map[string]provider.Provider{}
			for n, s := range tt.stubs {
				s.name = n
				ps[n] = s
			}
			e := newEnv(t, tt.routes, ps, nil)
			stream := tt.stubs["a"].script[0].events != nil
			w, info := e.serve(t, "/v1/chat/completions", chat(tt.model, stream))
			if w.Code != tt.status || info.Attempts != tt.attempts || info.Outcome != tt.outcome {
				t.Fatalf("status %d attempts %d outcome %v, want %d %d %v: %s", w.Code, info.Attempts, info.Outcome, tt.status, tt.attempts, tt.outcome, w.Body)
			}
			if tt.code != "" && gjson.Get(w.Body.String(), "error.code").Str != tt.code {
				t.Fatalf("code: %s", w.Body)
			}
			for n, want := range tt.calls {
				if got := len(tt.stubs[n].calls); got != want {
					t.Errorf("%s called %d times, want %d", n, got, want)
				}
			}
			if len(e.taps.outcomes) != 1 || e.taps.outcomes[0] != tt.outcome {
				t.Errorf("taps learned %v, want [%v] once", e.taps.outcomes, tt.outcome)
			}
			if w.Code == 200 && w.Header().Get(HeaderAttempts) != itoa(int64(tt.attempts)) {
				t.Errorf("attempts header %q", w.Header().Get(HeaderAttempts))
			}
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	a := stub(step{err: status429}, step{body: okBody})
	e := newEnv(t, []route.Route{{Pattern: "m", Retries: 1, Targets: []route.Target{{Provider: "a"}}}},
		map[string]provider.Provider{"a": a}, func(c *Config) { c.RetryBackoff, c.MaxBackoff = time.Microsecond, time.Microsecond })
	start := time.Now()
	w, _ := e.serve(t, "/v1/chat/completions", chat("m", false))
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("retried after %v, before Retry-After (30ms)", d)
	}
	// A hint longer than max_retry_after cools the target down instead:
	// with no other target the request fails at once with the 429.
	a = stub(step{err: &provider.Error{Kind: provider.KindStatus, Status: 429, RetryAfter: time.Hour}}, step{body: okBody})
	e = newEnv(t, []route.Route{{Pattern: "m", Retries: 1, Targets: []route.Target{{Provider: "a"}}}},
		map[string]provider.Provider{"a": a}, nil)
	w, _ = e.serve(t, "/v1/chat/completions", chat("m", false))
	if w.Code != 429 || w.Header().Get("Retry-After") == "" || len(a.calls) != 1 {
		t.Fatalf("long Retry-After: %d %q calls %d", w.Code, w.Header().Get("Retry-After"), len(a.calls))
	}
}

func TestFallbacksRespectTheKeysModels(t *testing.T) {
	a, b, c := stub(step{err: status500}), stub(step{body: okBody}), stub(step{body: okBody})
	routes := []route.Route{
		{Pattern: "m", Targets: []route.Target{{Provider: "a"}}, Fallbacks: []string{"secret", "open"}},
		{Pattern: "secret", Targets: []route.Target{{Provider: "b"}}},
		{Pattern: "open", Targets: []route.Target{{Provider: "c"}}},
	}
	store, err := auth.NewMemory([]*auth.Key{{Name: "k", Hash: auth.HashSecret("sk-test-key"), Policy: auth.Policy{Models: []string{"m", "open"}}}}, "")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, routes, map[string]provider.Provider{"a": a, "b": b, "c": c}, func(cfg *Config) {
		cfg.Guard = &Guard{Keys: store, Required: true, Limiter: ratelimit.NewMemory(nil), Pricing: usage.DefaultPricing()}
	})
	w, info := e.serve(t, "/v1/chat/completions", chat("m", false), "Authorization", "Bearer sk-test-key")
	if w.Code != 200 || info.Provider != "c" || len(b.calls) != 0 {
		t.Fatalf("status %d provider %q, b called %d times", w.Code, info.Provider, len(b.calls))
	}
}

func TestCircuitBreaker(t *testing.T) {
	a := stub(step{err: status500})
	b := stub(step{body: okBody})
	routes := []route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "a"}}, Fallbacks: []string{"b"}},
		{Pattern: "b", Targets: []route.Target{{Provider: "b"}}}}
	health := route.NewHealth(2, 50*time.Millisecond)
	e := newEnv(t, routes, map[string]provider.Provider{"a": a, "b": b}, func(c *Config) { c.Health = health })
	for range 2 {
		e.serve(t, "/v1/chat/completions", chat("m", false))
	}
	if len(a.calls) != 2 {
		t.Fatalf("a called %d times", len(a.calls))
	}
	// Open: a is skipped.
	w, info := e.serve(t, "/v1/chat/completions", chat("m", false))
	if w.Code != 200 || info.Attempts != 1 || len(a.calls) != 2 {
		t.Fatalf("open breaker: %d attempts %d, a called %d", w.Code, info.Attempts, len(a.calls))
	}
	// Half-open after the cooldown: one probe reaches a; it succeeds and
	// closes the breaker.
	time.Sleep(60 * time.Millisecond)
	a.mu.Lock()
	a.script = []step{{body: okBody}}
	a.mu.Unlock()
	if w, info := e.serve(t, "/v1/chat/completions", chat("m", false)); w.Code != 200 || info.Provider != "a" {
		t.Fatalf("half-open probe: %d via %q", w.Code, info.Provider)
	}
	if w, info := e.serve(t, "/v1/chat/completions", chat("m", false)); w.Code != 200 || info.Provider != "a" {
		t.Fatalf("closed again: %d via %q", w.Code, info.Provider)
	}
	// Every target cooling down: 503 with Retry-After.
	e2 := newEnv(t, []route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "a"}}}},
		map[string]provider.Provider{"a": stub(step{err: status500})}, nil)
	for range 2 {
		e2.serve(t, "/v1/chat/completions", chat("m", false))
	}
	if w, info := e2.serve(t, "/v1/chat/completions", chat("m", false)); w.Code != 503 || w.Header().Get("Retry-After") != "1" || info.Outcome != OutcomeUpstreamError {
		t.Fatalf("all cooling: %d %q %v", w.Code, w.Header().Get("Retry-After"), info.Outcome)
	}
}

func TestReplyTaps(t *testing.T) {
	for _, tt := range []struct {
		name    string
		step    step
		outcome Outcome
		events  int
		done    bool
	}{
		{"complete", step{events: []string{chunk, chunk, usageChunk}}, OutcomeCompleted, 3, true},
		{"broken", step{events: []string{chunk, chunk}, cut: true}, OutcomeStreamBroken, 2, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a := stub(tt.step)
			e := newEnv(t, []route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "a"}}}}, map[string]provider.Provider{"a": a}, nil)
			w, info := e.serve(t, "/v1/chat/completions", chat("m", true))
			if len(e.taps.events) != tt.events || len(e.taps.outcomes) != 1 || e.taps.outcomes[0] != tt.outcome {
				t.Fatalf("taps saw %d events and %v, want %d and [%v]", len(e.taps.events), e.taps.outcomes, tt.events, tt.outcome)
			}
			body := w.Body.String()
			if strings.Contains(body, "data: [DONE]") != tt.done {
				t.Fatalf("[DONE] in %q", body)
			}
			if tt.done && (strings.Contains(body, `"choices":[]`) || info.Usage.OutputTokens != 2) {
				t.Fatalf("the usage chunk must be accounted and dropped: usage %+v body %q", info.Usage, body)
			}
			if !tt.done && (!strings.Contains(body, "upstream_stream_error") || info.Status != 599) {
				t.Fatalf("broken stream: status %d body %q", info.Status, body)
			}
		})
	}
	// A non-stream body is seen once.
	e := newEnv(t, []route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "a"}}}}, map[string]provider.Provider{"a": stub(step{body: okBody})}, nil)
	if _, info := e.serve(t, "/v1/chat/completions", chat("m", false)); e.taps.bodies != 1 || info.Usage.InputTokens != 3 {
		t.Fatalf("bodies %d usage %+v", e.taps.bodies, info.Usage)
	}
	// A request refused before the attempt loop still ends once.
	if w, info := e.serve(t, "/v1/chat/completions", `{"model":"m","messages":[],"max_tokens":0}`); w.Code != 400 || info.Outcome != OutcomeRefused {
		t.Fatalf("refused: %d %v", w.Code, info.Outcome)
	}
}

func TestClientGoneDuringAttempts(t *testing.T) {
	a := stub(step{hang: true})
	e := newEnv(t, []route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "a"}}}}, map[string]provider.Provider{"a": a}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/chat/completions", strings.NewReader(chat("m", true)))
	time.AfterFunc(20*time.Millisecond, cancel)
	var info Info
	e.g.Serve(httptest.NewRecorder(), r, &info)
	if info.Outcome != OutcomeClientGone || info.Status != 499 || len(e.taps.outcomes) != 1 {
		t.Fatalf("outcome %v status %d taps %v", info.Outcome, info.Status, e.taps.outcomes)
	}
}

func TestDialects(t *testing.T) {
	const msg = `{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}`
	anthropicBody := `{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"native"}],"stop_reason":"end_turn","usage":{"input_tokens":4,"output_tokens":1}}`
	nat := &scriptedNative{scriptedProvider{name: "claude", script: []step{{body: anthropicBody}}}}
	oai := stub(step{body: okBody})
	oai.name = "oai"
	routes := []route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "claude"}}}, {Pattern: "o", Targets: []route.Target{{Provider: "oai"}}}}
	e := newEnv(t, routes, map[string]provider.Provider{"claude": nat, "oai": oai}, nil)

	// Native: the client's body passes, the answer too, usage from the
	// provider.
	w, info := e.serve(t, "/v1/messages", msg, "Anthropic-Beta", "x-2025", "Anthropic-Version", "2023-06-01")
	if w.Code != 200 || w.Body.String() != anthropicBody || len(nat.native) != 1 || info.Usage.InputTokens != 4 {
		t.Fatalf("native: %d %s (native calls %d, usage %+v)", w.Code, w.Body, len(nat.native), info.Usage)
	}
	// Translated: an OpenAI target answers in OpenAI's format, the client
	// gets Anthropic's.
	msgO := strings.Replace(msg, `"m"`, `"o"`, 1)
	w, _ = e.serve(t, "/v1/messages", msgO)
	if w.Code != 200 || gjson.Get(w.Body.String(), "type").Str != "message" || gjson.Get(w.Body.String(), "content.0.text").Str != "hi" {
		t.Fatalf("translated: %d %s", w.Code, w.Body)
	}
	// A beta the translating target cannot honour is refused, in
	// Anthropic's error shape.
	w, _ = e.serve(t, "/v1/messages", msgO, "Anthropic-Beta", "mcp-client-2025-04-04")
	if w.Code != 400 || gjson.Get(w.Body.String(), "type").Str != "error" || !strings.Contains(w.Body.String(), "anthropic-beta") {
		t.Fatalf("beta to a translated target: %d %s", w.Code, w.Body)
	}
	// OpenAI clients' errors are OpenAI's.
	w, _ = e.serve(t, "/v1/chat/completions", `{"model":"nope","messages":[]}`)
	if w.Code != 404 || gjson.Get(w.Body.String(), "error.code").Str != "model_not_found" {
		t.Fatalf("openai error: %d %s", w.Code, w.Body)
	}
	w, _ = e.serve(t, "/v1/messages", `{"model":"nope","max_tokens":1,"messages":[]}`)
	if w.Code != 404 || gjson.Get(w.Body.String(), "error.type").Str != "not_found_error" {
		t.Fatalf("anthropic error: %d %s", w.Code, w.Body)
	}
}

func TestEndpoints(t *testing.T) {
	routes := []route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "a"}}}, {Pattern: "gpt-*", Targets: []route.Target{{Provider: "a"}}}}
	e := newEnv(t, routes, map[string]provider.Provider{"a": stub(step{body: okBody})}, nil)
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		e.g.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	if w := get("/v1/models"); w.Code != 200 || gjson.Get(w.Body.String(), "data.#").Int() != 1 || gjson.Get(w.Body.String(), "data.0.owned_by").Str != "a" {
		t.Fatalf("models: %d %s", w.Code, w.Body)
	}
	if w := get("/openai/v1/models/gpt-4o"); w.Code != 200 || gjson.Get(w.Body.String(), "id").Str != "gpt-4o" {
		t.Fatalf("model by glob: %d %s", w.Code, w.Body)
	}
	if w := get("/v1/models/other"); w.Code != 404 {
		t.Fatalf("unknown model: %d", w.Code)
	}
	if w := get("/v1/chat/completions"); w.Code != 405 || w.Header().Get("Allow") != "POST" {
		t.Fatalf("GET chat: %d %q", w.Code, w.Header().Get("Allow"))
	}
	if w, _ := e.serve(t, "/v1/nope", "{}"); w.Code != 404 || gjson.Get(w.Body.String(), "error.code").Str != "unknown_url" {
		t.Fatalf("unknown path: %d %s", w.Code, w.Body)
	}
	for _, o := range []Outcome{OutcomeRefused, OutcomeCompleted, OutcomeUpstreamError, OutcomeTimeout, OutcomeStreamBroken, OutcomeClientGone, OutcomeShutdown} {
		if o.String() == "" {
			t.Fatal("unnamed outcome")
		}
	}
}
