package cache

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// convertible reports whether an entry of this format and operation can
// be replayed in the other shape (a stream as a body, a body as a stream):
// OpenAI's Chat Completions, whichever dialect the client speaks.
func convertible(f provider.Format, op openai.Op) bool {
	return f == provider.FormatOpenAI && op == openai.OpChat
}

// The members of a chat answer the conversion writes.
type chatDoc struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint string          `json:"system_fingerprint,omitempty"`
	Choices           []chatChoice    `json:"choices"`
	Usage             json.RawMessage `json:"usage,omitempty"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      *chatMessage    `json:"message,omitempty"`
	Delta        *chatDelta      `json:"delta,omitempty"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

type chatMessage struct {
	Role      string     `json:"role"`
	Content   *string    `json:"content"`
	Refusal   *string    `json:"refusal,omitempty"`
	ToolCalls []toolCall `json:"tool_calls,omitempty"`
	// Reasoning is reasoning_content (DeepSeek, vLLM) or reasoning
	// (OpenRouter), whichever the upstream sent.
	reasoning    string
	reasoningKey string
}

type chatDelta struct {
	Role         string     `json:"role,omitempty"`
	Content      string     `json:"content,omitempty"`
	Refusal      string     `json:"refusal,omitempty"`
	ToolCalls    []toolCall `json:"tool_calls,omitempty"`
	reasoning    string
	reasoningKey string
}

type toolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"`
	Function toolFunction `json:"function"`
}

type toolFunction struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

var nullJSON = json.RawMessage("null")

// marshalWithReasoning encodes v and adds the reasoning member.
func marshalWithReasoning(v any, key, reasoning string) []byte {
	b, _ := json.Marshal(v)
	if reasoning == "" {
		return b
	}
	if key == "" {
		key = "reasoning_content"
	}
	q, _ := json.Marshal(reasoning)
	// v is an object: insert the member before its closing brace.
	out := make([]byte, 0, len(b)+len(key)+len(q)+4)
	out = append(out, b[:len(b)-1]...)
	if len(b) > 2 {
		out = append(out, ',')
	}
	out = append(out, '"')
	out = append(out, key...)
	out = append(out, `":`...)
	out = append(out, q...)
	return append(out, '}')
}

func (m *chatMessage) MarshalJSON() ([]byte, error) {
	type plain chatMessage
	return marshalWithReasoning((*plain)(m), m.reasoningKey, m.reasoning), nil
}

func (d *chatDelta) MarshalJSON() ([]byte, error) {
	type plain chatDelta
	return marshalWithReasoning((*plain)(d), d.reasoningKey, d.reasoning), nil
}

type choiceAcc struct {
	index                      int
	role                       string
	content, reasoning, refuse strings.Builder
	hasContent, hasRefusal     bool
	reasoningKey               string
	tools                      map[int]*toolCall
	finish                     *string
}

// addToolDelta adds a streamed tool-call delta to the choice's calls.
func (a *choiceAcc) addToolDelta(tc gjson.Result) {
	var ti int
	var id, typ, name, args string
	tc.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "index":
			ti = int(v.Int())
		case "id":
			id = v.Str
		case "type":
			typ = v.Str
		case "function":
			v.ForEach(func(k, v gjson.Result) bool {
				switch k.Str {
				case "name":
					name = v.Str
				case "arguments":
					args = v.Str
				}
				return true
			})
		}
		return true
	})
	t := a.tools[ti]
	if t == nil {
		t = &toolCall{Type: "function"}
		a.tools[ti] = t
	}
	if id != "" {
		t.ID = id
	}
	if typ != "" {
		t.Type = typ
	}
	t.Function.Name += name
	t.Function.Arguments += args
}

