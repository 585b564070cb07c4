package semantic

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// benchDims is the embedding size of the benchmarks: small open models
// (bge-small, all-MiniLM) have 384; OpenAI's text-embedding-3 models
// accept dimensions=256…3072. Scan cost grows linearly with it.
const benchDims = 384

func BenchmarkGate(b *testing.B) {
	for _, c := range []struct{ name, a, b string }{
		{"paraphrase", "How do I reset my password for the admin console?", "how can I reset my password for the admin console"},
		{"negation", "Turn dark mode on in the settings", "Turn dark mode off in the settings"},
		{"numbers_entities", "Convert 250 USD to EUR at today's rate and explain the fees Revolut charges", "Convert 250 USD to GBP at today's rate and explain the fees Revolut charges"},
		{"long", longMessage, longMessage + " Also, keep it short."},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Gate(c.a, c.b)
			}
		})
	}
}

// longMessage is a paragraph-long user message (~100 words).
const longMessage = `I'm building a small web service in Go that reads orders from a Kafka
topic, writes them to Postgres and exposes a REST API on port 8080. Requests take
about 200 ms at the 99th percentile, which is too slow. The handler calls
json.Unmarshal twice and opens a new database connection for every request. How
should I restructure it so that latency stays under 50 ms with 1,000 requests per
second, and what should I measure first? Please don't suggest switching languages.`

// BenchmarkLookup measures a hit (the query is a stored vector moved to
// cosine 0.97) with n entries under one prefix, the worst case: every
// entry is a candidate. "scan" forces the exact scan, to show the
// crossover with the graph; "spread" puts the n entries under n/10
// prefixes. Vectors are "clustered" (1,000 topics, a shared direction:
// unrelated texts at cosine ≈ 0.2, one topic's at ≈ 0.6, as real
// embeddings are) or "random" (uniform on the sphere: no neighbourhoods at
// all, the worst case for any graph index).
func BenchmarkLookup(b *testing.B) {
	for _, c := range []struct {
		name     string
		n        int
		prefixes int
		graphMin int
		random   bool
	}{
		{"1k/scan", 1_000, 1, 1 << 30, false},
		{"1k/graph", 1_000, 1, 1, false},
		{"10k/scan", 10_000, 1, 1 << 30, false},
		{"10k/graph", 10_000, 1, graphMin, false},
		{"10k/graph/random", 10_000, 1, graphMin, true},
		{"10k/spread", 10_000, 1_000, graphMin, false},
		{"100k/graph", 100_000, 1, graphMin, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			ix, queries := benchIndex(c.n, c.prefixes, c.graphMin, c.random)
			b.ReportAllocs()
			hits, i := 0, 0
			for b.Loop() {
				q := queries[i%len(queries)]
				i++
				if key, _, ok := ix.Lookup(q.prefix, q.vec, question, t0); ok && key == q.key {
					hits++
				}
			}
			b.ReportMetric(float64(hits)/float64(i), "hit/op")
			b.ReportMetric(distsPerSearch(ix, queries), "dists/op")
		})
	}
}

// distsPerSearch counts the distances a search computes (the scan: one per
// entry of the bucket), the cost measure independent of machine load.
func distsPerSearch(ix *Index, queries []benchQuery) float64 {
	total := 0
	for _, q := range queries {
		bk := ix.buckets[q.prefix]
		if bk.graph == nil {
			total += len(bk.entries)
			continue
		}
		sc := getScratch(bk.graph.len())
		sc.dists = 0
		bk.graph.search(sc, q.vec, searchK, graphEf)
		total += sc.dists
		putScratch(sc)
	}
	return float64(total) / float64(len(queries))
}

func BenchmarkLookupParallel(b *testing.B) {
	ix, queries := benchIndex(10_000, 1, graphMin, false)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			q := queries[i%len(queries)]
			i++
			ix.Lookup(q.prefix, q.vec, question, t0)
		}
	})
}

func BenchmarkAdd(b *testing.B) {
	ix, _ := benchIndex(10_000, 1, graphMin, false)
	rng := rand.New(rand.NewPCG(7, 7))
	vecs := make([][]float32, 1024)
	for i := range vecs {
		vecs[i] = randomUnit(rng, benchDims)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// Replace entries: the index stays at 10k, the graph churns.
		ix.Add(pfx(0), vecs[i%len(vecs)], question, fmt.Sprint("k", i%10_000), t0.Add(time.Hour))
		i++
	}
}

type benchQuery struct {
	prefix [32]byte
	vec    []float32
	key    string
}

func benchIndex(n, prefixes, gMin int, random bool) (*Index, []benchQuery) {
	rng := rand.New(rand.NewPCG(uint64(n), uint64(prefixes)))
	vec := func() []float32 { return randomUnit(rng, benchDims) }
	if !random {
		shared := randomUnit(rng, benchDims)
		topics := make([][]float32, 1000)
		for i := range topics {
			topics[i] = randomUnit(rng, benchDims)
		}
		vec = func() []float32 {
			t, noise := topics[rng.IntN(len(topics))], randomUnit(rng, benchDims)
			v := make([]float32, benchDims)
			for i := range v {
				v[i] = 0.5*shared[i] + t[i] + 0.8*noise[i]
			}
			u, _ := normalised(v)
			return u
		}
	}
	ix := New(Options{MaxEntries: n})
	ix.graphMin = gMin
	var queries []benchQuery
	for i := range n {
		p := pfx(0)
		p[1], p[2] = byte(i%prefixes), byte(i%prefixes>>8)
		v := vec()
		key := fmt.Sprint("k", i)
		ix.Add(p, v, question, key, t0.Add(time.Hour))
		if i%(n/256+1) == 0 {
			_, q := pairAtFrom(rng, v, 0.97)
			queries = append(queries, benchQuery{prefix: p, vec: q, key: key})
		}
	}
	return ix, queries
}
