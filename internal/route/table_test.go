package route

import (
	"testing"
	"time"
)

func TestLookupMostSpecific(t *testing.T) {
	tb, err := New([]Route{
		{Pattern: "*", Targets: []Target{{Provider: "any"}}},
		{Pattern: "gpt-*", Targets: []Target{{Provider: "openai"}}},
		{Pattern: "gpt-4o-*", Targets: []Target{{Provider: "azure"}}},
		{Pattern: "gpt-4o-mini", Targets: []Target{{Provider: "exact"}}, Fallbacks: []string{"llama"}},
		{Pattern: "llama", Targets: []Target{{Provider: "local"}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for model, want := range map[string]string{
		"gpt-4o-mini": "exact", "gpt-4o-2024": "azure", "gpt-3.5": "openai", "mistral": "any", "llama": "local",
	} {
		r, ok := tb.Lookup(model)
		if !ok || r.Targets[0].Provider != want {
			t.Errorf("Lookup(%q) = %v, want %s", model, r, want)
		}
	}
	if got := tb.Names(); len(got) != 2 || got[0] != "gpt-4o-mini" {
		t.Errorf("Names = %v", got)
	}
}

func TestNewRejects(t *testing.T) {
	known := func(p string) bool { return p == "p" }
	bad := [][]Route{
		{{Pattern: "a", Targets: []Target{{Provider: "nope"}}}},
		{{Pattern: "a"}},
		{{Pattern: "a", Targets: []Target{{Provider: "p"}}}, {Pattern: "a", Targets: []Target{{Provider: "p"}}}},
		{{Pattern: "a", Targets: []Target{{Provider: "p"}}, Fallbacks: []string{"missing"}}},
		{{Pattern: "a", Targets: []Target{{Provider: "p", Weight: -1}}}},
	}
	for i, routes := range bad {
		if _, err := New(routes, known); err == nil {
			t.Errorf("case %d: want error", i)
		}
	}
}

func TestPickWeightsAndBreaker(t *testing.T) {
	tb, _ := New([]Route{{Pattern: "m", Targets: []Target{{Provider: "a", Weight: 3}, {Provider: "b", Weight: 1}}}}, nil)
	r, _ := tb.Lookup("m")
	h := NewHealth(2, time.Minute)
	now := time.Unix(1000, 0)
	counts := [2]int{}
	for range 4000 {
		counts[r.Pick(h, now, nil)]++
	}
	if counts[0] < 2700 || counts[0] > 3300 {
		t.Fatalf("weights not honoured: %v", counts)
	}
	// Tried targets are avoided while another is available.
	for range 100 {
		if r.Pick(h, now, []int{0}) != 1 {
			t.Fatal("picked a tried target")
		}
	}
	ka := r.Targets[0].Key()
	h.Failure(ka, now, 0)
	if !h.Available(ka, now) {
		t.Fatal("one failure must not open the breaker")
	}
	h.Failure(ka, now, 0)
	if h.Available(ka, now) {
		t.Fatal("breaker should be open")
	}
	for range 100 {
		if r.Pick(h, now, nil) != 1 {
			t.Fatal("picked a cooling target")
		}
	}
	later := now.Add(time.Minute)
	if !h.Available(ka, later) {
		t.Fatal("half-open probe should be allowed")
	}
	h.Begin(ka, later)
	if h.Available(ka, later) {
		t.Fatal("only one probe at a time")
	}
	// A probe whose outcome never comes (client gone) expires.
	if !h.Available(ka, later.Add(time.Minute)) {
		t.Fatal("an abandoned probe must not keep the target out forever")
	}
	h.Failure(ka, later, 0)
	if h.Available(ka, later.Add(time.Second)) {
		t.Fatal("failed probe reopens")
	}
	h.Success(ka)
	if !h.Available(ka, later) {
		t.Fatal("success closes")
	}
	// Retry-After beyond the wait cap cools a target after one failure.
	kb := r.Targets[1].Key()
	h.Failure(kb, now, 10*time.Second)
	if h.Available(kb, now.Add(5*time.Second)) || !h.Available(kb, now.Add(11*time.Second)) {
		t.Fatal("retry-after cooldown")
	}
}

func TestTargetKey(t *testing.T) {
	tb, err := New([]Route{{Pattern: "m", Targets: []Target{{Provider: "a", Model: "x"}, {Provider: "b"}, {Provider: "a\x00", Model: ""}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := tb.Lookup("m")
	for i := range r.Targets {
		tg := &r.Targets[i]
		if want := tg.Provider + "\x00" + tg.Model; tg.Key() != want {
			t.Fatalf("target %d: key %q, want %q", i, tg.Key(), want)
		}
		if n := testing.AllocsPerRun(100, func() { _ = tg.Key() }); n != 0 {
			t.Fatalf("target %d: Key allocates %v times", i, n)
		}
	}
	if r.Targets[0].Key() == r.Targets[2].Key() || r.Targets[1].Key() == r.Targets[2].Key() {
		t.Fatal("keys collide")
	}
	// A target edited after New, or built by hand, still gets its own key.
	edited := r.Targets[0]
	edited.Model = "y"
	if edited.Key() != "a\x00y" {
		t.Fatalf("edited target: %q", edited.Key())
	}
	edited.Provider, edited.Model = "a\x00x", ""
	if edited.Key() != "a\x00x\x00" {
		t.Fatalf("edited target: %q", edited.Key())
	}
	hand := Target{Provider: "p", Model: "m"}
	if hand.Key() != "p\x00m" {
		t.Fatalf("hand-built target: %q", hand.Key())
	}
}

func BenchmarkPick(b *testing.B) {
	tb, err := New([]Route{{Pattern: "m", Targets: []Target{{Provider: "a", Model: "x"}, {Provider: "b", Model: "y"}}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	r, _ := tb.Lookup("m")
	h := NewHealth(0, 0)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		i := r.Pick(h, now, nil)
		h.Begin(r.Targets[i].Key(), now)
	}
}
