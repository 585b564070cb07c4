// Package jsonraw is a tiny allocation-free JSON accessor for the stream
// hot paths of the provider translators. gjson unescapes every string value
// it returns (allocating when the text holds an escape such as \n); these
// helpers only return raw slices of the input, so text is copied in its
// escaped form. The input must have been checked with gjson.Valid first;
// on malformed input they never panic but return "" (or stop).
package jsonraw

import "unsafe"

// String views b as a string without copying. The string must not outlive
// b nor be used after b changes.
func String(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// Field returns the raw JSON value of key in the object obj, or "" when obj
// is not an object or has no such key. Keys are compared as written (not
// unescaped); the first of duplicate keys wins.
func Field(obj, key string) string {
	i := SkipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return ""
	}
	i++
	for {
		i = SkipSpace(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return ""
		}
		ks := i
		i = SkipString(obj, i)
		k := obj[ks:i]
		i = SkipSpace(obj, i)
		if i >= len(obj) || obj[i] != ':' {
			return ""
		}
		i = SkipSpace(obj, i+1)
		vs := i
		i = SkipValue(obj, i)
		if len(k) == len(key)+2 && k[1:len(k)-1] == key {
			return obj[vs:i]
		}
		i = SkipSpace(obj, i)
		if i >= len(obj) || obj[i] != ',' {
			return ""
		}
		i++
	}
}

// Path follows keys through nested objects; "" when one is missing.
func Path(obj string, keys ...string) string {
	for _, k := range keys {
		if obj = Field(obj, k); obj == "" {
			return ""
		}
	}
	return obj
}

// Elems calls fn with each raw element of the array arr until fn returns
// false. Nothing is called when arr is not an array.
func Elems(arr string, fn func(raw string) bool) {
	i := SkipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return
	}
	i = SkipSpace(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return
	}
	for i < len(arr) {
		end := SkipValue(arr, i)
		if end == i || !fn(arr[i:end]) {
			return
		}
		i = SkipSpace(arr, end)
		if i >= len(arr) || arr[i] != ',' {
			return
		}
		i = SkipSpace(arr, i+1)
	}
}

// SkipSpace returns the index of the first non-whitespace byte of s at or
// after i (len(s) when there is none).
func SkipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') {
		i++
	}
	return i
}

// SkipString returns the index after the string literal starting at s[i]
// (a '"'), or len(s) when it is not terminated.
func SkipString(s string, i int) int {
	for i++; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(s)
}

// SkipValue returns the index after the JSON value starting at s[i].
func SkipValue(s string, i int) int {
	if i >= len(s) {
		return i
	}
	switch s[i] {
	case '"':
		return SkipString(s, i)
	case '{', '[':
		depth := 0
		for i < len(s) {
			switch s[i] {
			case '"':
				i = SkipString(s, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(s)
	}
	for ; i < len(s); i++ {
		switch s[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return len(s)
}

// unsafeBytes views s as bytes without copying; they must not be modified.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
