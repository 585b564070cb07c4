// Package semantic is the semantic half of the response cache: an
// in-process index from the embedding of a request's last user message to
// the exact-cache key of an earlier answer, and the content gate that decides
// whether two similar-looking messages may really share that answer.
//
// # What is indexed
//
// An entry is (prefix, vector, text, key, expiry). The prefix is a hash of
// everything in the request except its last user message (endpoint, model,
// parameters, system prompt, earlier turns, the tenant's namespace, and the
// embedding model); the vector is that message's embedding, the text the
// message itself, the key the exact-cache key under which the answer is
// stored. A lookup only ever compares entries with the same prefix: two
// requests that differ anywhere but in the last user message never share an
// answer, however similar that message is.
//
// A lookup hits when all of these hold for a stored entry:
//
//   - same prefix;
//   - cosine similarity of the two vectors at least Options.Threshold;
//   - Gate passes for the two texts (same numbers, negations, polar and
//     time words, named entities, units, no swapped content word, the
//     same order of entities and units);
//   - the entry is not expired at the lookup's time.
//
// Among the entries that qualify, the one with the highest similarity wins.
//
// # Layout
//
// Entries are grouped per prefix, in a bucket; a lookup touches one
// bucket only, so a prefix's entries never compete with other prefixes'
// for the few candidates an approximate search returns (a global graph
// filtered by prefix would return the nearest vectors of any prefix and
// miss a rare prefix's match). A bucket is searched by an exact scan of
// SIMD dot products while it is small (below graphMin entries: exact, no
// memory beyond the vectors, no build), and through an HNSW graph
// (hnsw.go) once it grows past that. Most prefixes
// hold few entries (a conversation's history is part of its prefix), so
// most buckets never build a graph; a popular system prompt with
// single-turn questions makes one large bucket, and that is where the
// graph pays.
//
// The graph is this package's own (hnsw.go) rather than
// github.com/coder/hnsw: the released coder/hnsw (v0.6.1) corrupts its
// graph on Delete (its issues #10 and #13; the fixes are unreleased), and
// measured here on 5,000 random 128-dimensional vectors it found the
// stored neighbour of a query for 16–30% of queries, at 0.2–0.8 ms a
// search and 4–5 s to build (its search stops at the first expansion that
// does not improve, and it sorts every node's neighbour map as it walks);
// the graph here finds it for all of them (TestGraphBucket). Graphs are
// append-only: a removed entry marks its node
// dead (it still routes searches, it is never returned), and a bucket
// whose graph holds as many dead nodes as live ones rebuilds it from the
// live ones, outside the index lock. Vectors are normalised once on Add,
// so cosine similarity is a dot product.
//
// # Bounds and expiry
//
// Options.MaxEntries bounds the number of entries. When full, Add evicts the
// entry that expires soonest: expired entries first and, among live ones
// with one TTL, the oldest. Expired entries are also removed lazily: a
// lookup that sees the soonest-expiring entry expired sweeps a bounded
// number of them. An entry costs its vector (4 bytes a dimension), its
// message and the gate's analysis of it (a few times the message's size),
// and in a graph bucket about 200 bytes of links. The index never reads
// the wall clock; time comes from the
// expiry given to Add and the now given to Lookup, so callers may use an
// injected clock.
//
// # Concurrency
//
// An Index is safe for concurrent use. Lookups share a read lock (the scan
// or graph walk runs under it; lookups run in parallel, each with its own
// pooled scratch space); Add and Remove take the write lock for the few map
// and heap updates and one graph insertion (a graph rebuild runs outside
// the lock). The gate's analysis of a text runs before any lock is taken.
// A Lookup allocates only for the gate's analysis of its text (five small
// allocations for a short message).
package semantic

import (
	"sync"
	"time"
)

// Options configure an Index.
type Options struct {
	// Threshold is the cosine similarity, in [-1, 1], a stored entry's
	// vector must reach to be a candidate. 0.95 is a sensible value for
	// modern embedding models; lower values return answers to different
	// questions. Values outside (0, 1] are clamped to 0.95 (≤ 0) or 1.
	Threshold float32

	// MaxEntries bounds the number of entries; when full, Add evicts the
	// entry that expires soonest (expired ones first). Values ≤ 0 mean
	// DefaultMaxEntries.
	MaxEntries int
}

// DefaultThreshold and DefaultMaxEntries apply when Options leave them zero.
const (
	DefaultThreshold  = 0.95
	DefaultMaxEntries = 100_000
)

// graphMin is the bucket size from which a bucket is searched through an
// HNSW graph instead of an exact scan. A scan costs one distance per entry;
// a graph search about 340 at 1,000 entries and 370 at 10,000
// (BenchmarkLookup), plus ~15% memory for links and the build. Below 512
// the exact scan is cheap enough and has no build or recall cost. A graph
// is dropped again when its bucket shrinks below a quarter of this.
const graphMin = 512

// sweepBatch bounds the expired entries one Lookup removes.
const sweepBatch = 64

// Index maps the embedding of a request's last user message to the
// exact-cache key of an earlier answer. See the package documentation.
type Index struct {
	threshold  float32
	maxEntries int
	graphMin   int // graphMin, lowered in tests

	mu      sync.RWMutex
	byKey   map[string]*entry
	buckets map[[32]byte]*bucket
	expiry  expiryHeap
	nextID  uint64
}

