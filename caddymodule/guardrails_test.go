package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

func TestGuardrailsCaddyfile(t *testing.T) {
	h := new(Handler)
	d := caddyfile.NewTestDispenser(`ai_gateway {
		pii {
			detect badge ` + "`B-\\d{4}`" + `
			mask email badge
			mask all openai
			block secret any
			route llama card local
			restore off
		}
	}`)
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	r := h.Privacy.Rules
	if len(r) != 4 || strings.Join(r[0].Detectors, ",") != "email,badge" || r[0].Scope != "" ||
		r[1].Scope != "openai" || r[2].Scope != "" || r[3].Model != "llama" || r[3].Scope != "local" ||
		*h.Privacy.Restore {
		t.Fatalf("%+v", h.Privacy)
	}
	for _, bad := range []string{
		"ai_gateway {\n truncate {\n strategy\n }\n }",
		"ai_gateway {\n truncate {\n fast\n }\n }",
		"ai_gateway {\n truncate {\n}\n truncate {\n}\n }",
		"ai_gateway {\n privacy {\n mask\n }\n }",
		"ai_gateway {\n privacy {\n route llama\n }\n }",
		"ai_gateway {\n privacy {\n restore maybe\n }\n }",
		"ai_gateway {\n privacy {\n detect x\n }\n }",
		"ai_gateway {\n privacy {\n}\n pii {\n}\n }",
		"ai_gateway {\n policy {\n deny onlyname\n }\n }",
		"ai_gateway {\n policy {\n shout\n }\n }",
	} {
		if err := new(Handler).UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestGuardrailsBuild(t *testing.T) {
	tbl, err := route.New([]route.Route{{Pattern: "llama", Targets: []route.Target{{Provider: "local"}}}}, func(string) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	app := &App{routes: tbl, Providers: map[string]*ProviderConfig{"local": {Type: "ollama"}, "openai": {}}}
	if local, _ := providerLocal("local", app.Providers["local"]); !local {
		t.Error("ollama is local by its preset")
	}
	if local, _ := providerLocal("openai", app.Providers["openai"]); local {
		t.Error("openai is third party")
	}
	if local, _ := providerLocal("lab", &ProviderConfig{Trust: "local"}); !local {
		t.Error("trust local")
	}
	ok := &Handler{Privacy: &PrivacyConfig{Rules: []PrivacyRule{{Action: "mask", Detectors: []string{"all"}, Scope: "third_party"}}}}
	if st, err := app.guardrails(ok); err != nil || st == nil || st.Name() != "guardrails" {
		t.Fatalf("%v %v", st, err)
	}
	if st, err := app.guardrails(&Handler{}); st != nil || err != nil {
		t.Fatal("no guardrails configured, yet a stage")
	}
	for name, h := range map[string]*Handler{
		"unknown detector": {Privacy: &PrivacyConfig{Rules: []PrivacyRule{{Action: "mask", Detectors: []string{"dna"}}}}},
		"bad regexp":       {Privacy: &PrivacyConfig{Custom: []CustomDetector{{Name: "x", Pattern: "("}}}},
		"taken name":       {Privacy: &PrivacyConfig{Custom: []CustomDetector{{Name: "email", Pattern: "x"}}}},
		"unknown scope":    {Privacy: &PrivacyConfig{Rules: []PrivacyRule{{Action: "mask", Detectors: []string{"all"}, Scope: "mars"}}}},
		"unknown model":    {Privacy: &PrivacyConfig{Rules: []PrivacyRule{{Action: "route", Detectors: []string{"card"}, Model: "nope"}}}},
		"unknown action":   {Privacy: &PrivacyConfig{Rules: []PrivacyRule{{Action: "shred", Detectors: []string{"card"}}}}},
		"no detectors":     {Privacy: &PrivacyConfig{Rules: []PrivacyRule{{Action: "mask"}}}},
		"strategy":         {Truncate: &TruncateConfig{Strategy: "random"}},
		"deny regexp":      {Policy: &PolicyConfig{Deny: []CustomDetector{{Name: "x", Pattern: "[z"}}}},
	} {
		if _, err := app.guardrails(h); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := (&App{routes: tbl, Providers: map[string]*ProviderConfig{"local": {}}}).guardrails(
		&Handler{Privacy: &PrivacyConfig{Rules: []PrivacyRule{{Action: "route", Detectors: []string{"card"}, Model: "llama"}}}}); err == nil {
		t.Error("accepted a route to a third-party model")
	}
	bad := &App{routes: tbl, Providers: map[string]*ProviderConfig{"x": {Trust: "friends"}}}
	if _, err := bad.guardrails(ok); err == nil {
		t.Error("accepted trust friends")
	}
}
