package gateway

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/anthropic"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

// proxy runs the attempt loop: the route's targets with retries, then each
// fallback model in order. Nothing is retried once a byte went to the client.
// native is the client's body for /v1/messages, passed untranslated to
// providers that speak the Messages API.
func (g *Gateway) proxy(w http.ResponseWriter, r *http.Request, gwKey *auth.Key, req *openai.Request, native []byte, rt *route.Route, info *Info) {
	ctx := r.Context()
	start := time.Now()
	deadline := start.Add(g.cfg.Deadline)
	var (
		lastErr   *provider.Error
		lastKey   string
		retryWait time.Duration
		tried     []int
		seen      = []*route.Route{rt}
	)
	chain := []*route.Route{rt}
	for i := 0; i < len(chain); i++ {
		cur := chain[i]
		tried = tried[:0]
		for try := 0; try <= cur.Retries; try++ {
			now := time.Now()
			ti := cur.Pick(g.cfg.Health, now, tried)
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
					info.Status = 499
					return
				}
				now = time.Now()
			} else if now.After(deadline) {
				break
			}
			p := g.cfg.Providers[tgt.Provider]
			info.Attempts++
			info.Provider, info.UpstreamModel = tgt.Provider, tgt.UpstreamModel(req.Model)
			g.cfg.Health.Begin(key, now)
			var (
				resp *provider.Response
				err  error
			)
			mp, isNative := p.(provider.MessagesProvider)
			isNative = isNative && native != nil
			if isNative {
				resp, err = mp.Messages(ctx, native, info.UpstreamModel, req.Stream)
			} else {
				resp, err = p.Do(ctx, &provider.Call{Req: req, Model: info.UpstreamModel, MaxTokens: cur.MaxTokens})
			}
			if err == nil {
				if resp.Stream == nil {
					g.cfg.Health.Success(key)
					g.serveBody(w, resp.Body, info, start, isNative)
					return
				}
				first, ferr := resp.Stream.Next()
				if ferr == nil {
					g.cfg.Health.Success(key)
					g.serveStream(w, req, resp.Stream, first, info, start, isNative)
					return
				}
				resp.Stream.Close()
				err = ferr
				if err == io.EOF {
					err = &provider.Error{Provider: tgt.Provider, Kind: provider.KindProtocol, Message: "empty stream"}
				}
			}
			if ctx.Err() != nil {
				g.cfg.Health.Abort(key)
				info.Status = 499 // client closed the request
				return
			}
			pe, ok := err.(*provider.Error)
			if !ok {
				pe = &provider.Error{Provider: tgt.Provider, Kind: provider.KindConnect}
			}
			g.cfg.Redactor.Error(pe) // upstream text may echo our credentials
			lastErr, lastKey, retryWait = pe, key, 0
			g.log.Warn("upstream attempt failed",
				zap.String("model", req.Model), zap.String("provider", tgt.Provider),
				zap.String("upstream_model", info.UpstreamModel), zap.Int("attempt", info.Attempts),
				zap.Int("status", pe.Status), zap.Error(pe))
			if !pe.Retryable() {
				if pe.Kind == provider.KindStatus {
					g.cfg.Health.Success(key) // it answered: the target is up
				} else {
					g.cfg.Health.Abort(key)
				}
				g.fail(w, info, pe.ClientError())
				return
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
			if ok && !containsRoute(seen, next) && g.allowed(gwKey, fb) {
				seen = append(seen, next)
				chain = append(chain, next)
			}
		}
	}
	if lastErr == nil {
		g.fail(w, info, &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeUpstream, Code: "upstream_unavailable",
			Message:    "No upstream is available for model `" + req.Model + "`: every target is cooling down after failures. Try again shortly.",
			RetryAfter: 1})
		return
	}
	g.fail(w, info, lastErr.ClientError())
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

func (g *Gateway) setHeaders(h http.Header, info *Info) {
	if info.Provider != "" {
		h.Set(HeaderProvider, info.Provider)
		h.Set(HeaderModel, info.UpstreamModel)
	}
	if info.Attempts > 0 {
		h.Set(HeaderAttempts, strconv.Itoa(info.Attempts))
	}
}

func (g *Gateway) fail(w http.ResponseWriter, info *Info, e *openai.Error) {
	g.setHeaders(w.Header(), info)
	fail(w, info, e)
}

func (g *Gateway) serveBody(w http.ResponseWriter, body []byte, info *Info, start time.Time, native bool) {
	info.TTFT = time.Since(start)
	switch {
	case native:
		info.Usage = anthropic.UsageOf(openai.GetInPlace(body, "usage"))
	case info.Format == FormatAnthropic:
		info.Usage = openai.UsageOf(body)
		out, err := anthropic.ResponseFromOpenAI(body)
		if err != nil {
			g.fail(w, info, &openai.Error{Status: http.StatusBadGateway, Type: openai.TypeUpstream, Code: "upstream_invalid_response",
				Message: "The upstream answer could not be translated."})
			return
		}
		body = out
	default:
		info.Usage = openai.UsageOf(body)
	}
	info.Status = http.StatusOK
	h := w.Header()
	g.setHeaders(h, info)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
