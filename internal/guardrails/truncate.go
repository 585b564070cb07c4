package guardrails

import (
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/tokens"
)

// Strategy is how a chat history too long for its model's context window
// is cut.
type Strategy uint8

const (
	// DropOldest drops the oldest turns first.
	DropOldest Strategy = iota
	// Middle keeps the first user turn (the task, usually) and the latest
	// turns, dropping those in between.
	Middle
	// Error refuses the request (400 context_length_exceeded).
	Error
)

// ParseStrategy reads a strategy's name.
func ParseStrategy(s string) (Strategy, bool) {
	switch s {
	case "drop_oldest", "":
		return DropOldest, true
	case "middle":
		return Middle, true
	case "error":
		return Error, true
	}
	return 0, false
}

// DefaultReserveOutput is the answer's share of the window when the
// request sets no max_tokens.
const DefaultReserveOutput = 1024

// Truncation fits a chat request into its model's context window: the
// prompt, counted with the model's tokenizer (tokens.For), plus the
// answer's reserve (the request's max_tokens, else ReserveOutput) must not
// exceed the window.
//
// What it keeps: every system and developer message; the latest turns,
// as many as fit; with Middle also the first user turn. A tool result
// stays with the assistant message that called it (they are kept or
// dropped together), and the kept conversation never starts, after the
// system messages, with an assistant or tool message. When even the
// system messages and the latest turn do not fit, the request is refused
// with 400 context_length_exceeded.
type Truncation struct {
	Strategy      Strategy
	ReserveOutput int
}

// Cut is what a truncation did.
type Cut struct {
	// Body is the rewritten body (the request's own when nothing was cut).
	Body []byte
	// Messages and Tokens count what was dropped.
	Messages, Tokens int
}

// Shape is where a request's history lies and how its items read.
type Shape uint8

const (
	// ShapeChat is OpenAI's Chat Completions: "messages", system and
	// developer messages pinned, tool (function) results after the
	// assistant message that called them.
	ShapeChat Shape = iota
	// ShapeAnthropic is Anthropic's Messages API (a native body):
	// "messages" of users and assistants (the system prompt is a
	// member of its own, always kept), an assistant's tool_use blocks
	// answered by the tool_result blocks of the next user message.
	ShapeAnthropic
	// ShapeResponses is OpenAI's Responses API: "input" items, system and
	// developer messages pinned ("instructions" always kept), reasoning
	// and *_call items kept with the *_call_output items after them.
	ShapeResponses
)

// member is the member holding the history.
func (sh Shape) member() string {
	if sh == ShapeResponses {
		return "input"
	}
	return "messages"
}

// fixed reports whether a top-level member is part of every prompt.
func (sh Shape) fixed(k string) bool {
	switch k {
	case "tools", "response_format", "functions":
		return true
	case "system":
		return sh == ShapeAnthropic
	case "instructions", "text":
		return sh == ShapeResponses
	}
	return false
}

// Kinds of history items.
const (
	kindOther  uint8 = iota // an assistant turn
	kindUser                // a user turn: the kept history may start here
	kindPinned              // a system or developer message: always kept
	kindCall                // opens a group: tool calls (Responses: reasoning too)
	kindResult              // a tool result: stays in its call's group
)

// kind classifies one history item.
func (sh Shape) kind(m gjson.Result) uint8 {
	role := m.Get("role").Str
	switch sh {
	case ShapeAnthropic:
		blocks := m.Get("content")
		has := func(typ string) bool {
			found := false
			if blocks.IsArray() {
				blocks.ForEach(func(_, b gjson.Result) bool {
					found = b.Get("type").Str == typ
					return !found
				})
			}
			return found
		}
		switch {
		case role == "assistant" && (has("tool_use") || has("server_tool_use")):
			return kindCall
		case role == "user" && has("tool_result"):
			return kindResult
		case role == "user":
			return kindUser
		}
		return kindOther
	case ShapeResponses:
		typ := m.Get("type").Str
		switch {
		case typ == "" || typ == "message":
			switch role {
			case "system", "developer":
				return kindPinned
			case "user":
				return kindUser
			}
			return kindOther
		case typ == "reasoning" || strings.HasSuffix(typ, "_call"):
			return kindCall
		case strings.HasSuffix(typ, "_call_output"):
			return kindResult
		}
		return kindOther
	}
	switch role {
	case "system", "developer":
		return kindPinned
	case "tool", "function":
		return kindResult
	case "user":
		return kindUser
	case "assistant":
		if tc := m.Get("tool_calls"); tc.IsArray() && len(tc.Array()) > 0 || m.Get("function_call").Exists() {
			return kindCall
		}
	}
	return kindOther
}

