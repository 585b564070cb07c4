package rag

import (
	"bufio"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"

	"github.com/philippgille/chromem-go"
)

// snapshotFile is the embedded store's file in its directory.
const snapshotFile = "collection.gob"

// embedded keeps a collection in memory — a BM25 index and, with an
// embedding model, a chromem-go vector collection — and persists it under
// a directory as one snapshot written crash-safely: encoded to a temporary
// file, fsynced, renamed over the previous snapshot, the directory
// fsynced. A crash at any point leaves the previous or the new snapshot,
// never a torn one. Every change writes the whole snapshot (batch changes
// with PutBatch).
//
// Readers (search) share a read lock; a change builds its chunks and
// vectors first, then holds the write lock only to swap them in, and
// encodes the snapshot under the read lock.
type embedded struct {
	dir   string
	model string

	wmu sync.Mutex // serializes changes and snapshot writes

	mu      sync.RWMutex
	ver     uint64
	docs    map[string]*docEntry
	slots   []slotEntry // by slot
	free    int         // dead slots, compacted when they outnumber the live
	lex     *BM25
	vec     *chromem.Collection // nil: lexical
	vectors bool
}

type docEntry struct {
	id, hash, title string
	meta            map[string]string
	slots           []uint32
}

type slotEntry struct {
	doc   *docEntry
	chunk Chunk
	vec   []float32
}

// snapshot is the persisted form.
type snapshot struct {
	Version uint64
	// Model is the embedding model of the vectors ("" = lexical).
	Model string
	Docs  []snapDoc
}

type snapDoc struct {
	ID, Hash, Title string
	Metadata        map[string]string
	Chunks          []Chunk
	Vectors         [][]float32
}

// OpenEmbedded opens (or creates) the collection persisted under dir.
// model is the embedding model ("" = lexical only).
func OpenEmbedded(name, dir, model string, ch Chunker) (*Collection, error) {
	st, err := openEmbedded(dir, model)
	if err != nil {
		return nil, fmt.Errorf("collection %q: %w", name, err)
	}
	return &Collection{name: name, model: model, chunker: ch, st: st}, nil
}

func openEmbedded(dir, model string) (*embedded, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	e := &embedded{dir: dir, model: model, vectors: model != ""}
	var snap snapshot
	f, err := os.Open(filepath.Join(dir, snapshotFile))
	switch {
	case err == nil:
		err = gob.NewDecoder(bufio.NewReaderSize(f, 1<<16)).Decode(&snap)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %v", filepath.Join(dir, snapshotFile), err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	if snap.Model != model {
		// Vectors of another model (or none) are of no use: drop them. The
		// documents' hashes name the model, so the next ingest embeds them
		// all again.
		for i := range snap.Docs {
			snap.Docs[i].Vectors = nil
		}
	}
	if err := e.rebuild(snap); err != nil {
		return nil, fmt.Errorf("loading %s: %v", dir, err)
	}
	return e, nil
}

