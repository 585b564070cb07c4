// Package jsontest compares JSON texts in tests.
package jsontest

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Equal reports whether two JSON texts hold the same value (member order
// and white space aside); invalid JSON fails the test.
func Equal(t testing.TB, got, want string) bool {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("invalid want JSON %s: %v", want, err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	return bytes.Equal(gb, wb)
}

// Compact returns s without insignificant white space.
func Compact(s string) string {
	var b bytes.Buffer
	_ = json.Compact(&b, []byte(s))
	return b.String()
}
