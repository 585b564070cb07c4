package cohere

import (
	"encoding/base64"
	"encoding/binary"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

func protocolError(msg string) *provider.Error {
	return &provider.Error{Kind: provider.KindProtocol, Message: msg}
}

// finishReason maps Cohere's finish_reason to OpenAI's
// (https://docs.cohere.com/reference/chat, "finish_reason"):
//
//	COMPLETE, STOP_SEQUENCE → stop      MAX_TOKENS → length
//	TOOL_CALL → tool_calls              CONTENT_BLOCKED → content_filter
//	ERROR_LIMIT (context full) → length
//
// ERROR and TIMEOUT have no OpenAI counterpart: the answer failed, so they
// become a provider error, 502 (ERROR) or 504 (TIMEOUT), carrying the
// upstream's error text when it sent one. Unknown values read as stop.
// Matching ignores case (the SDKs spell the values in lower case).
func finishReason(reason, detail string) (string, *provider.Error) {
	eq := strings.EqualFold
	switch {
	case eq(reason, "MAX_TOKENS"), eq(reason, "ERROR_LIMIT"):
		return "length", nil
	case eq(reason, "TOOL_CALL"):
		return "tool_calls", nil
	case eq(reason, "CONTENT_BLOCKED"), eq(reason, "ERROR_TOXIC"):
		return "content_filter", nil
	case eq(reason, "ERROR"), eq(reason, "TIMEOUT"):
		e := &provider.Error{Kind: provider.KindStatus, Status: http.StatusBadGateway, Type: openai.TypeUpstream,
			Message: "Cohere failed to generate the answer (finish_reason " + reason + ")."}
		if eq(reason, "TIMEOUT") {
			e.Status, e.Type = http.StatusGatewayTimeout, openai.TypeTimeout
			e.Message = "Cohere timed out generating the answer (finish_reason TIMEOUT)."
		}
		if detail != "" {
			e.Message = provider.Truncate("Cohere failed to generate the answer: " + detail)
		}
		return "", e
	}
	return "stop", nil
}

// appendUsage appends an OpenAI usage object read from Cohere's usage:
// "tokens" (what the model processed), falling back to "billed_units".
// known is false when neither carries token counts.
// usageOf reads Cohere's usage (tokens, else billed_units) in OpenAI's
// terms.
func usageOf(u gjson.Result) openai.Usage {
	in, out := u.Get("tokens.input_tokens"), u.Get("tokens.output_tokens")
	if !in.Exists() && !out.Exists() {
		in, out = u.Get("billed_units.input_tokens"), u.Get("billed_units.output_tokens")
		if !in.Exists() && !out.Exists() {
			return openai.Usage{}
		}
	}
	return openai.Usage{InputTokens: in.Int(), OutputTokens: out.Int(), CachedTokens: u.Get("cached_tokens").Int(), Known: true}
}

func appendUsage(b []byte, u gjson.Result) (_ []byte, known bool) {
	ou := usageOf(u)
	if !ou.Known {
		return b, false
	}
	ni, no := ou.InputTokens, ou.OutputTokens
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, ni, 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, no, 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, ni+no, 10)
	if c := ou.CachedTokens; c > 0 {
		b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
		b = strconv.AppendInt(b, c, 10)
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// appendID appends the answer id: Cohere's id, or fallback when missing.
func appendID(b []byte, id gjson.Result, fallback string) []byte {
	if id.Type == gjson.String && id.Str != "" {
		return append(b, id.Raw...)
	}
	return openai.AppendString(b, fallback)
}

// chatResponse translates a Cohere v2 chat answer
// {"id","finish_reason","message":{"role","content":[{"type":"text",
// "text"}],"tool_plan","tool_calls"},"usage"} into an OpenAI
// chat.completion: text parts are joined into content (null when the
// answer only calls tools), tool_calls keep their shape, tool_plan and
// citations are left out, usage comes from appendUsage.
func chatResponse(raw []byte, model string, created int64, fallbackID string) ([]byte, *provider.Error) {
	if !jsonraw.Valid(raw) {
		return nil, protocolError("answer is not JSON")
	}
	root := gjson.ParseBytes(raw)
	msg := root.Get("message")
	if !msg.IsObject() {
		return nil, protocolError("answer has no message")
	}
	finish, perr := finishReason(root.Get("finish_reason").Str, root.Get("error").Str)
	if perr != nil {
		return nil, perr
	}
	b := make([]byte, 0, len(raw)+256)
	b = append(b, `{"id":`...)
	b = appendID(b, root.Get("id"), fallbackID)
	b = append(b, `,"object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":`...)
	b = openai.AppendString(b, model)
	b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)

	calls := msg.Get("tool_calls")
	hasCalls := calls.IsArray() && hasMembers(calls)
	content := msg.Get("content")
	switch {
	case content.Type == gjson.String:
		b = append(b, content.Raw...)
	case content.IsArray() && hasText(content):
		var sb strings.Builder
		content.ForEach(func(_, part gjson.Result) bool {
			if t := part.Get("type").Str; t == "text" || t == "" {
				sb.WriteString(part.Get("text").Str)
			}
			return true
		})
		b = openai.AppendString(b, sb.String())
	case hasCalls:
		b = append(b, "null"...)
	default:
		b = append(b, `""`...)
	}
	if hasCalls {
		b = append(b, `,"tool_calls":[`...)
		n := 0
		calls.ForEach(func(_, tc gjson.Result) bool {
			if n > 0 {
				b = append(b, ',')
			}
			f := tc.Get("function")
			b = append(b, `{"id":`...)
			b = appendID(b, tc.Get("id"), "call_"+strconv.Itoa(n))
			b = append(b, `,"type":"function","function":{"name":`...)
			b = appendStr(b, f.Get("name"), `""`)
			b = append(b, `,"arguments":`...)
			b = appendStr(b, f.Get("arguments"), `"{}"`)
			b = append(b, `}}`...)
			n++
			return true
		})
		b = append(b, ']')
	}
	b = append(b, `,"refusal":null},"logprobs":null,"finish_reason":"`...)
	b = append(b, finish...)
	b = append(b, `"}]`...)
	if u := root.Get("usage"); u.IsObject() {
		mark := len(b)
		b = append(b, `,"usage":`...)
		var known bool
		if b, known = appendUsage(b, u); !known {
			b = b[:mark]
		}
	}
	return append(b, '}'), nil
}

// hasText reports whether a content array holds a text part.
func hasText(c gjson.Result) bool {
	found := false
	c.ForEach(func(_, part gjson.Result) bool {
		if t := part.Get("type").Str; (t == "text" || t == "") && part.Get("text").Type == gjson.String {
			found = true
		}
		return !found
	})
	return found
}

// appendStr appends v's raw string literal, or def when v is no string.
func appendStr(b []byte, v gjson.Result, def string) []byte {
	if v.Type == gjson.String {
		return append(b, v.Raw...)
	}
	return append(b, def...)
}

// embedResponse translates a Cohere v2 embed answer
// {"embeddings":{"float":[[..]]},"meta":{"billed_units":{"input_tokens"}}}
// into OpenAI's embedding list; with b64 each vector is encoded as
// little-endian float32s in base64, as OpenAI's encoding_format "base64".
func embedResponse(raw []byte, model string, b64 bool) ([]byte, *provider.Error) {
	if !jsonraw.Valid(raw) {
		return nil, protocolError("answer is not JSON")
	}
	root := gjson.ParseBytes(raw)
	vecs := root.Get("embeddings.float")
	if !vecs.IsArray() {
		if vecs = root.Get("embeddings"); !vecs.IsArray() {
			return nil, protocolError("answer has no float embeddings")
		}
	}
	b := make([]byte, 0, len(raw)+256)
	b = append(b, `{"object":"list","data":[`...)
	var perr *provider.Error
	var f32 []byte
	i := 0
	vecs.ForEach(func(_, v gjson.Result) bool {
		if !v.IsArray() {
			perr = protocolError("embedding is not an array")
			return false
		}
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"object":"embedding","index":`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `,"embedding":`...)
		if b64 {
			f32 = f32[:0]
			v.ForEach(func(_, x gjson.Result) bool {
				if x.Type != gjson.Number {
					perr = protocolError("embedding holds a non-number")
					return false
				}
				f32 = binary.LittleEndian.AppendUint32(f32, math.Float32bits(float32(x.Num)))
				return true
			})
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, f32)
			b = append(b, '"')
		} else {
			b = append(b, v.Raw...)
		}
		b = append(b, '}')
		i++
		return perr == nil
	})
	if perr != nil {
		return nil, perr
	}
	in := root.Get("meta.billed_units.input_tokens")
	if !in.Exists() {
		in = root.Get("meta.tokens.input_tokens")
	}
	b = append(b, `],"model":`...)
	b = openai.AppendString(b, model)
	b = append(b, `,"usage":{"prompt_tokens":`...)
	b = strconv.AppendInt(b, in.Int(), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, in.Int(), 10)
	return append(b, "}}"...), nil
}
