package gateway

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/tokens"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

// OpenAI's rate limit headers.
// https://platform.openai.com/docs/guides/rate-limits#rate-limits-in-headers
const (
	hdrLimitRequests     = "X-Ratelimit-Limit-Requests"
	hdrRemainingRequests = "X-Ratelimit-Remaining-Requests"
	hdrResetRequests     = "X-Ratelimit-Reset-Requests"
	hdrLimitTokens       = "X-Ratelimit-Limit-Tokens"
	hdrRemainingTokens   = "X-Ratelimit-Remaining-Tokens"
	hdrResetTokens       = "X-Ratelimit-Reset-Tokens"
)

// ModelLimits are a model's total limits across all keys.
type ModelLimits struct {
	RPM, TPM int64
}

// Guard enforces gateway keys and their policies: allowed models, requests
// and tokens per minute, concurrency and budgets, plus per-model totals.
// TPM and budgets reserve an estimate before the upstream call and settle
// to the real usage when the answer (or stream) ends.
type Guard struct {
	// Keys is the key store; with no keys at all the gateway is open unless
	// Required is set.
	Keys     auth.Store
	Required bool
	Limiter  ratelimit.Limiter
	Ledger   usage.Ledger
	Pricing  *usage.Pricing
	// ModelLimits by routing table pattern.
	ModelLimits map[string]ModelLimits
	// OutputEstimate is reserved for the answer when a request sets no
	// max_tokens. Default 1024.
	OutputEstimate int64
	// Lease bounds a concurrency slot whose release was lost. Default 15m.
	Lease time.Duration
	// Settlements takes the bookkeeping after a request off the response
	// path (Redis); nil applies it when the request ends.
	Settlements *ratelimit.Queue
	// SettleTimeout bounds the bookkeeping after a request when it is
	// applied by the request. Default 2s.
	SettleTimeout time.Duration
	Logger        *zap.Logger
	// Accounting, when set, books every admitted request once it ended
	// (the usage rollups): its write travels in the request's settlement.
	Accounting func(info *Info) ratelimit.Write

	seq     atomic.Uint64
	clock   func() time.Time // nil: time.Now
	names   limiterKeyCache
	windows [2]atomic.Pointer[budgetWindow] // the last day and month windows
	cal     *tokens.Calibration             // Config.Calibration
}

// budgetWindow is a budget window: its id, start and end.
type budgetWindow struct {
	id         string
	start, end time.Time
}

// window returns usage.Window(period, t), remembering the last window of
// each period so that its id is formatted once per period, not per
// request.
func (gd *Guard) window(period string, t time.Time) (string, time.Time) {
	slot := &gd.windows[0]
	if period == usage.PeriodDay {
		slot = &gd.windows[1]
	}
	if w := slot.Load(); w != nil && !t.Before(w.start) && t.Before(w.end) {
		return w.id, w.end
	}
	id, end := usage.Window(period, t)
	start := end.AddDate(0, -1, 0)
	if period == usage.PeriodDay {
		start = end.AddDate(0, 0, -1)
	}
	slot.Store(&budgetWindow{id: id, start: start, end: end})
	return id, end
}

func (gd *Guard) now() time.Time {
	if gd.clock != nil {
		return gd.clock()
	}
	return time.Now()
}

func (gd *Guard) defaults() {
	if gd.OutputEstimate <= 0 {
		gd.OutputEstimate = 1024
	}
	if gd.Lease <= 0 {
		gd.Lease = 15 * time.Minute
	}
	if gd.SettleTimeout <= 0 {
		gd.SettleTimeout = 2 * time.Second
	}
	if gd.Logger == nil {
		gd.Logger = zap.NewNop()
	}
	if gd.Pricing == nil {
		gd.Pricing = usage.DefaultPricing()
	}
}

var errKeyStore = &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "key_store_unavailable",
	Message: "The gateway cannot verify API keys right now. Try again shortly.", RetryAfter: 1}

