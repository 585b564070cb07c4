package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// Exchange is one request on its way through the pipeline, from its
// dialect's parse to the end of its reply. Stages read and change it; taps
// are added to it.
type Exchange struct {
	// Req is the parsed request. A stage may replace Req.OpenAI (a
	// rewritten prompt) before the attempt loop.
	Req *dialect.Request
	// Key is the gateway key, nil on an open gateway.
	Key *auth.Key
	// Route is the routing table entry of the requested model.
	Route *route.Route
	// Info is filled for placeholders, logs and metrics.
	Info *Info

	g     *Gateway
	w     http.ResponseWriter
	r     *http.Request
	d     dialect.Dialect
	start time.Time

	usage  usageTap
	taps   []Tap
	tapBuf [4]Tap
	ended  bool
	// Storage of the request's parts, so that a request costs one
	// allocation for all of them.
	req   dialect.Request
	reply Reply
	ev    dialect.Event
	rel   dialect.Event // an event a Releaser released
	// attempt is the winning attempt's holds (hedge.go).
	attempt attemptTap

	// onReply, set by a stage, sees the attempt loop's reply first.
	onReply func(*Reply) *Reply

	// Peeked is what a Peeker's Peek left for its Run (the request's
	// cache key and the entry found).
	Peeked any
}

// Context is the request's context (the drain's for a stream it may end).
func (x *Exchange) Context() context.Context { return x.r.Context() }

// Header is the response header, for stages that answer with headers of
// their own (rate limits).
func (x *Exchange) Header() http.Header { return x.w.Header() }

// RequestHeader is the client's request header (Cache-Control).
func (x *Exchange) RequestHeader() http.Header { return x.r.Header }

// SetContext makes ctx the context of the attempts and the reply from now
// on: a stage whose request others wait for (a response cache's
// coalescing leader) lets the upstream call outlive its own client.
func (x *Exchange) SetContext(ctx context.Context) { x.r = x.r.WithContext(ctx) }

// OnReply makes f see the attempt loop's reply before it is served, and
// serve what f returns (a coalescing leader shares its stream with the
// requests waiting for it).
func (x *Exchange) OnReply(f func(*Reply) *Reply) { x.onReply = f }

// AddTap adds t to the taps of the reply, after those added before.
func (x *Exchange) AddTap(t Tap) { x.taps = append(x.taps, t) }

// PrependTap adds t right after the gateway's usage accounting, before the
// taps added so far (a restorer of masked values runs before the taps of
// earlier stages, which then see the answer the client gets).
func (x *Exchange) PrependTap(t Tap) {
	x.taps = append(x.taps, nil)
	copy(x.taps[2:], x.taps[1:])
	x.taps[1] = t
}

// end tells every tap the outcome, once.
func (x *Exchange) end(o Outcome) {
	if x.ended {
		return
	}
	x.ended = true
	x.Info.Outcome = o
	x.calibrate(o)
	for _, t := range x.taps {
		t.End(o, x.Info)
	}
}

// Stage is one step between the dialect's parse and the attempt loop; the
// gateway runs its admission first, then Config.Stages in order (the
// response cache lookup, RAG and guardrail rewrites plug in here).
//
// A stage may change x.Req (a rewritten prompt), answer the request itself
// by returning a Reply (a cache hit, a coalesced follower: the reply then
// goes through the taps and the dialect like an upstream one), or refuse it
// with an error in OpenAI's shape (the client's dialect renders it). A
// stage that takes something (a limit, a lock) adds a Tap whose End gives
// it back: End runs once with the outcome whatever happens later.
//
// Name is the stage's short name ("cache", "rag", "guardrails"): telemetry
// names the stage's span after it.
type Stage interface {
	Name() string
	Run(x *Exchange) (*Reply, *openai.Error)
}

// Reply is an answer on its way to the client: a body or a stream of
// events, in Format (the client's dialect translates another format).
type Reply struct {
	Format provider.Format
	// Body is a non-stream answer.
	Body []byte
	// Usage is the body's usage when its producer knows it (else it is
	// read from an OpenAI body).
	Usage openai.Usage
	// Stream yields a streamed answer's events after First, which was read
	// already (so that a failure before it could still be retried).
	Stream provider.Stream
	First  sse.Event
}

