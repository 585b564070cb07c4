package auth

import (
	"context"
	"fmt"
	"sort"
	"time"
)

// Key is a gateway key. It never contains the secret, only its hash.
type Key struct {
	// Name identifies the key: 1 to 64 of [A-Za-z0-9._-].
	Name string `json:"name"`
	// Hash is the SHA-256 of the secret.
	Hash   Hash   `json:"sha256"`
	Policy Policy `json:"policy"`
	// Created is when the key was created (set by Create when zero).
	Created time.Time `json:"created"`
	// Static marks keys declared in the configuration: they cannot be
	// deleted at run time. Stores set it; it is ignored on Create.
	Static bool `json:"static,omitempty"`
}

// Store holds gateway keys. All methods are safe for concurrent use and
// return copies: mutating a returned Key does not affect the store.
type Store interface {
	// Lookup returns the key whose secret hashes to h, or ErrNotFound.
	Lookup(ctx context.Context, h Hash) (*Key, error)
	// Get returns the key called name, or ErrNotFound.
	Get(ctx context.Context, name string) (*Key, error)
	// List returns every key, static and runtime, sorted by name.
	List(ctx context.Context) ([]*Key, error)
	// Create stores a runtime key. It fails with ErrExists when the name or
	// the hash is taken (by a static or a runtime key).
	Create(ctx context.Context, k *Key) error
	// Delete removes a runtime key: ErrNotFound when there is none, ErrStatic
	// for keys declared in the configuration.
	Delete(ctx context.Context, name string) error
}

// ValidName reports whether name is 1 to 64 characters of [A-Za-z0-9._-].
func ValidName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Validate checks the name, the hash and the policy of k.
func (k *Key) Validate() error {
	if !ValidName(k.Name) {
		return fmt.Errorf("%w: name %q must be 1-64 characters of [A-Za-z0-9._-]", ErrInvalid, k.Name)
	}
	if k.Hash.IsZero() {
		return fmt.Errorf("%w: key %q: missing sha256", ErrInvalid, k.Name)
	}
	if err := k.Policy.Validate(); err != nil {
		return fmt.Errorf("key %q: %w", k.Name, err)
	}
	return nil
}

// clone returns a deep copy of k.
func (k *Key) clone() *Key {
	c := *k
	c.Policy = k.Policy.clone()
	return &c
}

// index maps names and hashes to keys. It is not synchronized.
type index struct {
	byName map[string]*Key
	byHash map[Hash]*Key
}

func newIndex() index {
	return index{byName: make(map[string]*Key), byHash: make(map[Hash]*Key)}
}

// conflict returns an ErrExists error when k's name or hash is taken.
func (x *index) conflict(k *Key) error {
	if _, ok := x.byName[k.Name]; ok {
		return fmt.Errorf("%w: name %q is taken", ErrExists, k.Name)
	}
	if _, ok := x.byHash[k.Hash]; ok {
		return fmt.Errorf("%w: key %q: the secret is already in use", ErrExists, k.Name)
	}
	return nil
}

func (x *index) add(k *Key) {
	x.byName[k.Name] = k
	x.byHash[k.Hash] = k
}

func (x *index) remove(k *Key) {
	delete(x.byName, k.Name)
	delete(x.byHash, k.Hash)
}

// lookup finds h by map lookup, then confirms the match over the whole hash
// in constant time.
func (x *index) lookup(h Hash) (*Key, bool) {
	k, ok := x.byHash[h]
	if !ok || !k.Hash.Equal(h) {
		return nil, false
	}
	return k, true
}

// staticIndex validates the static keys (and rejects duplicate names or
// hashes) and indexes copies of them marked Static.
func staticIndex(static []*Key) (index, error) {
	x := newIndex()
	for _, k := range static {
		if k == nil {
			return index{}, fmt.Errorf("%w: nil static key", ErrInvalid)
		}
		if err := k.Validate(); err != nil {
			return index{}, err
		}
		if err := x.conflict(k); err != nil {
			return index{}, fmt.Errorf("static keys: %w", err)
		}
		c := k.clone()
		c.Static = true
		x.add(c)
	}
	return x, nil
}

// prepare validates a key given to Create and returns the copy to store.
func prepare(k *Key, now time.Time) (*Key, error) {
	if k == nil {
		return nil, fmt.Errorf("%w: nil key", ErrInvalid)
	}
	if err := k.Validate(); err != nil {
		return nil, err
	}
	c := k.clone()
	c.Static = false
	if c.Created.IsZero() {
		c.Created = now
	}
	c.Created = c.Created.UTC()
	return c, nil
}

func sortKeys(keys []*Key) {
	sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
}