// chatBodyFromEvents accumulates recorded Chat Completions chunks into the
// chat.completion body they stream: per choice its content, reasoning,
// refusal, tool calls (arguments joined) and finish reason; the usage.
func chatBodyFromEvents(events []Event) []byte {
	var doc chatDoc
	doc.Object = "chat.completion"
	accs := map[int]*choiceAcc{}
	// One pass over each object's members (a Get per member would scan
	// every chunk a dozen times).
	for _, ev := range events {
		c := openai.ParseInPlace(ev.Data)
		if !c.IsObject() {
			continue
		}
		first := doc.ID == ""
		var choices gjson.Result
		c.ForEach(func(k, v gjson.Result) bool {
			switch k.Str {
			case "id":
				if first {
					doc.ID = v.String()
				}
			case "created":
				if first {
					doc.Created = v.Int()
				}
			case "model":
				if first {
					doc.Model = v.String()
				}
			case "system_fingerprint":
				if v.Type == gjson.String {
					doc.SystemFingerprint = v.Str
				}
			case "usage":
				if v.IsObject() {
					doc.Usage = json.RawMessage(v.Raw)
				}
			case "choices":
				choices = v
			}
			return true
		})
		choices.ForEach(func(_, ch gjson.Result) bool {
			i := 0
			var delta, finish gjson.Result
			ch.ForEach(func(k, v gjson.Result) bool {
				switch k.Str {
				case "index":
					i = int(v.Int())
				case "delta":
					delta = v
				case "finish_reason":
					finish = v
				}
				return true
			})
			a := accs[i]
			if a == nil {
				a = &choiceAcc{index: i, role: "assistant", tools: map[int]*toolCall{}}
				accs[i] = a
			}
			delta.ForEach(func(k, v gjson.Result) bool {
				switch k.Str {
				case "role":
					if v.Type == gjson.String && v.Str != "" {
						a.role = v.Str
					}
				case "content":
					if v.Type == gjson.String {
						a.content.WriteString(v.Str)
						a.hasContent = true
					}
				case "refusal":
					if v.Type == gjson.String {
						a.refuse.WriteString(v.Str)
						a.hasRefusal = true
					}
				case "reasoning_content", "reasoning":
					if v.Type == gjson.String {
						a.reasoning.WriteString(v.Str)
						a.reasoningKey = k.Str
					}
				case "tool_calls":
					v.ForEach(func(_, tc gjson.Result) bool {
						a.addToolDelta(tc)
						return true
					})
				}
				return true
			})
			if finish.Type == gjson.String {
				s := finish.Str
				a.finish = &s
			}
			return true
		})
	}
	idx := make([]int, 0, len(accs))
	for i := range accs {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	doc.Choices = make([]chatChoice, 0, len(idx))
	for _, i := range idx {
		a := accs[i]
		m := &chatMessage{Role: a.role, reasoning: a.reasoning.String(), reasoningKey: a.reasoningKey}
		if a.hasContent || len(a.tools) == 0 {
			s := a.content.String()
			m.Content = &s
		}
		if a.hasRefusal {
			s := a.refuse.String()
			m.Refusal = &s
		}
		ti := make([]int, 0, len(a.tools))
		for k := range a.tools {
			ti = append(ti, k)
		}
		sort.Ints(ti)
		for _, k := range ti {
			m.ToolCalls = append(m.ToolCalls, *a.tools[k])
		}
		doc.Choices = append(doc.Choices, chatChoice{Index: i, Message: m, Logprobs: nullJSON, FinishReason: a.finish})
	}
	b, _ := json.Marshal(&doc)
	return b
}

// maxPieces bounds the content chunks a body is replayed in.
const maxPieces = 64

// pieces splits s into chunks at word starts (each piece keeps its
// leading space), at most maxPieces of them.
func pieces(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	start := 0
	for i := 1; i < len(s); i++ {
		if s[i] == ' ' && s[i-1] != ' ' {
			out = append(out, s[start:i])
			start = i
		}
	}
	out = append(out, s[start:])
	if len(out) <= maxPieces {
		return out
	}
	per := (len(out) + maxPieces - 1) / maxPieces
	merged := make([]string, 0, maxPieces)
	for i := 0; i < len(out); i += per {
		merged = append(merged, strings.Join(out[i:min(i+per, len(out))], ""))
	}
	return merged
}

// chatEventsFromBody streams a chat.completion body as the chunks an
// upstream would have sent: per choice the role, the reasoning and the
// content in pieces, the tool calls, the finish reason; then the usage
// chunk. The chunks are written straight into one buffer (no reflection):
// a body answers stream requests this way on every hit. usageLast: the
// last chunk is the usage-only one.
func chatEventsFromBody(body []byte) (events []Event, usageLast bool) {
	root := openai.ParseInPlace(body)
	// Every chunk starts with the same members.
	head := make([]byte, 0, 128)
	head = append(head, `{"id":`...)
	head = openai.AppendString(head, root.Get("id").String())
	head = append(head, `,"object":"chat.completion.chunk","created":`...)
	head = strconv.AppendInt(head, root.Get("created").Int(), 10)
	head = append(head, `,"model":`...)
	head = openai.AppendString(head, root.Get("model").String())
	if fp := root.Get("system_fingerprint").String(); fp != "" {
		head = append(head, `,"system_fingerprint":`...)
		head = openai.AppendString(head, fp)
	}
	head = append(head, `,"choices":[`...)

	// About the chunks of a short answer; a longer one grows it.
	buf := make([]byte, 0, 2*len(body)+32*(len(head)+64))
	var ends []int
	emit := func(i int, d *chatDelta, finish string) {
		buf = append(buf, head...)
		buf = append(buf, `{"index":`...)
		buf = strconv.AppendInt(buf, int64(i), 10)
		buf = append(buf, `,"delta":`...)
		buf = appendDelta(buf, d)
		buf = append(buf, `,"logprobs":null,"finish_reason":`...)
		if finish == "" {
			buf = append(buf, "null"...)
		} else {
			buf = openai.AppendString(buf, finish)
		}
		buf = append(buf, "}]}"...)
		ends = append(ends, len(buf))
	}
	root.Get("choices").ForEach(func(_, ch gjson.Result) bool {
		i := int(ch.Get("index").Int())
		m := ch.Get("message")
		role := m.Get("role").String()
		if role == "" {
			role = "assistant"
		}
		emit(i, &chatDelta{Role: role}, "")
		for _, k := range [...]string{"reasoning_content", "reasoning"} {
			if s := m.Get(k); s.Type == gjson.String {
				for _, p := range pieces(s.Str) {
					emit(i, &chatDelta{reasoning: p, reasoningKey: k}, "")
				}
			}
		}
		for _, p := range pieces(m.Get("content").Str) {
			emit(i, &chatDelta{Content: p}, "")
		}
		if s := m.Get("refusal"); s.Type == gjson.String && s.Str != "" {
			emit(i, &chatDelta{Refusal: s.Str}, "")
		}
		n := 0
		m.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
			k := n
			n++
			emit(i, &chatDelta{ToolCalls: []toolCall{{Index: &k, ID: tc.Get("id").Str, Type: tc.Get("type").Str,
				Function: toolFunction{Name: tc.Get("function.name").Str, Arguments: tc.Get("function.arguments").Str}}}}, "")
			return true
		})
		finish := "stop"
		if f := ch.Get("finish_reason"); f.Type == gjson.String && f.Str != "" {
			finish = f.Str
		}
		emit(i, &chatDelta{}, finish)
		return true
	})
	if u := root.Get("usage"); u.IsObject() {
		buf = append(buf, head...)
		buf = append(buf, `],"usage":`...)
		buf = append(buf, u.Raw...)
		buf = append(buf, '}')
		ends = append(ends, len(buf))
		usageLast = true
	}
	events = make([]Event, len(ends))
	from := 0
	for k, to := range ends {
		events[k] = Event{Data: buf[from:to:to]}
		from = to
	}
	return events, usageLast
}

