package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

// sdkResult is one request made with the OpenAI SDK.
type sdkResult struct {
	Status  int
	Header  http.Header
	TTFT    time.Duration // to the first streamed chunk (or the answer)
	Took    time.Duration
	ErrCode string
	Tokens  int64
}

// sdkChat sends one chat completion for model through the SDK, streamed
// or not, and reports how it went.
func sdkChat(ctx context.Context, c openai.Client, model string, stream bool, opts ...option.RequestOption) sdkResult {
	var resp *http.Response
	opts = append(opts, option.WithResponseInto(&resp))
	params := openai.ChatCompletionNewParams{Model: model, Messages: userMsg("hello")}
	start := time.Now()
	var r sdkResult
	var err error
	if stream {
		params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		s := c.Chat.Completions.NewStreaming(ctx, params, opts...)
		for s.Next() {
			if r.TTFT == 0 {
				r.TTFT = time.Since(start)
			}
			if u := s.Current().Usage; u.TotalTokens > 0 {
				r.Tokens = u.TotalTokens
			}
		}
		err = s.Err()
	} else {
		var cc *openai.ChatCompletion
		cc, err = c.Chat.Completions.New(ctx, params, opts...)
		r.TTFT = time.Since(start)
		if err == nil {
			r.Tokens = cc.Usage.TotalTokens
		}
	}
	r.Took = time.Since(start)
	if resp != nil {
		r.Status, r.Header = resp.StatusCode, resp.Header
	}
	var ae *openai.Error
	if errors.As(err, &ae) {
		r.Status, r.ErrCode = ae.StatusCode, ae.Code
		if ae.Response != nil {
			r.Header = ae.Response.Header
		}
	} else if err != nil {
		r.Status, r.ErrCode = -1, err.Error()
	}
	return r
}

// drive sends requests for model from clients goroutines, each one every
// interval (open loop: whatever the latency), for d, spread over gws.
func drive(t *testing.T, gws []*Gateway, model string, clients int, interval, d time.Duration) []sdkResult {
	t.Helper()
	var (
		mu  sync.Mutex
		out []sdkResult
		wg  sync.WaitGroup
	)
	start := time.Now()
	for c := range clients {
		wg.Go(func() {
			cl := gws[c%len(gws)].client(option.WithRequestTimeout(20 * time.Second))
			// Clients start spread over one interval.
			time.Sleep(interval * time.Duration(c) / time.Duration(clients))
			tick := time.NewTicker(interval)
			defer tick.Stop()
			var reqs sync.WaitGroup
			for time.Since(start) < d {
				reqs.Go(func() {
					r := sdkChat(context.Background(), cl, model, false)
					mu.Lock()
					out = append(out, r)
					mu.Unlock()
				})
				<-tick.C
			}
			reqs.Wait()
		})
	}
	wg.Wait()
	return out
}

const quotaCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider up {
			base_url {{.Fake}}/v1
			rpm 60
			queue 3s
		}
		model demo {
			target up fake-model
		}
		{{.Redis}}
	}
}
:{{.Port}} {
	ai_gateway
}
`

// The provider grants 60 requests per minute; the fake upstream enforces
// it over a sliding 10 s window (the 60/min time-compressed: 10
// per 10 s plus the pacer's burst of 6, and 1 for the window's edges), so
// that the test runs in about 12 s. Any request the gateway sends beyond
// the quota is answered 429 by the upstream and counted.
var providerQuota = fakellm.RateLimit{Requests: 6 + 10 + 1, Window: 10 * time.Second}

// checkQuotaRun checks a run of 120 req/min from 10 clients against the
// 60 rpm quota with a 3 s queue. A refusal's Retry-After is at least
// minRetryAfter: in process the pacer reserves each waiting request its
// slot, so a refused one is told the time past the queue its slot would
// have come; the shared (Redis) pacer decides each try on its own and
// tells the time to the next free slot.
func checkQuotaRun(t *testing.T, fake *Fake, results []sdkResult, elapsed time.Duration, minRetryAfter int) {
	t.Helper()
	var ok, limited int
	for _, r := range results {
		switch {
		case r.Status == 200:
			ok++
		case r.Status == 429:
			limited++
			if r.ErrCode != "provider_quota_exceeded" {
				t.Errorf("429 with code %q, want provider_quota_exceeded", r.ErrCode)
			}
			// Refused after the 3 s queue: the pacer's Retry-After says
			// when there is room.
			ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
			if err != nil || ra < minRetryAfter || ra > 5 {
				t.Errorf("Retry-After %q, want %d..5 s", r.Header.Get("Retry-After"), minRetryAfter)
			}
		default:
			t.Errorf("request failed: %d %s", r.Status, r.ErrCode)
		}
	}
	arrivals := fake.Arrivals()
	maxWin := fakellm.MaxInWindow(arrivals, 10*time.Second)
	t.Logf("%d requests in %v: %d answered, %d refused 429; upstream saw %d, at most %d in any 10 s, refused %d",
		len(results), elapsed.Round(time.Millisecond), ok, limited, len(arrivals), maxWin, fake.RateLimited())
	if n := fake.RateLimited(); n > 0 {
		t.Errorf("the upstream answered %d requests 429: the gateway sent beyond the quota", n)
	}
	// 60 rpm with a burst of 6 over the whole run.
	if upper := 6 + int(elapsed.Seconds()) + 1; len(arrivals) > upper {
		t.Errorf("upstream saw %d requests in %v, want at most %d (60 rpm + burst)", len(arrivals), elapsed, upper)
	}
	if ok != len(arrivals) {
		t.Errorf("%d answered, upstream saw %d", ok, len(arrivals))
	}
	if limited == 0 {
		t.Errorf("no request was refused at twice the quota: the queue is unbounded")
	}
	// The queue let some wait rather than refusing everything beyond the burst.
	if ok < 6+int(elapsed.Seconds())-3 {
		t.Errorf("only %d answered in %v at 60 rpm", ok, elapsed)
	}
}

func TestProviderQuotaPacesAndQueues(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "up", Chunks: 2, RateLimit: &providerQuota})
	gw := startGateway(t, quotaCaddyfile, map[string]any{"Fake": fake.URL, "Redis": ""})
	start := time.Now()
	// 10 clients, one request every 5 s each: 120 requests per minute.
	results := drive(t, []*Gateway{gw}, "demo", 10, 5*time.Second, 12*time.Second)
	checkQuotaRun(t, fake, results, time.Since(start), 3)

	// The admin status shows the quota of the target.
	st := adminGet(t, gw, "/ai_gateway/status")
	q := gjson.Get(st, `targets.up/fake-model.quotas.0`)
	if q.Get("name").String() != "provider:up" || q.Get("rpm").Int() != 60 || !q.Get("remaining_requests").Exists() {
		t.Errorf("status quota: %s", st)
	}
	if up := q.Get("upstream_remaining_requests").Int(); up < 0 {
		t.Errorf("the upstream's x-ratelimit-remaining-requests was not read: %s", q)
	}
}

func TestProviderQuotaSharedByTwoGateways(t *testing.T) {
	rs := redistest.Start(t)
	fake := startFake(t, fakellm.Options{Name: "up", Chunks: 2, RateLimit: &providerQuota})
	redis := fmt.Sprintf("redis redis://%s {\n\t\t\ttimeout 2s\n\t\t\ton_failure fail_closed\n\t\t}", rs.Addr())
	data := func() map[string]any { return map[string]any{"Fake": fake.URL, "Redis": redis} }
	gws := []*Gateway{startGateway(t, quotaCaddyfile, data()), startGateway(t, quotaCaddyfile, data())}
	start := time.Now()
	// The same load, half of it through each gateway.
	results := drive(t, gws, "demo", 10, 5*time.Second, 12*time.Second)
	checkQuotaRun(t, fake, results, time.Since(start), 1)
}

const twoTargetsCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider a {
			base_url {{.A}}/v1
		}
		provider b {
			base_url {{.B}}/v1
		}
		model demo {
			target a fake-model weight 9 rpm 60
			target b fake-model weight 1 rpm 120
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`

