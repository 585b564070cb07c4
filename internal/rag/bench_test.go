package rag

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"
)

// benchCorpusWords is the corpus's text as words, to draw synthetic chunks
// with a real vocabulary and word frequencies from.
func benchCorpusWords(b *testing.B) []string {
	var words []string
	root := filepath.Join("testdata", "corpus")
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		t, _ := os.ReadFile(p)
		words = append(words, strings.Fields(string(t))...)
		return nil
	})
	if len(words) == 0 {
		b.Fatal("no corpus")
	}
	return words
}

// benchDocs makes n one-chunk documents of 100 consecutive corpus words
// from random offsets (about 150 tokens each).
func benchDocs(b *testing.B, n int) []Document {
	words := benchCorpusWords(b)
	r := rand.New(rand.NewSource(1))
	docs := make([]Document, n)
	for i := range docs {
		off := r.Intn(len(words) - 100)
		docs[i] = Document{ID: fmt.Sprintf("d%06d", i), Title: fmt.Sprintf("Doc %d", i),
			Sections: []Section{{Text: strings.Join(words[off:off+100], " ")}}}
	}
	return docs
}

func benchQuestions(b *testing.B) []string {
	var qs []string
	for _, q := range loadQuestions(b) {
		qs = append(qs, q.Q)
	}
	return qs
}

// reportLatency runs search for each of b.N iterations over the
// questions and reports p50 and p99.
func reportLatency(b *testing.B, c *Collection, qs []string, k int) {
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	runtime.GC() // the setup's garbage is not the searches' to collect
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		if _, err := c.Search(ctx, Query{Text: qs[i%len(qs)], K: k}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRetrieval measures retrieval latency at 10k and 100k chunks:
// lexical (BM25) and hybrid (BM25 + chromem-go vectors of 256 dimensions,
// fused), top 3.
func BenchmarkRetrieval(b *testing.B) {
	qs := benchQuestions(b)
	for _, n := range []int{10_000, 100_000} {
		docs := benchDocs(b, n)
		for _, model := range []string{"", "fake"} {
			name := fmt.Sprintf("lexical/%dk", n/1000)
			if model != "" {
				name = fmt.Sprintf("hybrid/%dk", n/1000)
			}
			b.Run(name, func(b *testing.B) {
				c, err := OpenEmbedded("bench", b.TempDir(), model, Chunker{Size: 400})
				if err != nil {
					b.Fatal(err)
				}
				c.SetEmbedder(&fakeEmbedder{})
				if _, err := c.PutBatch(context.Background(), docs); err != nil {
					b.Fatal(err)
				}
				reportLatency(b, c, qs, 3)
			})
		}
	}
}

// BenchmarkIngest measures lexical ingestion (chunking, indexing and the
// crash-safe snapshot write) of the corpus, in chunks per second.
func BenchmarkIngest(b *testing.B) {
	docs := loadCorpus(b)
	chunks := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c, _ := OpenEmbedded("bench", b.TempDir(), "", Chunker{Size: 400, Overlap: 60})
		b.StartTimer()
		res, err := c.PutBatch(context.Background(), docs)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			chunks += r.Chunks
		}
	}
	b.ReportMetric(float64(chunks)/b.Elapsed().Seconds(), "chunks/s")
}

// BenchmarkBM25Synthetic is the distribution the bleve comparison used
// (80 words per document from a 5000-word vocabulary, exponential
// frequencies; three-word queries), at 100k documents.
func BenchmarkBM25Synthetic(b *testing.B) {
	r := rand.New(rand.NewSource(1))
	words := make([]string, 5000)
	for i := range words {
		words[i] = fmt.Sprintf("w%d", i)
	}
	ix := NewBM25()
	var sb strings.Builder
	start := time.Now()
	for i := 0; i < 100_000; i++ {
		sb.Reset()
		for j := 0; j < 80; j++ {
			sb.WriteString(words[int(r.ExpFloat64()*500)%len(words)])
			sb.WriteByte(' ')
		}
		ix.Add(uint32(i), sb.String())
	}
	indexSecs := time.Since(start).Seconds()
	lat := make([]time.Duration, 0, b.N)
	runtime.GC()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		q := words[r.Intn(300)] + " " + words[r.Intn(300)] + " " + words[r.Intn(2000)]
		t := time.Now()
		ix.Search(q, 3, nil)
		lat = append(lat, time.Since(t))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(indexSecs, "index-s")
}

// BenchmarkStore100k measures, for a lexical store of 100k chunks, loading
// it from its snapshot (what a start costs) and replacing one document
// (what an admin API write costs: the whole snapshot is written again).
func BenchmarkStore100k(b *testing.B) {
	dir := b.TempDir()
	c, _ := OpenEmbedded("bench", dir, "", Chunker{Size: 400})
	if _, err := c.PutBatch(context.Background(), benchDocs(b, 100_000)); err != nil {
		b.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(dir, snapshotFile))
	b.Run("load", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := OpenEmbedded("bench", dir, "", Chunker{Size: 400}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(fi.Size())/(1<<20), "snapshot-MiB")
	})
	b.Run("put-one", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			d := Document{ID: "d000001", Sections: []Section{{Text: fmt.Sprintf("replacement text %d", i)}}}
			if _, err := c.Put(context.Background(), d); err != nil {
				b.Fatal(err)
			}
		}
	})
}
