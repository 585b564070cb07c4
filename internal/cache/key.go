// Package cache is the gateway's response cache: the key (a hash over a
// canonical form of everything that changes an answer), the recorded
// answer (Entry, replayable as a body or as stream events in more than one
// shape), the stores (in memory, byte-bounded; Redis, compressed), the
// coalescing of identical requests in flight, and the pipeline Stage that
// ties them together.
//
// The key: SHA-256 over the namespace, the endpoint (client format and
// operation), the routing table entry with its targets' upstream models,
// the client's protocol headers, and the client's body in canonical form:
// objects with their members in sorted order, strings unescaped, numbers
// normalized (1, 1.0 and 1e0 are one number), without the members that do
// not change the answer (model, which the route stands for; stream and
// stream_options, since a recorded stream answers a non-stream request and
// the reverse; user, metadata, store and the proxy steering members). Every
// other member counts: messages, tools, tool_choice, response_format,
// temperature, top_p, n, stop, seed, logit_bias, penalties, max_tokens,
// reasoning_effort, logprobs, modalities, and any member a later API adds.
// Key order, whitespace and number spelling do not change the key.
package cache

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

// Key identifies one cached answer.
type Key [32]byte

// String is the key in hex.
func (k Key) String() string {
	const hexdigits = "0123456789abcdef"
	var b [64]byte
	for i, c := range k {
		b[2*i], b[2*i+1] = hexdigits[c>>4], hexdigits[c&15]
	}
	return string(b[:])
}

// skipMember reports whether a top-level request member leaves the answer
// unchanged (and so stays out of the key).
func skipMember(name string) bool {
	switch name {
	case "model", "stream", "stream_options", "user", "metadata", "store":
		return true
	}
	return slices.Contains(openai.SteeringMembers, name)
}

// Value tags of the canonical form.
const (
	tagObject = 'o'
	tagMember = 'k'
	tagArray  = 'a'
	tagEnd    = 'e'
	tagString = 's'
	tagNumber = 'n'
	tagTrue   = 't'
	tagFalse  = 'f'
	tagNull   = 'z'
	tagField  = 'F'
	// tagRaw begins the input of digestMemo's hash, so that it never
	// equals a canonical form's.
	tagRaw = 'R'
)

// canon writes the canonical form of validated JSON in one pass: each
// object's members are written as they come, then put in sorted order
// where they were not.
type canon struct {
	b       []byte
	scratch []byte
	tail    []byte // the headers and extras after the body
	mems    []mem  // a stack: each object's members above its base
}

type mem struct {
	name       []byte
	start, end int // the member's canonical bytes in b
}

var canonPool = sync.Pool{New: func() any { return &canon{b: make([]byte, 0, 4096)} }}

// Digest is the hash of a request's content: its body in canonical form,
// its protocol headers and, for shapes a recording cannot be converted
// between, whether it streams. Key combines it with a namespace, an
// endpoint and a route, so that the answer of a fallback can be stored
// under the fallback's route without hashing the body again.
type Digest [32]byte

