package semantic

import "time"

// bucket holds the entries of one prefix. All methods run under the Index
// lock (read lock for search, write lock for the rest).
type bucket struct {
	prefix   [32]byte
	dims     int
	graphMin int               // Index.graphMin; graphs are dropped below a quarter of it
	entries  []*entry          // live entries; entry.slot is the index
	byID     map[uint64]*entry // live entries by graph node key

	// graph, when set, holds every live entry (entry.node is its slot)
	// and dead nodes, entries removed since it was built.
	graph    *graph
	dead     int
	building bool // a rebuild is under way outside the lock
}

// add inserts e. It returns a snapshot of the live entries when the bucket
// needs a graph built or rebuilt: the caller builds it outside the lock
// (Index.rebuild).
func (b *bucket) add(e *entry) []*entry {
	if b.byID == nil {
		b.byID = make(map[uint64]*entry)
	}
	e.slot = len(b.entries)
	b.entries = append(b.entries, e)
	b.byID[e.id] = e
	e.node = -1
	if b.graph != nil {
		e.node = b.graph.insert(e)
	}
	if b.building {
		return nil
	}
	if (b.graph == nil && len(b.entries) >= b.graphMin) || (b.graph != nil && b.dead >= len(b.entries)) {
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
	if b.graph != nil && e.node >= 0 {
		b.graph.nodes[e.node].dead = true
		b.dead++
		if len(b.entries) < b.graphMin/4 {
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
	sc := getScratch(b.graph.len())
	for _, c := range b.graph.search(sc, q, searchK, graphEf) {
		consider(b.graph.nodes[c.id].e)
	}
	putScratch(sc)
	return best, score
}

// rebuild builds a graph over snapshot (b's live entries when the rebuild
// was decided) without holding the lock, then installs it with the entries
// added meanwhile. Entries removed meanwhile stay in the new graph as
// tombstones.
func (ix *Index) rebuild(b *bucket, snapshot []*entry) {
	g := newGraph(snapshot[0].id)
	var newest uint64
	for _, e := range snapshot {
		g.insert(e)
		newest = max(newest, e.id)
	}

	ix.mu.Lock()
	defer ix.mu.Unlock()
	b.building = false
	if ix.buckets[b.prefix] != b || len(b.entries) < b.graphMin/4 {
		return
	}
	dead := 0
	for i := range g.nodes {
		n := &g.nodes[i]
		if b.byID[n.e.id] == n.e {
			n.e.node = int32(i)
		} else {
			n.dead = true
			dead++
		}
	}
	for _, e := range b.entries {
		if e.id > newest {
			e.node = g.insert(e)
		}
	}
	b.graph, b.dead = g, dead
}
