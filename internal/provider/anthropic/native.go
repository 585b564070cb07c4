package anthropic

import (
	"context"
	"net/http"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

var (
	_ provider.MessagesProvider = (*Provider)(nil)
	_ provider.NativeProvider   = (*Provider)(nil)
)

// DoNative implements provider.NativeProvider: the identity translation of
// a Messages request (see Messages), with the client's anthropic-beta and
// anthropic-version headers sent as they are. The answer is Anthropic's,
// its usage read.
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
			return nil, &provider.Error{Provider: p.Name(), Kind: provider.KindProtocol, Message: "could not rewrite request"}
		}
	}
	x, b, err := p.SendWith(ctx, messagesPath, body, stream, provider.AcceptAny, client)
	if err != nil {
		return nil, err
	}
	if x != nil {
		return &provider.Response{Stream: x.Stream(new(nativeEvents))}, nil
	}
	return &provider.Response{Body: b}, nil
}

// nativeEvents passes Anthropic's events on as they come and accounts their
// usage; an "error" event is a *provider.Error, the end without
// message_stop a cut stream.
type nativeEvents struct{ usage openai.Usage }

// Usage implements provider.UsageReporter.
func (d *nativeEvents) Usage() openai.Usage { return d.usage }

func (d *nativeEvents) Decode(ev sse.Event, q *provider.Events) (bool, error) {
	// Every event of the Messages stream is named and carries a JSON
	// object whose "type" is that name; one without a name is not of the
	// protocol (dropped), data that is not such JSON means the upstream is
	// broken.
	if len(ev.Name) == 0 {
		return false, nil
	}
	if !jsonraw.ValidUTF8(ev.Data) || ev.Data[jsonraw.SkipSpace(jsonraw.String(ev.Data), 0)] != '{' {
		return false, provider.Protocol("malformed stream event")
	}
	if typ := jsonraw.Field(jsonraw.String(ev.Data), "type"); len(typ) < 2 || typ[1:len(typ)-1] != string(ev.Name) {
		if string(ev.Name) != "error" {
			return false, nil
		}
	}
	switch string(ev.Name) {
	case "error":
		e := ParseError(0, ev.Data)
		if e.Status == 0 {
			e.Status = errorTypeStatus(gjson.GetBytes(ev.Data, "error.type").Str)
		}
		return false, e
	case "message_start":
		d.usage = UsageOf(openai.GetInPlace(ev.Data, "message.usage"))
	case "message_delta":
		// Input tokens arrive in message_start, output tokens here.
		u := openai.GetInPlace(ev.Data, "usage")
		if out := u.Get("output_tokens"); out.Exists() {
			d.usage.OutputTokens = out.Int()
			d.usage.Known = true
		}
		if in := u.Get("input_tokens"); in.Exists() {
			d.usage.InputTokens = UsageOf(u).InputTokens
		}
	case "message_stop":
		q.Pass(ev)
		return true, nil
	}
	q.Pass(ev)
	return false, nil
}

func (*nativeEvents) End(*provider.Events) error {
	return provider.Protocol("stream ended unexpectedly")
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
