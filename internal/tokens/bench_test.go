package tokens

import (
	"strconv"
	"strings"
	"testing"
)

func benchBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"model":"gpt-4o","messages":[`)
	line := "The quick brown fox jumps over the lazy dog; order #4412 shipped on 2026-12-01. "
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		// Distinct messages (a count remembered for one is no use for
		// another).
		b.WriteString(`{"role":"user","content":"Message ` + strconv.Itoa(i) + `: ` + strings.Repeat(line, 10) + `"}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func BenchmarkCount(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"4KB", 4 << 10}, {"100KB", 100 << 10}} {
		body := benchBody(size.n)
		for _, model := range []string{"gpt-4o", "gpt-4", "claude-sonnet-4-5"} {
			c := For(model)
			c.Chat(body) // the encoding's tables load once
			// cold: texts never seen; warm: the same request again (its
			// texts' counts remembered).
			b.Run(size.name+"/"+model+"/cold", func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					memo.reset()
					c.Chat(body)
				}
			})
			b.Run(size.name+"/"+model+"/warm", func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					c.Chat(body)
				}
			})
		}
		b.Run(size.name+"/bound", func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				Bound(body, 10)
			}
		})
	}
}
