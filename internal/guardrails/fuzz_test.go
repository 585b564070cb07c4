package guardrails

import (
	"testing"
	"unicode/utf8"
)

// FuzzRestoreSplit: splitting an answer into stream chunks at any two
// rune boundaries never changes what the client reads.
func FuzzRestoreSplit(f *testing.F) {
	f.Add("see [EMAIL_1] and [CARD_1]", 3, 11)
	f.Add("[[EMAIL_1]][PHONE_1", 1, 2)
	f.Add("[EMAIL_", 0, 7)
	v := testVault()
	f.Fuzz(func(t *testing.T, answer string, i, j int) {
		if !utf8.ValidString(answer) || len(answer) > 512 {
			return
		}
		i, j = clamp(i, len(answer)), clamp(j, len(answer))
		if i > j {
			i, j = j, i
		}
		// Upstream deltas are JSON strings: whole runes.
		for i > 0 && i < len(answer) && !utf8.RuneStart(answer[i]) {
			i--
		}
		for j > 0 && j < len(answer) && !utf8.RuneStart(answer[j]) {
			j--
		}
		whole := stream(v, []string{answer})
		if got := stream(v, []string{answer[:i], answer[i:j], answer[j:]}); got != whole {
			t.Fatalf("split at %d,%d: %q, whole %q", i, j, got, whole)
		}
	})
}

// FuzzDetectors: any text yields ordered, non-overlapping matches inside
// it.
func FuzzDetectors(f *testing.F) {
	f.Add("mail ana@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111, DE89370400440532013000, 10.0.0.1 ::1")
	f.Add("((((+1 (415) 555-2671)))) @@ .@. 999-99-9999")
	d := NewDetectors([]string{"all"}, nil, nil)
	f.Fuzz(func(t *testing.T, s string) {
		end := 0
		for _, m := range d.Find(s) {
			if m.Start < end || m.End <= m.Start || m.End > len(s) {
				t.Fatalf("bad match %+v in %q", m, s)
			}
			end = m.End
		}
	})
}

func clamp(i, n int) int {
	if i < 0 {
		i = -i
	}
	if n == 0 {
		return 0
	}
	return i % (n + 1)
}
