package anthropic

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

var (
	_ provider.MessagesProvider   = (*Provider)(nil)
	_ provider.NativeProvider     = (*Provider)(nil)
	_ provider.UnsupportedDropper = (*Provider)(nil)
)

// Speaks implements provider.NativeProvider: Anthropic's Messages API.
func (p *Provider) Speaks(f provider.Format) bool { return f == provider.FormatAnthropic }

// DropsUnsupported implements provider.UnsupportedDropper.
func (p *Provider) DropsUnsupported() bool { return p.cfg.DropUnsupported }

// DoNative implements provider.NativeProvider with Messages; the client's
// anthropic-beta and anthropic-version headers are sent as they are.
func (p *Provider) DoNative(ctx context.Context, call *provider.NativeCall) (*provider.Response, error) {
	resp, err := p.messages(ctx, call.Body, call.Model, call.Stream, call.Header)
	if err != nil {
		return nil, err
	}
	resp.Format = provider.FormatAnthropic
	if resp.Body != nil {
		resp.Usage = UsageOf(gjson.GetBytes(resp.Body, "usage"))
	}
	return resp, nil
}

// Messages passes an Anthropic Messages request through untouched but for
// the model name, and returns Anthropic's answer untouched: the gateway's
// inbound /v1/messages uses it when the target is an Anthropic provider.
// https://docs.anthropic.com/en/api/messages
func (p *Provider) Messages(ctx context.Context, body []byte, model string, stream bool) (*provider.Response, error) {
	return p.messages(ctx, body, model, stream, nil)
}

func (p *Provider) messages(ctx context.Context, body []byte, model string, stream bool, client http.Header) (*provider.Response, error) {
	if gjson.GetBytes(body, "model").Str != model {
		var err error
		if body, err = sjson.SetBytes(body, "model", model); err != nil {
			return nil, &provider.Error{Provider: p.cfg.Name, Kind: provider.KindProtocol, Message: "could not rewrite request"}
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return nil, &provider.Error{Provider: p.cfg.Name, Kind: provider.KindConnect}
	}
	h := req.Header
	for k, v := range p.cfg.Headers {
		h[k] = v
	}
	h.Set("Content-Type", "application/json")
	h.Set("Anthropic-Version", p.cfg.Version)
	for k, v := range client {
		h[k] = v // the client's anthropic-beta, anthropic-version
	}
	if p.cfg.APIKey != "" {
		h.Set("X-Api-Key", p.cfg.APIKey)
	}
	x, err := p.http.Send(ctx, req, ParseError)
	if err != nil {
		return nil, err
	}
	if stream {
		if ct := x.Resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			x.Close()
			return nil, &provider.Error{Provider: p.cfg.Name, Kind: provider.KindProtocol, Message: "expected an event stream"}
		}
		rd := provider.GetSSEReader(x.Body)
		return &provider.Response{Stream: &nativeStream{rd: rd, closer: x, name: p.cfg.Name}}, nil
	}
	defer x.Close()
	b, err := x.ReadAll()
	if err != nil {
		return nil, err
	}
	if !jsonraw.Valid(b) {
		return nil, &provider.Error{Provider: p.cfg.Name, Kind: provider.KindProtocol, Message: "answer is not JSON"}
	}
	return &provider.Response{Body: b}, nil
}

// nativeStream yields Anthropic's events as they come; an "error" event is
// a *provider.Error, the end without message_stop a cut stream.
type nativeStream struct {
	usage   openai.Usage
	rd      *sse.Reader
	closer  io.Closer
	name    string
	started bool
	done    bool
}

func (s *nativeStream) Next() (sse.Event, error) {
	if s.done || s.rd == nil {
		return sse.Event{}, io.EOF
	}
	var ev sse.Event
	for {
		var err error
		ev, err = s.rd.Next()
		if err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF || err == sse.ErrTooLarge {
				return ev, s.protocol("stream ended unexpectedly")
			}
			if pe, ok := err.(*provider.Error); ok {
				pe.StreamStarted = s.started
			}
			return ev, err
		}
		// Every event of the Messages stream is named and carries a JSON
		// object whose "type" is that name; one without a name is not of
		// the protocol (dropped), data that is not such JSON means the
		// upstream is broken.
		if len(ev.Name) == 0 {
			continue
		}
		if !jsonraw.ValidUTF8(ev.Data) || ev.Data[jsonraw.SkipSpace(jsonraw.String(ev.Data), 0)] != '{' {
			return sse.Event{}, s.protocol("malformed stream event")
		}
		if typ := jsonraw.Field(jsonraw.String(ev.Data), "type"); len(typ) < 2 || typ[1:len(typ)-1] != string(ev.Name) {
			if string(ev.Name) != "error" {
				continue
			}
		}
		break
	}
	switch string(ev.Name) {
	case "error":
		e := ParseError(0, ev.Data)
		e.Provider, e.StreamStarted = s.name, s.started
		if e.Status == 0 {
			e.Status = errorTypeStatus(gjson.GetBytes(ev.Data, "error.type").Str)
		}
		return sse.Event{}, e
	case "message_start":
		s.usage = UsageOf(openai.GetInPlace(ev.Data, "message.usage"))
	case "message_delta":
		// Input tokens arrive in message_start, output tokens here.
		u := openai.GetInPlace(ev.Data, "usage")
		if out := u.Get("output_tokens"); out.Exists() {
			s.usage.OutputTokens = out.Int()
			s.usage.Known = true
		}
		if in := u.Get("input_tokens"); in.Exists() {
			s.usage.InputTokens = UsageOf(u).InputTokens
		}
	case "message_stop":
		s.done = true
	}
	s.started = true
	return ev, nil
}

// Usage implements provider.UsageReporter.
func (s *nativeStream) Usage() openai.Usage { return s.usage }

func (s *nativeStream) protocol(msg string) *provider.Error {
	return &provider.Error{Provider: s.name, Kind: provider.KindProtocol, Message: msg, StreamStarted: s.started}
}

func (s *nativeStream) Pending() bool { return s.rd != nil && !s.done && s.rd.HasEvent() }

func (s *nativeStream) Close() error {
	if s.rd != nil {
		provider.PutSSEReader(s.rd)
		s.rd = nil
	}
	return s.closer.Close()
}

// UsageOf reads Anthropic's usage object: prompt tokens include cache reads
// and writes, as OpenAI counts them.
func UsageOf(u gjson.Result) openai.Usage {
	if !u.IsObject() {
		return openai.Usage{}
	}
	read := u.Get("cache_read_input_tokens").Int()
	in := u.Get("input_tokens")
	out := u.Get("output_tokens")
	return openai.Usage{
		InputTokens:  in.Int() + read + u.Get("cache_creation_input_tokens").Int(),
		OutputTokens: out.Int(),
		CachedTokens: read,
		Known:        in.Exists() || out.Exists(),
	}
}
