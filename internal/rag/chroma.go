package rag

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ChromaClient speaks Chroma's HTTP API v2 (Chroma 1.x; the v1 API
// answers 410 there): /api/v2/heartbeat and, under
// /api/v2/tenants/{tenant}/databases/{database}/collections, get-or-create,
// upsert, query with a where filter, get, delete and count.
type ChromaClient struct {
	base             string
	Tenant, Database string
	http             *http.Client
}

// Chroma defaults.
const (
	DefaultChromaTenant   = "default_tenant"
	DefaultChromaDatabase = "default_database"
	// maxChromaBody bounds one answer read from Chroma.
	maxChromaBody = 64 << 20
)

// NewChromaClient returns a client of the server at base
// (http://host:port); tenant and database default to Chroma's.
func NewChromaClient(base, tenant, database string) (*ChromaClient, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("chroma URL %q: want http(s)://host:port", base)
	}
	if tenant == "" {
		tenant = DefaultChromaTenant
	}
	if database == "" {
		database = DefaultChromaDatabase
	}
	return &ChromaClient{base: strings.TrimRight(base, "/"), Tenant: tenant, Database: database,
		http: &http.Client{Timeout: 30 * time.Second}}, nil
}

// ChromaError is an error answer of the server.
type ChromaError struct {
	Status  int
	Kind    string `json:"error"`
	Message string `json:"message"`
}

func (e *ChromaError) Error() string {
	return fmt.Sprintf("chroma: %d %s: %s", e.Status, e.Kind, e.Message)
}

func (c *ChromaClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("chroma: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxChromaBody+1))
	if err != nil {
		return fmt.Errorf("chroma: reading the answer: %v", err)
	}
	if len(b) > maxChromaBody {
		return fmt.Errorf("chroma: answer larger than %d MiB", maxChromaBody>>20)
	}
	if resp.StatusCode >= 300 {
		ce := &ChromaError{Status: resp.StatusCode}
		if json.Unmarshal(b, ce) != nil || ce.Message == "" {
			ce.Message = strings.TrimSpace(string(b[:min(len(b), 300)]))
		}
		return ce
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("chroma: decoding the answer: %v", err)
	}
	return nil
}

func (c *ChromaClient) dbPath() string {
	return "/api/v2/tenants/" + url.PathEscape(c.Tenant) + "/databases/" + url.PathEscape(c.Database)
}

// Heartbeat checks the server answers.
func (c *ChromaClient) Heartbeat(ctx context.Context) error {
	var hb map[string]any
	return c.do(ctx, http.MethodGet, "/api/v2/heartbeat", nil, &hb)
}

// EnsureDatabase creates the client's tenant and database when they do
// not exist.
func (c *ChromaClient) EnsureDatabase(ctx context.Context) error {
	var ce *ChromaError
	err := c.do(ctx, http.MethodGet, "/api/v2/tenants/"+url.PathEscape(c.Tenant), nil, nil)
	if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
		err = c.do(ctx, http.MethodPost, "/api/v2/tenants", map[string]string{"name": c.Tenant}, nil)
	}
	if err != nil {
		return err
	}
	err = c.do(ctx, http.MethodGet, c.dbPath(), nil, nil)
	if errors.As(err, &ce) && ce.Status == http.StatusNotFound {
		err = c.do(ctx, http.MethodPost, "/api/v2/tenants/"+url.PathEscape(c.Tenant)+"/databases", map[string]string{"name": c.Database}, nil)
	}
	return err
}

// ChromaCollection is a collection as the server describes it.
type ChromaCollection struct {
	ID       string         `json:"id"`
	Name     string         `json:"name"`
	Metadata map[string]any `json:"metadata"`
}

// GetOrCreateCollection returns the collection name, created (cosine
// space, with metadata) when missing.
func (c *ChromaClient) GetOrCreateCollection(ctx context.Context, name string, metadata map[string]any) (*ChromaCollection, error) {
	in := map[string]any{"name": name, "get_or_create": true,
		"configuration": map[string]any{"hnsw": map[string]any{"space": "cosine"}}}
	if len(metadata) > 0 {
		in["metadata"] = metadata
	}
	var col ChromaCollection
	if err := c.do(ctx, http.MethodPost, c.dbPath()+"/collections", in, &col); err != nil {
		return nil, err
	}
	return &col, nil
}

