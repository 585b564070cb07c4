package rag

import (
	"context"
	"fmt"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/chromatest"
)

func TestChromaStore(t *testing.T) {
	srv := chromatest.Start(t)
	ctx := context.Background()
	cl, err := NewChromaClient(srv.URL, "acme", "docs_db")
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenChroma(ctx, "lexical", cl, "", Chunker{}); err == nil {
		t.Fatal("a lexical chroma collection opened")
	}
	c, err := OpenChroma(ctx, "docs", cl, "fake", Chunker{})
	if err != nil {
		t.Fatal(err)
	}
	c.SetEmbedder(&fakeEmbedder{})
	var docs []Document
	for i := 0; i < 10; i++ {
		docs = append(docs, doc(fmt.Sprintf("a%d.md", i), "a", fmt.Sprintf("tenant a rocket launch plan number %d", i)))
	}
	docs = append(docs, doc("b.md", "b", "tenant b rocket launch bakery"))
	res, err := c.PutBatch(ctx, docs)
	if err != nil {
		t.Fatal(err)
	}
	if !res[0].Changed || res[0].Chunks != 1 {
		t.Fatalf("put %+v", res[0])
	}
	v := c.Version()
	if v == 0 {
		t.Fatal("version not bumped")
	}
	if res, _ := c.PutBatch(ctx, docs[:1]); res[0].Changed || c.Version() != v {
		t.Fatalf("unchanged document re-put: %+v", res)
	}
	hs, err := c.Search(ctx, Query{Text: "rocket launch plan", K: 3, Filter: map[string]string{"tenant": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 1 || hs[0].ID() != "b.md#0" || hs[0].Title != "b.md" {
		t.Fatalf("tenant b search = %+v", hs)
	}
	hs, _ = c.Search(ctx, Query{Text: "rocket launch plan number 3", K: 3, Filter: map[string]string{"tenant": "a"}})
	if len(hs) != 3 || hs[0].ID() != "a3.md#0" {
		t.Fatalf("tenant a search = %+v", hs)
	}
	if n, err := c.Delete(ctx, "a3.md", "nope.md"); err != nil || n != 1 {
		t.Fatalf("delete = %d, %v", n, err)
	}
	st, err := c.Stats(ctx)
	if err != nil || st.Documents != 10 || st.Chunks != 10 || st.Store != "chroma" {
		t.Fatalf("stats %+v %v", st, err)
	}
	// A new client (a restart) reads the version back.
	c2, err := OpenChroma(ctx, "docs", cl, "fake", Chunker{})
	if err != nil || c2.Version() != st.Version {
		t.Fatalf("reopened version %d, want %d (%v)", c2.Version(), st.Version, err)
	}
}
