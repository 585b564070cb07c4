package fakellm

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// responses answers POST /v1/responses (Responses API). "input" may be a
// string or an array of input items. The answer is a single output item: a
// message with one output_text part, or a function_call with ToolCall. When
// max_output_tokens is smaller than the answer, the response is
// "incomplete" (reason max_output_tokens).
//
// Non-stream: the response object,
// https://platform.openai.com/docs/api-reference/responses/object
//
// Stream: "event: <type>\ndata: <json>\n\n" events, each with a
// sequence_number and no [DONE] sentinel,
// https://platform.openai.com/docs/api-reference/responses-streaming
func (x *exchange) responses() {
	rs := &responder{
		x:       x,
		id:      x.s.newID("resp_"),
		created: time.Now().Unix(),
		prompt:  x.s.scalePrompt(x.req.promptTokens()),
	}
	if x.b.ToolCall {
		tc := firstToolCall(x.req.Tools)
		rs.tool = &tc
		rs.itemID = x.s.newID("fc_")
		rs.callID = x.s.newID("call_")
		rs.ans = answer{pieces: splitEven(tc.args, x.b.Chunks), finish: "stop"}
	} else {
		rs.itemID = x.s.newID("msg_")
		rs.ans = x.textAnswer(x.req.MaxOutputTokens)
	}
	rs.tools = []byte("[]")
	if firstByte(x.req.Tools) == '[' {
		var buf bytes.Buffer
		if json.Compact(&buf, x.req.Tools) == nil {
			rs.tools = buf.Bytes()
		}
	}
	if x.req.Stream {
		rs.stream()
		return
	}
	b := make([]byte, 0, 1024+2*rs.ans.size())
	x.writeJSON(http.StatusOK, rs.appendResponse(b, true))
}

// responder holds the state of one Responses API answer.
type responder struct {
	x       *exchange
	id      string
	created int64
	prompt  int
	ans     answer
	tool    *toolCall
	itemID  string // msg_... or fc_...
	callID  string // call_..., for tool calls
	tools   []byte // request tools, compacted
	seq     int    // next sequence_number
}

// status is the final status of the response.
func (rs *responder) status() string {
	if rs.ans.finish == "length" {
		return "incomplete"
	}
	return "completed"
}

