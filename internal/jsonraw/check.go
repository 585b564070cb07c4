package jsonraw

import (
	"bytes"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// DefaultMaxDepth bounds the nesting of JSON the gateway reads when no other
// bound is configured: request bodies, upstream answers and stream events,
// admin API bodies and key files.
const DefaultMaxDepth = 128

// Problem is what Check found wrong.
type Problem uint8

// The problems Check reports.
const (
	ProblemSyntax    Problem = iota + 1 // not JSON
	ProblemUTF8                         // a string is not valid UTF-8
	ProblemDepth                        // nested deeper than the bound
	ProblemDuplicate                    // an object has two members of one name
)

// CheckError describes why a document failed Check.
type CheckError struct {
	Problem Problem
	// Offset is the byte offset at which the problem was found.
	Offset int
	// Member is the duplicated member's name (unescaped), for
	// ProblemDuplicate; Path is where its object stands, in the form
	// `messages[2].content[0]` ("" for the top level).
	Member, Path string
}

func (e *CheckError) Error() string {
	switch e.Problem {
	case ProblemUTF8:
		return "invalid UTF-8 in a string at byte " + strconv.Itoa(e.Offset)
	case ProblemDepth:
		return "JSON nested too deeply at byte " + strconv.Itoa(e.Offset)
	case ProblemDuplicate:
		if e.Path == "" {
			return "duplicate member " + strconv.Quote(e.Member)
		}
		return "duplicate member " + strconv.Quote(e.Member) + " in " + e.Path
	}
	return "invalid JSON at byte " + strconv.Itoa(e.Offset)
}

// Rules are the checks Check adds to JSON's grammar.
type Rules uint8

const (
	// Unique: no object may have two members of the same name, escaped
	// spellings counted as that name (`"mod\u0065l"` is "model").
	Unique Rules = 1 << iota
	// UTF8: strings must be valid UTF-8 (RFC 8259 §8.1).
	UTF8
)

// Check validates data as one JSON value (RFC 8259) without recursion, so no
// input can exhaust the stack: nesting must not exceed maxDepth (≤ 0 means
// DefaultMaxDepth), and the rules apply. It allocates nothing for
// documents that nest no deeper than 32 and whose open objects hold no more
// than 64 member names at once; gjson and the helpers of this package may
// then walk data safely.
func Check(data []byte, maxDepth int, rules Rules) *CheckError {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	var frameBuf [32]frame
	var keyBuf [64]span
	frames, keys := frameBuf[:0], keyBuf[:0]
	unique, utf := rules&Unique != 0, rules&UTF8 != 0
	s := data
	i := skipSpace(s, 0)
	var top *frame
value:
	if i >= len(s) {
		return fail(ProblemSyntax, i)
	}
	switch ch := s[i]; {
	case ch == '{' || ch == '[':
		if len(frames) >= maxDepth {
			return fail(ProblemDepth, i)
		}
		obj := ch == '{'
		frames = append(frames, frame{object: obj, keysFrom: len(keys)})
		i = skipSpace(s, i+1)
		if i < len(s) && (s[i] == '}' && obj || s[i] == ']' && !obj) {
			frames = frames[:len(frames)-1]
			i++
			goto after
		}
		if obj {
			goto member
		}
		goto value
	case ch == '"':
		end, p := stringEnd(s, i, utf)
		if p != 0 {
			return fail(p, end)
		}
		i = end
	case ch == 't':
		if !bytes.HasPrefix(s[i:], litTrue) {
			return fail(ProblemSyntax, i)
		}
		i += 4
	case ch == 'f':
		if !bytes.HasPrefix(s[i:], litFalse) {
			return fail(ProblemSyntax, i)
		}
		i += 5
	case ch == 'n':
		if !bytes.HasPrefix(s[i:], litNull) {
			return fail(ProblemSyntax, i)
		}
		i += 4
	case ch == '-' || ch >= '0' && ch <= '9':
		end := number(s, i)
		if end < 0 {
			return fail(ProblemSyntax, i)
		}
		i = end
	default:
		return fail(ProblemSyntax, i)
	}
after:
	i = skipSpace(s, i)
	if len(frames) == 0 {
		if i != len(s) {
			return fail(ProblemSyntax, i)
		}
		return nil
	}
	if i >= len(s) {
		return fail(ProblemSyntax, i)
	}
	top = &frames[len(frames)-1]
	switch s[i] {
	case ',':
		i = skipSpace(s, i+1)
		if top.object {
			goto member
		}
		top.index++
		goto value
	case '}':
		if !top.object {
			return fail(ProblemSyntax, i)
		}
		keys = keys[:top.keysFrom]
	case ']':
		if top.object {
			return fail(ProblemSyntax, i)
		}
	default:
		return fail(ProblemSyntax, i)
	}
	frames = frames[:len(frames)-1]
	i++
	goto after
member:
	if i >= len(s) || s[i] != '"' {
		return fail(ProblemSyntax, i)
	}
	{
		end, p := stringEnd(s, i, utf)
		if p != 0 {
			return fail(p, end)
		}
		k := span{start: i + 1, end: end - 1, escaped: bytes.IndexByte(s[i+1:end-1], '\\') >= 0}
		top = &frames[len(frames)-1]
		top.key = k
		if unique {
			if top.set == nil {
				for _, o := range keys[top.keysFrom:] {
					if sameName(s, o, k) {
						return duplicate(s, frames, name(s, k), i)
					}
				}
				keys = append(keys, k)
				if len(keys)-top.keysFrom > setAfter {
					// Many members: from here on a set of names, O(1) each.
					top.set = make(keySet, 2*setAfter)
					for _, o := range keys[top.keysFrom:] {
						top.set[name(s, o)] = struct{}{}
					}
					keys = keys[:top.keysFrom]
				}
			} else {
				n := name(s, k)
				if _, dup := top.set[n]; dup {
					return duplicate(s, frames, n, i)
				}
				top.set[n] = struct{}{}
			}
		}
		i = skipSpace(s, end)
		if i >= len(s) || s[i] != ':' {
			return fail(ProblemSyntax, i)
		}
		i = skipSpace(s, i+1)
	}
	goto value
}

var (
	litTrue  = []byte("true")
	litFalse = []byte("false")
	litNull  = []byte("null")
)

// Valid reports whether data is JSON nested at most DefaultMaxDepth deep:
// the check of upstream answers and events that the gateway translates
// (translation repairs invalid UTF-8 and reads the first of duplicates).
func Valid(data []byte) bool { return Check(data, 0, 0) == nil }

// ValidString is Valid for a string.
func ValidString(s string) bool { return Check(unsafeBytes(s), 0, 0) == nil }

// ValidUTF8 is Valid with strings held to UTF-8: the check of upstream
// events passed to clients as they are.
func ValidUTF8(data []byte) bool { return Check(data, 0, UTF8) == nil }

// frame is one open object or array.
type frame struct {
	object   bool
	index    int    // arrays: the element being read
	keysFrom int    // objects: where this object's names start in keys
	set      keySet // objects with many members: their names
	key      span   // objects: the member being read
}

type span struct {
	start, end int // the name between its quotes
	escaped    bool
}

type keySet map[string]struct{}

// setAfter is the member count past which an object's names go into a map,
// so that an object with many members costs O(n), not O(n²).
const setAfter = 16

func fail(p Problem, at int) *CheckError { return &CheckError{Problem: p, Offset: at} }

func duplicate(s []byte, frames []frame, member string, at int) *CheckError {
	e := fail(ProblemDuplicate, at)
	e.Member = member
	// Where the innermost open object stands.
	var b []byte
	for n, f := range frames[:len(frames)-1] {
		if f.object {
			if n > 0 {
				b = append(b, '.')
			}
			b = append(b, name(s, f.key)...)
		} else {
			b = append(b, '[')
			b = strconv.AppendInt(b, int64(f.index), 10)
			b = append(b, ']')
		}
	}
	e.Path = string(b)
	return e
}

func sameName(s []byte, a, b span) bool {
	if !a.escaped && !b.escaped {
		return bytes.Equal(s[a.start:a.end], s[b.start:b.end])
	}
	return name(s, a) == name(s, b)
}

// name returns the unescaped member name.
func name(s []byte, k span) string {
	raw := s[k.start:k.end]
	if !k.escaped {
		return string(raw)
	}
	return string(Unescape(nil, raw))
}

// plain marks the bytes a string may hold as they are: not '"', '\\', a
// control character or the start of a multi-byte sequence.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// stringEnd checks the string literal at s[i] (a '"') and returns the index
// after it, or the offset of the problem and the problem.
func stringEnd(s []byte, i int, utf bool) (int, Problem) {
	for i++; i < len(s); {
		for i+8 <= len(s) && plain[s[i]] && plain[s[i+1]] && plain[s[i+2]] && plain[s[i+3]] &&
			plain[s[i+4]] && plain[s[i+5]] && plain[s[i+6]] && plain[s[i+7]] {
			i += 8
		}
		for i < len(s) && plain[s[i]] {
			i++
		}
		if i >= len(s) {
			break
		}
		switch ch := s[i]; {
		case ch == '"':
			return i + 1, 0
		case ch == '\\':
			if i+1 >= len(s) {
				return i, ProblemSyntax
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) || !isHex4(s[i+2:i+6]) {
					return i, ProblemSyntax
				}
				i += 6
			default:
				return i, ProblemSyntax
			}
		case ch < 0x20:
			return i, ProblemSyntax
		case !utf:
			i++
		default:
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				return i, ProblemUTF8
			}
			i += n
		}
	}
	return len(s), ProblemSyntax
}

