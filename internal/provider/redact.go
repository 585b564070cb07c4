package provider

import (
	"slices"
	"strings"
)

// Redacted replaces a secret in upstream-derived text.
const Redacted = "[REDACTED]"

// minSecret is the shortest value a Redactor replaces: shorter ones would
// mangle ordinary words and reveal little.
const minSecret = 6

// Redactor removes configured secrets (provider keys, extra header values,
// gateway key secrets) from text an upstream sent, such as an error message
// that echoes the request's headers, before it reaches a client, a log, a
// metric or a trace. The zero value and nil redact nothing. It is safe for
// concurrent use.
type Redactor struct {
	r *strings.Replacer
}

// NewRedactor returns a Redactor for secrets; empty and very short values
// are ignored.
func NewRedactor(secrets ...string) *Redactor {
	var ss []string
	for _, s := range secrets {
		if len(s) >= minSecret && !slices.Contains(ss, s) {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return &Redactor{}
	}
	// Longer secrets first, so that one holding another is replaced whole.
	slices.SortFunc(ss, func(a, b string) int { return len(b) - len(a) })
	pairs := make([]string, 0, 2*len(ss))
	for _, s := range ss {
		pairs = append(pairs, s, Redacted)
	}
	return &Redactor{r: strings.NewReplacer(pairs...)}
}

// String returns s with every secret replaced by [Redacted].
func (r *Redactor) String(s string) string {
	if r == nil || r.r == nil || s == "" {
		return s
	}
	return r.r.Replace(s)
}

// Error redacts the upstream-derived fields of e in place and returns e.
func (r *Redactor) Error(e *Error) *Error {
	if r == nil || r.r == nil || e == nil {
		return e
	}
	e.Message, e.Type, e.Code, e.Param = r.String(e.Message), r.String(e.Type), r.String(e.Code), r.String(e.Param)
	e.Cause = r.String(e.Cause)
	return e
}
