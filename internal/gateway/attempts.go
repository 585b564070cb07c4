package gateway

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

// attempt runs the attempt loop: the route's targets with retries (backoff
// with full jitter, or the upstream's Retry-After), then each fallback model
// in order, skipping targets whose circuit breaker is open. It returns the
// first reply whose first byte arrived, or, when none did, the outcome and
// the error for the client (nil when the client left).
//
// Nothing after a first byte is retried: the reply is then the client's.
// A provider speaking the client's own format is sent the client's request
// (provider.NativeProvider); every other is sent the OpenAI view.
func (g *Gateway) attempt(x *Exchange) (*Reply, Outcome, *openai.Error) {
	ctx := x.Context()
	req, info := x.Req, x.Info
	deadline := x.start.Add(g.cfg.Deadline)
	var (
		lastErr   *provider.Error
		lastKey   string
		retryWait time.Duration
		tried     []int
		seen      = []*route.Route{x.Route}
	)
	gone := func() (*Reply, Outcome, *openai.Error) {
		info.Status = 499 // client closed the request (or the drain ended it)
		if errors.Is(context.Cause(ctx), ErrShuttingDown) {
			return nil, OutcomeShutdown, errShuttingDown()
		}
		return nil, OutcomeClientGone, nil
	}
	chain := []*route.Route{x.Route}
	for i := 0; i < len(chain); i++ {
		cur := chain[i]
		tried = tried[:0]
		for try := 0; try <= cur.Retries; try++ {
			now := time.Now()
			ti := cur.Choose(g.cfg.Health, now, tried)
			if ti < 0 {
				break
			}
			tgt := &cur.Targets[ti]
			key := tgt.Key()
			if try > 0 {
				wait := g.backoff(try)
				if key == lastKey && retryWait > 0 {
					wait = retryWait
				}
				if now.Add(wait).After(deadline) {
					break
				}
				if !sleep(ctx, wait) {
					return gone()
				}
				now = time.Now()
			} else if now.After(deadline) {
				break
			}
			// Quotas may move the attempt to a target with headroom, or wait.
			ti, gr, qerr := g.pace(ctx, x, cur, ti, tried, deadline)
			if ctx.Err() != nil {
				return gone()
			}
			if qerr != nil {
				info.Limited = qerr.Code
				return nil, OutcomeRefused, qerr
			}
			tgt = &cur.Targets[ti]
			key = tgt.Key()
			info.Attempts++
			info.Provider, info.UpstreamModel = tgt.Provider, tgt.UpstreamModel(req.OpenAI.Model)
			g.cfg.Health.Begin(key, now)
			reply, won, err := g.callTarget(ctx, x, cur, ti, tried, gr)
			if won != ti { // a hedge answered first
				tgt = &cur.Targets[won]
				key = tgt.Key()
				info.Provider, info.UpstreamModel = tgt.Provider, tgt.UpstreamModel(req.OpenAI.Model)
			}
			if err == nil {
				g.cfg.Health.Success(key)
				return reply, OutcomeCompleted, nil
			}
			if ctx.Err() != nil {
				g.cfg.Health.Abort(key)
				return gone()
			}
			pe, ok := err.(*provider.Error)
			if !ok {
				pe = &provider.Error{Provider: tgt.Provider, Kind: provider.KindConnect}
			}
			g.cfg.Redactor.Error(pe) // upstream text may echo our credentials
			lastErr, lastKey, retryWait = pe, key, 0
			cause := zap.Skip()
			if pe.Cause != "" {
				cause = zap.String("cause", pe.Cause)
			}
			g.log.Warn("upstream attempt failed",
				zap.String("model", req.OpenAI.Model), zap.String("provider", tgt.Provider),
				zap.String("upstream_model", info.UpstreamModel), zap.Int("attempt", info.Attempts),
				zap.Int("status", pe.Status), zap.Error(pe), cause)
			if !pe.Retryable() {
				if pe.Kind == provider.KindStatus {
					g.cfg.Health.Success(key) // it answered: the target is up
				} else {
					g.cfg.Health.Abort(key)
				}
				return nil, failedOutcome(pe), pe.ClientError()
			}
			var coolFor time.Duration
			if pe.RetryAfter > 0 {
				if pe.RetryAfter <= g.cfg.MaxRetryAfter {
					retryWait = pe.RetryAfter
				} else {
					coolFor = pe.RetryAfter
				}
			}
			g.cfg.Health.Failure(key, now, coolFor)
			tried = append(tried, ti)
		}
		for _, fb := range cur.Fallbacks {
			// A fallback the key (or this route) may not use is skipped.
			next, ok := g.cfg.Routes.Lookup(fb)
			if ok && !containsRoute(seen, next) && g.allowed(x.Key, fb) {
				seen = append(seen, next)
				chain = append(chain, next)
			}
		}
	}
	if lastErr == nil {
		if time.Now().After(deadline) {
			return nil, OutcomeTimeout, &openai.Error{Status: http.StatusGatewayTimeout, Type: openai.TypeTimeout, Code: "upstream_timeout",
				Message: "No upstream answered model `" + req.OpenAI.Model + "` before the gateway's deadline."}
		}
		return nil, OutcomeUpstreamError, &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeUpstream, Code: "upstream_unavailable",
			Message:    "No upstream is available for model `" + req.OpenAI.Model + "`: every target is cooling down after failures. Try again shortly.",
			RetryAfter: 1}
	}
	return nil, failedOutcome(lastErr), lastErr.ClientError()
}

