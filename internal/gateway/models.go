package gateway

import (
	"net/http"
	"strconv"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

// listModels answers GET /v1/models with the routing table's exact names in
// OpenAI's list shape. https://platform.openai.com/docs/api-reference/models/list
func (g *Gateway) listModels(w http.ResponseWriter, key *auth.Key, info *Info) {
	names := g.cfg.Routes.Names()
	b := make([]byte, 0, 64+len(names)*96)
	b = append(b, `{"object":"list","data":[`...)
	first := true
	for _, name := range names {
		if !g.allowed(key, name) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = g.appendModel(b, name)
	}
	b = append(b, "]}"...)
	writeJSON(w, info, b)
}

// getModel answers GET /v1/models/{id} for any name the table routes,
// globs included. https://platform.openai.com/docs/api-reference/models/retrieve
func (g *Gateway) getModel(w http.ResponseWriter, key *auth.Key, id string, info *Info) {
	if _, ok := g.cfg.Routes.Lookup(id); !ok || !g.allowed(key, id) {
		fail(w, openaiDialect, info, openai.ModelNotFound(id))
		return
	}
	writeJSON(w, info, g.appendModel(nil, id))
}

func (g *Gateway) appendModel(b []byte, name string) []byte {
	owner := "ai-gateway"
	if rt, ok := g.cfg.Routes.Lookup(name); ok && len(rt.Targets) > 0 {
		owner = rt.Targets[0].Provider
	}
	b = append(b, `{"id":`...)
	b = openai.AppendString(b, name)
	b = append(b, `,"object":"model","created":`...)
	b = strconv.AppendInt(b, g.cfg.Created, 10)
	b = append(b, `,"owned_by":`...)
	b = openai.AppendString(b, owner)
	return append(b, '}')
}

func writeJSON(w http.ResponseWriter, info *Info, b []byte) {
	info.Status = http.StatusOK
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}