// OnDiskVersion reads the version of the snapshot under dir (0 when there
// is none): a process that loaded the store compares it to its own to
// notice changes another process (the ingest command) wrote.
func OnDiskVersion(dir string) (uint64, error) {
	f, err := os.Open(filepath.Join(dir, snapshotFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var head struct{ Version uint64 }
	if err := gob.NewDecoder(bufio.NewReader(f)).Decode(&head); err != nil {
		return 0, err
	}
	return head.Version, nil
}

// rebuild replaces the in-memory state by snap's.
func (e *embedded) rebuild(snap snapshot) error {
	e.ver = snap.Version
	e.docs = make(map[string]*docEntry, len(snap.Docs))
	e.slots = e.slots[:0]
	e.free = 0
	e.lex = NewBM25()
	e.vec = nil
	if e.vectors {
		e.vec = newVectorCollection()
	}
	var ids []string
	var vecs [][]float32
	var metas []map[string]string
	for _, d := range snap.Docs {
		de := &docEntry{id: d.ID, hash: d.Hash, title: d.Title, meta: d.Metadata}
		e.docs[d.ID] = de
		for i, c := range d.Chunks {
			slot := uint32(len(e.slots))
			se := slotEntry{doc: de, chunk: c}
			if i < len(d.Vectors) {
				se.vec = d.Vectors[i]
			}
			e.slots = append(e.slots, se)
			de.slots = append(de.slots, slot)
			e.lex.Add(slot, lexicalText(&c))
			if e.vec != nil && se.vec != nil {
				ids = append(ids, strconv.FormatUint(uint64(slot), 10))
				vecs = append(vecs, se.vec)
				metas = append(metas, d.Metadata)
			}
		}
	}
	if e.vec != nil && len(ids) > 0 {
		contents := make([]string, len(ids)) // the text lives in slots
		return e.vec.AddConcurrently(context.Background(), ids, vecs, metas, contents, runtime.GOMAXPROCS(0))
	}
	return nil
}

// lexicalText is what BM25 indexes for a chunk: its header twice (the
// title and heading path weigh double, a BM25F-like field boost), then its
// text.
func lexicalText(c *Chunk) string {
	if c.Header == "" {
		return c.Text
	}
	return c.Header + "\n" + c.Header + "\n\n" + c.Text
}

func newVectorCollection() *chromem.Collection {
	db := chromem.NewDB()
	c, err := db.CreateCollection("c", nil, func(context.Context, string) ([]float32, error) {
		return nil, errors.New("vectors are given")
	})
	if err != nil {
		panic(err) // an in-memory DB cannot fail to create a collection
	}
	return c
}

func (e *embedded) kind() string { return "embedded" }

func (e *embedded) version() uint64 {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.ver
}

func (e *embedded) hash(_ context.Context, id string) (string, bool, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	d, ok := e.docs[id]
	if !ok {
		return "", false, nil
	}
	return d.hash, true, nil
}

func (e *embedded) ids(context.Context) ([]string, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]string, 0, len(e.docs))
	for id := range e.docs {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, nil
}

func (e *embedded) counts(context.Context) (int, int, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return len(e.docs), len(e.slots) - e.free, nil
}

// dropLocked removes a document's slots; e.mu is held for writing.
func (e *embedded) dropLocked(id string) bool {
	d, ok := e.docs[id]
	if !ok {
		return false
	}
	for _, s := range d.slots {
		e.lex.Remove(s)
		if e.vec != nil && e.slots[s].vec != nil {
			_ = e.vec.Delete(context.Background(), nil, nil, strconv.FormatUint(uint64(s), 10))
		}
		e.slots[s] = slotEntry{}
		e.free++
	}
	delete(e.docs, id)
	return true
}

func (e *embedded) put(ctx context.Context, docs []storedDoc) error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	e.mu.Lock()
	for _, d := range docs {
		e.dropLocked(d.ID)
		de := &docEntry{id: d.ID, hash: d.Hash, title: d.Title, meta: d.Metadata}
		e.docs[d.ID] = de
		for i, c := range d.Chunks {
			slot := uint32(len(e.slots))
			se := slotEntry{doc: de, chunk: c}
			if i < len(d.Vectors) {
				se.vec = d.Vectors[i]
			}
			e.slots = append(e.slots, se)
			de.slots = append(de.slots, slot)
			e.lex.Add(slot, lexicalText(&c))
			if e.vec != nil && se.vec != nil {
				if err := e.vec.AddDocument(ctx, chromem.Document{ID: strconv.FormatUint(uint64(slot), 10),
					Metadata: d.Metadata, Embedding: se.vec}); err != nil {
					e.mu.Unlock()
					return fmt.Errorf("adding a vector: %v", err)
				}
			}
		}
	}
	e.ver++
	e.compactLocked()
	e.mu.Unlock()
	return e.persist()
}

func (e *embedded) remove(_ context.Context, ids []string) (int, error) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	e.mu.Lock()
	n := 0
	for _, id := range ids {
		if e.dropLocked(id) {
			n++
		}
	}
	if n == 0 {
		e.mu.Unlock()
		return 0, nil
	}
	e.ver++
	e.compactLocked()
	e.mu.Unlock()
	return n, e.persist()
}

// compactLocked rebuilds the indexes once dead slots outnumber live ones.
func (e *embedded) compactLocked() {
	if e.free <= len(e.slots)/2 || e.free < 1024 {
		return
	}
	if err := e.rebuild(e.snapshotLocked()); err != nil {
		panic(fmt.Sprintf("rag: rebuilding the indexes of vectors they held: %v", err)) // cannot fail: the vectors were accepted once
	}
}

