package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestCacheCaddyfileErrors(t *testing.T) {
	bad := map[string]string{
		"unknown backend":      "ai_gateway {\ncache {\nbackend memcached\n}\n}",
		"unknown namespace":    "ai_gateway {\ncache {\nnamespace per_team\n}\n}",
		"bad ttl":              "ai_gateway {\ncache {\nttl soon\n}\n}",
		"bad size":             "ai_gateway {\ncache {\nmax_entry_size big\n}\n}",
		"subdirective twice":   "ai_gateway {\ncache {\nttl 1h\nttl 2h\n}\n}",
		"unknown subdirective": "ai_gateway {\ncache {\ncolour blue\n}\n}",
		"semantic no embed":    "ai_gateway {\ncache {\nsemantic {\nthreshold 0.9\n}\n}\n}",
		"semantic threshold":   "ai_gateway {\ncache {\nsemantic {\nembed e\nthreshold 1.5\n}\n}\n}",
		"argument":             "ai_gateway {\ncache on\n}",
	}
	appRejects(t, bad)
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("ai_gateway {\ncache on\n}")); err == nil {
		t.Fatal("handler accepted cache on")
	}
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("ai_gateway {\ncache off\n}")); err != nil || h.Cache != "off" {
		t.Fatalf("cache off: %v %q", err, h.Cache)
	}
}
