package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

// commandStats reads INFO commandstats: calls per command, the commands a
// script runs included (under their own names).
func commandStats(t *testing.T, c *redis.Client) map[string]int64 {
	t.Helper()
	s, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int64{}
	for _, l := range strings.Split(s, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(l), ":")
		name, isStat := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isStat || name == "info" {
			continue
		}
		v, _, _ := strings.Cut(rest, ",")
		if n, ok := strings.CutPrefix(v, "calls="); ok {
			if x, err := strconv.ParseInt(n, 10, 64); err == nil {
				calls[name] = x
			}
		}
	}
	return calls
}

// The Redis work of a request with every limit (budget, key RPM, TPM and
// concurrency, model RPM and TPM) and the usage record, through Serve with
// the limiter, ledger, settlement queue and key store the app builds on
// Redis, counted by Redis itself (INFO commandstats). Settlements are
// sent one request at a time here (each request waits for the queue to
// drain), so batching does not hide a script per operation.
func TestRedisCommandsPerRequest(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client()
	ctx := context.Background()
	mem := ratelimit.NewMemory(nil)
	lim := ratelimit.NewFailover(ratelimit.NewRedis(client, "aigw:rl:"), mem, ratelimit.FailoverOptions{Timeout: 5 * time.Second, FailOpen: true})
	queue := ratelimit.NewQueue(lim, ratelimit.QueueOptions{})
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	queue.Start(qctx)
	defer queue.Close()
	static := []*auth.Key{{Name: "team-a", Hash: auth.HashSecret("sk-a"),
		Policy: auth.Policy{RPM: 100_000, TPM: 10_000, Concurrency: 64, Budget: 1e6}}}
	keys, err := auth.NewRedis(client, "aigw:", static)
	if err != nil {
		t.Fatal(err)
	}
	tbl, _ := route.New([]route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "p", Model: "gpt-4o-mini"}}}}, nil)
	gd := &Guard{Keys: keys, Required: true, Limiter: lim, Ledger: usage.NewRedisLedger(client, "aigw:usage:"),
		Settlements: queue, ModelLimits: map[string]ModelLimits{"m": {RPM: 100_000, TPM: 10_000}}}
	rollups := usage.NewRedisRollups(client, "aigw:rollup:")
	gd.Accounting = func(info *Info) ratelimit.Write { // as caddymodule's accounting
		return &usage.RollupEntry{Rollups: rollups, At: time.Now(), Dims: usage.Dims{Key: info.Key, Route: info.Route,
			Provider: info.Provider, UpstreamModel: info.UpstreamModel, Status: strconv.Itoa(info.Status)},
			Counts: usage.Counts{Requests: 1, InputTokens: info.Usage.InputTokens, OutputTokens: info.Usage.OutputTokens}}
	}
	p := &funcProvider{do: func(context.Context, *provider.Call) (*provider.Response, error) {
		return &provider.Response{Body: []byte(answer)}, nil
	}}
	g, err := New(Config{Routes: tbl, Providers: map[string]provider.Provider{"p": p}, Guard: gd})
	if err != nil {
		t.Fatal(err)
	}
	serve := func() {
		r := httptest.NewRequest(http.MethodPost, "/v1/chat/completions",
			strings.NewReader(`{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`))
		r.Header.Set("Authorization", "Bearer sk-a")
		w := httptest.NewRecorder()
		var info Info
		g.Serve(w, r, &info)
		if w.Code != http.StatusOK {
			t.Fatalf("status %d %s", w.Code, w.Body)
		}
	}
	settled := func() int64 { st := queue.Stats(); return st.Settled + st.Lost }
	waitSettled := func(n int64) {
		for deadline := time.Now().Add(5 * time.Second); settled() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d settlements applied", settled(), n)
			}
		}
	}
	// TPM: 6 ms per token, so that a request's refund (the 60 of its 110
	// reserved tokens it did not use) never empties the bucket, which would
	// make the count depend on timing (a DEL, then an expiry on create).
	// Three other requests in flight, so that the concurrency set is read
	// as it is under load.
	for _, id := range []string{"x", "y", "z"} {
		if _, err := lim.Acquire(ctx, "key:team-a:concurrency", id, 64, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	serve() // warm: the key lookup is cached, the scripts are loaded
	waitSettled(1)
	before := commandStats(t, client)
	const n = 50
	for i := range n {
		serve()
		waitSettled(int64(i + 2))
	}
	after := commandStats(t, client)
	if st := queue.Stats(); st.Lost != 0 {
		t.Fatalf("settlements lost: %+v", st)
	}
	total, scripts := countCommands(t, "one at a time", before, after, n)
	// One script for the admission, one for the settlement; 30 commands in
	// all with the rollups (see ratelimit/scripts.go), 36 before the
	// settlement script applied the rollups and the concurrency set was
	// only counted.
	if scripts != 2*n || total > 30*n {
		t.Errorf("%d commands and %d script calls for %d requests, want at most 30 and 2 per request", total, scripts, n)
	}

	// Under load settlements leave in batches: n requests of one key and
	// model settle with the commands of one (a queue not started holds
	// them, Close sends them in one batch).
	batched := ratelimit.NewQueue(lim, ratelimit.QueueOptions{})
	gd.Settlements = batched
	before = commandStats(t, client)
	for range n {
		serve()
	}
	batched.Close()
	after = commandStats(t, client)
	if st := batched.Stats(); st.Settled != n || st.Batches != 1 {
		t.Fatalf("batched settlements: %+v", st)
	}
	total, scripts = countCommands(t, "batched", before, after, n)
	// Per request the admission's 15 commands; per batch one settlement
	// script of 15 (36 a request before).
	if scripts != n+1 || total > 16*n {
		t.Errorf("batched: %d commands and %d script calls for %d requests, want at most 16 and 1 per request", total, scripts, n)
	}

	// Concurrent requests' admissions go together: while one admission
	// script is in flight the others wait and leave in one call. The
	// first script is held until every request has started (and a little
	// longer, for them to reach the limiter), so that they meet.
	const nc = 32
	concurrent := ratelimit.NewQueue(lim, ratelimit.QueueOptions{})
	gd.Settlements = concurrent
	var started sync.WaitGroup
	started.Add(nc)
	gate := &holdFirstScript{wait: func() { started.Wait(); time.Sleep(20 * time.Millisecond) }}
	client.AddHook(gate)
	before = commandStats(t, client)
	var wg sync.WaitGroup
	for range nc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			serve()
		}()
	}
	wg.Wait()
	gate.off.Store(true)
	concurrent.Close()
	after = commandStats(t, client)
	if st := concurrent.Stats(); st.Settled != nc || st.Batches != 1 {
		t.Fatalf("concurrent settlements: %+v", st)
	}
	total, scripts = countCommands(t, "concurrent", before, after, nc)
	// Fewer admission scripts than requests (the settlement is one), the
	// commands inside them as many.
	if scripts-1 >= nc || total > 16*nc {
		t.Errorf("concurrent: %d commands and %d script calls for %d requests, want at most 16 and fewer than 1 admission script per request", total, scripts, nc)
	}
	const served = 2*n + nc + 1

	// The books are right.
	window, _ := usage.Window(usage.PeriodMonth, time.Now())
	rec, err := gd.Ledger.Get(ctx, "team-a", window)
	if err != nil {
		t.Fatal(err)
	}
	price, _ := gd.Pricing.Lookup("gpt-4o-mini", "m")
	cost := price.CostMicros(openai.Usage{InputTokens: 30, OutputTokens: 20})
	if want := (usage.Record{Requests: served, InputTokens: 30 * served, OutputTokens: 20 * served, CostMicros: cost * served}); rec != want {
		t.Errorf("ledger %+v, want %+v", rec, want)
	}
	spent, reserved, err := lim.Spent(ctx, "key:team-a:budget", window)
	if err != nil || spent != cost*served || reserved != 0 {
		t.Errorf("budget spent %d reserved %d (%v), want %d and 0", spent, reserved, err, cost*served)
	}
	rows, err := rollups.Query(ctx, usage.StepDay, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil || len(rows) != 1 || rows[0].Counts != (usage.Counts{Requests: served, InputTokens: 30 * served, OutputTokens: 20 * served}) {
		t.Errorf("rollups %+v (%v), want one row of %d requests", rows, err, served)
	}
	if held := client.ZCard(ctx, "aigw:rl:conc:key:team-a:concurrency").Val(); held != 3 {
		t.Errorf("%d concurrency slots held, want the 3 others", held)
	}
}

// holdFirstScript is a client hook that runs wait before the first
// script (EVALSHA or EVAL) it sees, until off.
type holdFirstScript struct {
	wait func()
	once sync.Once
	off  atomic.Bool
}

func (h *holdFirstScript) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdFirstScript) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *holdFirstScript) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); !h.off.Load() && (n == "evalsha" || n == "eval") {
			h.once.Do(h.wait)
		}
		return next(ctx, cmd)
	}
}

// countCommands logs and returns the commands and script calls between
// two commandStats readings over n requests.
func countCommands(t *testing.T, what string, before, after map[string]int64, n int64) (total, scripts int64) {
	t.Helper()
	var parts []string
	names := make([]string, 0, len(after))
	for name := range after {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		d := after[name] - before[name]
		if d == 0 {
			continue
		}
		total += d
		if name == "evalsha" || name == "eval" {
			scripts += d
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", name, float64(d)/float64(n)))
	}
	t.Logf("%s: Redis commands per request: %.2f (%.2f script calls): %s", what, float64(total)/float64(n),
		float64(scripts)/float64(n), strings.Join(parts, ", "))
	return total, scripts
}