// DigestRequest hashes body (already validated: JSON, bounded depth, no
// duplicate member) with the protocol headers and the extra strings (the
// stream flag of unconvertible shapes, a RAG collection version).
//
// The canonical form costs a walk over every value; an SDK repeating a
// request sends the same bytes. So the digest is remembered under the
// SHA-256 of the input as it came (body, headers, extras), which a hash
// at the speed of the CPU's SHA instructions finds again: a repeated
// request, the one a cache hit answers, skips the walk. Only the hashes
// are remembered (no prompt text), in a fixed table.
func DigestRequest(body []byte, header http.Header, extra ...string) Digest {
	c := canonPool.Get().(*canon)
	defer c.release()
	// What follows the body in the canonical form: the headers, sorted,
	// and the extras.
	c.tail = c.tail[:0]
	if len(header) > 0 {
		names := make([]string, 0, len(header))
		for k := range header {
			names = append(names, strings.ToLower(k))
		}
		sort.Strings(names)
		for _, n := range names {
			c.tail = appendField(c.tail, "header:"+n)
			c.tail = appendField(c.tail, strings.Join(header.Values(n), ","))
		}
	}
	for _, e := range extra {
		c.tail = appendField(c.tail, e)
	}
	c.b = append(append(append(c.b[:0], tagRaw), body...), c.tail...)
	raw := sha256.Sum256(c.b)
	slot := &digestMemo[binary.LittleEndian.Uint64(raw[:8])%uint64(len(digestMemo))]
	if m := slot.Load(); m != nil && m.raw == raw {
		return m.digest
	}
	c.b = c.b[:0]
	c.value(body, jsonraw.SkipSpace(jsonraw.String(body), 0), true)
	c.b = append(c.b, c.tail...)
	d := Digest(sha256.Sum256(c.b))
	slot.Store(&memoDigest{raw: raw, digest: d})
	return d
}

// digestMemo remembers digests by the hash of their input as it came:
// direct-mapped (a new digest replaces the one in its slot), 64 KiB.
var digestMemo [1024]atomic.Pointer[memoDigest]

type memoDigest struct {
	raw    [32]byte // SHA-256 of tagRaw, the body and the tail
	digest Digest
}

// release returns c to the pool unless it grew large.
func (c *canon) release() {
	if cap(c.b) <= 1<<20 && cap(c.scratch) <= 1<<20 && cap(c.tail) <= 1<<20 {
		c.mems = c.mems[:0]
		canonPool.Put(c)
	}
}

// KeyOf is the key of a request with digest d in namespace ns at endpoint
// (client format and operation) through route (the routing table entry's
// pattern and its targets' provider and upstream model).
func KeyOf(ns, endpoint string, route []string, d Digest) Key {
	var buf [256]byte
	b := appendField(buf[:0], ns)
	b = appendField(b, endpoint)
	for _, r := range route {
		b = appendField(b, r)
	}
	b = append(b, d[:]...)
	return Key(sha256.Sum256(b))
}

// routeKey is KeyOf(ns, endpoint, routeParts(rt, model), d), without
// building the parts.
func routeKey(ns, endpoint string, rt *route.Route, model string, d Digest) Key {
	var buf [256]byte
	b := appendField(buf[:0], ns)
	b = appendField(b, endpoint)
	b = appendField(b, rt.Pattern)
	for i := range rt.Targets {
		t := &rt.Targets[i]
		up := t.UpstreamModel(model)
		b = append(b, tagField)
		b = binary.AppendUvarint(b, uint64(len(t.Provider)+1+len(up)))
		b = append(append(append(b, t.Provider...), 0), up...)
	}
	b = append(b, d[:]...)
	return Key(sha256.Sum256(b))
}

