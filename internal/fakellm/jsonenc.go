package fakellm

import (
	"strconv"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

// Hand-rolled JSON encoding helpers: answers are built with append into
// reusable buffers to keep the per-chunk cost of streams allocation-free.

// appendJSONString appends s as a JSON string literal (invalid UTF-8
// replaced by U+FFFD, U+2028/U+2029 escaped), as the gateway writes them.
func appendJSONString(b []byte, s string) []byte { return openai.AppendString(b, s) }

// appendEscaped appends s escaped for use inside a JSON string literal: the
// output of appendJSONString without its quotes.
func appendEscaped(b []byte, s string) []byte {
	n := len(b)
	b = openai.AppendString(b, s)
	copy(b[n:], b[n+1:len(b)-1])
	return b[:len(b)-2]
}

// appendNullableString appends s as a JSON string, or null when empty.
func appendNullableString(b []byte, s string) []byte {
	if s == "" {
		return append(b, "null"...)
	}
	return appendJSONString(b, s)
}

// appendInt appends an integer.
func appendInt(b []byte, n int) []byte { return strconv.AppendInt(b, int64(n), 10) }

// appendKeyInt appends `,"key":n` (key must not need escaping).
func appendKeyInt(b []byte, key string, n int) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendInt(b, n)
}