// joins reports whether an item of kind k joins the group before it, one
// opened by a call.
func (sh Shape) joins(k uint8) bool {
	return k == kindResult || sh == ShapeResponses && k == kindCall
}

// count counts one history item with its framing.
func (sh Shape) count(c tokens.Counter, m gjson.Result) int {
	if sh == ShapeResponses && !m.Get("content").Exists() {
		return tokens.TokensPerMessage + c.Text(m.Raw) // a call, an output, reasoning
	}
	return c.Message(m)
}

// message is one item of the history.
type message struct {
	raw    string
	kind   uint8
	tokens int // -1: not counted yet
}

// group is a run of messages kept or dropped together: a message, or an
// assistant's tool calls with their results.
type group struct {
	first, last int // message indexes, inclusive
	tokens      int // -1: not counted yet
	user        bool
}

// Apply fits body (a chat request with nmsgs messages and the given
// max_tokens) into window tokens.
func (t Truncation) Apply(body []byte, c tokens.Counter, window int, maxTokens int64, nmsgs int) (Cut, *openai.Error) {
	return t.ApplyShape(ShapeChat, body, c, window, maxTokens, nmsgs)
}

// ApplyShape fits body, a request of shape sh whose history has at most
// nmsgs items, into window tokens.
func (t Truncation) ApplyShape(sh Shape, body []byte, c tokens.Counter, window int, maxTokens int64, nmsgs int) (Cut, *openai.Error) {
	reserve := t.reserve(maxTokens)
	budget := window - reserve
	bound := tokens.Bound(body, nmsgs)
	if !c.Exact() {
		// The estimate is at most a token per byte of text, times its
		// scale (family factor and calibration), rounded up per text.
		bound *= max(2, int(math.Ceil(c.Scale())))
	}
	if budget > 0 && bound <= budget {
		return Cut{Body: body}, nil // fits whatever the exact count
	}
	root := openai.ParseInPlace(body)
	msgs := make([]message, 0, nmsgs)
	fixed := tokens.TokensPerReply // everything but the messages
	member := sh.member()
	root.ForEach(func(k, v gjson.Result) bool {
		switch {
		case k.Str == member && v.IsArray():
			v.ForEach(func(_, m gjson.Result) bool {
				msgs = append(msgs, message{raw: m.Raw, kind: sh.kind(m), tokens: -1})
				return true
			})
		case k.Str == member:
			fixed += c.Text(v.Str) // a Responses input string: nothing to drop
		case sh.fixed(k.Str):
			if v.Type == gjson.String {
				fixed += c.Text(v.Str)
			} else {
				fixed += c.Text(v.Raw)
			}
		}
		return true
	})
	count := func(i int) int {
		if msgs[i].tokens < 0 {
			msgs[i].tokens = sh.count(c, gjson.Parse(msgs[i].raw))
		}
		return msgs[i].tokens
	}
	// Pinned messages and groups.
	used := fixed
	var groups []group
	for i := 0; i < len(msgs); i++ {
		if msgs[i].kind == kindPinned {
			used += count(i)
			continue
		}
		g := group{first: i, last: i, tokens: -1, user: msgs[i].kind == kindUser}
		if msgs[i].kind == kindCall {
			for g.last+1 < len(msgs) && sh.joins(msgs[g.last+1].kind) {
				g.last++
			}
		}
		groups = append(groups, g)
		i = g.last
	}
	gcount := func(g *group) int {
		if g.tokens < 0 {
			g.tokens = 0
			for i := g.first; i <= g.last; i++ {
				if msgs[i].kind != kindPinned {
					g.tokens += count(i)
				}
			}
		}
		return g.tokens
	}
	tooLong := func(need int) *openai.Error {
		return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "context_length_exceeded", Param: member,
			Message: "This model's maximum context length is " + strconv.Itoa(window) + " tokens. However, your messages resulted in " +
				strconv.Itoa(need) + " tokens (with " + strconv.Itoa(reserve) + " reserved for the answer) and cannot be truncated to fit."}
	}
	// Does everything fit?
	total := used
	all := total+reserve <= window
	for i := 0; all && i < len(groups); i++ {
		total += gcount(&groups[i])
		if total+reserve > window {
			all = false
			break
		}
	}
	if all {
		return Cut{Body: body}, nil
	}
	if t.Strategy == Error || len(groups) == 0 || used >= budget {
		need := total
		return Cut{}, tooLong(need + reserve)
	}
	keep := make([]bool, len(groups))
	head := -1 // Middle: the first group, kept when it is a user turn and fits
	if t.Strategy == Middle && groups[0].user && used+gcount(&groups[0]) < budget {
		head = 0
		used += gcount(&groups[0])
	}
	// The latest groups, as many as fit, contiguous.
	start := len(groups)
	for j := len(groups) - 1; j > head; j-- {
		if used+gcount(&groups[j]) > budget {
			break
		}
		used += gcount(&groups[j])
		start = j
	}
	// Never start (after the head) with an assistant or tool message.
	for start < len(groups) && !groups[start].user {
		used -= gcount(&groups[start])
		start++
	}
	if start == len(groups) {
		if head >= 0 {
			// The head took the room the latest turn needs: cut as
			// drop_oldest does.
			return Truncation{Strategy: DropOldest, ReserveOutput: t.ReserveOutput}.ApplyShape(sh, body, c, window, maxTokens, nmsgs)
		}
		return Cut{}, tooLong(used + gcount(&groups[len(groups)-1]) + reserve)
	}
	if head >= 0 {
		keep[head] = true
	}
	for j := start; j < len(groups); j++ {
		keep[j] = true
	}
	// Rebuild the messages array in order. Dropped messages not counted
	// yet are counted exactly up to tokens.MaxExactBytes, estimated beyond.
	cut := Cut{}
	cd := c.Budgeted(tokens.MaxExactBytes)
	arr := make([]byte, 0, len(body))
	arr = append(arr, '[')
	gi := 0
	for i := 0; i < len(msgs); i++ {
		kept := true
		if msgs[i].kind != kindPinned {
			for gi < len(groups) && groups[gi].last < i {
				gi++
			}
			kept = keep[gi]
		}
		if !kept {
			cut.Messages++
			if msgs[i].tokens >= 0 {
				cut.Tokens += msgs[i].tokens
			} else {
				cut.Tokens += sh.count(cd, gjson.Parse(msgs[i].raw))
			}
			continue
		}
		if len(arr) > 1 {
			arr = append(arr, ',')
		}
		arr = append(arr, msgs[i].raw...)
	}
	arr = append(arr, ']')
	out, err := sjson.SetRawBytes(body, member, arr)
	if err != nil {
		return Cut{}, openai.BadRequest("The messages could not be truncated.", member, "invalid_request")
	}
	cut.Body = out
	return cut, nil
}

