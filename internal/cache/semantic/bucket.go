package semantic

import (
	"time"

	"github.com/coder/hnsw"
)

// Graph parameters. searchK candidates are taken from a graph walk (enough
// to step past tombstones and entries the gate refuses); graphEf bounds the
// walk's candidate list; graphM is the library's default neighbour count.
const (
	searchK = 16
	graphEf = 64
	graphM  = 16
)

// bucket holds the entries of one prefix. All methods run under the Index
// lock (read lock for search, write lock for the rest).
type bucket struct {
	prefix  [32]byte
	dims    int
	entries []*entry          // live entries; entry.slot is the index
	byID    map[uint64]*entry // live entries by graph node key

	// graph, when set, holds every live entry and dead tombstones (entries
	// removed since it was built; the library's Delete is unsafe).
	graph    *hnsw.Graph[uint64]
	dead     int
	building bool // a rebuild is under way outside the lock
}

// add inserts e. It returns a snapshot of the live entries when the bucket
// needs a graph built or rebuilt: the caller builds it outside the lock
// (Index.rebuild).
func (b *bucket) add(e *entry, graphMin int) []*entry {
	if b.byID == nil {
		b.byID = make(map[uint64]*entry)
	}
	e.slot = len(b.entries)
	b.entries = append(b.entries, e)
	b.byID[e.id] = e
	if b.graph != nil {
		b.graph.Add(hnsw.MakeNode(e.id, e.vec))
	}
	if b.building {
		return nil
	}
	if (b.graph == nil && len(b.entries) >= graphMin) || (b.graph != nil && b.dead >= len(b.entries)) {
		b.building = true
		return append([]*entry(nil), b.entries...)
	}
	return nil
}

// remove drops e and reports whether the bucket is now empty.
func (b *bucket) remove(e *entry) bool {
	last := len(b.entries) - 1
	moved := b.entries[last]
	b.entries[e.slot] = moved
	moved.slot = e.slot
	b.entries[last] = nil
	b.entries = b.entries[:last]
	delete(b.byID, e.id)
	if b.graph != nil {
		b.dead++
		if len(b.entries) < graphDrop {
			b.graph, b.dead = nil, 0
		}
	}
	return len(b.entries) == 0
}

// search returns the live entry with the highest similarity to the unit
// vector q that reaches threshold, is not expired at now and passes the
// gate against query.
func (b *bucket) search(q []float32, threshold float32, now time.Time, query *features) (best *entry, score float32) {
	consider := func(e *entry) {
		s := dot(q, e.vec)
		if s < threshold || (best != nil && s <= score) {
			return
		}
		if !now.Before(e.expires) || !compatible(query, &e.text) {
			return
		}
		best, score = e, s
	}
	if b.graph == nil {
		for _, e := range b.entries {
			consider(e)
		}
		return best, score
	}
	for _, n := range b.graph.Search(q, searchK) {
		if e, ok := b.byID[n.Key]; ok {
			consider(e)
		}
	}
	return best, score
}

// newGraph returns an empty graph for unit vectors.
func newGraph() *hnsw.Graph[uint64] {
	g := hnsw.NewGraph[uint64]()
	g.M = graphM
	g.EfSearch = graphEf
	g.Distance = unitDistance
	return g
}

// rebuild builds a graph over snapshot (b's live entries when the rebuild
// was decided) without holding the lock, then installs it with the entries
// added meanwhile. Entries removed meanwhile stay in the new graph as
// tombstones.
func (ix *Index) rebuild(b *bucket, snapshot []*entry) {
	g := newGraph()
	var newest uint64
	for _, e := range snapshot {
		g.Add(hnsw.MakeNode(e.id, e.vec))
		newest = max(newest, e.id)
	}

	ix.mu.Lock()
	defer ix.mu.Unlock()
	b.building = false
	if ix.buckets[b.prefix] != b || len(b.entries) < graphDrop {
		return
	}
	for _, e := range b.entries {
		if e.id > newest {
			g.Add(hnsw.MakeNode(e.id, e.vec))
		}
	}
	b.graph, b.dead = g, g.Len()-len(b.entries)
}
