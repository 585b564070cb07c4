package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

// scriptGate is a client hook that counts the admission scripts sent
// (EVALSHA and EVAL sent alone) and can hold one: hold(n) makes the n-th
// script from now wait before it is sent (or, after, once Redis has run
// it) until the returned release is called.
type scriptGate struct {
	scripts atomic.Int64
	mu      sync.Mutex
	at      int64
	after   bool
	held    chan struct{} // closed when the held script is waiting
	release chan struct{}
}

func (g *scriptGate) DialHook(next redis.DialHook) redis.DialHook { return next }

func (g *scriptGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (g *scriptGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n != "evalsha" && n != "eval" {
			return next(ctx, cmd)
		}
		n := g.scripts.Add(1)
		g.mu.Lock()
		hold := n == g.at
		after, held, release := g.after, g.held, g.release
		g.mu.Unlock()
		if !hold {
			return next(ctx, cmd)
		}
		var err error
		if after {
			err = next(ctx, cmd)
		}
		close(held)
		<-release
		if !after {
			err = next(ctx, cmd)
		}
		return err
	}
}

// hold holds the n-th script from now (after Redis ran it when after is
// set); held is closed once it waits.
func (g *scriptGate) hold(n int64, after bool) (held chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.at, g.after = g.scripts.Load()+n, after
	held, rel := make(chan struct{}), make(chan struct{})
	g.held, g.release = held, rel
	return held, sync.OnceFunc(func() { close(rel) })
}

// waitFor polls cond for up to 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// batchOps is an admission of key k (budget, RPM, TPM, concurrency) and
// the shared model's RPM.
func batchOps(k, id string, cost int64, exp time.Time) []ratelimit.Op {
	return []ratelimit.Op{
		{Kind: ratelimit.OpReserve, Key: "key:" + k + ":budget", Window: "w", Limit: 1000, Amount: 150, Expires: exp},
		{Kind: ratelimit.OpTake, Key: "key:" + k + ":rpm", Rate: ratelimit.Rate{Limit: 10, Period: slow, Burst: 5}, Amount: 1},
		{Kind: ratelimit.OpTake, Key: "key:" + k + ":tpm", Rate: ratelimit.Rate{Limit: 1000, Period: slow}, Amount: cost},
		{Kind: ratelimit.OpAcquire, Key: "key:" + k + ":concurrency", ID: id, Slots: 4, Lease: time.Minute},
		{Kind: ratelimit.OpTake, Key: "model:m:rpm", Rate: ratelimit.Rate{Limit: 20, Period: slow, Burst: 9}, Amount: 1},
	}
}

// A batch decides its admissions exactly as separate calls in its order:
// the same results, the same state after.
func TestRedisAdmitBatchMatchesSerial(t *testing.T) {
	client := redistest.Start(t).Client()
	ctx := context.Background()
	batched, serial := ratelimit.NewRedis(client, "batched:"), ratelimit.NewRedis(client, "serial:")
	exp := time.Now().Add(time.Hour)
	costs := []int64{1, 300, 0, 1500, 50, 999, 120, 7}
	allowed, refused := 0, 0
	for round := range 3 {
		var admissions [][]ratelimit.Op
		for j := range 14 {
			k := []string{"a", "b", "c"}[j%3]
			admissions = append(admissions, batchOps(k, fmt.Sprintf("r%d-%d", round, j%5), costs[(j+round)%len(costs)], exp))
		}
		got, err := ratelimit.AdmitBatch(ctx, batched, admissions)
		if err != nil {
			t.Fatal(err)
		}
		for j, ops := range admissions {
			want, err := serial.Admit(ctx, ops)
			if err != nil {
				t.Fatal(err)
			}
			g := got[j]
			if g.Refused != want.Refused || len(g.Results) != len(want.Results) {
				t.Fatalf("round %d admission %d: batched %+v, serial %+v", round, j, g, want)
			}
			for i := range want.Results {
				gr, wr := g.Results[i], want.Results[i]
				if gr.Allowed != wr.Allowed || gr.Never != wr.Never || gr.Limit != wr.Limit || gr.Remaining != wr.Remaining {
					t.Fatalf("round %d admission %d op %d: batched %+v, serial %+v", round, j, i, gr, wr)
				}
				if d := (gr.RetryAfter - wr.RetryAfter).Abs(); d > slack {
					t.Fatalf("round %d admission %d op %d: RetryAfter batched %v, serial %v", round, j, i, gr.RetryAfter, wr.RetryAfter)
				}
			}
			if g.Allowed() {
				allowed++
			} else {
				refused++
			}
		}
	}
	if allowed == 0 || refused == 0 {
		t.Fatalf("%d admitted, %d refused; want some of each", allowed, refused)
	}
	for _, k := range []string{"a", "b", "c"} {
		ops := batchOps(k, "x", 0, exp)
		if a, b := snap(t, batched, ops), snap(t, serial, ops); a != b {
			t.Errorf("key %s: batched state %+v, serial %+v", k, a, b)
		}
	}
}

