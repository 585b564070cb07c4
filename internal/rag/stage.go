package rag

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	antdialect "github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect/anthropic"
	oaidialect "github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// Response headers the stage sets (Go's canonical spelling of
// X-AI-Gateway-RAG*).
const (
	HeaderRAG        = "X-Ai-Gateway-Rag"
	HeaderRAGSources = "X-Ai-Gateway-Rag-Sources"
	HeaderRAGMs      = "X-Ai-Gateway-Rag-Ms"
)

// What a request's retrieval did (gateway.Info.RAG and the
// X-AI-Gateway-RAG header).
const (
	StatusUsed    = "used"    // context was injected
	StatusNone    = "none"    // nothing relevant was found (or the filter resolved empty)
	StatusSkipped = "skipped" // retrieval failed; on_error pass sent the prompt as it was
)

// Stage defaults.
const (
	DefaultTopK             = 3
	DefaultMaxContextTokens = 1500
	// MaxQueryBytes bounds the text a retrieval searches with (the end of
	// a longer last message is dropped).
	MaxQueryBytes = 8 << 10
	// DefaultTimeout bounds one retrieval (embedding the query and
	// searching).
	DefaultTimeout = 10 * time.Second
)

// Stage is the RAG pipeline stage: it retrieves the chunks of a collection
// that best answer the request's last user message and injects them,
// fenced and labelled as reference material, into the prompt (Chat
// Completions, Responses and Anthropic Messages; streamed or not).
type Stage struct {
	// Collection is searched.
	Collection *Collection
	// TopK chunks are retrieved at most. Default: 3.
	TopK int
	// MaxContextTokens caps the injected context (estimated tokens, see
	// EstimateTokens). Default: 1500.
	MaxContextTokens int
	// MinScore drops weaker hits (see Query.MinScore).
	MinScore float64
	// Inject is InjectSystem (default) or InjectUser.
	Inject string
	// Template is what is injected, with {context} and {query} filled.
	// Default: DefaultSystemTemplate or DefaultUserTemplate.
	Template string
	// Filter returns the metadata a request's chunks must match (the
	// tenant filter), nil for none. A pair with an empty value retrieves
	// nothing (fail closed).
	Filter func(x *gateway.Exchange) map[string]string
	// FailClosed answers 503 when retrieval fails (on_error fail); else
	// the prompt goes as it was with X-AI-Gateway-RAG: skipped.
	FailClosed bool
	// QueryTurns is how many of the last user messages the query is made
	// of (2: the previous user turn too). Default: 1.
	QueryTurns int
	// Timeout bounds a retrieval. Default: 10s.
	Timeout time.Duration
	Logger  *zap.Logger
}

// Name implements gateway.Stage.
func (s *Stage) Name() string { return "rag" }

// Version is the collection's version: what a response cache in front of
// this stage folds into its key (the answer depends on what is retrieved).
func (s *Stage) Version() uint64 { return s.Collection.Version() }

// Run implements gateway.Stage.
func (s *Stage) Run(x *gateway.Exchange) (*gateway.Reply, *openai.Error) {
	req := x.Req.OpenAI
	if req.Op != openai.OpChat && req.Op != openai.OpResponses {
		return nil, nil
	}
	query := QueryOfTurns(req.Op, req.Body, s.QueryTurns)
	if strings.TrimSpace(query) == "" {
		return nil, nil
	}
	if len(query) > MaxQueryBytes {
		query = strings.ToValidUTF8(query[len(query)-MaxQueryBytes:], "") // keep the end: the latest turn
	}
	start := time.Now()
	q := Query{Text: query, K: s.topK(), MinScore: s.MinScore}
	if s.Filter != nil {
		q.Filter = s.Filter(x)
		for _, v := range q.Filter {
			if v == "" {
				return nil, s.done(x, StatusNone, nil, time.Since(start))
			}
		}
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(x.Context(), timeout)
	hits, err := s.Collection.Search(ctx, q)
	cancel()
	elapsed := time.Since(start)
	if err != nil {
		if x.Context().Err() != nil {
			return nil, nil // the client left; the attempt loop notices
		}
		s.log().Warn("retrieval failed", zap.String("collection", s.Collection.Name()), zap.Bool("fail", s.FailClosed), zap.Error(err))
		if s.FailClosed {
			x.Info.RAG, x.Info.RAGTime = StatusSkipped, elapsed
			return nil, &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeUpstream, Code: "rag_unavailable",
				Message:    "Retrieval from collection `" + s.Collection.Name() + "` failed, and this route does not answer without it. Try again shortly.",
				RetryAfter: 1}
		}
		return nil, s.done(x, StatusSkipped, nil, elapsed)
	}
	ctxText, used := buildContext(hits, s.maxTokens())
	if len(used) == 0 {
		return nil, s.done(x, StatusNone, nil, elapsed)
	}
	last := query
	if s.QueryTurns > 1 {
		last = QueryOf(req.Op, req.Body) // {query} is the user's latest message
	}
	text := render(s.template(), ctxText, last)
	if oerr := rewrite(x, s.inject(), text); oerr != nil {
		return nil, oerr
	}
	return nil, s.done(x, StatusUsed, used, elapsed)
}