// failedOutcome is the outcome of attempts that ended with pe.
func failedOutcome(pe *provider.Error) Outcome {
	if pe.Kind == provider.KindTimeout {
		return OutcomeTimeout
	}
	return OutcomeUpstreamError
}

// call makes one attempt against p and, for a stream, reads its first
// event: a reply (written to reply) only counts once its first byte is in.
func (g *Gateway) call(ctx context.Context, p provider.Provider, req *dialect.Request, model string, rt *route.Route, reply *Reply) (*Reply, error) {
	var (
		resp *provider.Response
		err  error
	)
	if np, ok := p.(provider.NativeProvider); ok && req.Native != nil && np.Speaks(req.Format) {
		resp, err = np.DoNative(ctx, &provider.NativeCall{Format: req.Format, Body: req.Native, Model: model,
			Stream: req.OpenAI.Stream, Header: req.Header})
	} else if pe := refuseBetas(p, req); pe != nil {
		return nil, pe
	} else {
		call := &provider.Call{Req: req.OpenAI, Model: model, MaxTokens: rt.MaxTokens}
		if len(req.Header) > 0 && speaks(p, req.Format) {
			call.Header = req.Header
		}
		resp, err = p.Do(ctx, call)
	}
	if err != nil {
		return nil, err
	}
	*reply = Reply{Format: resp.Format, Body: resp.Body, Usage: resp.Usage, Stream: resp.Stream}
	if resp.Stream == nil {
		return reply, nil
	}
	first, err := resp.Stream.Next()
	if err != nil {
		resp.Stream.Close()
		if err == io.EOF {
			err = &provider.Error{Provider: p.Name(), Kind: provider.KindProtocol, Message: "empty stream"}
		}
		return nil, err
	}
	reply.First = first
	return reply, nil
}

// refuseBetas answers 400 unsupported_parameter for what of the client's
// request only its own format carries — beta headers (anthropic-beta,
// OpenAI-Beta) and members such as Anthropic's top_k — when p does not
// speak the client's format (it translates the request and cannot honour
// them), unless p drops what it cannot honour (drop_unsupported_params).
func refuseBetas(p provider.Provider, req *dialect.Request) *provider.Error {
	if len(req.Header) == 0 && len(req.Unsupported) == 0 || speaks(p, req.Format) {
		return nil
	}
	if d, ok := p.(provider.UnsupportedDropper); ok && d.DropsUnsupported() {
		return nil
	}
	unsupported := func(param, what string) *provider.Error {
		return &provider.Error{Provider: p.Name(), Kind: provider.KindStatus, Status: http.StatusBadRequest,
			Type: openai.TypeInvalidRequest, Code: "unsupported_parameter", Param: param,
			Message: what + " is not supported by provider \"" + p.Name() + "\", which translates the request; its drop_unsupported_params option drops it instead."}
	}
	if len(req.Unsupported) > 0 {
		m := req.Unsupported[0]
		return unsupported(m, "The parameter "+m)
	}
	for k := range req.Header {
		if strings.HasSuffix(k, "-Beta") {
			name := strings.ToLower(k)
			return unsupported(name, "The "+name+" header")
		}
	}
	return nil
}

func speaks(p provider.Provider, f provider.Format) bool {
	s, ok := p.(provider.Speaker)
	return ok && s.Speaks(f)
}

func containsRoute(rs []*route.Route, r *route.Route) bool {
	for _, x := range rs {
		if x == r {
			return true
		}
	}
	return false
}

// backoff is exponential with full jitter: uniform in [0, min(max, base·2^(try-1))].
func (g *Gateway) backoff(try int) time.Duration {
	d := g.cfg.RetryBackoff << min(try-1, 20)
	if d <= 0 || d > g.cfg.MaxBackoff {
		d = g.cfg.MaxBackoff
	}
	return rand.N(d + 1)
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
