// Package quota paces the requests and tokens the gateway sends to a
// provider, or to one of its deployments (a routing target), within the
// quota the provider granted: requests per minute (RPM) and tokens per
// minute (TPM).
//
// A [Pacer] is one quota. In process it is a pair of token buckets from
// golang.org/x/time/rate: an attempt reserves one request and its token
// estimate (ReserveN) and waits out the reservation's delay on the
// request's context when that fits the queue bound, or cancels it and
// reports the delay (the client's Retry-After). With a shared
// ratelimit.Limiter (Redis), the same quota is decided by the limiter's
// GCRA scripts for every gateway instance at once (Limiter.Admit with a
// Take per limit): a refusal's RetryAfter is waited out and the admission
// retried while the queue bound allows. The token estimate is settled to
// the real usage when the request ends (a refund of the difference, or a
// charge when the answer was longer).
//
// A provider's rate-limit headers (OpenAI's x-ratelimit-*, Anthropic's
// anthropic-ratelimit-*) update the pacer's view through [Pacer.Observe]:
// a quota the provider says is spent holds every attempt back until the
// provider's reset.
package quota

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
)

// Limiter is the part of ratelimit.Limiter a shared quota uses.
type Limiter interface {
	Admit(ctx context.Context, ops []ratelimit.Op) (ratelimit.AdmitResult, error)
	Refund(ctx context.Context, key string, rate ratelimit.Rate, n int64, by ratelimit.Backend) error
}

// Limits is a quota: RPM requests and TPM tokens per minute (0: no limit
// of that kind).
type Limits struct {
	RPM, TPM int64
	// Burst is how many requests may go back to back after a quiet spell.
	// Default: RPM/10, at least 1.
	Burst int64
}

// Pacer paces one quota. It is safe for concurrent use.
type Pacer struct {
	// Name identifies the quota in limiter keys and the admin API
	// ("provider:openai", "target:azure/gpt-4o").
	Name   string
	limits Limits

	req, tok *rate.Limiter // in process; nil for a kind without a limit

	shared           Limiter // nil: in process
	prefix           string
	reqRate, tokRate ratelimit.Rate
	reqKey, tokKey   string
	// sharedLeft is the request headroom the last shared decision left,
	// in millionths of the burst (for Headroom without a round trip).
	sharedLeft atomic.Int64

	// What the provider's headers said: spent until blockedUntil (Unix
	// ns); the remaining requests and tokens it reported (-1: unknown).
	blockedUntil    atomic.Int64
	upReq, upTokens atomic.Int64
}

// New returns a pacer for limits; with shared set the quota is decided by
// it (shared by every gateway on the same Redis), under keys beginning with
// keyPrefix+name.
func New(name string, limits Limits, shared Limiter, keyPrefix string) *Pacer {
	if limits.Burst <= 0 {
		limits.Burst = max(1, limits.RPM/10)
	}
	p := &Pacer{Name: name, limits: limits, shared: shared, prefix: keyPrefix}
	p.upReq.Store(-1)
	p.upTokens.Store(-1)
	p.sharedLeft.Store(1e6)
	if limits.RPM > 0 {
		p.req = rate.NewLimiter(rate.Limit(float64(limits.RPM)/60), int(min(limits.Burst, limits.RPM)))
		p.reqRate = ratelimit.Rate{Limit: limits.RPM, Period: time.Minute, Burst: min(limits.Burst, limits.RPM)}
		p.reqKey = keyPrefix + name + ":rpm"
	}
	if limits.TPM > 0 {
		p.tok = rate.NewLimiter(rate.Limit(float64(limits.TPM)/60), int(min(limits.TPM, math.MaxInt32)))
		p.tokRate = ratelimit.Rate{Limit: limits.TPM, Period: time.Minute}
		p.tokKey = keyPrefix + name + ":tpm"
	}
	return p
}

// Limits is the pacer's quota.
func (p *Pacer) Limits() Limits { return p.limits }

// tokens is what of an estimate a reservation takes: never more than the
// bucket holds, so that a large request waits for a full bucket rather
// than never going.
func (p *Pacer) tokens(est int64) int64 {
	if p.limits.TPM == 0 {
		return 0
	}
	return max(0, min(est, p.limits.TPM))
}

