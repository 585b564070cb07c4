package auth_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
)

func TestHash(t *testing.T) {
	t.Parallel()
	const abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" // SHA-256("abc")
	h := auth.HashSecret("abc")
	if h.String() != abc {
		t.Fatalf("HashSecret(abc) = %s", h)
	}
	p, err := auth.ParseHash(strings.ToUpper(abc))
	if err != nil || p != h || !p.Equal(h) {
		t.Fatalf("ParseHash = %s, %v", p, err)
	}
	other := h
	other[31] ^= 1
	if h.Equal(other) || h.Equal(auth.Hash{}) {
		t.Fatal("Equal accepted a different hash")
	}
	for _, bad := range []string{"", abc[:63], abc + "0", "zz" + abc[2:]} {
		if _, err := auth.ParseHash(bad); err == nil {
			t.Errorf("ParseHash(%q) succeeded", bad)
		}
	}

	b, err := json.Marshal(map[string]auth.Hash{"h": h})
	if err != nil || string(b) != `{"h":"`+abc+`"}` {
		t.Fatalf("JSON = %s, %v", b, err)
	}
	var back map[string]auth.Hash
	if err := json.Unmarshal(b, &back); err != nil || back["h"] != h {
		t.Fatalf("JSON round trip = %v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"h":"abc"}`), &back); err == nil {
		t.Fatal("short hex accepted")
	}
}

func TestNewSecret(t *testing.T) {
	t.Parallel()
	a, err := auth.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := auth.NewSecret()
	if a == b {
		t.Fatal("two secrets are equal")
	}
	body, ok := strings.CutPrefix(a, "sk-gw-")
	if !ok || len(body) != 43 {
		t.Fatalf("secret %q: want sk-gw- and 43 characters", a)
	}
	if raw, err := base64.RawURLEncoding.DecodeString(body); err != nil || len(raw) != 32 {
		t.Fatalf("secret body: %d bytes, %v", len(raw), err)
	}
}

func TestSecretFromRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    string
	}{
		{"none", nil, ""},
		{"bearer", map[string]string{"Authorization": "Bearer sk-1"}, "sk-1"},
		{"scheme case", map[string]string{"Authorization": "bEARER sk-1"}, "sk-1"},
		{"blanks", map[string]string{"Authorization": "  Bearer   sk-1  "}, "sk-1"},
		{"bearer wins", map[string]string{"Authorization": "Bearer a", "api-key": "b", "x-api-key": "c"}, "a"},
		{"azure", map[string]string{"api-key": "b", "x-api-key": "c"}, "b"},
		{"anthropic", map[string]string{"x-api-key": "c"}, "c"},
		{"basic skipped", map[string]string{"Authorization": "Basic dXNlcjpwdw==", "x-api-key": "c"}, "c"},
		{"bearer without token", map[string]string{"Authorization": "Bearer", "api-key": "b"}, "b"},
		{"bearer blank token", map[string]string{"Authorization": "Bearer   "}, ""},
		{"token with space", map[string]string{"Authorization": "Bearer a b", "x-api-key": "c"}, "c"},
		{"token with control", map[string]string{"Authorization": "Bearer a\x01b"}, ""},
		{"bare token", map[string]string{"Authorization": "sk-1"}, ""},
		{"empty api-key", map[string]string{"api-key": " ", "x-api-key": "c"}, "c"},
		{"api-key with space", map[string]string{"api-key": "a b"}, ""},
	} {
		h := http.Header{}
		for k, v := range tc.headers {
			h.Set(k, v)
		}
		if got := auth.SecretFromRequest(h); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A credential header sent twice is ambiguous: no secret, even when one of
// the values (or both) would do.
func TestSecretFromRequestDuplicates(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		headers [][2]string
	}{
		{"two bearers", [][2]string{{"Authorization", "Bearer a"}, {"Authorization", "Bearer b"}}},
		{"the same bearer twice", [][2]string{{"Authorization", "Bearer a"}, {"Authorization", "Bearer a"}}},
		{"basic then bearer", [][2]string{{"Authorization", "Basic eDp5"}, {"Authorization", "Bearer a"}}},
		{"two bearers and an api-key", [][2]string{{"Authorization", "Bearer a"}, {"Authorization", "Bearer b"}, {"api-key", "c"}}},
		{"two api-keys", [][2]string{{"api-key", "a"}, {"api-key", "b"}}},
		{"two x-api-keys", [][2]string{{"x-api-key", "a"}, {"x-api-key", "b"}}},
	} {
		h := http.Header{}
		for _, kv := range tc.headers {
			h.Add(kv[0], kv[1])
		}
		if got := auth.SecretFromRequest(h); got != "" {
			t.Errorf("%s: got %q, want none", tc.name, got)
		}
	}
}
