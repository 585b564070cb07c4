package fakellm

import (
	"net/http"
	"time"
)

// completions answers the legacy POST /v1/completions with a text_completion
// object, or in stream mode "data: <text_completion>\n\n" events (one per
// piece and choice, then a finish chunk per choice, the usage chunk with
// stream_options.include_usage, and [DONE]). ToolCall does not apply.
//
// https://platform.openai.com/docs/api-reference/completions/object
// https://platform.openai.com/docs/api-reference/completions/create#completions-create-stream
func (x *exchange) completions() {
	c := completion{
		x:       x,
		id:      x.s.newID("cmpl-"),
		created: time.Now().Unix(),
		n:       x.req.choices(),
		prompt:  x.s.scalePrompt(x.req.promptTokens()),
		ans:     x.textAnswer(x.req.MaxTokens),
	}
	if x.req.Stream {
		c.completionsStream()
	} else {
		c.completionsJSON()
	}
}

// completionsJSON writes the non-stream text_completion object.
func (c *completion) completionsJSON() {
	b := make([]byte, 0, 512+c.n*(96+2*c.ans.size()))
	b = c.appendHead(b, "text_completion")
	b = append(b, `,"choices":[`...)
	for i := range c.n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"text":`...)
		b = c.ans.appendContent(b)
		b = appendKeyInt(b, "index", i)
		b = append(b, `,"logprobs":null,"finish_reason":"`...)
		b = append(b, c.ans.finish...)
		b = append(b, `"}`...)
	}
	b = append(b, `],"usage":`...)
	b = c.appendUsage(b)
	b = append(b, '}')
	c.x.writeJSON(http.StatusOK, b)
}

// completionsStream writes the text_completion event stream.
func (c *completion) completionsStream() {
	x := c.x
	k := newChunker(c, "text_completion")
	x.startStream()
	buf := make([]byte, 0, 1024)
	last := len(c.ans.pieces) - 1
	for j, piece := range c.ans.pieces {
		buf = buf[:0]
		for i := range c.n {
			buf = k.open(buf, i)
			buf = append(buf, `,"text":`...)
			buf = appendJSONString(buf, piece)
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
		buf = append(buf, `,"text":""`...)
		buf = k.close(buf, c.ans.finish)
	}
	x.send(c.appendTail(buf, &k))
}
