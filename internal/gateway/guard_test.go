package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

// spyLimiter records every call to the in-memory limiter it wraps; it can
// refuse or fail the calls on chosen keys and mark its decisions as made by
// a backend.
type spyLimiter struct {
	mem *ratelimit.Memory

	mu      sync.Mutex
	calls   []string
	refuse  map[string]ratelimit.Result // decisions on these keys
	fail    map[string]bool             // errors on these keys (every method)
	backend ratelimit.Backend
}

var errSpy = errors.New("spy: backend down")

func (s *spyLimiter) record(format string, args ...any) (ratelimit.Result, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := fmt.Sprintf(format, args...)
	s.calls = append(s.calls, c)
	key := strings.Fields(c)[1]
	if s.fail[key] {
		return ratelimit.Result{}, true, errSpy
	}
	if res, ok := s.refuse[key]; ok && !strings.HasPrefix(c, "refund") && !strings.HasPrefix(c, "release") && !strings.HasPrefix(c, "settle") {
		return res, true, nil
	}
	return ratelimit.Result{}, false, nil
}

func (s *spyLimiter) decided(res ratelimit.Result, err error) (ratelimit.Result, error) {
	res.Backend = s.backend
	return res, err
}

func by(b ratelimit.Backend) string {
	if b == ratelimit.BackendFallback {
		return " @fallback"
	}
	return ""
}

func (s *spyLimiter) Take(ctx context.Context, key string, rate ratelimit.Rate, cost int64) (ratelimit.Result, error) {
	if res, done, err := s.record("take %s %d", key, cost); done {
		return res, err
	}
	return s.decided(s.mem.Take(ctx, key, rate, cost))
}

func (s *spyLimiter) Refund(ctx context.Context, key string, rate ratelimit.Rate, n int64, b ratelimit.Backend) error {
	if _, done, err := s.record("refund %s %d%s", key, n, by(b)); done {
		return err
	}
	return s.mem.Refund(ctx, key, rate, n, b)
}

func (s *spyLimiter) Acquire(ctx context.Context, key, id string, slots int64, lease time.Duration) (ratelimit.Result, error) {
	if res, done, err := s.record("acquire %s %d", key, slots); done {
		return res, err
	}
	return s.decided(s.mem.Acquire(ctx, key, id, slots, lease))
}

func (s *spyLimiter) Release(ctx context.Context, key, id string, b ratelimit.Backend) error {
	if _, done, err := s.record("release %s%s", key, by(b)); done {
		return err
	}
	return s.mem.Release(ctx, key, id, b)
}

func (s *spyLimiter) Reserve(ctx context.Context, key, window string, limit, amount int64, expires time.Time) (ratelimit.Result, error) {
	if res, done, err := s.record("reserve %s %s %d", key, window, amount); done {
		return res, err
	}
	return s.decided(s.mem.Reserve(ctx, key, window, limit, amount, expires))
}

func (s *spyLimiter) Settle(ctx context.Context, key, window string, reserved, actual int64, expires time.Time, b ratelimit.Backend) error {
	if _, done, err := s.record("settle %s %d %d%s", key, reserved, actual, by(b)); done {
		return err
	}
	return s.mem.Settle(ctx, key, window, reserved, actual, expires, b)
}

// Admit records each operation as its own call, in order, and stops at the
// first one the spy refuses or fails; the operations before it then report
// what they would have left, and nothing is taken.
func (s *spyLimiter) Admit(ctx context.Context, ops []ratelimit.Op) (ratelimit.AdmitResult, error) {
	for i, o := range ops {
		var res ratelimit.Result
		var done bool
		var err error
		switch o.Kind {
		case ratelimit.OpTake:
			res, done, err = s.record("take %s %d", o.Key, o.Amount)
		case ratelimit.OpAcquire:
			res, done, err = s.record("acquire %s %d", o.Key, o.Slots)
		case ratelimit.OpReserve:
			res, done, err = s.record("reserve %s %s %d", o.Key, o.Window, o.Amount)
		}
		if err != nil {
			return ratelimit.AdmitResult{}, err
		}
		if !done {
			continue
		}
		before, err := s.mem.Admit(ctx, ops[:i])
		if err != nil {
			return ratelimit.AdmitResult{}, err
		}
		for j, o := range ops[:i] { // give back: the admission refuses
			switch o.Kind {
			case ratelimit.OpTake:
				_ = s.mem.Refund(ctx, o.Key, o.Rate, o.Amount, 0)
			case ratelimit.OpAcquire:
				_ = s.mem.Release(ctx, o.Key, o.ID, 0)
			case ratelimit.OpReserve:
				_ = s.mem.Settle(ctx, o.Key, o.Window, o.Amount, 0, o.Expires, 0)
			}
			before.Results[j].Backend = s.backend
		}
		res.Allowed, res.Backend = false, s.backend
		return ratelimit.AdmitResult{Results: append(before.Results, res), Refused: i, Backend: s.backend}, nil
	}
	res, err := s.mem.Admit(ctx, ops)
	for i := range res.Results {
		res.Results[i].Backend = s.backend
	}
	res.Backend = s.backend
	return res, err
}

