package gateway

import (
	"context"
	"errors"
	"math"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
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
	// SettleTimeout bounds the bookkeeping after a request. Default 2s.
	SettleTimeout time.Duration
	Logger        *zap.Logger

	seq atomic.Uint64
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

// admission is what one admitted request holds until it ends.
type admission struct {
	gd      *Guard
	key     *auth.Key
	req     *openai.Request
	route   *route.Route
	start   time.Time
	estIn   int64
	reserve int64 // tokens reserved against TPM limits

	tpm      bool
	tpmRate  ratelimit.Rate
	tpmBy    ratelimit.Backend
	mtpm     bool
	mtpmRate ratelimit.Rate
	mtpmBy   ratelimit.Backend
	conc     bool
	concID   string
	concBy   ratelimit.Backend
	budget   bool
	window   string
	winEnd   time.Time
	reserved int64 // micro-USD reserved against the budget
	budgetBy ratelimit.Backend
	rpm      bool
	rpmRate  ratelimit.Rate
	rpmBy    ratelimit.Backend
	mrpm     bool
	mrpmRate ratelimit.Rate
	mrpmBy   ratelimit.Backend
}

func keyName(k *auth.Key) string { return k.Name }

// admit runs every check in order (budget, RPM, TPM, model RPM/TPM,
// concurrency) and undoes what it took when a later one refuses.
func (gd *Guard) admit(ctx context.Context, h http.Header, k *auth.Key, req *openai.Request, rt *route.Route) (*admission, *openai.Error) {
	a := &admission{gd: gd, key: k, req: req, route: rt, start: time.Now()}
	ml := gd.ModelLimits[rt.Pattern]
	if k == nil && ml.RPM == 0 && ml.TPM == 0 {
		return a, nil
	}
	a.estIn = openai.EstimateInputTokens(req)
	out := req.MaxTokens
	if out <= 0 {
		out = gd.OutputEstimate
	}
	a.reserve = a.estIn + out
	var oerr *openai.Error
	if k != nil {
		oerr = a.admitKey(ctx, h)
	}
	if oerr == nil {
		oerr = a.admitModel(ctx, ml)
	}
	if oerr != nil {
		a.undo()
		return nil, oerr
	}
	return a, nil
}

func (a *admission) admitKey(ctx context.Context, h http.Header) *openai.Error {
	gd, k := a.gd, a.key
	p := &k.Policy
	if p.Budget > 0 {
		limit := int64(math.Round(p.Budget * 1e6))
		a.window, a.winEnd = usage.Window(p.Period(), time.Now())
		price, _ := gd.Pricing.Lookup(a.route.Targets[0].UpstreamModel(a.req.Model), a.req.Model)
		est := price.CostMicros(openai.Usage{InputTokens: a.estIn, OutputTokens: a.reserve - a.estIn})
		res, err := gd.Limiter.Reserve(ctx, LimiterKey(ScopeKey, k.Name, LimitBudget), a.window, limit, est, a.winEnd.Add(time.Hour))
		if oe := limiterErr(gd, err); oe != nil {
			return oe
		}
		if !res.Allowed {
			return &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeInsufficient, Code: "insufficient_quota",
				Message: "You exceeded your current quota: the key's budget of $" + strconv.FormatFloat(p.Budget, 'f', -1, 64) +
					" per " + periodName(p.BudgetPeriod) + " is spent."}
		}
		a.budget, a.reserved, a.budgetBy = true, est, res.Backend
	}
	if p.RPM > 0 {
		a.rpmRate = ratelimit.Rate{Limit: p.RPM, Period: time.Minute, Burst: p.Burst}
		res, err := gd.Limiter.Take(ctx, LimiterKey(ScopeKey, k.Name, LimitRPM), a.rpmRate, 1)
		if oe := limiterErr(gd, err); oe != nil {
			return oe
		}
		setRateHeaders(h, hdrLimitRequests, hdrRemainingRequests, hdrResetRequests, p.RPM, res)
		if !res.Allowed {
			return rateLimited("requests", p.RPM, res)
		}
		a.rpm, a.rpmBy = true, res.Backend
	}
	if p.TPM > 0 {
		a.tpmRate = ratelimit.Rate{Limit: p.TPM, Period: time.Minute}
		res, err := gd.Limiter.Take(ctx, LimiterKey(ScopeKey, k.Name, LimitTPM), a.tpmRate, a.reserve)
		if oe := limiterErr(gd, err); oe != nil {
			return oe
		}
		setRateHeaders(h, hdrLimitTokens, hdrRemainingTokens, hdrResetTokens, p.TPM, res)
		if !res.Allowed {
			if res.Never {
				return neverFits(a.reserve, p.TPM)
			}
			return rateLimited("tokens", p.TPM, res)
		}
		a.tpm, a.tpmBy = true, res.Backend
	}
	if p.Concurrency > 0 {
		a.concID = strconv.FormatUint(gd.seq.Add(1), 36) + "-" + strconv.FormatInt(a.start.UnixNano(), 36)
		res, err := gd.Limiter.Acquire(ctx, LimiterKey(ScopeKey, k.Name, LimitConcurrency), a.concID, p.Concurrency, gd.Lease)
		if oe := limiterErr(gd, err); oe != nil {
			return oe
		}
		if !res.Allowed {
			return &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit, Code: "rate_limit_exceeded",
				Message: "Too many concurrent requests for this key: the limit is " + itoa(p.Concurrency) + " in flight.", RetryAfter: 1}
		}
		a.conc, a.concBy = true, res.Backend
	}
	return nil
}

