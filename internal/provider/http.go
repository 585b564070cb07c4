package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
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

// connBufferSize is the write buffer of an upstream connection, and
// connReadBufferSize its read buffer (net/http's default is 4 KiB each).
// A request of at most heldBody bytes goes out with its headers in one
// write (see Post); a larger one takes two or more whatever the buffer.
// The read buffer holds a burst of stream events: the events a read
// brings are written to the client with one write and one flush, so a
// smaller one costs a read, a write and a flush more per KiB of stream.
const (
	connBufferSize     = 4 << 10
	connReadBufferSize = 4 << 10
	heldBody           = connBufferSize - 1<<10 // room for the headers
)

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
		// A connection keeps its buffers while a stream is open: the
		// write buffer holds a request's headers and a small body, the
		// read buffer a burst of events (see connBufferSize).
		ReadBufferSize:  connReadBufferSize,
		WriteBufferSize: connBufferSize,
	}
	return &HTTP{Client: &http.Client{Transport: tr}, Idle: t.Idle, Provider: provider}
}

// h2c makes h speak only HTTP/2 with prior knowledge over cleartext
// connections (RFC 9113, section 3.3). Call it before h is used.
func (h *HTTP) h2c() {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h.Client.Transport.(*http.Transport).Protocols = &p
}

// Close drops idle connections.
func (h *HTTP) Close() { h.Client.CloseIdleConnections() }

// ErrorParser turns an upstream error response into an *Error, reading the
// provider's own error shape. The status it sets (normally the one it was
// given) and its RetryAfter are kept; Retry-After headers override the
// latter.
type ErrorParser func(status int, body []byte) *Error

// Exchange is one upstream HTTP exchange whose body is guarded by the idle
// timeout. Close it when done.
//
// An exchange is one allocation that also holds its body reader, the
// request body of Post and the stream of Exchange.Stream. Begin and Send add the
// attempt context and its cancel function, the idle timer and its function;
// Post adds the request (a copy of its template) and its GetBody.
type Exchange struct {
	Resp *http.Response
	Body io.Reader // Resp.Body behind the idle timer

	h      *HTTP
	ctx    context.Context // the caller's: its end means the client went away
	actx   context.Context // the attempt's, derived from ctx
	cancel context.CancelCauseFunc
	timer  *time.Timer
	idle   time.Duration

	reqBytes []byte       // Post's request body
	reqBody  requestBody  // a reader over a large reqBytes
	reqSmall bytes.Reader // a reader over a small one
	stream   SSEStream    // Stream's
}

// Begin starts an exchange on ctx. Build the request on x.Context() (with
// http.NewRequestWithContext) and pass it to x.Send; Close the exchange when
// done, whatever happened.
func (h *HTTP) Begin(ctx context.Context) *Exchange {
	x := &Exchange{h: h, ctx: ctx, idle: h.Idle}
	x.actx, x.cancel = context.WithCancelCause(ctx)
	return x
}

// Context is the attempt's context: the request must run on it so that the
// idle timeout and Close can interrupt the exchange.
func (x *Exchange) Context() context.Context { return x.actx }

// Send performs req (built with NewRequestWithContext on any context) and
// returns the exchange for a 2xx answer, or an *Error. parse reads the
// provider's error body.
//
// Provider code on the hot path can save the request copy this makes with
// Begin and Exchange.Send, or Post.
func (h *HTTP) Send(ctx context.Context, req *http.Request, parse ErrorParser) (*Exchange, error) {
	x := h.Begin(ctx)
	if err := x.Send(req, parse); err != nil {
		return nil, err
	}
	return x, nil
}

// Send performs req and readies the exchange for a 2xx answer, or returns an
// *Error (the caller's context error when the client went away). parse reads
// the provider's error body. req runs on x.Context(): one built on another
// context is rebound to it (a shallow copy), the request's own context being
// replaced. After an error the exchange is finished.
func (x *Exchange) Send(req *http.Request, parse ErrorParser) error {
	if req.Context() != x.actx {
		req = req.WithContext(x.actx)
	}
	h := x.h
	resp, err := h.Client.Do(req)
	if err != nil {
		x.cancel(nil)
		return TransportError(x.ctx, h.Provider, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
		x.cancel(nil)
		e := parse(resp.StatusCode, body)
		if e == nil {
			e = &Error{}
		}
		e.Provider, e.Kind = h.Provider, KindStatus
		if e.Status == 0 {
			e.Status = resp.StatusCode
		}
		// Retry-After wins; without it a delay the body gave is kept.
		if ra := ParseRetryAfter(resp.Header, time.Now()); ra > 0 {
			e.RetryAfter = ra
		}
		return e
	}
	// The request is sent and replayed no more (GetBody serves retries and
	// redirects within Do): a stream does not keep a large body
	// referenced (a small one stays in reqSmall).
	x.reqBytes = nil
	x.Resp = resp
	x.Body = (*idleBody)(x)
	x.timer = time.AfterFunc(x.idle, x.onIdle)
	x.timer.Stop() // armed by each read
	return nil
}

// Post sends body in a request shaped like tmpl (method, URL, Host, Header),
// on an attempt context derived from ctx, and returns the exchange for a 2xx
// answer, or an *Error, as Send. tmpl is shared by concurrent calls and
// never modified: build it once (http.NewRequest with a nil body, headers
// set) and do not touch it afterwards. Its own context and body are ignored.
//
// Post costs one shallow copy of tmpl where NewRequestWithContext parses the
// URL, makes a header map and wraps the body.
func (h *HTTP) Post(ctx context.Context, tmpl *http.Request, body []byte, parse ErrorParser) (*Exchange, error) {
	x := h.Begin(ctx)
	req := tmpl.WithContext(x.actx)
	if h.Client.Jar != nil {
		// The client adds the jar's cookies to the request's own headers.
		req.Header = tmpl.Header.Clone()
	}
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body, req.GetBody = http.NoBody, noBody
	} else {
		x.reqBytes = body
		req.GetBody = x.getBody
		if len(body) <= heldBody {
			// A *bytes.Reader behind io.NopCloser is a body net/http
			// knows to be in memory: it writes the headers and the body
			// together, in one write, instead of flushing the headers
			// first. The reader keeps the body until the exchange is
			// dropped (the transport may read it after Do returns).
			x.reqSmall.Reset(body)
			req.Body = io.NopCloser(&x.reqSmall)
		} else {
			// A large body takes a write of its own anyway; this one is
			// dropped once written, so that an open stream does not keep
			// the prompt.
			x.reqBody.Reset(body)
			req.Body = &x.reqBody
		}
	}
	if err := x.Send(req, parse); err != nil {
		return nil, err
	}
	return x, nil
}