func (s *spyLimiter) Spent(ctx context.Context, key, window string) (int64, int64, error) {
	return s.mem.Spent(ctx, key, window)
}

func (s *spyLimiter) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls
	s.calls = nil
	return c
}

// The limiter keys of the fixture.
const (
	kBudget = "key:team-a:budget"
	kRPM    = "key:team-a:rpm"
	kTPM    = "key:team-a:tpm"
	kConc   = "key:team-a:concurrency"
	mRPM    = "model:m:rpm"
	mTPM    = "model:m:tpm"
)

// fixture is a guard over a spied in-memory limiter and ledger, with a frozen
// clock (so that rates do not replenish between a take and its check), a
// key that has every limit and a model with totals. Model m costs 1 µUSD per
// input token and 2 per output token.
type fixture struct {
	t      *testing.T
	gd     *Guard
	lim    *spyLimiter
	ledger *usage.MemoryLedger
	now    time.Time
	key    *auth.Key
	route  *route.Route
	logs   *observer.ObservedLogs
}

const (
	fxRPM, fxTPM, fxConc = 10, 100_000, 1
	fxBudget             = 1.0 // USD
	fxModelRPM           = 20
	fxModelTPM           = 200_000
	fxMaxTokens          = 100
)

func newFixture(t *testing.T) *fixture {
	t.Helper()
	now := time.Date(2099, 11, 25, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tbl, err := route.New([]route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "p"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rt, _ := tbl.Lookup("m")
	pricing := usage.NewPricing()
	pricing.Set("m", usage.Price{Input: 1, Output: 2})
	core, logs := observer.New(zapcore.WarnLevel)
	f := &fixture{t: t, now: now, route: rt, logs: logs,
		lim:    &spyLimiter{mem: ratelimit.NewMemory(clock)},
		ledger: usage.NewMemoryLedger(),
		key: &auth.Key{Name: "team-a", Policy: auth.Policy{RPM: fxRPM, TPM: fxTPM, Concurrency: fxConc,
			Budget: fxBudget, BudgetPeriod: auth.PeriodDay}},
	}
	f.gd = &Guard{Limiter: f.lim, Ledger: f.ledger, Pricing: pricing, Logger: zap.New(core), clock: clock,
		ModelLimits: map[string]ModelLimits{"m": {RPM: fxModelRPM, TPM: fxModelTPM}}}
	f.gd.defaults()
	return f
}

func (f *fixture) request() *openai.Request {
	return &openai.Request{Op: openai.OpChat, Model: "m", MaxTokens: fxMaxTokens,
		Body: []byte(`{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"Say hello to the gateway."}]}`)}
}

func (f *fixture) admit(h http.Header) (*admission, *openai.Error) {
	if h == nil {
		h = http.Header{}
	}
	return f.gd.admit(context.Background(), h, f.key, f.request(), f.route)
}

func (f *fixture) mustAdmit() *admission {
	f.t.Helper()
	a, oe := f.admit(nil)
	if oe != nil {
		f.t.Fatalf("admit: %v %s", oe.Code, oe.Message)
	}
	f.lim.take()
	return a
}

// used is what a rate limit's state has counted (a peek at its remaining).
func (f *fixture) used(key string, limit int64) int64 {
	f.t.Helper()
	res, err := f.lim.mem.Take(context.Background(), key, ratelimit.Rate{Limit: limit, Period: time.Minute}, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	return limit - res.Remaining
}

// slotFree reports whether the key's concurrency slot is free.
func (f *fixture) slotFree() bool {
	f.t.Helper()
	ctx := context.Background()
	res, err := f.lim.mem.Acquire(ctx, kConc, "probe", 1, time.Minute)
	if err != nil {
		f.t.Fatal(err)
	}
	if res.Allowed {
		_ = f.lim.mem.Release(ctx, kConc, "probe", 0)
	}
	return res.Allowed
}

func (f *fixture) budget() (spent, reserved int64) {
	f.t.Helper()
	spent, reserved, err := f.lim.mem.Spent(context.Background(), kBudget, "2099-11-25")
	if err != nil {
		f.t.Fatal(err)
	}
	return spent, reserved
}

// state is every limit's count, for comparisons.
type state struct {
	rpm, tpm, mrpm, mtpm int64
	slotFree             bool
	spent, reserved      int64
}

func (f *fixture) state() state {
	s := state{rpm: f.used(kRPM, fxRPM), tpm: f.used(kTPM, fxTPM), mrpm: f.used(mRPM, fxModelRPM),
		mtpm: f.used(mTPM, fxModelTPM), slotFree: f.slotFree()}
	s.spent, s.reserved = f.budget()
	return s
}

func TestAdmitTakesHoldsInOrder(t *testing.T) {
	f := newFixture(t)
	h := http.Header{}
	a, oe := f.admit(h)
	if oe != nil {
		t.Fatalf("admit: %s", oe.Message)
	}
	n := a.reserve
	if n != a.estIn+fxMaxTokens || a.estIn <= 0 {
		t.Fatalf("reserve %d, estimate %d", n, a.estIn)
	}
	est := a.estIn + 2*fxMaxTokens // µUSD at 1 per input and 2 per output token
	want := []string{
		fmt.Sprintf("reserve %s 2099-11-25 %d", kBudget, est),
		"take " + kRPM + " 1",
		fmt.Sprintf("take %s %d", kTPM, n),
		"acquire " + kConc + " 1",
		"take " + mRPM + " 1",
		fmt.Sprintf("take %s %d", mTPM, n),
	}
	if got := f.lim.take(); !slices.Equal(got, want) {
		t.Fatalf("takes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for hdr, want := range map[string]string{
		hdrLimitRequests: "10", hdrRemainingRequests: "9", hdrResetRequests: "6s",
		hdrLimitTokens: "100000", hdrRemainingTokens: itoa(fxTPM - n),
	} {
		if got := h.Get(hdr); got != want {
			t.Errorf("%s = %q, want %q", hdr, got, want)
		}
	}
	if got, want := f.state(), (state{rpm: 1, tpm: n, mrpm: 1, mtpm: n, reserved: est}); got != want {
		t.Fatalf("state after admit %+v, want %+v", got, want)
	}
	// The budget's reservation expires an hour after the end of its window.
	if b := a.holds[0]; b.take.Expires != time.Date(2099, 11, 26, 1, 0, 0, 0, time.UTC) {
		t.Fatalf("budget expires %v", b.take.Expires)
	}
}

func TestAdmitTakesNothingWhenOneRefuses(t *testing.T) {
	order := []string{kBudget, kRPM, kTPM, kConc, mRPM, mTPM}
	wait := ratelimit.Result{RetryAfter: 1500 * time.Millisecond}
	cases := []struct {
		name    string
		key     string
		refuse  ratelimit.Result
		fail    bool
		status  int
		code    string
		message string
	}{
		{"budget spent", kBudget, ratelimit.Result{}, false, 429, "insufficient_quota", "budget of $1 per day is spent"},
		{"key rpm", kRPM, wait, false, 429, "rate_limit_exceeded", "limit 10 requests per minute. Please try again in 2s."},
		{"key tpm", kTPM, wait, false, 429, "rate_limit_exceeded", "limit 100000 tokens per minute"},
		{"key tpm never fits", kTPM, ratelimit.Result{Never: true}, false, 429, "request_too_large_for_limit", "more than the limit of 100000 tokens per minute"},
		{"concurrency", kConc, ratelimit.Result{}, false, 429, "rate_limit_exceeded", "the limit is 1 in flight"},
		{"model rpm", mRPM, wait, false, 429, "rate_limit_exceeded", "limit 20 requests per minute"},
		{"model tpm", mTPM, wait, false, 429, "rate_limit_exceeded", "limit 200000 tokens per minute"},
		{"model tpm never fits", mTPM, ratelimit.Result{Never: true}, false, 429, "request_too_large_for_limit", "limit of 200000 tokens"},
		{"limiter down at budget", kBudget, ratelimit.Result{}, true, 503, "rate_limiter_unavailable", "cannot check rate limits"},
		{"limiter down at concurrency", kConc, ratelimit.Result{}, true, 503, "rate_limiter_unavailable", "cannot check rate limits"},
		{"limiter down at model tpm", mTPM, ratelimit.Result{}, true, 503, "rate_limiter_unavailable", "cannot check rate limits"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			if c.fail {
				f.lim.fail = map[string]bool{c.key: true}
			} else {
				f.lim.refuse = map[string]ratelimit.Result{c.key: c.refuse}
			}
			h := http.Header{}
			a, oe := f.admit(h)
			if a != nil || oe == nil {
				t.Fatal("admitted")
			}
			if oe.Status != c.status || oe.Code != c.code || !strings.Contains(oe.Message, c.message) {
				t.Fatalf("refusal %d %s %q, want %d %s containing %q", oe.Status, oe.Code, oe.Message, c.status, c.code, c.message)
			}
			if c.status == 429 && c.code == "rate_limit_exceeded" && oe.RetryAfter < 1 {
				t.Fatalf("Retry-After %d", oe.RetryAfter)
			}
			calls := f.lim.take()
			at := slices.Index(order, c.key)
			// The holds up to the refused one were decided in one admission,
			// and nothing was given back: nothing was taken.
			if len(calls) != at+1 {
				t.Fatalf("calls %v: want the %d decisions up to the refusal and no undo", calls, at+1)
			}
			for i, call := range calls {
				if strings.Fields(call)[1] != order[i] {
					t.Errorf("call %d %q, want one on %s", i, call, order[i])
				}
			}
			if got := f.state(); got != (state{slotFree: true}) {
				t.Fatalf("state after refusal %+v, want untouched", got)
			}
			// A refusal by the key's RPM still tells the client its limits.
			if c.key == kRPM && !c.fail && (h.Get(hdrLimitRequests) != "10" || h.Get(hdrLimitTokens) != "") {
				t.Fatalf("headers %v", h)
			}
		})
	}
}

// The x-ratelimit-* headers come from the key's RPM and TPM decisions, also
// when one refuses; model totals set none.
func TestAdmitRateHeaders(t *testing.T) {
	f := newFixture(t)
	f.lim.refuse = map[string]ratelimit.Result{kTPM: {Remaining: 7, ResetAfter: 20 * time.Millisecond, RetryAfter: time.Second}}
	h := http.Header{}
	if _, oe := f.admit(h); oe == nil {
		t.Fatal("admitted")
	}
	for hdr, want := range map[string]string{
		hdrLimitRequests: "10", hdrRemainingRequests: "9", hdrLimitTokens: "100000", hdrRemainingTokens: "7", hdrResetTokens: "20ms",
	} {
		if got := h.Get(hdr); got != want {
			t.Errorf("%s = %q, want %q", hdr, got, want)
		}
	}
	f = newFixture(t)
	f.key = nil
	h = http.Header{}
	if _, oe := f.admit(h); oe != nil {
		t.Fatal(oe.Message)
	}
	if len(h) != 0 {
		t.Fatalf("model totals set headers %v", h)
	}
}

func TestFinishSettlesEachOutcome(t *testing.T) {
	known := openai.Usage{InputTokens: 30, OutputTokens: 20, Known: true}
	cases := []struct {
		outcome Outcome
		usage   openai.Usage
		// tokens is what TPM keeps (-1: the whole reservation); spent the
		// budget's spend (-1: the reserved estimate).
		tokens, spent int64
	}{
		{OutcomeCompleted, known, 50, 70},
		{OutcomeCompleted, openai.Usage{}, -1, -1},
		{OutcomeStreamBroken, known, 50, 70},
		{OutcomeStreamBroken, openai.Usage{}, -1, -1},
		{OutcomeClientGone, openai.Usage{}, -1, -1},
		{OutcomeClientGone, known, 50, 70},
		{OutcomeShutdown, openai.Usage{}, 0, 0},
		{OutcomeUpstreamError, openai.Usage{}, 0, 0},
		{OutcomeUpstreamError, known, 0, 0},
		{OutcomeTimeout, openai.Usage{}, 0, 0},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%v/known=%v", c.outcome, c.usage.Known), func(t *testing.T) {
			f := newFixture(t)
			a := f.mustAdmit()
			tokens, spent := c.tokens, c.spent
			if tokens < 0 {
				tokens = a.reserve
			}
			if spent < 0 {
				spent = a.holds[0].take.Amount
			}
			a.finish(context.Background(), c.outcome, &Info{Usage: c.usage, UpstreamModel: "m"})
			// Requests stay counted once admitted; the slot is free whatever
			// the outcome.
			want := state{rpm: 1, mrpm: 1, tpm: tokens, mtpm: tokens, slotFree: true, spent: spent}
			if got := f.state(); got != want {
				t.Fatalf("state %+v, want %+v (calls %v)", got, want, f.lim.take())
			}
			rec, err := f.ledger.Get(context.Background(), "team-a", "2099-11-25")
			if err != nil {
				t.Fatal(err)
			}
			var cost int64
			if c.usage.Known {
				cost = 70
			}
			if want := (usage.Record{Requests: 1, InputTokens: c.usage.InputTokens, OutputTokens: c.usage.OutputTokens, CostMicros: cost}); rec != want {
				t.Fatalf("ledger %+v, want %+v", rec, want)
			}
		})
	}
}

// Usage above the reservation charges the difference: TPM goes into debt and
// the budget books the real cost.
func TestFinishChargesUsageAboveTheReservation(t *testing.T) {
	f := newFixture(t)
	a := f.mustAdmit()
	u := openai.Usage{InputTokens: 1000, OutputTokens: 2000, Known: true}
	a.finish(context.Background(), OutcomeCompleted, &Info{Usage: u, UpstreamModel: "m"})
	want := state{rpm: 1, mrpm: 1, tpm: 3000, mtpm: 3000, slotFree: true, spent: 5000}
	if got := f.state(); got != want {
		t.Fatalf("state %+v, want %+v", got, want)
	}
}

// The concurrency slot is free for the next request however the previous
// one ended.
func TestConcurrencyReleasedForEveryOutcome(t *testing.T) {
	f := newFixture(t)
	f.key.Policy = auth.Policy{Concurrency: 1}
	f.gd.ModelLimits = nil
	for _, o := range []Outcome{OutcomeCompleted, OutcomeUpstreamError, OutcomeTimeout, OutcomeStreamBroken,
		OutcomeClientGone, OutcomeShutdown, OutcomeRefused} {
		a := f.mustAdmit()
		if _, oe := f.admit(nil); oe == nil || oe.Code != "rate_limit_exceeded" {
			t.Fatalf("%v: a second request in flight was admitted", o)
		}
		a.finish(context.Background(), o, &Info{})
		if !f.slotFree() {
			t.Fatalf("%v: slot still held", o)
		}
	}
}

// Undo and settlement reach the backend that decided the take.
func TestSettlementGoesToTheDecidingBackend(t *testing.T) {
	f := newFixture(t)
	f.lim.backend = ratelimit.BackendFallback
	a := f.mustAdmit()
	a.finish(context.Background(), OutcomeUpstreamError, &Info{})
	calls := f.lim.take()
	if len(calls) != 4 { // tpm, model tpm, slot, budget; requests stay counted
		t.Fatalf("calls %v", calls)
	}
	for _, c := range calls {
		if !strings.HasSuffix(c, "@fallback") {
			t.Errorf("%q not sent to the fallback", c)
		}
	}
	f = newFixture(t)
	f.lim.backend = ratelimit.BackendFallback
	f.lim.refuse = map[string]ratelimit.Result{mTPM: {}}
	if _, oe := f.admit(nil); oe == nil {
		t.Fatal("admitted")
	}
	for _, c := range f.lim.take() {
		if !strings.HasPrefix(c, "take") && !strings.HasPrefix(c, "reserve") && !strings.HasPrefix(c, "acquire") && !strings.HasSuffix(c, "@fallback") {
			t.Errorf("undo %q not sent to the fallback", c)
		}
	}
}

func TestSettleFailuresAreLoggedAndDoNotStopTheOthers(t *testing.T) {
	f := newFixture(t)
	a := f.mustAdmit()
	f.lim.fail = map[string]bool{kTPM: true}
	a.finish(context.Background(), OutcomeUpstreamError, &Info{})
	logs := f.logs.FilterMessage("settlement failed").All()
	if len(logs) != 1 || !strings.Contains(fmt.Sprint(logs[0].ContextMap()["error"]), errSpy.Error()) {
		t.Fatalf("logs %v", logs)
	}
	f.lim.fail = nil
	if got := f.state(); got.mtpm != 0 || !got.slotFree || got.reserved != 0 {
		t.Fatalf("the other holds were not settled: %+v", got)
	}
}

func TestAdmitWithoutKey(t *testing.T) {
	t.Run("open gateway without model totals holds nothing", func(t *testing.T) {
		f := newFixture(t)
		f.key, f.gd.ModelLimits = nil, nil
		a := f.mustAdmit()
		if len(a.holds) != 0 {
			t.Fatalf("holds %v", a.holds)
		}
		a.finish(context.Background(), OutcomeCompleted, &Info{Usage: openai.Usage{InputTokens: 5, Known: true}})
		if calls := f.lim.take(); len(calls) != 0 {
			t.Fatalf("calls %v", calls)
		}
	})
	t.Run("model totals apply to anonymous clients", func(t *testing.T) {
		f := newFixture(t)
		f.key = nil
		a := f.mustAdmit()
		if len(a.holds) != 2 {
			t.Fatalf("holds %v", a.holds)
		}
		a.finish(context.Background(), OutcomeCompleted, &Info{Usage: openai.Usage{InputTokens: 5, OutputTokens: 5, Known: true}})
		if got := (state{mrpm: f.used(mRPM, fxModelRPM), mtpm: f.used(mTPM, fxModelTPM)}); got != (state{mrpm: 1, mtpm: 10}) {
			t.Fatalf("model totals %+v", got)
		}
		if rec, _ := f.ledger.Get(context.Background(), "", "2099-11-25"); rec != (usage.Record{}) {
			t.Fatalf("anonymous request booked: %+v", rec)
		}
	})
	t.Run("a key without limits is only booked", func(t *testing.T) {
		f := newFixture(t)
		f.key.Policy, f.gd.ModelLimits = auth.Policy{}, nil
		a := f.mustAdmit()
		a.finish(context.Background(), OutcomeCompleted, &Info{Usage: openai.Usage{InputTokens: 5, Known: true}, UpstreamModel: "m"})
		if calls := f.lim.take(); len(calls) != 0 {
			t.Fatalf("calls %v", calls)
		}
		// A key without a budget is booked in its monthly window.
		if rec, _ := f.ledger.Get(context.Background(), "team-a", "2099-11"); rec.Requests != 1 || rec.CostMicros != 5 {
			t.Fatalf("ledger %+v", rec)
		}
	})
	t.Run("nil admission", func(t *testing.T) {
		var a *admission
		a.finish(context.Background(), OutcomeCompleted, &Info{})
	})
}

// Without max_tokens the guard reserves OutputEstimate for the answer.
func TestAdmitReservesOutputEstimate(t *testing.T) {
	f := newFixture(t)
	f.gd.OutputEstimate = 500
	req := f.request()
	req.MaxTokens = 0
	a, oe := f.gd.admit(context.Background(), http.Header{}, f.key, req, f.route)
	if oe != nil {
		t.Fatal(oe.Message)
	}
	if a.reserve != a.estIn+500 {
		t.Fatalf("reserve %d, estimate %d", a.reserve, a.estIn)
	}
}

// The budget window follows the guard's clock and the key's period.
func TestBudgetWindowFollowsTheClock(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2099, 12, 31, 23, 59, 59, 0, time.UTC)
	f.gd.clock = func() time.Time { return at }
	f.key.Policy.BudgetPeriod = auth.PeriodMonth
	a := f.mustAdmit()
	b := a.holds[0].take
	if b.Window != "2099-12" || b.Expires != time.Date(2100, 1, 1, 1, 0, 0, 0, time.UTC) {
		t.Fatalf("window %q expires %v", b.Window, b.Expires)
	}
	// Settled after midnight, the request still counts in the window it
	// was admitted in.
	at = at.Add(time.Minute)
	a.finish(context.Background(), OutcomeCompleted, &Info{Usage: openai.Usage{InputTokens: 1, Known: true}, UpstreamModel: "m"})
	if rec, _ := f.ledger.Get(context.Background(), "team-a", "2099-12"); rec.Requests != 1 {
		t.Fatalf("ledger %+v", rec)
	}
}

