// Package openai holds the OpenAI wire format pieces the gateway needs on its
// hot path: the error envelope, a zero-copy view of request bodies and usage
// accounting. Requests are read with gjson and rewritten with sjson; nothing
// here unmarshals a whole body.
package openai

import (
	"net/http"
	"strconv"
)

// Error types used in the envelope, as OpenAI uses them.
// https://platform.openai.com/docs/guides/error-codes
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypePermission     = "permission_error"
	TypeNotFound       = "not_found_error"
	TypeRateLimit      = "rate_limit_exceeded"
	TypeInsufficient   = "insufficient_quota"
	TypeServer         = "server_error"
	TypeUpstream       = "upstream_error"
	TypeTimeout        = "timeout_error"
)

// Error is an error destined for a client, rendered in OpenAI's envelope
// {"error":{"message","type","param","code"}}. Message must never contain a
// secret or a raw body from a non-provider.
type Error struct {
	Status     int
	Message    string
	Type       string
	Param      string // empty renders as null
	Code       string // empty renders as null
	RetryAfter int    // seconds; sent as Retry-After when > 0
}

func (e *Error) Error() string { return e.Message }

// Errorf-free constructors for the common cases keep call sites short.

// BadRequest is a 400 invalid_request_error.
func BadRequest(msg, param, code string) *Error {
	return &Error{Status: http.StatusBadRequest, Message: msg, Type: TypeInvalidRequest, Param: param, Code: code}
}

// ModelNotFound is OpenAI's 404 for a model the caller cannot use.
func ModelNotFound(model string) *Error {
	return &Error{
		Status:  http.StatusNotFound,
		Message: "The model `" + model + "` does not exist or you do not have access to it.",
		Type:    TypeInvalidRequest,
		Param:   "model",
		Code:    "model_not_found",
	}
}

// AppendJSON appends the envelope to dst.
func (e *Error) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"error":{"message":`...)
	dst = AppendString(dst, e.Message)
	dst = append(dst, `,"type":`...)
	dst = AppendString(dst, e.Type)
	dst = append(dst, `,"param":`...)
	dst = appendNullable(dst, e.Param)
	dst = append(dst, `,"code":`...)
	dst = appendNullable(dst, e.Code)
	return append(dst, "}}"...)
}

func appendNullable(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, "null"...)
	}
	return AppendString(dst, s)
}

// WriteError writes err as an OpenAI error response.
func WriteError(w http.ResponseWriter, err *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	if err.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(err.RetryAfter))
	}
	status := err.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	w.WriteHeader(status)
	_, _ = w.Write(err.AppendJSON(make([]byte, 0, 128+len(err.Message))))
}
