// Package tokens counts the prompt tokens of a request: exactly, with
// OpenAI's BPE encodings (o200k_base for gpt-4o, gpt-4.1, gpt-5 and the o
// series; cl100k_base for gpt-4 and gpt-3.5), or with a calibrated estimate
// for the model families whose tokenizers are not available offline
// (Anthropic, Gemini, Mistral, Llama and anything unknown).
//
// A chat request is counted as OpenAI's cookbook ("How to count tokens with
// tiktoken") documents for current chat models: every message costs
// TokensPerMessage on top of its values' tokens (role, content, name),
// TokensPerName more when it has a name, and every reply is primed with
// TokensPerReply. Tool definitions and tool calls are counted as the tokens
// of their JSON text (OpenAI does not document their exact framing); an
// image is ImageTokens (a high-detail 512px tile image).
//
// Counting is not free (the BPE runs at a few MB/s), so callers count only
// when a limit, a budget or truncation needs it (see Bound for a cheap
// upper bound), a request's texts beyond MaxExactBytes are estimated, and
// the exact counts of recent texts are remembered (memo.go).
package tokens

import (
	"bytes"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
	"github.com/tiktoken-go/tokenizer/codec"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

// OpenAI's documented framing for chat models (gpt-3.5-turbo-0613 and
// later, gpt-4, gpt-4o and later).
const (
	TokensPerMessage = 3
	TokensPerName    = 1
	TokensPerReply   = 3
	// ImageTokens is what an image is counted as (85 base + 4 tiles of 170).
	ImageTokens = 765
)

// MaxExactBytes bounds the text one Prompt or Chat call (and one Text)
// encodes exactly; the texts beyond it are estimated (the BPE's cost grows
// with the text: about 0.8 ms per 4 KB, 15 ms per 100 KB on one core), so
// that no request can make the gateway spend seconds counting.
const MaxExactBytes = 16 << 10

// MaxExactText bounds one text that Text encodes exactly; a longer one is
// estimated.
const MaxExactText = 256 << 10

// Encoding names how a Counter counts.
type Encoding uint8

const (
	// Estimate is the calibrated estimate (see estimate.go).
	Estimate Encoding = iota
	// O200k is OpenAI's o200k_base.
	O200k
	// Cl100k is OpenAI's cl100k_base.
	Cl100k
)

func (e Encoding) String() string {
	switch e {
	case O200k:
		return "o200k_base"
	case Cl100k:
		return "cl100k_base"
	}
	return "estimate"
}

// Counter counts tokens for one model family. The zero value estimates
// with factor 1.
type Counter struct {
	Encoding Encoding
	// Family is the model family ("openai", "anthropic", "gemini",
	// "mistral", "llama", "other").
	Family string
	// factor scales the estimate for the family (1 for exact encodings).
	factor float64
	// left, when set, is what remains of a call's MaxExactBytes.
	left *int
}

var (
	o200kOnce, cl100kOnce sync.Once
	o200kCodec            *codec.Codec
	cl100kCodec           *codec.Codec
)

func codecFor(e Encoding) *codec.Codec {
	switch e {
	case O200k:
		o200kOnce.Do(func() { o200kCodec = codec.NewO200kBase() })
		return o200kCodec
	case Cl100k:
		cl100kOnce.Do(func() { cl100kCodec = codec.NewCl100kBase() })
		return cl100kCodec
	}
	return nil
}

// For returns the counter of model (an upstream model name; a provider
// prefix such as "openai/" or "azure/" is ignored).
func For(model string) Counter {
	m := strings.ToLower(model)
	if i := strings.LastIndexByte(m, '/'); i >= 0 {
		m = m[i+1:]
	}
	m = strings.TrimPrefix(m, "ft:")
	switch {
	case hasAny(m, "gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "gpt-oss", "codex-", "computer-use"):
		return Counter{Encoding: O200k, Family: "openai", factor: 1}
	case hasAny(m, "gpt-4", "gpt-3.5", "gpt-35", "text-embedding-3", "text-embedding-ada"):
		return Counter{Encoding: Cl100k, Family: "openai", factor: 1}
	}
	for _, f := range families {
		if hasAny(m, f.prefixes...) {
			return Counter{Encoding: Estimate, Family: f.name, factor: f.factor}
		}
	}
	return Counter{Encoding: Estimate, Family: "other", factor: otherFactor}
}

func hasAny(m string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(m, p) {
			return true
		}
	}
	return false
}

// Exact reports whether the counter uses the model's own tokenizer.
func (c Counter) Exact() bool { return c.Encoding != Estimate }

// Text counts the tokens of s (estimated above MaxExactBytes).
func (c Counter) Text(s string) int {
	if s == "" {
		return 0
	}
	if c.Encoding == Estimate || len(s) > MaxExactText || c.left != nil && *c.left < len(s) {
		f := c.factor
		if f == 0 {
			f = 1
		}
		return scaled(estimateText(s), f)
	}
	var key uint64
	if len(s) >= memoMinBytes {
		key = memo.key(c.Encoding, s)
		if n, ok := memo.get(key); ok {
			return n // remembered: costs no exact budget
		}
	}
	if c.left != nil {
		*c.left -= len(s)
	}
	n, err := codecFor(c.Encoding).Count(s)
	if err != nil {
		return scaled(estimateText(s), 1)
	}
	if key != 0 {
		memo.put(key, n)
	}
	return n
}

// Message counts one chat message (an OpenAI message object) with its
// framing.
func (c Counter) Message(msg gjson.Result) int {
	if !msg.IsObject() {
		return TokensPerMessage + c.Text(msg.String())
	}
	n := TokensPerMessage
	msg.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "content":
			n += c.content(v)
		case "name":
			n += c.Text(v.Str) + TokensPerName
		case "role", "tool_call_id", "refusal":
			n += c.Text(v.Str)
		case "tool_calls", "function_call", "audio":
			n += c.Text(v.Raw)
		}
		return true
	})
	return n
}

