package ratelimit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

// stateLog records OnStateChange calls.
type stateLog struct {
	mu     sync.Mutex
	events []stateEvent
}

type stateEvent struct {
	up  bool
	err error
}

func (l *stateLog) record(up bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, stateEvent{up, err})
}

func (l *stateLog) get() []stateEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]stateEvent(nil), l.events...)
}

const failoverTimeout = 50 * time.Millisecond

func newFailover(t *testing.T, failOpen bool) (*redistest.Server, *ratelimit.Failover, *ratelimit.Memory, *stateLog) {
	t.Helper()
	srv := redistest.Start(t)
	log := &stateLog{}
	mem := ratelimit.NewMemory(nil)
	f := ratelimit.NewFailover(ratelimit.NewRedis(srv.Client(), "fo:"), mem, ratelimit.FailoverOptions{
		Timeout:       failoverTimeout,
		FailOpen:      failOpen,
		OnStateChange: log.record,
	})
	return srv, f, mem, log
}

// waitPrimary calls Take until the primary answers again and returns how
// long that took.
func waitPrimary(t *testing.T, f *ratelimit.Failover, r ratelimit.Rate) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		res, err := f.Take(context.Background(), "probe", r, 1)
		if err == nil && res.Backend == ratelimit.BackendPrimary {
			return time.Since(start)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("primary not used again within 5s of the restart (last: %+v, %v)", res, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestFailoverFailOpen(t *testing.T) {
	srv, f, mem, log := newFailover(t, true)
	ctx := context.Background()
	r := ratelimit.Rate{Limit: 6000, Period: time.Minute, Burst: 100}

	res := mustTake(t, f, "k", r, 1)
	if !res.Allowed || res.Backend != ratelimit.BackendPrimary || !f.Up() {
		t.Fatalf("healthy: %+v, up=%v", res, f.Up())
	}

	srv.Kill()
	start := time.Now()
	res = mustTake(t, f, "k", r, 1)
	if d := time.Since(start); d > 10*failoverTimeout {
		t.Fatalf("first call after the kill took %v, want about the %v timeout", d, failoverTimeout)
	}
	if !res.Allowed || res.Backend != ratelimit.BackendFallback {
		t.Fatalf("down: %+v, want allowed by the fallback", res)
	}
	if ev := log.get(); len(ev) != 1 || ev[0].up || ev[0].err == nil || f.Up() {
		t.Fatalf("state events %+v, up=%v; want one down event with its error", ev, f.Up())
	}
	// While down, the primary is skipped: decisions are immediate.
	start = time.Now()
	for range 50 {
		if res := mustTake(t, f, "k", r, 1); !res.Allowed || res.Backend != ratelimit.BackendFallback {
			t.Fatalf("down: %+v", res)
		}
	}
	if d := time.Since(start); d > 10*failoverTimeout { // paying the timeout each time would take 50x
		t.Fatalf("50 decisions while down took %v: the primary was not skipped", d)
	}

	// Operations decided by the fallback are undone on the fallback.
	slot, err := f.Acquire(ctx, "c", "req-1", 1, time.Minute)
	if err != nil || !slot.Allowed || slot.Backend != ratelimit.BackendFallback {
		t.Fatalf("Acquire while down: %+v, %v", slot, err)
	}
	exp := time.Now().Add(time.Hour)
	resv, err := f.Reserve(ctx, "team", "w", 100, 100, exp)
	if err != nil || !resv.Allowed || resv.Backend != ratelimit.BackendFallback {
		t.Fatalf("Reserve while down: %+v, %v", resv, err)
	}
	tpm := ratelimit.Rate{Limit: 1000, Period: time.Minute}
	tok := mustTake(t, f, "tpm", tpm, 1000)
	if !tok.Allowed || tok.Backend != ratelimit.BackendFallback {
		t.Fatalf("Take while down: %+v", tok)
	}

	srv.Restart()
	took := waitPrimary(t, f, r)
	t.Logf("primary used again %v after the restart", took)
	if ev := log.get(); len(ev) != 2 || !ev[1].up || ev[1].err != nil {
		t.Fatalf("state events %+v, want down then up", ev)
	}

	if err := f.Release(ctx, "c", "req-1", slot.Backend); err != nil {
		t.Fatal(err)
	}
	if res, _ := mem.Acquire(ctx, "c", "req-2", 1, time.Minute); !res.Allowed {
		t.Fatal("Release of a fallback slot did not reach the fallback")
	}
	if err := f.Refund(ctx, "tpm", tpm, 1000, tok.Backend); err != nil {
		t.Fatal(err)
	}
	if res := mustTake(t, mem, "tpm", tpm, 0); res.Remaining != 1000 {
		t.Fatalf("fallback remaining after Refund = %d, want 1000", res.Remaining)
	}
	if err := f.Settle(ctx, "team", "w", 100, 30, exp, resv.Backend); err != nil {
		t.Fatal(err)
	}
	if s, r, _ := mem.Spent(ctx, "team", "w"); s != 0 || r != 0 {
		t.Fatalf("fallback budget after Settle = %d, %d; want the reservation released", s, r)
	}
	if s, r, err := f.Spent(ctx, "team", "w"); err != nil || s != 30 || r != 0 {
		t.Fatalf("primary budget after Settle = %d, %d, %v; want the spend recorded", s, r, err)
	}
}

func TestFailoverFailClosed(t *testing.T) {
	srv, f, _, log := newFailover(t, false)
	ctx := context.Background()
	r := ratelimit.Rate{Limit: 600, Period: time.Minute}
	mustTake(t, f, "k", r, 1)

	srv.Kill()
	start := time.Now()
	_, err := f.Take(ctx, "k", r, 1)
	if d := time.Since(start); d > 10*failoverTimeout {
		t.Fatalf("fail-closed decision took %v, want about the %v timeout", d, failoverTimeout)
	}
	if !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	start = time.Now()
	for range 50 {
		if _, err := f.Acquire(ctx, "c", "id", 1, time.Minute); !errors.Is(err, ratelimit.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	}
	if d := time.Since(start); d > 10*failoverTimeout { // paying the timeout each time would take 50x
		t.Fatalf("50 rejections while down took %v: the primary was not skipped", d)
	}
	if _, _, err := f.Spent(ctx, "team", "w"); !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("Spent err = %v, want ErrUnavailable", err)
	}
	if err := f.Release(ctx, "c", "id", ratelimit.BackendPrimary); !errors.Is(err, ratelimit.ErrUnavailable) {
		t.Fatalf("Release err = %v, want ErrUnavailable", err)
	}

	srv.Restart()
	waitPrimary(t, f, r)
	if ev := log.get(); len(ev) != 2 || ev[0].up || !ev[1].up {
		t.Fatalf("state events %+v, want down then up", ev)
	}
}

func TestFailoverCallerErrorsDoNotTripIt(t *testing.T) {
	_, f, _, log := newFailover(t, false)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	r := ratelimit.Rate{Limit: 600, Period: time.Minute}
	if _, err := f.Take(canceled, "k", r, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled caller: err = %v, want context.Canceled", err)
	}
	if _, err := f.Take(context.Background(), "k", ratelimit.Rate{}, 1); !errors.Is(err, ratelimit.ErrInvalid) {
		t.Fatalf("invalid rate: err = %v, want ErrInvalid", err)
	}
	if !f.Up() || len(log.get()) != 0 {
		t.Fatalf("caller errors marked the primary down: %+v", log.get())
	}
	if res := mustTake(t, f, "k", r, 1); !res.Allowed || res.Backend != ratelimit.BackendPrimary {
		t.Fatalf("after caller errors: %+v", res)
	}
}

func TestFailoverProbesOncePerBackoff(t *testing.T) {
	// Under concurrent load while the primary is down, at most one request
	// at a time pays the timeout; the others are answered immediately.
	srv, f, _, _ := newFailover(t, true)
	r := ratelimit.Rate{Limit: 1 << 30, Period: time.Minute}
	mustTake(t, f, "k", r, 1)
	srv.Kill()
	mustTake(t, f, "k", r, 1) // marks it down

	var mu sync.Mutex
	slow := 0
	var wg sync.WaitGroup
	deadline := time.Now().Add(1500 * time.Millisecond)
	for range 8 {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				start := time.Now()
				res := mustTake(t, f, "k", r, 1)
				if res.Backend != ratelimit.BackendFallback {
					t.Errorf("decision by %v while down", res.Backend)
				}
				// A probe pays (about) the whole timeout; a call merely delayed
				// by a loaded machine's scheduler rarely takes 80% of it.
				if time.Since(start) >= failoverTimeout*4/5 {
					mu.Lock()
					slow++
					mu.Unlock()
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	// Backoff 250ms, 500ms, 1s...: a handful of probes in 1.5s.
	t.Logf("%d slow (probing) calls in 1.5s", slow)
	if slow > 4 {
		t.Fatalf("%d slow calls in 1.5s, want at most one per backoff period (<= 4)", slow)
	}
}

func TestFailoverKillAndRestartUnderLoad(t *testing.T) {
	srv, f, _, log := newFailover(t, true)
	r := ratelimit.Rate{Limit: 1 << 30, Period: time.Minute}
	mustTake(t, f, "k", r, 1)

	var (
		mu      sync.Mutex
		worst   time.Duration
		by      [2]int
		stopped = make(chan struct{})
		wg      sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stopped:
					return
				default:
				}
				start := time.Now()
				res, err := f.Take(context.Background(), "k", r, 1)
				d := time.Since(start)
				if err != nil || !res.Allowed {
					t.Errorf("fail-open Take: %+v, %v", res, err)
					return
				}
				mu.Lock()
				worst = max(worst, d)
				by[res.Backend]++
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	time.Sleep(150 * time.Millisecond)
	srv.Kill()
	time.Sleep(500 * time.Millisecond)
	srv.Restart()
	deadline := time.Now().Add(5 * time.Second)
	for !f.Up() {
		if time.Now().After(deadline) {
			t.Fatal("primary not up within 5s of the restart")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(stopped)
	wg.Wait()
	t.Logf("decisions: primary %d, fallback %d; slowest %v", by[0], by[1], worst)
	if by[0] == 0 || by[1] == 0 {
		t.Fatalf("decisions by backend %v, want both", by)
	}
	if worst > 10*failoverTimeout {
		t.Fatalf("slowest decision %v, want bounded by about the %v timeout", worst, failoverTimeout)
	}
	if ev := log.get(); len(ev) != 2 || ev[0].up || !ev[1].up {
		t.Fatalf("state events %+v, want down then up", ev)
	}
}
