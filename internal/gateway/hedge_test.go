package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/quota"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

// timedProvider answers okBody after delay (or fails with err), and counts
// the calls and the calls whose context ended first.
type timedProvider struct {
	name      string
	delay     time.Duration
	err       *provider.Error
	calls     atomic.Int64
	cancelled atomic.Int64
}

func (p *timedProvider) Name() string { return p.name }

func (p *timedProvider) Do(ctx context.Context, _ *provider.Call) (*provider.Response, error) {
	p.calls.Add(1)
	select {
	case <-time.After(p.delay):
	case <-ctx.Done():
		p.cancelled.Add(1)
		return nil, ctx.Err()
	}
	if p.err != nil {
		e := *p.err
		e.Provider = p.name
		return nil, &e
	}
	return &provider.Response{Format: provider.FormatOpenAI, Body: []byte(okBody)}, nil
}

func hedgeGateway(t *testing.T, rt route.Route, ps ...*timedProvider) *Gateway {
	t.Helper()
	stubs := map[string]provider.Provider{}
	for _, p := range ps {
		stubs[p.name] = p
	}
	tbl, err := route.New([]route.Route{rt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tbl.Bind(route.NewLoads())
	g, err := New(Config{Providers: stubs, Routes: tbl, Health: route.NewHealth(5, time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func serveCtx(ctx context.Context, g *Gateway) (*httptest.ResponseRecorder, *Info) {
	r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", strings.NewReader(chat("m", false))).WithContext(ctx)
	w := httptest.NewRecorder()
	var info Info
	g.Serve(w, r, &info)
	return w, &info
}

// hedgeRoute is a route over targets slow then fast (cost: slow is
// chosen first) hedged after 20ms.
func hedgeRoute() route.Route {
	return route.Route{Pattern: "m", Policy: route.PolicyCost, HedgeAfter: 20 * time.Millisecond,
		Targets: []route.Target{{Provider: "slow", Cost: 1}, {Provider: "fast", Cost: 2}}}
}

func TestHedgeTakesTheFirstAnswer(t *testing.T) {
	slow, fast := &timedProvider{name: "slow", delay: time.Second}, &timedProvider{name: "fast", delay: 5 * time.Millisecond}
	g := hedgeGateway(t, hedgeRoute(), slow, fast)
	start := time.Now()
	w, info := serveCtx(context.Background(), g)
	if w.Code != 200 || info.Provider != "fast" || info.Attempts != 2 || info.Hedges != 1 || w.Header().Get(HeaderAttempts) != "2" {
		t.Fatalf("%d via %s, attempts %d, hedges %d", w.Code, info.Provider, info.Attempts, info.Hedges)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Fatalf("took %v: the slow attempt was waited for", d)
	}
	waitFor(t, func() bool { return slow.cancelled.Load() == 1 }, "the slow loser was not cancelled")
	tbl := g.cfg.Routes
	rt, _ := tbl.Lookup("m")
	waitFor(t, func() bool { return rt.Targets[0].Load().InFlight() == 0 && rt.Targets[1].Load().InFlight() == 0 }, "in flight counts not back to 0")
}

func TestHedgeNotNeededForAFastTarget(t *testing.T) {
	slow, fast := &timedProvider{name: "slow", delay: 2 * time.Millisecond}, &timedProvider{name: "fast", delay: time.Millisecond}
	g := hedgeGateway(t, hedgeRoute(), slow, fast)
	w, info := serveCtx(context.Background(), g)
	if w.Code != 200 || info.Provider != "slow" || info.Attempts != 1 || fast.calls.Load() != 0 {
		t.Fatalf("%d via %s, attempts %d, fast calls %d", w.Code, info.Provider, info.Attempts, fast.calls.Load())
	}
}

func TestHedgeBothFail(t *testing.T) {
	slow := &timedProvider{name: "slow", delay: 60 * time.Millisecond, err: status500}
	fast := &timedProvider{name: "fast", delay: time.Millisecond, err: status500}
	g := hedgeGateway(t, hedgeRoute(), slow, fast)
	w, info := serveCtx(context.Background(), g)
	if w.Code < 500 || info.Attempts != 2 || slow.calls.Load() != 1 || fast.calls.Load() != 1 {
		t.Fatalf("%d, attempts %d, calls %d %d", w.Code, info.Attempts, slow.calls.Load(), fast.calls.Load())
	}
}

func TestHedgeClientGone(t *testing.T) {
	slow, fast := &timedProvider{name: "slow", delay: time.Second}, &timedProvider{name: "fast", delay: time.Second}
	g := hedgeGateway(t, hedgeRoute(), slow, fast)
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Millisecond)
	defer cancel()
	_, info := serveCtx(ctx, g)
	if info.Outcome != OutcomeClientGone || info.Attempts != 2 {
		t.Fatalf("outcome %v, attempts %d", info.Outcome, info.Attempts)
	}
	waitFor(t, func() bool { return slow.cancelled.Load() == 1 && fast.cancelled.Load() == 1 }, "attempts not cancelled")
}

func TestPaceSkipsATargetWithoutHeadroom(t *testing.T) {
	a, b := &timedProvider{name: "a"}, &timedProvider{name: "b"}
	rt := route.Route{Pattern: "m", Policy: route.PolicyCost, Targets: []route.Target{{Provider: "a", Cost: 1}, {Provider: "b", Cost: 2}}}
	tbl, err := route.New([]route.Route{rt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := tbl.Lookup("m")
	// 60 rpm with a burst of 1 each; no queue.
	r.Targets[0].Quota = &quota.Target{Pacers: [2]*quota.Pacer{quota.New("a", quota.Limits{RPM: 60, Burst: 1}, nil, "")}}
	r.Targets[1].Quota = &quota.Target{Pacers: [2]*quota.Pacer{quota.New("b", quota.Limits{RPM: 60, Burst: 1}, nil, "")}}
	g, err := New(Config{Providers: map[string]provider.Provider{"a": a, "b": b}, Routes: tbl})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 2 {
		w, info := serveCtx(context.Background(), g)
		if w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		got = append(got, info.Provider)
	}
	if got[0] != "a" || got[1] != "b" {
		t.Fatalf("picks %v, want a then b (a without headroom)", got)
	}
	w, _ := serveCtx(context.Background(), g)
	if w.Code != 429 || !strings.Contains(w.Body.String(), "provider_quota_exceeded") || w.Header().Get("Retry-After") != "1" {
		t.Fatalf("both at quota: %d %s Retry-After %q", w.Code, w.Body, w.Header().Get("Retry-After"))
	}
	if a.calls.Load()+b.calls.Load() != 2 {
		t.Fatalf("upstream calls %d", a.calls.Load()+b.calls.Load())
	}
}

func TestPaceWaitsInTheQueue(t *testing.T) {
	a := &timedProvider{name: "a"}
	rt := route.Route{Pattern: "m", Targets: []route.Target{{Provider: "a"}}}
	tbl, _ := route.New([]route.Route{rt}, nil)
	r, _ := tbl.Lookup("m")
	// 600 rpm = one every 100ms, burst 1, a queue of 1s.
	r.Targets[0].Quota = &quota.Target{Queue: time.Second, Pacers: [2]*quota.Pacer{quota.New("a", quota.Limits{RPM: 600, Burst: 1}, nil, "")}}
	g, _ := New(Config{Providers: map[string]provider.Provider{"a": a}, Routes: tbl})
	var wg sync.WaitGroup
	var ok atomic.Int64
	start := time.Now()
	for range 4 {
		wg.Go(func() {
			if w, _ := serveCtx(context.Background(), g); w.Code == 200 {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 4 {
		t.Fatalf("%d of 4 answered", ok.Load())
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("4 requests at 10/s with a burst of 1 took %v: not paced", d)
	}
}

func waitFor(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHedgeDelayP95(t *testing.T) {
	rt := route.Route{Pattern: "m", HedgeP95: true, Targets: []route.Target{{Provider: "a"}, {Provider: "b"}}}
	tbl, _ := route.New([]route.Route{rt}, nil)
	tbl.Bind(route.NewLoads())
	r, _ := tbl.Lookup("m")
	if d := hedgeDelay(r, 0); d != DefaultHedgeAfter {
		t.Fatalf("before a sample: %v, want %v", d, DefaultHedgeAfter)
	}
	r.HedgeAfter = 300 * time.Millisecond
	if d := hedgeDelay(r, 0); d != 300*time.Millisecond {
		t.Fatalf("before a sample with hedge_after: %v", d)
	}
	for _, ms := range []int{100, 120, 80, 100, 110, 90} {
		r.Targets[0].Load().ObserveTTFT(time.Duration(ms) * time.Millisecond)
	}
	if d := hedgeDelay(r, 0); d < 100*time.Millisecond || d > 200*time.Millisecond {
		t.Fatalf("p95 of ~100ms samples: %v", d)
	}
}
