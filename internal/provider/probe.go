package provider

import (
	"context"
	"io"
	"net/http"
)

// Probe asks the provider for its models list (GET <base>/models, which
// OpenAI's API and those copying it, Anthropic's, Gemini's and Cohere's
// all serve), with the provider's credentials: a cheap request that says
// whether the provider is up. It returns an *Error for a failed request or
// a status other than 2xx.
func (t *Transport) Probe(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.URL("models"), nil)
	if err != nil {
		return &Error{Provider: t.name, Kind: KindConnect, Cause: causeOf(err)}
	}
	req.Header = t.hdr[AcceptJSON].Clone()
	req.Header.Del("Content-Type")
	resp, err := t.http.Client.Do(req)
	if err != nil {
		return TransportError(ctx, t.name, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &Error{Provider: t.name, Kind: KindStatus, Status: resp.StatusCode, Message: "health check: " + http.StatusText(resp.StatusCode)}
	}
	return nil
}