// content counts a message's content: a string or an array of parts.
func (c Counter) content(v gjson.Result) int {
	switch {
	case v.Type == gjson.String:
		return c.Text(v.Str)
	case v.IsArray():
		n := 0
		v.ForEach(func(_, part gjson.Result) bool {
			n += c.part(part)
			return true
		})
		return n
	case v.Type == gjson.Null || !v.Exists():
		return 0
	}
	return c.Text(v.Raw)
}

func (c Counter) part(part gjson.Result) int {
	if part.Type == gjson.String {
		return c.Text(part.Str)
	}
	switch part.Get("type").Str {
	case "image_url", "input_image", "image":
		return ImageTokens
	case "text", "input_text", "output_text":
		return c.Text(part.Get("text").Str)
	}
	return c.Text(part.Raw)
}

// Chat counts a chat request body's prompt: its messages with their
// framing, the reply's priming and its tools' JSON.
func (c Counter) Chat(body []byte) int {
	if c.left == nil {
		left := MaxExactBytes
		c.left = &left
	}
	n := TokensPerReply
	parse(body).ForEach(func(k, v gjson.Result) bool {
		n += c.chatMember(k.Str, v)
		return true
	})
	return n
}

// chatMember counts one member of a chat request's body.
func (c Counter) chatMember(name string, v gjson.Result) int {
	n := 0
	switch name {
	case "messages":
		v.ForEach(func(_, m gjson.Result) bool {
			n += c.Message(m)
			return true
		})
	case "tools", "functions", "response_format":
		n += c.Text(v.Raw)
	}
	return n
}

// promptMember counts one member of another request's body.
func (c Counter) promptMember(name string, v gjson.Result) int {
	switch name {
	case "prompt", "input", "instructions", "system":
		return c.items(v)
	case "tools", "response_format":
		return c.Text(v.Raw)
	}
	return 0
}

// promptMembers bounds the members Prompt collects in its one pass over a
// body: the eight it counts, each once (a validated body has no duplicate
// member). A body with more is counted in two passes.
const promptMembers = 8

// Prompt counts any request body's prompt: a chat request's messages, or
// the strings of "prompt", "input" and "instructions" (completions,
// embeddings, responses), each item with a message's framing.
func (c Counter) Prompt(body []byte) int {
	left := MaxExactBytes
	c.left = &left
	// One pass collects the members that count, in order; whether the
	// body is a chat request (its first messages member an array) then
	// says how they count.
	type member struct {
		name string
		v    gjson.Result
	}
	var buf [promptMembers]member
	members := buf[:0]
	chat, seenMessages, over := false, false, false
	root := parse(body)
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "messages":
			if !seenMessages {
				seenMessages, chat = true, v.IsArray()
			}
		case "tools", "functions", "response_format", "prompt", "input", "instructions", "system":
		default:
			return true
		}
		if len(members) == promptMembers {
			over = true
			return false
		}
		members = append(members, member{k.Str, v})
		return true
	})
	if over {
		return c.promptSlow(root, body)
	}
	n := TokensPerReply
	for _, m := range members {
		if chat {
			n += c.chatMember(m.name, m.v)
		} else {
			n += c.promptMember(m.name, m.v)
		}
	}
	return n
}

// promptSlow is Prompt in two passes.
func (c Counter) promptSlow(root gjson.Result, body []byte) int {
	if root.Get("messages").IsArray() {
		return c.Chat(body)
	}
	n := TokensPerReply
	root.ForEach(func(k, v gjson.Result) bool {
		n += c.promptMember(k.Str, v)
		return true
	})
	return n
}

func (c Counter) items(v gjson.Result) int {
	switch {
	case v.Type == gjson.String:
		return c.Text(v.Str)
	case v.IsArray():
		n := 0
		v.ForEach(func(_, it gjson.Result) bool {
			switch {
			case it.Type == gjson.Number:
				n++ // a token id
			case it.IsObject():
				n += c.Message(it)
			default:
				n += c.items(it)
			}
			return true
		})
		return n
	case v.IsObject():
		return c.Message(v)
	}
	return 0
}

// Bound is a cheap upper bound of what Prompt returns for an exact
// encoding: a BPE token is at least one byte of text, so a body's prompt
// has at most as many tokens as the body has bytes, plus every message's
// framing and ImageTokens per image. When Bound fits a window, counting is
// not needed.
func Bound(body []byte, messages int) int {
	// Both markers have their '_' at offset 6, and '_' is rare in text:
	// one IndexByte pass finds them.
	images := 0
	for off := 0; ; {
		i := bytes.IndexByte(body[off:], '_')
		if i < 0 {
			break
		}
		j := off + i
		if j >= 6 && (bytes.HasPrefix(body[j-6:], imageURL) || bytes.HasPrefix(body[j-6:], inputImage)) {
			images++
		}
		off = j + 1
	}
	return len(body) + messages*(TokensPerMessage+TokensPerName) + TokensPerReply + images*ImageTokens
}

var (
	imageURL   = []byte(`"image_url"`)
	inputImage = []byte(`"input_image"`)
)

func parse(body []byte) gjson.Result { return openai.ParseInPlace(body) }

// Budgeted returns c counting at most n bytes of text exactly over all its
// calls, estimating beyond.
func (c Counter) Budgeted(n int) Counter {
	c.left = &n
	return c
}
