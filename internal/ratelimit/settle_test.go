package ratelimit_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

// tripCounter counts a client's round trips: one per command sent alone,
// one per pipeline.
type tripCounter struct{ single, pipelines atomic.Int64 }

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.single.Add(1)
		return next(ctx, cmd)
	}
}

func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.pipelines.Add(1)
		return next(ctx, cmds)
	}
}

func (c *tripCounter) take() (single, pipelines int64) {
	return c.single.Swap(0), c.pipelines.Swap(0)
}

// countedClient is a client of srv whose round trips are counted, with the
// scripts loaded (the first use of a script costs an EVALSHA and an EVAL).
func countedClient(t testing.TB, srv *redistest.Server) (*redis.Client, *tripCounter) {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	tc := &tripCounter{}
	c.AddHook(tc)
	return c, tc
}

// settlementOf is what the gateway settles after an admission of
// admissionOps that used half its tokens.
func settlementOf(ops []ratelimit.Op, w ...ratelimit.Write) ratelimit.Settlement {
	return ratelimit.Settlement{Ops: []ratelimit.Op{
		{Kind: ratelimit.OpRefund, Key: ops[5].Key, Rate: ops[5].Rate, Amount: ops[5].Amount / 2},
		{Kind: ratelimit.OpRelease, Key: ops[3].Key, ID: ops[3].ID},
		{Kind: ratelimit.OpRefund, Key: ops[2].Key, Rate: ops[2].Rate, Amount: ops[2].Amount / 2},
		{Kind: ratelimit.OpSettle, Key: ops[0].Key, Window: ops[0].Window, Reserved: ops[0].Amount, Amount: 30, Expires: ops[0].Expires},
	}, Writes: w}
}

// hashWrite is a Write that increments a Redis hash field.
type hashWrite struct {
	client redis.UniversalClient
	key    string
}

func (w hashWrite) Pipe(ctx context.Context, p redis.Pipeliner) ([]redis.Cmder, bool) {
	return []redis.Cmder{p.HIncrBy(ctx, w.key, "n", 1)}, true
}

func (w hashWrite) Do(ctx context.Context) error { return w.client.HIncrBy(ctx, w.key, "n", 1).Err() }