func appendField(b []byte, s string) []byte {
	b = append(b, tagField)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// value writes the value at s[i] and returns the index after it; top
// marks the request object, whose members that do not change the answer
// are skipped.
func (c *canon) value(s []byte, i int, top bool) int {
	if i >= len(s) {
		return i
	}
	switch s[i] {
	case '{':
		return c.object(s, i+1, top)
	case '[':
		c.b = append(c.b, tagArray)
		i = jsonraw.SkipSpace(jsonraw.String(s), i+1)
		for i < len(s) && s[i] != ']' {
			i = jsonraw.SkipSpace(jsonraw.String(s), c.value(s, i, false))
			if i < len(s) && s[i] == ',' {
				i = jsonraw.SkipSpace(jsonraw.String(s), i+1)
			}
		}
		c.b = append(c.b, tagEnd)
		return i + 1
	case '"':
		end := jsonraw.SkipString(jsonraw.String(s), i)
		c.b = append(c.b, tagString)
		c.b = c.appendText(c.b, s[i+1:end-1])
		return end
	case 't':
		c.b = append(c.b, tagTrue)
		return i + 4
	case 'f':
		c.b = append(c.b, tagFalse)
		return i + 5
	case 'n':
		c.b = append(c.b, tagNull)
		return i + 4
	}
	end := i
	for end < len(s) && strings.IndexByte("+-0123456789.eE", s[end]) >= 0 {
		end++
	}
	c.b = append(c.b, tagNumber)
	c.b = appendNumber(c.b, jsonraw.String(s[i:end]))
	return end
}

// appendText appends a string's text, unescaped, after its length.
func (c *canon) appendText(b, raw []byte) []byte {
	if bytes.IndexByte(raw, '\\') < 0 {
		b = binary.AppendUvarint(b, uint64(len(raw)))
		return append(b, raw...)
	}
	c.scratch = jsonraw.Unescape(c.scratch[:0], raw)
	b = binary.AppendUvarint(b, uint64(len(c.scratch)))
	return append(b, c.scratch...)
}

func (c *canon) object(s []byte, i int, top bool) int {
	c.b = append(c.b, tagObject)
	base := len(c.mems)
	region := len(c.b)
	sorted := true
	str := jsonraw.String(s)
	i = jsonraw.SkipSpace(str, i)
	for i < len(s) && s[i] == '"' {
		end := jsonraw.SkipString(str, i)
		name := s[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			name = jsonraw.Unescape(nil, name)
		}
		i = jsonraw.SkipSpace(str, end)
		i = jsonraw.SkipSpace(str, i+1) // ':'
		if top && skipMember(jsonraw.String(name)) {
			i = jsonraw.SkipValue(str, i)
		} else {
			start := len(c.b)
			c.b = append(c.b, tagMember)
			c.b = binary.AppendUvarint(c.b, uint64(len(name)))
			c.b = append(c.b, name...)
			i = c.value(s, i, false)
			if n := len(c.mems); n > base && bytes.Compare(c.mems[n-1].name, name) > 0 {
				sorted = false
			}
			c.mems = append(c.mems, mem{name: name, start: start, end: len(c.b)})
		}
		i = jsonraw.SkipSpace(str, i)
		if i < len(s) && s[i] == ',' {
			i = jsonraw.SkipSpace(str, i+1)
		}
	}
	if !sorted {
		ms := c.mems[base:]
		slices.SortFunc(ms, func(a, b mem) int { return bytes.Compare(a.name, b.name) })
		c.scratch = append(c.scratch[:0], c.b[region:]...)
		c.b = c.b[:region]
		for _, m := range ms {
			c.b = append(c.b, c.scratch[m.start-region:m.end-region]...)
		}
	}
	c.mems = c.mems[:base]
	c.b = append(c.b, tagEnd)
	return i + 1
}

// appendNumber appends a JSON number in one spelling: an integer literal
// as it is ("-0" as "0"), any other number that is an exact integer below
// 2^53 as that integer, the rest in Go's shortest float form. So 2, 2.0,
// 2e0 and 20e-1 are one number, and a 64-bit seed keeps every digit.
func appendNumber(b []byte, raw string) []byte {
	var nb [32]byte
	integer := raw != ""
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; (c < '0' || c > '9') && !(i == 0 && c == '-') {
			integer = false
			break
		}
	}
	if integer {
		if raw == "-0" {
			raw = "0"
		}
		return append(binary.AppendUvarint(append(b, 'i'), uint64(len(raw))), raw...)
	}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil {
		return append(binary.AppendUvarint(append(b, 'r'), uint64(len(raw))), raw...)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		s := strconv.AppendInt(nb[:0], int64(f), 10)
		return append(binary.AppendUvarint(append(b, 'i'), uint64(len(s))), s...)
	}
	s := strconv.AppendFloat(nb[:0], f, 'g', -1, 64)
	return append(binary.AppendUvarint(append(b, 'f'), uint64(len(s))), s...)
}
