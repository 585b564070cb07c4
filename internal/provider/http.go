package provider

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// Timeouts bound one upstream attempt. Zero values take the defaults.
type Timeouts struct {
	// Connect bounds dialing and the TLS handshake. Default 10s.
	Connect time.Duration
	// FirstByte bounds the wait for response headers after the request was
	// sent. Default 60s.
	FirstByte time.Duration
	// Idle bounds the gap between two reads of a response body (between
	// stream chunks). A healthy stream has no total cap. Default 60s.
	Idle time.Duration
}

// ErrIdleTimeout is the cause when a response body stalled for longer than
// the idle timeout.
var ErrIdleTimeout = errors.New("upstream idle timeout")

// maxErrorBody bounds how much of an error response is read.
const maxErrorBody = 64 << 10

// MaxResponseBody bounds a non-stream answer.
const MaxResponseBody = 64 << 20

// HTTP is a pooled HTTP/1.1 + HTTP/2 client for one provider, shared by all
// its requests.
type HTTP struct {
	Client   *http.Client
	Idle     time.Duration
	Provider string
}

// NewHTTP returns a client with its own connection pool.
func NewHTTP(provider string, t Timeouts) *HTTP {
	if t.Connect <= 0 {
		t.Connect = 10 * time.Second
	}
	if t.FirstByte <= 0 {
		t.FirstByte = 60 * time.Second
	}
	if t.Idle <= 0 {
		t.Idle = 60 * time.Second
	}
	dialer := &net.Dialer{Timeout: t.Connect, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   t.Connect,
		ResponseHeaderTimeout: t.FirstByte,
		ExpectContinueTimeout: time.Second,
	}
	return &HTTP{Client: &http.Client{Transport: tr}, Idle: t.Idle, Provider: provider}
}

// Close drops idle connections.
func (h *HTTP) Close() { h.Client.CloseIdleConnections() }

// ErrorParser turns an upstream error response into an *Error, reading the
// provider's own error shape.
type ErrorParser func(status int, body []byte) *Error

// Exchange is one upstream HTTP exchange whose body is guarded by the idle
// timeout. Close it when done.
type Exchange struct {
	Resp   *http.Response
	Body   io.Reader // Resp.Body behind the idle timer
	cancel context.CancelFunc
	timer  *time.Timer
	idle   time.Duration
	ctx    context.Context
	h      *HTTP
}

