package gemini

import (
	"net/http"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// finishReason maps Gemini's Candidate.finishReason to OpenAI's
// finish_reason (https://ai.google.dev/api/generate-content#FinishReason):
// STOP → stop, or tool_calls when the candidate called functions;
// MAX_TOKENS → length; SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT,
// SPII and the IMAGE_* filters → content_filter; anything else (OTHER,
// LANGUAGE, MALFORMED_FUNCTION_CALL, ...) → stop.
func finishReason(reason string, toolCalls bool) string {
	switch reason {
	case "MAX_TOKENS":
		return "length"
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII",
		"IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION":
		return "content_filter"
	}
	if toolCalls && (reason == "STOP" || reason == "FINISH_REASON_UNSPECIFIED") {
		return "tool_calls"
	}
	return "stop"
}

// usage is Gemini's usageMetadata
// (https://ai.google.dev/api/generate-content#UsageMetadata).
type usage struct {
	prompt, candidates, thoughts, cached, toolPrompt int64
	known                                            bool
}

func readUsage(u gjson.Result) usage {
	var out usage
	u.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "promptTokenCount":
			out.prompt = v.Int()
		case "candidatesTokenCount":
			out.candidates = v.Int()
		case "thoughtsTokenCount":
			out.thoughts = v.Int()
		case "cachedContentTokenCount":
			out.cached = v.Int()
		case "toolUsePromptTokenCount":
			out.toolPrompt = v.Int()
		}
		return true
	})
	out.known = true
	return out
}

// appendJSON appends OpenAI's usage object: prompt_tokens counts the prompt
// and the tool-use prompt (Google's own totalTokenCount includes both);
// completion_tokens counts the candidates and the thoughts (billed as
// output), the latter also reported as reasoning_tokens; cached_tokens is
// cachedContentTokenCount.
// openAI is the usage in OpenAI's terms (see appendJSON).
func (u *usage) openAI() openai.Usage {
	return openai.Usage{InputTokens: u.prompt + u.toolPrompt, OutputTokens: u.candidates + u.thoughts, CachedTokens: u.cached, Known: true}
}

func (u *usage) appendJSON(dst []byte) []byte {
	prompt, completion := u.prompt+u.toolPrompt, u.candidates+u.thoughts
	dst = append(dst, `{"prompt_tokens":`...)
	dst = appendInt(dst, prompt)
	dst = append(dst, `,"completion_tokens":`...)
	dst = appendInt(dst, completion)
	dst = append(dst, `,"total_tokens":`...)
	dst = appendInt(dst, prompt+completion)
	dst = append(dst, `,"prompt_tokens_details":{"cached_tokens":`...)
	dst = appendInt(dst, u.cached)
	dst = append(dst, `},"completion_tokens_details":{"reasoning_tokens":`...)
	dst = appendInt(dst, u.thoughts)
	return append(dst, "}}"...)
}

// appendHead appends `{"id":"chatcmpl-<responseId>","object":..,
// "created":..,"model":<modelVersion>`. Without a responseId the id is
// derived from seed; without a modelVersion the requested model is used.
func appendHead(dst []byte, root gjson.Result, object string, created int64, model string, seed uint64) []byte {
	dst = append(dst, `{"id":"chatcmpl-`...)
	if rid := root.Get("responseId"); rid.Type == gjson.String && rid.Str != "" {
		dst = appendStringInner(dst, rid.Raw)
	} else {
		dst = appendID(dst, "", seed, 0)
	}
	dst = append(dst, `","object":"`...)
	dst = append(dst, object...)
	dst = append(dst, `","created":`...)
	dst = appendInt(dst, created)
	dst = append(dst, `,"model":`...)
	if mv := root.Get("modelVersion"); mv.Type == gjson.String && mv.Str != "" {
		dst = openai.AppendString(dst, strings.TrimPrefix(mv.Str, "models/"))
	} else {
		dst = openai.AppendString(dst, model)
	}
	return dst
}

