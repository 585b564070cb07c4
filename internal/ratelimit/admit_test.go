package ratelimit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

// slow is a rate so slow (~88h per unit) that the real time a Redis test
// takes never replenishes a unit.
const slow = 10 * 365 * 24 * time.Hour

// admissionOps is a request's full admission as the gateway builds it: the
// key's budget, RPM, TPM and concurrency, then the model's RPM and TPM.
func admissionOps(e env, id string, cost int64) []ratelimit.Op {
	exp := e.now().Add(time.Hour)
	return []ratelimit.Op{
		{Kind: ratelimit.OpReserve, Key: "key:a:budget", Window: "w", Limit: 1000, Amount: 100, Expires: exp},
		{Kind: ratelimit.OpTake, Key: "key:a:rpm", Rate: ratelimit.Rate{Limit: 10, Period: slow, Burst: 3}, Amount: 1},
		{Kind: ratelimit.OpTake, Key: "key:a:tpm", Rate: ratelimit.Rate{Limit: 1000, Period: slow}, Amount: cost},
		{Kind: ratelimit.OpAcquire, Key: "key:a:concurrency", ID: id, Slots: 2, Lease: time.Minute},
		{Kind: ratelimit.OpTake, Key: "model:m:rpm", Rate: ratelimit.Rate{Limit: 20, Period: slow, Burst: 4}, Amount: 1},
		{Kind: ratelimit.OpTake, Key: "model:m:tpm", Rate: ratelimit.Rate{Limit: 2000, Period: slow}, Amount: cost},
	}
}

// snapshot is what every hold of admissionOps has counted.
type snapshot struct {
	budgetSpent, budgetReserved int64
	rpm, tpm, conc, mrpm, mtpm  int64 // remaining
}

