package gateway

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/quota"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

// quotaOf is the target's quotas, nil when it has none.
func quotaOf(tg *route.Target) *quota.Target {
	qt, _ := tg.Quota.(*quota.Target)
	return qt
}

// estimate is the tokens an attempt reserves on the TPM quotas: the prompt
// estimate plus max_tokens (or the guard's output estimate).
func (g *Gateway) estimate(req *dialect.Request) int64 {
	out := req.OpenAI.MaxTokens
	if out <= 0 {
		out = 1024
		if g.cfg.Guard != nil {
			out = g.cfg.Guard.OutputEstimate
		}
	}
	return openai.EstimateInputTokens(req.OpenAI) + out
}

// pace readies the attempt on the route's target ti: when ti's quotas
// (provider and target RPM/TPM) have room it returns ti and the grant at
// once; else the first target by the route's policy that has room; when
// none has, it waits for the target whose quota has room soonest, up to
// that target's queue bound and the deadline, and answers 429 with the
// pacer's Retry-After beyond. A target without quotas always has room.
// The grant is settled by the caller (settleGrant).
func (g *Gateway) pace(ctx context.Context, x *Exchange, rt *route.Route, ti int, tried []int, deadline time.Time) (int, *quota.Grant, *openai.Error) {
	qt := quotaOf(&rt.Targets[ti])
	if qt == nil {
		return ti, nil, nil
	}
	tokens := g.estimate(x.Req)
	gr, err := quota.Acquire(ctx, qt.Pacers, tokens, 0)
	if err == nil {
		return ti, gr, nil
	}
	w, ok := err.(*quota.Wait)
	if !ok {
		return ti, nil, paceErr(ctx, err)
	}
	best, soonest := ti, w.After
	var buf [8]int
	skip := append(append(buf[:0], tried...), ti)
	for {
		j := rt.Choose(g.cfg.Health, time.Now(), skip)
		if j < 0 || containsInt(skip, j) {
			break
		}
		qj := quotaOf(&rt.Targets[j])
		if qj == nil {
			return j, nil, nil
		}
		gr, err := quota.Acquire(ctx, qj.Pacers, tokens, 0)
		if err == nil {
			return j, gr, nil
		}
		w, ok := err.(*quota.Wait)
		if !ok {
			return j, nil, paceErr(ctx, err)
		}
		if w.After < soonest {
			best, soonest = j, w.After
		}
		skip = append(skip, j)
	}
	qb := quotaOf(&rt.Targets[best])
	wait := min(qb.Queue, time.Until(deadline))
	gr, err = quota.Acquire(ctx, qb.Pacers, tokens, max(0, wait))
	if err == nil {
		return best, gr, nil
	}
	if w, ok := err.(*quota.Wait); ok {
		return best, nil, quotaExhausted(x.Req.OpenAI.Model, w.After)
	}
	return best, nil, paceErr(ctx, err)
}

// paceErr is the client's error for a failed quota decision: nil when the
// client left (the caller sees ctx done), else 503.
func paceErr(ctx context.Context, err error) *openai.Error {
	if ctx.Err() != nil {
		return nil
	}
	return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "rate_limiter_unavailable",
		Message: "The gateway cannot check the providers' quotas right now. Try again shortly.", RetryAfter: 1}
}

// quotaExhausted is the 429 when every target's quota is spent for longer
// than the queue allows; Retry-After is when the pacer has room again.
func quotaExhausted(model string, after time.Duration) *openai.Error {
	ra := int((after + time.Second - 1) / time.Second)
	return &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit, Code: "provider_quota_exceeded", RetryAfter: max(ra, 1),
		Message: "Every provider serving model `" + model + "` is at its quota; retry in " + strconv.Itoa(max(ra, 1)) + "s."}
}

// grantTap settles the winning attempt's quota grant from the request's
// real usage when it ends.
type grantTap struct {
	gr *quota.Grant
}

func (t grantTap) Event(*dialect.Event, provider.Format)   {}
func (t grantTap) Body(b []byte, _ provider.Format) []byte { return b }
func (t grantTap) End(o Outcome, info *Info) {
	used := info.Usage.InputTokens + info.Usage.OutputTokens
	if !info.Usage.Known && o.Answered() {
		return // spent, amount unknown: the estimate stays charged
	}
	t.gr.Settle(context.Background(), used)
}

// loadTap ends a target's in-flight count when the request ends.
type loadTap struct{ l *route.Load }

func (t loadTap) Event(*dialect.Event, provider.Format)   {}
func (t loadTap) Body(b []byte, _ provider.Format) []byte { return b }
func (t loadTap) End(Outcome, *Info)                      { t.l.End() }

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
