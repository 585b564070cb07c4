package anthropic

import (
	"strconv"
	"unsafe"
)

// A tiny allocation-free JSON accessor for the stream hot paths. gjson
// unescapes every string value it returns (allocating when the text holds
// an escape such as \n); these helpers only return raw slices of the input,
// which must have been checked with gjson.Valid first. They never panic on
// malformed input: they return "" instead.

// bstr views b as a string without copying. The string must not outlive b
// or be used after b is modified.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// field returns the raw JSON value of key in the object obj, or "" when obj
// is not an object or has no such key. Keys are compared unescaped-raw.
func field(obj, key string) string {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return ""
	}
	i++
	for {
		i = skipWS(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return ""
		}
		end := skipString(obj, i)
		k := obj[i+1 : max(end-1, i+1)]
		i = skipWS(obj, end)
		if i >= len(obj) || obj[i] != ':' {
			return ""
		}
		i = skipWS(obj, i+1)
		vEnd := skipValue(obj, i)
		if k == key {
			return obj[i:vEnd]
		}
		i = skipWS(obj, vEnd)
		if i >= len(obj) || obj[i] != ',' {
			return ""
		}
		i++
	}
}

// path follows keys through nested objects.
func path(obj string, keys ...string) string {
	for _, k := range keys {
		obj = field(obj, k)
	}
	return obj
}

// elems calls fn with each raw element of the array arr until fn returns
// false.
func elems(arr string, fn func(raw string) bool) {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return
	}
	i = skipWS(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return
	}
	for i < len(arr) {
		end := skipValue(arr, i)
		if end == i || !fn(arr[i:end]) {
			return
		}
		i = skipWS(arr, end)
		if i >= len(arr) || arr[i] != ',' {
			return
		}
		i = skipWS(arr, i+1)
	}
}

func skipWS(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			i++
			continue
		}
		break
	}
	return i
}

// skipString returns the index after the string literal starting at s[i].
func skipString(s string, i int) int {
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return len(s)
}

// skipValue returns the index after the value starting at s[i].
func skipValue(s string, i int) int {
	if i >= len(s) {
		return i
	}
	switch s[i] {
	case '"':
		return skipString(s, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(s); j++ {
			switch s[j] {
			case '"':
				j = skipString(s, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(s)
	}
	for j := i; j < len(s); j++ {
		switch s[j] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return j
		}
	}
	return len(s)
}

// isString reports whether raw is a JSON string literal.
func isString(raw string) bool { return len(raw) >= 2 && raw[0] == '"' }

// isEmptyString reports whether raw is absent, null or "".
func isEmptyString(raw string) bool { return !isString(raw) || raw == `""` }

// rawInt parses a raw JSON integer; absent, null or malformed yield 0.
func rawInt(raw string) int64 {
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		if f, ferr := strconv.ParseFloat(raw, 64); ferr == nil && f >= 0 && f < 1<<53 {
			return int64(f)
		}
		return 0
	}
	return n
}

// stringOr returns raw when it is a JSON string literal, else def.
func stringOr(raw, def string) string {
	if isString(raw) {
		return raw
	}
	return def
}
