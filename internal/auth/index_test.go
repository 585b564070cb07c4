package auth

import (
	"context"
	"errors"
	"testing"
)

func TestLookupComparesWholeHash(t *testing.T) {
	t.Parallel()
	// A map entry whose stored hash differs from the one looked up (only in
	// the last byte) must not match: the final comparison covers the whole
	// hash, in constant time.
	h := HashSecret("secret")
	stored := h
	stored[len(stored)-1] ^= 0x80
	m, err := NewMemory(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	m.runtime.byHash[h] = &Key{Name: "k", Hash: stored}
	if _, err := m.Lookup(context.Background(), h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup = %v, want ErrNotFound", err)
	}
	m.runtime.byHash[h] = &Key{Name: "k", Hash: h}
	if k, err := m.Lookup(context.Background(), h); err != nil || k.Name != "k" {
		t.Fatalf("Lookup = %v, %v", k, err)
	}
}