func TestHoldSettlement(t *testing.T) {
	rate := ratelimit.Rate{Limit: 10, Period: time.Minute}
	budget := hold{kind: holdBudget, take: &ratelimit.Op{Kind: ratelimit.OpReserve, Key: "b", Window: "w", Amount: 300}, by: ratelimit.BackendFallback}
	requests := hold{kind: holdRequests, take: &ratelimit.Op{Kind: ratelimit.OpTake, Key: "r", Rate: rate, Amount: 1}}
	tokens := hold{kind: holdTokens, take: &ratelimit.Op{Kind: ratelimit.OpTake, Key: "t", Rate: rate, Amount: 100}}
	slot := hold{kind: holdSlot, take: &ratelimit.Op{Kind: ratelimit.OpAcquire, Key: "c", ID: "id"}}
	known := openai.Usage{InputTokens: 30, OutputTokens: 40, Known: true}
	none := ratelimit.Op{}
	cases := []struct {
		name string
		hd   hold
		e    ending
		want ratelimit.Op
	}{
		{"budget refused", budget, ending{outcome: OutcomeRefused}, ratelimit.Op{Kind: ratelimit.OpSettle, Key: "b", Window: "w", Reserved: 300, By: ratelimit.BackendFallback}},
		{"budget upstream error", budget, ending{outcome: OutcomeUpstreamError, usage: known, cost: 90}, ratelimit.Op{Kind: ratelimit.OpSettle, Key: "b", Window: "w", Reserved: 300, By: ratelimit.BackendFallback}},
		{"budget known", budget, ending{outcome: OutcomeCompleted, usage: known, cost: 90}, ratelimit.Op{Kind: ratelimit.OpSettle, Key: "b", Window: "w", Reserved: 300, Amount: 90, By: ratelimit.BackendFallback}},
		{"budget unknown", budget, ending{outcome: OutcomeStreamBroken}, ratelimit.Op{Kind: ratelimit.OpSettle, Key: "b", Window: "w", Reserved: 300, Amount: 300, By: ratelimit.BackendFallback}},
		{"requests refused", requests, ending{outcome: OutcomeRefused}, ratelimit.Op{Kind: ratelimit.OpRefund, Key: "r", Rate: rate, Amount: 1}},
		{"requests upstream error", requests, ending{outcome: OutcomeUpstreamError}, none},
		{"requests completed", requests, ending{outcome: OutcomeCompleted}, none},
		{"tokens refused", tokens, ending{outcome: OutcomeRefused}, ratelimit.Op{Kind: ratelimit.OpRefund, Key: "t", Rate: rate, Amount: 100}},
		{"tokens timeout", tokens, ending{outcome: OutcomeTimeout}, ratelimit.Op{Kind: ratelimit.OpRefund, Key: "t", Rate: rate, Amount: 100}},
		{"tokens known", tokens, ending{outcome: OutcomeCompleted, usage: known}, ratelimit.Op{Kind: ratelimit.OpRefund, Key: "t", Rate: rate, Amount: 30}},
		{"tokens known exactly", tokens, ending{outcome: OutcomeCompleted, usage: openai.Usage{InputTokens: 60, OutputTokens: 40, Known: true}}, none},
		{"tokens above", tokens, ending{outcome: OutcomeClientGone, usage: openai.Usage{OutputTokens: 150, Known: true}}, ratelimit.Op{Kind: ratelimit.OpRefund, Key: "t", Rate: rate, Amount: -50}},
		{"tokens unknown", tokens, ending{outcome: OutcomeStreamBroken}, none},
		{"tokens shutdown before a byte", tokens, ending{outcome: OutcomeShutdown}, ratelimit.Op{Kind: ratelimit.OpRefund, Key: "t", Rate: rate, Amount: 100}},
		{"slot completed", slot, ending{outcome: OutcomeCompleted}, ratelimit.Op{Kind: ratelimit.OpRelease, Key: "c", ID: "id"}},
		{"slot refused", slot, ending{outcome: OutcomeRefused}, ratelimit.Op{Kind: ratelimit.OpRelease, Key: "c", ID: "id"}},
		{"unknown kind", hold{kind: 99}, ending{}, none},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok := c.hd.settlement(c.e)
			if ok != (c.want != none) || got != c.want {
				t.Fatalf("settlement %+v (%v), want %+v", got, ok, c.want)
			}
		})
	}
}

