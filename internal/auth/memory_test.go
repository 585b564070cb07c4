package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
)

func TestMemorySuite(t *testing.T) {
	t.Parallel()
	runStoreSuite(t, func(t *testing.T, static []*auth.Key) (auth.Store, error) {
		return auth.NewMemory(static, "")
	})
}

func TestMemoryFileSuite(t *testing.T) {
	t.Parallel()
	runStoreSuite(t, func(t *testing.T, static []*auth.Key) (auth.Store, error) {
		return auth.NewMemory(static, filepath.Join(t.TempDir(), "keys.json"))
	})
}

func TestMemoryPersistence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.json")
	cfg, _ := newKey(t, "config-key")

	m, err := auth.NewMemory([]*auth.Key{cfg}, file) // missing file: empty store
	if err != nil {
		t.Fatal(err)
	}
	a, secretA := newKey(t, "a")
	b, secretB := newKey(t, "b")
	for _, k := range []*auth.Key{a, b} {
		if err := m.Create(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Delete(ctx, "b"); err != nil {
		t.Fatal(err)
	}

	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key file (no temp files)", len(entries))
	}
	data, _ := os.ReadFile(file)
	if strings.Contains(string(data), secretA) || strings.Contains(string(data), secretB) {
		t.Fatal("a secret was written to the key file")
	}
	if strings.Contains(string(data), "config-key") {
		t.Fatal("a static key was written to the key file")
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || len(doc.Keys) != 1 {
		t.Fatalf("file %s: %v", data, err)
	}

	// Restart: runtime keys come back, with their policy and creation time.
	m2, err := auth.NewMemory([]*auth.Key{cfg}, file)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := m.Get(ctx, "a")
	got, err := m2.Lookup(ctx, auth.HashSecret(secretA))
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "a" || !got.Created.Equal(want.Created) || got.Policy.BudgetPeriod != "day" || got.Policy.Metadata["team"] != "a" {
		t.Fatalf("reloaded key %+v, want %+v", got, want)
	}
	if _, err := m2.Lookup(ctx, auth.HashSecret(secretB)); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("deleted key reloaded: %v", err)
	}

	// A runtime key later declared in the configuration is shadowed by it.
	promoted := *want
	m3, err := auth.NewMemory([]*auth.Key{cfg, &promoted}, file)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := m3.Get(ctx, "a"); err != nil || !got.Static {
		t.Fatalf("promoted key = %+v, %v; want static", got, err)
	}
	if err := m3.Delete(ctx, "a"); !errors.Is(err, auth.ErrStatic) {
		t.Fatalf("Delete promoted key: %v", err)
	}
	if list, _ := m3.List(ctx); len(list) != 2 {
		t.Fatalf("List = %d keys, want 2", len(list))
	}
}

func TestMemoryBadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage":          "{",
		"bad key":          `{"keys":[{"name":"a b","sha256":"` + auth.HashSecret("x").String() + `"}]}`,
		"duplicate":        `{"keys":[{"name":"a","sha256":"` + auth.HashSecret("x").String() + `"},{"name":"a","sha256":"` + auth.HashSecret("y").String() + `"}]}`,
		"duplicate member": `{"keys":[{"name":"a","name":"b","sha256":"` + auth.HashSecret("x").String() + `"}]}`,
		"deep":             `{"keys":[{"name":"a","metadata":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}]}`,
	} {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := auth.NewMemory(nil, file); err == nil {
			t.Errorf("%s: loaded", name)
		}
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.NewMemory(nil, empty); err != nil {
		t.Errorf("empty file: %v", err)
	}
}

func TestMemoryCreateRollsBackWhenTheFileCannotBeWritten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "missing-dir", "keys.json")
	m, err := auth.NewMemory(nil, file)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := newKey(t, "a")
	if err := m.Create(ctx, k); err == nil {
		t.Fatal("Create succeeded without a writable file")
	}
	if _, err := m.Get(ctx, "a"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("key kept after a failed write: %v", err)
	}
}
