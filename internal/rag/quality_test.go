package rag

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// fakeEmbedder embeds with fakellm's deterministic bag-of-words vectors
// (what the fake upstream answers /v1/embeddings with).
type fakeEmbedder struct{ calls atomic.Int64 }

func (f *fakeEmbedder) Embed(_ context.Context, texts []string) ([][]float32, error) {
	f.calls.Add(1)
	out := make([][]float32, len(texts))
	for i, t := range texts {
		out[i] = fakellm.Embed(t, 256)
	}
	return out, nil
}

// loadCorpus reads testdata/corpus into documents named by their path
// below it.
func loadCorpus(t testing.TB) []Document {
	t.Helper()
	root := filepath.Join("testdata", "corpus")
	var docs []Document
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !Readable(p) {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		doc, err := ReadFile(p, filepath.ToSlash(rel))
		if err != nil {
			return err
		}
		docs = append(docs, doc)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) < 100 {
		t.Fatalf("corpus has %d documents, want 100+", len(docs))
	}
	return docs
}

type question struct {
	Q   string `json:"q"`
	Doc string `json:"doc"`
}

func loadQuestions(t testing.TB) []question {
	b, err := os.ReadFile(filepath.Join("testdata", "questions.json"))
	if err != nil {
		t.Fatal(err)
	}
	var qs []question
	if err := json.Unmarshal(b, &qs); err != nil {
		t.Fatal(err)
	}
	if len(qs) < 30 {
		t.Fatalf("%d questions, want 30+", len(qs))
	}
	return qs
}

// recallAt3 is the share of questions whose answer document is among the
// sources of the top 3 chunks.
func recallAt3(t *testing.T, c *Collection, qs []question) float64 {
	hit := 0
	for _, q := range qs {
		hs, err := c.Search(context.Background(), Query{Text: q.Q, K: 3})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		ok := false
		for _, h := range hs {
			got = append(got, h.ID())
			ok = ok || h.Source == q.Doc
		}
		if ok {
			hit++
		} else {
			t.Logf("miss: %q (want %s) got %s", q.Q, q.Doc, strings.Join(got, ", "))
		}
	}
	return float64(hit) / float64(len(qs))
}

func TestRetrievalQuality(t *testing.T) {
	docs := loadCorpus(t)
	qs := loadQuestions(t)
	ch := Chunker{Size: DefaultChunkSize, Overlap: DefaultChunkOverlap}

	lex, err := OpenEmbedded("corpus", t.TempDir(), "", ch)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lex.PutBatch(context.Background(), docs); err != nil {
		t.Fatal(err)
	}
	st, _ := lex.Stats(context.Background())
	r := recallAt3(t, lex, qs)
	t.Logf("BM25: %d documents, %d chunks, %d questions: recall@3 = %.3f", st.Documents, st.Chunks, len(qs), r)
	if r < 0.9 {
		t.Errorf("BM25 recall@3 = %.3f, want >= 0.9", r)
	}

	hyb, err := OpenEmbedded("corpus", t.TempDir(), "fake-embed", ch)
	if err != nil {
		t.Fatal(err)
	}
	emb := &fakeEmbedder{}
	hyb.SetEmbedder(emb)
	if _, err := hyb.PutBatch(context.Background(), docs); err != nil {
		t.Fatal(err)
	}
	if want := (st.Chunks + EmbedBatch - 1) / EmbedBatch; int(emb.calls.Load()) != want {
		t.Errorf("embedding calls = %d for %d chunks, want %d batches", emb.calls.Load(), st.Chunks, want)
	}
	t.Logf("hybrid (BM25 + fakellm bag-of-words vectors, RRF): recall@3 = %.3f", recallAt3(t, hyb, qs))
}