func TestOutcome(t *testing.T) {
	cases := []struct {
		o        Outcome
		name     string
		answered bool
	}{
		{OutcomeRefused, "refused", false},
		{OutcomeCompleted, "completed", true},
		{OutcomeUpstreamError, "upstream_error", false},
		{OutcomeTimeout, "timeout", false},
		{OutcomeStreamBroken, "stream_broken", true},
		{OutcomeClientGone, "client_gone", true},
		{OutcomeShutdown, "shutdown", false},
	}
	for _, c := range cases {
		if c.o.String() != c.name || c.o.Answered() != c.answered {
			t.Errorf("%d: %q answered=%v, want %q %v", c.o, c.o.String(), c.o.Answered(), c.name, c.answered)
		}
	}
}

// brokenStore is a key store whose lookups fail.
type brokenStore struct{ auth.Store }

func (brokenStore) Lookup(context.Context, auth.Hash) (*auth.Key, error) { return nil, errSpy }

func TestAuthenticate(t *testing.T) {
	store, err := auth.NewMemory([]*auth.Key{{Name: "team-a", Hash: auth.HashSecret("sk-team-a")}}, "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		keys     auth.Store
		required bool
		header   string
		key      string // the key found
		status   int    // the refusal
		code     string
	}{
		{"no store", nil, true, "", "", 0, ""},
		{"known key", store, true, "Bearer sk-team-a", "team-a", 0, ""},
		{"known key on an open gateway", store, false, "Bearer sk-team-a", "team-a", 0, ""},
		{"no key on an open gateway", store, false, "", "", 0, ""},
		{"unknown key on an open gateway", store, false, "Bearer sk-other", "", 0, ""},
		{"no key", store, true, "", "", 401, "invalid_api_key"},
		{"unknown key", store, true, "Bearer sk-other", "", 401, "invalid_api_key"},
		{"store down", brokenStore{}, true, "Bearer sk-team-a", "", 503, "key_store_unavailable"},
		{"store down on an open gateway", brokenStore{}, false, "Bearer sk-team-a", "", 503, "key_store_unavailable"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			gd := &Guard{Keys: c.keys, Required: c.required}
			gd.defaults()
			r, _ := http.NewRequest(http.MethodPost, "/v1/chat/completions", nil)
			if c.header != "" {
				r.Header.Set("Authorization", c.header)
			}
			k, oe := gd.authenticate(r)
			switch {
			case c.status != 0:
				if oe == nil || oe.Status != c.status || oe.Code != c.code {
					t.Fatalf("got %v, want %d %s", oe, c.status, c.code)
				}
			case oe != nil:
				t.Fatalf("refused: %d %s", oe.Status, oe.Code)
			case (k == nil) != (c.key == ""), k != nil && k.Name != c.key:
				t.Fatalf("key %v, want %q", k, c.key)
			}
		})
	}
	var gd *Guard
	if k, oe := gd.authenticate(nil); k != nil || oe != nil {
		t.Fatal("a nil guard authenticates nothing and refuses nothing")
	}
}