// authenticate finds the request's key. On an open gateway (no key declared
// and require_key off) a request without a known key is anonymous (nil, nil);
// a known key still gets its policy.
func (gd *Guard) authenticate(r *http.Request) (*auth.Key, *openai.Error) {
	if gd == nil || gd.Keys == nil {
		return nil, nil
	}
	secret := auth.SecretFromRequest(r.Header)
	if secret == "" {
		if !gd.Required {
			return nil, nil
		}
		return nil, &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeInvalidRequest, Code: "invalid_api_key",
			Message: "You didn't provide an API key. Provide your gateway key in the Authorization header (Bearer), api-key or x-api-key."}
	}
	k, err := gd.Keys.Lookup(r.Context(), auth.HashSecret(secret))
	if err != nil {
		if errors.Is(err, auth.ErrNotFound) {
			if !gd.Required {
				// An open gateway: an unknown key is an anonymous client
				// (the SDKs always send one).
				return nil, nil
			}
			return nil, &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeInvalidRequest, Code: "invalid_api_key",
				Message: "Incorrect API key provided."}
		}
		gd.Logger.Error("key lookup failed", zap.Error(err))
		return nil, errKeyStore
	}
	return k, nil
}

// maxHolds is the most holds a request takes: the key's budget, RPM, TPM
// and concurrency, the model's RPM and TPM.
const maxHolds = 6

// admission is what one admitted request holds until it ends: its holds,
// taken in order. Admissions are recycled (admissionPool) once settled.
type admission struct {
	gd      *Guard
	key     *auth.Key
	req     *openai.Request
	route   *route.Route
	start   time.Time
	estIn   int64
	reserve int64 // tokens reserved against TPM limits
	// hit: a cache hit, which takes requests (RPM) only.
	hit bool

	window    string // the key's budget window of start, once known
	windowEnd time.Time

	holds []hold
	hb    *holdBuf // backs holds; nil while there is none
}

// holdBuf backs an admission's holds and the operations they take
// (holds[i].take is &ops[i]). It is taken with the first hold: a request
// without holds (no key, no model limit) keeps only the admission's few
// words for its life, a stream's too.
type holdBuf struct {
	holds [maxHolds]hold
	ops   [maxHolds]ratelimit.Op
}

var (
	admissionPool = sync.Pool{New: func() any { return new(admission) }}
	holdBufPool   = sync.Pool{New: func() any { return new(holdBuf) }}
)

// release recycles a; nothing may use it after.
func (a *admission) release() {
	if hb := a.hb; hb != nil {
		*hb = holdBuf{}
		holdBufPool.Put(hb)
	}
	*a = admission{}
	admissionPool.Put(a)
}

// admit decides the request's holds (the key's budget, RPM, TPM and
// concurrency, then the model's RPM and TPM) in one limiter admission: all
// are taken, or, when one refuses, none is.
func (gd *Guard) admit(ctx context.Context, h http.Header, k *auth.Key, req *openai.Request, rt *route.Route) (*admission, *openai.Error) {
	return gd.admitAs(ctx, h, k, req, rt, false)
}

// admitAs is admit; hit admits a request a stage answers from what it
// holds (a cache hit): it takes the key's and the model's RPM only, no
// tokens, budget or concurrency slot, so that a key out of tokens or
// budget still gets its cached answers.
func (gd *Guard) admitAs(ctx context.Context, h http.Header, k *auth.Key, req *openai.Request, rt *route.Route, hit bool) (*admission, *openai.Error) {
	a := admissionPool.Get().(*admission)
	a.gd, a.key, a.req, a.route, a.start, a.hit = gd, k, req, rt, gd.now(), hit
	ml := gd.ModelLimits[rt.Pattern]
	if k == nil && ml.RPM == 0 && ml.TPM == 0 {
		return a, nil
	}
	if hit {
		a.plan(ml)
		return gd.decide(ctx, h, a)
	}
	upstream := rt.Targets[0].UpstreamModel(req.Model)
	a.estIn = tokens.Input(req, upstream, ml.TPM > 0 || k != nil && (k.Policy.TPM > 0 || k.Policy.Budget > 0), gd.cal.Lookup(upstream, rt.Pattern))
	out := req.MaxTokens
	if out <= 0 {
		out = gd.OutputEstimate
	}
	a.reserve = a.estIn + out
	a.plan(ml)
	return gd.decide(ctx, h, a)
}

