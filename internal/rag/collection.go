package rag

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
)

// Document is a document to ingest: its text already read into sections.
type Document struct {
	// ID names the document in the collection: its source (a path
	// relative to the ingested folder, or the id given to the admin API).
	ID string
	// Title is the document's title (its first heading, front matter or
	// <title>); "" when it has none.
	Title    string
	Sections []Section
	// Metadata is stored with every chunk ("tenant" for the tenant
	// filter). The keys "source", "chunk", "title" and "hash" are the
	// collection's own.
	Metadata map[string]string
}

// Hash is the document's content hash: what makes re-ingesting an
// unchanged document a no-op. It covers the title, the sections and the
// metadata.
func (d *Document) Hash() string {
	h := sha256.New()
	put := func(s string) {
		fmt.Fprintf(h, "%d:", len(s))
		h.Write([]byte(s))
	}
	put(d.Title)
	for _, s := range d.Sections {
		put(fmt.Sprint(len(s.Headings)))
		for _, x := range s.Headings {
			put(x)
		}
		put(s.Text)
	}
	keys := make([]string, 0, len(d.Metadata))
	for k := range d.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		put(k)
		put(d.Metadata[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Hit is one retrieved chunk.
type Hit struct {
	Source string  `json:"source"`
	Chunk  Chunk   `json:"chunk"`
	Title  string  `json:"title,omitempty"`
	Score  float64 `json:"score"`
	// Lexical and Vector are the chunk's ranks (from 1) in each leg of a
	// hybrid retrieval; 0 when the leg did not return it.
	Lexical int `json:"lexical_rank,omitempty"`
	Vector  int `json:"vector_rank,omitempty"`
}

// ID is the hit's name in sources lists: "<source>#<chunk index>".
func (h *Hit) ID() string { return fmt.Sprintf("%s#%d", h.Source, h.Chunk.Index) }

// Query asks a collection for the chunks closest to Text.
type Query struct {
	Text string
	// K is how many chunks to return at most.
	K int
	// Filter keeps only chunks whose metadata holds every pair, before
	// ranking.
	Filter map[string]string
	// MinScore drops hits scoring below it (BM25 score with a lexical
	// collection, the fused score with a hybrid one, the cosine similarity
	// with Chroma).
	MinScore float64
}

// Stats describes a collection.
type Stats struct {
	Name      string `json:"name"`
	Store     string `json:"store"`
	Embed     string `json:"embed"`
	Documents int    `json:"documents"`
	Chunks    int    `json:"chunks"`
	Version   uint64 `json:"version"`
}

// Embedder turns texts into vectors, one per text, in order.
type Embedder interface {
	Embed(ctx context.Context, texts []string) ([][]float32, error)
}

// PutResult is what a Put did.
type PutResult struct {
	// Changed is false when the document was stored already with the same
	// content hash (nothing was done).
	Changed bool
	Chunks  int
}

// ErrNotFound is returned for a document the collection does not hold.
var ErrNotFound = errors.New("document not found")

// store is where a collection's chunks live.
type store interface {
	// hash returns the stored content hash of document id.
	hash(ctx context.Context, id string) (string, bool, error)
	// put replaces document id's chunks (vectors may be nil: lexical).
	put(ctx context.Context, docs []storedDoc) error
	remove(ctx context.Context, ids []string) (int, error)
	search(ctx context.Context, q Query, vec []float32) ([]Hit, error)
	ids(ctx context.Context) ([]string, error)
	counts(ctx context.Context) (docs, chunks int, err error)
	version() uint64
	// refresh reloads what another process changed.
	refresh() (bool, error)
	kind() string
	close() error
}

// storedDoc is a document as stored: its chunks and their vectors.
type storedDoc struct {
	ID       string
	Hash     string
	Title    string
	Metadata map[string]string
	Chunks   []Chunk
	Vectors  [][]float32
}

// Collection is a named set of documents, chunked, indexed and searched.
// It is safe for concurrent use: searches run while documents are added.
type Collection struct {
	name    string
	model   string // embedding model; "" = lexical
	chunker Chunker
	st      store
	embed   atomic.Pointer[embedderBox]
}

type embedderBox struct{ Embedder }

// EmbedBatch is how many texts one embedding request carries.
const EmbedBatch = 64

// Name is the collection's name.
func (c *Collection) Name() string { return c.name }

// Model is the embedding model's name, "" for a lexical collection.
func (c *Collection) Model() string { return c.model }

// SetEmbedder sets how texts become vectors (the current configuration's
// gateway); a collection with a model and no embedder fails its searches.
func (c *Collection) SetEmbedder(e Embedder) {
	if e == nil {
		c.embed.Store(nil)
		return
	}
	c.embed.Store(&embedderBox{e})
}

// Version changes with every change to the collection's documents; the
// response cache folds it into its key. It survives restarts.
func (c *Collection) Version() uint64 { return c.st.version() }

func (c *Collection) embedder() (Embedder, error) {
	b := c.embed.Load()
	if b == nil {
		return nil, fmt.Errorf("collection %q: no embedder for model %q", c.name, c.model)
	}
	return b.Embedder, nil
}

// embedAll embeds texts in batches of EmbedBatch.
func (c *Collection) embedAll(ctx context.Context, texts []string) ([][]float32, error) {
	e, err := c.embedder()
	if err != nil {
		return nil, err
	}
	out := make([][]float32, 0, len(texts))
	for i := 0; i < len(texts); i += EmbedBatch {
		batch := texts[i:min(i+EmbedBatch, len(texts))]
		vs, err := e.Embed(ctx, batch)
		if err != nil {
			return nil, fmt.Errorf("embedding with %q: %w", c.model, err)
		}
		if len(vs) != len(batch) {
			return nil, fmt.Errorf("embedding with %q: %d vectors for %d texts", c.model, len(vs), len(batch))
		}
		out = append(out, vs...)
	}
	return out, nil
}

// Put adds or replaces one document.
func (c *Collection) Put(ctx context.Context, d Document) (PutResult, error) {
	rs, err := c.PutBatch(ctx, []Document{d})
	if err != nil {
		return PutResult{}, err
	}
	return rs[0], nil
}

// PutBatch adds or replaces documents in one change (one write of an
// embedded store); a document whose content hash is stored already is
// skipped.
func (c *Collection) PutBatch(ctx context.Context, docs []Document) ([]PutResult, error) {
	res := make([]PutResult, len(docs))
	var todo []storedDoc
	var texts []string
	for i := range docs {
		d := &docs[i]
		if d.ID == "" {
			return nil, errors.New("a document needs an id")
		}
		h := d.Hash()
		if c.model != "" {
			h += "@" + c.model // vectors of another model are stale
		}
		old, ok, err := c.st.hash(ctx, d.ID)
		if err != nil {
			return nil, err
		}
		if ok && old == h {
			continue
		}
		chunks := c.chunker.Split(d.Title, d.Sections)
		res[i] = PutResult{Changed: true, Chunks: len(chunks)}
		todo = append(todo, storedDoc{ID: d.ID, Hash: h, Title: d.Title, Metadata: d.Metadata, Chunks: chunks})
		if c.model != "" {
			for j := range chunks {
				texts = append(texts, chunks[j].Content())
			}
		}
	}
	if len(todo) == 0 {
		return res, nil
	}
	if c.model != "" && len(texts) > 0 {
		vecs, err := c.embedAll(ctx, texts)
		if err != nil {
			return nil, err
		}
		for i := range todo {
			n := len(todo[i].Chunks)
			todo[i].Vectors, vecs = vecs[:n], vecs[n:]
		}
	}
	if err := c.st.put(ctx, todo); err != nil {
		return nil, err
	}
	return res, nil
}

// Delete removes documents; it returns how many it held.
func (c *Collection) Delete(ctx context.Context, ids ...string) (int, error) {
	return c.st.remove(ctx, ids)
}

// IDs lists the documents' ids.
func (c *Collection) IDs(ctx context.Context) ([]string, error) { return c.st.ids(ctx) }

// Stats describes the collection.
func (c *Collection) Stats(ctx context.Context) (Stats, error) {
	d, n, err := c.st.counts(ctx)
	if err != nil {
		return Stats{}, err
	}
	embed := c.model
	if embed == "" {
		embed = "lexical"
	}
	return Stats{Name: c.name, Store: c.st.kind(), Embed: embed, Documents: d, Chunks: n, Version: c.st.version()}, nil
}

// Search returns the chunks that best answer q, best first.
func (c *Collection) Search(ctx context.Context, q Query) ([]Hit, error) {
	if q.K <= 0 {
		return nil, nil
	}
	var vec []float32
	if c.model != "" {
		vs, err := c.embedAll(ctx, []string{q.Text})
		if err != nil {
			return nil, err
		}
		vec = vs[0]
	}
	return c.st.search(ctx, q, vec)
}

// Refresh reloads the collection when another process (the ingest
// command) changed it since it was loaded; it reports whether it did.
func (c *Collection) Refresh() (bool, error) { return c.st.refresh() }

// Close releases the store.
func (c *Collection) Close() error { return c.st.close() }

// rrfK is reciprocal rank fusion's constant: score = Σ 1/(rrfK + rank).
const rrfK = 60

// fuse merges ranked lists by reciprocal rank fusion; ties keep the
// lexical order.
func fuse(lex, vec []Hit, k int) []Hit {
	type acc struct {
		h     Hit
		score float64
		order int
	}
	m := map[string]*acc{}
	var order []*acc
	add := func(hs []Hit, lexical bool) {
		for i := range hs {
			id := hs[i].ID()
			a, ok := m[id]
			if !ok {
				a = &acc{h: hs[i], order: len(order)}
				m[id] = a
				order = append(order, a)
			}
			a.score += 1 / float64(rrfK+i+1)
			if lexical {
				a.h.Lexical = i + 1
			} else {
				a.h.Vector = i + 1
			}
		}
	}
	add(lex, true)
	add(vec, false)
	sort.SliceStable(order, func(i, j int) bool { return order[i].score > order[j].score })
	out := make([]Hit, 0, min(k, len(order)))
	for _, a := range order[:min(k, len(order))] {
		a.h.Score = a.score
		out = append(out, a.h)
	}
	return out
}
