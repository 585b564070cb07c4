package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
)

// env is one backend under test plus its notion of time. With a fake clock
// (Memory) sleep advances the clock and timings are exact; with Redis time is
// real, sleep sleeps and assertions allow for the time the test itself takes.
type env struct {
	lim   ratelimit.Limiter
	now   func() time.Time
	sleep func(time.Duration)
	exact bool
}

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func memoryEnv(*testing.T) env {
	c := newFakeClock()
	return env{lim: ratelimit.NewMemory(c.Now), now: c.Now, sleep: c.Advance, exact: true}
}

// slack is how much real time a few sequential Redis round trips may take
// (generous for the race detector on a loaded machine).
const slack = 50 * time.Millisecond

// dur asserts got == want exactly (fake clock) or, with real time, that got
// lies in (want - slack, want]: time only makes the remaining wait shorter.
func (e env) dur(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	if e.exact {
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
		return
	}
	if got > want || got <= want-slack {
		t.Errorf("%s = %v, want in (%v, %v]", what, got, want-slack, want)
	}
}

// units asserts a Remaining value: exact, or with real time at most extra
// more (capacity replenishes while the test runs).
func (e env) units(t *testing.T, what string, got, want, extra int64) {
	t.Helper()
	if e.exact {
		extra = 0
	}
	if got < want || got > want+extra {
		t.Errorf("%s = %d, want in [%d, %d]", what, got, want, want+extra)
	}
}

func mustTake(t *testing.T, l ratelimit.Limiter, key string, r ratelimit.Rate, cost int64) ratelimit.Result {
	t.Helper()
	res, err := l.Take(context.Background(), key, r, cost)
	if err != nil {
		t.Fatalf("Take(%s, %d): %v", key, cost, err)
	}
	return res
}

