package provider

import "testing"

func TestRedactor(t *testing.T) {
	r := NewRedactor("sk-canary-123456", "sk-canary-123456-long", "", "abc", "hdr-secret-value")
	cases := map[string]string{
		"bad key sk-canary-123456 given":       "bad key [REDACTED] given",
		"Bearer sk-canary-123456-long!":        "Bearer [REDACTED]!",
		"x-extra: hdr-secret-value; abc stays": "x-extra: [REDACTED]; abc stays",
		"nothing here":                         "nothing here",
	}
	for in, want := range cases {
		if got := r.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
	e := r.Error(&Error{Message: "key sk-canary-123456", Param: "sk-canary-123456", Code: "c", Type: "t", Cause: `malformed HTTP response "sk-canary-123456"`})
	if e.Message != "key [REDACTED]" || e.Param != Redacted || e.Cause != `malformed HTTP response "[REDACTED]"` {
		t.Errorf("Error: %+v", e)
	}
	var none *Redactor
	if none.String("sk-canary-123456") != "sk-canary-123456" || NewRedactor().String("x") != "x" {
		t.Error("empty redactors must pass text through")
	}
}