// concurrentAdmissions runs n admissions of a rate of limit (over a
// period so long that nothing is replenished during the test) and a
// concurrency set at once, the first one's script held until all the
// others wait in the lane, and returns how many were admitted.
func concurrentAdmissions(t *testing.T, l *ratelimit.Redis, gate *scriptGate, slot uint16, n int, limit int64) int {
	t.Helper()
	ctx := context.Background()
	rate := ratelimit.Rate{Limit: limit, Period: slow}
	ops := func(id string) []ratelimit.Op {
		return []ratelimit.Op{
			{Kind: ratelimit.OpTake, Key: "key:k:rpm", Rate: rate, Amount: 1},
			{Kind: ratelimit.OpAcquire, Key: "key:k:concurrency", ID: id, Slots: int64(n), Lease: time.Minute},
		}
	}
	if _, err := l.Admit(ctx, []ratelimit.Op{{Kind: ratelimit.OpTake, Key: "warm", Rate: rate}}); err != nil { // loads the script
		t.Fatal(err)
	}
	held, release := gate.hold(1, false)
	defer release()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	first := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i > 0 {
				<-first
			}
			res, err := l.Admit(ctx, ops(strconv.Itoa(i)))
			if err != nil {
				t.Error(err)
				return
			}
			if res.Allowed() {
				admitted.Add(1)
			}
		}()
		if i == 0 {
			<-held
			close(first)
		}
	}
	waitFor(t, "the admissions to queue", func() bool { return ratelimit.QueuedAdmissions(l, slot) == n-1 })
	release()
	wg.Wait()
	return int(admitted.Load())
}

// 200 admissions at once against an RPM of 50: exactly 50 admitted, in
// fewer scripts than admissions, and the refused ones hold nothing.
func TestRedisAdmitBatchedExact(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	gate := &scriptGate{}
	client.AddHook(gate)
	l := ratelimit.NewRedis(client, "exact:")
	before := gate.scripts.Load()
	if got := concurrentAdmissions(t, l, gate, 0, 200, 50); got != 50 {
		t.Fatalf("%d admitted, want 50", got)
	}
	if scripts := gate.scripts.Load() - before; scripts >= 200 {
		t.Errorf("%d scripts for 200 admissions, want fewer", scripts)
	} else {
		t.Logf("%d scripts for 200 admissions", scripts)
	}
	if held := client.ZCard(context.Background(), "exact:conc:key:k:concurrency").Val(); held != 50 {
		t.Errorf("%d concurrency slots held, want 50", held)
	}
}

// On a Cluster admissions whose keys share a hash slot (a prefix with a
// hash tag) are batched the same way.
func TestRedisClusterAdmitBatchedExact(t *testing.T) {
	client := redistest.StartCluster(t).Client()
	gate := &scriptGate{}
	client.AddHook(gate)
	l := ratelimit.NewRedis(client, "{exact}:")
	before := gate.scripts.Load()
	if got := concurrentAdmissions(t, l, gate, ratelimit.KeySlot("{exact}:"), 120, 30); got != 30 {
		t.Fatalf("%d admitted, want 30", got)
	}
	if scripts := gate.scripts.Load() - before; scripts >= 120 {
		t.Errorf("%d scripts for 120 admissions, want fewer", scripts)
	}
	if held := client.ZCard(context.Background(), "{exact}:conc:key:k:concurrency").Val(); held != 30 {
		t.Errorf("%d concurrency slots held, want 30", held)
	}
}