// appendToolCall appends an OpenAI tool call object (without its stream
// "index") for a functionCall part. The id is the call's own, or derived
// from seed and n. The Gemini 3 thought signature goes into
// extra_content.google.thought_signature, where Google's OpenAI endpoint
// puts it, so that clients send it back with the conversation.
func appendToolCall(dst []byte, part, fc gjson.Result, seed, n uint64, scratch []byte) ([]byte, []byte) {
	dst = append(dst, `"id":`...)
	if id := fc.Get("id"); id.Type == gjson.String && id.Str != "" {
		dst = appendStringValue(dst, id)
	} else {
		dst = append(dst, '"')
		dst = appendID(dst, "call_", seed, n)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"type":"function","function":{"name":`...)
	if name := fc.Get("name"); name.Type == gjson.String {
		dst = appendStringValue(dst, name)
	} else {
		dst = append(dst, `""`...)
	}
	dst = append(dst, `,"arguments":`...)
	if args := fc.Get("args"); args.IsObject() {
		scratch = appendCompact(scratch[:0], args.Raw)
		dst = openai.AppendString(dst, jsonraw.String(scratch))
	} else {
		dst = append(dst, `"{}"`...)
	}
	dst = append(dst, '}')
	if sig := part.Get("thoughtSignature"); sig.Type == gjson.String && sig.Str != "" {
		dst = append(dst, `,"extra_content":{"google":{"thought_signature":`...)
		dst = appendStringValue(dst, sig)
		dst = append(dst, "}}"...)
	}
	return dst, scratch
}

// streamError turns an error object reported with a 200 answer into an
// *Error (status from its code or status name, else 502).
func streamError(obj gjson.Result) *provider.Error {
	e := googleError(obj, 0)
	e.Kind = provider.KindStatus
	if e.Status < 400 {
		e.Status = http.StatusBadGateway
	}
	if e.Message == "" {
		e.Message = "upstream error"
	}
	return e
}

// translateChat turns a GenerateContentResponse into an OpenAI
// chat.completion: one choice per candidate (its index), content = the
// candidate's text parts joined (thought parts skipped; null when it only
// called functions), tool_calls from its functionCall parts, finish_reason
// by finishReason. A prompt blocked by promptFeedback.blockReason (no
// candidates) gives one empty choice finished by content_filter.
// https://ai.google.dev/api/generate-content#generatecontentresponse
func translateChat(body []byte, model string, created int64, seed uint64) ([]byte, *provider.Error) {
	if !jsonraw.Valid(body) {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "answer is not JSON"}
	}
	root := parse(body)
	if !root.IsObject() {
		return nil, &provider.Error{Kind: provider.KindProtocol, Message: "answer is not a JSON object"}
	}
	if e := root.Get("error"); e.IsObject() {
		return nil, streamError(e)
	}
	out := make([]byte, 0, len(body)+256)
	out = appendHead(out, root, "chat.completion", created, model, seed)
	out = append(out, `,"choices":[`...)
	var scratch []byte
	n := uint64(0)
	pos := 0
	root.Get("candidates").ForEach(func(_, c gjson.Result) bool {
		if pos > 0 {
			out = append(out, ',')
		}
		idx := int64(pos)
		if v := c.Get("index"); v.Type == gjson.Number {
			idx = v.Int()
		}
		pos++
		parts := c.Get("content.parts")
		text, calls := false, 0
		parts.ForEach(func(_, p gjson.Result) bool {
			if p.Get("thought").Type == gjson.True {
				return true
			}
			if t := p.Get("text"); t.Type == gjson.String {
				text = true
			} else if p.Get("functionCall").IsObject() {
				calls++
			}
			return true
		})
		out = append(out, `{"index":`...)
		out = appendInt(out, idx)
		out = append(out, `,"message":{"role":"assistant","content":`...)
		if text || calls == 0 {
			out = append(out, '"')
			parts.ForEach(func(_, p gjson.Result) bool {
				if t := p.Get("text"); t.Type == gjson.String && p.Get("thought").Type != gjson.True {
					out = appendStringInner(out, t.Raw)
				}
				return true
			})
			out = append(out, '"')
		} else {
			out = append(out, "null"...)
		}
		out = append(out, `,"refusal":null`...)
		if calls > 0 {
			out = append(out, `,"tool_calls":[`...)
			k := 0
			parts.ForEach(func(_, p gjson.Result) bool {
				fc := p.Get("functionCall")
				if !fc.IsObject() || p.Get("thought").Type == gjson.True {
					return true
				}
				if k > 0 {
					out = append(out, ',')
				}
				k++
				n++
				out = append(out, '{')
				out, scratch = appendToolCall(out, p, fc, seed, n, scratch)
				out = append(out, '}')
				return true
			})
			out = append(out, ']')
		}
		out = append(out, `},"logprobs":null,"finish_reason":"`...)
		out = append(out, finishReason(c.Get("finishReason").Str, calls > 0)...)
		out = append(out, `"}`...)
		return true
	})
	if pos == 0 {
		finish := "stop"
		if br := root.Get("promptFeedback.blockReason"); br.Type == gjson.String && br.Str != "" {
			finish = "content_filter"
		}
		out = append(out, `{"index":0,"message":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":"`...)
		out = append(out, finish...)
		out = append(out, `"}`...)
	}
	out = append(out, `],"usage":`...)
	u := readUsage(root.Get("usageMetadata"))
	out = u.appendJSON(out)
	return append(out, '}'), nil
}
