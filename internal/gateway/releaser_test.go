package gateway

import (
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

const heldChunk = `{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"held"},"finish_reason":null}],"usage":null}`

// releasingTap releases heldChunk once, before the second event.
type releasingTap struct{ seen, released int }

func (r *releasingTap) Event(*dialect.Event, provider.Format)   { r.seen++ }
func (r *releasingTap) Body(b []byte, _ provider.Format) []byte { return b }
func (r *releasingTap) End(Outcome, *Info)                      {}
func (r *releasingTap) Release(*dialect.Event, provider.Format) (sse.Event, bool) {
	if r.seen != 1 || r.released > 0 {
		return sse.Event{}, false
	}
	r.released++
	return sse.Event{Data: []byte(heldChunk)}, true
}

type releaserStage struct{ t *releasingTap }

func (s releaserStage) Name() string                            { return "releaser" }
func (s releaserStage) Run(x *Exchange) (*Reply, *openai.Error) { x.PrependTap(s.t); return nil, nil }

// A Releaser's event is written before the event it was asked about and
// goes through the taps after the releaser.
func TestReleaser(t *testing.T) {
	rel := &releasingTap{}
	e := newEnv(t, []route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "a"}}}},
		map[string]provider.Provider{"a": stub(step{events: []string{chunk, chunk, usageChunk}})},
		func(c *Config) { c.Stages = append(c.Stages, releaserStage{rel}) })
	w, _ := e.serve(t, "/v1/chat/completions", chat("m", true))
	body := w.Body.String()
	first, held := strings.Index(body, `"content":"hi"`), strings.Index(body, `"content":"held"`)
	second := strings.LastIndex(body, `"content":"hi"`)
	if rel.released != 1 || !(first < held && held < second) {
		t.Fatalf("released %d, body %q", rel.released, body)
	}
	if len(e.taps.events) != 4 { // the recording tap comes after the releaser
		t.Fatalf("the tap after the releaser saw %d events", len(e.taps.events))
	}
}