// cancelOps is an admission of one RPM unit and one concurrency slot.
func cancelOps(id string) []ratelimit.Op {
	return []ratelimit.Op{
		{Kind: ratelimit.OpTake, Key: "key:c:rpm", Rate: ratelimit.Rate{Limit: 10, Period: slow}, Amount: 1},
		{Kind: ratelimit.OpAcquire, Key: "key:c:concurrency", ID: id, Slots: 10, Lease: time.Minute},
	}
}

// admitAsync runs l.Admit in a goroutine; the result arrives on the
// channel.
func admitAsync(ctx context.Context, l ratelimit.Limiter, ops []ratelimit.Op) chan error {
	done := make(chan error, 1)
	go func() {
		res, err := l.Admit(ctx, ops)
		if err == nil && !res.Allowed() {
			err = fmt.Errorf("refused: %+v", res)
		}
		done <- err
	}()
	return done
}

// holders is the concurrency set's members and the RPM units taken (read
// through a limiter of its own, so past a lane that is held).
func holders(t *testing.T, client *redis.Client, prefix string) (ids []string, taken int64) {
	t.Helper()
	ctx := context.Background()
	l := ratelimit.NewRedis(client, prefix)
	ids, err := client.ZRange(ctx, prefix+"conc:key:c:concurrency", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	o := cancelOps("")[0]
	res, err := l.Take(ctx, o.Key, o.Rate, 0)
	if err != nil {
		t.Fatal(err)
	}
	return ids, res.Limit - res.Remaining
}

// A request whose context ends while its admission waits in the queue is
// not admitted; one whose context ends while its batch is in flight gets
// the context's error and what the script took is given back.
func TestRedisAdmitCancelled(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	gate := &scriptGate{}
	client.AddHook(gate)
	ctx := context.Background()

	t.Run("Queued", func(t *testing.T) {
		l := ratelimit.NewRedis(client, "cq:")
		if _, err := l.Admit(ctx, cancelOps("warm")); err != nil {
			t.Fatal(err)
		}
		held, release := gate.hold(1, false)
		defer release()
		a := admitAsync(ctx, l, cancelOps("a"))
		<-held
		bctx, cancel := context.WithCancel(ctx)
		b := admitAsync(bctx, l, cancelOps("b"))
		waitFor(t, "b to queue", func() bool { return ratelimit.QueuedAdmissions(l, 0) == 1 })
		cancel()
		if err := <-b; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled admission: %v", err)
		}
		release()
		if err := <-a; err != nil {
			t.Fatal(err)
		}
		if ids, taken := holders(t, client, "cq:"); fmt.Sprint(ids) != "[warm a]" || taken != 2 {
			t.Fatalf("holders %v, %d units taken; want a and warm, 2", ids, taken)
		}
		if n := ratelimit.QueuedAdmissions(l, 0); n != 0 {
			t.Fatalf("%d admissions left queued", n)
		}
	})

	t.Run("InFlight", func(t *testing.T) {
		l := ratelimit.NewRedis(client, "cf:")
		if _, err := l.Admit(ctx, cancelOps("warm")); err != nil {
			t.Fatal(err)
		}
		held1, release1 := gate.hold(1, false)
		defer release1()
		a := admitAsync(ctx, l, cancelOps("a"))
		<-held1
		b := admitAsync(ctx, l, cancelOps("b"))
		waitFor(t, "b to queue", func() bool { return ratelimit.QueuedAdmissions(l, 0) == 1 })
		cctx, cancel := context.WithCancel(ctx)
		c := admitAsync(cctx, l, cancelOps("c"))
		waitFor(t, "c to queue", func() bool { return ratelimit.QueuedAdmissions(l, 0) == 2 })
		held2, release2 := gate.hold(1, true) // b's batch, b and c: held once Redis ran it
		defer release2()
		release1()
		if err := <-a; err != nil {
			t.Fatal(err)
		}
		<-held2
		if ids, taken := holders(t, client, "cf:"); fmt.Sprint(ids) != "[warm a b c]" || taken != 4 {
			t.Fatalf("holders %v, %d units taken; want the batch applied", ids, taken)
		}
		cancel()
		if err := <-c; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled admission: %v", err)
		}
		release2()
		if err := <-b; err != nil {
			t.Fatal(err)
		}
		waitFor(t, "c to be given back", func() bool {
			ids, taken := holders(t, client, "cf:")
			return fmt.Sprint(ids) == "[warm a b]" && taken == 3
		})
	})
}