// entry is one indexed answer.
type entry struct {
	key     string
	prefix  [32]byte
	vec     []float32 // unit length, owned by the entry, never modified
	text    features  // the gate's analysis of the message
	expires time.Time
	id      uint64 // unique over the Index's life
	node    int32  // slot in the bucket's graph, -1 when none
	slot    int    // index in bucket.entries
	heapAt  int    // index in Index.expiry
}

// New returns an empty Index.
func New(o Options) *Index {
	t := o.Threshold
	switch {
	case t <= 0:
		t = DefaultThreshold
	case t > 1:
		t = 1
	}
	n := o.MaxEntries
	if n <= 0 {
		n = DefaultMaxEntries
	}
	return &Index{
		threshold:  t,
		maxEntries: n,
		graphMin:   graphMin,
		byKey:      make(map[string]*entry),
		buckets:    make(map[[32]byte]*bucket),
	}
}

// Add indexes the entry key (an exact-cache key) whose request had
// everything but its last user message hashed into prefix, whose last user
// message is text with embedding vec; it expires at expires.
//
// Adding a key that is already indexed replaces that entry. A vector that
// is empty, zero, or holds NaN or Inf is not indexed, nor is a text longer
// than MaxText. A vector whose length
// differs from the vectors already under prefix (the embedding model
// changed) replaces that prefix's entries. vec is copied; the caller may
// reuse it.
func (ix *Index) Add(prefix [32]byte, vec []float32, text string, key string, expires time.Time) {
	if len(text) > MaxText {
		return
	}
	unit, ok := normalised(vec)
	if !ok {
		return
	}
	e := &entry{
		key:     key,
		prefix:  prefix,
		vec:     unit,
		text:    analyse(text),
		expires: expires,
	}

	ix.mu.Lock()
	if old, ok := ix.byKey[key]; ok {
		ix.removeLocked(old)
	}
	if b := ix.buckets[prefix]; b != nil && b.dims != len(unit) {
		for len(b.entries) > 0 {
			ix.removeLocked(b.entries[len(b.entries)-1])
		}
	}
	for len(ix.byKey) >= ix.maxEntries {
		ix.removeLocked(ix.expiry[0])
	}
	// Looked up after the evictions, which may have emptied and dropped it.
	b := ix.buckets[prefix]
	if b == nil {
		b = &bucket{prefix: prefix, dims: len(unit), graphMin: ix.graphMin}
		ix.buckets[prefix] = b
	}
	ix.nextID++
	e.id = ix.nextID
	ix.byKey[key] = e
	ix.expiry.push(e)
	rebuild := b.add(e)
	ix.mu.Unlock()

	if rebuild != nil {
		ix.rebuild(b, rebuild)
	}
}

// Lookup returns the best entry with the same prefix whose vector's cosine
// similarity to vec reaches the threshold and whose text passes the content
// gate against text, not expired at now. score is that similarity. A vector
// that cannot be normalised, or whose length differs from the prefix's
// vectors, finds nothing, nor does a text longer than MaxText.
//
// The key may name an answer the exact cache has dropped since (its own
// eviction, a DELETE): the caller then counts a miss and calls Remove.
func (ix *Index) Lookup(prefix [32]byte, vec []float32, text string, now time.Time) (key string, score float32, ok bool) {
	if len(text) > MaxText {
		return "", 0, false
	}
	buf := queryPool.Get().(*[]float32)
	defer queryPool.Put(buf)
	q, qok := normaliseInto(*buf, vec)
	if !qok {
		return "", 0, false
	}
	*buf = q
	query := analyse(text)

	ix.mu.RLock()
	var best *entry
	if b := ix.buckets[prefix]; b != nil && b.dims == len(q) {
		best, score = b.search(q, ix.threshold, now, &query)
	}
	if best != nil {
		key = best.key
	}
	sweep := len(ix.expiry) > 0 && !now.Before(ix.expiry[0].expires)
	ix.mu.RUnlock()

	if sweep {
		ix.sweep(now)
	}
	return key, score, best != nil
}

// Remove drops the entry key, if indexed (for an answer deleted from the
// exact cache).
func (ix *Index) Remove(key string) {
	ix.mu.Lock()
	if e, ok := ix.byKey[key]; ok {
		ix.removeLocked(e)
	}
	ix.mu.Unlock()
}

// Len reports the number of entries, expired ones not yet removed included.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.byKey)
}

// sweep removes up to sweepBatch entries expired at now.
func (ix *Index) sweep(now time.Time) {
	ix.mu.Lock()
	for i := 0; i < sweepBatch && len(ix.expiry) > 0 && !now.Before(ix.expiry[0].expires); i++ {
		ix.removeLocked(ix.expiry[0])
	}
	ix.mu.Unlock()
}

// removeLocked drops e from every structure. ix.mu is held for writing.
func (ix *Index) removeLocked(e *entry) {
	delete(ix.byKey, e.key)
	ix.expiry.remove(e)
	b := ix.buckets[e.prefix]
	if b.remove(e) {
		delete(ix.buckets, e.prefix)
	}
}
