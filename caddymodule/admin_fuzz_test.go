package caddymodule

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

// newAdminApp returns an app with in-memory state and one static key,
// "static-key", as the admin API sees it once provisioned.
func newAdminApp(t testing.TB) *App {
	t.Helper()
	static := &auth.Key{Name: "static-key", Hash: auth.HashSecret("static-secret"), Policy: auth.Policy{Budget: 5}}
	store, err := auth.NewMemory([]*auth.Key{static}, "")
	if err != nil {
		t.Fatal(err)
	}
	return &App{
		Keys:    []*KeyConfig{{Name: "static-key"}},
		logger:  zap.NewNop(),
		keys:    store,
		limiter: ratelimit.NewMemory(nil),
		ledger:  usage.NewMemoryLedger(),
		health:  route.NewHealth(3, time.Minute),
	}
}

// adminRequest serves one admin request against a and returns the status
// and body Caddy's admin server would answer with. An error that is not a
// client error (a non-APIError, or a status outside 4xx) fails the test.
func adminRequest(t *testing.T, a *App, method, path string, body []byte) (int, []byte) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", strings.NewReader(string(body)))
	r.Method = method
	r.URL.Path = "/ai_gateway/" + path
	w := httptest.NewRecorder()
	err := a.serveAdmin(w, r)
	if err == nil {
		return w.Code, w.Body.Bytes()
	}
	apiErr, ok := err.(caddy.APIError) // as Caddy's admin server tells them apart
	if !ok {
		t.Fatalf("%s %q %q: not an APIError (Caddy answers 500): %v", method, path, body, err)
	}
	if apiErr.HTTPStatus < 400 || apiErr.HTTPStatus > 499 {
		t.Fatalf("%s %q %q: status %d for client input: %v", method, path, body, apiErr.HTTPStatus, err)
	}
	if w.Body.Len() > 0 {
		t.Fatalf("%s %q %q: wrote %q before failing", method, path, body, w.Body.Bytes())
	}
	msg, _ := json.Marshal(map[string]string{"error": apiErr.Err.Error()})
	return apiErr.HTTPStatus, msg
}

// FuzzAdminAPI sends arbitrary methods, paths and bodies to the admin API.
// It must never panic and never fail with a server error; every success is
// JSON, and a created key can be read, used and revoked.
func FuzzAdminAPI(f *testing.F) {
	for _, s := range []struct{ method, path, body string }{
		{"POST", "keys", `{"name":"runtime-1","models":["demo"],"rpm":100,"metadata":{"team":"x"}}`},
		{"POST", "keys", `{"name":"b","models":["gpt-*","claude-?"],"rpm":1,"tpm":2,"burst":3,"concurrency":4,"budget":5.5,"budget_period":"day","cache":"ns"}`},
		{"POST", "keys", `{"name":"static-key"}`},
		{"GET", "keys", ``},
		{"GET", "keys/static-key", ``},
		{"DELETE", "keys/static-key", ``},
		{"DELETE", "keys/nope", ``},
		{"GET", "status", ``},
		{"PUT", "keys", `{}`},
		// Hostile bodies.
		{"POST", "keys", `{"name":"a","name":"b"}`},
		{"POST", "keys", `{"name":"a","colour":"blue"}`},
		{"POST", "keys", `{"name":"a"} {"name":"b"}`},
		{"POST", "keys", `{"name":"a"}}`},
		{"POST", "keys", `{"name":"a","rpm":1e400}`},
		{"POST", "keys", `{"name":"a","rpm":99999999999999999999}`},
		{"POST", "keys", `{"name":"a","budget":1e308}`},
		{"POST", "keys", `{"name":"a","rpm":-1}`},
		{"POST", "keys", `{"name":"a","metadata":{"k":{"deep":[[[[[[[[[[]]]]]]]]]]}}}`},
		{"POST", "keys", strings.Repeat("[", 10000) + strings.Repeat("]", 10000)},
		{"POST", "keys", "{\"name\":\"\xff\xfe\",\"models\":[\"\xc3\x28\"]}"},
		{"POST", "keys", `{"name":"a","models":[""]}`},
		{"POST", "keys", `null`},
		{"POST", "keys", ``},
		{"GET", "keys/\x00", ``},
	} {
		f.Add(s.method, s.path, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method, path string, body []byte) {
		a := newAdminApp(t)
		status, out := adminRequest(t, a, method, path, body)
		if status == http.StatusNoContent {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("%s %q %q: %d with invalid JSON %q", method, path, body, status, out)
		}
		if method != http.MethodPost || status != http.StatusCreated {
			return
		}
		var created struct {
			Name   string `json:"name"`
			Secret string `json:"secret"`
		}
		if err := json.Unmarshal(out, &created); err != nil || created.Secret == "" {
			t.Fatalf("created %s: %v", out, err)
		}
		k, err := a.keys.Lookup(t.Context(), auth.HashSecret(created.Secret))
		if err != nil || k.Name != created.Name {
			t.Fatalf("the returned secret does not find key %q: %v", created.Name, err)
		}
		if status, out := adminRequest(t, a, http.MethodGet, "keys/"+created.Name, nil); status != http.StatusOK {
			t.Fatalf("GET created key: %d %s", status, out)
		}
		if status, out := adminRequest(t, a, http.MethodDelete, "keys/"+created.Name, nil); status != http.StatusNoContent {
			t.Fatalf("DELETE created key: %d %s", status, out)
		}
	})
}

func TestAdminCreateKeyBodies(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       int
	}{
		{"valid", `{"name":"a","rpm":5}`, http.StatusCreated},
		{"unknown field", `{"name":"a","colour":"blue"}`, http.StatusBadRequest},
		{"trailing object", `{"name":"a"} {"name":"b"}`, http.StatusBadRequest},
		{"trailing brace", `{"name":"a"}}`, http.StatusBadRequest},
		{"trailing whitespace", "{\"name\":\"a\"}\n\t ", http.StatusCreated},
		{"empty", ``, http.StatusBadRequest},
		{"too large", `{"name":"a","cache":"` + strings.Repeat("x", maxAdminBody) + `"}`, http.StatusRequestEntityTooLarge},
		{"invalid name", `{"name":"a b"}`, http.StatusBadRequest},
		{"taken", `{"name":"static-key"}`, http.StatusConflict},
		{"duplicate member", `{"name":"a","name":"b"}`, http.StatusBadRequest},
		{"escaped duplicate", `{"name":"a","n\u0061me":"b"}`, http.StatusBadRequest},
		{"deep", `{"name":"a","metadata":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, http.StatusBadRequest},
		{"invalid UTF-8", "{\"name\":\"a\",\"cache\":\"\xff\"}", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, out := adminRequest(t, newAdminApp(t), http.MethodPost, "keys", []byte(tc.body)); got != tc.want {
				t.Fatalf("status %d, want %d: %s", got, tc.want, out)
			}
		})
	}
}
