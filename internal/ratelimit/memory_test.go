package ratelimit_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
)

func TestMemoryLongRunIsExact(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		rate ratelimit.Rate
		step time.Duration
		cost int64
	}{
		{ratelimit.Rate{Limit: 7, Period: time.Minute, Burst: 5}, time.Second, 1},
		{ratelimit.Rate{Limit: 600, Period: time.Minute, Burst: 60}, 37 * time.Millisecond, 1},
		{ratelimit.Rate{Limit: 1_000_003, Period: time.Minute}, time.Second, 777},
		{ratelimit.Rate{Limit: 3, Period: time.Second, Burst: 2}, 7 * time.Millisecond, 1},
	} {
		t.Run(strconv.FormatInt(tc.rate.Limit, 10), func(t *testing.T) {
			c := newFakeClock()
			m := ratelimit.NewMemory(c.Now)
			burst := tc.rate.Burst
			if burst <= 0 {
				burst = tc.rate.Limit
			}
			const span = time.Hour
			var taken int64
			for elapsed := time.Duration(0); elapsed <= span; elapsed += tc.step {
				for {
					res, err := m.Take(ctx, "k", tc.rate, tc.cost)
					if err != nil {
						t.Fatal(err)
					}
					if !res.Allowed {
						if res.RetryAfter <= 0 || res.RetryAfter > tc.rate.Period {
							t.Fatalf("bad RetryAfter %v", res.RetryAfter)
						}
						break
					}
					taken += tc.cost
				}
				c.Advance(tc.step)
			}
			// Units available in [0, span]: the burst plus span/T, less what
			// does not divide into whole costs.
			want := burst + int64(span)*tc.rate.Limit/int64(tc.rate.Period)
			if taken > want || taken <= want-2*tc.cost {
				t.Fatalf("taken %d units over %v, want %d (within one cost)", taken, span, want)
			}
		})
	}
}

func TestMemoryRetryAfterIsExact(t *testing.T) {
	// Waiting exactly RetryAfter always succeeds; waiting 1µs less never does.
	ctx := context.Background()
	c := newFakeClock()
	m := ratelimit.NewMemory(c.Now)
	r := ratelimit.Rate{Limit: 13, Period: 7 * time.Second, Burst: 4}
	for i := range 200 {
		res, err := m.Take(ctx, "k", r, int64(1+i%4))
		if err != nil {
			t.Fatal(err)
		}
		if res.Allowed {
			continue
		}
		c.Advance(res.RetryAfter - time.Microsecond)
		if res2, _ := m.Take(ctx, "k", r, int64(1+i%4)); res2.Allowed {
			t.Fatalf("allowed 1µs before RetryAfter %v", res.RetryAfter)
		}
		c.Advance(time.Microsecond)
		if res2, _ := m.Take(ctx, "k", r, int64(1+i%4)); !res2.Allowed {
			t.Fatalf("denied at RetryAfter %v: %+v", res.RetryAfter, res2)
		}
	}
}

func TestMemoryRemainingMatchesAdmission(t *testing.T) {
	// Remaining is the largest cost admitted right now, at every step.
	ctx := context.Background()
	c := newFakeClock()
	m := ratelimit.NewMemory(c.Now)
	r := ratelimit.Rate{Limit: 7, Period: time.Minute, Burst: 5}
	for i := range 300 {
		peek, _ := m.Take(ctx, "k", r, 0)
		if n := peek.Remaining; n < r.Burst {
			if res, _ := m.Take(ctx, "k", r, n+1); res.Allowed {
				t.Fatalf("step %d: cost Remaining+1=%d admitted", i, n+1)
			}
		}
		if n := peek.Remaining; n > 0 {
			if res, _ := m.Take(ctx, "k", r, n); !res.Allowed {
				t.Fatalf("step %d: cost Remaining=%d denied", i, n)
			}
		}
		c.Advance(time.Duration(i%11) * time.Second)
	}
}

