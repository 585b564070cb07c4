package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/rag"
)

// Admin API bounds for collections.
const (
	maxDocumentBody = 8 << 20
	maxAdminQuery   = 64 << 10
	maxAdminTopK    = 100
	adminRAGTimeout = 2 * time.Minute
)

// serveAdminRAG serves the collection endpoints:
//
//	GET    /ai_gateway/collections/{name}                 documents, chunks, version
//	POST   /ai_gateway/collections/{name}/documents       {"id","text","metadata","format","title"}: add or replace
//	DELETE /ai_gateway/collections/{name}/documents/{id}  remove a document
//	POST   /ai_gateway/collections/{name}/query           {"query","top_k","filter"}: ranked chunks with scores
func (a *App) serveAdminRAG(w http.ResponseWriter, r *http.Request, rest string) error {
	name, sub, _ := strings.Cut(rest, "/")
	c, ok := a.collection(name)
	if !ok {
		return apiErr(http.StatusNotFound, "no collection %q", name)
	}
	ctx, cancel := context.WithTimeout(r.Context(), adminRAGTimeout)
	defer cancel()
	switch {
	case sub == "" && r.Method == http.MethodGet:
		st, err := c.Stats(ctx)
		if err != nil {
			return apiErr(http.StatusBadGateway, "collection %q: %v", name, err)
		}
		return writeAdminJSON(w, http.StatusOK, st)
	case sub == "documents" && r.Method == http.MethodPost:
		var in struct {
			ID       string            `json:"id"`
			Text     string            `json:"text"`
			Title    string            `json:"title"`
			Format   string            `json:"format"`
			Metadata map[string]string `json:"metadata"`
		}
		if err := readAdminBody(r, maxDocumentBody, &in); err != nil {
			return err
		}
		if in.ID == "" || len(in.ID) > 1024 || strings.TrimSpace(in.Text) == "" {
			return apiErr(http.StatusBadRequest, "a document needs an id (at most 1024 bytes) and a text")
		}
		ext := ".txt"
		switch in.Format {
		case "", "text":
		case "markdown":
			ext = ".md"
		case "html":
			ext = ".html"
		default:
			return apiErr(http.StatusBadRequest, "format is text, markdown or html")
		}
		doc, err := rag.ReadBytes([]byte(in.Text), ext, in.ID)
		if err != nil {
			return apiErr(http.StatusBadRequest, "reading the document: %v", err)
		}
		if in.Title != "" {
			doc.Title = in.Title
		}
		doc.Metadata = in.Metadata
		res, err := c.Put(ctx, doc)
		if err != nil {
			return apiErr(http.StatusBadGateway, "storing the document: %v", err)
		}
		status := http.StatusOK
		if res.Changed {
			status = http.StatusCreated
		}
		return writeAdminJSON(w, status, map[string]any{"id": in.ID, "changed": res.Changed, "chunks": res.Chunks, "version": c.Version()})
	case strings.HasPrefix(sub, "documents/") && r.Method == http.MethodDelete:
		id := strings.TrimPrefix(sub, "documents/")
		n, err := c.Delete(ctx, id)
		if err != nil {
			return apiErr(http.StatusBadGateway, "deleting the document: %v", err)
		}
		if n == 0 {
			return apiErr(http.StatusNotFound, "no document %q in collection %q", id, name)
		}
		return writeAdminJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": true, "version": c.Version()})
	case sub == "query" && r.Method == http.MethodPost:
		var in struct {
			Query    string            `json:"query"`
			TopK     int               `json:"top_k"`
			MinScore float64           `json:"min_score"`
			Filter   map[string]string `json:"filter"`
		}
		if err := readAdminBody(r, maxAdminQuery, &in); err != nil {
			return err
		}
		if strings.TrimSpace(in.Query) == "" {
			return apiErr(http.StatusBadRequest, "query is required")
		}
		if in.TopK <= 0 {
			in.TopK = rag.DefaultTopK
		}
		in.TopK = min(in.TopK, maxAdminTopK)
		start := time.Now()
		hits, err := c.Search(ctx, rag.Query{Text: in.Query, K: in.TopK, Filter: in.Filter, MinScore: in.MinScore})
		if err != nil {
			return apiErr(http.StatusBadGateway, "retrieval failed: %v", err)
		}
		type hitView struct {
			ID string `json:"id"`
			rag.Hit
		}
		out := make([]hitView, len(hits))
		for i := range hits {
			out[i] = hitView{hits[i].ID(), hits[i]}
		}
		return writeAdminJSON(w, http.StatusOK, map[string]any{"hits": out, "version": c.Version(),
			"ms": time.Since(start).Milliseconds()})
	}
	return apiErr(http.StatusNotFound, "unknown collection admin path or method")
}

// readAdminBody reads at most max bytes of JSON (checked by jsonraw
// first) into v.
func readAdminBody(r *http.Request, max int64, v any) error {
	b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return apiErr(http.StatusBadRequest, "reading the body: %v", err)
	}
	if int64(len(b)) > max {
		return apiErr(http.StatusRequestEntityTooLarge, "body larger than %d bytes", max)
	}
	if ce := jsonraw.Check(b, 0, jsonraw.Unique|jsonraw.UTF8); ce != nil {
		return apiErr(http.StatusBadRequest, "invalid JSON body: %v", ce)
	}
	if err := json.Unmarshal(b, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return apiErr(http.StatusBadRequest, "invalid JSON body: %s has the wrong type", te.Field)
		}
		return apiErr(http.StatusBadRequest, "invalid JSON body: %v", err)
	}
	return nil
}
