package guardrails

import (
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

func TestScopeFollowsFallbacks(t *testing.T) {
	tbl, err := route.New([]route.Route{
		{Pattern: "local-only", Targets: []route.Target{{Provider: "lan"}}},
		{Pattern: "local-then-cloud", Targets: []route.Target{{Provider: "lan"}}, Fallbacks: []string{"cloud"}},
		{Pattern: "cloud", Targets: []route.Target{{Provider: "openai"}}},
	}, func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	local := map[string]bool{"lan": true}
	s := New(Config{Routes: tbl, Local: local})
	for model, want := range map[string]bool{"local-only": false, "local-then-cloud": true, "cloud": true} {
		rt, _ := tbl.Lookup(model)
		if got := s.inScope(rt, ScopeThirdParty); got != want {
			t.Errorf("%s: third party in reach = %v", model, got)
		}
		if LocalOnly(rt, tbl, local) == want {
			t.Errorf("%s: LocalOnly = %v", model, !want)
		}
		if !s.inScope(rt, ScopeAny) {
			t.Errorf("%s: not in scope any", model)
		}
	}
	rt, _ := tbl.Lookup("cloud")
	if !s.inScope(rt, "openai") || s.inScope(rt, "lan") || s.inScope(rt, ScopeLocal) {
		t.Error("provider scopes")
	}
}

// The policy's system messages go around an Anthropic body's system,
// whatever its shape.
func TestPolicySystem(t *testing.T) {
	s := New(Config{Prepend: []string{`be "polite"`}, Append: []string{"end"}})
	for _, c := range []struct{ body, want string }{
		{`{"messages":[]}`, `[{"type":"text","text":"be \"polite\""},{"type":"text","text":"end"}]`},
		{`{"system":"mine","messages":[]}`, `[{"type":"text","text":"be \"polite\""},{"type":"text","text":"mine"},{"type":"text","text":"end"}]`},
		{`{"system":[{"type":"text","text":"a","cache_control":{"type":"ephemeral"}}],"messages":[]}`,
			`[{"type":"text","text":"be \"polite\""},{"type":"text","text":"a","cache_control":{"type":"ephemeral"}},{"type":"text","text":"end"}]`},
	} {
		out, err := s.policySystem([]byte(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if got := gjson.GetBytes(out, "system").Raw; got != c.want {
			t.Errorf("%s: system %s, want %s", c.body, got, c.want)
		}
	}
}