// decide takes a's planned holds in one limiter admission.
func (gd *Guard) decide(ctx context.Context, h http.Header, a *admission) (*admission, *openai.Error) {
	if len(a.holds) == 0 {
		return a, nil
	}
	res, err := gd.Limiter.Admit(ctx, a.hb.ops[:len(a.holds)])
	if oe := limiterErr(gd, err); oe != nil {
		a.release()
		return nil, oe
	}
	var rh rateHeaders
	for i, r := range res.Results {
		hd := &a.holds[i]
		if hd.headers {
			rh.add(hd, r)
		}
		hd.by = r.Backend
	}
	rh.set(h)
	if !res.Allowed() {
		hd := &a.holds[res.Refused]
		gd.Logger.Debug("admission refused", zap.String("limit", hd.what))
		oe := a.refusal(hd, res.Results[res.Refused])
		a.release()
		return nil, oe
	}
	return a, nil
}

// add appends a hold taking op.
func (a *admission) add(hd hold, op ratelimit.Op) {
	if a.hb == nil {
		a.hb = holdBufPool.Get().(*holdBuf)
		a.holds = a.hb.holds[:0]
	}
	i := len(a.holds)
	a.hb.ops[i] = op
	hd.take = &a.hb.ops[i]
	a.holds = append(a.holds, hd)
}

// budgetWindow returns the key's budget window of the admission's start.
func (a *admission) budgetWindow() (string, time.Time) {
	if a.window == "" {
		a.window, a.windowEnd = a.gd.window(a.key.Policy.Period(), a.start)
	}
	return a.window, a.windowEnd
}

// plan lists the holds the key's policy and the model's limits call for.
func (a *admission) plan(ml ModelLimits) {
	gd := a.gd
	if k := a.key; k != nil {
		p := &k.Policy
		names := gd.limiterKeys(ScopeKey, k.Name)
		if p.Budget > 0 && !a.hit {
			window, end := a.budgetWindow()
			price, _ := gd.Pricing.Lookup(a.route.Targets[0].UpstreamModel(a.req.Model), a.req.Model)
			est := price.CostMicros(openai.Usage{InputTokens: a.estIn, OutputTokens: a.reserve - a.estIn})
			a.add(hold{kind: holdBudget, what: "budget"}, ratelimit.Op{
				Kind: ratelimit.OpReserve, Key: names.budget,
				Window: window, Limit: int64(math.Round(p.Budget * 1e6)), Amount: est, Expires: end.Add(time.Hour)})
		}
		if p.RPM > 0 {
			a.add(hold{kind: holdRequests, what: "rpm", headers: true}, ratelimit.Op{
				Kind: ratelimit.OpTake, Key: names.rpm,
				Rate: ratelimit.Rate{Limit: p.RPM, Period: time.Minute, Burst: p.Burst}, Amount: 1})
		}
		if p.TPM > 0 && !a.hit {
			a.add(hold{kind: holdTokens, what: "tpm", headers: true}, ratelimit.Op{
				Kind: ratelimit.OpTake, Key: names.tpm,
				Rate: ratelimit.Rate{Limit: p.TPM, Period: time.Minute}, Amount: a.reserve})
		}
		if p.Concurrency > 0 && !a.hit {
			a.add(hold{kind: holdSlot, what: "concurrency"}, ratelimit.Op{
				Kind: ratelimit.OpAcquire, Key: names.concurrency,
				ID: gd.slotID(a.start), Slots: p.Concurrency, Lease: gd.Lease})
		}
	}
	if ml.RPM > 0 || ml.TPM > 0 {
		names := gd.limiterKeys(ScopeModel, a.route.Pattern)
		if ml.RPM > 0 {
			a.add(hold{kind: holdRequests, what: "model rpm"}, ratelimit.Op{
				Kind: ratelimit.OpTake, Key: names.rpm,
				Rate: ratelimit.Rate{Limit: ml.RPM, Period: time.Minute}, Amount: 1})
		}
		if ml.TPM > 0 && !a.hit {
			a.add(hold{kind: holdTokens, what: "model tpm"}, ratelimit.Op{
				Kind: ratelimit.OpTake, Key: names.tpm,
				Rate: ratelimit.Rate{Limit: ml.TPM, Period: time.Minute}, Amount: a.reserve})
		}
	}
}

