package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
)

// Auth is where a provider's API key is sent: the header Header with the
// value Prefix + key.
type Auth struct {
	Header string
	Prefix string
}

// BearerAuth sends the key as "Authorization: Bearer <key>".
var BearerAuth = Auth{Header: "Authorization", Prefix: "Bearer "}

// KeyHeader sends the key as the whole value of header name.
func KeyHeader(name string) Auth { return Auth{Header: name} }

// Config configures the transport of one provider.
type Config struct {
	// Name is the provider's configured name.
	Name string
	// BaseURL is the API's absolute http(s) URL, without credentials.
	BaseURL string
	// AllowQuery accepts a query and fragment in BaseURL.
	AllowQuery bool
	// APIKey is sent as Auth says; empty sends none.
	APIKey string
	Auth   Auth
	// Headers are added to every request; the content type, Accept, the
	// API's own headers and the key override those of the same name.
	Headers http.Header
	// HTTP is the pooled client; nil makes one with Timeouts.
	HTTP     *HTTP
	Timeouts Timeouts
	// H2C makes the client made for Timeouts speak HTTP/2 without TLS
	// (prior knowledge) to an http:// BaseURL: streams share connections
	// instead of holding one each.
	H2C bool
}

// Accept is what a request asks the upstream to answer with.
type Accept uint8

// Accept values.
const (
	AcceptJSON   Accept = iota // Accept: application/json
	AcceptStream               // Accept: text/event-stream
	AcceptAny                  // no Accept header
	numAccept
)

// Transport is a configured upstream: it implements [Provider] with a
// [Translator] for the schema. It builds and sends the requests (one
// template per path, URL parsed and headers built once), checks the
// answer's content type, reads the bounded body and checks it is JSON,
// parses error answers with the translator, and reads event streams
// ([SSEStream]).
type Transport struct {
	name     string
	endpoint string // no trailing slash
	tr       Translator
	http     *HTTP
	hdr      [numAccept]http.Header

	mu   sync.RWMutex
	tmpl map[tmplKey]*http.Request
}

type tmplKey struct {
	path   string
	accept Accept
}

// maxTemplates bounds the cached request templates: paths that name a
// model (Azure deployments, Gemini models) may come from clients; later
// ones are built per request.
const maxTemplates = 256

