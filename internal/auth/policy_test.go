package auth_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
)

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	good := []auth.Policy{
		{},
		{Models: []string{"gpt-4o", "claude-*", "o?-mini"}, RPM: 60, TPM: 1e5, Concurrency: 4, Budget: 12.5, BudgetPeriod: "day"},
		{Budget: 1, BudgetPeriod: "month", Cache: "team-a", Metadata: map[string]string{"team": "a"}},
	}
	for i, p := range good {
		if err := p.Validate(); err != nil {
			t.Errorf("good %d: %v", i, err)
		}
	}
	bad := []auth.Policy{
		{RPM: -1}, {TPM: -1}, {Concurrency: -1},
		{Budget: -0.01}, {Budget: math.NaN()}, {Budget: math.Inf(1)},
		{BudgetPeriod: "week"}, {BudgetPeriod: "Month"},
		{Models: []string{""}}, {Models: []string{"gpt 4o"}}, {Models: []string{"gpt-4o\n"}},
	}
	for i, p := range bad {
		if err := p.Validate(); !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("bad %d (%+v): err = %v, want ErrInvalid", i, p, err)
		}
	}
	if p := (auth.Policy{}); p.Period() != "month" {
		t.Errorf("default period %q", p.Period())
	}
}

func TestPolicyAllowsModel(t *testing.T) {
	t.Parallel()
	all := auth.Policy{}
	if !all.AllowsModel("anything") {
		t.Error("empty Models must allow every model")
	}
	p := auth.Policy{Models: []string{"gpt-4o", "claude-*", "o?-mini"}}
	for model, want := range map[string]bool{
		"gpt-4o": true, "gpt-4o-mini": false, "claude-sonnet-4-20250514": true, "claude-": true,
		"o3-mini": true, "o4-mini": true, "o10-mini": false, "mistral-large": false, "": false,
	} {
		if got := p.AllowsModel(model); got != want {
			t.Errorf("AllowsModel(%q) = %v, want %v", model, got, want)
		}
	}
}

func TestKeyValidateAndJSON(t *testing.T) {
	t.Parallel()
	k := auth.Key{
		Name:    "team-a.prod_1",
		Hash:    auth.HashSecret("s"),
		Policy:  auth.Policy{Models: []string{"gpt-*"}, RPM: 10},
		Created: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC),
	}
	if err := k.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"team-a.prod_1","sha256":"` + k.Hash.String() + `","policy":{"models":["gpt-*"],"rpm":10},"created":"2026-11-25T12:00:00Z"}`
	if string(b) != want {
		t.Fatalf("JSON\n got %s\nwant %s", b, want)
	}
	for _, name := range []string{"", strings.Repeat("a", 65), "a b", "a/b", "é", "a:b"} {
		bad := k
		bad.Name = name
		if err := bad.Validate(); !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("name %q: err = %v", name, err)
		}
	}
	if !auth.ValidName(strings.Repeat("a", 64)) {
		t.Error("64-character name rejected")
	}
	noHash := k
	noHash.Hash = auth.Hash{}
	if err := noHash.Validate(); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("zero hash: err = %v", err)
	}
	badPolicy := k
	badPolicy.Policy.RPM = -1
	if err := badPolicy.Validate(); !errors.Is(err, auth.ErrInvalid) {
		t.Errorf("bad policy: err = %v", err)
	}
}
