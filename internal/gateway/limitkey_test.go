package gateway

import "testing"

// The names are part of the Redis data: a change forgets every limit's state.
func TestLimiterKey(t *testing.T) {
	cases := []struct {
		s    Scope
		name string
		l    Limit
		want string
	}{
		{ScopeKey, "team-a", LimitRPM, "key:team-a:rpm"},
		{ScopeKey, "team-a", LimitTPM, "key:team-a:tpm"},
		{ScopeKey, "team-a", LimitConcurrency, "key:team-a:concurrency"},
		{ScopeKey, "team-a", LimitBudget, "key:team-a:budget"},
		{ScopeModel, "gpt-*", LimitRPM, "model:gpt-*:rpm"},
		{ScopeModel, "gpt-4o", LimitTPM, "model:gpt-4o:tpm"},
	}
	for _, c := range cases {
		if got := LimiterKey(c.s, c.name, c.l); got != c.want {
			t.Errorf("LimiterKey(%q, %q, %q) = %q, want %q", c.s, c.name, c.l, got, c.want)
		}
	}
}
