package openai

import (
	"bytes"

	"github.com/tidwall/gjson"
)

// Usage is the token accounting of one answer.
type Usage struct {
	InputTokens  int64
	OutputTokens int64
	CachedTokens int64
	// Known is true once an upstream reported usage.
	Known bool
}

// ParseUsage reads a usage object in either the Chat/Completions/Embeddings
// shape (prompt_tokens, completion_tokens) or the Responses shape
// (input_tokens, output_tokens).
func ParseUsage(u gjson.Result) Usage {
	if !u.IsObject() {
		return Usage{}
	}
	var out Usage
	u.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "prompt_tokens", "input_tokens":
			out.InputTokens = v.Int()
			out.Known = true
		case "completion_tokens", "output_tokens":
			out.OutputTokens = v.Int()
			out.Known = true
		case "prompt_tokens_details", "input_tokens_details":
			out.CachedTokens = v.Get("cached_tokens").Int()
		}
		return true
	})
	return out
}

// UsageOf returns the usage object of a non-stream response body.
func UsageOf(body []byte) Usage { return GetUsage(body) }

// GetUsage reads the top-level "usage" object of a JSON document (a response
// body or a stream chunk); the zero Usage when there is none. It is
// ParseUsage(gjson.GetBytes(data, "usage")) without GetBytes' copy of the
// object: it does not allocate.
func GetUsage(data []byte) Usage { return UsageAt(data, "usage") }

// UsageAt reads the usage object at a gjson path, such as "response.usage"
// in a Responses API response.completed event, without allocating.
func UsageAt(data []byte, path string) Usage {
	return ParseUsage(GetInPlace(data, path))
}

var usageKey = []byte(`"usage"`)

// ChunkUsage reads the usage of a Chat or Completions stream chunk (its
// top-level "usage" object). present is false when the chunk has no usage
// object: the member is absent or not an object, such as the "usage":null
// OpenAI sends on every chunk once stream_options.include_usage is set.
// When present, choicesEmpty reports whether the chunk has no choices
// (member absent, not an array, or empty): that is the usage chunk the
// gateway may have asked for on the client's behalf.
//
// It answers exactly as
//
//	u := gjson.GetBytes(data, "usage")
//	present = u.IsObject()
//	usage = ParseUsage(u)
//	choicesEmpty = gjson.GetBytes(data, "choices.#").Int() <= 0
//
// but never allocates, and settles the common chunks without parsing them:
// one without the `"usage"` bytes is absent after a single (vectorised)
// scan, and one whose only `"usage"` member is null as well. Only a chunk
// with a usage object, or an unusual layout, is parsed.
//
// A gateway's stream tap is then:
//
//	u, present, choicesEmpty := openai.ChunkUsage(ev.Data)
//	if !present {
//		return true // pass the chunk on
//	}
//	info.Usage = u
//	return req.ClientUsage || !choicesEmpty // drop the usage chunk the gateway asked for
func ChunkUsage(data []byte) (u Usage, present, choicesEmpty bool) {
	k := indexUsageKey(data)
	if k < 0 {
		return Usage{}, false, false
	}
	if usageNullAt(data, k) {
		return Usage{}, false, false
	}
	js := bytesString(data)
	obj := gjson.Get(js, "usage")
	if !obj.IsObject() {
		return Usage{}, false, false
	}
	return ParseUsage(obj), true, gjson.Get(js, "choices.#").Int() <= 0
}

// usageNullAt reports whether the `"usage"` at data[k:] is a member whose
// value is null and no other `"usage"` follows. The first occurrence of the
// bytes then is the only member spelled "usage" (another one would contain
// them too; a string cannot, its quotes being escaped), and it is null
// whatever its depth, so the document has no usage object. (A key spelled
// with escapes, such as "\u0075sage", is not seen; no encoder writes one.)
func usageNullAt(data []byte, k int) bool {
	i := skipSpace(data, k+len(usageKey))
	if i >= len(data) || data[i] != ':' {
		return false
	}
	i = skipSpace(data, i+1)
	if len(data)-i < 4 || string(data[i:i+4]) != "null" {
		return false
	}
	i += 4
	rest := data[i:]
	if j := skipSpace(rest, 0); j >= len(rest) || rest[j] != ',' && rest[j] != '}' {
		return false
	}
	return indexUsageKey(rest) < 0
}

// usageTail is usageKey without its opening quote: a search for it starts
// at a 'u', far rarer in JSON than a quote, so it is about a third faster
// than one for usageKey.
var usageTail = usageKey[1:]

// indexUsageKey is bytes.Index(b, usageKey).
func indexUsageKey(b []byte) int {
	off := 0
	for {
		i := bytes.Index(b[off:], usageTail)
		if i < 0 {
			return -1
		}
		i += off
		if i > 0 && b[i-1] == '"' {
			return i - 1
		}
		off = i + 1
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
