package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/openaicompat"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

// Benchmarks of the handler hot path.
//
// BenchmarkServeChat and BenchmarkServeChatStream go through the real
// openaicompat provider and HTTP client to an in-process fakellm over
// loopback, so their allocs/op also count net/http on both sides and
// fakellm's own work. The *Stub variants replace the provider by a canned
// in-memory answer and measure the gateway pipeline alone.
//
//	go test -run '^$' -bench . -benchmem ./internal/gateway/

const benchChunks = 20

// benchWriter is a discarding http.ResponseWriter that implements Flush so
// that the streaming path runs as it does behind Caddy.
type benchWriter struct {
	h      http.Header
	status int
	n      int
	tail   []byte // last bytes written, to check a stream's end
}

func newBenchWriter() *benchWriter { return &benchWriter{h: make(http.Header)} }

func (w *benchWriter) Header() http.Header { return w.h }

func (w *benchWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *benchWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	w.tail = append(w.tail[:0], p[max(0, len(p)-32):]...)
	return len(p), nil
}

func (w *benchWriter) Flush() {}

func (w *benchWriter) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
	w.tail = w.tail[:0]
}

// benchRequest is a reusable inbound request: the body reader is rewound
// before each use, so the loop measures the gateway rather than request
// construction.
type benchRequest struct {
	r    *http.Request
	rd   *bytes.Reader
	body []byte
}

func newBenchRequest(b *testing.B, body []byte) *benchRequest {
	b.Helper()
	rd := bytes.NewReader(body)
	r, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "http://gateway.test/v1/chat/completions", io.NopCloser(rd))
	if err != nil {
		b.Fatal(err)
	}
	r.ContentLength = int64(len(body))
	r.Header.Set("Content-Type", "application/json")
	return &benchRequest{r: r, rd: rd, body: body}
}

func (q *benchRequest) next() *http.Request {
	q.rd.Reset(q.body)
	return q.r
}