// appendDelta appends d as a chunk's delta object: the members json.Marshal
// would write for it (empty ones left out), then the reasoning.
func appendDelta(buf []byte, d *chatDelta) []byte {
	buf = append(buf, '{')
	mark := len(buf)
	member := func(name string) {
		if len(buf) > mark {
			buf = append(buf, ',')
		}
		buf = append(buf, '"')
		buf = append(buf, name...)
		buf = append(buf, '"', ':')
	}
	if d.Role != "" {
		member("role")
		buf = openai.AppendString(buf, d.Role)
	}
	if d.Content != "" {
		member("content")
		buf = openai.AppendString(buf, d.Content)
	}
	if d.Refusal != "" {
		member("refusal")
		buf = openai.AppendString(buf, d.Refusal)
	}
	if len(d.ToolCalls) > 0 {
		member("tool_calls")
		buf = append(buf, '[')
		for j, tc := range d.ToolCalls {
			if j > 0 {
				buf = append(buf, ',')
			}
			buf = appendToolCall(buf, &tc)
		}
		buf = append(buf, ']')
	}
	if d.reasoning != "" {
		key := d.reasoningKey
		if key == "" {
			key = "reasoning_content"
		}
		member(key)
		buf = openai.AppendString(buf, d.reasoning)
	}
	return append(buf, '}')
}

