package rag

import (
	"container/heap"
	"math"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/blevesearch/snowballstem"
	"github.com/blevesearch/snowballstem/english"
)

// BM25 is an in-memory inverted index ranking by Okapi BM25 (k1 = 1.2,
// b = 0.75). Entries are numbered slots given by the caller; a removed
// slot stays in the postings, skipped, until the index is compacted by
// building it anew. It is not safe for concurrent writes: the collection
// guards it (readers may share it).
//
// Text is tokenized by tokenize: lower-cased runs of letters and digits,
// without English stop words, stemmed (Snowball English).
type BM25 struct {
	postings map[string][]posting
	lens     []uint32 // tokens per slot; 0 = no entry
	// stems caches stem for Add (writers are serialized; a search stems
	// without it), bounded by maxStemCache.
	stems map[string]string
	live  int
	total int64
}

type posting struct {
	slot uint32
	tf   uint32
}

// BM25 parameters.
const (
	bm25K1 = 1.2
	bm25B  = 0.75
)

// NewBM25 returns an empty index.
func NewBM25() *BM25 {
	return &BM25{postings: make(map[string][]posting), stems: make(map[string]string)}
}

// maxStemCache bounds the stem cache's entries.
const maxStemCache = 1 << 18

// Add indexes text at slot, which must be unused.
func (ix *BM25) Add(slot uint32, text string) {
	tf := make(map[string]uint32)
	n := uint32(0)
	tokenizeWith(text, ix.stemCached, func(t string) {
		tf[t]++
		n++
	})
	for int(slot) >= len(ix.lens) {
		ix.lens = append(ix.lens, 0)
	}
	if n == 0 {
		n = 1 // present, but matches nothing
	}
	ix.lens[slot] = n
	ix.live++
	ix.total += int64(n)
	for t, c := range tf {
		ix.postings[t] = append(ix.postings[t], posting{slot, c})
	}
}

// Remove drops slot from the ranking.
func (ix *BM25) Remove(slot uint32) {
	if int(slot) >= len(ix.lens) || ix.lens[slot] == 0 {
		return
	}
	ix.live--
	ix.total -= int64(ix.lens[slot])
	ix.lens[slot] = 0
}

// Len is the number of live entries.
func (ix *BM25) Len() int { return ix.live }

// Scored is a slot and its score.
type Scored struct {
	Slot  uint32
	Score float64
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

type scratch struct {
	scores  []float64
	touched []uint32
}

// Search returns the k best slots for query, best first, among those keep
// accepts (nil: all), with a score above zero. keep runs before ranking:
// a slot it refuses never takes a place in the top k.
func (ix *BM25) Search(query string, k int, keep func(slot uint32) bool) []Scored {
	if k <= 0 || ix.live == 0 {
		return nil
	}
	seen := map[string]bool{}
	var terms []string
	tokenize(query, func(t string) {
		if !seen[t] {
			seen[t] = true
			terms = append(terms, t)
		}
	})
	if len(terms) == 0 {
		return nil
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	if cap(sc.scores) < len(ix.lens) {
		sc.scores = make([]float64, len(ix.lens))
	}
	scores := sc.scores[:len(ix.lens)]
	touched := sc.touched[:0]
	n := float64(ix.live)
	avg := float64(ix.total) / n
	// Length normalization: k1·(1-b+b·len/avg) = lenA + lenB·len.
	lenA, lenB := bm25K1*(1-bm25B), bm25K1*bm25B/avg
	for _, t := range terms {
		ps := ix.postings[t]
		// The document frequency counts removed entries until the
		// collection compacts them away (at most as many as live ones).
		df := len(ps)
		if df == 0 {
			continue
		}
		idf := math.Log(1 + (n-float64(df)+0.5)/(float64(df)+0.5))
		if idf < 0 {
			idf = 0
		}
		num := idf * (bm25K1 + 1)
		for _, p := range ps {
			l := ix.lens[p.slot]
			if l == 0 || (keep != nil && !keep(p.slot)) {
				continue
			}
			tf := float64(p.tf)
			s := num * tf / (tf + lenA + lenB*float64(l))
			if scores[p.slot] == 0 {
				touched = append(touched, p.slot)
			}
			scores[p.slot] += s
		}
	}
	h := make(minHeap, 0, k)
	for _, s := range touched {
		v := scores[s]
		scores[s] = 0
		if len(h) < k {
			heap.Push(&h, Scored{s, v})
		} else if v > h[0].Score || (v == h[0].Score && s < h[0].Slot) {
			h[0] = Scored{s, v}
			heap.Fix(&h, 0)
		}
	}
	sc.touched = touched[:0]
	out := make([]Scored, len(h))
	for i := len(h) - 1; i >= 0; i-- {
		out[i] = heap.Pop(&h).(Scored)
	}
	return out
}

// minHeap keeps the k best: the worst on top (ties: the higher slot is worse).
type minHeap []Scored

func (h minHeap) Len() int { return len(h) }
func (h minHeap) Less(i, j int) bool {
	if h[i].Score != h[j].Score {
		return h[i].Score < h[j].Score
	}
	return h[i].Slot > h[j].Slot
}
func (h minHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *minHeap) Push(x any)   { *h = append(*h, x.(Scored)) }
func (h *minHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// stemCached is stem through the index's cache.
func (ix *BM25) stemCached(w string) string {
	if t, ok := ix.stems[w]; ok {
		return t
	}
	t := stem(w)
	if len(ix.stems) < maxStemCache {
		ix.stems[w] = t
	}
	return t
}

// tokenize calls emit with each index term of s.
func tokenize(s string, emit func(string)) { tokenizeWith(s, stem, emit) }

// tokenizeWith is tokenize with stemmer st.
func tokenizeWith(s string, st func(string) string, emit func(string)) {
	var buf [64]byte
	w := buf[:0]
	long := false
	flush := func() {
		if len(w) > 0 && !long {
			if !stopWords[string(w)] { // no allocation for the lookup
				emit(st(string(w)))
			}
		}
		w, long = buf[:0], false
	}
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush()
			continue
		}
		r = unicode.ToLower(r)
		if len(w)+utf8.UTFMax > cap(buf) {
			long = true // a token over 60 bytes is not a word
			continue
		}
		w = utf8.AppendRune(w, r)
	}
	flush()
}

// stem is the Snowball English (Porter2) stemmer, the standard one of
// lexical search engines (github.com/blevesearch/snowballstem, generated
// from the Snowball project).
func stem(t string) string {
	if len(t) <= 2 {
		return t
	}
	env := envPool.Get().(*snowballstem.Env)
	env.SetCurrent(t)
	english.Stem(env)
	out := env.Current()
	envPool.Put(env)
	return out
}

var envPool = sync.Pool{New: func() any { return snowballstem.NewEnv("") }}

// stopWords are English function words that carry no topic.
var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a about above after again against all am an and any are as at be because been
before being below between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just me more most my myself
no nor not now of off on once only or other our ours ourselves out over own same she should so some such than that
the their theirs them themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself yourselves i'm it's don't also may
might must shall us get got let use using used`) {
		m[w] = true
	}
	return m
}()
