package fakellm

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Behavior scripts how a request to an inference endpoint (chat, completions,
// embeddings, responses) is answered. Zero fields mean "not set": TTFT,
// ChunkDelay and Chunks then fall back to the [Options].
//
// A Behavior is selected as a whole (fields are not merged across sources):
// queue ([Server.Enqueue]) > X-Fake-* headers > model script > default
// script > Options.
type Behavior struct {
	// Status, if >= 400, makes the server reply with this HTTP status and an
	// OpenAI error envelope {"error":{"message","type","param","code"}}.
	// https://platform.openai.com/docs/guides/error-codes
	Status int
	// RetryAfter is the Retry-After header value sent with the error.
	RetryAfter string
	// TTFT and ChunkDelay override the server's delays when non-zero.
	TTFT, ChunkDelay time.Duration
	// Chunks overrides the number of content chunks when > 0.
	Chunks int
	// FailAfter, if > 0, abruptly closes the connection after that many
	// content chunks (stream mode), without finish chunk nor [DONE]. A
	// value larger than the answer cuts right after the last content chunk.
	// In non-stream mode the connection is closed after half of the JSON
	// body has been sent.
	FailAfter int
	// Hang makes the server never answer: it waits until the request
	// context is cancelled, and counts the cancellation.
	Hang bool
	// Echo makes the answer's content the exact raw request body (split
	// into Chunks pieces in stream mode).
	Echo bool
	// Text, when set (and Echo is not), is the answer's content, split
	// into Chunks pieces in stream mode.
	Text string
	// ToolCall answers with a call to the first tool of the request's
	// "tools" (finish_reason "tool_calls"), arguments built from the tool's
	// parameter names. Applies to chat completions and responses.
	ToolCall bool
	// Garbage makes the server reply 200 with an HTML page instead of JSON.
	Garbage bool
}

// Request headers overriding the behaviour per request (e.g. from curl).
// Their presence selects a header behaviour built only from them.
const (
	HeaderStatus     = "X-Fake-Status"      // HTTP status >= 400
	HeaderRetryAfter = "X-Fake-Retry-After" // Retry-After value
	HeaderTTFT       = "X-Fake-TTFT"        // Go duration, e.g. "150ms"
	HeaderChunkDelay = "X-Fake-Chunk-Delay" // Go duration
	HeaderChunks     = "X-Fake-Chunks"      // integer
	HeaderFailAfter  = "X-Fake-Fail-After"  // integer
	HeaderHang       = "X-Fake-Hang"        // "1"
	HeaderEcho       = "X-Fake-Echo"        // "1"
	HeaderToolCall   = "X-Fake-Tool-Call"   // "1"
	HeaderGarbage    = "X-Fake-Garbage"     // "1"
)

// Script sets the behaviour of every request whose model (or Azure
// deployment) equals model. The empty model sets the default behaviour.
func (s *Server) Script(model string, b Behavior) {
	s.mu.Lock()
	s.scripts[model] = b
	s.mu.Unlock()
}

// Enqueue appends one-shot behaviours, consumed in FIFO order by the next
// inference requests (one each), before any other source is considered.
// Requests rejected early (unknown path, malformed body, missing model) and
// models requests do not consume the queue.
func (s *Server) Enqueue(b ...Behavior) {
	s.mu.Lock()
	s.queue = append(s.queue, b...)
	s.mu.Unlock()
}

// resolve picks the behaviour for a request and fills in the defaults.
func (s *Server) resolve(h http.Header, model string) (Behavior, error) {
	b, ok := s.dequeue()
	if !ok {
		var err error
		if b, ok, err = headerBehavior(h); err != nil {
			return b, err
		}
	}
	if !ok {
		s.mu.Lock()
		if b, ok = s.scripts[model]; !ok {
			b = s.scripts[""]
		}
		s.mu.Unlock()
	}
	if b.TTFT <= 0 {
		b.TTFT = s.opts.TTFT
	}
	if b.ChunkDelay <= 0 {
		b.ChunkDelay = s.opts.ChunkDelay
	}
	if b.Chunks <= 0 {
		b.Chunks = s.opts.Chunks
	}
	return b, nil
}

func (s *Server) dequeue() (Behavior, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return Behavior{}, false
	}
	b := s.queue[0]
	s.queue[0] = Behavior{}
	s.queue = s.queue[1:]
	if len(s.queue) == 0 {
		s.queue = nil
	}
	return b, true
}

