package gateway

import (
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// serveReply sends reply to the client through the taps and the client's
// dialect, and returns how it ended.
func (g *Gateway) serveReply(x *Exchange, reply *Reply) Outcome {
	if reply.Stream != nil {
		return g.serveStream(x, reply)
	}
	return g.serveBody(x, reply)
}

func (g *Gateway) serveBody(x *Exchange, reply *Reply) Outcome {
	info := x.Info
	info.TTFT = time.Since(x.start)
	if reply.Usage.Known {
		info.Usage = reply.Usage
	}
	body := reply.Body
	for _, t := range x.taps {
		body = t.Body(body, reply.Format)
	}
	out, oerr := x.d.Body(x.Req, body, reply.Format)
	if oerr != nil {
		g.fail(x.w, x.d, info, oerr)
		return OutcomeUpstreamError
	}
	info.Status = http.StatusOK
	h := x.w.Header()
	setReplyHeaders(h, info, len(out))
	x.w.WriteHeader(http.StatusOK)
	if _, err := x.w.Write(out); err != nil {
		return OutcomeClientGone
	}
	return OutcomeCompleted
}

// bufPool holds the buffers a burst of events is gathered in: an event is
// a few hundred bytes, a burst (the events already at hand) a few KB. A
// buffer is held only while a burst is written, never while a stream
// waits on its upstream.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

const (
	// burstSize is how much of a burst is gathered before it is written
	// (still without a flush): a long burst costs a few writes, not one
	// buffer of its size.
	burstSize = 32 << 10
	// keepBufSize bounds the buffers returned to bufPool: one huge event
	// must not make the pool hold its size.
	keepBufSize = 64 << 10
)

// streamWriter writes SSE events to the client (it is the dialect's Sink).
// The events of a burst are gathered and written with one Write at the
// flush: the client's ResponseWriter is wrapped in several layers, each
// costing something per call. The first write error (client gone) sticks
// and stops the stream.
//
// The status is sent with the first write: a stream wholly at hand before
// it (a cache replay, an upstream answer that came in one read) is sent
// with its Content-Length, in one write without chunked framing.
type streamWriter struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	bp   *[]byte // the burst gathered since the last flush; nil when none
	sent bool    // the status was sent
	err  error
	cl   [1]string // the Content-Length header's value (no slice of its own)
}

// Event implements dialect.Sink.
func (s *streamWriter) Event(name, data []byte) {
	if s.err != nil {
		return
	}
	if s.bp == nil {
		s.bp = bufPool.Get().(*[]byte)
	}
	*s.bp = sse.AppendEvent(*s.bp, name, data)
	if len(*s.bp) >= burstSize {
		s.write()
	}
}

// write sends the status if it was not yet, writes the gathered burst and
// gives its buffer back.
func (s *streamWriter) write() {
	if !s.sent {
		s.sent = true
		s.w.WriteHeader(http.StatusOK)
	}
	bp := s.bp
	if bp == nil {
		return
	}
	s.bp = nil
	if s.err == nil && len(*bp) > 0 {
		_, s.err = s.w.Write(*bp)
	}
	if cap(*bp) <= keepBufSize {
		*bp = (*bp)[:0]
		bufPool.Put(bp)
	}
}

// end writes and flushes the rest of a stream that ended cleanly.
func (s *streamWriter) end() {
	if !s.sent && s.err == nil {
		n := 0
		if s.bp != nil {
			n = len(*s.bp)
		}
		s.cl[0] = strconv.Itoa(n)
		s.w.Header()["Content-Length"] = s.cl[:]
	}
	s.flush()
}

// flush writes the gathered burst and flushes it to the client.
func (s *streamWriter) flush() {
	s.write()
	if s.err == nil {
		s.err = s.rc.Flush()
	}
}

