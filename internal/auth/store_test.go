package auth_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
)

// newKey returns a fresh key called name and its secret.
func newKey(t *testing.T, name string) (*auth.Key, string) {
	t.Helper()
	secret, err := auth.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	return &auth.Key{
		Name: name,
		Hash: auth.HashSecret(secret),
		Policy: auth.Policy{
			Models: []string{"gpt-*"}, RPM: 60, Budget: 5, BudgetPeriod: "day",
			Metadata: map[string]string{"team": name},
		},
	}, secret
}

// storeFactory builds a fresh, empty store with the given static keys.
type storeFactory func(t *testing.T, static []*auth.Key) (auth.Store, error)

// runStoreSuite checks the behavior every Store shares.
func runStoreSuite(t *testing.T, newStore storeFactory) {
	t.Run("CRUD", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		cfg, cfgSecret := newKey(t, "config-key")
		s := mustStore(t, newStore, []*auth.Key{cfg})

		k, secret := newKey(t, "runtime-b")
		before := time.Now().Add(-time.Second)
		if err := s.Create(ctx, k); err != nil {
			t.Fatal(err)
		}
		k2, _ := newKey(t, "runtime-a")
		if err := s.Create(ctx, k2); err != nil {
			t.Fatal(err)
		}

		got, err := s.Lookup(ctx, auth.HashSecret(secret))
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != "runtime-b" || got.Hash != k.Hash || got.Static || got.Policy.RPM != 60 ||
			got.Policy.Metadata["team"] != "runtime-b" || got.Created.Before(before) {
			t.Fatalf("Lookup = %+v", got)
		}
		got.Policy.Metadata["team"] = "mutated" // copies: the store is unaffected
		got.Policy.Models[0] = "mutated"
		if again, _ := s.Get(ctx, "runtime-b"); again.Policy.Metadata["team"] != "runtime-b" || again.Policy.Models[0] != "gpt-*" {
			t.Fatalf("store aliased a returned key: %+v", again.Policy)
		}
		if got, err := s.Lookup(ctx, auth.HashSecret(cfgSecret)); err != nil || got.Name != "config-key" || !got.Static {
			t.Fatalf("Lookup static = %+v, %v", got, err)
		}
		if _, err := s.Lookup(ctx, auth.HashSecret(secret+"x")); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("Lookup unknown: %v", err)
		}
		if _, err := s.Get(ctx, "nope"); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("Get unknown: %v", err)
		}

		list, err := s.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, k := range list {
			names = append(names, k.Name)
		}
		if fmt.Sprint(names) != "[config-key runtime-a runtime-b]" {
			t.Fatalf("List = %v", names)
		}

		dupName, _ := newKey(t, "runtime-b")
		dupHash := *k
		dupHash.Name = "other"
		staticName, _ := newKey(t, "config-key")
		staticHash := *cfg
		staticHash.Name = "other2"
		for i, bad := range []*auth.Key{dupName, &dupHash, staticName, &staticHash} {
			if err := s.Create(ctx, bad); !errors.Is(err, auth.ErrExists) {
				t.Errorf("duplicate %d: err = %v, want ErrExists", i, err)
			}
		}
		invalid, _ := newKey(t, "bad name")
		if err := s.Create(ctx, invalid); !errors.Is(err, auth.ErrInvalid) {
			t.Errorf("invalid name: err = %v", err)
		}

		if err := s.Delete(ctx, "config-key"); !errors.Is(err, auth.ErrStatic) {
			t.Fatalf("Delete static: %v", err)
		}
		if err := s.Delete(ctx, "nope"); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("Delete unknown: %v", err)
		}
		if err := s.Delete(ctx, "runtime-b"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lookup(ctx, k.Hash); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("Lookup after Delete: %v", err)
		}
		if _, err := s.Get(ctx, "runtime-b"); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("Get after Delete: %v", err)
		}
		if err := s.Delete(ctx, "runtime-b"); !errors.Is(err, auth.ErrNotFound) {
			t.Fatalf("second Delete: %v", err)
		}
		// Name and secret are free again.
		if err := s.Create(ctx, k); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Lookup(ctx, k.Hash); err != nil || got.Name != "runtime-b" {
			t.Fatalf("Lookup after re-Create = %+v, %v", got, err)
		}
	})

	t.Run("InvalidStatic", func(t *testing.T) {
		t.Parallel()
		a, _ := newKey(t, "a")
		sameName, _ := newKey(t, "a")
		sameHash := *a
		sameHash.Name = "b"
		bad, _ := newKey(t, "a")
		bad.Policy.TPM = -1
		for i, static := range [][]*auth.Key{{a, sameName}, {a, &sameHash}, {bad}, {nil}} {
			if _, err := newStore(t, static); err == nil {
				t.Errorf("static set %d accepted", i)
			}
		}
	})

	t.Run("ConcurrentCreate", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := mustStore(t, newStore, nil)
		var won atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			k, _ := newKey(t, "contested")
			wg.Go(func() {
				switch err := s.Create(ctx, k); {
				case err == nil:
					won.Add(1)
				case !errors.Is(err, auth.ErrExists):
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Fatalf("%d concurrent Creates of one name succeeded, want 1", won.Load())
		}
	})
}

// mustStore fails the test when a store could not be built.
func mustStore(t *testing.T, newStore storeFactory, static []*auth.Key) auth.Store {
	t.Helper()
	s, err := newStore(t, static)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