// slotID is a concurrency slot's id, unique per request: a sequence
// number and the admission's start.
func (gd *Guard) slotID(start time.Time) string {
	var b [32]byte
	id := strconv.AppendUint(b[:0], gd.seq.Add(1), 36)
	id = append(id, '-')
	id = strconv.AppendInt(id, start.UnixNano(), 36)
	return string(id)
}

// refusal is the client's error when hd was refused.
func (a *admission) refusal(hd *hold, res ratelimit.Result) *openai.Error {
	switch hd.kind {
	case holdBudget:
		p := &a.key.Policy
		return &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeInsufficient, Code: "insufficient_quota",
			Message: "You exceeded your current quota: the key's budget of $" + strconv.FormatFloat(p.Budget, 'f', -1, 64) +
				" per " + periodName(p.BudgetPeriod) + " is spent."}
	case holdSlot:
		return &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit, Code: "rate_limit_exceeded",
			Message: "Too many concurrent requests for this key: the limit is " + itoa(hd.take.Slots) + " in flight.", RetryAfter: 1}
	case holdTokens:
		if res.Never {
			return neverFits(hd.take.Amount, hd.take.Rate.Limit)
		}
		return rateLimited("tokens", hd.take.Rate.Limit, res)
	}
	return rateLimited("requests", hd.take.Rate.Limit, res)
}

// finish settles every hold from how the request ended and its real usage
// (releasing the concurrency slot whatever the outcome) and books the
// request in the ledger, as one settlement: queued (Redis: one script in a
// pipeline, off the response path) or applied at once. It runs after the
// client is gone too, and recycles a.
func (a *admission) finish(ctx context.Context, o Outcome, info *Info) {
	if a == nil || a.gd == nil {
		return
	}
	defer a.release()
	var acct ratelimit.Write
	if a.gd.Accounting != nil {
		acct = a.gd.Accounting(info)
	}
	if a.key == nil && len(a.holds) == 0 && acct == nil {
		return
	}
	e := ending{outcome: o, usage: info.Usage}
	// A cache hit spent no tokens: it counts toward RPM, not TPM or spend.
	hit := info.Cache == "hit" || info.Cache == "semantic-hit"
	if hit {
		e.usage = openai.Usage{Known: true}
	}
	var saved int64
	if a.key != nil {
		price, _ := a.gd.Pricing.Lookup(info.UpstreamModel, a.req.Model)
		e.cost = price.CostMicros(e.usage)
		if hit {
			saved = price.CostMicros(info.CacheSaved)
		}
	}
	var buf [maxHolds]ratelimit.Op
	ops := buf[:0]
	for i := len(a.holds) - 1; i >= 0; i-- {
		if op, ok := a.holds[i].settlement(e); ok {
			ops = append(ops, op)
		}
	}
	var rec usage.Entry // Ledger nil: no record
	if a.key != nil && a.gd.Ledger != nil {
		window, end := a.budgetWindow()
		rec = usage.Entry{Ledger: a.gd.Ledger, Key: a.key.Name, Window: window, Expires: end.Add(24 * time.Hour),
			Record: usage.Record{Requests: 1, InputTokens: e.usage.InputTokens, OutputTokens: e.usage.OutputTokens,
				CachedTokens: e.usage.CachedTokens, CostMicros: e.cost,
				CacheHits: b2i(hit), SavedTokens: info.CacheSaved.InputTokens + info.CacheSaved.OutputTokens, SavedMicros: saved}}
	}
	if a.gd.Settlements == nil && !ratelimit.Batches(a.gd.Limiter) {
		a.gd.settleNow(ctx, ops, &rec, acct)
		return
	}
	a.gd.settleLater(ctx, ops, rec, acct)
}