func TestRedisRoundTrips(t *testing.T) {
	srv := redistest.Start(t)
	client, trips := countedClient(t, srv)
	ctx := context.Background()
	l := ratelimit.NewRedis(client, "trips:")
	e := env{lim: l, now: time.Now}
	warm := admissionOps(e, "warm", 10)
	if _, err := l.Admit(ctx, warm); err != nil { // loads the script
		t.Fatal(err)
	}
	if _, err := ratelimit.Apply(ctx, l, []ratelimit.Settlement{settlementOf(warm)}); err != nil {
		t.Fatal(err)
	}
	trips.take()

	ops := admissionOps(e, "r1", 10)
	if res, err := l.Admit(ctx, ops); err != nil || !res.Allowed() {
		t.Fatalf("Admit: %+v, %v", res, err)
	}
	if s, p := trips.take(); s+p != 1 {
		t.Fatalf("admission: %d commands and %d pipelines, want one round trip", s, p)
	}
	if _, err := ratelimit.Apply(ctx, l, []ratelimit.Settlement{settlementOf(ops, hashWrite{client, "trips:ledger"})}); err != nil {
		t.Fatal(err)
	}
	if s, p := trips.take(); s != 0 || p != 1 {
		t.Fatalf("settlement: %d commands and %d pipelines, want one pipeline", s, p)
	}
	want := snapshot{budgetSpent: 60, rpm: 1, tpm: 990, conc: 2, mrpm: 2, mtpm: 1990}
	if got := snap(t, l, ops); got != want {
		t.Fatalf("after settling %+v, want %+v", got, want)
	}
	if n, _ := client.HGet(ctx, "trips:ledger", "n").Int(); n != 1 {
		t.Fatalf("ledger write %d", n)
	}
	// After SCRIPT FLUSH a settlement takes one more round trip, once.
	client.ScriptFlush(ctx)
	ops = admissionOps(e, "r2", 10)
	if _, err := l.Admit(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if _, err := ratelimit.Apply(ctx, l, []ratelimit.Settlement{settlementOf(ops)}); err != nil {
		t.Fatal(err)
	}
	if got := snap(t, l, ops); got.conc != 2 || got.budgetSpent != 90 || got.budgetReserved != 0 {
		t.Fatalf("after a script flush %+v", got)
	}
}

// N settlements queued while none is being sent leave in one pipeline.
func TestQueueBatchesSettlements(t *testing.T) {
	srv := redistest.Start(t)
	client, trips := countedClient(t, srv)
	ctx := context.Background()
	l := ratelimit.NewRedis(client, "batch:")
	e := env{lim: l, now: time.Now}
	const n = 200
	q := ratelimit.NewQueue(l, ratelimit.QueueOptions{MaxBatch: n})
	var all [][]ratelimit.Op
	for i := range n {
		ops := admissionOps(e, fmt.Sprint("r", i), 1)
		ops[3].Slots = n
		ops[0].Limit = 1 << 40
		ops[1].Rate = ratelimit.Rate{Limit: n, Period: time.Hour}
		ops[4].Rate = ratelimit.Rate{Limit: n, Period: time.Hour}
		if res, err := l.Admit(ctx, ops); err != nil || !res.Allowed() {
			t.Fatalf("Admit %d: %+v, %v", i, res, err)
		}
		all = append(all, ops)
	}
	// Load the settlement scripts (on a key space of its own).
	warm := ratelimit.NewRedis(client, "warm:")
	if _, err := ratelimit.Apply(ctx, warm, []ratelimit.Settlement{settlementOf(admissionOps(env{lim: warm, now: time.Now}, "w", 1))}); err != nil {
		t.Fatal(err)
	}
	trips.take()
	for _, ops := range all {
		q.Settle(ctx, settlementOf(ops, hashWrite{client, "batch:ledger"}))
	}
	if s, p := trips.take(); s != 0 || p != 0 {
		t.Fatalf("Settle sent %d commands and %d pipelines before the queue started", s, p)
	}
	q.Start(ctx)
	q.Close()
	if s, p := trips.take(); s != 0 || p != 1 {
		t.Fatalf("%d settlements: %d commands and %d pipelines, want one pipeline", n, s, p)
	}
	st := q.Stats()
	if st.Settled != n || st.Batches != 1 || st.Lost != 0 || st.Inline != 0 || st.Pending != 0 {
		t.Fatalf("stats %+v", st)
	}
	if free, _ := client.ZCard(ctx, "batch:conc:"+all[0][3].Key).Result(); free != 0 {
		t.Fatalf("%d slots still held", free)
	}
	if spent, _, _ := l.Spent(ctx, all[0][0].Key, "w"); spent != 30*n {
		t.Fatalf("spent %d", spent)
	}
	if got, _ := client.HGet(ctx, "batch:ledger", "n").Int(); got != n {
		t.Fatalf("ledger %d", got)
	}
}

// Close (or the end of the context) sends what is queued; after it, a
// settlement is applied by its caller.
func TestQueueFlushesOnClose(t *testing.T) {
	for _, how := range []string{"close", "context"} {
		t.Run(how, func(t *testing.T) {
			srv := redistest.Start(t)
			client := srv.Client()
			ctx := context.Background()
			l := ratelimit.NewRedis(client, "flush:")
			q := ratelimit.NewQueue(l, ratelimit.QueueOptions{})
			qctx, cancel := context.WithCancel(ctx)
			q.Start(qctx)
			var wg sync.WaitGroup
			for i := range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					q.Settle(ctx, ratelimit.Settlement{Writes: []ratelimit.Write{hashWrite{client, "flush:n"}}})
					_ = i
				}()
			}
			wg.Wait()
			if how == "close" {
				q.Close()
			} else {
				cancel()
				q.Close() // waits for the flush
			}
			cancel()
			q.Settle(ctx, ratelimit.Settlement{Writes: []ratelimit.Write{hashWrite{client, "flush:n"}}})
			if got, _ := client.HGet(ctx, "flush:n", "n").Int(); got != 51 {
				t.Fatalf("%d of 51 writes applied", got)
			}
			if st := q.Stats(); st.Settled != 51 || st.Inline != 1 || st.Lost != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// A full queue does not block: the request settles itself.
func TestQueueFullSettlesInline(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	q := ratelimit.NewQueue(ratelimit.NewRedis(client, "full:"), ratelimit.QueueOptions{Size: 2})
	for range 5 {
		q.Settle(ctx, ratelimit.Settlement{Writes: []ratelimit.Write{hashWrite{client, "full:n"}}})
	}
	if got, _ := client.HGet(ctx, "full:n", "n").Int(); got != 3 {
		t.Fatalf("%d applied inline, want 3", got)
	}
	q.Close()
	if got, _ := client.HGet(ctx, "full:n", "n").Int(); got != 5 {
		t.Fatalf("%d applied after Close, want 5", got)
	}
	if st := q.Stats(); st.Inline != 3 || st.Settled != 5 {
		t.Fatalf("stats %+v", st)
	}
}

// Settlements that cannot reach Redis are counted (and reported), not
// retried forever; fallback decisions still settle on the fallback.
func TestQueueCountsLostSettlements(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	mem := ratelimit.NewMemory(nil)
	f := ratelimit.NewFailover(ratelimit.NewRedis(srv.Client(), "lost:"), mem, ratelimit.FailoverOptions{
		Timeout: 50 * time.Millisecond, FailOpen: true})
	var reported atomic.Int64
	q := ratelimit.NewQueue(f, ratelimit.QueueOptions{Timeout: 200 * time.Millisecond,
		OnLost: func(n int, err error) {
			if err == nil {
				t.Error("lost without an error")
			}
			reported.Add(int64(n))
		}})
	q.Start(ctx)
	e := env{lim: f, now: time.Now}
	ops := admissionOps(e, "r1", 10)
	if res, err := f.Admit(ctx, ops); err != nil || !res.Allowed() {
		t.Fatalf("Admit: %+v, %v", res, err)
	}
	srv.Kill()
	for range 10 {
		q.Settle(ctx, settlementOf(ops))
	}
	// A decision made by the fallback while Redis is down settles there.
	fops := admissionOps(e, "r2", 10)
	res, err := f.Admit(ctx, fops)
	if err != nil || res.Backend != ratelimit.BackendFallback {
		t.Fatalf("Admit while down: %+v, %v", res, err)
	}
	fs := settlementOf(fops)
	for i := range fs.Ops {
		fs.Ops[i].By = ratelimit.BackendFallback
	}
	q.Settle(ctx, fs)
	q.Close()
	st := q.Stats()
	if st.Lost != 10 || reported.Load() != 10 || st.Settled != 1 { // the fallback's spend went to the fallback
		t.Fatalf("stats %+v, reported %d", st, reported.Load())
	}
	if got := snap(t, mem, fops); got.conc != 2 || got.budgetReserved != 0 || got.budgetSpent != 30 {
		t.Fatalf("fallback state after settling %+v", got)
	}
}

// Memory settles at once, whatever the queue.
func TestQueueMemoryIsInline(t *testing.T) {
	mem := ratelimit.NewMemory(nil)
	q := ratelimit.NewQueue(mem, ratelimit.QueueOptions{})
	q.Start(context.Background())
	defer q.Close()
	ctx := context.Background()
	if _, err := mem.Acquire(ctx, "c", "x", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	q.Settle(ctx, ratelimit.Settlement{Ops: []ratelimit.Op{{Kind: ratelimit.OpRelease, Key: "c", ID: "x"}}})
	if res, _ := mem.Acquire(ctx, "c", "y", 1, time.Minute); !res.Allowed {
		t.Fatal("the slot was not released at once")
	}
}

// A batch's settlements are added together per kind and key (refunds,
// charges, budget settlements, releases, hash writes); the state after it
// is the state after the same settlements applied one by one.
func TestRedisBatchAddsTogether(t *testing.T) {
	testBatchAddsTogether(t, redistest.Start(t).Client())
}

// With a Redis Cluster the units go to one script call per hash slot.
func TestRedisClusterBatchAddsTogether(t *testing.T) {
	testBatchAddsTogether(t, redistest.StartCluster(t).Client())
}

func testBatchAddsTogether(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	// A rate that refills slowly (one token in ~86 s): the two runs are
	// apart in time, and what refilled in between must not be mistaken
	// for a difference (a loaded machine took ~1 s at 24 h).
	rate := ratelimit.Rate{Limit: 1_000_000, Period: 1000 * 24 * time.Hour}
	exp := time.Now().Add(time.Hour)
	const n = 40
	run := func(prefix string, oneByOne bool) (spent, reserved, tpm, held int64, ledger map[string]string) {
		l := ratelimit.NewRedis(client, prefix)
		var batch []ratelimit.Settlement
		for i := range n {
			id := fmt.Sprint("id", i)
			ops := []ratelimit.Op{
				{Kind: ratelimit.OpReserve, Key: "b", Window: "w", Limit: 1e9, Amount: 100, Expires: exp},
				{Kind: ratelimit.OpTake, Key: "tpm", Rate: rate, Amount: 100},
				{Kind: ratelimit.OpAcquire, Key: "c", ID: id, Slots: 1000, Lease: time.Minute},
			}
			if res, err := l.Admit(ctx, ops); err != nil || !res.Allowed() {
				t.Fatalf("Admit: %+v %v", res, err)
			}
			refund := int64(40 + i)
			if i%3 == 0 {
				refund = -7 // a charge
			}
			s := ratelimit.Settlement{Ops: []ratelimit.Op{
				{Kind: ratelimit.OpRefund, Key: "tpm", Rate: rate, Amount: refund},
				{Kind: ratelimit.OpSettle, Key: "b", Window: "w", Reserved: 100, Amount: int64(i), Expires: exp},
			}, Writes: []ratelimit.Write{hashAdd{ratelimit.HashAdd{Key: prefix + "ledger", Fields: []string{"requests", "cost"},
				Values: []int64{1, int64(i)}, Expires: exp}}}}
			if i%4 != 0 { // some keep their slot
				s.Ops = append(s.Ops, ratelimit.Op{Kind: ratelimit.OpRelease, Key: "c", ID: id})
			}
			batch = append(batch, s)
		}
		if oneByOne {
			for _, s := range batch {
				if lost, err := ratelimit.Apply(ctx, l, []ratelimit.Settlement{s}); lost != 0 || err != nil {
					t.Fatal(lost, err)
				}
			}
		} else if lost, err := ratelimit.Apply(ctx, l, batch); lost != 0 || err != nil {
			t.Fatal(lost, err)
		}
		spent, reserved, err := l.Spent(ctx, "b", "w")
		if err != nil {
			t.Fatal(err)
		}
		res, err := l.Take(ctx, "tpm", rate, 0)
		if err != nil {
			t.Fatal(err)
		}
		held = client.ZCard(ctx, prefix+"conc:c").Val()
		return spent, reserved, res.Remaining, held, client.HGetAll(ctx, prefix+"ledger").Val()
	}
	s1, r1, t1, h1, l1 := run("one:", true)
	s2, r2, t2, h2, l2 := run("all:", false)
	// The remaining TPM may still differ by the one token that refilled
	// between the runs, rounded.
	if s1 != s2 || r1 != r2 || t2-t1 > 1 || t1-t2 > 1 || h1 != h2 || fmt.Sprint(l1) != fmt.Sprint(l2) {
		t.Fatalf("one by one: spent %d reserved %d tpm %d held %d ledger %v; batched: %d %d %d %d %v", s1, r1, t1, h1, l1, s2, r2, t2, h2, l2)
	}
	if s1 != n*(n-1)/2 || r1 != 0 || h1 != n/4 || l1["requests"] != fmt.Sprint(n) {
		t.Fatalf("spent %d reserved %d held %d ledger %v", s1, r1, h1, l1)
	}
}

// A settlement that fails in Redis (a key of the wrong type) is counted
// lost; the others of its batch, in the same script call, are applied.
func TestRedisBatchIsolatesFailures(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	l := ratelimit.NewRedis(client, "iso:")
	exp := time.Now().Add(time.Hour)
	if err := client.Set(ctx, "iso:budget:bad@w", "not a hash", 0).Err(); err != nil {
		t.Fatal(err)
	}
	settle := func(key string) ratelimit.Settlement {
		return ratelimit.Settlement{Ops: []ratelimit.Op{{Kind: ratelimit.OpSettle, Key: key, Window: "w", Amount: 5, Expires: exp}}}
	}
	lost, err := ratelimit.Apply(ctx, l, []ratelimit.Settlement{settle("good"), settle("bad"), settle("good")})
	if lost != 1 || err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("lost %d (%v), want 1 and Redis's error", lost, err)
	}
	if spent, _, err := l.Spent(ctx, "good", "w"); err != nil || spent != 10 {
		t.Fatalf("good spent %d (%v), want 10", spent, err)
	}
}

// hashAdd is a Write in HashAdd form.
type hashAdd struct{ h ratelimit.HashAdd }

func (w hashAdd) HashAdd() (ratelimit.HashAdd, bool)                        { return w.h, true }
func (hashAdd) Pipe(context.Context, redis.Pipeliner) ([]redis.Cmder, bool) { return nil, false }
func (hashAdd) Do(context.Context) error                                    { return fmt.Errorf("not applied in the script") }

// A hash write adds its integers exactly: to an unset field, to a set
// one, below zero, and past 2^53 (where the script leaves the addition
// to HINCRBY).
func TestRedisHashAddExact(t *testing.T) {
	client := redistest.Start(t).Client()
	ctx := context.Background()
	l := ratelimit.NewRedis(client, "x:")
	exp := time.Now().Add(time.Hour)
	add := func(vals ...int64) {
		t.Helper()
		w := hashAdd{ratelimit.HashAdd{Key: "x:h", Fields: []string{"a", "b", "c"}, Values: vals, Expires: exp}}
		if lost, err := ratelimit.Apply(ctx, l, []ratelimit.Settlement{{Writes: []ratelimit.Write{w}}}); lost != 0 || err != nil {
			t.Fatal(lost, err)
		}
	}
	add(7, -3, 999_999_999_999_999)
	add(5, -4, 9_007_199_254_740_993) // 2^53 + 1: not a double
	add(1_000_000, 0, 1)
	got := client.HGetAll(ctx, "x:h").Val()
	want := map[string]string{"a": "1000012", "b": "-7", "c": "10007199254740993"} // c: 999999999999999 + 9007199254740993 + 1
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("hash %v, want %v", got, want)
	}
	if ttl := client.PTTL(ctx, "x:h").Val(); ttl <= 0 {
		t.Fatalf("no expiry: %v", ttl)
	}
}