// New checks cfg and returns the transport of tr.
func New(cfg Config, tr Translator) (*Transport, error) {
	check := CheckBaseURL
	if cfg.AllowQuery {
		check = CheckBaseURLAllowQuery
	}
	u, err := check(cfg.Name, cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	if cfg.H2C && u.Scheme != "http" {
		return nil, fmt.Errorf("provider %q: h2c needs an http:// base_url (over https, HTTP/2 is negotiated by TLS)", cfg.Name)
	}
	h := cfg.HTTP
	if h == nil {
		h = NewHTTP(cfg.Name, cfg.Timeouts)
		if cfg.H2C {
			h.h2c()
		}
	}
	api := make(http.Header)
	t := &Transport{name: cfg.Name, tr: tr, http: h, tmpl: make(map[tmplKey]*http.Request)}
	t.endpoint = tr.Endpoint(strings.TrimRight(cfg.BaseURL, "/"), api)
	for a := range numAccept {
		hd := make(http.Header, len(cfg.Headers)+len(api)+3)
		for k, v := range cfg.Headers {
			hd[k] = v
		}
		hd.Set("Content-Type", "application/json")
		switch a {
		case AcceptJSON:
			hd.Set("Accept", "application/json")
		case AcceptStream:
			hd.Set("Accept", "text/event-stream")
		}
		for k, v := range api {
			hd[k] = v
		}
		if cfg.APIKey != "" {
			hd.Set(cfg.Auth.Header, cfg.Auth.Prefix+cfg.APIKey)
		}
		t.hdr[a] = hd
	}
	return t, nil
}

// Name implements Provider.
func (t *Transport) Name() string { return t.name }

// HTTP is the transport's pooled client.
func (t *Transport) HTTP() *HTTP { return t.http }

// Translator is the transport's schema translator.
func (t *Transport) Translator() Translator { return t.tr }

// URL is the upstream URL of a request path.
func (t *Transport) URL(path string) string { return t.endpoint + "/" + path }

// Speaks implements Speaker by asking the translator (a translator that
// implements Speaker speaks that format; others translate everything).
func (t *Transport) Speaks(f Format) bool {
	s, ok := t.tr.(Speaker)
	return ok && s.Speaks(f)
}

// DropsUnsupported implements UnsupportedDropper by asking the translator.
func (t *Transport) DropsUnsupported() bool {
	d, ok := t.tr.(UnsupportedDropper)
	return ok && d.DropsUnsupported()
}

// Do implements Provider.
func (t *Transport) Do(ctx context.Context, call *Call) (*Response, error) {
	r, err := t.tr.Request(call)
	if err != nil {
		return nil, t.named(err, "could not translate request")
	}
	accept := AcceptJSON
	if r.Stream {
		accept = AcceptStream
	}
	x, body, err := t.SendWith(ctx, r.Path, r.Body, r.Stream, accept, call.Header)
	if err != nil {
		return nil, err
	}
	if x != nil {
		if r.Answer == nil {
			return &Response{Stream: x.Stream(OpenAIEvents(call.Req.Op))}, nil
		}
		s := x.Stream(r.Answer.Decoder())
		s.q.grow()
		return &Response{Stream: s}, nil
	}
	if r.Answer == nil {
		return &Response{Body: body}, nil
	}
	out, err := r.Answer.Body(body)
	if err != nil {
		return nil, t.named(err, "could not translate answer")
	}
	return &Response{Body: out}, nil
}

// named returns a translator's error as an *Error naming the provider;
// one that is not an *Error becomes a KindProtocol error saying msg.
func (t *Transport) named(err error, msg string) *Error {
	var pe *Error
	if !errors.As(err, &pe) {
		pe = Protocol(msg)
	}
	pe.Provider = t.name
	return pe
}

// Send posts body to path and returns the 2xx answer: for a stream the
// exchange, checked to carry an event stream (read it with
// Exchange.Stream, which closes it), otherwise the whole bounded body,
// checked to be JSON. Errors are *Error (or the context's error when the
// client went away); error answers are read by the translator.
func (t *Transport) Send(ctx context.Context, path string, body []byte, stream bool, accept Accept) (*Exchange, []byte, error) {
	return t.SendWith(ctx, path, body, stream, accept, nil)
}

// SendWith is Send with the client's protocol headers (Call.Header,
// NativeCall.Header) added to the request.
func (t *Transport) SendWith(ctx context.Context, path string, body []byte, stream bool, accept Accept, extra http.Header) (*Exchange, []byte, error) {
	tmpl, err := t.template(path, accept)
	if err != nil {
		return nil, nil, &Error{Provider: t.name, Kind: KindConnect, Cause: causeOf(err)}
	}
	if tp, ts := traceContext(ctx); len(extra) > 0 || tp != nil {
		// A copy of the shared template (which never changes) with them
		// and the trace context.
		c := *tmpl
		c.Header = requestHeader(tmpl.Header, extra, tp, ts)
		tmpl = &c
	}
	x, err := t.http.Post(ctx, tmpl, body, t.tr.ParseError)
	if err != nil {
		return nil, nil, err
	}
	if stream {
		if ct := x.Resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			x.Close()
			return nil, nil, &Error{Provider: t.name, Kind: KindProtocol, Message: "expected an event stream"}
		}
		return x, nil, nil
	}
	defer x.Close()
	b, err := x.ReadAll()
	if err != nil {
		return nil, nil, err
	}
	if !jsonraw.Valid(b) {
		return nil, nil, &Error{Provider: t.name, Kind: KindProtocol, Message: "answer is not JSON"}
	}
	return nil, b, nil
}

// template returns the request template of a path (see HTTP.Post).
func (t *Transport) template(path string, accept Accept) (*http.Request, error) {
	key := tmplKey{path, accept}
	t.mu.RLock()
	req := t.tmpl[key]
	t.mu.RUnlock()
	if req != nil {
		return req, nil
	}
	req, err := http.NewRequest(http.MethodPost, t.URL(path), nil)
	if err != nil {
		return nil, fmt.Errorf("provider %q: request URL: %w", t.name, err)
	}
	req.Header = t.hdr[accept]
	// An empty Host sends the URL's (NewRequest copied it, port cleaned
	// alike), and spares http.Client.send a copy of the URL per request.
	req.Host = ""
	t.mu.Lock()
	if len(t.tmpl) < maxTemplates {
		t.tmpl[key] = req
	}
	t.mu.Unlock()
	return req, nil
}
