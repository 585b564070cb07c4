package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/anthropic"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/openaicompat"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/telemetry"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

// env is a gateway over two real fakellm upstreams ("a" and "b"), traced
// into an in-memory exporter.
type env struct {
	gw     *gateway.Gateway
	a, b   *fakellm.Server
	spans  *tracetest.InMemoryExporter // the SDK's spans
	own    *collector                  // or the OTLPProvider's, as a collector got them
	tp     telemetry.TracerProvider
	tracer *telemetry.Tracer
}

// forEachProvider runs test with the SDK's provider (as under Caddy's
// tracing) and with the gateway's own OTLPProvider (the telemetry block),
// whose spans a collector decodes from the protobuf it posts.
func forEachProvider(t *testing.T, test func(t *testing.T, own bool)) {
	t.Run("sdk", func(t *testing.T) { test(t, false) })
	t.Run("otlp", func(t *testing.T) { test(t, true) })
}

// namedStage is a configured stage that does nothing but exist.
type namedStage string

func (s namedStage) Name() string                                          { return string(s) }
func (s namedStage) Run(*gateway.Exchange) (*gateway.Reply, *openai.Error) { return nil, nil }

func newEnv(t *testing.T, capture, own bool) *env {
	t.Helper()
	e := &env{a: fakellm.New(fakellm.Options{Chunks: 5}), b: fakellm.New(fakellm.Options{Chunks: 3}), spans: tracetest.NewInMemoryExporter()}
	providers := map[string]provider.Provider{}
	upstreams := map[string]telemetry.Upstream{}
	for name, s := range map[string]*fakellm.Server{"a": e.a, "b": e.b} {
		srv := httptest.NewServer(s)
		t.Cleanup(srv.Close)
		h := provider.NewHTTP(name, provider.Timeouts{})
		t.Cleanup(h.Close)
		p, err := openaicompat.New(openaicompat.Config{Name: name, BaseURL: srv.URL + "/v1"}, h)
		if err != nil {
			t.Fatal(err)
		}
		providers[name] = p
		upstreams[name] = telemetry.UpstreamOf("openai", srv.URL+"/v1")
	}
	routes, err := route.New([]route.Route{
		{Pattern: "demo", Targets: []route.Target{{Provider: "a", Model: "fake-model"}}, Retries: 1},
		{Pattern: "primary", Targets: []route.Target{{Provider: "a", Model: "broken-model"}}, Fallbacks: []string{"backup"}},
		{Pattern: "backup", Targets: []route.Target{{Provider: "b", Model: "backup-model"}}},
		{Pattern: "claude", Targets: []route.Target{{Provider: "c", Model: "claude-model"}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	claude := httptest.NewServer(e.a)
	t.Cleanup(claude.Close)
	h := provider.NewHTTP("c", provider.Timeouts{})
	t.Cleanup(h.Close)
	cp, err := anthropic.New(anthropic.Config{Name: "c", BaseURL: claude.URL, APIKey: "k"}, h)
	if err != nil {
		t.Fatal(err)
	}
	providers["c"] = cp
	upstreams["c"] = telemetry.UpstreamOf("anthropic", cp.URL())
	var tp telemetry.TracerProvider
	if own {
		e.own = startCollector(t)
		tp, err = telemetry.NewProvider(context.Background(), telemetry.Options{Endpoint: e.own.url, Protocol: telemetry.ProtocolHTTP})
		if _, ok := tp.(*telemetry.OTLPProvider); err == nil && !ok {
			t.Fatalf("provider %T, want the OTLPProvider", tp)
		}
	} else {
		tp, err = telemetry.NewProviderWith(telemetry.Options{}, sdktrace.NewSimpleSpanProcessor(e.spans))
	}
	if err != nil {
		t.Fatal(err)
	}
	e.tp = tp
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	pricing := usage.NewPricing()
	pricing.Set("fake-model", usage.Price{Input: 1, Output: 2})
	e.tracer = &telemetry.Tracer{Own: tp, Capture: capture, Upstreams: upstreams, Pricing: pricing}
	e.gw, err = gateway.New(gateway.Config{
		Providers: providers, Routes: routes, Telemetry: e.tracer,
		Guard:  &gateway.Guard{},
		Stages: []gateway.Stage{namedStage("guardrails")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) serve(t *testing.T, body string, hdr ...string) (*httptest.ResponseRecorder, *gateway.Info) {
	t.Helper()
	return e.serveAt(t, "/v1/chat/completions", body, hdr...)
}

func (e *env) serveAt(t *testing.T, path, body string, hdr ...string) (*httptest.ResponseRecorder, *gateway.Info) {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	var info gateway.Info
	e.gw.Serve(w, r, &info)
	return w, &info
}

// tree indexes the exported spans.
type tree struct {
	spans []tracetest.SpanStub
}

func (e *env) tree(t *testing.T) tree {
	t.Helper()
	if e.own != nil {
		if err := e.tp.ForceFlush(context.Background()); err != nil {
			t.Fatal(err)
		}
		return tree{e.own.stubs()}
	}
	return tree{e.spans.GetSpans()}
}

// reset forgets the spans exported so far.
func (e *env) reset() {
	if e.own != nil {
		_ = e.tp.ForceFlush(context.Background())
		e.own.reset()
	}
	e.spans.Reset()
}

func (tr tree) root(t *testing.T) tracetest.SpanStub {
	t.Helper()
	var roots []tracetest.SpanStub
	for _, s := range tr.spans {
		if strings.HasPrefix(s.Name, "ai_gateway ") {
			roots = append(roots, s)
		}
	}
	if len(roots) != 1 {
		t.Fatalf("%d request spans, want 1: %v", len(roots), tr.names())
	}
	return roots[0]
}

func (tr tree) children(of tracetest.SpanStub) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range tr.spans {
		if s.Parent.SpanID() == of.SpanContext.SpanID() {
			out = append(out, s)
		}
	}
	return out
}

func (tr tree) names() []string {
	var n []string
	for _, s := range tr.spans {
		n = append(n, s.Name)
	}
	return n
}

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func childNames(ch []tracetest.SpanStub) string {
	var n []string
	for _, s := range ch {
		n = append(n, s.Name)
	}
	return strings.Join(n, ",")
}

func TestTraceNonStream(t *testing.T) {
	forEachProvider(t, func(t *testing.T, own bool) {
		e := newEnv(t, false, own)
		w, info := e.serve(t, `{"model":"demo","messages":[{"role":"user","content":"secret prompt"}],"max_tokens":50,"temperature":0.5,"top_p":0.9}`)
		if w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		tr := e.tree(t)
		root := tr.root(t)
		if root.SpanKind != trace.SpanKindServer || root.Name != "ai_gateway chat" {
			t.Fatalf("root %q kind %v", root.Name, root.SpanKind)
		}
		ch := tr.children(root)
		if got := childNames(ch); got != "admission,guardrails,chat fake-model" {
			t.Fatalf("children %s", got)
		}
		c := ch[2]
		if c.SpanKind != trace.SpanKindClient {
			t.Fatalf("attempt kind %v", c.SpanKind)
		}
		a := attrs(c)
		want := map[attribute.Key]any{
			telemetry.AttrOperationName:      "chat",
			telemetry.AttrProviderName:       "openai",
			telemetry.AttrRequestModel:       "fake-model",
			telemetry.AttrResponseModel:      "fake-model",
			telemetry.AttrRequestMaxTokens:   int64(50),
			telemetry.AttrRequestTemperature: 0.5,
			telemetry.AttrRequestTopP:        0.9,
			telemetry.AttrRequestStream:      false,
			telemetry.AttrInputTokens:        info.Usage.InputTokens,
			telemetry.AttrOutputTokens:       info.Usage.OutputTokens,
			telemetry.AttrCacheReadTokens:    int64(0),
			telemetry.AttrServerAddress:      "127.0.0.1",
		}
		for k, v := range want {
			if got, ok := a[k]; !ok || got.AsInterface() != v {
				t.Errorf("%s = %v, want %v", k, got.AsInterface(), v)
			}
		}
		if a[telemetry.AttrServerPort].AsInt64() == 0 {
			t.Errorf("no server.port")
		}
		if id := a[telemetry.AttrResponseID].AsString(); !strings.HasPrefix(id, "chatcmpl-") {
			t.Errorf("response id %q", id)
		}
		if fr := a[telemetry.AttrFinishReasons].AsStringSlice(); len(fr) != 1 || fr[0] != "stop" {
			t.Errorf("finish reasons %v", fr)
		}
		if _, ok := a[telemetry.AttrErrorType]; ok {
			t.Errorf("error.type on a success")
		}
		for _, s := range tr.spans {
			for _, kv := range s.Attributes {
				if kv.Key == telemetry.AttrInputMessages || kv.Key == telemetry.AttrOutputMessages || strings.Contains(kv.Value.Emit(), "secret prompt") {
					t.Fatalf("content recorded without capture: %s on %s", kv.Key, s.Name)
				}
			}
		}
		ra := attrs(root)
		if ra[telemetry.AttrOutcome].AsString() != "completed" || ra[telemetry.AttrStatus].AsInt64() != 200 {
			t.Errorf("root attrs %v", ra)
		}
		wantCost := float64(info.Usage.InputTokens*1+info.Usage.OutputTokens*2) / 1e6
		if got := ra[telemetry.AttrCostUSD].AsFloat64(); got != wantCost {
			t.Errorf("cost %v, want %v", got, wantCost)
		}
	})
}

func TestTraceStreamCapture(t *testing.T) {
	forEachProvider(t, func(t *testing.T, own bool) {
		e := newEnv(t, true, own)
		w, info := e.serve(t, `{"model":"demo","stream":true,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"say hi"}]}`)
		if w.Code != 200 || !strings.Contains(w.Body.String(), "[DONE]") {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		tr := e.tree(t)
		ch := tr.children(tr.root(t))
		c := ch[len(ch)-1]
		a := attrs(c)
		if !a[telemetry.AttrRequestStream].AsBool() {
			t.Error("stream not recorded")
		}
		if a[telemetry.AttrOutputTokens].AsInt64() != info.Usage.OutputTokens || info.Usage.OutputTokens == 0 {
			t.Errorf("output tokens %v, info %+v", a[telemetry.AttrOutputTokens], info.Usage)
		}
		if fr := a[telemetry.AttrFinishReasons].AsStringSlice(); len(fr) != 1 || fr[0] != "stop" {
			t.Errorf("finish reasons %v", fr)
		}
		if !strings.HasPrefix(a[telemetry.AttrResponseID].AsString(), "chatcmpl-") {
			t.Errorf("response id %v", a[telemetry.AttrResponseID])
		}
		in := a[telemetry.AttrInputMessages].AsString()
		if in != `[{"role":"system","parts":[{"type":"text","content":"be brief"}]},{"role":"user","parts":[{"type":"text","content":"say hi"}]}]` {
			t.Errorf("input messages %s", in)
		}
		out := a[telemetry.AttrOutputMessages].AsString()
		if !strings.Contains(out, "Hello from") || !strings.Contains(out, `"finish_reason":"stop"`) {
			t.Errorf("output messages %s", out)
		}
	})
}

func TestTraceRetryAndFallback(t *testing.T) {
	forEachProvider(t, func(t *testing.T, own bool) {
		e := newEnv(t, false, own)
		e.a.Enqueue(fakellm.Behavior{Status: 503})
		if w, _ := e.serve(t, `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`); w.Code != 200 {
			t.Fatalf("retry: status %d", w.Code)
		}
		tr := e.tree(t)
		root := tr.root(t)
		ch := tr.children(root)
		if got := childNames(ch); got != "admission,guardrails,chat fake-model,chat fake-model" {
			t.Fatalf("retry children %s", got)
		}
		first, second := attrs(ch[2]), attrs(ch[3])
		if first[telemetry.AttrErrorType].AsString() != "503" || first[telemetry.AttrAttempt].AsInt64() != 1 {
			t.Errorf("failed attempt %v", first)
		}
		if _, ok := second[telemetry.AttrErrorType]; ok || second[telemetry.AttrAttempt].AsInt64() != 2 {
			t.Errorf("answering attempt %v", second)
		}
		if attrs(root)[telemetry.AttrAttempts].AsInt64() != 2 {
			t.Errorf("attempts on root %v", attrs(root))
		}

		e.reset()
		e.a.Script("broken-model", fakellm.Behavior{Status: 500})
		if w, _ := e.serve(t, `{"model":"primary","messages":[{"role":"user","content":"hi"}]}`); w.Code != 200 {
			t.Fatalf("fallback: status %d", w.Code)
		}
		tr = e.tree(t)
		ch = tr.children(tr.root(t))
		if got := childNames(ch); got != "admission,guardrails,chat broken-model,chat backup-model" {
			t.Fatalf("fallback children %s", got)
		}
		if attrs(ch[2])[telemetry.AttrErrorType].AsString() != "500" || attrs(ch[3])[telemetry.AttrProvider].AsString() != "b" {
			t.Errorf("fallback attempts %v / %v", attrs(ch[2]), attrs(ch[3]))
		}
	})
}

func TestTraceparentContinuedAndPropagated(t *testing.T) {
	forEachProvider(t, func(t *testing.T, own bool) {
		e := newEnv(t, false, own)
		const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
		if w, _ := e.serve(t, `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`, "traceparent", "00-"+tid+"-00f067aa0ba902b7-01"); w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
		tr := e.tree(t)
		root := tr.root(t)
		if root.SpanContext.TraceID().String() != tid || root.Parent.SpanID().String() != "00f067aa0ba902b7" || !root.Parent.IsRemote() {
			t.Fatalf("root trace %s parent %s", root.SpanContext.TraceID(), root.Parent.SpanID())
		}
		ch := tr.children(root)
		call := ch[len(ch)-1]
		hs := e.a.Stats().Headers
		got := hs[len(hs)-1].Get("Traceparent")
		if want := "00-" + tid + "-" + call.SpanContext.SpanID().String() + "-01"; got != want {
			t.Fatalf("upstream traceparent %q, want %q", got, want)
		}
	})
}

// TestTraceAnthropicNative: a /v1/messages stream passed natively to an
// Anthropic upstream: the span reads Anthropic's events.
func TestTraceAnthropicNative(t *testing.T) {
	forEachProvider(t, func(t *testing.T, own bool) {
		e := newEnv(t, true, own)
		for _, stream := range []bool{false, true} {
			e.reset()
			body := `{"model":"claude","max_tokens":100,"stream":` + strconv.FormatBool(stream) + `,"messages":[{"role":"user","content":[{"type":"text","text":"hello claude"}]}]}`
			w, info := e.serveAt(t, "/v1/messages", body)
			if w.Code != 200 {
				t.Fatalf("stream %v: status %d: %s", stream, w.Code, w.Body)
			}
			tr := e.tree(t)
			ch := tr.children(tr.root(t))
			c := ch[len(ch)-1]
			a := attrs(c)
			if c.Name != "chat claude-model" || a[telemetry.AttrProviderName].AsString() != "anthropic" || a[telemetry.AttrServerAddress].AsString() != "127.0.0.1" {
				t.Fatalf("stream %v: span %s %v", stream, c.Name, a)
			}
			if !strings.HasPrefix(a[telemetry.AttrResponseID].AsString(), "msg_") || a[telemetry.AttrResponseModel].AsString() != "claude-model" {
				t.Errorf("stream %v: response id/model %v %v", stream, a[telemetry.AttrResponseID], a[telemetry.AttrResponseModel])
			}
			if fr := a[telemetry.AttrFinishReasons].AsStringSlice(); len(fr) != 1 || fr[0] != "end_turn" {
				t.Errorf("stream %v: finish reasons %v", stream, fr)
			}
			if a[telemetry.AttrOutputTokens].AsInt64() != info.Usage.OutputTokens || info.Usage.OutputTokens == 0 {
				t.Errorf("stream %v: output tokens %v, info %+v", stream, a[telemetry.AttrOutputTokens], info.Usage)
			}
			if !strings.Contains(a[telemetry.AttrInputMessages].AsString(), "hello claude") || !strings.Contains(a[telemetry.AttrOutputMessages].AsString(), "Hello from") {
				t.Errorf("stream %v: content %v / %v", stream, a[telemetry.AttrInputMessages], a[telemetry.AttrOutputMessages])
			}
		}
	})
}

// answeringStage answers from memory as a cache hit does, and says so in
// Info like the cache stage.
type answeringStage struct{ body []byte }

func (answeringStage) Name() string { return "cache" }
func (s answeringStage) Run(x *gateway.Exchange) (*gateway.Reply, *openai.Error) {
	x.Info.Cache = "hit"
	return &gateway.Reply{Format: provider.FormatOpenAI, Body: s.body}, nil
}

// TestTraceStageAnswers: a stage that answers (a cache hit) has its span,
// no attempt is made, and the request span says what the stage did.
func TestTraceStageAnswers(t *testing.T) {
	forEachProvider(t, func(t *testing.T, own bool) {
		e := newEnv(t, false, own)
		stored := `{"id":"chatcmpl-stored","object":"chat.completion","model":"fake-model","choices":[{"index":0,"message":{"role":"assistant","content":"cached"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`
		routes, _ := route.New([]route.Route{{Pattern: "demo", Targets: []route.Target{{Provider: "a", Model: "fake-model"}}}}, nil)
		gw, err := gateway.New(gateway.Config{Providers: map[string]provider.Provider{}, Routes: routes, Telemetry: e.tracer,
			Guard: &gateway.Guard{}, Stages: []gateway.Stage{answeringStage{[]byte(stored)}, namedStage("rag")}})
		if err != nil {
			t.Fatal(err)
		}
		e.gw = gw
		if w, _ := e.serve(t, `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`); w.Code != 200 {
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
		tr := e.tree(t)
		root := tr.root(t)
		if got := childNames(tr.children(root)); got != "admission,cache" {
			t.Fatalf("children %s", got)
		}
		a := attrs(root)
		if _, priced := a[telemetry.AttrCostUSD]; priced {
			t.Errorf("a cache hit was priced: %v", a[telemetry.AttrCostUSD])
		}
		if a[telemetry.AttrCache].AsString() != "hit" || a[telemetry.AttrAttempts].AsInt64() != 0 || a[telemetry.AttrResponseModel].AsString() != "fake-model" {
			t.Errorf("request span %v", a)
		}
	})
}

// TestTraceUnsampled: with the OTLPProvider sampling almost nothing, a
// new trace records no span; a client's unsampled traceparent reaches the
// upstream unsampled, in the client's trace; a sampled one is recorded.
func TestTraceUnsampled(t *testing.T) {
	e := newEnv(t, false, true)
	tp, err := telemetry.NewProvider(context.Background(), telemetry.Options{Endpoint: e.own.url, Protocol: telemetry.ProtocolHTTP, Sample: 1e-12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	e.tracer.Own, e.tp = tp, tp
	body := `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`
	if w, _ := e.serve(t, body); w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	if w, _ := e.serve(t, body, "traceparent", "00-"+tid+"-00f067aa0ba902b7-00"); w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	if n := len(e.tree(t).spans); n != 0 {
		t.Fatalf("%d spans recorded for unsampled traces", n)
	}
	hs := e.a.Stats().Headers
	got := hs[len(hs)-1].Get("Traceparent")
	if len(got) != 55 || got[:36] != "00-"+tid+"-" || got[36:52] == "00f067aa0ba902b7" || got[52:] != "-00" {
		t.Fatalf("upstream traceparent %q: want the client's trace, a span of the gateway's, unsampled", got)
	}
	if w, _ := e.serve(t, body, "traceparent", "00-"+tid+"-00f067aa0ba902b7-01"); w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	if root := e.tree(t).root(t); root.SpanContext.TraceID().String() != tid {
		t.Fatalf("sampled parent: root in trace %s", root.SpanContext.TraceID())
	}
}
