package cache

import (
	"context"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

// Index is the semantic cache's vector index (internal/cache/semantic): it
// finds a stored question close enough to a new one among those whose
// everything-but-the-last-user-message (prefix) is the same.
type Index interface {
	Add(prefix [32]byte, vec []float32, text string, key string, expires time.Time)
	Lookup(prefix [32]byte, vec []float32, text string, now time.Time) (key string, score float32, ok bool)
	Remove(key string)
	Len() int
}

// Embedder embeds a text with the configured embedding model.
type Embedder func(ctx context.Context, text string) ([]float32, error)

// Semantic configures the semantic cache.
type Semantic struct {
	Index Index
	Embed Embedder
	// Model is the embedding model (part of every prefix: vectors of two
	// models never meet).
	Model string
	// Timeout bounds one embedding. Default: 5s.
	Timeout time.Duration
}

// semanticQuery is what the semantic cache knows of a request.
type semanticQuery struct {
	prefix [32]byte
	text   string
	vec    []float32
}

// lastUserText returns the messages' last one when it is the user's and
// all text (a string, or text parts joined), with the body without it.
func lastUserText(body []byte) (text string, rest []byte, ok bool) {
	msgs := openai.GetInPlace(body, "messages")
	if !msgs.IsArray() {
		return "", nil, false
	}
	arr := msgs.Array()
	if len(arr) == 0 {
		return "", nil, false
	}
	last := arr[len(arr)-1]
	if last.Get("role").Str != "user" {
		return "", nil, false
	}
	switch c := last.Get("content"); {
	case c.Type == gjson.String:
		text = c.Str
	case c.IsArray():
		var b strings.Builder
		for _, p := range c.Array() {
			if p.Get("type").Str != "text" {
				return "", nil, false // an image or a file: not a text question
			}
			b.WriteString(p.Get("text").Str)
		}
		text = b.String()
	default:
		return "", nil, false
	}
	if strings.TrimSpace(text) == "" {
		return "", nil, false
	}
	rest, err := sjson.DeleteBytes(body, "messages."+strconv.Itoa(len(arr)-1))
	if err != nil {
		return "", nil, false
	}
	return text, rest, true
}

// semanticLookup embeds r's last user message and looks it up; it returns
// the entry of a close enough stored question.
func (s *Stage) semanticLookup(r *request) *Entry {
	sem := s.cfg.Semantic
	req := r.x.Req
	if sem == nil || req.OpenAI.Op != openai.OpChat {
		return nil
	}
	body := req.OpenAI.Body
	if req.Native != nil {
		body = req.Native
	}
	text, rest, ok := lastUserText(body)
	if !ok {
		return nil
	}
	q := &semanticQuery{text: text,
		prefix: KeyOf(r.ns, r.endpoint, routeParts(r.x.Route, req.OpenAI.Model), DigestRequest(rest, req.Header, append(r.extra[:len(r.extra):len(r.extra)], "embed:"+sem.Model)...))}
	timeout := sem.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(r.x.Context(), timeout)
	vec, err := sem.Embed(ctx, text)
	cancel()
	if err != nil || len(vec) == 0 {
		return nil
	}
	q.vec = vec
	r.semantic = q
	key, _, ok := sem.Index.Lookup(q.prefix, vec, text, time.Now())
	if !ok {
		return nil
	}
	var k Key
	if b, err := hex.DecodeString(key); err != nil || len(b) != len(k) {
		return nil
	} else {
		copy(k[:], b)
	}
	e, err := s.get(r.x.Context(), Ref{Key: k, Namespace: r.ns, Route: r.x.Route.Pattern})
	if err == nil && e == nil {
		sem.Index.Remove(key) // deleted or evicted
	}
	if e == nil || r.ctl.maxAge >= 0 && e.Age(time.Now()) > r.ctl.maxAge {
		return nil
	}
	return e
}

// indexSemantic adds a committed entry to the index.
func (s *Stage) indexSemantic(r *request, ref Ref, e *Entry) {
	if q := r.semantic; q != nil && s.cfg.Semantic != nil && ref.Key == r.ref.Key {
		s.cfg.Semantic.Index.Add(q.prefix, q.vec, q.text, ref.Key.String(), e.Expires)
	}
}
