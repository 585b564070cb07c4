package rag

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestChunkerBoundariesOverlapHeaders(t *testing.T) {
	sentence := func(i int) string {
		return fmt.Sprintf("Sentence number %d talks about topic %d in plain words.", i, i)
	}
	var paras []string
	for p := 0; p < 6; p++ {
		var ss []string
		for s := 0; s < 4; s++ {
			ss = append(ss, sentence(p*4+s))
		}
		paras = append(paras, strings.Join(ss, " "))
	}
	sections := []Section{
		{Headings: []string{"Guide", "Install"}, Text: strings.Join(paras, "\n\n")},
		{Headings: []string{"Guide", "Upgrade"}, Text: "Short section."},
	}
	chunks := Chunker{Size: 100, Overlap: 20}.Split("My Guide", sections)
	if len(chunks) < 4 {
		t.Fatalf("got %d chunks, want several", len(chunks))
	}
	for i, c := range chunks {
		if c.Index != i {
			t.Errorf("chunk %d has index %d", i, c.Index)
		}
		if n := EstimateTokens(c.Text); n > 100 {
			t.Errorf("chunk %d has %d tokens, want <= 100", i, n)
		}
		if !strings.HasPrefix(c.Header, "Title: My Guide\nSection: Guide > ") {
			t.Errorf("chunk %d header %q", i, c.Header)
		}
		if !strings.HasSuffix(c.Text, ".") {
			t.Errorf("chunk %d does not end at a sentence boundary: %q", i, c.Text)
		}
	}
	// Overlap: each chunk of the first section after the first starts with
	// the end of the one before it.
	for i := 1; i < len(chunks)-1; i++ {
		prev, cur := chunks[i-1].Text, chunks[i].Text
		first := strings.SplitN(cur, "\n\n", 2)[0]
		if !strings.Contains(prev, first) {
			t.Errorf("chunk %d does not overlap chunk %d: starts %q", i, i-1, first)
		}
	}
	last := chunks[len(chunks)-1]
	if last.Text != "Short section." || last.Header != "Title: My Guide\nSection: Guide > Upgrade" {
		t.Errorf("last chunk = %+v: sections must not share a chunk", last)
	}
	// A single very long sentence is cut at words.
	long := strings.Repeat("word ", 500)
	for _, c := range (Chunker{Size: 50}).Split("", []Section{{Text: long}}) {
		if EstimateTokens(c.Text) > 50 {
			t.Fatalf("word-cut chunk of %d tokens", EstimateTokens(c.Text))
		}
	}
}

func TestBM25RanksAndFilters(t *testing.T) {
	ix := NewBM25()
	ix.Add(0, "the cat sat on the mat")
	ix.Add(1, "dogs and cats living together")
	ix.Add(2, "stock market prices fell sharply")
	ix.Add(3, "a cat, a cat, another cat")
	got := ix.Search("cats", 10, nil)
	if len(got) != 3 || got[0].Slot != 3 {
		t.Fatalf("search cats = %+v, want 3 hits, slot 3 first", got)
	}
	got = ix.Search("cats", 10, func(s uint32) bool { return s != 3 })
	for _, s := range got {
		if s.Slot == 3 {
			t.Fatal("filtered slot returned")
		}
	}
	if len(got) != 2 {
		t.Fatalf("filtered = %+v, want 2", got)
	}
	ix.Remove(3)
	if got := ix.Search("cat", 1, nil); len(got) != 1 || got[0].Slot == 3 {
		t.Fatalf("after remove: %+v", got)
	}
	if got := ix.Search("the of and", 5, nil); len(got) != 0 {
		t.Fatalf("stop words matched: %+v", got)
	}
}

func doc(id, tenant, text string) Document {
	d := Document{ID: id, Title: id, Sections: []Section{{Text: text}}}
	if tenant != "" {
		d.Metadata = map[string]string{"tenant": tenant}
	}
	return d
}