// headerBehavior builds a behaviour from X-Fake-* headers; ok is false when
// none is present.
func headerBehavior(h http.Header) (b Behavior, ok bool, err error) {
	get := func(name string) (string, bool) {
		v := h.Values(name)
		if len(v) == 0 {
			return "", false
		}
		ok = true
		return v[0], true
	}
	var errs []error
	num := func(name string, dst *int) {
		if v, found := get(name); found {
			n, e := strconv.Atoi(v)
			if e != nil {
				errs = append(errs, errors.New("invalid "+name+" header: "+e.Error()))
			}
			*dst = n
		}
	}
	dur := func(name string, dst *time.Duration) {
		if v, found := get(name); found {
			d, e := time.ParseDuration(v)
			if e != nil {
				errs = append(errs, errors.New("invalid "+name+" header: "+e.Error()))
			}
			*dst = d
		}
	}
	flag := func(name string, dst *bool) {
		if v, found := get(name); found {
			f, e := strconv.ParseBool(v)
			if e != nil {
				errs = append(errs, errors.New("invalid "+name+" header: "+e.Error()))
			}
			*dst = f
		}
	}
	num(HeaderStatus, &b.Status)
	if v, found := get(HeaderRetryAfter); found {
		b.RetryAfter = v
	}
	dur(HeaderTTFT, &b.TTFT)
	dur(HeaderChunkDelay, &b.ChunkDelay)
	num(HeaderChunks, &b.Chunks)
	num(HeaderFailAfter, &b.FailAfter)
	flag(HeaderHang, &b.Hang)
	flag(HeaderEcho, &b.Echo)
	flag(HeaderToolCall, &b.ToolCall)
	flag(HeaderGarbage, &b.Garbage)
	return b, ok, errors.Join(errs...)
}

// exchange is the state of one request being answered.
type exchange struct {
	s     *Server
	w     http.ResponseWriter
	r     *http.Request
	rc    *http.ResponseController
	body  []byte
	req   request
	model string
	b     Behavior

	timer     *time.Timer
	chunk     int  // next content chunk index, for OnChunk
	abandoned bool // cancellation already counted
}

// preamble applies Hang, TTFT, Status and Garbage. It reports whether the
// endpoint handler should go on answering.
func (x *exchange) preamble() bool {
	if x.b.Hang {
		<-x.r.Context().Done()
		x.cancelled()
		return false
	}
	if !x.sleep(x.b.TTFT) {
		return false
	}
	if x.b.Status >= 400 {
		if x.b.RetryAfter != "" {
			x.w.Header().Set("Retry-After", x.b.RetryAfter)
		}
		_, code := errorKind(x.b.Status)
		x.writeError(x.b.Status, "fakellm: scripted error "+strconv.Itoa(x.b.Status)+" "+http.StatusText(x.b.Status), "", code)
		return false
	}
	if x.b.Garbage {
		x.w.Header().Set("Content-Type", "text/html; charset=utf-8")
		x.w.WriteHeader(http.StatusOK)
		_, _ = x.w.Write([]byte(garbagePage))
		return false
	}
	return true
}

const garbagePage = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n" +
	"<body><center><h1>502 Bad Gateway</h1></center><hr><center>fakellm</center></body></html>\n"

// sleep waits for d, or until the client goes away, in which case it counts
// the cancellation and returns false.
func (x *exchange) sleep(d time.Duration) bool {
	ctx := x.r.Context()
	if d <= 0 {
		if ctx.Err() != nil {
			x.cancelled()
			return false
		}
		return true
	}
	if x.timer == nil {
		x.timer = time.NewTimer(d)
	} else {
		x.timer.Reset(d)
	}
	select {
	case <-x.timer.C:
		return true
	case <-ctx.Done():
		x.timer.Stop()
		x.cancelled()
		return false
	}
}

