package guardrails

import (
	"math"
	"net/http"
	"strconv"

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

// message is one message of the history.
type message struct {
	raw    string
	role   string
	calls  bool // an assistant message with tool_calls or function_call
	tokens int  // -1: not counted yet
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
	reserve := int(maxTokens)
	if reserve <= 0 {
		reserve = t.ReserveOutput
		if reserve <= 0 {
			reserve = DefaultReserveOutput
		}
	}
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
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "messages":
			v.ForEach(func(_, m gjson.Result) bool {
				role := m.Get("role").Str
				msgs = append(msgs, message{raw: m.Raw, role: role, tokens: -1,
					calls: role == "assistant" && (m.Get("tool_calls").IsArray() && len(m.Get("tool_calls").Array()) > 0 || m.Get("function_call").Exists())})
				return true
			})
		case "tools", "functions", "response_format":
			fixed += c.Text(v.Raw)
		}
		return true
	})
	count := func(i int) int {
		if msgs[i].tokens < 0 {
			msgs[i].tokens = c.Message(gjson.Parse(msgs[i].raw))
		}
		return msgs[i].tokens
	}
	// Pinned messages and groups.
	used := fixed
	var groups []group
	for i := 0; i < len(msgs); i++ {
		switch msgs[i].role {
		case "system", "developer":
			used += count(i)
			continue
		}
		g := group{first: i, last: i, tokens: -1, user: msgs[i].role == "user"}
		if msgs[i].calls {
			for g.last+1 < len(msgs) && (msgs[g.last+1].role == "tool" || msgs[g.last+1].role == "function") {
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
				if r := msgs[i].role; r != "system" && r != "developer" {
					g.tokens += count(i)
				}
			}
		}
		return g.tokens
	}
	tooLong := func(need int) *openai.Error {
		return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "context_length_exceeded", Param: "messages",
			Message: "This model's maximum context length is " + strconv.Itoa(window) + " tokens. However, your messages resulted in " +
				strconv.Itoa(need) + " tokens (with " + strconv.Itoa(reserve) + " reserved for the answer) and cannot be truncated to fit."}
	}
	// Does everything fit?
	total := used
	all := true
	for i := range groups {
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
			return Truncation{Strategy: DropOldest, ReserveOutput: t.ReserveOutput}.Apply(body, c, window, maxTokens, nmsgs)
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
		if r := msgs[i].role; r != "system" && r != "developer" {
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
				cut.Tokens += cd.Message(gjson.Parse(msgs[i].raw))
			}
			continue
		}
		if len(arr) > 1 {
			arr = append(arr, ',')
		}
		arr = append(arr, msgs[i].raw...)
	}
	arr = append(arr, ']')
	out, err := sjson.SetRawBytes(body, "messages", arr)
	if err != nil {
		return Cut{}, openai.BadRequest("The messages could not be truncated.", "messages", "invalid_request")
	}
	cut.Body = out
	return cut, nil
}