func TestEmbeddedPersistsIdempotentVersioned(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := OpenEmbedded("docs", dir, "", Chunker{})
	if err != nil {
		t.Fatal(err)
	}
	if v := c.Version(); v != 0 {
		t.Fatalf("new collection version %d", v)
	}
	r, err := c.Put(ctx, doc("a.md", "", "Caddy serves HTTPS automatically."))
	if err != nil || !r.Changed || r.Chunks != 1 {
		t.Fatalf("put = %+v, %v", r, err)
	}
	v1 := c.Version()
	if r, _ := c.Put(ctx, doc("a.md", "", "Caddy serves HTTPS automatically.")); r.Changed || c.Version() != v1 {
		t.Fatalf("unchanged put changed: %+v, version %d -> %d", r, v1, c.Version())
	}
	if _, err := c.Put(ctx, doc("a.md", "", "Caddy renews certificates on its own.")); err != nil {
		t.Fatal(err)
	}
	if c.Version() == v1 {
		t.Fatal("a replaced document did not bump the version")
	}
	if _, err := c.Put(ctx, doc("b.md", "", "Reverse proxy with load balancing.")); err != nil {
		t.Fatal(err)
	}
	// A leftover temporary file from a crash is ignored.
	os.WriteFile(filepath.Join(dir, ".collection.gob.tmp-123"), []byte("torn"), 0o600)
	v := c.Version()

	c2, err := OpenEmbedded("docs", dir, "", Chunker{})
	if err != nil {
		t.Fatal(err)
	}
	if c2.Version() != v {
		t.Fatalf("reloaded version %d, want %d", c2.Version(), v)
	}
	if dv, _ := OnDiskVersion(dir); dv != v {
		t.Fatalf("on-disk version %d, want %d", dv, v)
	}
	hs, _ := c2.Search(ctx, Query{Text: "certificates", K: 3})
	if len(hs) != 1 || hs[0].ID() != "a.md#0" || !strings.Contains(hs[0].Chunk.Text, "renews") {
		t.Fatalf("reloaded search = %+v", hs)
	}
	if hs, _ := c2.Search(ctx, Query{Text: "automatically", K: 3}); len(hs) != 0 {
		t.Fatalf("replaced chunk still found: %+v", hs)
	}
	if n, _ := c2.Delete(ctx, "b.md", "missing.md"); n != 1 {
		t.Fatalf("deleted %d", n)
	}
	st, _ := c2.Stats(ctx)
	if st.Documents != 1 || st.Chunks != 1 || st.Version != v+1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestTenantFilterBeforeRanking(t *testing.T) {
	ctx := context.Background()
	for _, model := range []string{"", "fake"} {
		c, _ := OpenEmbedded("docs", t.TempDir(), model, Chunker{})
		c.SetEmbedder(&fakeEmbedder{})
		var docs []Document
		// Tenant a holds many strong matches; tenant b one weak one.
		for i := 0; i < 20; i++ {
			docs = append(docs, doc(fmt.Sprintf("a%d", i), "a", "secret launch plan launch plan launch"))
		}
		docs = append(docs, doc("b0", "b", "the launch of our bakery"))
		if _, err := c.PutBatch(ctx, docs); err != nil {
			t.Fatal(err)
		}
		hs, err := c.Search(ctx, Query{Text: "launch plan", K: 3, Filter: map[string]string{"tenant": "b"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) != 1 || hs[0].Source != "b0" {
			t.Fatalf("model %q: tenant b got %+v", model, hs)
		}
	}
}

func TestConcurrentReadersDuringIngestion(t *testing.T) {
	ctx := context.Background()
	c, _ := OpenEmbedded("docs", t.TempDir(), "fake", Chunker{Size: 50})
	c.SetEmbedder(&fakeEmbedder{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Search(ctx, Query{Text: "document words", K: 3}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for i := 0; i < 40; i++ {
		if _, err := c.Put(ctx, doc(fmt.Sprintf("d%d", i%10), "", fmt.Sprintf("document %d has words number %d", i, i))); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	if st, _ := c.Stats(ctx); st.Documents != 10 {
		t.Fatalf("stats %+v", st)
	}
}

func TestReadFormats(t *testing.T) {
	title, secs := ReadMarkdown("---\ntitle: Front\n---\nIntro [link](http://x).\n\n# Top\n\nText.\n\n## Sub\n\n```\n# not a heading\n```\n")
	if title != "Front" || len(secs) != 3 || strings.Join(secs[2].Headings, ">") != "Top>Sub" || !strings.Contains(secs[2].Text, "# not a heading") || secs[0].Text != "Intro link." {
		t.Fatalf("markdown: %q %+v", title, secs)
	}
	title, secs, err := ReadHTML(strings.NewReader(`<html><head><title>Page</title><script>x()</script></head><body><nav>menu</nav><h1>Main</h1><p>Hello <b>world</b>.</p><h2>Part</h2><p>More.</p></body></html>`))
	if err != nil || title != "Page" || len(secs) != 2 || secs[0].Text != "Hello world ." || strings.Join(secs[1].Headings, ">") != "Main>Part" {
		t.Fatalf("html: %q %+v %v", title, secs, err)
	}
}

func TestEmbeddedModelChangeReembeds(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	lex, _ := OpenEmbedded("docs", dir, "", Chunker{})
	if _, err := lex.Put(ctx, doc("a.md", "", "Caddy serves HTTPS automatically.")); err != nil {
		t.Fatal(err)
	}
	hyb, err := OpenEmbedded("docs", dir, "fake", Chunker{})
	if err != nil {
		t.Fatal(err)
	}
	emb := &fakeEmbedder{}
	hyb.SetEmbedder(emb)
	if r, err := hyb.Put(ctx, doc("a.md", "", "Caddy serves HTTPS automatically.")); err != nil || !r.Changed {
		t.Fatalf("same text under a new model: %+v %v (want it embedded)", r, err)
	}
	hs, err := hyb.Search(ctx, Query{Text: "https", K: 1})
	if err != nil || len(hs) != 1 || hs[0].Vector != 1 {
		t.Fatalf("hybrid hit %+v %v", hs, err)
	}
}
