package auth_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
)

// FuzzMemoryFile loads arbitrary bytes as the keys file of a Memory store.
// Loading must never panic; a file that loads holds only valid keys, stays
// writable (a Create rewrites it) and reloads to the same keys.
func FuzzMemoryFile(f *testing.F) {
	h := func(s string) string { return auth.HashSecret(s).String() }
	for _, s := range []string{
		`{"keys":[]}`,
		`{"keys":[{"name":"a","sha256":"` + h("a") + `","policy":{"models":["gpt-*"],"rpm":60,"tpm":1000,"burst":5,"concurrency":2,"budget":5,"budget_period":"day","cache":"ns","metadata":{"team":"a"}},"created":"2026-11-25T10:00:00Z"}]}`,
		`{"keys":[{"name":"b","sha256":"` + strings.ToUpper(h("b")) + `","policy":{},"created":"2026-11-25T10:00:00.123456789+05:30","static":true},null]}`,
		`{"keys":[{"name":"static-key","sha256":"` + h("c") + `","policy":{}}]}`,
		`{"keys":[{"name":"d","sha256":"` + h("static-secret") + `","policy":{}}]}`,
		// Hostile: duplicates, huge numbers, bad times, invalid UTF-8, nesting.
		`{"keys":[{"name":"a","sha256":"` + h("a") + `"},{"name":"a","sha256":"` + h("b") + `"}]}`,
		`{"keys":[{"name":"a","sha256":"` + h("a") + `"},{"name":"b","sha256":"` + h("a") + `"}]}`,
		`{"keys":[{"name":"a","name":"b","sha256":"` + h("a") + `"}],"keys":null}`,
		`{"keys":[{"name":"a","sha256":"` + h("a") + `","policy":{"rpm":99999999999999999999,"budget":1e400}}]}`,
		`{"keys":[{"name":"a","sha256":"` + h("a") + `","policy":{"budget":1e9,"rpm":9223372036854775807}}]}`,
		`{"keys":[{"name":"a","sha256":"` + h("a") + `","created":"9999-12-31T23:59:59-23:59"}]}`,
		`{"keys":[{"name":"a","sha256":"` + h("a") + `","created":"0000-01-01T00:00:00+23:59"}]}`,
		"{\"keys\":[{\"name\":\"a\",\"sha256\":\"" + h("a") + "\",\"policy\":{\"metadata\":{\"\xff\":\"\xc3\x28\"}}}]}",
		`{"keys":[{"name":"a","sha256":"` + h("a") + `","policy":{"metadata":{"k":{"x":[[[[[[[[]]]]]]]]}}}}]}`,
		strings.Repeat(`{"keys":`, 5000) + strings.Repeat(`}`, 5000),
		`{"keys":{}}`,
		`[]`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	static := &auth.Key{Name: "static-key", Hash: auth.HashSecret("static-secret")}
	f.Fuzz(func(t *testing.T, data []byte) {
		ctx := t.Context()
		file := filepath.Join(t.TempDir(), "keys.json")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		m, err := auth.NewMemory([]*auth.Key{static}, file)
		if err != nil {
			return
		}
		before := runtimeKeys(t, m)
		for _, k := range before {
			if err := k.Validate(); err != nil {
				t.Fatalf("loaded an invalid key: %v", err)
			}
		}
		extra, _ := newKey(t, "fuzz-extra-key")
		if err := m.Create(ctx, extra); err != nil {
			t.Fatalf("Create after loading %q: %v", data, err)
		}
		m2, err := auth.NewMemory([]*auth.Key{static}, file)
		if err != nil {
			written, _ := os.ReadFile(file)
			t.Fatalf("reloading the rewritten file %s: %v", written, err)
		}
		if err := m2.Delete(ctx, extra.Name); err != nil {
			t.Fatalf("the created key was not persisted: %v", err)
		}
		after := runtimeKeys(t, m2)
		b1, _ := json.Marshal(before)
		b2, _ := json.Marshal(after)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("keys changed across a rewrite:\n%s\n%s", b1, b2)
		}
	})
}

// runtimeKeys lists the keys of m that are not static.
func runtimeKeys(t *testing.T, m *auth.Memory) []*auth.Key {
	t.Helper()
	list, err := m.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := list[:0]
	for _, k := range list {
		if !k.Static {
			out = append(out, k)
		}
	}
	return out
}
