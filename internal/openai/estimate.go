package openai

import (
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
)

// Token estimation for reservations (TPM, budgets). No BPE tokenizer with
// embedded ranks is available offline as a Go module here, so the gateway
// uses a fast, documented estimate and settles to the upstream's real usage
// afterwards:
//
//   - text: one token per 4 bytes (rounded up), OpenAI's rule of thumb for
//     English; plus 4 tokens of framing per message and 3 per request;
//   - images: 765 tokens each (a high-detail 512px-tile image);
//   - tools, response_format and other fields: one token per 4 bytes of JSON.
//
// Over-estimates are refunded when the answer's usage arrives.
const (
	bytesPerToken  = 4
	tokensPerMsg   = 4
	tokensPerReq   = 3
	tokensPerImage = 765
)

// EstimateInputTokens estimates the prompt tokens of a request. It walks
// the body (valid JSON, checked by ParseRequest) once, without allocating
// unless a string it measures holds escapes.
func EstimateInputTokens(r *Request) int64 {
	s := bytesString(r.Body)
	n := int64(tokensPerReq)
	i := jsonraw.SkipSpace(s, 0)
	if i >= len(s) || s[i] != '{' {
		return n
	}
	members(s, i, func(key string, v int) int {
		switch {
		case keyIs(key, "messages"), keyIs(key, "input"), keyIs(key, "prompt"):
			t, end := contentAt(s, v)
			n += t
			return end
		case keyIs(key, "tools"), keyIs(key, "functions"), keyIs(key, "response_format"), keyIs(key, "system"), keyIs(key, "instructions"):
			end := jsonraw.SkipValue(s, v)
			n += textTokens(end - v)
			return end
		}
		return jsonraw.SkipValue(s, v)
	})
	return n
}

// contentAt estimates the value at s[i]: a string's text, an array's items,
// anything else by its JSON size. It returns the index after the value.
func contentAt(s string, i int) (int64, int) {
	if i < len(s) && s[i] == '[' {
		var n int64
		end := elems(s, i, func(j int) int {
			t, e := itemAt(s, j)
			n += t
			return e
		})
		return n, end
	}
	end := jsonraw.SkipValue(s, i)
	if i < len(s) && s[i] == '"' {
		return textTokens(strLen(s[i:end])), end
	}
	return textTokens(end - i), end
}

// itemAt estimates one item of a messages or input array: a message (text
// fields, tool calls, images), a string, a token id, or a nested array.
func itemAt(s string, i int) (int64, int) {
	if i >= len(s) {
		return 0, i
	}
	switch c := s[i]; {
	case c == '"':
		end := jsonraw.SkipString(s, i)
		return textTokens(strLen(s[i:end])), end
	case c == '-' || c >= '0' && c <= '9':
		return 1, jsonraw.SkipValue(s, i) // a token id
	case c == '[':
		return contentAt(s, i)
	case c != '{':
		return 0, jsonraw.SkipValue(s, i)
	}
	var n int64 = tokensPerMsg
	end := members(s, i, func(key string, v int) int {
		switch {
		case keyIs(key, "content"):
			if v < len(s) && s[v] == '[' {
				return elems(s, v, func(j int) int {
					e := jsonraw.SkipValue(s, j)
					n += partTokens(s[j:e])
					return e
				})
			}
			e := jsonraw.SkipValue(s, v)
			n += textTokens(strLen(s[v:e]))
			return e
		case keyIs(key, "text"), keyIs(key, "arguments"), keyIs(key, "output"):
			e := jsonraw.SkipValue(s, v)
			n += textTokens(strLen(s[v:e]))
			return e
		case keyIs(key, "tool_calls"), keyIs(key, "function_call"):
			e := jsonraw.SkipValue(s, v)
			n += textTokens(e - v)
			return e
		case keyIs(key, "type"):
			e := jsonraw.SkipValue(s, v)
			if t := s[v:e]; strIs(t, "image_url") || strIs(t, "input_image") || strIs(t, "image") {
				n += tokensPerImage
			}
			return e
		}
		return jsonraw.SkipValue(s, v)
	})
	return n, end
}

// partTokens estimates one part of a message's content array.
func partTokens(part string) int64 {
	typ := member(part, "type")
	switch {
	case strIs(typ, "image_url"), strIs(typ, "input_image"), strIs(typ, "image"):
		return tokensPerImage
	case strIs(typ, "text"), strIs(typ, "input_text"), strIs(typ, "output_text"):
		return textTokens(strLen(member(part, "text")))
	}
	return textTokens(len(part))
}

// members calls fn for each member of the object at s[i] with the key's
// literal (quotes included) and the index of its value; fn returns the
// index after the value. members returns the index after the object.
func members(s string, i int, fn func(key string, v int) int) int {
	i = jsonraw.SkipSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return i + 1
	}
	for i < len(s) && s[i] == '"' {
		ks := i
		i = jsonraw.SkipString(s, i)
		key := s[ks:i]
		i = jsonraw.SkipSpace(s, i)
		if i >= len(s) || s[i] != ':' {
			return len(s)
		}
		i = jsonraw.SkipSpace(s, fn(key, jsonraw.SkipSpace(s, i+1)))
		if i >= len(s) || s[i] != ',' {
			if i < len(s) && s[i] == '}' {
				return i + 1
			}
			return len(s)
		}
		i = jsonraw.SkipSpace(s, i+1)
	}
	return len(s)
}

// elems calls fn with the index of each element of the array at s[i]; fn
// returns the index after it. elems returns the index after the array.
func elems(s string, i int, fn func(j int) int) int {
	i = jsonraw.SkipSpace(s, i+1)
	if i < len(s) && s[i] == ']' {
		return i + 1
	}
	for i < len(s) {
		i = jsonraw.SkipSpace(s, fn(i))
		if i >= len(s) || s[i] != ',' {
			if i < len(s) && s[i] == ']' {
				return i + 1
			}
			return len(s)
		}
		i = jsonraw.SkipSpace(s, i+1)
	}
	return len(s)
}

// member returns the raw value of name in the object obj ("" when obj is
// not an object or has no such member).
func member(obj, name string) string {
	if len(obj) == 0 || obj[0] != '{' {
		return ""
	}
	var out string
	members(obj, 0, func(key string, v int) int {
		e := jsonraw.SkipValue(obj, v)
		if out == "" && keyIs(key, name) {
			out = obj[v:e]
		}
		return e
	})
	return out
}

// keyIs reports whether the string literal lit (a member name, quotes
// included) is name once unescaped.
func keyIs(lit, name string) bool {
	if strings.IndexByte(lit, '\\') < 0 {
		return len(lit) == len(name)+2 && lit[1:len(lit)-1] == name
	}
	return gjson.Parse(lit).Str == name
}

// strIs reports whether raw is a JSON string whose text is name.
func strIs(raw, name string) bool { return len(raw) >= 2 && raw[0] == '"' && keyIs(raw, name) }

// strLen is the length of the text of the JSON string raw, 0 for any other
// value.
func strLen(raw string) int {
	if len(raw) < 2 || raw[0] != '"' {
		return 0
	}
	if strings.IndexByte(raw, '\\') < 0 {
		return len(raw) - 2
	}
	return len(gjson.Parse(raw).Str)
}

func textTokens(bytes int) int64 { return int64((bytes + bytesPerToken - 1) / bytesPerToken) }
