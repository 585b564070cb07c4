package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite the golden adapt files")

// TestCaddyfileAdapt adapts each testdata/caddyfile_adapt/*.caddyfiletest
// (Caddyfile, a line of ten dashes, expected JSON) like Caddy's own
// caddytest/integration/caddyfile_adapt_test.go.
func TestCaddyfileAdapt(t *testing.T) {
	files, _ := filepath.Glob("testdata/caddyfile_adapt/*.caddyfiletest")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok {
				t.Fatal("missing ---------- separator")
			}
			got, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(input+"\n"), nil)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("warning: %s:%d: %s", w.File, w.Line, w.Message)
			}
			var buf bytes.Buffer
			if err := json.Indent(&buf, got, "", "\t"); err != nil {
				t.Fatal(err)
			}
			if *update {
				_ = os.WriteFile(f, []byte(input+"\n----------\n"+buf.String()+"\n"), 0o644)
				return
			}
			if strings.TrimSpace(buf.String()) != strings.TrimSpace(want) {
				t.Fatalf("adapted JSON differs (run go test ./caddymodule -run Adapt -update):\n%s", buf.String())
			}
		})
	}
}

func TestCaddyfileErrors(t *testing.T) {
	bad := map[string]string{
		"unknown option":       `ai_gateway { nope 1 }`,
		"provider twice":       "ai_gateway {\nprovider a {\nbase_url http://x\n}\nprovider a {\nbase_url http://y\n}\n}",
		"model twice":          "ai_gateway {\nmodel m {\ntarget a\n}\nmodel m {\ntarget a\n}\n}",
		"model without target": "ai_gateway {\nmodel m {\nretries 1\n}\n}",
		"bad weight":           "ai_gateway {\nmodel m {\ntarget a x weight zero\n}\n}",
		"bad duration":         "ai_gateway {\ncooldown soon\n}",
		"bad size":             "ai_gateway {\nmax_body_size huge\n}",
		"unknown provider key": "ai_gateway {\nprovider a {\ncolour blue\n}\n}",
		"option twice":         "ai_gateway {\nmax_fails 1\nmax_fails 2\n}",
		"NaN price":            "ai_gateway {\nprice m NaN 1\n}",
		"infinite budget":      "ai_gateway {\nkey k {\nsecret s\nbudget Inf\n}\n}",
		// A repeated single-value subdirective is refused rather than
		// settled silently by keeping the last.
		"provider base_url twice": "ai_gateway {\nprovider a {\nbase_url http://x\nbase_url http://y\n}\n}",
		"model retries twice":     "ai_gateway {\nmodel m {\ntarget a\nretries 1\nretries 2\n}\n}",
		"model policy twice":      "ai_gateway {\nmodel m {\ntarget a\npolicy cost\npolicy weighted\n}\n}",
		"key rpm twice":           "ai_gateway {\nkey k {\nsecret s\nrpm 1\nrpm 100\n}\n}",
		"key secret twice":        "ai_gateway {\nkey k {\nsecret s\nsecret t\n}\n}",
		"redis timeout twice":     "ai_gateway {\nredis redis://x {\ntimeout 1s\ntimeout 2s\n}\n}",
		"metrics key_label twice": "ai_gateway {\nmetrics {\nkey_label\nkey_label\n}\n}",
	}
	appRejects(t, bad)
	for _, in := range []string{
		"ai_gateway {\nmax_body_size 1MB\nmax_body_size 2MB\n}",
		"ai_gateway {\ntruncate {\nstrategy middle\nstrategy error\n}\n}",
		"ai_gateway {\nprivacy {\nmask email\nrestore on\nrestore off\n}\n}",
		"ai_gateway {\ncache off\ncache off\n}",
		"ai_gateway {\nfoo\n}",
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
			t.Errorf("handler accepted %q", in)
		}
	}
	// Lists and maps may repeat.
	var a App
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("ai_gateway {\nprovider a {\nbase_url http://x\nheader A 1\nheader B 2\n}\nmodel m {\ntarget a\ntarget a other\nfallback x\nfallback y\n}\nkey k {\nsecret s\nmodels m\nmodels x\nmetadata team a\nmetadata env b\n}\n}")); err != nil {
		t.Fatalf("repeatable subdirectives refused: %v", err)
	}
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("ai_gateway {\nmodels a\nmodels b\nprivacy {\nmask email\nmask card\n}\npolicy {\nprepend x\nprepend y\n}\n}")); err != nil {
		t.Fatalf("repeatable handler subdirectives refused: %v", err)
	}
}

// appRejects checks that the app's Caddyfile parser refuses every input of
// bad (by case name).
func appRejects(t *testing.T, bad map[string]string) {
	t.Helper()
	for name, in := range bad {
		t.Run(name, func(t *testing.T) {
			var a App
			if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(in)); err == nil {
				t.Fatalf("accepted %q", in)
			}
		})
	}
}

func TestCaddyfileNumberErrorNamesTheOption(t *testing.T) {
	var a App
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("ai_gateway {\nmax_fails many\n}"))
	if err == nil || !strings.Contains(err.Error(), `max_fails: invalid number "many"`) {
		t.Fatalf("error %v, want it to name max_fails", err)
	}
}