func (e *embedded) snapshotLocked() snapshot {
	snap := snapshot{Version: e.ver, Model: e.model, Docs: make([]snapDoc, 0, len(e.docs))}
	for id, d := range e.docs {
		sd := snapDoc{ID: id, Hash: d.hash, Title: d.title, Metadata: d.meta}
		for _, s := range d.slots {
			sd.Chunks = append(sd.Chunks, e.slots[s].chunk)
			if v := e.slots[s].vec; v != nil {
				sd.Vectors = append(sd.Vectors, v)
			}
		}
		snap.Docs = append(snap.Docs, sd)
	}
	sort.Slice(snap.Docs, func(i, j int) bool { return snap.Docs[i].ID < snap.Docs[j].ID })
	return snap
}

// persist writes the snapshot: temporary file, fsync, rename, directory
// fsync. e.wmu is held.
func (e *embedded) persist() error {
	e.mu.RLock()
	snap := e.snapshotLocked()
	e.mu.RUnlock()
	return writeFileAtomic(filepath.Join(e.dir, snapshotFile), func(w io.Writer) error {
		return gob.NewEncoder(w).Encode(&snap)
	})
}

// writeFileAtomic writes path through a temporary file in its directory.
func writeFileAtomic(path string, write func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %v", path, err)
	}
	bw := bufio.NewWriterSize(f, 1<<16)
	if err := write(bw); err != nil {
		return fail(err)
	}
	if err := bw.Flush(); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %v", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %v", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func matches(meta, filter map[string]string) bool {
	for k, v := range filter {
		if meta[k] != v {
			return false
		}
	}
	return true
}

func (e *embedded) search(ctx context.Context, q Query, vec []float32) ([]Hit, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var keep func(uint32) bool
	if len(q.Filter) > 0 {
		keep = func(s uint32) bool { d := e.slots[s].doc; return d != nil && matches(d.meta, q.Filter) }
	}
	legK := q.K
	if vec != nil {
		legK = max(q.K*4, 20) // candidates for fusion
	}
	var lex []Hit
	for _, s := range e.lex.Search(q.Text, legK, keep) {
		lex = append(lex, e.hit(s.Slot, s.Score))
	}
	if vec == nil || e.vec == nil {
		return minScore(lex, q.MinScore), nil
	}
	var vhits []Hit
	if n := min(legK, e.vec.Count()); n > 0 {
		var where map[string]string
		if len(q.Filter) > 0 {
			where = q.Filter
		}
		rs, err := e.vec.QueryEmbedding(ctx, vec, n, where, nil)
		if err != nil {
			return nil, fmt.Errorf("vector search: %v", err)
		}
		for _, r := range rs {
			s, err := strconv.ParseUint(r.ID, 10, 32)
			if err != nil || int(s) >= len(e.slots) || e.slots[s].doc == nil {
				continue
			}
			vhits = append(vhits, e.hit(uint32(s), float64(r.Similarity)))
		}
	}
	return minScore(fuse(lex, vhits, q.K), q.MinScore), nil
}

func (e *embedded) hit(slot uint32, score float64) Hit {
	se := &e.slots[slot]
	return Hit{Source: se.doc.id, Chunk: se.chunk, Title: se.doc.title, Score: score}
}

func minScore(hs []Hit, min float64) []Hit {
	if min <= 0 {
		return hs
	}
	out := hs[:0]
	for _, h := range hs {
		if h.Score >= min {
			out = append(out, h)
		}
	}
	return out
}

func (e *embedded) close() error { return nil }

func (e *embedded) refresh() (bool, error) {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	v, err := OnDiskVersion(e.dir)
	if err != nil || v == e.version() {
		return false, err
	}
	fresh, err := openEmbedded(e.dir, e.model)
	if err != nil {
		return false, err
	}
	e.mu.Lock()
	e.ver, e.docs, e.slots, e.free, e.lex, e.vec = fresh.ver, fresh.docs, fresh.slots, fresh.free, fresh.lex, fresh.vec
	e.mu.Unlock()
	return true, nil
}
