package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

// funcProvider answers every call with do.
type funcProvider struct {
	do func(ctx context.Context, call *provider.Call) (*provider.Response, error)
}

func (p *funcProvider) Name() string { return "p" }

func (p *funcProvider) Do(ctx context.Context, call *provider.Call) (*provider.Response, error) {
	return p.do(ctx, call)
}

// brokenStream yields its events, then fails.
type brokenStream struct{ events []string }

func (s *brokenStream) Next() (sse.Event, error) {
	if len(s.events) == 0 {
		return sse.Event{}, &provider.Error{Provider: "p", Kind: provider.KindConnect, StreamStarted: true}
	}
	ev := sse.Event{Data: []byte(s.events[0])}
	s.events = s.events[1:]
	return ev, nil
}

func (s *brokenStream) Close() error { return nil }

const answer = `{"id":"x","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":30,"completion_tokens":20,"total_tokens":50}}`

// Through Serve, the admission's settlement follows how the request ended.
func TestServeSettlesTheAdmission(t *testing.T) {
	upstreamDown := &provider.Error{Provider: "p", Kind: provider.KindStatus, Status: 500, Message: "boom"}
	cases := []struct {
		name   string
		stream bool
		do     func(context.Context, *provider.Call) (*provider.Response, error)
		cancel bool // the client leaves before the answer
		status int
		tpm    int64 // kept by TPM; -1: the whole reservation
	}{
		{"answered with usage", false, func(context.Context, *provider.Call) (*provider.Response, error) {
			return &provider.Response{Body: []byte(answer)}, nil
		}, false, 200, 50},
		{"upstream error", false, func(context.Context, *provider.Call) (*provider.Response, error) {
			return nil, upstreamDown
		}, false, 502, 0},
		{"stream broken before its usage", true, func(context.Context, *provider.Call) (*provider.Response, error) {
			return &provider.Response{Stream: &brokenStream{events: []string{`{"id":"x","choices":[{"index":0,"delta":{"content":"hi"}}]}`}}}, nil
		}, false, 200, -1},
		{"client gone", false, func(ctx context.Context, _ *provider.Call) (*provider.Response, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}, true, 0, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clock := func() time.Time { return time.Date(2099, 11, 25, 12, 0, 0, 0, time.UTC) }
			mem := ratelimit.NewMemory(clock)
			keys, err := auth.NewMemory([]*auth.Key{{Name: "team-a", Hash: auth.HashSecret("sk-a"),
				Policy: auth.Policy{RPM: 5, TPM: 10_000, Concurrency: 1}}}, "")
			if err != nil {
				t.Fatal(err)
			}
			tbl, _ := route.New([]route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "p"}}}}, nil)
			gd := &Guard{Keys: keys, Required: true, Limiter: mem, Ledger: usage.NewMemoryLedger(), clock: clock}
			g, err := New(Config{Routes: tbl, Providers: map[string]provider.Provider{"p": &funcProvider{do: c.do}}, Guard: gd,
				RetryBackoff: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			body := `{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"hi"}]`
			if c.stream {
				body += `,"stream":true`
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/v1/chat/completions", strings.NewReader(body+"}"))
			r.Header.Set("Authorization", "Bearer sk-a")
			if c.cancel {
				time.AfterFunc(10*time.Millisecond, cancel)
			}
			w := httptest.NewRecorder()
			var info Info
			g.Serve(w, r, &info)
			if c.status != 0 && w.Code != c.status {
				t.Fatalf("status %d %s", w.Code, w.Body)
			}
			if w.Header().Get(hdrLimitRequests) != "5" || w.Header().Get(hdrRemainingRequests) != "4" {
				t.Fatalf("rate headers %v", w.Header())
			}
			peek := func(key string, limit int64) int64 {
				res, err := mem.Take(context.Background(), key, ratelimit.Rate{Limit: limit, Period: time.Minute}, 0)
				if err != nil {
					t.Fatal(err)
				}
				return limit - res.Remaining
			}
			tpm := c.tpm
			if tpm < 0 {
				rem, err := strconv.ParseInt(w.Header().Get(hdrRemainingTokens), 10, 64)
				if err != nil {
					t.Fatalf("remaining tokens: %v", err)
				}
				tpm = 10_000 - rem
			}
			if got := peek("key:team-a:tpm", 10_000); got != tpm {
				t.Fatalf("TPM keeps %d, want %d", got, tpm)
			}
			if got := peek("key:team-a:rpm", 5); got != 1 {
				t.Fatalf("RPM counts %d, want 1", got)
			}
			if res, _ := mem.Acquire(context.Background(), "key:team-a:concurrency", "probe", 1, time.Minute); !res.Allowed {
				t.Fatal("concurrency slot still held")
			}
		})
	}
}

// A refusal answers 429 in OpenAI's envelope with Retry-After and never
// reaches the upstream.
func TestServeRefusesOverTheLimit(t *testing.T) {
	keys, _ := auth.NewMemory([]*auth.Key{{Name: "team-a", Hash: auth.HashSecret("sk-a"), Policy: auth.Policy{RPM: 1}}}, "")
	tbl, _ := route.New([]route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "p"}}}}, nil)
	calls := 0
	p := &funcProvider{do: func(context.Context, *provider.Call) (*provider.Response, error) {
		calls++
		return &provider.Response{Body: []byte(answer)}, nil
	}}
	g, _ := New(Config{Routes: tbl, Providers: map[string]provider.Provider{"p": p},
		Guard: &Guard{Keys: keys, Required: true, Limiter: ratelimit.NewMemory(nil)}})
	serve := func() (*httptest.ResponseRecorder, Info) {
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(`{"model":"m","messages":[]}`))
		r.Header.Set("Authorization", "Bearer sk-a")
		w := httptest.NewRecorder()
		var info Info
		g.Serve(w, r, &info)
		return w, info
	}
	if w, _ := serve(); w.Code != 200 {
		t.Fatalf("first: %d %s", w.Code, w.Body)
	}
	w, info := serve()
	if w.Code != 429 || w.Header().Get("Retry-After") == "" || gjson.Get(w.Body.String(), "error.code").Str != "rate_limit_exceeded" {
		t.Fatalf("second: %d %v %s", w.Code, w.Header(), w.Body)
	}
	if info.Limited != "rate_limit_exceeded" || calls != 1 {
		t.Fatalf("limited %q, upstream calls %d", info.Limited, calls)
	}
}
