package caddymodule

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/rag"
)

// CollectionConfig declares a RAG collection: where its chunks live, how
// they are embedded and how documents are split.
type CollectionConfig struct {
	// Name of the collection: 1 to 63 of [A-Za-z0-9._-], starting and
	// ending with a letter or digit (Chroma's rule, so that one name
	// serves both stores; at least 3 characters with Chroma).
	Name string `json:"name"`

	// Store is "embedded" (in process, persisted under Path) or "chroma"
	// (a Chroma server at URL, HTTP API v2). Default: embedded.
	Store string `json:"store,omitempty"`

	// Path is the embedded store's directory. Default:
	// <Caddy's data directory>/ai_gateway/collections/<name>.
	Path string `json:"path,omitempty"`

	// URL of the Chroma server, e.g. http://127.0.0.1:8000.
	URL string `json:"url,omitempty"`

	// Tenant and Database in the Chroma server, created when missing.
	// Default: default_tenant, default_database.
	Tenant   string `json:"tenant,omitempty"`
	Database string `json:"database,omitempty"`

	// Embed is "lexical" (BM25 only, no model) or the name of an
	// embedding model in the routing table, whose vectors are searched
	// with BM25 and fused by reciprocal rank fusion (embedded store), or
	// searched alone (chroma, which requires a model). Default: lexical.
	Embed string `json:"embed,omitempty"`

	// ChunkTokens is the size of a chunk's text in estimated tokens (one
	// per 4 bytes). Default: 400.
	ChunkTokens int `json:"chunk_tokens,omitempty"`

	// ChunkOverlap is how many tokens consecutive chunks share. Default: 60.
	ChunkOverlap int `json:"chunk_overlap,omitempty"`
}

// RAGConfig makes a handler inject what a collection holds about each
// request's last user message into its prompt.
type RAGConfig struct {
	// Collection is the name of a collection declared in the app.
	Collection string `json:"collection"`

	// TopK chunks are retrieved at most. Default: 3.
	TopK int `json:"top_k,omitempty"`

	// MaxContextTokens caps the injected context, in estimated tokens
	// (one per 4 bytes of text). Default: 1500.
	MaxContextTokens int `json:"max_context_tokens,omitempty"`

	// MinScore drops retrieved chunks scoring below it: the BM25 score
	// (lexical), the fused reciprocal-rank score (hybrid), the cosine
	// similarity (chroma). Default: 0 (none dropped).
	MinScore float64 `json:"min_score,omitempty"`

	// Inject is "system" (a system instruction: a first system message,
	// Responses instructions, Anthropic's system) or "user" (the last
	// user message's text is replaced by the rendered template).
	// Default: system.
	Inject string `json:"inject,omitempty"`

	// Template is what is injected; {context} (required) is the fenced
	// chunks, {query} the user's message. Default for system: "Answer
	// using the reference material below when it is relevant.\n\n{context}";
	// for user: "Context:\n{context}\n\nUser query:\n{query}".
	Template string `json:"template,omitempty"`

	// Filter restricts retrieval to chunks whose metadata field equals the
	// expanded placeholder expression, before ranking, e.g.
	// {"tenant": "{http.ai_gateway.key}"}. An expression that expands to
	// "" retrieves nothing. {http.ai_gateway.key} and
	// {http.ai_gateway.key.metadata.<name>} are known here.
	Filter map[string]string `json:"filter,omitempty"`

	// QueryTurns is how many of the last user messages make the retrieval
	// query (2: the previous user turn too, for follow-up questions); the
	// template's {query} stays the last message. Default: 1.
	QueryTurns int `json:"query_turns,omitempty"`

	// OnError is "pass" (retrieval failed: the prompt goes as it was, with
	// X-AI-Gateway-RAG: skipped) or "fail" (503 rag_unavailable).
	// Default: pass.
	OnError string `json:"on_error,omitempty"`
}

