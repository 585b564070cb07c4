// Package anthropic is the dialect of Anthropic's clients: the Messages API
// at POST /v1/messages (https://docs.anthropic.com/en/api/messages,
// https://docs.anthropic.com/en/api/messages-streaming,
// https://docs.anthropic.com/en/api/errors). Requests are translated to
// OpenAI's format for routing and for translating providers, and kept as
// sent for providers that speak Anthropic's API; answers in Anthropic's
// format pass as they are, OpenAI's are translated back.
package anthropic

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// Anthropic's protocol headers, as Go canonicalizes them.
const (
	HeaderBeta    = "Anthropic-Beta"
	HeaderVersion = "Anthropic-Version"
)

// nativeOnly are the top-level Messages API members that change the answer
// and have no OpenAI counterpart: only an Anthropic target honours them.
// (cache_control hints, which change no answer, are dropped when
// translating.)
var nativeOnly = []string{"top_k", "thinking", "mcp_servers", "container", "context_management"}

// Dialect is Anthropic's client format. The zero value is ready to use.
type Dialect struct{}

var _ dialect.Dialect = Dialect{}

// Format implements dialect.Dialect.
func (Dialect) Format() provider.Format { return provider.FormatAnthropic }

// Parse implements dialect.Dialect: the body is checked (openai.CheckBody),
// stripped of proxy-steering members, kept as the native body and
// translated to an OpenAI chat request.
func (Dialect) Parse(r *dialect.Request, op openai.Op, body []byte, h http.Header, maxDepth int) *openai.Error {
	if oe := openai.CheckBody(body, maxDepth); oe != nil {
		return oe
	}
	native := openai.StripSteering(body)
	translated, err := RequestToOpenAI(native)
	if err != nil {
		oe, ok := err.(*openai.Error)
		if !ok {
			oe = openai.BadRequest("The request could not be translated.", "", "invalid_request")
		}
		return oe
	}
	req, oe := openai.ParseRequest(op, translated, maxDepth)
	if oe != nil {
		return oe
	}
	*r = dialect.Request{OpenAI: req, Format: provider.FormatAnthropic, Native: native}
	openai.ParseInPlace(native).ForEach(func(k, _ gjson.Result) bool {
		if slices.Contains(nativeOnly, k.Str) {
			r.Unsupported = append(r.Unsupported, k.Str)
		}
		return true
	})
	for _, k := range [...]string{HeaderBeta, HeaderVersion} {
		if v := h[k]; len(v) > 0 {
			if r.Header == nil {
				r.Header = make(http.Header, 2)
			}
			r.Header[k] = v
		}
	}
	return nil
}

// WriteError implements dialect.Dialect: Anthropic's error shape
// {"type":"error","error":{"type","message"}}.
func (Dialect) WriteError(w http.ResponseWriter, e *openai.Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	_, _ = w.Write(ErrorBody(e.Status, e.Message))
}

// Body implements dialect.Dialect: an Anthropic message passes, an OpenAI
// chat completion is translated.
func (Dialect) Body(_ *dialect.Request, body []byte, f provider.Format) ([]byte, *openai.Error) {
	if f == provider.FormatAnthropic {
		return body, nil
	}
	out, err := ResponseFromOpenAI(body)
	if err != nil {
		return nil, &openai.Error{Status: http.StatusBadGateway, Type: openai.TypeUpstream, Code: "upstream_invalid_response",
			Message: "The upstream answer could not be translated."}
	}
	return out, nil
}

// Stream implements dialect.Dialect: Anthropic events pass, OpenAI chunks
// are translated.
func (Dialect) Stream(r *dialect.Request, f provider.Format) dialect.StreamWriter {
	if f == provider.FormatAnthropic {
		return native{}
	}
	return &translated{tr: NewOpenAIToAnthropicStream(r.OpenAI.Model)}
}

var evError = []byte("error")

func writeFail(e *openai.Error, to dialect.Sink) {
	to.Event(evError, ErrorBody(e.Status, e.Message))
}

// native passes Anthropic's events as they are; the stream ends with
// message_stop, which the upstream sent.
type native struct{}

func (native) Event(ev *dialect.Event, to dialect.Sink) error { to.Event(ev.Name, ev.Data); return nil }
func (native) End(dialect.Sink)                               {}
func (native) Fail(e *openai.Error, to dialect.Sink)          { writeFail(e, to) }

// translated turns OpenAI chunks into Anthropic's events.
type translated struct {
	tr *OpenAIToAnthropicStream
	to dialect.Sink
}

func (t *translated) emit(name, data []byte) { t.to.Event(name, data) }

func (t *translated) Event(ev *dialect.Event, to dialect.Sink) error {
	if bytes.Equal(ev.Data, sse.Done) {
		return nil
	}
	t.to = to
	return t.tr.Translate(ev.Data, t.emit)
}

func (t *translated) End(to dialect.Sink) {
	t.to = to
	t.tr.Finish(t.emit)
}

func (t *translated) Fail(e *openai.Error, to dialect.Sink) { writeFail(e, to) }