// Headroom is the share of the request quota left now, in [0, 1]: the
// lower of the in-process bucket (or the last shared decision) and what
// the provider last reported.
func (p *Pacer) Headroom(now time.Time) float64 {
	if now.UnixNano() < p.blockedUntil.Load() {
		return 0
	}
	h := 1.0
	switch {
	case p.shared != nil:
		h = float64(p.sharedLeft.Load()) / 1e6
	case p.req != nil:
		h = p.req.TokensAt(now) / float64(p.req.Burst())
	}
	if p.tok != nil && p.shared == nil {
		h = min(h, p.tok.TokensAt(now)/float64(p.tok.Burst()))
	}
	return max(0, min(1, h))
}

// Remaining is what is left of the quota now, for the admin API: requests
// and tokens (-1 where there is no limit), and what the provider reported
// last (-1: nothing).
func (p *Pacer) Remaining(now time.Time) (requests, tokens, upstreamRequests, upstreamTokens int64) {
	requests, tokens = -1, -1
	switch {
	case p.shared != nil:
		if p.req != nil {
			requests = int64(float64(p.reqRate.Burst) * float64(p.sharedLeft.Load()) / 1e6)
		}
	default:
		if p.req != nil {
			requests = max(0, int64(p.req.TokensAt(now)))
		}
		if p.tok != nil {
			tokens = max(0, int64(p.tok.TokensAt(now)))
		}
	}
	return requests, tokens, p.upReq.Load(), p.upTokens.Load()
}

// blocked is how long the provider's headers still hold the quota back.
func (p *Pacer) blocked(now time.Time) time.Duration {
	if u := p.blockedUntil.Load(); now.UnixNano() < u {
		return time.Duration(u - now.UnixNano())
	}
	return 0
}

// Observe updates the pacer from the provider's report: remaining
// requests and tokens (-1: not reported) and when each is replenished.
// A spent quota holds every attempt back until its reset; a provider that
// reports less left than the pacer believes lowers the pacer's buckets.
func (p *Pacer) Observe(now time.Time, r Report) {
	remReq, remTok, resetReq, resetTok := r.Requests, r.Tokens, r.ResetRequests, r.ResetTokens
	if remReq >= 0 {
		p.upReq.Store(remReq)
	}
	if remTok >= 0 {
		p.upTokens.Store(remTok)
	}
	var until time.Time
	if remReq == 0 && resetReq > 0 {
		until = now.Add(resetReq)
	}
	if remTok == 0 && resetTok > 0 && now.Add(resetTok).After(until) {
		until = now.Add(resetTok)
	}
	if !until.IsZero() {
		for {
			old := p.blockedUntil.Load()
			if until.UnixNano() <= old || p.blockedUntil.CompareAndSwap(old, until.UnixNano()) {
				break
			}
		}
	}
	if p.shared != nil {
		return
	}
	drain := func(l *rate.Limiter, rem int64) {
		if l == nil || rem < 0 {
			return
		}
		if have := int64(l.TokensAt(now)); have > rem {
			l.ReserveN(now, int(have-rem)) // taken, not waited for
		}
	}
	drain(p.req, remReq)
	drain(p.tok, remTok)
}

// ErrNoHeadroom is returned (wrapped in a *Wait) when a quota has no room
// within the allowed wait.
var ErrNoHeadroom = errors.New("quota: no headroom")

// Wait is the error of an acquisition that would wait longer than allowed:
// After is when the quota has room again (the client's Retry-After).
type Wait struct{ After time.Duration }

func (w *Wait) Error() string { return "quota: no headroom for " + w.After.String() }

// Unwrap makes a *Wait an ErrNoHeadroom.
func (w *Wait) Unwrap() error { return ErrNoHeadroom }

// Grant is what an attempt holds of one or more quotas: one request and
// its token estimate on each. Settle it once with the real usage.
type Grant struct {
	parts  [2]grantPart
	n      int
	tokens int64 // the estimate reserved
}

type grantPart struct {
	p   *Pacer
	tok int64 // tokens reserved on p
	by  ratelimit.Backend
}

// Acquire takes one request and tokens (the estimate) on every pacer of
// ps (at most 2; nil entries are skipped), waiting up to maxWait on ctx for
// room: all of them, or none. It returns a *Wait when the room comes later
// than maxWait (0: do not wait at all), ctx's error when ctx ends first,
// or the shared limiter's error.
func Acquire(ctx context.Context, ps [2]*Pacer, tokens int64, maxWait time.Duration) (*Grant, error) {
	g := &Grant{tokens: tokens}
	for _, p := range ps {
		if p != nil {
			g.parts[g.n] = grantPart{p: p, tok: p.tokens(tokens)}
			g.n++
		}
	}
	if g.n == 0 {
		return g, nil
	}
	if g.parts[0].p.shared != nil {
		return g, g.acquireShared(ctx, maxWait)
	}
	return g, g.acquireLocal(ctx, maxWait)
}