// settleNow applies a settlement on a limiter that decides in process.
func (gd *Guard) settleNow(ctx context.Context, ops []ratelimit.Op, rec *usage.Entry, acct ratelimit.Write) {
	ctx = context.WithoutCancel(ctx)
	for i := range ops {
		if _, err := ops[i].Do(ctx, gd.Limiter); err != nil {
			gd.Logger.Warn("settlement failed", zap.Error(err))
		}
	}
	if rec.Ledger != nil {
		if err := rec.Ledger.Add(ctx, rec.Key, rec.Window, rec.Record, rec.Expires); err != nil {
			gd.Logger.Warn("usage record failed", zap.Error(err))
		}
	}
	if acct != nil {
		if err := acct.Do(ctx); err != nil {
			gd.Logger.Warn("usage rollup failed", zap.Error(err))
		}
	}
}

// settleLater hands a settlement to the queue (Redis: batched with
// others), or, without one, sends it in one pipeline now.
func (gd *Guard) settleLater(ctx context.Context, ops []ratelimit.Op, rec usage.Entry, acct ratelimit.Write) {
	s := ratelimit.Settlement{Ops: slices.Clone(ops)}
	if rec.Ledger != nil {
		s.Writes = []ratelimit.Write{&rec}
	}
	if acct != nil {
		s.Writes = append(s.Writes, acct)
	}
	if q := gd.Settlements; q != nil {
		q.Settle(ctx, s)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), gd.SettleTimeout)
	defer cancel()
	if _, err := ratelimit.Apply(ctx, gd.Limiter, []ratelimit.Settlement{s}); err != nil {
		gd.Logger.Warn("settlement failed", zap.Error(err))
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func limiterErr(gd *Guard, err error) *openai.Error {
	if err == nil {
		return nil
	}
	gd.Logger.Error("rate limiter unavailable", zap.Error(err))
	return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "rate_limiter_unavailable",
		Message: "The gateway cannot check rate limits right now. Try again shortly.", RetryAfter: 1}
}

func rateLimited(unit string, limit int64, res ratelimit.Result) *openai.Error {
	ra := int((res.RetryAfter + time.Second - 1) / time.Second)
	if ra < 1 {
		ra = 1
	}
	return &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit, Code: "rate_limit_exceeded", RetryAfter: ra,
		Message: "Rate limit reached: limit " + itoa(limit) + " " + unit + " per minute. Please try again in " + fmtDuration(res.RetryAfter) + "."}
}

func neverFits(need, limit int64) *openai.Error {
	return &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit, Code: "request_too_large_for_limit",
		Message: "This request can never be admitted: it reserves about " + itoa(need) + " tokens (prompt estimate plus max_tokens), more than the limit of " +
			itoa(limit) + " tokens per minute. Lower max_tokens or shorten the prompt."}
}

// fmtDuration renders durations the way OpenAI's reset headers do ("1s",
// "6m0s", "20ms").
func fmtDuration(d time.Duration) string {
	if d <= 0 {
		return "0s"
	}
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func periodName(p string) string {
	if p == "day" {
		return "day"
	}
	return "month"
}
