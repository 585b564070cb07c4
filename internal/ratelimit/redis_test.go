package ratelimit_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

func TestRedisSuite(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	runSuite(t, func(t *testing.T) env {
		return env{
			lim:   ratelimit.NewRedis(client, "test:"+t.Name()+":"),
			now:   time.Now,
			sleep: time.Sleep,
		}
	})
}

func TestRedisClusterSuite(t *testing.T) {
	cl := redistest.StartCluster(t)
	client := cl.Client()
	runSuite(t, func(t *testing.T) env {
		return env{
			lim:   ratelimit.NewRedis(client, "test:"+t.Name()+":"),
			now:   time.Now,
			sleep: time.Sleep,
		}
	})
}

func TestRedisMatchesMemory(t *testing.T) {
	// The same operations give the same decisions on both backends. The
	// interval (~88h per unit) makes the real time that passes on Redis
	// during the test irrelevant: capacity stays "integer + tiny".
	srv := redistest.Start(t)
	ctx := context.Background()
	red := ratelimit.NewRedis(srv.Client(), "diff:")
	mem := ratelimit.NewMemory(nil)
	r := ratelimit.Rate{Limit: 997, Period: 10 * 365 * 24 * time.Hour, Burst: 500}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 400 {
		switch op := rng.IntN(10); {
		case op < 7:
			cost := rng.Int64N(120)
			a, err1 := red.Take(ctx, "k", r, cost)
			b, err2 := mem.Take(ctx, "k", r, cost)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if a.Allowed != b.Allowed || a.Remaining != b.Remaining || a.Never != b.Never || a.Limit != b.Limit {
				t.Fatalf("op %d take %d: redis %+v, memory %+v", i, cost, a, b)
			}
			if d := b.RetryAfter - a.RetryAfter; d < -time.Minute || d > time.Minute {
				t.Fatalf("op %d: RetryAfter redis %v, memory %v", i, a.RetryAfter, b.RetryAfter)
			}
		default:
			n := rng.Int64N(200) - 50
			if err := red.Refund(ctx, "k", r, n, ratelimit.BackendPrimary); err != nil {
				t.Fatal(err)
			}
			if err := mem.Refund(ctx, "k", r, n, ratelimit.BackendPrimary); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Concurrency slots decide the same on both backends with any number of
// holders: leases of several lengths, renewals, releases, and admissions
// refused by another operation (whose Acquire result is as if taken).
func TestRedisMatchesMemoryConcurrency(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	red := ratelimit.NewRedis(srv.Client(), "diffc:")
	mem := ratelimit.NewMemory(nil)
	full := ratelimit.Rate{Limit: 1, Period: time.Hour}
	for _, l := range []ratelimit.Limiter{red, mem} {
		mustTake(t, l, "full", full, 1)
	}
	near := func(a, b time.Duration) bool { return a-b < time.Second && b-a < time.Second }
	rng := rand.New(rand.NewPCG(3, 4))
	const slots = 5
	for i := range 600 {
		id := "id" + string(rune('a'+rng.IntN(9)))
		lease := time.Duration(1+rng.IntN(5)) * time.Minute
		var a, b ratelimit.Result
		switch op := rng.IntN(10); {
		case op < 5:
			var err1, err2 error
			a, err1 = red.Acquire(ctx, "c", id, slots, lease)
			b, err2 = mem.Acquire(ctx, "c", id, slots, lease)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
		case op < 8:
			for _, l := range []ratelimit.Limiter{red, mem} {
				if err := l.Release(ctx, "c", id, ratelimit.BackendPrimary); err != nil {
					t.Fatal(err)
				}
			}
			continue
		default:
			ops := []ratelimit.Op{{Kind: ratelimit.OpAcquire, Key: "c", ID: id, Slots: slots, Lease: lease},
				{Kind: ratelimit.OpTake, Key: "full", Rate: full, Amount: 1}}
			ra, err1 := red.Admit(ctx, ops)
			rb, err2 := mem.Admit(ctx, ops)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if ra.Refused != rb.Refused || len(ra.Results) != len(rb.Results) {
				t.Fatalf("step %d admission: redis %+v, memory %+v", i, ra, rb)
			}
			a, b = ra.Results[0], rb.Results[0]
		}
		if a.Allowed != b.Allowed || a.Remaining != b.Remaining || a.Limit != b.Limit ||
			!near(a.ResetAfter, b.ResetAfter) || !near(a.RetryAfter, b.RetryAfter) {
			t.Fatalf("step %d (%s, lease %v): redis %+v, memory %+v", i, id, lease, a, b)
		}
	}
}

func TestRedisKeysHaveTTL(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	testKeysHaveTTL(t, client, func() []string {
		keys, err := client.Keys(context.Background(), "ttl:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return keys
	})
}

func TestRedisClusterKeysHaveTTL(t *testing.T) {
	cl := redistest.StartCluster(t)
	testKeysHaveTTL(t, cl.Client(), func() []string { return cl.Keys("ttl:*") })
}

// testKeysHaveTTL checks that every key the limiter writes has a TTL; keys
// lists the keys stored.
func testKeysHaveTTL(t *testing.T, client redis.UniversalClient, keys func() []string) {
	ctx := context.Background()
	l := ratelimit.NewRedis(client, "ttl:")
	r := ratelimit.Rate{Limit: 10, Period: time.Minute}
	exp := time.Now().Add(time.Hour)
	mustTake(t, l, "rate", r, 3)
	mustTake(t, l, "peek", r, 0)
	if err := l.Refund(ctx, "charged", r, -5, ratelimit.BackendPrimary); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx, "conc", "id", 2, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, "budget", "2026-11", 100, 10, exp); err != nil {
		t.Fatal(err)
	}
	if err := l.Settle(ctx, "spent", "2026-11", 0, 10, exp, ratelimit.BackendPrimary); err != nil {
		t.Fatal(err)
	}
	stored := keys()
	if len(stored) != 5 {
		t.Fatalf("keys = %v, want 5 (no state for a peek)", stored)
	}
	for _, k := range stored {
		ttl, err := client.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 || ttl > time.Hour {
			t.Errorf("%s: PTTL = %v, %v; want a TTL", k, ttl, err)
		}
	}
	// The time until the bucket is full, plus the minute a rate's key is
	// kept past it so that a busy key's expiry is not moved on every
	// request.
	if ttl := client.PTTL(ctx, "ttl:gcra:rate").Val(); ttl > 78*time.Second || ttl <= 18*time.Second {
		t.Errorf("rate key TTL %v, want in (18s, 78s]", ttl)
	}
}

// A rate's expiry moves only when the TAT would outlive it, and is set
// again when another writer (an older version, which set it to the TAT on
// every write) changed the state.
func TestRedisRateExpiryMovesRarely(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	l := ratelimit.NewRedis(client, "exp:")
	r := ratelimit.Rate{Limit: 10, Period: time.Minute}
	expireTime := func() int64 {
		t.Helper()
		ms, err := client.Do(ctx, "PEXPIRETIME", "exp:gcra:k").Int64()
		if err != nil || ms <= 0 {
			t.Fatalf("PEXPIRETIME = %d, %v", ms, err)
		}
		return ms
	}
	mustTake(t, l, "k", r, 1)
	first := expireTime()
	mustTake(t, l, "k", r, 2)
	if err := l.Refund(ctx, "k", r, 1, ratelimit.BackendPrimary); err != nil {
		t.Fatal(err)
	}
	if got := expireTime(); got != first {
		t.Fatalf("expiry moved from %d to %d, although the TAT stays before it", first, got)
	}
	// An older writer: the TAT (now + 6s) with an expiry at the TAT.
	now := time.Now()
	tat := now.Add(6 * time.Second)
	client.HSet(ctx, "exp:gcra:k", "q", tat.UnixMicro(), "f", 0)
	client.PExpireAt(ctx, "exp:gcra:k", tat)
	if res := mustTake(t, l, "k", r, 1); res.Remaining != 8 {
		t.Fatalf("after the older writer: %+v", res)
	}
	if got := expireTime(); got < tat.Add(6*time.Second).UnixMilli() {
		t.Fatalf("expiry %d before the TAT %d", got, tat.Add(6*time.Second).UnixMilli())
	}
	// Charged far beyond the expiry: it moves past the new TAT.
	if err := l.Refund(ctx, "k", r, -100, ratelimit.BackendPrimary); err != nil {
		t.Fatal(err)
	}
	if got := expireTime(); got < now.Add(10*time.Minute).UnixMilli() {
		t.Fatalf("expiry %d before the charged TAT", got)
	}
}

func TestRedisSurvivesScriptFlush(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	l := ratelimit.NewRedis(client, "flush:")
	r := ratelimit.Rate{Limit: 10, Period: time.Minute}
	mustTake(t, l, "k", r, 1)
	if err := client.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if res := mustTake(t, l, "k", r, 1); !res.Allowed || res.Remaining != 8 {
		t.Fatalf("after SCRIPT FLUSH: %+v", res)
	}
}

func TestRedisSharedLimitAcrossGateways(t *testing.T) {
	srv := redistest.Start(t)
	testSharedLimit(t, func() redis.UniversalClient { return srv.Client() })
}

func TestRedisClusterSharedLimitAcrossGateways(t *testing.T) {
	cl := redistest.StartCluster(t)
	testSharedLimit(t, func() redis.UniversalClient { return cl.Client() })
}

// testSharedLimit: three gateways (separate clients and pools from
// newClient) send twice the allowed rate to one key for ~2s; together they
// get exactly the rate + burst.
func testSharedLimit(t *testing.T, newClient func() redis.UniversalClient) {
	ctx := context.Background()
	const (
		gateways   = 3
		perGateway = 4
		rps        = 250 // 15000 per minute
		burst      = 40  // absorbs scheduling stalls of up to 160ms
		offered    = 2 * rps
		runFor     = 2 * time.Second
	)
	rate := ratelimit.Rate{Limit: rps * 60, Period: time.Minute, Burst: burst}
	var lims []ratelimit.Limiter
	for range gateways {
		c := newClient()
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		lims = append(lims, ratelimit.NewRedis(c, "shared:"))
	}
	workers := gateways * perGateway
	interval := time.Second * time.Duration(workers) / offered
	var admitted, sent atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(runFor)
	for w := range workers {
		l := lims[w%gateways]
		wg.Go(func() {
			time.Sleep(interval * time.Duration(w) / time.Duration(workers)) // spread the workers
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for time.Now().Before(deadline) {
				res, err := l.Take(ctx, "key:team-a:rpm", rate, 1)
				if err != nil {
					t.Error(err)
					return
				}
				sent.Add(1)
				if res.Allowed {
					admitted.Add(1)
				}
				<-tick.C
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	expected := rps * elapsed.Seconds()
	got := float64(admitted.Load())
	t.Logf("sent %d, admitted %.0f in %v (rate alone: %.1f, +burst %d)", sent.Load(), got, elapsed, expected, burst)
	// The limiter is only tested when more was offered than it may admit.
	if float64(sent.Load()) < 1.2*(expected+burst) {
		t.Fatalf("offered load too low to test the limit: sent %d", sent.Load())
	}
	if got > expected+burst || got < 0.99*expected {
		t.Fatalf("admitted %.0f, want within [%.1f, %.1f]", got, 0.99*expected, expected+burst)
	}
}

func TestRedisErrorsAreReported(t *testing.T) {
	srv := redistest.Start(t)
	l := ratelimit.NewRedis(srv.Client(), "err:")
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := l.Take(ctx, "k", ratelimit.Rate{Limit: 1, Period: time.Second}, 1)
	if err == nil || !strings.Contains(err.Error(), "redis") {
		t.Fatalf("Take on a dead server: err = %v", err)
	}
}