func TestPeriodName(t *testing.T) {
	for p, want := range map[string]string{"day": "day", "month": "month", "": "month"} {
		if got := periodName(p); got != want {
			t.Errorf("periodName(%q) = %q, want %q", p, got, want)
		}
	}
}

// A hit's admission takes the key's and the model's RPM only: no budget,
// tokens or concurrency slot, so that it is admitted with those used up.
func TestAdmitHit(t *testing.T) {
	f := newFixture(t)
	f.lim.refuse = map[string]ratelimit.Result{}
	for _, k := range []string{"key:team-a:tpm", "key:team-a:budget", "key:team-a:concurrency", "model:m:tpm"} {
		f.lim.refuse[k] = ratelimit.Result{RetryAfter: time.Second}
	}
	if _, oe := f.admit(nil); oe == nil {
		t.Fatal("a miss was admitted with TPM, budget and concurrency used up")
	}
	a, oe := f.gd.admitAs(context.Background(), http.Header{}, f.key, f.request(), f.route, true)
	if oe != nil {
		t.Fatalf("hit refused: %s %s", oe.Code, oe.Message)
	}
	var what []string
	for _, hd := range a.holds {
		what = append(what, hd.what)
	}
	if strings.Join(what, ",") != "rpm,model rpm" {
		t.Fatalf("a hit holds %v", what)
	}
	a.finish(context.Background(), OutcomeCompleted, &Info{Cache: "hit"})
	f.lim.refuse = map[string]ratelimit.Result{"key:team-a:rpm": {RetryAfter: time.Second}}
	if _, oe := f.gd.admitAs(context.Background(), http.Header{}, f.key, f.request(), f.route, true); oe == nil || oe.Code != "rate_limit_exceeded" {
		t.Fatalf("a hit past the RPM: %v", oe)
	}
}
