package telemetry

import (
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
)

// eachField calls fn with each key (as written, without its quotes) and
// raw value of the JSON object obj's top level, in one pass and without
// allocating, until fn returns false. obj was checked (the client's body)
// or came from a provider that answered; on malformed input it stops.
func eachField(obj string, fn func(key, raw string) bool) {
	i := jsonraw.SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return
	}
	for i++; ; i++ {
		i = jsonraw.SkipSpace(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return
		}
		ks := i
		i = jsonraw.SkipString(obj, i)
		k := obj[ks+1 : i-1]
		i = jsonraw.SkipSpace(obj, i)
		if i >= len(obj) || obj[i] != ':' {
			return
		}
		i = jsonraw.SkipSpace(obj, i+1)
		vs := i
		i = jsonraw.SkipValue(obj, i)
		if !fn(k, obj[vs:i]) {
			return
		}
		i = jsonraw.SkipSpace(obj, i)
		if i >= len(obj) || obj[i] != ',' {
			return
		}
	}
}

// wellKnown are finish reasons and statuses, kept without a copy.
var wellKnown = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{"stop", "length", "tool_calls", "content_filter", "function_call",
		"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
		"completed", "incomplete", "failed", "in_progress", "cancelled"} {
		m[s] = s
	}
	return m
}()

// rawString is the text of a raw JSON string value, copied out of the
// body it views; "" when raw is not a string.
func rawString(raw string) string {
	if !jsonraw.IsString(raw) {
		return ""
	}
	s := raw[1 : len(raw)-1]
	if strings.IndexByte(s, '\\') >= 0 {
		return gjson.Parse(raw).String() // unescaped into a new string
	}
	if w, ok := wellKnown[s]; ok {
		return w
	}
	return strings.Clone(s)
}
