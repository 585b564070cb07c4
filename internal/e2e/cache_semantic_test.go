package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

type textPair struct {
	Kind string `json:"kind"`
	A    string `json:"a"`
	B    string `json:"b"`
}

// semanticPairs reads the near-miss and paraphrase pairs shipped with the
// semantic index, and the longer near misses in testdata (long enough that
// a bag-of-words embedding finds them close: the content gate must say no).
func semanticPairs(t *testing.T) (near, para []textPair) {
	t.Helper()
	raw, err := os.ReadFile("../cache/semantic/testdata/pairs.json")
	if err != nil {
		t.Fatal(err)
	}
	var shipped struct {
		NearMisses  []textPair `json:"near_misses"`
		Paraphrases []textPair `json:"paraphrases"`
	}
	if err := json.Unmarshal(raw, &shipped); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("testdata/cache_near_misses.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if a, b, ok := strings.Cut(line, " || "); ok && !strings.HasPrefix(line, "#") {
			near = append(near, textPair{Kind: "long", A: a, B: b})
		}
	}
	return append(shipped.NearMisses, near...), shipped.Paraphrases
}

// TestCacheSemantic: after an exact miss the last user message is embedded
// (through the routing table's embedding model) and looked up; near misses
// (negations, numbers, entities) never hit; paraphrases' hit rate is
// printed.
func TestCacheSemantic(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	gw := startCacheGateway(t, fake, map[string]any{
		"Extra": "model embedder {\n\t\t\ttarget fake fake-embed\n\t\t}",
		"Cache": "semantic {\n\t\t\t\tembed embedder\n\t\t\t\tthreshold 0.9\n\t\t\t}",
	})
	ctx := context.Background()
	embeds := func() int { return fake.Stats().Requests["/v1/embeddings"] }

	// The same words (fakellm embeds a bag of words): a semantic hit.
	if a := ask(ctx, gw.URL, cacheBody("demo", "What is the capital of France?", false)); a.cache != "miss" {
		t.Fatalf("first: %+v", a)
	}
	calls := chatCalls(fake)
	if a := ask(ctx, gw.URL, cacheBody("demo", "what is the capital of France", true)); a.cache != "semantic-hit" || a.err != nil || a.chunks < 2 {
		t.Fatalf("same words: %+v", a)
	}
	if chatCalls(fake) != calls || embeds() < 2 {
		t.Fatalf("chat calls %d (want %d), embeddings %d", chatCalls(fake), calls, embeds())
	}
	// Another model's prefix never matches.
	if a := ask(ctx, gw.URL, cacheBody("tools", "what is the capital of France", false)); a.cache != "miss" {
		t.Fatalf("other model: %+v", a)
	}

	near, para := semanticPairs(t)
	if len(near) < 50 {
		t.Fatalf("only %d near-miss pairs", len(near))
	}
	// Each pair under a system prompt of its own (its own prefix), so that
	// a text another pair asked already is not an exact hit.
	pairBody := func(i int, text string) string {
		return fmt.Sprintf(`{"model":"demo","messages":[{"role":"system","content":"pair %d"},{"role":"user","content":%q}]}`, i, text)
	}
	false_ := 0
	for i, p := range near {
		ask(ctx, gw.URL, pairBody(i, p.A))
		if a := ask(ctx, gw.URL, pairBody(i, p.B)); a.cache == "semantic-hit" || a.cache == "hit" {
			false_++
			t.Errorf("near miss (%s) hit: %q answered with %q's answer", p.Kind, p.B, p.A)
		}
	}
	hits := 0
	for i, p := range para {
		ask(ctx, gw.URL, pairBody(1000+i, p.A))
		if a := ask(ctx, gw.URL, pairBody(1000+i, p.B)); a.cache == "semantic-hit" {
			hits++
		}
	}
	t.Logf("near misses: %d pairs, %d false hits; paraphrases: %d of %d hit (%.0f%%; fakellm embeds a bag of words, so only paraphrases that keep the words can hit)",
		len(near), false_, hits, len(para), 100*float64(hits)/float64(max(len(para), 1)))
}
