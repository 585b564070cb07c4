package e2e

import (
	"strconv"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// The TPM reservation counts the prompt exactly for OpenAI models: the
// cookbook's example prompt is 124 tokens for gpt-4o (129 for gpt-4), so
// with max_tokens 10 the key's remaining tokens drop by 134 (139).
const tokensCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider cloud {
			base_url {{.Fake}}/v1
		}
		model gpt-4o {
			target cloud
		}
		model gpt-4 {
			target cloud
		}
		key team0 {
			secret team-secret-0
			tpm 100000
		}
		key team1 {
			secret team-secret-1
			tpm 100000
		}
		key team2 {
			secret team-secret-2
			tpm 100000
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`

const cookbookMessages = `[
{"role":"system","content":"You are a helpful, pattern-following assistant that translates corporate jargon into plain English."},
{"role":"system","name":"example_user","content":"New synergies will help drive top-line growth."},
{"role":"system","name":"example_assistant","content":"Things working well together will increase revenue."},
{"role":"system","name":"example_user","content":"Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage."},
{"role":"system","name":"example_assistant","content":"Let's talk later when we're less busy about how to do better."},
{"role":"user","content":"This late pivot means we don't have time to boil the ocean for the client deliverable."}]`

func TestTPMReservesExactTokens(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "cloud"})
	// Each request has a key of its own, so its header shows its own
	// reservation alone.
	fake.Script("", fakellm.Behavior{Status: 400})
	gw := startGateway(t, tokensCaddyfile, map[string]any{"Fake": fake.URL})
	for i, c := range []struct {
		model, messages string
		reserve         int
	}{
		{"gpt-4o", cookbookMessages, 124 + 10},
		{"gpt-4", cookbookMessages, 129 + 10},
		{"gpt-4o", `[{"role":"user","content":"x"}]`, 3 + 1 + 1 + 3 + 10},
	} {
		key := "Bearer team-secret-" + strconv.Itoa(i)
		code, h, body := post(t, gw.URL+"/v1/chat/completions",
			`{"model":"`+c.model+`","max_tokens":10,"messages":`+c.messages+`}`, "Authorization", key)
		if code != 400 {
			t.Fatalf("%s: %d %s", c.model, code, body)
		}
		if got := h.Get("X-Ratelimit-Remaining-Tokens"); got != strconv.Itoa(100000-c.reserve) {
			t.Errorf("%s: remaining tokens %s, want %d (a reservation of %d)", c.model, got, 100000-c.reserve, c.reserve)
		}
	}
}