// benchChatBody returns a chat request for model of at least size bytes: a
// system prompt and a conversation of short turns.
func benchChatBody(model string, stream bool, size int) []byte {
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

func benchRoutes(b *testing.B) *route.Table {
	b.Helper()
	rt, err := route.New([]route.Route{{
		Pattern: "bench",
		Targets: []route.Target{{Provider: "fake", Model: "fake-model"}},
	}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return rt
}

// newFakeGateway returns a gateway whose "bench" model goes to an
// in-process fakellm through the openaicompat provider.
func newFakeGateway(b *testing.B) *Gateway {
	b.Helper()
	srv := httptest.NewServer(fakellm.New(fakellm.Options{Chunks: benchChunks}))
	b.Cleanup(srv.Close)
	h := provider.NewHTTP("fake", provider.Timeouts{})
	b.Cleanup(h.Close)
	p, err := openaicompat.New(openaicompat.Config{Name: "fake", BaseURL: srv.URL + "/v1"}, h)
	if err != nil {
		b.Fatal(err)
	}
	g, err := New(Config{Providers: map[string]provider.Provider{"fake": p}, Routes: benchRoutes(b)})
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// stubProvider answers from memory with what fakellm answered once. It
// reuses its response and stream, so it serves one request at a time.
type stubProvider struct {
	body   []byte
	events [][]byte // stream events without [DONE], usage chunk included
	resp   provider.Response
	st     stubStream
}

type stubStream struct {
	events [][]byte
	i      int
}

func (s *stubStream) Next() (sse.Event, error) {
	if s.i >= len(s.events) {
		return sse.Event{}, io.EOF
	}
	s.i++
	return sse.Event{Data: s.events[s.i-1]}, nil
}

func (s *stubStream) Close() error { return nil }

func (p *stubProvider) Name() string { return "fake" }

func (p *stubProvider) Do(_ context.Context, call *provider.Call) (*provider.Response, error) {
	if call.Req.Stream {
		p.st = stubStream{events: p.events}
		p.resp = provider.Response{Stream: &p.st}
	} else {
		p.resp = provider.Response{Body: p.body}
	}
	return &p.resp, nil
}

// newStubGateway records fakellm's answers (the stream with the usage chunk
// the gateway asks for) and serves them from a stubProvider.
func newStubGateway(b *testing.B) *Gateway {
	b.Helper()
	fake := fakellm.New(fakellm.Options{Chunks: benchChunks})
	record := func(body string) []byte {
		rec := httptest.NewRecorder()
		fake.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(body)))
		if rec.Code != http.StatusOK {
			b.Fatalf("fakellm: %d %s", rec.Code, rec.Body)
		}
		return rec.Body.Bytes()
	}
	p := &stubProvider{body: record(`{"model":"fake-model","messages":[{"role":"user","content":"hi"}]}`)}
	rd := sse.NewReader(bytes.NewReader(record(`{"model":"fake-model","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)), 0)
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		if !ev.IsDone() {
			p.events = append(p.events, bytes.Clone(ev.Data))
		}
	}
	if len(p.events) < benchChunks || !bytes.Contains(p.events[len(p.events)-1], []byte(`"usage"`)) {
		b.Fatalf("unexpected recorded stream: %d events", len(p.events))
	}
	g, err := New(Config{Providers: map[string]provider.Provider{"fake": p}, Routes: benchRoutes(b)})
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// benchServe runs g.ServeHTTP in a loop and checks the answers.
func benchServe(b *testing.B, g *Gateway, stream bool) {
	body := benchChatBody("bench", stream, 1024)
	q := newBenchRequest(b, body)
	q.r.Header.Set("Authorization", "Bearer "+benchSecret)
	w := newBenchWriter()
	check := func() {
		b.Helper()
		if w.status != http.StatusOK || w.n == 0 {
			b.Fatalf("status %d, %d bytes, ends %q", w.status, w.n, w.tail)
		}
		if stream && !bytes.HasSuffix(w.tail, []byte("data: [DONE]\n\n")) {
			b.Fatalf("stream ends with %q", w.tail)
		}
	}
	g.ServeHTTP(w, q.next()) // warm the connection pool and buffers
	check()
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		w.reset()
		g.ServeHTTP(w, q.next())
	}
	check()
}

// benchGuard is the full pipeline of make bench's "ai_gateway full" rows:
// a key with RPM, TPM, concurrency and a budget, model RPM and TPM, the
// usage ledger; its state in process (lim is a Memory, settlements nil) or
// on Redis (a Failover in front of it, with its settlement queue).
func benchGuard(b *testing.B, lim ratelimit.Limiter, ledger usage.Ledger, settlements *ratelimit.Queue) *Guard {
	b.Helper()
	keys, err := auth.NewMemory([]*auth.Key{{Name: "bench", Hash: auth.HashSecret(benchSecret),
		Policy: auth.Policy{RPM: 1e9, TPM: 1e9, Concurrency: 1e6, Budget: 1e9, BudgetPeriod: "month"}}}, "")
	if err != nil {
		b.Fatal(err)
	}
	pricing := usage.DefaultPricing()
	pricing.Set("fake-model", usage.Price{Input: 0.15, Output: 0.6})
	pricing.Set("bench", usage.Price{Input: 0.15, Output: 0.6})
	return &Guard{Keys: keys, Required: true, Limiter: lim, Ledger: ledger, Settlements: settlements, Pricing: pricing,
		ModelLimits: map[string]ModelLimits{"bench": {RPM: 1e9, TPM: 1e9}}}
}

const benchSecret = "sk-bench-0123456789"

// withGuard gives g (from newFakeGateway or newStubGateway) the full
// pipeline in process.
func withGuard(b *testing.B, g *Gateway) *Gateway {
	b.Helper()
	cfg := g.cfg
	cfg.Guard = benchGuard(b, ratelimit.NewMemory(nil), usage.NewMemoryLedger(), nil)
	g, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// withRedisGuard gives g the full pipeline on a real redis-server, as the
// app builds it, with the usage rollups.
func withRedisGuard(b *testing.B, g *Gateway) *Gateway {
	b.Helper()
	g, _ = redisGuard(b, g)
	return g
}

// redisGuard is withRedisGuard, returning the Redis client too.
func redisGuard(b *testing.B, g *Gateway) (*Gateway, *redis.Client) {
	b.Helper()
	srv := redistest.Start(b)
	client := srv.Client()
	lim := ratelimit.NewFailover(ratelimit.NewRedis(client, "aigw:rl:"), ratelimit.NewMemory(nil),
		ratelimit.FailoverOptions{Timeout: time.Second})
	q := ratelimit.NewQueue(lim, ratelimit.QueueOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	q.Start(ctx)
	b.Cleanup(func() { cancel(); q.Close() })
	cfg := g.cfg
	gd := benchGuard(b, lim, usage.NewRedisLedger(client, "aigw:usage:"), q)
	rollups := usage.NewRedisRollups(client, "aigw:rollup:")
	gd.Accounting = func(info *Info) ratelimit.Write { // as caddymodule's accounting
		return &usage.RollupEntry{Rollups: rollups, At: time.Now(), Dims: usage.Dims{Key: info.Key, Route: info.Route,
			Provider: info.Provider, UpstreamModel: info.UpstreamModel, Status: strconv.Itoa(info.Status)},
			Counts: usage.Counts{Requests: 1, InputTokens: info.Usage.InputTokens, OutputTokens: info.Usage.OutputTokens}}
	}
	cfg.Guard = gd
	g, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return g, client
}

func BenchmarkServeChat(b *testing.B) { benchServe(b, newFakeGateway(b), false) }

func BenchmarkServeChatStream(b *testing.B) { benchServe(b, newFakeGateway(b), true) }

func BenchmarkServeChatStub(b *testing.B) { benchServe(b, newStubGateway(b), false) }

func BenchmarkServeChatStreamStub(b *testing.B) { benchServe(b, newStubGateway(b), true) }

func BenchmarkServeChatFull(b *testing.B) { benchServe(b, withGuard(b, newFakeGateway(b)), false) }

func BenchmarkServeChatStreamFull(b *testing.B) { benchServe(b, withGuard(b, newFakeGateway(b)), true) }

func BenchmarkServeChatFullStub(b *testing.B) { benchServe(b, withGuard(b, newStubGateway(b)), false) }

func BenchmarkServeChatStreamFullStub(b *testing.B) {
	benchServe(b, withGuard(b, newStubGateway(b)), true)
}

func BenchmarkServeChatFullRedisStub(b *testing.B) {
	benchServe(b, withRedisGuard(b, newStubGateway(b)), false)
}

func BenchmarkParseRequest(b *testing.B) {
	body := benchChatBody("bench", true, 2048)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		req, oerr := openai.ParseRequest(openai.OpChat, body, 0)
		if oerr != nil || req.Model != "bench" {
			b.Fatal(oerr)
		}
	}
}

func BenchmarkTapUsage(b *testing.B) {
	cases := []struct {
		name string
		data string
		pass bool
	}{
		// A chunk without a usage member: the bytes.Contains fast path.
		{"content", `{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","system_fingerprint":"fp_fakellm","choices":[{"index":0,"delta":{"content":" word7"},"logprobs":null,"finish_reason":null}]}`, true},
		// What OpenAI (and fakellm) send on every chunk once
		// stream_options.include_usage is set, which the gateway always asks for.
		{"content_usage_null", `{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","system_fingerprint":"fp_fakellm","choices":[{"index":0,"delta":{"content":" word7"},"logprobs":null,"finish_reason":null}],"usage":null}`, true},
		// The final usage chunk the gateway asked for: parsed, then dropped.
		{"usage", `{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1700000000,"model":"fake-model","system_fingerprint":"fp_fakellm","choices":[],"usage":{"prompt_tokens":42,"completion_tokens":20,"total_tokens":62,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}`, false},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ev := dialect.Event{Event: sse.Event{Data: []byte(c.data)}}
			info := Info{Op: openai.OpChat}
			u := usageTap{info: &info}
			b.ReportAllocs()
			b.SetBytes(int64(len(ev.Data)))
			for b.Loop() {
				u.Event(&ev, provider.FormatOpenAI)
			}
			if info.Usage.Known == c.pass {
				b.Fatal("wrong verdict")
			}
		})
	}
}

// BenchmarkServeChatFullRedisStubParallel is the full pipeline on Redis
// with requests from every P at once, so that settlements leave in
// batches as they do under load.
func BenchmarkServeChatFullRedisStubParallel(b *testing.B) {
	g, client := redisGuard(b, newStubGateway(b))
	body := benchChatBody("bench", false, 1024)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.SetParallelism(8)
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	scripts := func() int64 {
		s, err := client.Info(context.Background(), "commandstats").Result()
		if err != nil {
			b.Fatal(err)
		}
		_, rest, _ := strings.Cut(s, "cmdstat_evalsha:calls=")
		n, _, _ := strings.Cut(rest, ",")
		v, _ := strconv.ParseInt(n, 10, 64)
		return v
	}
	scriptsBefore := scripts()
	defer func() { // the process's CPU time per request (redis-server's not included)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
		b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		b.ReportMetric(float64(scripts()-scriptsBefore)/float64(b.N), "scripts/op") // admissions' and settlements'
	}()
	b.RunParallel(func(pb *testing.PB) {
		q := newBenchRequest(b, body)
		q.r.Header.Set("Authorization", "Bearer "+benchSecret)
		w := newBenchWriter()
		for pb.Next() {
			w.reset()
			g.ServeHTTP(w, q.next())
			if w.status != http.StatusOK {
				b.Errorf("status %d", w.status)
				return
			}
		}
	})
}