// appendToolCall appends tc as json.Marshal would (empty index, id, type
// and name left out).
func appendToolCall(buf []byte, tc *toolCall) []byte {
	buf = append(buf, '{')
	if tc.Index != nil {
		buf = append(buf, `"index":`...)
		buf = strconv.AppendInt(buf, int64(*tc.Index), 10)
		buf = append(buf, ',')
	}
	if tc.ID != "" {
		buf = append(buf, `"id":`...)
		buf = openai.AppendString(buf, tc.ID)
		buf = append(buf, ',')
	}
	if tc.Type != "" {
		buf = append(buf, `"type":`...)
		buf = openai.AppendString(buf, tc.Type)
		buf = append(buf, ',')
	}
	buf = append(buf, `"function":{`...)
	if tc.Function.Name != "" {
		buf = append(buf, `"name":`...)
		buf = openai.AppendString(buf, tc.Function.Name)
		buf = append(buf, ',')
	}
	buf = append(buf, `"arguments":`...)
	buf = openai.AppendString(buf, tc.Function.Arguments)
	return append(buf, '}', '}')
}

// idPaths are the members of an answer that a replay refreshes: the
// answer's id and its creation time, in stream events and in bodies.
type idPaths struct {
	id, created string
}

func pathsFor(f provider.Format, op openai.Op, stream bool) idPaths {
	switch {
	case f == provider.FormatAnthropic && stream:
		return idPaths{id: "message.id"}
	case f == provider.FormatAnthropic:
		return idPaths{id: "id"}
	case op == openai.OpResponses && stream:
		return idPaths{id: "response.id", created: "response.created_at"}
	case op == openai.OpResponses:
		return idPaths{id: "id", created: "created_at"}
	case op == openai.OpEmbeddings:
		return idPaths{}
	}
	return idPaths{id: "id", created: "created"}
}

// freshener gives a replay fresh ids (the same length and prefix, new
// characters) and a fresh creation time, rewriting in place in a copy.
//
// The events of one stream begin alike (`{"id":"chatcmpl-…","object":…,
// "created":…`): once an event had every refreshed member rewritten, its
// bytes up to the last of them are the reference, and an event that begins
// with the same bytes gets the reference's rewritten copy without being
// parsed (the same bytes before a position parse the same way, so the
// members there are the same ones, with the same values).
type freshener struct {
	paths   idPaths
	created []byte
	// The ids seen and their fresh spelling (one per answer, as a rule).
	orig    []string
	fresh   [][]byte
	origBuf [2]string
	freshBf [2][]byte
	// ref is the reference prefix, refFresh its rewritten copy.
	ref, refFresh []byte
	refDone       bool // no reference will be taken (one was, or none can be)
	buf           [24]byte
	refBuf        [2][128]byte
}

func newFreshener(p idPaths, now int64) *freshener {
	f := &freshener{paths: p}
	f.init(p, now)
	return f
}

