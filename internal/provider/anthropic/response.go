package anthropic

import (
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// IDPrefix is prepended to Anthropic message ids ("msg_...") to form the
// OpenAI completion id, keeping the upstream id traceable.
const IDPrefix = "chatcmpl-"

// FinishReason maps an Anthropic stop_reason to OpenAI's finish_reason:
// end_turn, stop_sequence and pause_turn → stop; max_tokens and
// model_context_window_exceeded → length; tool_use → tool_calls; refusal →
// content_filter. Anything else (including null) is "stop".
func FinishReason(stopReason string) string {
	switch stopReason {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return "stop"
}

// usage holds Anthropic's token counts.
type usage struct {
	input, output, cacheRead, cacheCreation int64
}

// openAI is the usage in OpenAI's terms (see appendOpenAI).
func (u *usage) openAI() openai.Usage {
	return openai.Usage{InputTokens: u.input + u.cacheRead + u.cacheCreation, OutputTokens: u.output, CachedTokens: u.cacheRead, Known: true}
}

// appendOpenAI appends the OpenAI usage object: prompt_tokens counts all
// input tokens (input_tokens excludes the cached and cache-written ones);
// prompt_tokens_details.cached_tokens is cache_read_input_tokens.
func (u *usage) appendOpenAI(b []byte) []byte {
	prompt := u.input + u.cacheRead + u.cacheCreation
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, prompt, 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, u.output, 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, prompt+u.output, 10)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
	b = strconv.AppendInt(b, u.cacheRead, 10)
	return append(b, `}}`...)
}

// ResponseToOpenAI translates an Anthropic message object
// (https://docs.anthropic.com/en/api/messages) into an OpenAI chat.completion
// (https://platform.openai.com/docs/api-reference/chat/object): id
// [IDPrefix]+message id, created as given, model as Anthropic reports it,
// one choice whose content joins the text blocks (null without any) and
// whose tool_calls come from the tool_use blocks (arguments = compact JSON
// of input); thinking and server-tool blocks are left out. finish_reason
// follows [FinishReason]; usage: prompt_tokens = input_tokens +
// cache_read_input_tokens + cache_creation_input_tokens, completion_tokens
// = output_tokens, prompt_tokens_details.cached_tokens =
// cache_read_input_tokens. An error object yields the *provider.Error
// [ParseError] makes of it; a body that is not a message one of kind
// KindProtocol.
func ResponseToOpenAI(body []byte, created int64) ([]byte, error) {
	if !jsonraw.Valid(body) {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "answer is not JSON"}
	}
	root := gjson.ParseBytes(body)
	typ := root.Get("type").Str
	if typ == "error" && root.Get("error").IsObject() {
		// An error reported with a 2xx status (seen behind some proxies).
		return nil, ParseError(errorTypeStatus(root.Get("error.type").Str), body)
	}
	if !root.IsObject() || typ != "message" && (typ != "" || !root.Get("content").IsArray()) {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "answer is not a message"}
	}
	var text strings.Builder
	hasText := false
	calls := make([]byte, 0, 256)
	nCalls := 0
	root.Get("content").ForEach(func(_, b gjson.Result) bool {
		switch b.Get("type").Str {
		case "text":
			text.WriteString(b.Get("text").Str)
			hasText = true
		case "tool_use":
			if nCalls > 0 {
				calls = append(calls, ',')
			}
			nCalls++
			calls = append(calls, `{"id":`...)
			calls = openai.AppendString(calls, b.Get("id").Str)
			calls = append(calls, `,"type":"function","function":{"name":`...)
			calls = openai.AppendString(calls, b.Get("name").Str)
			calls = append(calls, `,"arguments":`...)
			calls = openai.AppendString(calls, jsonraw.CompactObject(b.Get("input").Raw))
			calls = append(calls, `}}`...)
		}
		return true
	})
	u := root.Get("usage")
	us := usage{
		input:         u.Get("input_tokens").Int(),
		output:        u.Get("output_tokens").Int(),
		cacheRead:     u.Get("cache_read_input_tokens").Int(),
		cacheCreation: u.Get("cache_creation_input_tokens").Int(),
	}

	out := make([]byte, 0, 256+text.Len()+len(calls))
	out = append(out, `{"id":`...)
	out = openai.AppendString(out, IDPrefix+root.Get("id").Str)
	out = append(out, `,"object":"chat.completion","created":`...)
	out = strconv.AppendInt(out, created, 10)
	out = append(out, `,"model":`...)
	out = openai.AppendString(out, root.Get("model").Str)
	out = append(out, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
	if hasText {
		out = openai.AppendString(out, text.String())
	} else {
		out = append(out, "null"...)
	}
	if nCalls > 0 {
		out = append(out, `,"tool_calls":[`...)
		out = append(out, calls...)
		out = append(out, ']')
	}
	out = append(out, `,"refusal":null},"logprobs":null,"finish_reason":"`...)
	out = append(out, FinishReason(root.Get("stop_reason").Str)...)
	out = append(out, `"}],"usage":`...)
	out = us.appendOpenAI(out)
	return append(out, '}'), nil
}
