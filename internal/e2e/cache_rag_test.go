package e2e

import (
	"context"
	"net/http"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// TestCacheRAGVersion: on a route with rag, the collection's version is
// part of the key: a document added (a new version) makes the same
// question miss, so it is answered with what is retrieved now.
func TestCacheRAGVersion(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	gw := noRace(t, startGateway(t, `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider oai {
			base_url {{.Fake}}/v1
		}
		model echo-model {
			target oai
		}
		collection docs {
			store embedded {{.Dir}}
			embed lexical
		}
		cache
	}
}
:{{.Port}} {
	ai_gateway {
		rag docs {
			top_k 3
		}
	}
}
`, map[string]any{"Fake": fake.URL, "Dir": t.TempDir()}))
	add := func(id, text string) {
		t.Helper()
		if status, resp := adminDo(t, gw, http.MethodPost, "/ai_gateway/collections/docs/documents", `{"id":"`+id+`","text":"`+text+`"}`); status/100 != 2 {
			t.Fatalf("add document: %d %s", status, resp)
		}
	}
	add("a", "The gateway listens on port 8080 by default.")
	ctx := context.Background()
	body := cacheBody("echo-model", "Which port does the gateway listen on?", false)
	if a := ask(ctx, gw.URL, body); a.status != 200 || a.cache != "miss" {
		t.Fatalf("first: %+v", a)
	}
	if a := ask(ctx, gw.URL, body); a.cache != "hit" {
		t.Fatalf("second: %+v", a)
	}
	add("b", "Since version 2 the gateway listens on port 9090.")
	if a := ask(ctx, gw.URL, body); a.cache != "miss" {
		t.Fatalf("after a new document: %+v (the collection's version is part of the key)", a)
	}
	if a := ask(ctx, gw.URL, body); a.cache != "hit" {
		t.Fatalf("then: %+v", a)
	}
}
