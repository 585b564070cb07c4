package gateway

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/anthropic"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

var (
	responseCompleted = []byte("response.completed")
	responseIncomp    = []byte("response.incomplete")
	evMessageStart    = []byte("message_start")
	evMessageDelta    = []byte("message_delta")
	evError           = []byte("error")
	doneEvent         = []byte("data: [DONE]\n\n")
)

// streamWriter writes SSE events to the client; the first write error
// (client gone) sticks and stops the stream.
type streamWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
	err error
}

func (s *streamWriter) event(name, data []byte) {
	if s.err != nil {
		return
	}
	s.buf = sse.AppendEvent(s.buf[:0], name, data)
	_, s.err = s.w.Write(s.buf)
}

func (s *streamWriter) flush() {
	if s.err == nil {
		s.err = s.rc.Flush()
	}
}

// serveStream writes the events of an upstream stream to the client as they
// arrive, one flush per upstream event. The first event was already read (so
// that a failure before it could still be retried). Usage is teed off the
// events; the usage chunk the gateway asked for is dropped when the client
// did not. For /v1/messages clients the events are Anthropic's: passed
// through from an Anthropic target (native) or translated from OpenAI's.
func (g *Gateway) serveStream(w http.ResponseWriter, req *openai.Request, st provider.Stream, first sse.Event, info *Info, start time.Time, native bool) {
	defer st.Close()
	info.Status = http.StatusOK
	h := w.Header()
	g.setHeaders(h, info)
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	// no-transform keeps compressing middleware (encode) away from the stream.
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
	w.WriteHeader(http.StatusOK)

	bp := bufPool.Get().(*[]byte)
	sw := &streamWriter{w: w, rc: http.NewResponseController(w), buf: *bp}
	defer func() { *bp = sw.buf; bufPool.Put(bp) }()

	var tr *anthropic.OpenAIToAnthropicStream
	if info.Format == FormatAnthropic && !native {
		tr = anthropic.NewOpenAIToAnthropicStream(req.Model)
	}
	pd, _ := st.(provider.Pender)
	ev, err := first, error(nil)
	for sw.err == nil {
		switch {
		case native:
			tapAnthropicUsage(ev, info)
			sw.event(ev.Name, ev.Data)
		case tr != nil:
			g.tapUsage(req, ev, info)
			if terr := tr.Translate(ev.Data, sw.event); terr != nil {
				err = &provider.Error{Provider: info.Provider, Kind: provider.KindProtocol, Message: "untranslatable stream", StreamStarted: true}
			}
		default:
			if g.tapUsage(req, ev, info) {
				sw.event(ev.Name, ev.Data)
			}
		}
		if err != nil {
			break
		}
		if pd == nil || !pd.Pending() {
			sw.flush()
		}
		if info.TTFT == 0 {
			info.TTFT = time.Since(start)
		}
		ev, err = st.Next()
		if err != nil {
			break
		}
	}
	if sw.err != nil {
		return // client gone: Close cancels the upstream
	}
	if err == io.EOF {
		switch {
		case tr != nil:
			tr.Finish(sw.event)
		case native, req.Op == openai.OpResponses:
		default:
			_, sw.err = w.Write(doneEvent)
		}
		sw.flush()
		return
	}
	// After the first byte the status is sent: end with an error event in
	// the client's stream shape, never a clean-looking finish.
	var oe *openai.Error
	if pe, ok := err.(*provider.Error); ok {
		oe = g.cfg.Redactor.Error(pe).ClientError()
		if pe.Kind != provider.KindStatus {
			// Connection broke or went idle mid-stream: say so, not "unreachable".
			oe.Message = "The stream from upstream provider \"" + pe.Provider + "\" was interrupted."
			oe.Code = "upstream_stream_error"
		}
	} else {
		oe = &openai.Error{Status: http.StatusBadGateway, Type: openai.TypeUpstream, Message: "The upstream stream failed."}
	}
	if oe.Code == "" || oe.Code == "upstream_invalid_response" {
		oe.Code = "upstream_stream_error"
	}
	if g.cfg.Drain.Drained() {
		oe = errShuttingDown() // the drain cancelled the upstream attempt
	}
	info.Status = 599 // logged as a broken stream; the client already has 200
	switch {
	case info.Format == FormatAnthropic:
		sw.event(evError, anthropic.ErrorBody(oe.Status, oe.Message))
	case req.Op == openai.OpResponses:
		sw.event(evError, oe.AppendJSON(nil))
	default:
		sw.event(nil, oe.AppendJSON(nil))
	}
	sw.flush()
}

// tapUsage records usage from an OpenAI-shaped event and reports whether
// the event goes to the client.
func (g *Gateway) tapUsage(req *openai.Request, ev sse.Event, info *Info) bool {
	if req.Op == openai.OpResponses {
		if bytes.Equal(ev.Name, responseCompleted) || bytes.Equal(ev.Name, responseIncomp) {
			if u := openai.UsageAt(ev.Data, "response.usage"); u.Known {
				info.Usage = u
			}
		}
		return true
	}
	// Chunks carry "usage":null until the last one: a cheap scan, no parse.
	u, present, choicesEmpty := openai.ChunkUsage(ev.Data)
	if !present {
		return true
	}
	info.Usage = u
	// The usage chunk the gateway asked for has no choices: drop it.
	return req.ClientUsage || !choicesEmpty
}

// tapAnthropicUsage records usage from Anthropic's events: input tokens
// arrive in message_start, output tokens in message_delta.
func tapAnthropicUsage(ev sse.Event, info *Info) {
	switch {
	case bytes.Equal(ev.Name, evMessageStart):
		info.Usage = anthropic.UsageOf(openai.GetInPlace(ev.Data, "message.usage"))
	case bytes.Equal(ev.Name, evMessageDelta):
		u := openai.GetInPlace(ev.Data, "usage")
		if out := u.Get("output_tokens"); out.Exists() {
			info.Usage.OutputTokens = out.Int()
			info.Usage.Known = true
		}
		if in := u.Get("input_tokens"); in.Exists() {
			info.Usage.InputTokens = anthropic.UsageOf(u).InputTokens
		}
	}
}