// init prepares f (zero) for a replay at now.
func (f *freshener) init(p idPaths, now int64) {
	f.paths = p
	f.created = strconv.AppendInt(f.buf[:0], now, 10)
	f.orig, f.fresh = f.origBuf[:0], f.freshBf[:0]
}

const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// bodySpots are the byte ranges of an answer body's id (inside its quotes)
// and creation time; an empty range: none (or one not freshened in place:
// an escaped id).
type bodySpots struct {
	id, created [2]int
}

// findSpots finds the spots of the values at p in body.
func findSpots(p idPaths, body []byte) (sp bodySpots) {
	if p.id != "" {
		if r := openai.GetInPlace(body, p.id); r.Type == gjson.String && r.Index > 0 && strings.IndexByte(r.Raw, '\\') < 0 {
			sp.id = [2]int{r.Index + 1, r.Index + len(r.Raw) - 1}
		}
	}
	if p.created != "" {
		if r := openai.GetInPlace(body, p.created); r.Type == gjson.Number && r.Index > 0 {
			sp.created = [2]int{r.Index, r.Index + len(r.Raw)}
		}
	}
	return sp
}

// freshBody returns a copy of body (an answer with one id and one
// creation time, at sp) with fresh values. A creation time of another
// length than now's stays as it was (the body keeps its length).
func freshBody(sp bodySpots, now int64, body []byte) []byte {
	dst := append(make([]byte, 0, len(body)), body...)
	if id := sp.id; id[1] > id[0] {
		randomizeID(dst[id[0]:id[1]])
	}
	if c := sp.created; c[1] > c[0] {
		var buf [24]byte
		if created := strconv.AppendInt(buf[:0], now, 10); len(created) == c[1]-c[0] {
			copy(dst[c[0]:c[1]], created)
		}
	}
	return dst
}

// randomizeID gives id new characters after its last '-' or '_', ten
// from each random 64-bit number.
func randomizeID(id []byte) {
	var x uint64
	n := 0
	for i := max(bytes.LastIndexAny(id, "-_")+1, 0); i < len(id); i++ {
		if n == 0 {
			x, n = rand.Uint64(), 10 // 62^10 < 2^64
		}
		id[i] = idChars[x%uint64(len(idChars))]
		x /= uint64(len(idChars))
		n--
	}
}

// freshID returns the fresh spelling of orig, the same for every event.
func (f *freshener) freshID(orig string) []byte {
	for i, o := range f.orig {
		if o == orig {
			return f.fresh[i]
		}
	}
	b := []byte(orig)
	randomizeID(b)
	f.orig, f.fresh = append(f.orig, orig), append(f.fresh, b)
	return b
}

// apply returns data with fresh values, in dst's storage.
func (f *freshener) apply(dst, data []byte) []byte {
	if f.ref != nil && len(data) >= len(f.ref) && bytes.Equal(data[:len(f.ref)], f.ref) {
		dst = append(dst[:0], f.refFresh...)
		return append(dst, data[len(f.ref):]...)
	}
	dst = append(dst[:0], data...)
	end, want, done := 0, 0, 0
	if f.paths.id != "" {
		want++
		if r := openai.GetInPlace(data, f.paths.id); r.Type == gjson.String && r.Index > 0 && strings.IndexByte(r.Raw, '\\') < 0 {
			copy(dst[r.Index+1:r.Index+len(r.Raw)-1], f.freshID(r.Str))
			end, done = max(end, r.Index+len(r.Raw)), done+1
		}
	}
	if f.paths.created != "" {
		want++
		if r := openai.GetInPlace(data, f.paths.created); r.Type == gjson.Number && r.Index > 0 && len(r.Raw) == len(f.created) {
			copy(dst[r.Index:r.Index+len(r.Raw)], f.created)
			end, done = max(end, r.Index+len(r.Raw)), done+1
		}
	}
	if !f.refDone && want > 0 && done == want {
		f.refDone = true
		f.ref = append(f.refBuf[0][:0], data[:end]...)
		f.refFresh = append(f.refBuf[1][:0], dst[:end]...)
	}
	return dst
}