// appendResponse appends the response object: in its final state when done,
// else "in_progress" with no output and null usage.
// https://platform.openai.com/docs/api-reference/responses/object
func (rs *responder) appendResponse(b []byte, done bool) []byte {
	x := rs.x
	status := "in_progress"
	if done {
		status = rs.status()
	}
	b = append(b, `{"id":`...)
	b = appendJSONString(b, rs.id)
	b = append(b, `,"object":"response","created_at":`...)
	b = strconv.AppendInt(b, rs.created, 10)
	b = append(b, `,"status":"`...)
	b = append(b, status...)
	b = append(b, `","error":null,"incomplete_details":`...)
	if done && status == "incomplete" {
		b = append(b, `{"reason":"max_output_tokens"}`...)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"instructions":`...)
	if x.req.Instructions != nil {
		b = appendJSONString(b, *x.req.Instructions)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"max_output_tokens":`...)
	if x.req.MaxOutputTokens > 0 {
		b = appendInt(b, x.req.MaxOutputTokens)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"model":`...)
	b = appendJSONString(b, x.model)
	b = append(b, `,"output":[`...)
	if done {
		b = rs.appendItem(b, true)
	}
	b = append(b, `],"parallel_tool_calls":true,"previous_response_id":null,"reasoning":{"effort":null,"summary":null}`+
		`,"store":false,"temperature":1.0,"text":{"format":{"type":"text"}},"tool_choice":"auto","tools":`...)
	b = append(b, rs.tools...)
	b = append(b, `,"top_p":1.0,"truncation":"disabled","usage":`...)
	if done {
		out := rs.ans.tokens()
		b = append(b, `{"input_tokens":`...)
		b = appendInt(b, rs.prompt)
		b = append(b, `,"input_tokens_details":{"cached_tokens":0},"output_tokens":`...)
		b = appendInt(b, out)
		b = append(b, `,"output_tokens_details":{"reasoning_tokens":0}`...)
		b = appendKeyInt(b, "total_tokens", rs.prompt+out)
		b = append(b, '}')
	} else {
		b = append(b, "null"...)
	}
	return append(b, `,"user":null,"metadata":{}}`...)
}

// appendItem appends the output item, complete or as first announced.
// https://platform.openai.com/docs/api-reference/responses/object#responses/object-output
func (rs *responder) appendItem(b []byte, done bool) []byte {
	status := "in_progress"
	if done {
		status = "completed"
		if rs.status() == "incomplete" {
			status = "incomplete"
		}
	}
	b = append(b, `{"id":`...)
	b = appendJSONString(b, rs.itemID)
	if rs.tool != nil {
		b = append(b, `,"type":"function_call","status":"`...)
		b = append(b, status...)
		b = append(b, `","arguments":`...)
		if done {
			b = appendJSONString(b, rs.tool.args)
		} else {
			b = append(b, `""`...)
		}
		b = append(b, `,"call_id":`...)
		b = appendJSONString(b, rs.callID)
		b = append(b, `,"name":`...)
		b = appendJSONString(b, rs.tool.name)
		return append(b, '}')
	}
	b = append(b, `,"type":"message","status":"`...)
	b = append(b, status...)
	b = append(b, `","role":"assistant","content":[`...)
	if done {
		b = rs.appendPart(b, true)
	}
	return append(b, "]}"...)
}

// appendPart appends the output_text content part, full or empty.
func (rs *responder) appendPart(b []byte, done bool) []byte {
	b = append(b, `{"type":"output_text","text":`...)
	if done {
		b = rs.ans.appendContent(b)
	} else {
		b = append(b, `""`...)
	}
	return append(b, `,"annotations":[],"logprobs":[]}`...)
}

// open starts the SSE event of the given type: `event: t\ndata: {"type":"t"`.
func (rs *responder) open(b []byte, typ string) []byte {
	b = append(b, "event: "...)
	b = append(b, typ...)
	b = append(b, "\ndata: {\"type\":\""...)
	b = append(b, typ...)
	return append(b, '"')
}

// close ends an event with its sequence_number.
func (rs *responder) close(b []byte) []byte {
	b = appendKeyInt(b, "sequence_number", rs.seq)
	rs.seq++
	return append(b, "}\n\n"...)
}

// appendLocation appends the item_id/output_index(/content_index) members.
func (rs *responder) appendLocation(b []byte, content bool) []byte {
	b = append(b, `,"item_id":`...)
	b = appendJSONString(b, rs.itemID)
	b = append(b, `,"output_index":0`...)
	if content {
		b = append(b, `,"content_index":0`...)
	}
	return b
}

// stream writes the Responses API event stream.
func (rs *responder) stream() {
	x := rs.x
	x.startStream()
	buf := make([]byte, 0, 2048)
	isText := rs.tool == nil

	for _, typ := range [...]string{"response.created", "response.in_progress"} {
		buf = rs.open(buf[:0], typ)
		buf = append(buf, `,"response":`...)
		buf = rs.appendResponse(buf, false)
		if !x.send(rs.close(buf)) {
			return
		}
	}
	buf = rs.open(buf[:0], "response.output_item.added")
	buf = append(buf, `,"output_index":0,"item":`...)
	buf = rs.appendItem(buf, false)
	buf = rs.close(buf)
	if isText {
		buf = rs.open(buf, "response.content_part.added")
		buf = rs.appendLocation(buf, true)
		buf = append(buf, `,"part":`...)
		buf = rs.appendPart(buf, false)
		buf = rs.close(buf)
	}
	if !x.send(buf) {
		return
	}

	deltaType := "response.output_text.delta"
	if !isText {
		deltaType = "response.function_call_arguments.delta"
	}
	last := len(rs.ans.pieces) - 1
	for j, piece := range rs.ans.pieces {
		buf = rs.open(buf[:0], deltaType)
		buf = rs.appendLocation(buf, isText)
		buf = append(buf, `,"delta":`...)
		buf = appendJSONString(buf, piece)
		if isText {
			buf = append(buf, `,"logprobs":[]`...)
		}
		if !x.sendContent(rs.close(buf)) {
			return
		}
		if x.failDue(j == last) {
			abort(x.w)
			return
		}
	}

	buf = buf[:0]
	if isText {
		buf = rs.open(buf, "response.output_text.done")
		buf = rs.appendLocation(buf, true)
		buf = append(buf, `,"text":`...)
		buf = rs.ans.appendContent(buf)
		buf = append(buf, `,"logprobs":[]`...)
		buf = rs.close(buf)
		buf = rs.open(buf, "response.content_part.done")
		buf = rs.appendLocation(buf, true)
		buf = append(buf, `,"part":`...)
		buf = rs.appendPart(buf, true)
		buf = rs.close(buf)
	} else {
		buf = rs.open(buf, "response.function_call_arguments.done")
		buf = rs.appendLocation(buf, false)
		buf = append(buf, `,"name":`...)
		buf = appendJSONString(buf, rs.tool.name)
		buf = append(buf, `,"arguments":`...)
		buf = appendJSONString(buf, rs.tool.args)
		buf = rs.close(buf)
	}
	buf = rs.open(buf, "response.output_item.done")
	buf = append(buf, `,"output_index":0,"item":`...)
	buf = rs.appendItem(buf, true)
	buf = rs.close(buf)
	buf = rs.open(buf, "response."+rs.status())
	buf = append(buf, `,"response":`...)
	buf = rs.appendResponse(buf, true)
	x.send(rs.close(buf))
}
