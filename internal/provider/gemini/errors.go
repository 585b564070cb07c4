package gemini

import (
	"net/http"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// ParseError reads Google's error envelope, a google.rpc.Status:
//
//	{"error":{"code":429,"message":"...","status":"RESOURCE_EXHAUSTED",
//	  "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}}
//
// (also wrapped in an array, as :streamGenerateContent without alt=sse
// answers). Message is Google's message; Code is the lowercased status
// ("resource_exhausted"); Type is OpenAI's error type for the status:
//
//	INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE → invalid_request_error
//	UNAUTHENTICATED                                     → authentication_error
//	PERMISSION_DENIED                                   → permission_error
//	NOT_FOUND                                           → not_found_error
//	RESOURCE_EXHAUSTED                                  → rate_limit_exceeded
//	DEADLINE_EXCEEDED                                   → timeout_error
//	UNAVAILABLE, INTERNAL, UNKNOWN, ...                 → server_error
//
// RetryAfter is RetryInfo.retryDelay. Retryability follows the HTTP status
// (429 RESOURCE_EXHAUSTED and 503 UNAVAILABLE are retryable).
// https://ai.google.dev/gemini-api/docs/troubleshooting
// https://ai.google.dev/api/generate-content (error responses)
//
// A body that is not Google's shape falls back to OpenAI's envelope.
func ParseError(status int, body []byte) *provider.Error {
	e, delay, _ := parseError(status, body)
	e.RetryAfter = delay
	return e
}

// codeKeyInvalid is google.rpc.ErrorInfo's reason for a rejected API key.
const codeKeyInvalid = "API_KEY_INVALID"

// parseError is ParseError; it also returns the RetryInfo delay and whether
// Google rejected the API key.
func parseError(status int, body []byte) (e *provider.Error, delay time.Duration, keyInvalid bool) {
	if !jsonraw.Valid(body) {
		return &provider.Error{Status: status}, 0, false
	}
	root := gjson.ParseBytes(body)
	if root.IsArray() {
		root = root.Get("0")
	}
	obj := root.Get("error")
	if !obj.IsObject() || obj.Get("status").Type != gjson.String && obj.Get("code").Type != gjson.Number && !obj.Get("details").IsArray() {
		return provider.ParseOpenAIError(status, body), 0, false
	}
	e = googleError(obj, status)
	obj.Get("details").ForEach(func(_, d gjson.Result) bool {
		typ := d.Get(`\@type`).Str
		switch {
		case strings.HasSuffix(typ, "google.rpc.RetryInfo"):
			delay = parseDuration(d.Get("retryDelay"))
		case strings.HasSuffix(typ, "google.rpc.ErrorInfo"):
			keyInvalid = keyInvalid || d.Get("reason").Str == codeKeyInvalid
		}
		return true
	})
	return e, delay, keyInvalid
}

// googleError builds the error of a google.rpc.Status object; status is
// the HTTP status (0 when unknown: the object's code is used).
func googleError(obj gjson.Result, status int) *provider.Error {
	e := &provider.Error{Status: status}
	if m := obj.Get("message"); m.Type == gjson.String {
		e.Message = provider.Truncate(m.Str)
	}
	st := obj.Get("status").Str
	if e.Status == 0 {
		if c := obj.Get("code"); c.Type == gjson.Number && c.Int() >= 400 && c.Int() <= 599 {
			e.Status = int(c.Int())
		} else {
			e.Status = statusOf(st)
		}
	}
	if st != "" && len(st) <= 64 {
		e.Code = strings.ToLower(st)
	}
	e.Type = errorType(st, e.Status)
	return e
}

// errorType maps a google.rpc.Code name (or, without one, the HTTP status)
// to OpenAI's error type.
func errorType(status string, code int) string {
	switch status {
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE":
		return openai.TypeInvalidRequest
	case "UNAUTHENTICATED":
		return openai.TypeAuthentication
	case "PERMISSION_DENIED":
		return openai.TypePermission
	case "NOT_FOUND":
		return openai.TypeNotFound
	case "RESOURCE_EXHAUSTED":
		return openai.TypeRateLimit
	case "DEADLINE_EXCEEDED":
		return openai.TypeTimeout
	case "UNAVAILABLE", "INTERNAL", "UNKNOWN", "DATA_LOSS", "ABORTED", "CANCELLED", "UNIMPLEMENTED":
		return openai.TypeServer
	}
	switch {
	case code == http.StatusUnauthorized:
		return openai.TypeAuthentication
	case code == http.StatusForbidden:
		return openai.TypePermission
	case code == http.StatusNotFound:
		return openai.TypeNotFound
	case code == http.StatusTooManyRequests:
		return openai.TypeRateLimit
	case code >= 500:
		return openai.TypeServer
	}
	return openai.TypeInvalidRequest
}

// statusOf maps a google.rpc.Code name to its HTTP status (for errors
// reported inside a stream without a numeric code).
func statusOf(status string) int {
	switch status {
	case "INVALID_ARGUMENT", "FAILED_PRECONDITION", "OUT_OF_RANGE":
		return http.StatusBadRequest
	case "UNAUTHENTICATED":
		return http.StatusUnauthorized
	case "PERMISSION_DENIED":
		return http.StatusForbidden
	case "NOT_FOUND":
		return http.StatusNotFound
	case "ABORTED", "ALREADY_EXISTS":
		return http.StatusConflict
	case "RESOURCE_EXHAUSTED":
		return http.StatusTooManyRequests
	case "UNIMPLEMENTED":
		return http.StatusNotImplemented
	case "UNAVAILABLE":
		return http.StatusServiceUnavailable
	case "DEADLINE_EXCEEDED":
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// parseDuration reads a protobuf Duration in its JSON form ("30s",
// "1.500s"); anything else (or a negative or absurd value) is 0.
func parseDuration(v gjson.Result) time.Duration {
	if v.Type != gjson.String || !strings.HasSuffix(v.Str, "s") {
		return 0
	}
	d, err := time.ParseDuration(v.Str)
	if err != nil || d < 0 || d > 24*time.Hour {
		return 0
	}
	return d
}
