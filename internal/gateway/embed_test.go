package gateway

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/openaicompat"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

func TestEmbedThroughTheAttemptLoop(t *testing.T) {
	fake := fakellm.New(fakellm.Options{})
	fake.Enqueue(fakellm.Behavior{Status: 503}) // the first attempt fails: retried
	fake.Script("broken", fakellm.Behavior{Status: 400})
	srv := httptest.NewServer(fake)
	defer srv.Close()
	h := provider.NewHTTP("fake", provider.Timeouts{})
	defer h.Close()
	p, err := openaicompat.New(openaicompat.Config{Name: "fake", BaseURL: srv.URL + "/v1"}, h)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := route.New([]route.Route{
		{Pattern: "emb", Retries: 1, Targets: []route.Target{{Provider: "fake"}}},
		{Pattern: "broken", Targets: []route.Target{{Provider: "fake"}}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Providers: map[string]provider.Provider{"fake": p}, Routes: routes, RetryBackoff: 1})
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{"alpha beta", "gamma \"quoted\" delta", "épsilon"}
	vecs, err := g.Embed(context.Background(), "emb", texts)
	if err != nil {
		t.Fatal(err)
	}
	if len(vecs) != len(texts) {
		t.Fatalf("%d vectors", len(vecs))
	}
	for i, text := range texts {
		want := fakellm.Embed(text, 0)
		for j := range want {
			if vecs[i][j] != want[j] {
				t.Fatalf("vector %d differs from fakellm's embedding of %q", i, text)
			}
		}
	}
	if st := fake.Stats(); st.Requests["/v1/embeddings"] != 2 {
		t.Fatalf("embeddings requests = %d, want 2 (one retry)", st.Requests["/v1/embeddings"])
	}
	if _, err := g.Embed(context.Background(), "broken", texts); err == nil {
		t.Fatal("a failing model embedded")
	}
	if _, err := g.Embed(context.Background(), "unknown", texts); err == nil {
		t.Fatal("a model outside the routing table embedded")
	}
}
