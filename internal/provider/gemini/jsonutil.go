package gemini

import (
	"math/rand/v2"
	"strconv"
	"unicode/utf8"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

// parse parses JSON held in b without copying it (gjson.ParseBytes copies).
func parse(b []byte) gjson.Result { return gjson.Parse(jsonraw.String(b)) }

// appendCompact appends the JSON value raw without insignificant
// whitespace. raw must be valid JSON.
func appendCompact(dst []byte, raw string) []byte {
	inStr, esc := false, false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if inStr {
			dst = append(dst, c)
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case ' ', '\t', '\r', '\n':
			continue
		case '"':
			inStr = true
		}
		dst = append(dst, c)
	}
	return dst
}

// appendStringValue appends the JSON string v (a gjson String result) as a
// JSON string literal. It copies v's raw literal when that is safe (valid
// UTF-8, no U+2028/U+2029), which costs no unescaping.
func appendStringValue(dst []byte, v gjson.Result) []byte {
	if rawSafe(v.Raw) {
		return append(dst, v.Raw...)
	}
	return openai.AppendString(dst, v.Str)
}

// appendStringInner appends the JSON string literal raw without its
// quotes, escaped for clients. raw is copied as is when safe; otherwise it
// is unescaped and escaped again.
func appendStringInner(dst []byte, raw string) []byte {
	if rawSafe(raw) {
		return append(dst, raw[1:len(raw)-1]...)
	}
	n := len(dst)
	dst = openai.AppendString(dst, gjson.Parse(raw).Str)
	// drop the quotes AppendString added
	copy(dst[n:], dst[n+1:len(dst)-1])
	return dst[:len(dst)-2]
}

// rawSafe reports whether raw is a JSON string literal that can be copied
// to clients as is.
func rawSafe(raw string) bool {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return false
	}
	for i := 0; i < len(raw); i++ {
		if raw[i] >= utf8.RuneSelf {
			if !utf8.ValidString(raw) {
				return false
			}
			// U+2028/U+2029 are E2 80 A8/A9
			for j := i; j+2 < len(raw); j++ {
				if raw[j] == 0xE2 && raw[j+1] == 0x80 && (raw[j+2] == 0xA8 || raw[j+2] == 0xA9) {
					return false
				}
			}
			return true
		}
	}
	return true
}

// appendInt appends n.
func appendInt(dst []byte, n int64) []byte { return strconv.AppendInt(dst, n, 10) }

// quote returns s as a JSON string (for messages).
func quote(s string) string { return string(openai.AppendString(nil, s)) }

// randSeed returns a random id seed.
func randSeed() uint64 { return rand.Uint64() }

// mix64 is the SplitMix64 finaliser: ids derived from a seed and a counter
// look random and never repeat within a seed.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// appendID appends prefix and 24 hex digits derived from seed and n.
func appendID(dst []byte, prefix string, seed, n uint64) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, prefix...)
	a, b := mix64(seed+n), mix64(seed^(n*0x9e3779b97f4a7c15))
	for i := 15; i >= 0; i-- {
		dst = append(dst, hex[(a>>(4*uint(i)))&0xf])
	}
	for i := 7; i >= 0; i-- {
		dst = append(dst, hex[(b>>(4*uint(i)))&0xf])
	}
	return dst
}