// Tap observes a reply on its way to the client. Taps run in the order
// they were added: the gateway's usage accounting first, then those that
// stages added (a cache recorder, telemetry, a PII restorer).
//
// Event sees every event of a streamed answer exactly once, in order,
// before the client's dialect writes it, in the reply's format; it may
// rewrite ev.Data (PII restore: a tap that holds text back until a
// placeholder is whole may shorten ev.Data to nothing and emit the rest
// later). Body sees a non-stream answer once and returns the body to send
// on. End learns the request's outcome exactly once, also for requests
// that never got a reply (refused, every attempt failed).
type Tap interface {
	Event(ev *dialect.Event, f provider.Format)
	Body(body []byte, f provider.Format) []byte
	End(o Outcome, info *Info)
}

// Releaser is a Tap that holds back part of a stream it cannot rewrite in
// place (text that may begin a placeholder, held until the block it is in
// ends): before each event goes through the taps, Release may return an
// event to write first, which goes through the taps after the releaser.
// The gateway asks the first releaser among a stream's taps.
type Releaser interface {
	Release(ev *dialect.Event, f provider.Format) (sse.Event, bool)
}

// Peeker is a first stage that can tell, before the admission, that it
// will answer a request from what it holds without any upstream call (a
// response cache hit): Peek reports so, leaving what Run needs in
// x.Peeked. Such a request is admitted as a hit (requests per minute
// only: no tokens, budget or concurrency slot are reserved), then the
// stages run as usual and the Peeker's Run serves it.
type Peeker interface {
	Peek(x *Exchange) bool
}

// runStages runs the admission and the configured stages.
func (g *Gateway) runStages(x *Exchange) (*Reply, *openai.Error) {
	hit := false
	if p, ok := firstStage(g.cfg.Stages).(Peeker); ok && g.cfg.Guard != nil {
		hit = p.Peek(x)
	}
	if g.cfg.Guard != nil {
		end := x.phase("admission")
		adm, oerr := g.cfg.Guard.admitAs(x.Context(), x.Header(), x.Key, x.Req.OpenAI, x.Route, hit)
		end(oerr)
		if oerr != nil {
			x.Info.Limited = oerr.Code
			return nil, oerr
		}
		x.AddTap(admissionTap{adm, x.r.Context()})
	}
	for _, s := range g.cfg.Stages {
		end := x.phase(s.Name())
		reply, oerr := s.Run(x)
		end(oerr)
		if reply != nil || oerr != nil {
			return reply, oerr
		}
	}
	return nil, nil
}

func firstStage(stages []Stage) Stage {
	if len(stages) == 0 {
		return nil
	}
	return stages[0]
}

// admissionTap settles an admission's holds from the outcome.
type admissionTap struct {
	a   *admission
	ctx context.Context
}

func (t admissionTap) Event(*dialect.Event, provider.Format)   {}
func (t admissionTap) Body(b []byte, _ provider.Format) []byte { return b }
func (t admissionTap) End(o Outcome, info *Info)               { t.a.finish(t.ctx, o, info) }

// usageTap accounts the reply's token usage into Info: typed from a stream
// that reports it (provider.UsageReporter) or from the reply, else read
// from OpenAI's events (the usage chunk, a Responses completion). It runs
// first and marks the usage-only chunk (dialect.Event.UsageOnly), so that
// each chunk is scanned once.
type usageTap struct {
	info *Info
	// marker, when set, knows the usage-only chunks of the stream (whose
	// usage its UsageReporter tells): no event is scanned.
	marker provider.UsageMarker
}

var (
	responseCompleted = []byte("response.completed")
	responseIncomp    = []byte("response.incomplete")
)

func (u *usageTap) Event(ev *dialect.Event, f provider.Format) {
	if f != provider.FormatOpenAI {
		return // native streams report their usage (provider.UsageReporter)
	}
	if u.marker != nil {
		ev.UsageOnly = u.marker.UsageOnly()
		return
	}
	if u.info.Op == openai.OpResponses {
		if string(ev.Name) == string(responseCompleted) || string(ev.Name) == string(responseIncomp) {
			if us := openai.UsageAt(ev.Data, "response.usage"); us.Known {
				u.info.Usage = us
			}
		}
		return
	}
	// Chunks carry "usage":null until the last one: a cheap scan, no parse.
	if us, present, choicesEmpty := openai.ChunkUsage(ev.Data); present {
		u.info.Usage = us
		ev.UsageOnly = choicesEmpty
	}
}

func (u *usageTap) Body(b []byte, f provider.Format) []byte {
	if f == provider.FormatOpenAI && !u.info.Usage.Known {
		u.info.Usage = openai.UsageOf(b)
	}
	return b
}

func (u *usageTap) End(Outcome, *Info) {}