// runSuite runs the behaviour shared by all backends. mk returns a fresh
// backend (or at least fresh keys) for each subtest.
func runSuite(t *testing.T, mk func(*testing.T) env) {
	ctx := context.Background()

	t.Run("BurstThenRate", func(t *testing.T) {
		e := mk(t)
		r := ratelimit.Rate{Limit: 600, Period: time.Minute, Burst: 5} // one per 100ms
		for i := range 5 {
			res := mustTake(t, e.lim, "k", r, 1)
			if !res.Allowed || res.Limit != 600 {
				t.Fatalf("take %d: %+v, want allowed with limit 600", i, res)
			}
			e.units(t, fmt.Sprintf("take %d remaining", i), res.Remaining, int64(4-i), 1)
		}
		res := mustTake(t, e.lim, "k", r, 1)
		if res.Allowed || res.Never {
			t.Fatalf("6th take: %+v, want denied (not never)", res)
		}
		e.dur(t, "RetryAfter", res.RetryAfter, 100*time.Millisecond)
		e.dur(t, "ResetAfter", res.ResetAfter, 500*time.Millisecond)
		if res.Remaining != 0 {
			t.Errorf("Remaining = %d, want 0", res.Remaining)
		}
		e.sleep(res.RetryAfter)
		if res := mustTake(t, e.lim, "k", r, 1); !res.Allowed {
			t.Fatalf("after RetryAfter: %+v, want allowed", res)
		}
		if res := mustTake(t, e.lim, "k", r, 1); res.Allowed {
			t.Fatalf("right after: %+v, want denied", res)
		}
	})

	t.Run("ExactRateWithFractionalInterval", func(t *testing.T) {
		e := mk(t)
		r := ratelimit.Rate{Limit: 7, Period: time.Minute, Burst: 5} // 8.571428...s per request
		for i := range 5 {
			if res := mustTake(t, e.lim, "k", r, 1); !res.Allowed {
				t.Fatalf("take %d denied: %+v", i, res)
			}
		}
		res := mustTake(t, e.lim, "k", r, 1)
		if res.Allowed {
			t.Fatalf("6th take allowed")
		}
		e.dur(t, "RetryAfter", res.RetryAfter, 8571429*time.Microsecond)
	})

	t.Run("CostAboveBurstIsNever", func(t *testing.T) {
		e := mk(t)
		r := ratelimit.Rate{Limit: 60, Period: time.Minute, Burst: 10}
		res := mustTake(t, e.lim, "k", r, 11)
		if res.Allowed || !res.Never || res.RetryAfter != 0 || res.Remaining != 10 {
			t.Fatalf("cost > burst: %+v, want denied, Never, RetryAfter 0, Remaining 10", res)
		}
		if res := mustTake(t, e.lim, "k", r, 10); !res.Allowed {
			t.Fatalf("cost == burst after Never: %+v, want allowed (nothing consumed)", res)
		}
	})

	t.Run("DeniedConsumesNothing", func(t *testing.T) {
		e := mk(t)
		r := ratelimit.Rate{Limit: 6000, Period: time.Minute} // TPM: 10ms per token, burst = limit
		if res := mustTake(t, e.lim, "k", r, 6000); !res.Allowed || res.Remaining != 0 {
			t.Fatalf("full burst: %+v", res)
		}
		for range 5 {
			res := mustTake(t, e.lim, "k", r, 100)
			if res.Allowed {
				t.Fatalf("over budget allowed: %+v", res)
			}
			e.dur(t, "RetryAfter(100)", res.RetryAfter, time.Second)
		}
		res := mustTake(t, e.lim, "k", r, 1)
		if res.Allowed {
			t.Fatalf("1 token allowed right after the burst: %+v", res)
		}
		e.dur(t, "RetryAfter(1)", res.RetryAfter, 10*time.Millisecond)
		e.sleep(res.RetryAfter)
		if res := mustTake(t, e.lim, "k", r, 1); !res.Allowed {
			t.Fatalf("after RetryAfter: %+v", res)
		}
	})

	t.Run("PeekDoesNotConsume", func(t *testing.T) {
		e := mk(t)
		r := ratelimit.Rate{Limit: 100, Period: time.Hour, Burst: 3}
		for range 3 {
			res := mustTake(t, e.lim, "k", r, 0)
			if !res.Allowed || res.Remaining != 3 || res.ResetAfter != 0 {
				t.Fatalf("peek: %+v, want allowed, remaining 3, reset 0", res)
			}
		}
		mustTake(t, e.lim, "k", r, 2)
		res := mustTake(t, e.lim, "k", r, 0)
		if !res.Allowed || res.Remaining != 1 {
			t.Fatalf("peek after take 2: %+v", res)
		}
		e.dur(t, "ResetAfter", res.ResetAfter, 72*time.Second)
	})

	t.Run("Refund", func(t *testing.T) {
		e := mk(t)
		r := ratelimit.Rate{Limit: 6000, Period: time.Minute}
		mustTake(t, e.lim, "k", r, 5000) // estimate
		if err := e.lim.Refund(ctx, "k", r, 3000, ratelimit.BackendPrimary); err != nil {
			t.Fatal(err)
		}
		e.units(t, "remaining after refund", mustTake(t, e.lim, "k", r, 0).Remaining, 4000, 10)
		if res := mustTake(t, e.lim, "k", r, 4000); !res.Allowed {
			t.Fatalf("take refunded capacity: %+v", res)
		}

		// Refunds never bank capacity beyond a full burst.
		if err := e.lim.Refund(ctx, "fresh", r, 1_000_000, ratelimit.BackendPrimary); err != nil {
			t.Fatal(err)
		}
		if got := mustTake(t, e.lim, "fresh", r, 0).Remaining; got != 6000 {
			t.Fatalf("remaining after over-refund = %d, want 6000", got)
		}
		if res := mustTake(t, e.lim, "fresh", r, 6000); !res.Allowed {
			t.Fatal("full burst after over-refund denied")
		}
		if res := mustTake(t, e.lim, "fresh", r, 1); res.Allowed {
			t.Fatal("over-refund banked extra capacity")
		}
	})

	t.Run("NegativeRefundChargesWithoutBlocking", func(t *testing.T) {
		e := mk(t)
		r := ratelimit.Rate{Limit: 6000, Period: time.Minute}
		mustTake(t, e.lim, "k", r, 1000) // estimate; real usage was 7000
		if err := e.lim.Refund(ctx, "k", r, -6000, ratelimit.BackendPrimary); err != nil {
			t.Fatalf("charge: %v", err)
		}
		res := mustTake(t, e.lim, "k", r, 1)
		if res.Allowed || res.Remaining != 0 {
			t.Fatalf("take while in debt: %+v", res)
		}
		// 7000 tokens charged, 6000 tolerated: 1000+1 tokens of debt at 10ms each.
		e.dur(t, "RetryAfter", res.RetryAfter, 10010*time.Millisecond)
		e.dur(t, "ResetAfter", res.ResetAfter, 70*time.Second)
	})

	t.Run("KeysAreIndependent", func(t *testing.T) {
		e := mk(t)
		r := ratelimit.Rate{Limit: 1, Period: time.Hour, Burst: 1}
		mustTake(t, e.lim, "a", r, 1)
		if res := mustTake(t, e.lim, "a", r, 1); res.Allowed {
			t.Fatal("a allowed twice")
		}
		if res := mustTake(t, e.lim, "b", r, 1); !res.Allowed {
			t.Fatal("b denied by a's usage")
		}
		// Families are namespaced: the same key used for a budget and slots.
		if res, _ := e.lim.Acquire(ctx, "a", "id", 1, time.Minute); !res.Allowed {
			t.Fatal("acquire on a rate key denied")
		}
	})

	t.Run("Concurrency", func(t *testing.T) {
		e := mk(t)
		acq := func(id string) ratelimit.Result {
			t.Helper()
			res, err := e.lim.Acquire(ctx, "c", id, 2, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		if res := acq("a"); !res.Allowed || res.Remaining != 1 || res.Limit != 2 {
			t.Fatalf("a: %+v", res)
		}
		if res := acq("b"); !res.Allowed || res.Remaining != 0 {
			t.Fatalf("b: %+v", res)
		}
		res := acq("c")
		if res.Allowed || res.Never || res.Remaining != 0 {
			t.Fatalf("c over max: %+v", res)
		}
		e.dur(t, "RetryAfter", res.RetryAfter, time.Minute)
		if res := acq("a"); !res.Allowed {
			t.Fatalf("renewing a: %+v", res)
		}
		if err := e.lim.Release(ctx, "c", "a", ratelimit.BackendPrimary); err != nil {
			t.Fatal(err)
		}
		if res := acq("c"); !res.Allowed || res.Remaining != 0 {
			t.Fatalf("c after release: %+v", res)
		}
		if err := e.lim.Release(ctx, "c", "unknown", ratelimit.BackendPrimary); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("LeaseExpiry", func(t *testing.T) {
		e := mk(t)
		if res, err := e.lim.Acquire(ctx, "c", "crashed", 1, 50*time.Millisecond); err != nil || !res.Allowed {
			t.Fatalf("first: %+v %v", res, err)
		}
		res, err := e.lim.Acquire(ctx, "c", "next", 1, time.Minute)
		if err != nil || res.Allowed {
			t.Fatalf("second while held: %+v %v", res, err)
		}
		e.dur(t, "RetryAfter", res.RetryAfter, 50*time.Millisecond)
		e.sleep(60 * time.Millisecond)
		if res, err := e.lim.Acquire(ctx, "c", "next", 1, time.Minute); err != nil || !res.Allowed {
			t.Fatalf("after lease expiry: %+v %v", res, err)
		}
	})

	t.Run("LeasesExpireInTurn", func(t *testing.T) {
		e := mk(t)
		acq := func(id string, lease time.Duration) ratelimit.Result {
			t.Helper()
			res, err := e.lim.Acquire(ctx, "c", id, 3, lease)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		for id, lease := range map[string]time.Duration{"a": 50 * time.Millisecond, "b": time.Hour, "c": 150 * time.Millisecond} {
			if res := acq(id, lease); !res.Allowed {
				t.Fatalf("%s: %+v", id, res)
			}
		}
		if res := acq("d", time.Hour); res.Allowed {
			t.Fatalf("d while a, b and c hold: %+v", res)
		}
		e.sleep(60 * time.Millisecond) // a's lease is over
		if res := acq("d", time.Hour); !res.Allowed || res.Remaining != 0 {
			t.Fatalf("d after a's lease: %+v", res)
		}
		res := acq("e", time.Hour)
		if res.Allowed {
			t.Fatalf("e while b, c and d hold: %+v", res)
		}
		e.dur(t, "RetryAfter", res.RetryAfter, 90*time.Millisecond) // c's
		e.sleep(100 * time.Millisecond)                             // c's lease is over
		if res := acq("e", time.Hour); !res.Allowed || res.Remaining != 0 {
			t.Fatalf("e after c's lease: %+v", res)
		}
	})

	t.Run("BudgetReserveSettle", func(t *testing.T) {
		e := mk(t)
		exp := e.now().Add(time.Hour)
		reserve := func(amount int64) ratelimit.Result {
			t.Helper()
			res, err := e.lim.Reserve(ctx, "team", "2026-11-25", 100, amount, exp)
			if err != nil {
				t.Fatal(err)
			}
			return res
		}
		spent := func(wantSpent, wantReserved int64) {
			t.Helper()
			s, r, err := e.lim.Spent(ctx, "team", "2026-11-25")
			if err != nil || s != wantSpent || r != wantReserved {
				t.Fatalf("Spent = %d, %d, %v; want %d, %d", s, r, err, wantSpent, wantReserved)
			}
		}
		settle := func(reserved, actual int64) {
			t.Helper()
			if err := e.lim.Settle(ctx, "team", "2026-11-25", reserved, actual, exp, ratelimit.BackendPrimary); err != nil {
				t.Fatal(err)
			}
		}
		spent(0, 0)
		res := reserve(60)
		if !res.Allowed || res.Limit != 100 || res.Remaining != 40 {
			t.Fatalf("first reserve: %+v", res)
		}
		e.dur(t, "ResetAfter", res.ResetAfter.Truncate(time.Millisecond), time.Hour)
		if res := reserve(60); !res.Allowed || res.Remaining != 0 {
			t.Fatalf("second reserve (60 < 100 before it): %+v", res)
		}
		res = reserve(1)
		if res.Allowed || res.Never {
			t.Fatalf("reserve over budget: %+v", res)
		}
		e.dur(t, "RetryAfter", res.RetryAfter.Truncate(time.Millisecond), time.Hour)
		spent(0, 120)
		settle(60, 10)
		spent(10, 60)
		settle(60, 80)
		spent(90, 0)
		if res := reserve(5); !res.Allowed || res.Remaining != 5 {
			t.Fatalf("reserve after settle: %+v", res)
		}
		settle(1000, 0) // more than outstanding: clamps at 0
		spent(90, 0)
		settle(0, 20) // unreserved spend
		spent(110, 0)
		if res := reserve(0); res.Allowed || res.Remaining != 0 {
			t.Fatalf("reserve when overspent: %+v", res)
		}

		if res, err := e.lim.Reserve(ctx, "zero", "w", 0, 1, exp); err != nil || res.Allowed || !res.Never || res.RetryAfter != 0 {
			t.Fatalf("zero budget: %+v %v, want Never", res, err)
		}
	})

	t.Run("BudgetWindowExpiry", func(t *testing.T) {
		e := mk(t)
		exp := e.now().Add(100 * time.Millisecond)
		if res, err := e.lim.Reserve(ctx, "team", "w1", 100, 100, exp); err != nil || !res.Allowed {
			t.Fatalf("reserve: %+v %v", res, err)
		}
		if res, _ := e.lim.Reserve(ctx, "team", "w1", 100, 1, exp); res.Allowed {
			t.Fatalf("reserve over budget allowed: %+v", res)
		}
		e.sleep(150 * time.Millisecond)
		if s, r, err := e.lim.Spent(ctx, "team", "w1"); err != nil || s != 0 || r != 0 {
			t.Fatalf("expired window Spent = %d, %d, %v", s, r, err)
		}
		// A window that is already over admits without recording.
		if res, err := e.lim.Reserve(ctx, "team", "w1", 100, 100, exp); err != nil || !res.Allowed {
			t.Fatalf("reserve in past window: %+v %v", res, err)
		}
		if err := e.lim.Settle(ctx, "team", "w1", 100, 50, exp, ratelimit.BackendPrimary); err != nil {
			t.Fatal(err)
		}
		if s, r, _ := e.lim.Spent(ctx, "team", "w1"); s != 0 || r != 0 {
			t.Fatalf("past window recorded %d, %d", s, r)
		}
	})

	t.Run("BudgetRace", func(t *testing.T) {
		e := mk(t)
		exp := e.now().Add(time.Hour)
		// The limit is smaller than two reservations: the first one admitted
		// exhausts it, so exactly one of the concurrent calls may win.
		var admitted atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 8 {
			wg.Go(func() {
				<-start
				res, err := e.lim.Reserve(ctx, "race", "w", 100, 120, exp)
				if err != nil {
					t.Error(err)
				}
				if res.Allowed {
					admitted.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if n := admitted.Load(); n != 1 {
			t.Fatalf("admitted %d of 8 concurrent reservations, want exactly 1", n)
		}
		if s, r, _ := e.lim.Spent(ctx, "race", "w"); s != 0 || r != 120 {
			t.Fatalf("Spent = %d, %d, want 0, 120", s, r)
		}
	})

	t.Run("ConcurrentTakes", func(t *testing.T) {
		e := mk(t)
		r := ratelimit.Rate{Limit: 1000, Period: time.Hour, Burst: 100} // one per 3.6s
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 40 {
					res, err := e.lim.Take(ctx, "hot", r, 1)
					if err != nil {
						t.Error(err)
						return
					}
					if res.Allowed {
						admitted.Add(1)
					}
				}
			})
		}
		wg.Wait()
		e.units(t, "admitted", admitted.Load(), 100, 1)
	})

	t.Run("ConcurrentSlots", func(t *testing.T) {
		e := mk(t)
		var held, peak atomic.Int64
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Go(func() {
				for i := range 25 {
					id := fmt.Sprintf("g%d-%d", g, i)
					res, err := e.lim.Acquire(ctx, "slots", id, 3, time.Minute)
					if err != nil {
						t.Error(err)
						return
					}
					if !res.Allowed {
						continue
					}
					n := held.Add(1)
					for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
					}
					held.Add(-1)
					if err := e.lim.Release(ctx, "slots", id, ratelimit.BackendPrimary); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if p := peak.Load(); p > 3 || p < 1 {
			t.Fatalf("peak concurrent holders %d, want 1..3", p)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		e := mk(t)
		ok := ratelimit.Rate{Limit: 10, Period: time.Second}
		exp := e.now().Add(time.Hour)
		for name, err := range map[string]error{
			"zero limit":     second(e.lim.Take(ctx, "k", ratelimit.Rate{Period: time.Second}, 1)),
			"limit too high": second(e.lim.Take(ctx, "k", ratelimit.Rate{Limit: ratelimit.MaxLimit + 1, Period: time.Second}, 1)),
			"zero period":    second(e.lim.Take(ctx, "k", ratelimit.Rate{Limit: 1}, 1)),
			"huge tolerance": second(e.lim.Take(ctx, "k", ratelimit.Rate{Limit: 1, Period: 1 << 62, Burst: 1000}, 1)),
			"negative cost":  second(e.lim.Take(ctx, "k", ok, -1)),
			"refund rate":    e.lim.Refund(ctx, "k", ratelimit.Rate{}, 1, ratelimit.BackendPrimary),
			"zero max":       second(e.lim.Acquire(ctx, "k", "id", 0, time.Second)),
			"empty id":       second(e.lim.Acquire(ctx, "k", "", 1, time.Second)),
			"zero lease":     second(e.lim.Acquire(ctx, "k", "id", 1, 0)),
			"neg reserve":    second(e.lim.Reserve(ctx, "k", "w", 10, -1, exp)),
			"neg settle":     e.lim.Settle(ctx, "k", "w", 0, -1, exp, ratelimit.BackendPrimary),
		} {
			if !errors.Is(err, ratelimit.ErrInvalid) {
				t.Errorf("%s: err = %v, want ErrInvalid", name, err)
			}
		}
	})
}

func second[T any](_ T, err error) error { return err }

func TestMemorySuite(t *testing.T) {
	runSuite(t, memoryEnv)
}