// cancelled counts the request as abandoned by the client (once).
func (x *exchange) cancelled() {
	if x.abandoned {
		return
	}
	x.abandoned = true
	x.s.mu.Lock()
	x.s.stats.cancelled++
	x.s.mu.Unlock()
}

// startStream writes the SSE response headers.
func (x *exchange) startStream() {
	h := x.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	x.w.WriteHeader(http.StatusOK)
	x.rc = http.NewResponseController(x.w)
}

// send writes and flushes one stream event. It returns false (and counts the
// cancellation) when the client is gone.
func (x *exchange) send(p []byte) bool {
	if x.r.Context().Err() != nil {
		x.cancelled()
		return false
	}
	if _, err := x.w.Write(p); err != nil {
		x.cancelled()
		return false
	}
	if err := x.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		x.cancelled()
		return false
	}
	return true
}

// sendContent is send for a content chunk: it waits ChunkDelay before every
// content chunk but the first, and calls Options.OnChunk after the flush.
func (x *exchange) sendContent(p []byte) bool {
	if x.chunk > 0 && !x.sleep(x.b.ChunkDelay) {
		return false
	}
	if !x.send(p) {
		return false
	}
	if f := x.s.opts.OnChunk; f != nil {
		f(x.chunk, time.Now())
	}
	x.chunk++
	return true
}

// failDue reports whether FailAfter requires cutting the stream after the
// content chunk just sent; last tells whether it was the final one.
func (x *exchange) failDue(last bool) bool {
	return x.b.FailAfter > 0 && (x.chunk >= x.b.FailAfter || last)
}

// writeJSON writes a complete non-stream JSON answer, honouring FailAfter
// (half of the body, then the connection is cut).
func (x *exchange) writeJSON(status int, body []byte) {
	x.w.Header().Set("Content-Type", "application/json")
	if x.b.FailAfter > 0 {
		x.w.WriteHeader(status)
		_, _ = x.w.Write(body[:len(body)/2])
		abort(x.w)
		return
	}
	x.w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	x.w.WriteHeader(status)
	if _, err := x.w.Write(body); err != nil {
		x.cancelled()
	}
}

// abort closes the client connection abruptly: hijacking it when possible
// (HTTP/1.x), otherwise panicking with [http.ErrAbortHandler], which the
// net/http server turns into a connection close / stream reset. Note that
// the panic propagates when ServeHTTP is called directly (e.g. with an
// httptest.ResponseRecorder).
func abort(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	if conn, _, err := rc.Hijack(); err == nil {
		_ = conn.Close()
		return
	}
	panic(http.ErrAbortHandler)
}

// writeError writes an OpenAI error envelope; the type derives from status,
// empty param and code are written as null.
// https://platform.openai.com/docs/guides/error-codes/api-errors
func (x *exchange) writeError(status int, msg, param, code string) {
	typ, _ := errorKind(status)
	b := make([]byte, 0, 128+len(msg))
	b = append(b, `{"error":{"message":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, typ)
	b = append(b, `,"param":`...)
	b = appendNullableString(b, param)
	b = append(b, `,"code":`...)
	b = appendNullableString(b, code)
	b = append(b, "}}\n"...)
	h := x.w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	x.w.WriteHeader(status)
	_, _ = x.w.Write(b)
}

// errorKind maps an HTTP status to OpenAI's error type and the code used for
// scripted errors.
func errorKind(status int) (typ, code string) {
	switch {
	case status == http.StatusUnauthorized:
		return "invalid_request_error", "invalid_api_key"
	case status == http.StatusForbidden:
		return "invalid_request_error", "permission_denied"
	case status == http.StatusNotFound:
		return "invalid_request_error", "model_not_found"
	case status == http.StatusRequestEntityTooLarge:
		return "invalid_request_error", "request_too_large"
	case status == http.StatusTooManyRequests:
		return "requests", "rate_limit_exceeded"
	case status == http.StatusServiceUnavailable:
		return "server_error", "service_unavailable"
	case status >= 500:
		return "server_error", "server_error"
	}
	return "invalid_request_error", ""
}
