package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestRAGCaddyfileErrors(t *testing.T) {
	app := map[string]string{
		"collection twice":     "ai_gateway {\ncollection d {\nembed lexical\n}\ncollection d {\nembed lexical\n}\n}",
		"bad name":             "ai_gateway {\ncollection -d {\nembed lexical\n}\n}",
		"unknown store":        "ai_gateway {\ncollection d {\nstore s3 x\n}\n}",
		"chroma without url":   "ai_gateway {\ncollection docs {\nstore chroma\n}\n}",
		"chroma lexical":       "ai_gateway {\ncollection docs {\nstore chroma http://x:8000\nembed lexical\n}\n}",
		"overlap too big":      "ai_gateway {\ncollection d {\nchunk 100 overlap 100\n}\n}",
		"bad chunk syntax":     "ai_gateway {\ncollection d {\nchunk 100 60\n}\n}",
		"unknown option":       "ai_gateway {\ncollection d {\ncolour blue\n}\n}",
		"store twice":          "ai_gateway {\ncollection d {\nstore embedded /a\nstore embedded /b\n}\n}",
		"unknown chroma field": "ai_gateway {\ncollection docs {\nstore chroma http://x:8000 {\ncolour blue\n}\nembed m\n}\n}",
	}
	appRejects(t, app)
	handler := map[string]string{
		"no collection":      "ai_gateway {\nrag\n}",
		"rag twice":          "ai_gateway {\nrag a\nrag b\n}",
		"bad inject":         "ai_gateway {\nrag a {\ninject assistant\n}\n}",
		"bad on_error":       "ai_gateway {\nrag a {\non_error ignore\n}\n}",
		"template no ctx":    "ai_gateway {\nrag a {\ntemplate \"{query}\"\n}\n}",
		"negative score":     "ai_gateway {\nrag a {\nmin_score -1\n}\n}",
		"filter arity":       "ai_gateway {\nrag a {\nfilter tenant\n}\n}",
		"filter field twice": "ai_gateway {\nrag a {\nfilter t x\nfilter t y\n}\n}",
		"top_k too big":      "ai_gateway {\nrag a {\ntop_k 1000\n}\n}",
	}
	for name, in := range handler {
		t.Run(name, func(t *testing.T) {
			var h Handler
			if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
				t.Fatalf("accepted %q", in)
			}
		})
	}
}