func snap(t *testing.T, l ratelimit.Limiter, ops []ratelimit.Op) snapshot {
	t.Helper()
	ctx := context.Background()
	var s snapshot
	var err error
	if s.budgetSpent, s.budgetReserved, err = l.Spent(ctx, ops[0].Key, ops[0].Window); err != nil {
		t.Fatal(err)
	}
	rem := func(o ratelimit.Op) int64 {
		res, err := l.Take(ctx, o.Key, o.Rate, 0)
		if err != nil {
			t.Fatal(err)
		}
		return res.Remaining
	}
	s.rpm, s.tpm, s.mrpm = rem(ops[1]), rem(ops[2]), rem(ops[4])
	if len(ops) > 5 { // a model TPM hold
		s.mtpm = rem(ops[5])
	}
	// Free slots: a probe acquire (renewed, then released).
	res, err := l.Acquire(ctx, ops[3].Key, "probe", ops[3].Slots, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	s.conc = res.Remaining
	if res.Allowed {
		s.conc++
		_ = l.Release(ctx, ops[3].Key, "probe", 0)
	}
	return s
}

// runAdmitSuite runs the admission behaviour shared by all backends.
func runAdmitSuite(t *testing.T, mk func(*testing.T) env) {
	ctx := context.Background()

	t.Run("TakesAll", func(t *testing.T) {
		e := mk(t)
		ops := admissionOps(e, "r1", 50)
		res, err := e.lim.Admit(ctx, ops)
		if err != nil || !res.Allowed() || len(res.Results) != len(ops) {
			t.Fatalf("Admit: %+v, %v", res, err)
		}
		want := snapshot{budgetReserved: 100, rpm: 2, tpm: 950, conc: 1, mrpm: 3, mtpm: 1950}
		if got := snap(t, e.lim, ops); got != want {
			t.Fatalf("after admission %+v, want %+v", got, want)
		}
		for i, r := range res.Results {
			if !r.Allowed {
				t.Errorf("result %d %+v", i, r)
			}
		}
		if r := res.Results[1]; r.Remaining != 2 || r.Limit != 10 {
			t.Errorf("rpm result %+v", r)
		}
		if r := res.Results[0]; r.Remaining != 900 {
			t.Errorf("budget result %+v", r)
		}
	})

	// A refusal at any hold leaves every hold as it was.
	exhaust := []struct {
		name string
		fill func(e env, ops []ratelimit.Op)
	}{
		{"budget", func(e env, ops []ratelimit.Op) {
			o := ops[0]
			_, _ = e.lim.Reserve(ctx, o.Key, o.Window, o.Limit, o.Limit, o.Expires)
		}},
		{"key rpm", func(e env, ops []ratelimit.Op) { _, _ = e.lim.Take(ctx, ops[1].Key, ops[1].Rate, 3) }},
		{"key tpm", func(e env, ops []ratelimit.Op) { _, _ = e.lim.Take(ctx, ops[2].Key, ops[2].Rate, 990) }},
		{"concurrency", func(e env, ops []ratelimit.Op) {
			for _, id := range []string{"x", "y"} {
				_, _ = e.lim.Acquire(ctx, ops[3].Key, id, 2, time.Minute)
			}
		}},
		{"model rpm", func(e env, ops []ratelimit.Op) { _, _ = e.lim.Take(ctx, ops[4].Key, ops[4].Rate, 4) }},
		{"model tpm", func(e env, ops []ratelimit.Op) { _, _ = e.lim.Take(ctx, ops[5].Key, ops[5].Rate, 1990) }},
	}
	for at, c := range exhaust {
		t.Run("RefusedAt/"+c.name, func(t *testing.T) {
			e := mk(t)
			ops := admissionOps(e, "r1", 50)
			c.fill(e, ops)
			before := snap(t, e.lim, ops)
			res, err := e.lim.Admit(ctx, ops)
			if err != nil {
				t.Fatal(err)
			}
			if res.Allowed() || res.Refused != at || len(res.Results) != at+1 || res.Results[at].Allowed {
				t.Fatalf("Admit: %+v, want refused at %d", res, at)
			}
			if got := snap(t, e.lim, ops); got != before {
				t.Fatalf("refused admission changed the state: %+v, was %+v", got, before)
			}
			if r := res.Results[at]; at != 0 && at != 3 && r.RetryAfter <= 0 {
				t.Errorf("refusal without RetryAfter: %+v", r)
			}
		})
	}

	t.Run("NeverFits", func(t *testing.T) {
		e := mk(t)
		ops := admissionOps(e, "r1", 1500) // above the key's TPM burst
		res, err := e.lim.Admit(ctx, ops)
		if err != nil || res.Refused != 2 || !res.Results[2].Never {
			t.Fatalf("Admit: %+v, %v", res, err)
		}
		if got := snap(t, e.lim, ops); got != (snapshot{rpm: 3, tpm: 1000, conc: 2, mrpm: 4, mtpm: 2000}) {
			t.Fatalf("state %+v", got)
		}
	})

	t.Run("InvalidTakesNothing", func(t *testing.T) {
		e := mk(t)
		ops := admissionOps(e, "", 50) // empty concurrency id
		if _, err := e.lim.Admit(ctx, ops); err == nil {
			t.Fatal("no error")
		}
		if _, err := e.lim.Admit(ctx, []ratelimit.Op{{Kind: ratelimit.OpRelease, Key: "k", ID: "x"}}); err == nil {
			t.Fatal("an undo operation was admitted")
		}
	})

	// The same results as the operations one by one, in order, up to the
	// first refusal, on a twin backend.
	t.Run("MatchesOneByOne", func(t *testing.T) {
		for i, cost := range []int64{1, 50, 400, 999, 1000, 1001} {
			t.Run(fmt.Sprint(cost), func(t *testing.T) {
				a, b := mk(t), mk(t)
				for round := range 4 {
					id := fmt.Sprintf("r%d-%d", i, round)
					ops := admissionOps(a, id, cost)
					got, err := a.lim.Admit(ctx, ops)
					if err != nil {
						t.Fatal(err)
					}
					var want []ratelimit.Result
					var taken []ratelimit.Op
					for _, o := range admissionOps(b, id, cost) {
						r, err := o.Do(ctx, b.lim)
						if err != nil {
							t.Fatal(err)
						}
						want = append(want, r)
						if !r.Allowed {
							break
						}
						taken = append(taken, o)
					}
					if !want[len(want)-1].Allowed { // the old path undid what it took
						for _, o := range taken {
							undoOp(t, b.lim, o)
						}
					}
					if len(got.Results) != len(want) {
						t.Fatalf("round %d: %d results, one by one %d", round, len(got.Results), len(want))
					}
					for j := range want {
						g, w := got.Results[j], want[j]
						if g.Allowed != w.Allowed || g.Never != w.Never || g.Limit != w.Limit || g.Remaining != w.Remaining {
							t.Fatalf("round %d op %d: admit %+v, one by one %+v", round, j, g, w)
						}
						// With Redis the twins decide at slightly different times.
						if d := (g.RetryAfter - w.RetryAfter).Abs(); (a.exact && d != 0) || d > slack {
							t.Fatalf("round %d op %d: RetryAfter admit %v, one by one %v", round, j, g.RetryAfter, w.RetryAfter)
						}
					}
				}
			})
		}
	})
}

func undoOp(t *testing.T, l ratelimit.Limiter, o ratelimit.Op) {
	t.Helper()
	ctx := context.Background()
	var err error
	switch o.Kind {
	case ratelimit.OpTake:
		err = l.Refund(ctx, o.Key, o.Rate, o.Amount, 0)
	case ratelimit.OpAcquire:
		err = l.Release(ctx, o.Key, o.ID, 0)
	case ratelimit.OpReserve:
		err = l.Settle(ctx, o.Key, o.Window, o.Amount, 0, o.Expires, 0)
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestMemoryAdmit(t *testing.T) { runAdmitSuite(t, memoryEnv) }

func TestRedisAdmit(t *testing.T) {
	client := redistest.Start(t).Client()
	n := 0
	runAdmitSuite(t, func(t *testing.T) env {
		n++
		return env{lim: ratelimit.NewRedis(client, fmt.Sprintf("admit%d:", n)), now: time.Now, sleep: time.Sleep}
	})
}

func TestRedisClusterAdmit(t *testing.T) {
	client := redistest.StartCluster(t).Client()
	n := 0
	runAdmitSuite(t, func(t *testing.T) env {
		n++
		return env{lim: ratelimit.NewRedis(client, fmt.Sprintf("admit%d:", n)), now: time.Now, sleep: time.Sleep}
	})
}

func TestFailoverAdmit(t *testing.T) {
	client := redistest.Start(t).Client()
	n := 0
	runAdmitSuite(t, func(t *testing.T) env {
		n++
		return env{lim: ratelimit.NewFailover(ratelimit.NewRedis(client, fmt.Sprintf("fadmit%d:", n)), ratelimit.NewMemory(nil),
			ratelimit.FailoverOptions{Timeout: time.Second, FailOpen: true}), now: time.Now, sleep: time.Sleep}
	})
}

func TestKeySlotMatchesCluster(t *testing.T) {
	client := redistest.StartCluster(t).Client()
	ctx := context.Background()
	for _, k := range []string{"", "a", "aigw:rl:gcra:key:team-a:rpm", "aigw:rl:budget:key:team-a:budget@2026-11",
		"aigw:rl:conc:model:gpt-*:concurrency", "{keys}:names", "x{}y", "x{tag}y{z}", "{", "é{ü}"} {
		want, err := client.ClusterKeySlot(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := ratelimit.KeySlot(k); int64(got) != want {
			t.Errorf("slot of %q = %d, want %d", k, got, want)
		}
	}
}

// In a Cluster an admission whose keys hash to several slots is one
// pipeline; a refusal in one slot gives back what the others took.
func TestRedisClusterAdmissionIsOnePipeline(t *testing.T) {
	client := redistest.StartCluster(t).Client()
	trips := &tripCounter{}
	client.AddHook(trips)
	ctx := context.Background()
	l := ratelimit.NewRedis(client, "cl:")
	e := env{lim: l, now: time.Now}
	if _, err := l.Admit(ctx, admissionOps(e, "warm", 1)); err != nil {
		t.Fatal(err)
	}
	trips.take()
	ops := admissionOps(e, "r1", 1)
	if res, err := l.Admit(ctx, ops); err != nil || !res.Allowed() {
		t.Fatalf("Admit: %+v, %v", res, err)
	}
	if s, p := trips.take(); s != 0 || p != 1 {
		t.Fatalf("%d commands, %d pipelines, want one pipeline", s, p)
	}
}