// killOps is an admission that always fits.
func killOps(id string) []ratelimit.Op {
	return []ratelimit.Op{
		{Kind: ratelimit.OpTake, Key: "key:k:rpm", Rate: ratelimit.Rate{Limit: 1000, Period: slow}, Amount: 1},
		{Kind: ratelimit.OpAcquire, Key: "key:k:concurrency", ID: id, Slots: 1000, Lease: time.Minute},
	}
}

// Redis killed while a batch is in flight: every admission of the batch
// (and every one after) fails as one call would: with fail_closed
// ErrUnavailable, with fail_open a decision of the fallback.
func TestRedisKilledMidBatch(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail_open=%v", failOpen), func(t *testing.T) {
			srv := redistest.Start(t)
			client := srv.Client()
			gate := &scriptGate{}
			client.AddHook(gate)
			ctx := context.Background()
			r := ratelimit.NewRedis(client, "kill:")
			l := ratelimit.NewFailover(r, ratelimit.NewMemory(nil), ratelimit.FailoverOptions{Timeout: 5 * time.Second, FailOpen: failOpen})
			if _, err := l.Admit(ctx, killOps("warm")); err != nil {
				t.Fatal(err)
			}
			held, release := gate.hold(1, false)
			defer release()
			type outcome struct {
				res ratelimit.AdmitResult
				err error
			}
			const n = 20
			out := make(chan outcome, n)
			for i := range n {
				go func() {
					res, err := l.Admit(ctx, killOps(strconv.Itoa(i)))
					out <- outcome{res, err}
				}()
				if i == 0 {
					<-held
				}
			}
			waitFor(t, "the admissions to queue", func() bool { return ratelimit.QueuedAdmissions(r, 0) == n-1 })
			srv.Kill()
			release()
			for range n {
				o := <-out
				switch {
				case !failOpen && !errors.Is(o.err, ratelimit.ErrUnavailable):
					t.Errorf("fail_closed: %+v, %v; want ErrUnavailable", o.res, o.err)
				case failOpen && (o.err != nil || !o.res.Allowed() || o.res.Backend != ratelimit.BackendFallback):
					t.Errorf("fail_open: %+v, %v; want admitted by the fallback", o.res, o.err)
				}
			}
			if l.Up() {
				t.Error("primary still up")
			}
		})
	}
}

// A batch's operations travel as one binary argument: concurrency ids of
// any length and bytes (past 64 KiB, NUL, quotes, bytes that are not
// UTF-8) are stored as given, between other admissions of the same call,
// and released by their ids.
func TestRedisAdmitRecordsKeepIDs(t *testing.T) {
	client := redistest.Start(t).Client()
	ctx := context.Background()
	l := ratelimit.NewRedis(client, "ids:")
	ids := []string{"a", string(make([]byte, 70<<10)) + "x", "\x00\"\\\xff\xfe", strings.Repeat("é", 300)}
	var admissions [][]ratelimit.Op
	for _, id := range ids {
		admissions = append(admissions, []ratelimit.Op{
			{Kind: ratelimit.OpTake, Key: "k", Rate: ratelimit.Rate{Limit: 100, Period: time.Minute}, Amount: 1},
			{Kind: ratelimit.OpAcquire, Key: "k", ID: id, Slots: 10, Lease: time.Minute},
		})
	}
	got, err := ratelimit.AdmitBatch(ctx, l, admissions)
	if err != nil {
		t.Fatal(err)
	}
	for i, res := range got {
		if !res.Allowed() {
			t.Fatalf("admission %d refused: %+v", i, res)
		}
		if want := int64(10 - (i + 1)); res.Results[1].Remaining != want {
			t.Errorf("admission %d: %d slots remaining, want %d", i, res.Results[1].Remaining, want)
		}
	}
	members := client.ZRange(ctx, "ids:conc:k", 0, -1).Val()
	slices.Sort(members)
	want := slices.Clone(ids)
	slices.Sort(want)
	if !slices.Equal(members, want) {
		t.Fatalf("stored ids differ: %d stored, want %d", len(members), len(want))
	}
	for _, id := range ids {
		if _, err := (&ratelimit.Op{Kind: ratelimit.OpRelease, Key: "k", ID: id}).Do(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	if n := client.ZCard(ctx, "ids:conc:k").Val(); n != 0 {
		t.Fatalf("%d leases left after releasing every id", n)
	}
}
