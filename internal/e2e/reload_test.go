package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// A config reload keeps what must outlive it: rate limit state (no refilled
// buckets), keys created at run time, the breaker. Metrics are served on the
// admin endpoint.
func TestReloadKeepsStateAndMetrics(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	gw := startKeysGateway(t, fake, "")
	chat := gw.URL + "/v1/chat/completions"
	body := `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`

	if s, _, b := post(t, chat, body, "Authorization", "Bearer team-a-secret"); s != 200 {
		t.Fatalf("first request: %d %s", s, b)
	}
	if s, _, _ := post(t, chat, body, "Authorization", "Bearer team-a-secret"); s != 429 {
		t.Fatalf("second request within the minute: %d", s)
	}
	status, created := adminDo(t, gw, http.MethodPost, "/ai_gateway/keys", `{"name":"survivor"}`)
	if status != 201 {
		t.Fatalf("create: %d %s", status, created)
	}
	secret := gjson.Get(created, "secret").Str

	// Reload the same Caddyfile through the admin API.
	gw.reload(t)

	if s, _, _ := post(t, chat, body, "Authorization", "Bearer team-a-secret"); s != 429 {
		t.Fatalf("reload refilled the RPM bucket: %d", s)
	}
	if s, _, b := post(t, chat, body, "Authorization", "Bearer "+secret); s != 200 {
		t.Fatalf("runtime key lost on reload: %d %s", s, b)
	}

	_, _, metrics := do(t, mustReq(t, http.MethodGet, gw.AdminURL+"/metrics", ""))
	for _, want := range []string{
		`caddy_ai_gateway_requests_total{model="demo",provider="fake",status="200"}`,
		`caddy_ai_gateway_rejected_total{reason="rate_limit_exceeded"}`,
		`caddy_ai_gateway_tokens_total{direction="input",model="demo",provider="fake"}`,
		`caddy_ai_gateway_time_to_first_token_seconds_bucket`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, s := range []string{"team-a-secret", secret} {
		if strings.Contains(metrics, s) {
			t.Fatal("a secret in metrics")
		}
	}
}
