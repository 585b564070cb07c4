// Package openai is the dialect of OpenAI's clients: the Chat Completions,
// Completions, Embeddings and Responses APIs
// (https://platform.openai.com/docs/api-reference). The pipeline's own view
// is OpenAI's format, so requests parse in place and answers pass as they
// are; the dialect only drops the usage chunk the gateway asked for when the
// client did not, ends streams with data: [DONE], and shapes errors.
package openai

import (
	"net/http"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// HeaderBeta is OpenAI's protocol header (opt-in to beta APIs), as Go
// canonicalizes it.
const HeaderBeta = "Openai-Beta"

// Dialect is OpenAI's client format. The zero value is ready to use.
type Dialect struct{}

var _ dialect.Dialect = Dialect{}

// Format implements dialect.Dialect.
func (Dialect) Format() provider.Format { return provider.FormatOpenAI }

// Parse implements dialect.Dialect with openai.ParseRequest.
func (Dialect) Parse(r *dialect.Request, op openai.Op, body []byte, h http.Header, maxDepth int) *openai.Error {
	req, oe := openai.ParseRequest(op, body, maxDepth)
	if oe != nil {
		return oe
	}
	*r = dialect.Request{OpenAI: req, Format: provider.FormatOpenAI}
	if v := h[HeaderBeta]; len(v) > 0 {
		r.Header = http.Header{HeaderBeta: v}
	}
	return nil
}

// WriteError implements dialect.Dialect: OpenAI's error envelope.
func (Dialect) WriteError(w http.ResponseWriter, e *openai.Error) { openai.WriteError(w, e) }

// Body implements dialect.Dialect: OpenAI answers pass as they are.
func (Dialect) Body(_ *dialect.Request, body []byte, f provider.Format) ([]byte, *openai.Error) {
	if f != provider.FormatOpenAI {
		return nil, untranslatable()
	}
	return body, nil
}

// Stream implements dialect.Dialect.
func (Dialect) Stream(r *dialect.Request, _ provider.Format) dialect.StreamWriter {
	return stream{r.OpenAI}
}

func untranslatable() *openai.Error {
	return &openai.Error{Status: http.StatusBadGateway, Type: openai.TypeUpstream, Code: "upstream_invalid_response",
		Message: "The upstream answer could not be translated."}
}

// stream writes OpenAI events. It is one pointer, so it needs no
// allocation as an interface.
type stream struct{ req *openai.Request }

var (
	evError   = []byte("error")
	doneEvent = []byte("[DONE]")
)

func (s stream) Event(ev *dialect.Event, to dialect.Sink) error {
	if ev.UsageOnly && !s.req.ClientUsage {
		return nil // the usage chunk the gateway asked for
	}
	to.Event(ev.Name, ev.Data)
	return nil
}

func (s stream) End(to dialect.Sink) {
	if s.req.Op != openai.OpResponses {
		to.Event(nil, doneEvent)
	}
}

func (s stream) Fail(e *openai.Error, to dialect.Sink) {
	if s.req.Op == openai.OpResponses {
		to.Event(evError, e.AppendJSON(nil))
		return
	}
	to.Event(nil, e.AppendJSON(nil))
}
