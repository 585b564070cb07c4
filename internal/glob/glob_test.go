package glob

import "testing"

func TestMatch(t *testing.T) {
	cases := []struct {
		p, n string
		ok   bool
	}{
		{"gpt-*", "gpt-4o", true},
		{"gpt-*", "gpt-", true},
		{"gpt-*", "claude", false},
		{"*", "anything/with/slash", true},
		{"*", "", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"gpt-4?", "gpt-4o", true},
		{"gpt-4?", "gpt-4", false},
		{"exact", "exact", true},
		{"exact", "exactly", false},
		{"", "", true},
		{"", "x", false},
	}
	for _, c := range cases {
		if got := Match(c.p, c.n); got != c.ok {
			t.Errorf("Match(%q,%q)=%v want %v", c.p, c.n, got, c.ok)
		}
	}
}

func TestIsAndSpecificity(t *testing.T) {
	cases := []struct {
		p    string
		is   bool
		spec int
	}{
		{"gpt-4o", false, 6},
		{"gpt-*", true, 4},
		{"gpt-4?", true, 5},
		{"*", true, 0},
		{"a*b?c", true, 3},
	}
	for _, c := range cases {
		if got := Is(c.p); got != c.is {
			t.Errorf("Is(%q)=%v want %v", c.p, got, c.is)
		}
		if got := Specificity(c.p); got != c.spec {
			t.Errorf("Specificity(%q)=%d want %d", c.p, got, c.spec)
		}
	}
}