func (a *admission) admitModel(ctx context.Context, ml ModelLimits) *openai.Error {
	gd := a.gd
	if ml.RPM > 0 {
		a.mrpmRate = ratelimit.Rate{Limit: ml.RPM, Period: time.Minute}
		res, err := gd.Limiter.Take(ctx, LimiterKey(ScopeModel, a.route.Pattern, LimitRPM), a.mrpmRate, 1)
		if oe := limiterErr(gd, err); oe != nil {
			return oe
		}
		if !res.Allowed {
			return rateLimited("requests", ml.RPM, res)
		}
		a.mrpm, a.mrpmBy = true, res.Backend
	}
	if ml.TPM > 0 {
		a.mtpmRate = ratelimit.Rate{Limit: ml.TPM, Period: time.Minute}
		res, err := gd.Limiter.Take(ctx, LimiterKey(ScopeModel, a.route.Pattern, LimitTPM), a.mtpmRate, a.reserve)
		if oe := limiterErr(gd, err); oe != nil {
			return oe
		}
		if !res.Allowed {
			if res.Never {
				return neverFits(a.reserve, ml.TPM)
			}
			return rateLimited("tokens", ml.TPM, res)
		}
		a.mtpm, a.mtpmBy = true, res.Backend
	}
	return nil
}

// undo gives back what a refused admission took.
func (a *admission) undo() {
	ctx, cancel := context.WithTimeout(context.Background(), a.gd.SettleTimeout)
	defer cancel()
	a.settle(ctx, openai.Usage{}, "", false)
	if a.rpm {
		_ = a.gd.Limiter.Refund(ctx, LimiterKey(ScopeKey, a.key.Name, LimitRPM), a.rpmRate, 1, a.rpmBy)
	}
	if a.mrpm {
		_ = a.gd.Limiter.Refund(ctx, LimiterKey(ScopeModel, a.route.Pattern, LimitRPM), a.mrpmRate, 1, a.mrpmBy)
	}
}

// finish settles reservations to the real usage, releases the concurrency
// slot and books the request in the ledger. It runs after the client is
// gone too.
func (a *admission) finish(ctx context.Context, info *Info) {
	if a == nil || (a.key == nil && !a.mtpm && !a.mrpm) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.gd.SettleTimeout)
	defer cancel()
	// A request that got no answer (an error before any upstream byte) is
	// refunded in full; one that was answered, broke mid-stream or was
	// abandoned by its client keeps its reservation unless usage is known.
	served := info.Status == http.StatusOK || info.Status == 599 || info.Status == 499
	a.settle(ctx, info.Usage, info.UpstreamModel, served)
	if a.key == nil || a.gd.Ledger == nil {
		return
	}
	price, _ := a.gd.Pricing.Lookup(info.UpstreamModel, a.req.Model)
	window, end := usage.Window(a.key.Policy.Period(), a.start)
	rec := usage.Record{Requests: 1, InputTokens: info.Usage.InputTokens, OutputTokens: info.Usage.OutputTokens,
		CachedTokens: info.Usage.CachedTokens, CostMicros: price.CostMicros(info.Usage)}
	if err := a.gd.Ledger.Add(ctx, a.key.Name, window, rec, end.Add(24*time.Hour)); err != nil {
		a.gd.Logger.Warn("usage ledger update failed", zap.String("key", a.key.Name), zap.Error(err))
	}
}

// settle converts reservations: TPM refunds the estimate minus real tokens
// (an unknown usage keeps the whole reservation); the budget swaps the
// reserved cost for the real one.
func (a *admission) settle(ctx context.Context, u openai.Usage, upstreamModel string, served bool) {
	gd := a.gd
	refund := a.reserve
	if served {
		if u.Known {
			refund = a.reserve - (u.InputTokens + u.OutputTokens)
		} else {
			refund = 0
		}
	}
	log := func(what string, err error) {
		if err != nil {
			gd.Logger.Warn("limiter settle failed", zap.String("what", what), zap.Error(err))
		}
	}
	if a.tpm && refund != 0 {
		log("tpm", gd.Limiter.Refund(ctx, LimiterKey(ScopeKey, a.key.Name, LimitTPM), a.tpmRate, refund, a.tpmBy))
	}
	if a.mtpm && refund != 0 {
		log("model tpm", gd.Limiter.Refund(ctx, LimiterKey(ScopeModel, a.route.Pattern, LimitTPM), a.mtpmRate, refund, a.mtpmBy))
	}
	if a.conc {
		log("concurrency", gd.Limiter.Release(ctx, LimiterKey(ScopeKey, a.key.Name, LimitConcurrency), a.concID, a.concBy))
	}
	if a.budget {
		var actual int64
		if served {
			price, _ := gd.Pricing.Lookup(upstreamModel, a.req.Model)
			if u.Known {
				actual = price.CostMicros(u)
			} else {
				actual = a.reserved
			}
		}
		log("budget", gd.Limiter.Settle(ctx, LimiterKey(ScopeKey, a.key.Name, LimitBudget), a.window, a.reserved, actual, a.winEnd.Add(time.Hour), a.budgetBy))
	}
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

func setRateHeaders(h http.Header, limitH, remH, resetH string, limit int64, res ratelimit.Result) {
	h.Set(limitH, itoa(limit))
	h.Set(remH, itoa(res.Remaining))
	h.Set(resetH, fmtDuration(res.ResetAfter))
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
