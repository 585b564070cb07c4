package guardrails

import (
	"strings"
	"testing"
)

// prompt builds a chat body of about size bytes of ordinary prose with,
// when pii is set, an e-mail, a phone number and a card number every
// 2 KB.
func prompt(size int, pii bool) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"gpt-4o","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"`)
	prose := "Our order 4412 shipped on 2026-12-01 at 10:30; version 1.2.3 fixed the totals of $1,234.56 for the Berlin office. "
	for n := 0; b.Len() < size; n++ {
		b.WriteString(prose)
		if pii && n%18 == 17 {
			b.WriteString("Reach ana.garcia@example.com or +44 20 7946 0958, card 4111 1111 1111 1111. ")
		}
	}
	b.WriteString(`"}]}`)
	return []byte(b.String())
}

// maskAll is a rule masking every detector.
var maskAll = []Rule{{Action: ActionMask, Detectors: []string{"all"}}}

// BenchmarkDetectors is the per-request cost of finding (and masking) the
// built-in detectors' matches in a 4 KB and a 100 KB prompt, with and
// without personal data in it.
func BenchmarkDetectors(b *testing.B) {
	d := NewDetectors([]string{"all"}, nil, nil)
	for _, c := range []struct {
		name string
		size int
	}{{"4KB", 4 << 10}, {"100KB", 100 << 10}} {
		for _, pii := range []bool{false, true} {
			body := prompt(c.size, pii)
			name := c.name + "/clean"
			if pii {
				name = c.name + "/pii"
			}
			b.Run(name, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					m := &masker{d: d, rules: maskAll, on: 1}
					m.mask(body, m.detect(body))
				}
			})
		}
	}
}
