package gateway

import (
	"bytes"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

var (
	usageKey          = []byte(`"usage"`)
	responseCompleted = []byte("response.completed")
	responseIncomp    = []byte("response.incomplete")
	doneEvent         = []byte("data: [DONE]\n\n")
)

// serveStream writes the events of an upstream stream to the client as they
// arrive, one flush per event. The first event was already read (so that a
// failure before it could still be retried). Usage is teed off the events;
// the usage chunk the gateway asked for is dropped when the client did not.
func (g *Gateway) serveStream(w http.ResponseWriter, req *openai.Request, st provider.Stream, first sse.Event, info *Info, start time.Time) {
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
	rc := http.NewResponseController(w)

	bp := bufPool.Get().(*[]byte)
	defer func() { bufPool.Put(bp) }()
	buf := *bp

	ev, err := first, error(nil)
	for {
		if g.tapUsage(req, ev, info) {
			buf = sse.AppendEvent(buf[:0], ev.Name, ev.Data)
			if _, werr := w.Write(buf); werr != nil {
				break // client gone: Close cancels the upstream
			}
			if werr := rc.Flush(); werr != nil {
				break
			}
			if info.TTFT == 0 {
				info.TTFT = time.Since(start)
			}
		}
		ev, err = st.Next()
		if err != nil {
			break
		}
	}
	*bp = buf
	switch {
	case err == io.EOF:
		if req.Op != openai.OpResponses {
			_, _ = w.Write(doneEvent)
		}
		_ = rc.Flush()
	case err != nil:
		// After the first byte the status is sent: end with an error event in
		// OpenAI's stream shape, never a clean-looking finish.
		var oe *openai.Error
		if pe, ok := err.(*provider.Error); ok {
			oe = pe.ClientError()
		} else {
			oe = &openai.Error{Type: openai.TypeUpstream, Code: "upstream_stream_error", Message: "The upstream stream failed."}
		}
		if oe.Code == "" || oe.Code == "upstream_invalid_response" {
			oe.Code = "upstream_stream_error"
		}
		if info.Status == http.StatusOK {
			info.Status = 599 // logged as a broken stream; the client already has 200
		}
		var name []byte
		if req.Op == openai.OpResponses {
			name = []byte("error")
		}
		buf = sse.AppendEvent(buf[:0], name, oe.AppendJSON(nil))
		_, _ = w.Write(buf)
		_ = rc.Flush()
		*bp = buf
	}
}

// tapUsage records usage from an event and reports whether the event goes to
// the client.
func (g *Gateway) tapUsage(req *openai.Request, ev sse.Event, info *Info) bool {
	if req.Op == openai.OpResponses {
		if bytes.Equal(ev.Name, responseCompleted) || bytes.Equal(ev.Name, responseIncomp) {
			if u := openai.ParseUsage(gjson.GetBytes(ev.Data, "response.usage")); u.Known {
				info.Usage = u
			}
		}
		return true
	}
	if !bytes.Contains(ev.Data, usageKey) {
		return true
	}
	u := gjson.GetBytes(ev.Data, "usage")
	if !u.IsObject() {
		return true
	}
	info.Usage = openai.ParseUsage(u)
	if req.ClientUsage {
		return true
	}
	// The usage chunk the gateway asked for has no choices: drop it.
	return gjson.GetBytes(ev.Data, "choices.#").Int() > 0
}
