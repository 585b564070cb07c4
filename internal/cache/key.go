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
	"crypto/sha256"
	"encoding/binary"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
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
	tagString = 's'
	tagNumber = 'n'
	tagTrue   = 't'
	tagFalse  = 'f'
	tagNull   = 'z'
	tagField  = 'F'
)

var canonPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// Digest is the hash of a request's content: its body in canonical form,
// its protocol headers and, for shapes a recording cannot be converted
// between, whether it streams. Key combines it with a namespace, an
// endpoint and a route, so that the answer of a fallback can be stored
// under the fallback's route without hashing the body again.
type Digest [32]byte

// DigestRequest hashes body (already validated: JSON, bounded depth) with
// the protocol headers and the extra strings (the stream flag of
// unconvertible shapes, a RAG collection version).
func DigestRequest(body []byte, header http.Header, extra ...string) Digest {
	bp := canonPool.Get().(*[]byte)
	b := (*bp)[:0]
	root := openai.ParseInPlace(body)
	b = append(b, tagObject)
	b = appendMembers(b, root, true)
	if len(header) > 0 {
		names := make([]string, 0, len(header))
		for k := range header {
			names = append(names, strings.ToLower(k))
		}
		sort.Strings(names)
		for _, n := range names {
			b = appendField(b, "header:"+n)
			b = appendField(b, strings.Join(header.Values(n), ","))
		}
	}
	for _, e := range extra {
		b = appendField(b, e)
	}
	d := Digest(sha256.Sum256(b))
	if cap(b) <= 1<<20 {
		*bp = b
		canonPool.Put(bp)
	}
	return d
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

func appendField(b []byte, s string) []byte {
	b = append(b, tagField)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type member struct {
	name string
	val  gjson.Result
}

// appendMembers appends an object's members in sorted order; top skips
// the members that do not change the answer.
func appendMembers(b []byte, obj gjson.Result, top bool) []byte {
	var small [8]member
	ms := small[:0]
	obj.ForEach(func(k, v gjson.Result) bool {
		if top && skipMember(k.Str) {
			return true
		}
		ms = append(ms, member{k.Str, v})
		return true
	})
	if len(ms) > 1 {
		sort.Slice(ms, func(i, j int) bool { return ms[i].name < ms[j].name })
	}
	b = binary.AppendUvarint(b, uint64(len(ms)))
	for _, m := range ms {
		b = append(b, tagMember)
		b = binary.AppendUvarint(b, uint64(len(m.name)))
		b = append(b, m.name...)
		b = appendValue(b, m.val)
	}
	return b
}

func appendValue(b []byte, v gjson.Result) []byte {
	switch v.Type {
	case gjson.String:
		b = append(b, tagString)
		b = binary.AppendUvarint(b, uint64(len(v.Str)))
		return append(b, v.Str...)
	case gjson.Number:
		b = append(b, tagNumber)
		return appendNumber(b, v.Raw)
	case gjson.True:
		return append(b, tagTrue)
	case gjson.False:
		return append(b, tagFalse)
	case gjson.Null:
		return append(b, tagNull)
	}
	if v.IsObject() {
		b = append(b, tagObject)
		return appendMembers(b, v, false)
	}
	// An array: its elements in order, after their count.
	b = append(b, tagArray)
	n := 0
	v.ForEach(func(_, _ gjson.Result) bool { n++; return true })
	b = binary.AppendUvarint(b, uint64(n))
	v.ForEach(func(_, e gjson.Result) bool {
		b = appendValue(b, e)
		return true
	})
	return b
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