func isHex4(b []byte) bool {
	for _, ch := range b[:4] {
		if !(ch >= '0' && ch <= '9' || ch >= 'a' && ch <= 'f' || ch >= 'A' && ch <= 'F') {
			return false
		}
	}
	return true
}

// number returns the index after the number at s[i], or -1.
func number(s []byte, i int) int {
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		}
	default:
		return -1
	}
	if i < len(s) && s[i] == '.' {
		i++
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return -1
		}
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if i >= len(s) || s[i] < '0' || s[i] > '9' {
			return -1
		}
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		}
	}
	return i
}

func skipSpace(s []byte, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') {
		i++
	}
	return i
}

// Unescape appends the text of the JSON string body raw (between its
// quotes, already checked) to dst, escapes decoded; a lone surrogate
// becomes U+FFFD as encoding/json does.
func Unescape(dst, raw []byte) []byte {
	for i := 0; i < len(raw); i++ {
		ch := raw[i]
		if ch != '\\' || i+1 >= len(raw) {
			dst = append(dst, ch)
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			if i+5 > len(raw) {
				return dst
			}
			r := rune(hex4(raw[i+1 : i+5]))
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
					r2 = utf16.DecodeRune(r, rune(hex4(raw[i+3:i+7])))
				}
				if r2 != utf8.RuneError {
					i += 6
				}
				r = r2
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, raw[i])
		}
	}
	return dst
}

func hex4(b []byte) int {
	n := 0
	for _, ch := range b {
		n <<= 4
		switch {
		case ch >= '0' && ch <= '9':
			n |= int(ch - '0')
		case ch >= 'a' && ch <= 'f':
			n |= int(ch - 'a' + 10)
		case ch >= 'A' && ch <= 'F':
			n |= int(ch - 'A' + 10)
		}
	}
	return n
}

// MaxDepthLimit is the largest nesting a request may be configured to
// allow. Request translators check with it: the gateway has already held
// the body to its configured bound.
const MaxDepthLimit = 1024

// ValidRequest reports whether data is JSON nested at most MaxDepthLimit
// deep: the check of client JSON inside a translator (bodies, tool
// arguments), after the gateway's own bound.
func ValidRequest(data []byte) bool { return Check(data, MaxDepthLimit, 0) == nil }

// ValidRequestString is ValidRequest for a string.
func ValidRequestString(s string) bool { return Check(unsafeBytes(s), MaxDepthLimit, 0) == nil }