// serveStream writes the events of a streamed reply to the client as they
// arrive: each goes through the taps, then the dialect writes what it
// becomes. The events already buffered from upstream (provider.Pender)
// are written together with one flush, so that a burst costs one write
// and one flush, while an event not followed at once is flushed at once.
func (g *Gateway) serveStream(x *Exchange, reply *Reply) Outcome {
	st := reply.Stream
	defer st.Close()
	info := x.Info
	info.Status = http.StatusOK
	h := x.w.Header()
	setReplyHeaders(h, info, -1)
	h.Del("Content-Length")

	sw := &streamWriter{w: x.w, rc: http.NewResponseController(x.w)}

	out := x.d.Stream(x.Req, reply.Format)
	pd, _ := st.(provider.Pender)
	ur, _ := st.(provider.UsageReporter)
	if um, ok := st.(provider.UsageMarker); ok && ur != nil {
		x.usage.marker = um
	}
	ev := &x.ev // in the exchange: taps see it by pointer without an allocation
	ev.Event = reply.First
	var err error
	relAt := -1
	for i, t := range x.taps {
		if _, ok := t.(Releaser); ok {
			relAt = i
			break
		}
	}
	for sw.err == nil {
		if relAt >= 0 {
			if rel, ok := x.taps[relAt].(Releaser).Release(ev, reply.Format); ok {
				x.rel = dialect.Event{Event: rel}
				for _, t := range x.taps[relAt+1:] {
					t.Event(&x.rel, reply.Format)
				}
				if werr := out.Event(&x.rel, sw); werr != nil {
					err = &provider.Error{Provider: info.Provider, Kind: provider.KindProtocol, Message: "untranslatable stream", StreamStarted: true}
					break
				}
			}
		}
		ev.UsageOnly = false
		for _, t := range x.taps {
			t.Event(ev, reply.Format)
		}
		if werr := out.Event(ev, sw); werr != nil {
			err = &provider.Error{Provider: info.Provider, Kind: provider.KindProtocol, Message: "untranslatable stream", StreamStarted: true}
			break
		}
		if pd == nil || !pd.Pending() {
			sw.flush()
		}
		if info.TTFT == 0 {
			info.TTFT = time.Since(x.start)
		}
		if ev.Event, err = st.Next(); err != nil {
			break
		}
	}
	if ur != nil {
		if u := ur.Usage(); u.Known {
			info.Usage = u
		}
	}
	if sw.err != nil {
		info.Status = 499
		return OutcomeClientGone // Close cancels the upstream
	}
	if err == io.EOF {
		out.End(sw)
		sw.end()
		return OutcomeCompleted
	}
	// After the first byte the status is sent: end with an error event in
	// the client's stream shape, never a clean-looking finish.
	o := OutcomeStreamBroken
	var oe *openai.Error
	switch pe, ok := err.(*provider.Error); {
	case g.cfg.Drain.Drained():
		oe = errShuttingDown() // the drain cancelled the upstream attempt
	case ok:
		oe = g.cfg.Redactor.Error(pe).ClientError()
		if pe.Kind != provider.KindStatus {
			// Connection broke or went idle mid-stream: say so, not "unreachable".
			oe.Message = "The stream from upstream provider \"" + pe.Provider + "\" was interrupted."
			oe.Code = "upstream_stream_error"
		}
	default:
		oe = &openai.Error{Status: http.StatusBadGateway, Type: openai.TypeUpstream, Message: "The upstream stream failed."}
	}
	if oe.Code == "" || oe.Code == "upstream_invalid_response" {
		oe.Code = "upstream_stream_error"
	}
	info.Status = 599 // logged as a broken stream; the client already has 200
	out.Fail(oe, sw)
	sw.flush()
	if sw.err != nil {
		return OutcomeClientGone
	}
	return o
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

// fail answers e in the client's dialect with the gateway's headers.
func (g *Gateway) fail(w http.ResponseWriter, d dialect.Dialect, info *Info, e *openai.Error) {
	g.setHeaders(w.Header(), info)
	fail(w, d, info, e)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
