package jsonraw

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Helpers over raw JSON values as Field, Path and Elems return them.

// IsString reports whether raw is a JSON string literal.
func IsString(raw string) bool { return len(raw) >= 2 && raw[0] == '"' }

// IsEmptyString reports whether raw is absent, null or "".
func IsEmptyString(raw string) bool { return !IsString(raw) || raw == `""` }

// Int parses a raw JSON integer; absent, null or malformed yield 0 (a
// float below 2^53 is truncated).
func Int(raw string) int64 {
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		if f, ferr := strconv.ParseFloat(raw, 64); ferr == nil && f >= 0 && f < 1<<53 {
			return int64(f)
		}
		return 0
	}
	return n
}

// StringOr returns raw when it is a JSON string literal, else def.
func StringOr(raw, def string) string {
	if IsString(raw) {
		return raw
	}
	return def
}

// CompactObject returns the JSON text raw without insignificant white
// space, or "{}" when raw is empty or not JSON.
func CompactObject(raw string) string {
	if raw == "" {
		return "{}"
	}
	var buf bytes.Buffer
	if json.Compact(&buf, []byte(raw)) != nil {
		return "{}"
	}
	return buf.String()
}