// Fits checks that a request with no history to cut (a completions
// prompt) fits into window tokens with its answer's reserve: a prompt that
// does not is refused with 400 context_length_exceeded, whatever the
// strategy (cutting a single prompt would change what it asks).
func (t Truncation) Fits(body []byte, c tokens.Counter, window int, maxTokens int64) *openai.Error {
	reserve := t.reserve(maxTokens)
	bound := tokens.Bound(body, 0)
	if !c.Exact() {
		bound *= max(2, int(math.Ceil(c.Scale())))
	}
	if bound+reserve <= window {
		return nil
	}
	need := c.Prompt(body)
	if need+reserve <= window {
		return nil
	}
	return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "context_length_exceeded", Param: "prompt",
		Message: "This model's maximum context length is " + strconv.Itoa(window) + " tokens. However, your prompt resulted in " +
			strconv.Itoa(need+reserve) + " tokens (with " + strconv.Itoa(reserve) + " reserved for the answer)."}
}

// reserve is the answer's share of the window: max_tokens, else
// ReserveOutput, else DefaultReserveOutput.
func (t Truncation) reserve(maxTokens int64) int {
	if maxTokens > 0 {
		return int(maxTokens)
	}
	if t.ReserveOutput > 0 {
		return t.ReserveOutput
	}
	return DefaultReserveOutput
}