// Send performs req (built with NewRequestWithContext on any context) and
// returns the exchange for a 2xx answer, or an *Error. parse reads the
// provider's error body.
func (h *HTTP) Send(ctx context.Context, req *http.Request, parse ErrorParser) (*Exchange, error) {
	actx, cancel := context.WithCancelCause(ctx)
	req = req.WithContext(actx)
	resp, err := h.Client.Do(req)
	if err != nil {
		cancel(nil)
		return nil, TransportError(ctx, h.Provider, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		cancel(nil)
		e := parse(resp.StatusCode, body)
		if e == nil {
			e = &Error{}
		}
		e.Provider, e.Kind, e.Status = h.Provider, KindStatus, resp.StatusCode
		e.RetryAfter = ParseRetryAfter(resp.Header, time.Now())
		return nil, e
	}
	x := &Exchange{Resp: resp, cancel: func() { cancel(nil) }, idle: h.Idle, ctx: ctx, h: h}
	x.timer = time.AfterFunc(h.Idle, func() { cancel(ErrIdleTimeout) })
	x.Body = &idleReader{x: x, cause: actx}
	return x, nil
}

// ReadAll reads the whole (bounded) body of a non-stream answer.
func (x *Exchange) ReadAll() ([]byte, error) {
	n := x.Resp.ContentLength
	if n < 0 || n > MaxResponseBody {
		n = 4096
	}
	buf := bytes.NewBuffer(make([]byte, 0, n+1))
	_, err := buf.ReadFrom(io.LimitReader(x.Body, MaxResponseBody+1))
	if err != nil {
		return nil, err
	}
	if buf.Len() > MaxResponseBody {
		return nil, &Error{Provider: x.h.Provider, Kind: KindProtocol, Message: "response too large"}
	}
	return buf.Bytes(), nil
}

// Close releases the connection and the timer.
func (x *Exchange) Close() error {
	x.timer.Stop()
	x.cancel()
	return x.Resp.Body.Close()
}

type idleReader struct {
	x     *Exchange
	cause context.Context
}

func (r *idleReader) Read(p []byte) (int, error) {
	n, err := r.x.Resp.Body.Read(p)
	if n > 0 {
		r.x.timer.Reset(r.x.idle)
	}
	if err != nil && err != io.EOF {
		if c := context.Cause(r.cause); errors.Is(c, ErrIdleTimeout) {
			return n, &Error{Provider: r.x.h.Provider, Kind: KindTimeout}
		}
		if e := TransportError(r.x.ctx, r.x.h.Provider, err); e != nil {
			return n, e
		}
	}
	return n, err
}

var readerPool = sync.Pool{New: func() any { return sse.NewReader(nil, 0) }}

// SSEStream reads an OpenAI-format event stream from an exchange. Upstream
// events pass through untouched; "[DONE]" ends the stream, and an event
// carrying an "error" object becomes an *Error.
type SSEStream struct {
	x       *Exchange
	rd      *sse.Reader
	provide string
	// NeedDone is true when the stream must end with [DONE] (Chat and
	// Completions); without it an EOF is a cut stream.
	NeedDone bool
	started  bool
}

// NewSSEStream wraps an exchange.
func NewSSEStream(x *Exchange, needDone bool) *SSEStream {
	rd := readerPool.Get().(*sse.Reader)
	rd.Reset(x.Body)
	return &SSEStream{x: x, rd: rd, provide: x.h.Provider, NeedDone: needDone}
}

// Next implements Stream.
func (s *SSEStream) Next() (sse.Event, error) {
	if s.rd == nil {
		return sse.Event{}, io.EOF
	}
	ev, err := s.rd.Next()
	if err != nil {
		if err == io.EOF && s.NeedDone {
			err = io.ErrUnexpectedEOF
		}
		if err == io.ErrUnexpectedEOF || err == sse.ErrTooLarge {
			return ev, &Error{Provider: s.provide, Kind: KindProtocol, Message: "stream ended unexpectedly", StreamStarted: s.started}
		}
		if pe, ok := err.(*Error); ok {
			pe.StreamStarted = s.started
			return ev, pe
		}
		return ev, err
	}
	if ev.IsDone() {
		return sse.Event{}, io.EOF
	}
	if len(ev.Name) == 0 && len(ev.Data) > 10 && bytes.HasPrefix(ev.Data, []byte(`{"error"`)) {
		e := ParseOpenAIError(0, ev.Data)
		e.Provider, e.Kind, e.StreamStarted = s.provide, KindStatus, s.started
		if e.Status == 0 {
			e.Status = http.StatusBadGateway
		}
		return sse.Event{}, e
	}
	s.started = true
	return ev, nil
}

// Close implements Stream.
func (s *SSEStream) Close() error {
	if s.rd != nil {
		s.rd.Reset(nil)
		readerPool.Put(s.rd)
		s.rd = nil
	}
	return s.x.Close()
}

// ParseOpenAIError reads OpenAI's error envelope (also the bare
// {"message":...} or {"detail":...} shapes some compatible servers use).
// Only well-formed JSON fields are kept; raw bytes never reach the client.
func ParseOpenAIError(status int, body []byte) *Error {
	e := &Error{Status: status}
	if !gjson.ValidBytes(body) {
		return e
	}
	root := gjson.ParseBytes(body)
	obj := root.Get("error")
	if obj.Type == gjson.String {
		e.Message = truncate(obj.Str)
		return e
	}
	if !obj.IsObject() {
		obj = root
	}
	if m := obj.Get("message"); m.Type == gjson.String {
		e.Message = truncate(m.Str)
	} else if d := obj.Get("detail"); d.Type == gjson.String {
		e.Message = truncate(d.Str)
	}
	if v := obj.Get("type"); v.Type == gjson.String {
		e.Type = truncate(v.Str)
	}
	if v := obj.Get("code"); v.Type == gjson.String {
		e.Code = truncate(v.Str)
	}
	if v := obj.Get("param"); v.Type == gjson.String {
		e.Param = truncate(v.Str)
	}
	return e
}

func truncate(s string) string {
	const max = 1024
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