// UpdateCollectionMetadata replaces a collection's metadata.
func (c *ChromaClient) UpdateCollectionMetadata(ctx context.Context, id string, metadata map[string]any) error {
	return c.do(ctx, http.MethodPut, c.dbPath()+"/collections/"+url.PathEscape(id), map[string]any{"new_metadata": metadata}, nil)
}

// ChromaRecords are records to upsert.
type ChromaRecords struct {
	IDs        []string         `json:"ids"`
	Embeddings [][]float32      `json:"embeddings"`
	Documents  []string         `json:"documents,omitempty"`
	Metadatas  []map[string]any `json:"metadatas,omitempty"`
}

// Upsert adds or replaces records.
func (c *ChromaClient) Upsert(ctx context.Context, colID string, r *ChromaRecords) error {
	return c.do(ctx, http.MethodPost, c.dbPath()+"/collections/"+url.PathEscape(colID)+"/upsert", r, nil)
}

// ChromaQueryResult is the answer to one query embedding.
type ChromaQueryResult struct {
	IDs       []string
	Documents []string
	Metadatas []map[string]any
	Distances []float64
}

// Query returns the n records closest to vec among those matching where
// (nil: all): Chroma filters before it ranks.
func (c *ChromaClient) Query(ctx context.Context, colID string, vec []float32, n int, where map[string]any) (*ChromaQueryResult, error) {
	in := map[string]any{"query_embeddings": [][]float32{vec}, "n_results": n,
		"include": []string{"documents", "metadatas", "distances"}}
	if len(where) > 0 {
		in["where"] = where
	}
	var out struct {
		IDs       [][]string         `json:"ids"`
		Documents [][]*string        `json:"documents"`
		Metadatas [][]map[string]any `json:"metadatas"`
		Distances [][]*float64       `json:"distances"`
	}
	if err := c.do(ctx, http.MethodPost, c.dbPath()+"/collections/"+url.PathEscape(colID)+"/query", in, &out); err != nil {
		return nil, err
	}
	r := &ChromaQueryResult{}
	if len(out.IDs) == 0 {
		return r, nil
	}
	r.IDs = out.IDs[0]
	for i := range r.IDs {
		var doc string
		var meta map[string]any
		var dist float64
		if len(out.Documents) > 0 && i < len(out.Documents[0]) && out.Documents[0][i] != nil {
			doc = *out.Documents[0][i]
		}
		if len(out.Metadatas) > 0 && i < len(out.Metadatas[0]) {
			meta = out.Metadatas[0][i]
		}
		if len(out.Distances) > 0 && i < len(out.Distances[0]) && out.Distances[0][i] != nil {
			dist = *out.Distances[0][i]
		}
		r.Documents = append(r.Documents, doc)
		r.Metadatas = append(r.Metadatas, meta)
		r.Distances = append(r.Distances, dist)
	}
	return r, nil
}

// ChromaGetResult is the answer to a get.
type ChromaGetResult struct {
	IDs       []string         `json:"ids"`
	Metadatas []map[string]any `json:"metadatas"`
}