// acquireLocal reserves on the in-process buckets and waits out the
// longest delay, or cancels every reservation when it is beyond maxWait.
func (g *Grant) acquireLocal(ctx context.Context, maxWait time.Duration) error {
	now := time.Now()
	var rs [4]*rate.Reservation
	n := 0
	delay := time.Duration(0)
	for i := range g.n {
		gp := &g.parts[i]
		delay = max(delay, gp.p.blocked(now))
		if gp.p.req != nil {
			rs[n] = gp.p.req.ReserveN(now, 1)
			n++
		}
		if gp.p.tok != nil && gp.tok > 0 {
			rs[n] = gp.p.tok.ReserveN(now, int(gp.tok))
			n++
		}
	}
	for _, r := range rs[:n] {
		delay = max(delay, r.DelayFrom(now))
	}
	cancel := func() {
		for _, r := range rs[:n] {
			r.CancelAt(now)
		}
	}
	if delay > maxWait {
		cancel()
		return &Wait{After: delay}
	}
	if !sleep(ctx, delay) {
		cancel()
		return context.Cause(ctx)
	}
	return nil
}

// acquireShared admits the takes on the shared limiter, waiting out each
// refusal's RetryAfter while maxWait allows.
func (g *Grant) acquireShared(ctx context.Context, maxWait time.Duration) error {
	deadline := time.Now().Add(maxWait)
	var buf [4]ratelimit.Op
	for {
		now := time.Now()
		ops := buf[:0]
		blocked := time.Duration(0)
		for i := range g.n {
			gp := &g.parts[i]
			blocked = max(blocked, gp.p.blocked(now))
			if gp.p.req != nil {
				ops = append(ops, ratelimit.Op{Kind: ratelimit.OpTake, Key: gp.p.reqKey, Rate: gp.p.reqRate, Amount: 1})
			}
			if gp.p.tok != nil && gp.tok > 0 {
				ops = append(ops, ratelimit.Op{Kind: ratelimit.OpTake, Key: gp.p.tokKey, Rate: gp.p.tokRate, Amount: gp.tok})
			}
		}
		wait := blocked
		if blocked == 0 {
			res, err := g.parts[0].p.shared.Admit(ctx, ops)
			if err != nil {
				return err
			}
			g.noteShared(ops, res)
			if res.Allowed() {
				for i := range g.n {
					g.parts[i].by = res.Backend
				}
				return nil
			}
			wait = res.Results[res.Refused].RetryAfter
		}
		if now.Add(wait).After(deadline) {
			return &Wait{After: max(wait, time.Millisecond)}
		}
		if !sleep(ctx, wait) {
			return context.Cause(ctx)
		}
	}
}

// noteShared keeps the request headroom each pacer's decision reported.
func (g *Grant) noteShared(ops []ratelimit.Op, res ratelimit.AdmitResult) {
	for i := range res.Results {
		if i >= len(ops) {
			break
		}
		for j := range g.n {
			p := g.parts[j].p
			if ops[i].Key == p.reqKey && p.reqRate.Burst > 0 {
				p.sharedLeft.Store(res.Results[i].Remaining * 1e6 / p.reqRate.Burst)
				if !res.Allowed() && i == res.Refused {
					p.sharedLeft.Store(0)
				}
			}
		}
	}
}

// Settle gives back the tokens reserved beyond actual (or charges what
// actual exceeds the estimate), on every quota of the grant. A nil or
// empty grant is a no-op.
func (g *Grant) Settle(ctx context.Context, actual int64) {
	if g == nil {
		return
	}
	now := time.Now()
	for i := range g.n {
		gp := &g.parts[i]
		p := gp.p
		if p.tok == nil {
			continue
		}
		back := gp.tok - actual // > 0: a refund; < 0: a charge
		if back == 0 {
			continue
		}
		if p.shared != nil {
			_ = p.shared.Refund(ctx, p.tokKey, p.tokRate, back, gp.by)
			continue
		}
		// A negative reservation puts tokens back (the bucket is capped at
		// its size again on its next read); a positive one is a charge
		// taken at once, which later reservations wait out.
		p.tok.ReserveN(now, int(min(-back, int64(p.tok.Burst()))))
	}
	g.n = 0
}

// sleep waits d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
