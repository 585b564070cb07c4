package gateway

import (
	"context"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/quota"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

// DefaultHedgeAfter is the hedge delay of a p95 route before its target
// has a time-to-first-token sample.
const DefaultHedgeAfter = time.Second

// attemptTap ends what the winning attempt holds when the request ends:
// its target's in-flight count, its quota grant (settled from the real
// usage) and its context.
type attemptTap struct {
	load   *route.Load
	gr     *quota.Grant
	cancel context.CancelFunc
}

func (t *attemptTap) Event(*dialect.Event, provider.Format)   {}
func (t *attemptTap) Body(b []byte, _ provider.Format) []byte { return b }
func (t *attemptTap) End(o Outcome, info *Info) {
	if t.load != nil {
		t.load.End()
	}
	if t.gr != nil {
		grantTap{t.gr}.End(o, info)
	}
	if t.cancel != nil {
		t.cancel()
	}
}

// hedged is one attempt of a hedged call.
type hedged struct {
	i      int
	reply  Reply
	err    error
	start  time.Time
	gr     *quota.Grant
	cancel context.CancelFunc
	end    func(error) // ends the attempt's span
}

// callTarget makes the attempt on target ti of rt: one call, or, when the
// route hedges (HedgeAfter, HedgeP95), a call that starts the next target
// by the route's policy too whenever no first byte came within the hedge
// delay (up to MaxHedges more), takes the first reply with a first byte
// and cancels the others at once. It returns the reply and the index of
// the target that sent it, or the first target's error (the others'
// failures are recorded in the breaker here).
//
// It keeps the targets' in-flight counts and TTFT averages, and settles
// the quota grants: a loser's and a failure's at once, the winner's when
// the request ends (attemptTap).
func (g *Gateway) callTarget(ctx context.Context, x *Exchange, rt *route.Route, ti int, tried []int, gr *quota.Grant) (*Reply, int, error) {
	hedge := (rt.HedgeAfter > 0 || rt.HedgeP95) && len(rt.Targets) > 1
	if !hedge {
		tg := &rt.Targets[ti]
		model := tg.UpstreamModel(x.Req.OpenAI.Model)
		if tg.Load() == nil && gr == nil {
			actx, end := x.attemptSpan(ctx, tg.Provider, model)
			r, err := g.call(actx, g.cfg.Providers[tg.Provider], x.Req, model, rt, &x.reply)
			end(err)
			return r, ti, err
		}
		h := hedged{i: ti, gr: gr, start: time.Now()}
		actx := ctx
		if qt := quotaOf(tg); qt != nil {
			actx = quota.WithTarget(ctx, qt)
		}
		actx, h.end = x.attemptSpan(actx, tg.Provider, model)
		g.run(actx, x, rt, &h)
		h.end(h.err)
		if h.err != nil {
			return nil, ti, h.err
		}
		x.reply = h.reply
		g.won(x, rt, &h)
		return &x.reply, ti, nil
	}
	return g.hedge(ctx, x, rt, ti, tried, gr)
}

// run makes one attempt into h, keeping its target's load.
func (g *Gateway) run(ctx context.Context, x *Exchange, rt *route.Route, h *hedged) {
	tg := &rt.Targets[h.i]
	l := tg.Load()
	if l != nil {
		l.Begin()
	}
	_, h.err = g.call(ctx, g.cfg.Providers[tg.Provider], x.Req, tg.UpstreamModel(x.Req.OpenAI.Model), rt, &h.reply)
	if h.err != nil {
		if l != nil {
			l.End()
		}
		h.gr.Settle(context.Background(), 0)
		return
	}
	if l != nil {
		l.ObserveTTFT(time.Since(h.start))
	}
}

// won hands the winning attempt's holds to a tap ending them with the
// request.
func (g *Gateway) won(x *Exchange, rt *route.Route, h *hedged) {
	l := rt.Targets[h.i].Load()
	if l == nil && h.gr == nil && h.cancel == nil {
		return
	}
	x.attempt = attemptTap{load: l, gr: h.gr, cancel: h.cancel}
	x.AddTap(&x.attempt)
}

// hedgeDelay is how long the attempt on target i may go without a first
// byte before the next target starts too.
func hedgeDelay(rt *route.Route, i int) time.Duration {
	if rt.HedgeP95 {
		if l := rt.Targets[i].Load(); l != nil {
			if p := l.TTFTP95(); p > 0 {
				return p
			}
		}
		if rt.HedgeAfter > 0 {
			return rt.HedgeAfter
		}
		return DefaultHedgeAfter
	}
	return rt.HedgeAfter
}

func (g *Gateway) hedge(ctx context.Context, x *Exchange, rt *route.Route, ti int, tried []int, gr *quota.Grant) (*Reply, int, error) {
	maxHedges := rt.MaxHedges
	if maxHedges <= 0 {
		maxHedges = 1
	}
	maxHedges = min(maxHedges, len(rt.Targets)-1)
	done := make(chan *hedged, maxHedges+1)
	started := make([]int, 0, maxHedges+1+len(tried))
	started = append(started, tried...)
	running := make([]*hedged, 0, maxHedges+1)
	start := func(i int, gr *quota.Grant) {
		h := &hedged{i: i, gr: gr, start: time.Now()}
		actx, cancel := context.WithCancel(ctx)
		if qt := quotaOf(&rt.Targets[i]); qt != nil {
			actx = quota.WithTarget(actx, qt)
		}
		h.cancel = cancel
		tg := &rt.Targets[i]
		actx, h.end = x.attemptSpan(actx, tg.Provider, tg.UpstreamModel(x.Req.OpenAI.Model))
		started = append(started, i)
		running = append(running, h)
		go func() {
			g.run(actx, x, rt, h)
			done <- h
		}()
	}
	start(ti, gr)
	pending, hedges := 1, 0
	timer := time.NewTimer(hedgeDelay(rt, ti))
	defer timer.Stop()
	var first *hedged // the first target's attempt, when it failed
	for {
		select {
		case h := <-done:
			pending--
			h.end(h.err)
			if h.err == nil {
				g.cancelLosers(rt, running, h, pending, done)
				x.reply = h.reply
				g.won(x, rt, h)
				return &x.reply, h.i, nil
			}
			h.cancel()
			if h.i == ti {
				first = h
			} else {
				g.hedgeFailed(ctx, rt, h)
			}
			if pending == 0 && (hedges == maxHedges || first != nil) {
				if first == nil {
					first = h
				}
				return nil, ti, first.err
			}
		case <-timer.C:
			if hedges == maxHedges {
				continue
			}
			now := time.Now()
			j := rt.Choose(g.cfg.Health, now, started)
			if j < 0 || containsInt(started, j) {
				continue
			}
			var jgr *quota.Grant
			if qt := quotaOf(&rt.Targets[j]); qt != nil {
				var err error
				if jgr, err = quota.Acquire(ctx, qt.Pacers, g.estimate(x.Req), 0); err != nil {
					continue // no headroom now: no hedge on it
				}
			}
			hedges++
			x.Info.Attempts++
			x.Info.Hedges++
			g.cfg.Health.Begin(rt.Targets[j].Key(), now)
			start(j, jgr)
			pending++
			if hedges < maxHedges {
				timer.Reset(hedgeDelay(rt, j))
			}
		case <-ctx.Done():
			g.cancelLosers(rt, running, nil, pending, done)
			return nil, ti, context.Cause(ctx)
		}
	}
}

// cancelLosers cancels the attempts still under way beside the winner
// (nil: all of them) and drains their results in the background: a reply
// that came anyway is closed, and their holds are given back.
func (g *Gateway) cancelLosers(rt *route.Route, running []*hedged, winner *hedged, pending int, done chan *hedged) {
	if pending == 0 {
		return
	}
	for _, h := range running {
		if h != winner {
			h.cancel()
		}
	}
	go func() {
		for range pending {
			h := <-done
			if h.err == nil {
				h.end(context.Canceled)
			} else {
				h.end(h.err)
			}
			if h.err == nil {
				if h.reply.Stream != nil {
					h.reply.Stream.Close()
				}
				if l := rt.Targets[h.i].Load(); l != nil {
					l.End()
				}
				h.gr.Settle(context.Background(), 0)
			}
			g.cfg.Health.Abort(rt.Targets[h.i].Key())
		}
	}()
}

// hedgeFailed records a hedge's failure in the breaker (a cancelled one
// says nothing about its target).
func (g *Gateway) hedgeFailed(ctx context.Context, rt *route.Route, h *hedged) {
	key := rt.Targets[h.i].Key()
	if ctx.Err() != nil {
		g.cfg.Health.Abort(key)
		return
	}
	g.cfg.Health.Failure(key, time.Now(), 0)
}
