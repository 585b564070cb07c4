package quota

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

// backends runs f on an in-process pacer and on one shared through a real
// Redis.
func backends(t *testing.T, f func(t *testing.T, mk func(name string, l Limits) *Pacer)) {
	t.Run("memory", func(t *testing.T) {
		f(t, func(name string, l Limits) *Pacer { return New(name, l, nil, "") })
	})
	t.Run("redis", func(t *testing.T) {
		rs := redistest.Start(t)
		lim := ratelimit.NewRedis(rs.Client(), "test:")
		f(t, func(name string, l Limits) *Pacer { return New(name, l, lim, "quota:") })
	})
}

func TestAcquireBurstThenWait(t *testing.T) {
	backends(t, func(t *testing.T, mk func(string, Limits) *Pacer) {
		// 600 rpm = one every 100ms, burst 3.
		p := mk("p", Limits{RPM: 600, Burst: 3})
		ctx := context.Background()
		for i := range 3 {
			if _, err := Acquire(ctx, [2]*Pacer{p}, 0, 0); err != nil {
				t.Fatalf("burst request %d: %v", i, err)
			}
		}
		_, err := Acquire(ctx, [2]*Pacer{p}, 0, 0)
		var w *Wait
		if !errors.As(err, &w) || !errors.Is(err, ErrNoHeadroom) {
			t.Fatalf("4th request: %v, want a *Wait", err)
		}
		if w.After <= 0 || w.After > 150*time.Millisecond {
			t.Fatalf("Retry-After %v, want about 100ms", w.After)
		}
		start := time.Now()
		if _, err := Acquire(ctx, [2]*Pacer{p}, 0, time.Second); err != nil {
			t.Fatalf("queued request: %v", err)
		}
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Fatalf("queued request did not wait (%v)", d)
		}
	})
}

func TestAcquireIsPaced(t *testing.T) {
	backends(t, func(t *testing.T, mk func(string, Limits) *Pacer) {
		// 1200 rpm = 20/s, burst 2: 12 clients for 500ms get at most
		// burst + 10 (+1 for the edges) through.
		p := mk("p", Limits{RPM: 1200, Burst: 2})
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		var n atomic.Int64
		var wg sync.WaitGroup
		for range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					if _, err := Acquire(ctx, [2]*Pacer{p}, 0, time.Second); err == nil && ctx.Err() == nil {
						n.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if got := n.Load(); got > 13 || got < 6 {
			t.Fatalf("%d requests in 500ms, want at most 13 (burst 2 + 20/s)", got)
		}
	})
}

func TestTokensSettled(t *testing.T) {
	backends(t, func(t *testing.T, mk func(string, Limits) *Pacer) {
		p := mk("p", Limits{TPM: 6000}) // 100 tokens/s, bucket 6000
		ctx := context.Background()
		g, err := Acquire(ctx, [2]*Pacer{p}, 5000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Acquire(ctx, [2]*Pacer{p}, 5000, 0); err == nil {
			t.Fatal("second 5000-token estimate admitted on a 6000 bucket")
		}
		g.Settle(ctx, 100) // used 100 of 5000: 4900 back
		if _, err := Acquire(ctx, [2]*Pacer{p}, 5000, 0); err != nil {
			t.Fatalf("after the settlement: %v", err)
		}
	})
}

func TestAllOrNothing(t *testing.T) {
	backends(t, func(t *testing.T, mk func(string, Limits) *Pacer) {
		prov := mk("prov", Limits{RPM: 60, Burst: 1})
		a := mk("a", Limits{RPM: 60, Burst: 5})
		ctx := context.Background()
		if _, err := Acquire(ctx, [2]*Pacer{prov, a}, 0, 0); err != nil {
			t.Fatal(err)
		}
		// The provider's quota is spent: the target's must not be taken.
		if _, err := Acquire(ctx, [2]*Pacer{prov, a}, 0, 0); err == nil {
			t.Fatal("admitted beyond the provider's quota")
		}
		for i := range 4 {
			if _, err := Acquire(ctx, [2]*Pacer{a}, 0, 0); err != nil {
				t.Fatalf("target request %d: %v (the refused admission took some)", i, err)
			}
		}
	})
}

func TestObserveHeaders(t *testing.T) {
	now := time.Now()
	h := http.Header{}
	h.Set("x-ratelimit-remaining-requests", "0")
	h.Set("x-ratelimit-reset-requests", "1.5s")
	h.Set("x-ratelimit-remaining-tokens", "900")
	h.Set("x-ratelimit-reset-tokens", "6m0s")
	r := ParseHeaders(h, now)
	if r.Requests != 0 || r.ResetRequests != 1500*time.Millisecond || r.Tokens != 900 || r.ResetTokens != 6*time.Minute {
		t.Fatalf("OpenAI headers: %+v", r)
	}
	a := http.Header{}
	a.Set("anthropic-ratelimit-requests-remaining", "7")
	a.Set("anthropic-ratelimit-requests-reset", now.Add(30*time.Second).UTC().Format(time.RFC3339))
	a.Set("anthropic-ratelimit-input-tokens-remaining", "500")
	a.Set("anthropic-ratelimit-output-tokens-remaining", "200")
	r = ParseHeaders(a, now)
	if r.Requests != 7 || r.ResetRequests < 28*time.Second || r.ResetRequests > 31*time.Second || r.Tokens != 200 {
		t.Fatalf("Anthropic headers: %+v", r)
	}
	if ParseHeaders(http.Header{}, now).Known() {
		t.Fatal("no headers read as known")
	}

	backends(t, func(t *testing.T, mk func(string, Limits) *Pacer) {
		p := mk("p", Limits{RPM: 6000})
		p.Observe(time.Now(), Report{Requests: 0, Tokens: -1, ResetRequests: 300 * time.Millisecond})
		if p.Headroom(time.Now()) != 0 {
			t.Fatal("headroom left after the provider said 0 remaining")
		}
		_, err := Acquire(context.Background(), [2]*Pacer{p}, 0, 0)
		var w *Wait
		if !errors.As(err, &w) || w.After < 200*time.Millisecond {
			t.Fatalf("acquire while the provider is spent: %v", err)
		}
		if _, err := Acquire(context.Background(), [2]*Pacer{p}, 0, time.Second); err != nil {
			t.Fatalf("acquire after the reset: %v", err)
		}
	})
}

func TestRegistryKeepsState(t *testing.T) {
	r := NewRegistry()
	a := r.Get("x", Limits{RPM: 60}, nil, "")
	if r.Get("x", Limits{RPM: 60}, nil, "") != a {
		t.Fatal("same limits: a new pacer")
	}
	if r.Get("x", Limits{RPM: 120}, nil, "") == a {
		t.Fatal("new limits: the old pacer")
	}
}
