package fakellm

import (
	"encoding/json"
	"math"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// CountPromptTokens returns the deterministic prompt token count the server
// reports in usage for a request body (chat, completions, embeddings or
// responses). A "token" is a whitespace-separated word:
//
//   - every chat message ("messages") and every message object of a
//     Responses "input" array counts 3 plus the words of its content (a
//     string, or the "text" of its content parts);
//   - "prompt" / "input" strings (or arrays of strings) count their words;
//   - token arrays (integers) count one token per integer;
//   - Responses "instructions" count their words.
//
// It returns 0 for a body that is not a JSON object.
func CountPromptTokens(body []byte) int {
	var q request
	if json.Unmarshal(body, &q) != nil {
		return 0
	}
	return q.promptTokens()
}

// scalePrompt is n scaled by Options.PromptTokenScale.
func (s *Server) scalePrompt(n int) int {
	if f := s.opts.PromptTokenScale; f > 0 {
		return int(math.Round(float64(n) * f))
	}
	return n
}

// promptTokens implements CountPromptTokens on a parsed request.
func (q *request) promptTokens() int {
	n := 0
	for _, m := range q.Messages {
		n += 3 + contentWords(m.Content)
	}
	n += inputTokens(q.Prompt)
	n += inputTokens(q.Input)
	if q.Instructions != nil {
		n += countWords(*q.Instructions)
	}
	return n
}

// inputTokens counts a prompt/input value: string, token, or array of those,
// of token arrays or of message objects.
func inputTokens(raw json.RawMessage) int {
	switch firstByte(raw) {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return countWords(s)
		}
	case '[':
		var elems []json.RawMessage
		if json.Unmarshal(raw, &elems) != nil {
			return 0
		}
		n := 0
		for _, e := range elems {
			if firstByte(e) == '{' {
				var m message
				if json.Unmarshal(e, &m) == nil {
					n += 3 + contentWords(m.Content)
				}
				continue
			}
			n += inputTokens(e)
		}
		return n
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return 1
	}
	return 0
}

// contentWords counts the words of a message content: a string or an array
// of parts carrying "text".
func contentWords(raw json.RawMessage) int {
	switch firstByte(raw) {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return countWords(s)
		}
	case '[':
		var parts []json.RawMessage
		if json.Unmarshal(raw, &parts) != nil {
			return 0
		}
		n := 0
		for _, p := range parts {
			if firstByte(p) != '{' {
				n += contentWords(p)
				continue
			}
			var part struct {
				Text string `json:"text"`
			}
			if json.Unmarshal(p, &part) == nil {
				n += countWords(part.Text)
			}
		}
		return n
	}
	return 0
}

// firstByte returns the first non-space byte of a JSON value, or 0.
func firstByte(raw []byte) byte {
	for _, c := range raw {
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return c
	}
	return 0
}

// countWords returns the number of whitespace-separated words in s.
func countWords(s string) int {
	n, inWord := 0, false
	for i := 0; i < len(s); {
		r, size := rune(s[i]), 1
		if r >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(s[i:])
		}
		i += size
		if unicode.IsSpace(r) {
			inWord = false
		} else if !inWord {
			inWord = true
			n++
		}
	}
	return n
}

// word returns the i-th piece of the canned answer
// "Hello from <Name> word3 word4 ...", with a leading space except for the
// first one so that pieces concatenate to the content.
func (s *Server) word(i int) string {
	switch i {
	case 0:
		return "Hello"
	case 1:
		return " from"
	case 2:
		return " " + s.opts.Name
	}
	return " word" + strconv.Itoa(i)
}

// answerPieces returns the n pieces of the canned answer. The result may be
// shared and must not be modified (re-slicing is fine).
func (s *Server) answerPieces(n int) []string {
	if n <= len(s.words) {
		return s.words[:n:n]
	}
	p := make([]string, n)
	copy(p, s.words)
	for i := len(s.words); i < n; i++ {
		p[i] = s.word(i)
	}
	return p
}

// splitEven splits s into at most n pieces of similar byte length, cut on
// rune boundaries; their concatenation is s.
func splitEven(s string, n int) []string {
	if n <= 1 || len(s) <= 1 {
		return []string{s}
	}
	size := (len(s) + n - 1) / n
	out := make([]string, 0, n)
	for len(s) > 0 {
		end := min(size, len(s))
		for end < len(s) && !utf8.RuneStart(s[end]) {
			end++
		}
		out = append(out, s[:end])
		s = s[end:]
	}
	return out
}

// answer is the content to produce: text pieces (one per stream chunk) and
// the finish reason.
type answer struct {
	pieces []string
	finish string // "stop" or "length"
}

// tokens is the completion token count of one choice.
func (a *answer) tokens() int { return len(a.pieces) }

// textAnswer builds the answer (canned words or echoed body) truncated to
// limit pieces when limit > 0.
func (x *exchange) textAnswer(limit int) answer {
	var a answer
	if x.b.Echo {
		a.pieces = splitEven(string(x.body), x.b.Chunks)
	} else if x.b.Text != "" {
		a.pieces = splitEven(x.b.Text, x.b.Chunks)
	} else {
		a.pieces = x.s.answerPieces(x.b.Chunks)
	}
	a.finish = "stop"
	if limit > 0 && limit < len(a.pieces) {
		a.pieces = a.pieces[:limit]
		a.finish = "length"
	}
	return a
}

// appendContent appends the concatenated pieces as a JSON string.
func (a *answer) appendContent(b []byte) []byte {
	b = append(b, '"')
	for _, p := range a.pieces {
		b = appendEscaped(b, p)
	}
	return append(b, '"')
}

// size is the total byte length of the pieces.
func (a *answer) size() int {
	n := 0
	for _, p := range a.pieces {
		n += len(p)
	}
	return n
}