var collectionName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$`)

// ragPool keeps collections (their loaded indexes, their Chroma clients)
// across config reloads, by configuration.
var ragPool = caddy.NewUsagePool()

type collectionValue struct{ *rag.Collection }

func (v collectionValue) Destruct() error { return v.Collection.Close() }

// ragState is the app's collections.
type ragState struct {
	collections map[string]*rag.Collection
	poolKeys    []string
	embedGW     *gateway.Gateway
	paths       map[string]string // embedded collections' directories
}

// embedder embeds through the app's providers.
type embedder struct {
	gw    *gateway.Gateway
	model string
}

func (e embedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	return e.gw.Embed(ctx, e.model, texts)
}

// provisionRAG opens the declared collections (shared across reloads
// through ragPool) and points their embedders at this config's providers.
func (a *App) provisionRAG(ctx caddy.Context) error {
	if len(a.Collections) == 0 {
		return nil
	}
	st := &ragState{collections: map[string]*rag.Collection{}, paths: map[string]string{}}
	a.rag = st
	gw, err := gateway.New(gateway.Config{Providers: a.providers, Routes: a.routes, Health: a.health,
		Redactor: a.redactor, Logger: a.logger.Named("rag"), Deadline: time.Duration(a.Deadline),
		RetryBackoff: time.Duration(a.RetryBackoff), MaxBackoff: time.Duration(a.MaxBackoff),
		MaxRetryAfter: time.Duration(a.MaxRetryAfter), Created: a.created})
	if err != nil {
		return err
	}
	st.embedGW = gw
	for _, cc := range a.Collections {
		if cc == nil {
			continue
		}
		if err := cc.validate(); err != nil {
			return err
		}
		if _, dup := st.collections[cc.Name]; dup {
			return fmt.Errorf("collection %q declared twice", cc.Name)
		}
		model := cc.model()
		if model != "" {
			if _, ok := a.routes.Lookup(model); !ok {
				return fmt.Errorf("collection %q: embedding model %q is not in the routing table", cc.Name, model)
			}
		}
		path := cc.Path
		if cc.store() == "embedded" && path == "" {
			path = filepath.Join(caddy.AppDataDir(), "ai_gateway", "collections", cc.Name)
		}
		key := "ai_gateway.rag." + strings.Join([]string{cc.Name, cc.store(), path, cc.URL, cc.Tenant, cc.Database,
			model, strconv.Itoa(cc.ChunkTokens), strconv.Itoa(cc.ChunkOverlap)}, "\x00")
		v, loaded, err := ragPool.LoadOrNew(key, func() (caddy.Destructor, error) {
			c, err := cc.open(ctx, path)
			if err != nil {
				return nil, err
			}
			return collectionValue{c}, nil
		})
		if err != nil {
			return err
		}
		st.poolKeys = append(st.poolKeys, key)
		c := v.(collectionValue).Collection
		if loaded && cc.store() == "embedded" {
			// The ingest command may have written the directory since.
			if changed, err := c.Refresh(); err != nil {
				a.logger.Warn("reloading collection from disk", zap.String("collection", cc.Name), zap.Error(err))
			} else if changed {
				a.logger.Info("collection reloaded from disk", zap.String("collection", cc.Name), zap.Uint64("version", c.Version()))
			}
		}
		if model != "" {
			c.SetEmbedder(embedder{gw, model})
		}
		st.collections[cc.Name] = c
		st.paths[cc.Name] = path
	}
	return nil
}

// cleanupRAG releases the app's references to its collections.
func (a *App) cleanupRAG() {
	if a.rag == nil {
		return
	}
	for _, k := range a.rag.poolKeys {
		_, _ = ragPool.Delete(k)
	}
	a.rag.poolKeys = nil
}

// collection returns a declared collection.
func (a *App) collection(name string) (*rag.Collection, bool) {
	if a.rag == nil {
		return nil, false
	}
	c, ok := a.rag.collections[name]
	return c, ok
}

func (cc *CollectionConfig) store() string {
	if cc.Store == "" {
		return "embedded"
	}
	return cc.Store
}

func (cc *CollectionConfig) model() string {
	if cc.Embed == "lexical" {
		return ""
	}
	return cc.Embed
}

func (cc *CollectionConfig) chunker() rag.Chunker {
	ch := rag.Chunker{Size: cc.ChunkTokens, Overlap: cc.ChunkOverlap}
	if ch.Size == 0 {
		ch.Size = rag.DefaultChunkSize
	}
	if cc.ChunkOverlap == 0 && cc.ChunkTokens == 0 {
		ch.Overlap = rag.DefaultChunkOverlap
	}
	return ch
}

func (cc *CollectionConfig) validate() error {
	if !collectionName.MatchString(cc.Name) {
		return fmt.Errorf("collection %q: a name is 1 to 63 of [A-Za-z0-9._-], starting and ending with a letter or digit", cc.Name)
	}
	if cc.ChunkTokens < 0 || cc.ChunkOverlap < 0 || (cc.ChunkTokens > 0 && cc.ChunkOverlap >= cc.ChunkTokens) {
		return fmt.Errorf("collection %q: chunk tokens must be positive and the overlap smaller", cc.Name)
	}
	if cc.ChunkTokens > 8192 {
		return fmt.Errorf("collection %q: chunks of at most 8192 tokens", cc.Name)
	}
	switch cc.store() {
	case "embedded":
		if cc.URL != "" || cc.Tenant != "" || cc.Database != "" {
			return fmt.Errorf("collection %q: url, tenant and database are for store chroma", cc.Name)
		}
	case "chroma":
		if cc.URL == "" {
			return fmt.Errorf("collection %q: store chroma needs a url", cc.Name)
		}
		if len(cc.Name) < 3 {
			return fmt.Errorf("collection %q: Chroma wants names of at least 3 characters", cc.Name)
		}
		if cc.model() == "" {
			return fmt.Errorf("collection %q: store chroma needs an embedding model (embed <model>): Chroma has no lexical search over HTTP", cc.Name)
		}
		if cc.Path != "" {
			return fmt.Errorf("collection %q: path is for store embedded", cc.Name)
		}
	default:
		return fmt.Errorf("collection %q: unknown store %q (embedded or chroma)", cc.Name, cc.Store)
	}
	return nil
}

// open opens the collection's store.
func (cc *CollectionConfig) open(ctx context.Context, path string) (*rag.Collection, error) {
	if cc.store() == "chroma" {
		cl, err := rag.NewChromaClient(cc.URL, cc.Tenant, cc.Database)
		if err != nil {
			return nil, fmt.Errorf("collection %q: %v", cc.Name, err)
		}
		octx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return rag.OpenChroma(octx, cc.Name, cl, cc.model(), cc.chunker())
	}
	return rag.OpenEmbedded(cc.Name, path, cc.model(), cc.chunker())
}

// ragStage returns the handler's RAG stage, nil without one.
func (h *Handler) ragStage(a *App, logger *zap.Logger) (gateway.Stage, error) {
	rc := h.RAG
	if rc == nil {
		return nil, nil
	}
	c, ok := a.collection(rc.Collection)
	if !ok {
		return nil, fmt.Errorf("rag: no collection %q declared in the ai_gateway app", rc.Collection)
	}
	if err := rc.validate(); err != nil {
		return nil, err
	}
	st := &rag.Stage{Collection: c, TopK: rc.TopK, MaxContextTokens: rc.MaxContextTokens, MinScore: rc.MinScore,
		Inject: rc.Inject, Template: rc.Template, QueryTurns: rc.QueryTurns, FailClosed: rc.OnError == "fail", Logger: logger.Named("rag")}
	if len(rc.Filter) > 0 {
		filter := rc.Filter
		st.Filter = func(x *gateway.Exchange) map[string]string {
			repl, _ := x.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			if repl == nil {
				repl = caddy.NewReplacer()
			}
			if x.Key != nil {
				repl.Set("http.ai_gateway.key", x.Key.Name)
				for k, v := range x.Key.Policy.Metadata {
					repl.Set("http.ai_gateway.key.metadata."+k, v)
				}
			}
			out := make(map[string]string, len(filter))
			for field, expr := range filter {
				out[field] = repl.ReplaceAll(expr, "")
			}
			return out
		}
	}
	return st, nil
}

func (rc *RAGConfig) validate() error {
	if rc.TopK < 0 || rc.TopK > 100 {
		return fmt.Errorf("rag: top_k must be from 1 to 100")
	}
	if rc.QueryTurns < 0 || rc.QueryTurns > 16 {
		return fmt.Errorf("rag: query_turns must be from 1 to 16")
	}
	if rc.MaxContextTokens < 0 {
		return fmt.Errorf("rag: max_context_tokens must not be negative")
	}
	switch rc.Inject {
	case "", rag.InjectSystem, rag.InjectUser:
	default:
		return fmt.Errorf("rag: inject is system or user, not %q", rc.Inject)
	}
	switch rc.OnError {
	case "", "pass", "fail":
	default:
		return fmt.Errorf("rag: on_error is pass or fail, not %q", rc.OnError)
	}
	if err := rag.ValidateTemplate(rc.Template); err != nil {
		return fmt.Errorf("rag: %v", err)
	}
	for f := range rc.Filter {
		if f == "" {
			return fmt.Errorf("rag: empty filter field")
		}
	}
	return nil
}

// ragPlaceholder is the value of {http.ai_gateway.rag.*}.
func ragPlaceholder(name string, info *gateway.Info) (any, bool) {
	switch name {
	case "rag":
		return info.RAG, true
	case "rag.sources":
		return strings.Join(info.RAGSources, ","), true
	case "rag.ms":
		return strconv.FormatInt(info.RAGTime.Milliseconds(), 10), true
	}
	return nil, false
}
