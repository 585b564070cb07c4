package fakellm

import (
	"net/http"
	"strconv"
	"time"
)

// systemFingerprint is reported in every completion object.
const systemFingerprint = "fp_fakellm"

// chat answers POST /v1/chat/completions.
//
// Non-stream: a chat completion object,
// https://platform.openai.com/docs/api-reference/chat/object
//
// Stream: "data: <chat completion chunk>\n\n" events then "data: [DONE]",
// https://platform.openai.com/docs/api-reference/chat/streaming
// https://platform.openai.com/docs/api-reference/chat-streaming/streaming
func (x *exchange) chat() {
	limit := x.req.MaxCompletionTokens
	if limit <= 0 {
		limit = x.req.MaxTokens
	}
	c := completion{
		x:       x,
		id:      x.s.newID("chatcmpl-"),
		created: time.Now().Unix(),
		n:       x.req.choices(),
		prompt:  x.s.scalePrompt(x.req.promptTokens()),
	}
	if x.b.ToolCall {
		tc := firstToolCall(x.req.Tools)
		c.tool = &tc
		c.callIDs = make([]string, c.n)
		for i := range c.callIDs {
			c.callIDs[i] = x.s.newID("call_")
		}
		c.ans = answer{pieces: splitEven(tc.args, x.b.Chunks), finish: "tool_calls"}
	} else {
		c.ans = x.textAnswer(limit)
	}
	if x.req.Stream {
		c.chatStream()
	} else {
		c.chatJSON()
	}
}

// completion is the state shared by chat and legacy completions answers.
type completion struct {
	x       *exchange
	id      string
	created int64
	n       int // choices
	prompt  int // prompt tokens
	ans     answer
	tool    *toolCall
	callIDs []string // per choice, when tool != nil
}

// appendHead appends `{"id":..,"object":..,"created":..,"model":..,
// "system_fingerprint":..`, the members shared by all completion objects.
func (c *completion) appendHead(b []byte, object string) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, c.id)
	b = append(b, `,"object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, c.created, 10)
	b = append(b, `,"model":`...)
	b = appendJSONString(b, c.x.model)
	b = append(b, `,"system_fingerprint":"`+systemFingerprint+`"`...)
	return b
}

// appendUsage appends the completion usage object.
// https://platform.openai.com/docs/api-reference/chat/object#chat/object-usage
func (c *completion) appendUsage(b []byte) []byte {
	out := c.ans.tokens() * c.n
	b = append(b, `{"prompt_tokens":`...)
	b = appendInt(b, c.prompt)
	b = appendKeyInt(b, "completion_tokens", out)
	b = appendKeyInt(b, "total_tokens", c.prompt+out)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0}`+
		`,"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`...)
	return b
}

// chatJSON writes the non-stream chat.completion object.
func (c *completion) chatJSON() {
	b := make([]byte, 0, 512+c.n*(160+2*c.ans.size()))
	b = c.appendHead(b, "chat.completion")
	b = append(b, `,"choices":[`...)
	for i := range c.n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"index":`...)
		b = appendInt(b, i)
		b = append(b, `,"message":{"role":"assistant","content":`...)
		if c.tool != nil {
			b = append(b, `null,"tool_calls":[{"id":`...)
			b = appendJSONString(b, c.callIDs[i])
			b = append(b, `,"type":"function","function":{"name":`...)
			b = appendJSONString(b, c.tool.name)
			b = append(b, `,"arguments":`...)
			b = appendJSONString(b, c.tool.args)
			b = append(b, `}}]`...)
		} else {
			b = c.ans.appendContent(b)
		}
		b = append(b, `,"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"`...)
		b = append(b, c.ans.finish...)
		b = append(b, `"}`...)
	}
	b = append(b, `],"usage":`...)
	b = c.appendUsage(b)
	b = append(b, `,"service_tier":"default"}`...)
	c.x.writeJSON(http.StatusOK, b)
}

// chunker builds stream chunks sharing the same id/created/model.
type chunker struct {
	pre    []byte // `data: {"id":..., "choices":[{"index":`
	usage  bool   // stream_options.include_usage: chunks carry "usage":null
	object string // "chat.completion.chunk" or "text_completion"
}

func newChunker(c *completion, object string) chunker {
	pre := append(make([]byte, 0, 256), "data: "...)
	pre = c.appendHead(pre, object)
	pre = append(pre, `,"choices":[{"index":`...)
	return chunker{pre: pre, usage: c.x.req.includeUsage(), object: object}
}

// open starts the chunk of choice i.
func (k *chunker) open(b []byte, i int) []byte {
	b = append(b, k.pre...)
	return appendInt(b, i)
}

// close ends a chunk with the given finish reason ("" for null).
func (k *chunker) close(b []byte, finish string) []byte {
	b = append(b, `,"logprobs":null,"finish_reason":`...)
	b = appendNullableString(b, finish)
	b = append(b, '}', ']')
	if k.usage {
		b = append(b, `,"usage":null`...)
	}
	return append(b, "}\n\n"...)
}

// chatStream writes the chat.completion.chunk event stream: a role chunk per
// choice, one chunk per piece and choice, a finish chunk per choice, the
// usage chunk (only with stream_options.include_usage) and [DONE].
func (c *completion) chatStream() {
	x := c.x
	k := newChunker(c, "chat.completion.chunk")
	x.startStream()
	buf := make([]byte, 0, 1024)

	for i := range c.n {
		buf = k.open(buf[:0], i)
		if c.tool != nil {
			// The first tool chunk carries index, id, type, name and
			// empty arguments; the following ones argument fragments.
			buf = append(buf, `,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":`...)
			buf = appendJSONString(buf, c.callIDs[i])
			buf = append(buf, `,"type":"function","function":{"name":`...)
			buf = appendJSONString(buf, c.tool.name)
			buf = append(buf, `,"arguments":""}}],"refusal":null}`...)
		} else {
			buf = append(buf, `,"delta":{"role":"assistant","content":"","refusal":null}`...)
		}
		if !x.send(k.close(buf, "")) {
			return
		}
	}
	last := len(c.ans.pieces) - 1
	for j, piece := range c.ans.pieces {
		buf = buf[:0]
		for i := range c.n {
			buf = k.open(buf, i)
			if c.tool != nil {
				buf = append(buf, `,"delta":{"tool_calls":[{"index":0,"function":{"arguments":`...)
				buf = appendJSONString(buf, piece)
				buf = append(buf, `}}]}`...)
			} else {
				buf = append(buf, `,"delta":{"content":`...)
				buf = appendJSONString(buf, piece)
				buf = append(buf, '}')
			}
			buf = k.close(buf, "")
		}
		if !x.sendContent(buf) {
			return
		}
		if x.failDue(j == last) {
			abort(x.w)
			return
		}
	}
	buf = buf[:0]
	for i := range c.n {
		buf = k.open(buf, i)
		buf = append(buf, `,"delta":{}`...)
		buf = k.close(buf, c.ans.finish)
	}
	x.send(c.appendTail(buf, &k))
}

// appendTail appends the final usage chunk (only with include_usage, its
// "choices" empty) and the [DONE] sentinel.
func (c *completion) appendTail(b []byte, k *chunker) []byte {
	if k.usage {
		b = append(b, "data: "...)
		b = c.appendHead(b, k.object)
		b = append(b, `,"choices":[],"usage":`...)
		b = c.appendUsage(b)
		b = append(b, "}\n\n"...)
	}
	return append(b, "data: [DONE]\n\n"...)
}