// requestBody is a request body over bytes; closing it drops the bytes.
// The transport closes it once it has written it or given up, perhaps on
// another goroutine than the one reading it (hence the lock); a retry
// reads a new one (GetBody).
type requestBody struct {
	mu sync.Mutex
	r  bytes.Reader
}

// Reset makes b read body.
func (b *requestBody) Reset(body []byte) {
	b.mu.Lock()
	b.r.Reset(body)
	b.mu.Unlock()
}

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.Read(p)
}

// WriteTo lets the transport write the body in one piece.
func (b *requestBody) WriteTo(w io.Writer) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.r.WriteTo(w)
}

func (b *requestBody) Close() error {
	b.Reset(nil)
	return nil
}

// getBody is the request's GetBody: the transport replays the body when it
// retries on a fresh connection.
func (x *Exchange) getBody() (io.ReadCloser, error) {
	rb := new(requestBody)
	rb.Reset(x.reqBytes)
	return rb, nil
}

func noBody() (io.ReadCloser, error) { return http.NoBody, nil }

// onIdle is the idle timer's function.
func (x *Exchange) onIdle() { x.cancel(ErrIdleTimeout) }

// ReadAll reads the whole (bounded) body of a non-stream answer.
func (x *Exchange) ReadAll() ([]byte, error) {
	n := x.Resp.ContentLength
	if n < 0 || n > MaxResponseBody {
		n = 4096
	}
	// One buffer sized by Content-Length (+1 so that the final read that
	// sees EOF needs no growth), read into directly.
	const limit = MaxResponseBody + 1
	buf := make([]byte, 0, n+1)
	for len(buf) < limit {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		m, err := x.Body.Read(buf[len(buf):min(cap(buf), limit)])
		buf = buf[:len(buf)+m]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if len(buf) > MaxResponseBody {
		return nil, &Error{Provider: x.h.Provider, Kind: KindProtocol, Message: "response too large"}
	}
	return buf, nil
}

// Close releases the connection and the timer.
func (x *Exchange) Close() error {
	if x.timer != nil {
		x.timer.Stop()
	}
	x.cancel(nil)
	if x.Resp == nil {
		return nil
	}
	return x.Resp.Body.Close()
}

// idleBody is Exchange.Body: the response body behind the idle timer. It is
// the exchange itself under another method set, so it costs no allocation.
type idleBody Exchange

// Read arms the idle timer only while it waits on the upstream: time the
// gateway spends between reads (writing to a slow client) is not upstream
// silence. A client that stops reading is the server's write timeout's to
// handle.
func (b *idleBody) Read(p []byte) (int, error) {
	x := (*Exchange)(b)
	x.timer.Reset(x.idle)
	n, err := x.Resp.Body.Read(p)
	x.timer.Stop()
	if err != nil && err != io.EOF {
		if c := context.Cause(x.actx); errors.Is(c, ErrIdleTimeout) {
			return n, &Error{Provider: x.h.Provider, Kind: KindTimeout, Cause: fmt.Sprintf("no data for %v (idle_timeout)", x.idle)}
		}
		if e := TransportError(x.ctx, x.h.Provider, err); e != nil {
			return n, e
		}
	}
	return n, err
}

// ParseOpenAIError reads OpenAI's error envelope (also the bare
// {"message":...} or {"detail":...} shapes some compatible servers use).
// Only well-formed JSON fields are kept; raw bytes never reach the client.
func ParseOpenAIError(status int, body []byte) *Error {
	e := &Error{Status: status}
	if !jsonraw.Valid(body) {
		return e
	}
	root := gjson.ParseBytes(body)
	obj := root.Get("error")
	if obj.Type == gjson.String {
		e.Message = Truncate(obj.Str)
		return e
	}
	if !obj.IsObject() {
		obj = root
	}
	if m := obj.Get("message"); m.Type == gjson.String {
		e.Message = Truncate(m.Str)
	} else if d := obj.Get("detail"); d.Type == gjson.String {
		e.Message = Truncate(d.Str)
	}
	if v := obj.Get("type"); v.Type == gjson.String {
		e.Type = Truncate(v.Str)
	}
	if v := obj.Get("code"); v.Type == gjson.String {
		e.Code = Truncate(v.Str)
	}
	if v := obj.Get("param"); v.Type == gjson.String {
		e.Param = Truncate(v.Str)
	}
	return e
}