func TestMemoryJanitor(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := newFakeClock()
	m := ratelimit.NewMemory(c.Now)
	r := ratelimit.Rate{Limit: 60, Period: time.Minute}
	exp := c.Now().Add(time.Hour)
	for i := range 100 {
		k := strconv.Itoa(i)
		if _, err := m.Take(ctx, k, r, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Acquire(ctx, k, "id", 1, time.Minute); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Reserve(ctx, k, "w", 10, 1, exp); err != nil {
			t.Fatal(err)
		}
	}
	if n := ratelimit.MemoryLen(m); n != 300 {
		t.Fatalf("entries = %d, want 300", n)
	}
	done := make(chan struct{})
	go func() { m.Run(ctx, time.Millisecond); close(done) }()
	c.Advance(2 * time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for ratelimit.MemoryLen(m) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("janitor left %d entries", ratelimit.MemoryLen(m))
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was canceled")
	}
}

func TestMemoryLazySweep(t *testing.T) {
	// Without a janitor, maps stay bounded by the live keys: inserting many
	// short-lived keys sweeps expired ones.
	ctx := context.Background()
	c := newFakeClock()
	m := ratelimit.NewMemory(c.Now)
	r := ratelimit.Rate{Limit: 1000, Period: time.Second} // 1ms per unit
	for i := range 200_000 {
		if _, err := m.Take(ctx, strconv.Itoa(i), r, 1); err != nil {
			t.Fatal(err)
		}
		c.Advance(10 * time.Microsecond) // every entry expires after 1ms = 100 inserts
	}
	if n := ratelimit.MemoryLen(m); n > 64*1024+100 {
		t.Fatalf("%d entries kept for 100 live keys", n)
	}
	if n := ratelimit.SweepMemory(m); n > 100 {
		t.Fatalf("%d live entries after sweep, want <= 100", n)
	}
}

func TestMemoryRefundDropsFullState(t *testing.T) {
	ctx := context.Background()
	c := newFakeClock()
	m := ratelimit.NewMemory(c.Now)
	r := ratelimit.Rate{Limit: 100, Period: time.Minute}
	mustTake(t, m, "k", r, 40)
	if err := m.Refund(ctx, "k", r, 40, ratelimit.BackendPrimary); err != nil {
		t.Fatal(err)
	}
	if n := ratelimit.MemoryLen(m); n != 0 {
		t.Fatalf("full-bucket state kept: %d entries", n)
	}
	mustTake(t, m, "peek", r, 0)
	if n := ratelimit.MemoryLen(m); n != 0 {
		t.Fatalf("peek stored state: %d entries", n)
	}
}

func TestMemoryTakeDoesNotAllocate(t *testing.T) {
	ctx := context.Background()
	c := newFakeClock()
	m := ratelimit.NewMemory(c.Now)
	r := ratelimit.Rate{Limit: 1 << 30, Period: time.Minute, Burst: 1000}
	mustTake(t, m, "key:team-a:rpm", r, 1)
	if n := testing.AllocsPerRun(1000, func() {
		_, _ = m.Take(ctx, "key:team-a:rpm", r, 1)
	}); n != 0 {
		t.Fatalf("Take allocates %v times per call", n)
	}
}

func TestMemoryHammer(t *testing.T) {
	// Many goroutines on few keys with a moving clock: the admitted total per
	// key never exceeds burst + elapsed/T.
	ctx := context.Background()
	c := newFakeClock()
	m := ratelimit.NewMemory(c.Now)
	r := ratelimit.Rate{Limit: 600, Period: time.Minute, Burst: 10}
	keys := []string{"a", "b", "c"}
	var admitted [3]atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var ticks atomic.Int64
	wg.Go(func() {
		for range 2000 {
			c.Advance(time.Millisecond)
			ticks.Add(1)
		}
		close(stop)
	})
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := i % len(keys)
				res, err := m.Take(ctx, keys[k], r, 1)
				if err != nil {
					t.Error(err)
					return
				}
				if res.Allowed {
					admitted[k].Add(1)
				}
				if i%7 == g {
					_ = m.Refund(ctx, keys[k], r, 0, ratelimit.BackendPrimary)
					_, _ = m.Acquire(ctx, keys[k], strconv.Itoa(g), 2, time.Second)
					_ = m.Release(ctx, keys[k], strconv.Itoa(g), ratelimit.BackendPrimary)
					_, _ = m.Reserve(ctx, keys[k], "w", 1000, 1, c.Now().Add(time.Hour))
				}
			}
		})
	}
	wg.Wait()
	maxAdmitted := 10 + int64(2*time.Second/(100*time.Millisecond))
	for k := range keys {
		if n := admitted[k].Load(); n > maxAdmitted {
			t.Errorf("key %s admitted %d, more than %d", keys[k], n, maxAdmitted)
		}
	}
}
