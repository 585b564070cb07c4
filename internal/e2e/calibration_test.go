package e2e

import (
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/tokens"
)

// The token estimate of a non-OpenAI model learns from the upstream's
// reported usage: fakellm counts 1.8 tokens a word here (a denser
// tokenizer than the estimate assumes), so after its first answers the
// gateway's ratio for the model rises to about 1.5, the status and the
// metric show it, the TPM reservation grows by it, and a history that fit
// the context window by the shipped estimate is truncated.
const calibrationCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider claude {
			type anthropic
			base_url {{.Fake}}
			api_key upstream-anthropic-key
		}
		model claude-small {
			target claude claude-3-5-haiku-latest
			context_window {{.Window}}
		}
		key k0 {
			secret calib-secret-0
			tpm 1000000
		}
		key k1 {
			secret calib-secret-1
			tpm 1000000
		}
	}
}
:{{.Port}} {
	ai_gateway {
		truncate {
			reserve_output 50
		}
	}
}
`

func TestTokenEstimateCalibration(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "claude", PromptTokenScale: 1.8})
	words := func(n int) string {
		return strings.TrimSpace(strings.Repeat("plain words here ", n/3))
	}
	msgs := []string{`{"role":"system","content":"Answer briefly."}`}
	for range 10 {
		msgs = append(msgs, `{"role":"user","content":"`+words(21)+`"}`, `{"role":"assistant","content":"`+words(21)+`"}`)
	}
	msgs = append(msgs, `{"role":"user","content":"the latest question"}`)
	history := `{"model":"claude-small","max_tokens":50,"messages":[` + strings.Join(msgs, ",") + `]}`
	// The window fits the history by the shipped estimate, with a fifth to
	// spare, not by an estimate 1.4 times larger.
	static := tokens.For("claude-3-5-haiku-latest").Chat([]byte(history))
	window := static + 50 + static/5
	gw := startGateway(t, calibrationCaddyfile, map[string]any{"Fake": fake.URL, "Window": window})

	send := func(body, key string) (int, string, string) {
		t.Helper()
		code, h, resp := post(t, gw.URL+"/v1/chat/completions", body, "Authorization", "Bearer "+key)
		if code != 200 {
			t.Fatalf("%d %s", code, resp)
		}
		return len(gjson.Get(upstreamBody(fake), "messages").Array()), h.Get("X-AI-Gateway-Truncated"), h.Get("X-Ratelimit-Remaining-Tokens")
	}
	ratio := func() (float64, int64) {
		st := adminGet(t, gw, "/ai_gateway/status")
		e := gjson.Get(st, `token_estimates.claude-3-5-haiku-latest`)
		if !e.Exists() {
			t.Fatalf("status has no token estimate for the model: %s", st)
		}
		return e.Get("ratio").Float(), e.Get("samples").Int()
	}
	if r, n := ratio(); r != 1 || n != 0 {
		t.Fatalf("before any answer: ratio %v, %d samples", r, n)
	}

	// Before calibration the history fits.
	kept, truncated, rem0 := send(history, "calib-secret-0")
	if truncated != "" || kept != len(msgs)-1 { // the system message travels apart
		t.Fatalf("uncalibrated: truncated %q, %d messages upstream", truncated, kept)
	}
	// A few more answers to learn from.
	for i := range 5 {
		send(`{"model":"claude-small","max_tokens":50,"messages":[{"role":"user","content":"`+words(60+i*3)+`"}]}`, "calib-secret-0")
	}
	r, n := ratio()
	if n != 6 || r < 1.3 || r > 1.7 {
		t.Fatalf("ratio %v after %d samples, want about 1.5 (1.8 tokens a word over the estimate's 1.2)", r, n)
	}
	if m := adminGet(t, gw, "/metrics"); !strings.Contains(m, `caddy_ai_gateway_token_estimate_ratio{model="claude-3-5-haiku-latest"} `+strconv.FormatFloat(r, 'g', -1, 64)) {
		t.Errorf("metric missing or not %v:\n%s", r, grepLines(m, "token_estimate"))
	}

	// Calibrated: the same history no longer fits and is truncated, and
	// the TPM reservation (a fresh key's remaining tokens) grew.
	kept, truncated, rem1 := send(history, "calib-secret-1")
	if truncated == "" || kept >= len(msgs)-1 {
		t.Fatalf("calibrated: truncated %q, %d messages upstream", truncated, kept)
	}
	// A reload keeps what was learned, and the metric still shows it.
	r, n = ratio()
	gw.reload(t)
	if r2, n2 := ratio(); r2 != r || n2 != n {
		t.Fatalf("after a reload: ratio %v (%d samples), was %v (%d)", r2, n2, r, n)
	}
	if m := adminGet(t, gw, "/metrics"); !strings.Contains(m, `caddy_ai_gateway_token_estimate_ratio{model="claude-3-5-haiku-latest"}`) {
		t.Errorf("metric gone after a reload:\n%s", grepLines(m, "token_estimate"))
	}

	res0, _ := strconv.Atoi(rem0)
	res1, _ := strconv.Atoi(rem1)
	res0, res1 = 1000000-res0-50, 1000000-res1-50 // the prompts' shares
	if float64(res1) < 1.25*float64(res0) {
		t.Errorf("TPM reservation of the prompt %d before calibration, %d after (ratio %v)", res0, res1, r)
	}
}

// grepLines returns the lines of s containing sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
