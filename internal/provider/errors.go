package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

// Kind classifies upstream failures.
type Kind uint8

// Failure kinds.
const (
	KindStatus   Kind = iota // the upstream answered with an error status
	KindConnect              // could not connect or the connection broke
	KindTimeout              // connect, first-byte or idle timeout
	KindProtocol             // the upstream answered something unparseable
)

// Error is an upstream failure. Its fields are safe to show a client: they
// never hold a secret, a URL or a raw body from a non-provider.
type Error struct {
	Provider   string
	Kind       Kind
	Status     int           // upstream HTTP status for KindStatus
	RetryAfter time.Duration // from Retry-After / retry-after-ms, if sent
	// Message, Type, Code and Param come from the provider's own error body
	// when it sent a well-formed one.
	Message, Type, Code, Param string
	// StreamStarted is set when the failure happened after the first event.
	StreamStarted bool
	// Cause says, for the operator's log only, what failed below HTTP for
	// KindConnect and KindTimeout ("dial tcp 10.0.0.7:443: connect:
	// connection refused"): never shown to a client, without the request
	// URL, at most maxCause bytes, credentials redacted (Redactor.Error).
	Cause string
}

// maxCause bounds Error.Cause.
const maxCause = 256

func (e *Error) Error() string {
	switch e.Kind {
	case KindConnect:
		return fmt.Sprintf("provider %s: connection failed", e.Provider)
	case KindTimeout:
		return fmt.Sprintf("provider %s: timed out", e.Provider)
	case KindProtocol:
		return fmt.Sprintf("provider %s: invalid response: %s", e.Provider, e.Message)
	}
	return fmt.Sprintf("provider %s: HTTP %d: %s", e.Provider, e.Status, e.Message)
}

// Retryable reports whether another attempt (same or other target) may
// succeed: connection failures, timeouts, 408, 409, 429 and 5xx (incl.
// Anthropic's 529 overloaded).
func (e *Error) Retryable() bool {
	switch e.Kind {
	case KindConnect, KindTimeout:
		return true
	case KindProtocol:
		return true
	}
	return e.Status == http.StatusRequestTimeout || e.Status == http.StatusConflict ||
		e.Status == http.StatusTooManyRequests || e.Status >= 500
}

// ClientError renders the failure for the client. Provider 4xx answers keep
// their status and the provider's message (the request itself was refused);
// everything else becomes 502/503/504 with a message naming only the
// provider.
func (e *Error) ClientError() *openai.Error {
	switch e.Kind {
	case KindConnect:
		return &openai.Error{Status: http.StatusBadGateway, Type: openai.TypeUpstream, Code: "upstream_unavailable",
			Message: "The upstream provider " + strconv.Quote(e.Provider) + " could not be reached."}
	case KindTimeout:
		return &openai.Error{Status: http.StatusGatewayTimeout, Type: openai.TypeTimeout, Code: "upstream_timeout",
			Message: "The upstream provider " + strconv.Quote(e.Provider) + " timed out."}
	case KindProtocol:
		return &openai.Error{Status: http.StatusBadGateway, Type: openai.TypeUpstream, Code: "upstream_invalid_response",
			Message: "The upstream provider " + strconv.Quote(e.Provider) + " returned an invalid response."}
	}
	msg := e.Message
	if msg == "" {
		msg = "The upstream provider " + strconv.Quote(e.Provider) + " returned HTTP " + strconv.Itoa(e.Status) + "."
	}
	switch {
	case e.Status == http.StatusTooManyRequests:
		ra := int((e.RetryAfter + time.Second - 1) / time.Second)
		return &openai.Error{Status: http.StatusTooManyRequests, Type: openai.TypeRateLimit, Code: nonEmpty(e.Code, "rate_limit_exceeded"),
			Message: msg, RetryAfter: ra}
	case e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		// The gateway's provider credentials were refused: not the client's fault,
		// and the provider's message may describe the key.
		return &openai.Error{Status: http.StatusBadGateway, Type: openai.TypeUpstream, Code: "upstream_auth_failed",
			Message: "The upstream provider " + strconv.Quote(e.Provider) + " rejected the gateway's credentials."}
	case e.Status >= 400 && e.Status < 500:
		return &openai.Error{Status: e.Status, Type: nonEmpty(e.Type, openai.TypeInvalidRequest), Code: e.Code, Param: e.Param, Message: msg}
	case e.Status == http.StatusServiceUnavailable || e.Status == 529:
		return &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeUpstream, Code: "upstream_overloaded", Message: msg}
	case e.Status == http.StatusGatewayTimeout:
		return &openai.Error{Status: http.StatusGatewayTimeout, Type: openai.TypeTimeout, Code: "upstream_timeout", Message: msg}
	}
	return &openai.Error{Status: http.StatusBadGateway, Type: openai.TypeUpstream, Code: "upstream_error", Message: msg}
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TransportError classifies an error from http.Client.Do or a body read. It
// returns ctx's error unchanged when the caller's context ended (the client
// went away), so that no retry happens.
func TransportError(ctx context.Context, provider string, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) || errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrIdleTimeout) || (errors.As(err, &ne) && ne.Timeout()) {
		return &Error{Provider: provider, Kind: KindTimeout, Cause: causeOf(err)}
	}
	return &Error{Provider: provider, Kind: KindConnect, Cause: causeOf(err)}
}

// causeOf is err's text without the request's method and URL (a
// *url.Error's), cut to maxCause bytes on a rune boundary.
func causeOf(err error) string {
	if err == nil {
		return ""
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		err = ue.Err
	}
	s := strings.ToValidUTF8(err.Error(), "\ufffd")
	if len(s) > maxCause {
		cut := maxCause
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// ParseRetryAfter reads retry-after-ms (Azure/OpenAI) or Retry-After
// (seconds or an HTTP date).
func ParseRetryAfter(h http.Header, now time.Time) time.Duration {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s <= 0 {
			return 0
		}
		return time.Duration(s * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