func TestQuotaExcessGoesToTheSecondTarget(t *testing.T) {
	a := startFake(t, fakellm.Options{Name: "a", Chunks: 2, RateLimit: &providerQuota})
	b := startFake(t, fakellm.Options{Name: "b", Chunks: 2})
	gw := startGateway(t, twoTargetsCaddyfile, map[string]any{"A": a.URL, "B": b.URL})
	start := time.Now()
	// 240 requests per minute: four times a's quota.
	results := drive(t, []*Gateway{gw}, "demo", 10, 2500*time.Millisecond, 10*time.Second)
	elapsed := time.Since(start)
	for _, r := range results {
		// No queue is configured: a request that found no target with
		// headroom would be refused at once.
		if r.Status != 200 {
			t.Errorf("request failed: %d %s (Retry-After %s)", r.Status, r.ErrCode, r.Header.Get("Retry-After"))
		}
	}
	na, nb := len(a.Arrivals()), b.Stats().Total
	t.Logf("%d requests in %v: a (60 rpm, weight 9) served %d, b (weight 1) %d", len(results), elapsed.Round(time.Millisecond), na, nb)
	if a.RateLimited() > 0 {
		t.Errorf("target a's upstream refused %d requests", a.RateLimited())
	}
	upper := 6 + int(elapsed.Seconds()) + 1
	if na > upper {
		t.Errorf("target a got %d requests, want at most %d", na, upper)
	}
	// By weight b would get a tenth; it got a's excess.
	if nb < len(results)-upper {
		t.Errorf("target b got %d of %d requests: the excess did not go to it", nb, len(results))
	}
}

const hedgeCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider slow {
			base_url {{.Slow}}/v1
		}
		provider fast {
			base_url {{.Fast}}/v1
		}
		model plain {
			target slow fake-model
			target fast fake-model
		}
		model hedged {
			target slow fake-model
			target fast fake-model
			hedge_after 200ms
		}
		key k {
			secret k-secret
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`

func TestHedgingCutsTailLatency(t *testing.T) {
	slow := startFake(t, fakellm.Options{Name: "slow", Chunks: 3, TTFT: 2 * time.Second})
	fast := startFake(t, fakellm.Options{Name: "fast", Chunks: 3, TTFT: 50 * time.Millisecond})
	gw := startGateway(t, hedgeCaddyfile, map[string]any{"Slow": slow.URL, "Fast": fast.URL})
	c := gw.client(option.WithAPIKey("k-secret"))
	const n = 24
	run := func(model string) []sdkResult {
		out := make([]sdkResult, n)
		var wg sync.WaitGroup
		for w := range 2 { // two waves of 12 at once
			for i := range n / 2 {
				wg.Go(func() { out[w*n/2+i] = sdkChat(context.Background(), c, model, true) })
			}
			wg.Wait()
		}
		return out
	}
	p99 := func(rs []sdkResult) time.Duration {
		ds := make([]time.Duration, 0, len(rs))
		for _, r := range rs {
			if r.Status != 200 {
				t.Fatalf("request failed: %d %s", r.Status, r.ErrCode)
			}
			ds = append(ds, r.TTFT)
		}
		slices.Sort(ds)
		return ds[(len(ds)*99+99)/100-1]
	}

	plain := run("plain")
	plainSlow := slow.Stats().Total
	slow.Reset()
	fast.Reset()
	before := gjson.Get(adminGet(t, gw, "/ai_gateway/keys/k"), "usage")

	hedged := run("hedged")
	pPlain, pHedged := p99(plain), p99(hedged)
	st, ft := slow.Stats(), fast.Stats()
	hedges := 0
	var tokens int64
	for _, r := range hedged {
		if r.Header.Get("X-AI-Gateway-Attempts") == "2" {
			hedges++
		}
		tokens += r.Tokens
	}
	t.Logf("p99 TTFT: %v without hedging (%d of %d slow picks), %v with hedge_after 200ms (%d slow picks, %d hedges, %d slow attempts cancelled)",
		pPlain, plainSlow, n, pHedged, st.Total, hedges, st.Cancelled)
	if plainSlow == 0 || st.Total == 0 {
		t.Skip("the random pick never chose the slow target")
	}
	if pPlain < 5*pHedged {
		t.Errorf("p99 TTFT %v with hedging, %v without: want at least 5x lower", pHedged, pPlain)
	}
	// Every slow pick was hedged once, no fast pick was: the extra calls
	// are at most one per slow pick.
	if extra := st.Total + ft.Total - n; extra > st.Total || extra != hedges {
		t.Errorf("%d upstream calls for %d requests (%d slow picks, %d with 2 attempts)", st.Total+ft.Total, n, st.Total, hedges)
	}
	// The slow loser was cancelled at once: it never answered.
	eventually(t, 3*time.Second, func() bool { return slow.Stats().Cancelled == st.Total },
		"slow target: %d calls, %d cancelled", st.Total, slow.Stats().Cancelled)
	// Tokens charged once: the key's ledger grew by the winners' usage.
	var after gjson.Result
	eventually(t, 3*time.Second, func() bool {
		after = gjson.Get(adminGet(t, gw, "/ai_gateway/keys/k"), "usage")
		return after.Get("requests").Int()-before.Get("requests").Int() == n
	}, "ledger requests: %s -> %s", before, after)
	charged := after.Get("input_tokens").Int() + after.Get("output_tokens").Int() - before.Get("input_tokens").Int() - before.Get("output_tokens").Int()
	if charged != tokens {
		t.Errorf("ledger charged %d tokens, the %d answers reported %d", charged, n, tokens)
	}
	if m := scrapeSeries(t, gw, `caddy_ai_gateway_hedged_attempts_total{model="hedged"}`); int(m) != hedges {
		t.Errorf("hedged_attempts_total = %v, want %d", m, hedges)
	}
}

// scrapeSeries reads one sample from the admin endpoint's /metrics.
func scrapeSeries(t *testing.T, gw *Gateway, series string) float64 {
	t.Helper()
	_, _, body := do(t, mustRequest(t, http.MethodGet, gw.AdminURL+"/metrics"))
	for line := range strings.SplitSeq(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func mustRequest(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

const latencyCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider slow {
			base_url {{.Slow}}/v1
		}
		provider fast {
			base_url {{.Fast}}/v1
		}
		model demo {
			target slow fake-model
			target fast fake-model
			policy least_latency
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`

func TestLeastLatencyConverges(t *testing.T) {
	slow := startFake(t, fakellm.Options{Name: "slow", Chunks: 2, TTFT: 300 * time.Millisecond})
	fast := startFake(t, fakellm.Options{Name: "fast", Chunks: 2, TTFT: 20 * time.Millisecond})
	gw := startGateway(t, latencyCaddyfile, map[string]any{"Slow": slow.URL, "Fast": fast.URL})
	c := gw.client()
	var picks []string
	for range 20 {
		r := sdkChat(context.Background(), c, "demo", true)
		if r.Status != 200 {
			t.Fatalf("request failed: %d %s", r.Status, r.ErrCode)
		}
		picks = append(picks, r.Header.Get("X-AI-Gateway-Provider"))
	}
	t.Logf("picks: %v", picks)
	// Each target is measured once, then the fast one wins.
	for i, p := range picks[2:] {
		if p != "fast" {
			t.Errorf("request %d went to %s after both targets were measured", i+3, p)
		}
	}
	st := adminGet(t, gw, "/ai_gateway/status")
	fastTTFT := gjson.Get(st, "targets.fast/fake-model.ttft_ms").Float()
	slowTTFT := gjson.Get(st, "targets.slow/fake-model.ttft_ms").Float()
	if fastTTFT <= 0 || slowTTFT <= fastTTFT || gjson.Get(st, "targets.fast/fake-model.breaker").String() != "closed" ||
		!gjson.Get(st, "targets.fast/fake-model.in_flight").Exists() {
		t.Errorf("status targets: %s", gjson.Get(st, "targets"))
	}
}

const healthCheckCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider dead {
			base_url {{.Dead}}/v1
			health_check 200ms
		}
		provider live {
			base_url {{.Live}}/v1
			health_check 200ms
		}
		model demo {
			target dead fake-model
			target live fake-model
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`

func TestHealthProbeTakesADeadTargetOut(t *testing.T) {
	live := startFake(t, fakellm.Options{Name: "live", Chunks: 2})
	dead := fmt.Sprintf("http://127.0.0.1:%d", freePort(t)) // nothing listens
	gw := startGateway(t, healthCheckCaddyfile, map[string]any{"Dead": dead, "Live": live.URL})
	eventually(t, 5*time.Second, func() bool {
		return gjson.Get(adminGet(t, gw, "/ai_gateway/status"), "targets.dead/fake-model.breaker").String() == "open"
	}, "the probe did not open the dead target's breaker: %s", adminGet(t, gw, "/ai_gateway/status"))
	if b := gjson.Get(adminGet(t, gw, "/ai_gateway/status"), "targets.live/fake-model.breaker").String(); b != "closed" {
		t.Fatalf("live target's breaker: %s", b)
	}
	// No retries are configured: a request sent to the dead target would
	// fail. None is.
	c := gw.client()
	for i := range 20 {
		r := sdkChat(context.Background(), c, "demo", false)
		if r.Status != 200 || r.Header.Get("X-AI-Gateway-Provider") != "live" {
			t.Fatalf("request %d: %d %s via %q", i, r.Status, r.ErrCode, r.Header.Get("X-AI-Gateway-Provider"))
		}
	}
	if n := live.Stats().Requests["/v1/models"]; n == 0 {
		t.Errorf("the live provider was never probed")
	}
}

const cooldownCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider x {
			base_url {{.X}}/v1
		}
		provider y {
			base_url {{.Y}}/v1
		}
		model demo {
			target x cheap
			target y dear
			policy cost
			retries 1
		}
		price cheap 0.1 0.1
		price dear 10 10
		max_fails 1
		cooldown 30s
		retry_backoff 1ms
		redis redis://{{.Redis}} {
			timeout 2s
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`

func TestCooldownSharedBetweenGateways(t *testing.T) {
	rs := redistest.Start(t)
	x := startFake(t, fakellm.Options{Name: "x", Chunks: 2})
	y := startFake(t, fakellm.Options{Name: "y", Chunks: 2})
	data := func() map[string]any { return map[string]any{"X": x.URL, "Y": y.URL, "Redis": rs.Addr()} }
	a, b := startGateway(t, cooldownCaddyfile, data()), startGateway(t, cooldownCaddyfile, data())
	ca, cb := a.client(), b.client()
	// Cheapest first: both gateways use x while it is healthy.
	for _, c := range []openai.Client{ca, cb} {
		if r := sdkChat(context.Background(), c, "demo", false); r.Status != 200 || r.Header.Get("X-AI-Gateway-Provider") != "x" {
			t.Fatalf("healthy: %d via %q", r.Status, r.Header.Get("X-AI-Gateway-Provider"))
		}
	}
	// x fails on gateway a: its breaker opens (max_fails 1), a retries on y.
	x.Enqueue(fakellm.Behavior{Status: 500})
	if r := sdkChat(context.Background(), ca, "demo", false); r.Status != 200 || r.Header.Get("X-AI-Gateway-Provider") != "y" {
		t.Fatalf("failing x: %d via %q", r.Status, r.Header.Get("X-AI-Gateway-Provider"))
	}
	cooled := time.Now()
	// Gateway b learns it within 1 s.
	eventually(t, 5*time.Second, func() bool {
		return gjson.Get(adminGet(t, b, "/ai_gateway/status"), "targets.x/cheap.breaker").String() == "open"
	}, "gateway b never cooled x down")
	took := time.Since(cooled)
	t.Logf("gateway b cooled x down %v after gateway a", took.Round(time.Millisecond))
	if took > time.Second {
		t.Errorf("gateway b cooled x down after %v, want within 1 s", took)
	}
	before := x.Stats().Total
	for range 5 {
		if r := sdkChat(context.Background(), cb, "demo", false); r.Status != 200 || r.Header.Get("X-AI-Gateway-Provider") != "y" {
			t.Fatalf("gateway b: %d via %q, want y", r.Status, r.Header.Get("X-AI-Gateway-Provider"))
		}
	}
	if n := x.Stats().Total - before; n != 0 {
		t.Errorf("gateway b sent %d requests to the cooled-down x", n)
	}
}

const upstreamHeadersCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider up {
			type {{.Type}}
			base_url {{.Base}}
			api_key upstream-key
			rpm 6000
			queue 10s
		}
		model demo {
			target up fake-model
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`

// The configured quota is far above what the provider really grants (5
// requests per 2 s): its rate-limit headers (OpenAI's
// x-ratelimit-remaining-requests and x-ratelimit-reset-requests, or
// Anthropic's anthropic-ratelimit-requests-remaining and -reset) hold the
// gateway back instead.
func TestProviderHeadersUpdateThePacer(t *testing.T) {
	for _, typ := range []string{"openai", "anthropic"} {
		t.Run(typ, func(t *testing.T) {
			fake := startFake(t, fakellm.Options{Name: "up", Chunks: 2, RateLimit: &fakellm.RateLimit{Requests: 5, Window: 2 * time.Second}})
			base := fake.URL + "/v1"
			if typ == "anthropic" {
				base = fake.URL
			}
			gw := startGateway(t, upstreamHeadersCaddyfile, map[string]any{"Base": base, "Type": typ})
			c := gw.client()
			for i := range 12 {
				if r := sdkChat(context.Background(), c, "demo", false); r.Status != 200 {
					t.Fatalf("request %d: %d %s", i, r.Status, r.ErrCode)
				}
			}
			if n := fake.RateLimited(); n > 0 {
				t.Fatalf("the upstream refused %d requests: its headers did not hold the gateway back", n)
			}
			st := adminGet(t, gw, "/ai_gateway/status")
			if q := gjson.Get(st, "targets.up/fake-model.quotas.0"); !q.Get("upstream_remaining_requests").Exists() || q.Get("upstream_remaining_requests").Int() > 4 {
				t.Errorf("status: %s", q)
			}
		})
	}
}

const tpmCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider up {
			base_url {{.Fake}}/v1
		}
		model demo {
			target up fake-model tpm 6000
		}
		{{.Redis}}
	}
}
:{{.Port}} {
	ai_gateway
}
`

// A target's TPM quota reserves each request's estimate (prompt + its
// max_tokens of 1000) and settles it to the real usage (a few tokens): 20
// requests in a row fit a 6000-token bucket only because each gives its
// unused reservation back. Without a queue, one that did not fit would be
// refused at once.
func TestTargetTPMSettledFromUsage(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(map[bool]string{false: "in process", true: "redis"}[shared], func(t *testing.T) {
			fake := startFake(t, fakellm.Options{Name: "up", Chunks: 2})
			redis := ""
			if shared {
				redis = "redis redis://" + redistest.Start(t).Addr()
			}
			gw := startGateway(t, tpmCaddyfile, map[string]any{"Fake": fake.URL, "Redis": redis})
			c := gw.client()
			for i := range 20 {
				r, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
					Model: "demo", Messages: userMsg("hello"), MaxTokens: openai.Int(1000)})
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if r.Usage.TotalTokens == 0 || r.Usage.TotalTokens > 100 {
					t.Fatalf("usage %d", r.Usage.TotalTokens)
				}
			}
			// At once, the reservations do not fit: 8 requests of 1000+
			// tokens in flight on a 6000-token bucket.
			fake.Script("", fakellm.Behavior{TTFT: time.Second})
			var wg sync.WaitGroup
			var mu sync.Mutex
			refused := 0
			for range 8 {
				wg.Go(func() {
					_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
						Model: "demo", Messages: userMsg("hello"), MaxTokens: openai.Int(1000)})
					var ae *openai.Error
					if errors.As(err, &ae) && ae.StatusCode == 429 && ae.Code == "provider_quota_exceeded" {
						mu.Lock()
						refused++
						mu.Unlock()
					} else if err != nil {
						t.Errorf("concurrent request: %v", err)
					}
				})
			}
			wg.Wait()
			if refused < 2 || refused > 4 {
				t.Errorf("%d of 8 concurrent 1000-token requests refused on a 6000-token bucket, want 2..4", refused)
			}
			st := adminGet(t, gw, "/ai_gateway/status")
			if q := gjson.Get(st, "targets.up/fake-model.quotas.0"); q.Get("tpm").Int() != 6000 {
				t.Errorf("status: %s", q)
			}
		})
	}
}