// Get returns records (ids and metadata) by ids or where, limit at most
// (0: no limit) from offset.
func (c *ChromaClient) Get(ctx context.Context, colID string, ids []string, where map[string]any, limit, offset int) (*ChromaGetResult, error) {
	in := map[string]any{"include": []string{"metadatas"}}
	if len(ids) > 0 {
		in["ids"] = ids
	}
	if len(where) > 0 {
		in["where"] = where
	}
	if limit > 0 {
		in["limit"] = limit
	}
	if offset > 0 {
		in["offset"] = offset
	}
	var out ChromaGetResult
	if err := c.do(ctx, http.MethodPost, c.dbPath()+"/collections/"+url.PathEscape(colID)+"/get", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Delete removes the records with ids or matching where.
func (c *ChromaClient) Delete(ctx context.Context, colID string, ids []string, where map[string]any) error {
	in := map[string]any{}
	if len(ids) > 0 {
		in["ids"] = ids
	}
	if len(where) > 0 {
		in["where"] = where
	}
	return c.do(ctx, http.MethodPost, c.dbPath()+"/collections/"+url.PathEscape(colID)+"/delete", in, nil)
}

// Count returns the number of records.
func (c *ChromaClient) Count(ctx context.Context, colID string) (int, error) {
	var n int
	err := c.do(ctx, http.MethodGet, c.dbPath()+"/collections/"+url.PathEscape(colID)+"/count", nil, &n)
	return n, err
}

// whereOf turns a filter into Chroma's where: {"k": "v"} for one pair,
// {"$and": [...]} for more.
func whereOf(filter map[string]string) map[string]any {
	if len(filter) == 0 {
		return nil
	}
	keys := make([]string, 0, len(filter))
	for k := range filter {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 1 {
		return map[string]any{keys[0]: filter[keys[0]]}
	}
	var and []any
	for _, k := range keys {
		and = append(and, map[string]any{k: filter[k]})
	}
	return map[string]any{"$and": and}
}

// Metadata keys a chroma store keeps on each record.
const (
	metaSource  = "source"
	metaChunk   = "chunk"
	metaTitle   = "title"
	metaHash    = "doc_hash"
	metaHeader  = "chunk_header"
	metaVersion = "ai_gateway_version"
)

// chromaStore keeps a collection in a Chroma server: one record per chunk
// (id "<source>#<index>", the chunk's text as the document, its vector,
// the document's metadata plus source, chunk, title, doc_hash and
// chunk_header). Retrieval is Chroma's vector search; the version lives in
// the collection's metadata (ai_gateway_version) so that it survives
// restarts and is shared by every gateway using the collection.
type chromaStore struct {
	c    *ChromaClient
	name string
	mu   sync.Mutex // serializes changes
	ver  atomic.Uint64

	idMu sync.Mutex
	id   string // "" until the server answered
}

// colID returns the collection's id, opening it first if the server was
// unreachable so far.
func (s *chromaStore) colID(ctx context.Context) (string, error) {
	s.idMu.Lock()
	defer s.idMu.Unlock()
	if s.id != "" {
		return s.id, nil
	}
	if err := s.c.EnsureDatabase(ctx); err != nil {
		return "", err
	}
	col, err := s.c.GetOrCreateCollection(ctx, s.name, map[string]any{metaVersion: 0, "created_by": "caddy-ai-gateway"})
	if err != nil {
		return "", err
	}
	if v, ok := col.Metadata[metaVersion].(float64); ok && v > 0 {
		s.ver.Store(uint64(v))
	}
	s.id = col.ID
	return s.id, nil
}

// OpenChroma opens (creating it if needed) the collection name in the
// Chroma server c. A chroma collection needs an embedding model: Chroma
// has no lexical (BM25) search over HTTP. A server that cannot be reached
// is not an error: the collection opens on its first use, and until then
// every operation fails (so that on_error pass serves without it). A
// server that answers with an error (a bad name) is one.
func OpenChroma(ctx context.Context, name string, c *ChromaClient, model string, ch Chunker) (*Collection, error) {
	if model == "" {
		return nil, fmt.Errorf("collection %q: store chroma needs an embedding model (embed <model>): Chroma has no lexical search over HTTP", name)
	}
	st := &chromaStore{c: c, name: name}
	var ce *ChromaError
	if _, err := st.colID(ctx); errors.As(err, &ce) {
		return nil, fmt.Errorf("collection %q: %v", name, err)
	}
	return &Collection{name: name, model: model, chunker: ch, st: st}, nil
}

func (s *chromaStore) kind() string    { return "chroma" }
func (s *chromaStore) version() uint64 { return s.ver.Load() }
func (s *chromaStore) close() error    { return nil }

func (s *chromaStore) refresh() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	col, err := s.c.GetOrCreateCollection(ctx, s.name, nil)
	if err != nil {
		return false, err
	}
	v, _ := col.Metadata[metaVersion].(float64)
	return s.ver.Swap(uint64(v)) != uint64(v), nil
}

// bump increments the version in the collection's metadata.
func (s *chromaStore) bump(ctx context.Context, id string) error {
	v := s.ver.Load() + 1
	if err := s.c.UpdateCollectionMetadata(ctx, id, map[string]any{metaVersion: v, "created_by": "caddy-ai-gateway"}); err != nil {
		return err
	}
	s.ver.Store(v)
	return nil
}

func (s *chromaStore) hash(ctx context.Context, id string) (string, bool, error) {
	col, err := s.colID(ctx)
	if err != nil {
		return "", false, err
	}
	r, err := s.c.Get(ctx, col, nil, map[string]any{metaSource: id}, 1, 0)
	if err != nil {
		return "", false, err
	}
	if len(r.IDs) == 0 {
		return "", false, nil
	}
	h, _ := r.Metadatas[0][metaHash].(string)
	return h, true, nil
}

// chromaBatch is how many records one upsert carries.
const chromaBatch = 256

func (s *chromaStore) put(ctx context.Context, docs []storedDoc) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	col, err := s.colID(ctx)
	if err != nil {
		return err
	}
	for _, d := range docs {
		if err := s.c.Delete(ctx, col, nil, map[string]any{metaSource: d.ID}); err != nil {
			return err
		}
		var rec ChromaRecords
		flush := func() error {
			if len(rec.IDs) == 0 {
				return nil
			}
			err := s.c.Upsert(ctx, col, &rec)
			rec = ChromaRecords{}
			return err
		}
		for i, ch := range d.Chunks {
			meta := map[string]any{}
			for k, v := range d.Metadata {
				meta[k] = v
			}
			meta[metaSource], meta[metaChunk], meta[metaTitle], meta[metaHash] = d.ID, ch.Index, d.Title, d.Hash
			if ch.Header != "" {
				meta[metaHeader] = ch.Header
			}
			rec.IDs = append(rec.IDs, fmt.Sprintf("%s#%d", d.ID, ch.Index))
			rec.Embeddings = append(rec.Embeddings, d.Vectors[i])
			rec.Documents = append(rec.Documents, ch.Text)
			rec.Metadatas = append(rec.Metadatas, meta)
			if len(rec.IDs) == chromaBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
	return s.bump(ctx, col)
}

func (s *chromaStore) remove(ctx context.Context, ids []string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	col, err := s.colID(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		r, err := s.c.Get(ctx, col, nil, map[string]any{metaSource: id}, 1, 0)
		if err != nil {
			return n, err
		}
		if len(r.IDs) == 0 {
			continue
		}
		if err := s.c.Delete(ctx, col, nil, map[string]any{metaSource: id}); err != nil {
			return n, err
		}
		n++
	}
	if n == 0 {
		return 0, nil
	}
	return n, s.bump(ctx, col)
}

func (s *chromaStore) search(ctx context.Context, q Query, vec []float32) ([]Hit, error) {
	col, err := s.colID(ctx)
	if err != nil {
		return nil, err
	}
	r, err := s.c.Query(ctx, col, vec, q.K, whereOf(q.Filter))
	if err != nil {
		return nil, err
	}
	hits := make([]Hit, 0, len(r.IDs))
	for i := range r.IDs {
		m := r.Metadatas[i]
		src, _ := m[metaSource].(string)
		idx, _ := m[metaChunk].(float64)
		title, _ := m[metaTitle].(string)
		header, _ := m[metaHeader].(string)
		h := Hit{Source: src, Title: title, Chunk: Chunk{Index: int(idx), Header: header, Text: r.Documents[i]},
			Score: 1 - r.Distances[i]} // cosine distance: similarity = 1 - distance
		if h.Score >= q.MinScore || q.MinScore <= 0 {
			hits = append(hits, h)
		}
	}
	return hits, nil
}

// each calls f with every record's metadata, a page at a time.
func (s *chromaStore) each(ctx context.Context, f func(map[string]any)) error {
	col, err := s.colID(ctx)
	if err != nil {
		return err
	}
	const page = 1000
	for off := 0; ; off += page {
		r, err := s.c.Get(ctx, col, nil, nil, page, off)
		if err != nil {
			return err
		}
		for _, m := range r.Metadatas {
			f(m)
		}
		if len(r.IDs) < page {
			return nil
		}
	}
}

func (s *chromaStore) ids(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	err := s.each(ctx, func(m map[string]any) {
		if src, ok := m[metaSource].(string); ok {
			seen[src] = true
		}
	})
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, err
}

func (s *chromaStore) counts(ctx context.Context) (int, int, error) {
	col, err := s.colID(ctx)
	if err != nil {
		return 0, 0, err
	}
	n, err := s.c.Count(ctx, col)
	if err != nil {
		return 0, 0, err
	}
	ids, err := s.ids(ctx)
	return len(ids), n, err
}