// done fills Info and the response headers.
func (s *Stage) done(x *gateway.Exchange, status string, used []Hit, elapsed time.Duration) *openai.Error {
	x.Info.RAG, x.Info.RAGTime = status, elapsed
	h := x.Header()
	h.Set(HeaderRAG, status)
	h.Set(HeaderRAGMs, strconv.FormatInt(elapsed.Milliseconds(), 10))
	if len(used) > 0 {
		ids := make([]string, len(used))
		for i := range used {
			ids[i] = used[i].ID()
		}
		x.Info.RAGSources = ids
		h.Set(HeaderRAGSources, strings.Join(ids, ","))
	}
	return nil
}

// rewrite injects text into the request: the client's own body (OpenAI's,
// or Anthropic's native one), then the request is read again by its
// dialect so that the OpenAI view and the native body say the same.
func rewrite(x *gateway.Exchange, inject, text string) *openai.Error {
	var (
		d    dialect.Dialect = oaidialect.Dialect{}
		body []byte
		err  error
	)
	req := x.Req.OpenAI
	switch {
	case x.Req.Format == provider.FormatAnthropic && x.Req.Native != nil:
		d = antdialect.Dialect{}
		body, err = rewriteAnthropic(x.Req.Native, inject, text)
	case req.Op == openai.OpResponses:
		body, err = rewriteResponses(req.Body, inject, text)
	default:
		body, err = rewriteChat(req.Body, inject, text)
	}
	if err != nil {
		return &openai.Error{Status: http.StatusInternalServerError, Type: openai.TypeServer, Code: "rag_rewrite_failed",
			Message: "The gateway could not add the retrieved context to the request."}
	}
	var nr dialect.Request
	if oerr := d.Parse(&nr, req.Op, body, x.Req.Header, jsonraw.MaxDepthLimit); oerr != nil {
		return oerr
	}
	nr.Header = x.Req.Header
	*x.Req = nr
	return nil
}

func (s *Stage) log() *zap.Logger {
	if s.Logger == nil {
		return zap.NewNop()
	}
	return s.Logger
}

func (s *Stage) topK() int {
	if s.TopK <= 0 {
		return DefaultTopK
	}
	return s.TopK
}

func (s *Stage) maxTokens() int {
	if s.MaxContextTokens <= 0 {
		return DefaultMaxContextTokens
	}
	return s.MaxContextTokens
}

func (s *Stage) inject() string {
	if s.Inject == InjectUser {
		return InjectUser
	}
	return InjectSystem
}

func (s *Stage) template() string {
	switch {
	case s.Template != "":
		return s.Template
	case s.inject() == InjectUser:
		return DefaultUserTemplate
	}
	return DefaultSystemTemplate
}

// ValidateTemplate checks a template holds {context}.
func ValidateTemplate(t string) error {
	if t != "" && !strings.Contains(t, "{context}") {
		return errors.New("template must contain {context}")
	}
	return nil
}

var _ gateway.Stage = (*Stage)(nil)
