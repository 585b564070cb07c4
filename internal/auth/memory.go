package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
)

// Memory is an in-process [Store]. Runtime keys live in memory and, when a
// file is given, are persisted there as JSON after every change and loaded at
// start, so they survive restarts of a single gateway process.
type Memory struct {
	file   string
	static index

	mu      sync.RWMutex
	runtime index // guarded by mu
}

var _ Store = (*Memory)(nil)

// keyFile is the JSON document of the persistence file.
type keyFile struct {
	Keys []*Key `json:"keys"`
}

// NewMemory returns a store with the given static keys (validated, duplicate
// names or hashes rejected). If file is not empty, runtime keys are loaded
// from it (a missing file is an empty store) and every Create and Delete
// rewrites it atomically (temp file + rename, mode 0600). A persisted key
// whose name or hash is now taken by a static key is shadowed by it and
// dropped from the file on the next write.
func NewMemory(static []*Key, file string) (*Memory, error) {
	st, err := staticIndex(static)
	if err != nil {
		return nil, err
	}
	m := &Memory{file: file, static: st, runtime: newIndex()}
	if file == "" {
		return m, nil
	}
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth: reading keys: %w", err)
	}
	if len(data) == 0 {
		return m, nil
	}
	var kf keyFile
	if ce := jsonraw.Check(data, 0, jsonraw.Unique|jsonraw.UTF8); ce != nil {
		return nil, fmt.Errorf("auth: reading keys from %s: %v", file, ce)
	}
	if err := json.Unmarshal(data, &kf); err != nil {
		return nil, fmt.Errorf("auth: reading keys from %s: %w", file, err)
	}
	for _, k := range kf.Keys {
		if k == nil {
			continue
		}
		if err := k.Validate(); err != nil {
			return nil, fmt.Errorf("auth: reading keys from %s: %w", file, err)
		}
		if m.static.conflict(k) != nil {
			continue
		}
		if err := m.runtime.conflict(k); err != nil {
			return nil, fmt.Errorf("auth: reading keys from %s: %w", file, err)
		}
		k.Static = false
		m.runtime.add(k)
	}
	return m, nil
}

// Lookup implements [Store].
func (m *Memory) Lookup(_ context.Context, h Hash) (*Key, error) {
	if k, ok := m.static.lookup(h); ok {
		return k.clone(), nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if k, ok := m.runtime.lookup(h); ok {
		return k.clone(), nil
	}
	return nil, ErrNotFound
}

// Get implements [Store].
func (m *Memory) Get(_ context.Context, name string) (*Key, error) {
	if k, ok := m.static.byName[name]; ok {
		return k.clone(), nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if k, ok := m.runtime.byName[name]; ok {
		return k.clone(), nil
	}
	return nil, ErrNotFound
}

// List implements [Store].
func (m *Memory) List(context.Context) ([]*Key, error) {
	m.mu.RLock()
	keys := make([]*Key, 0, len(m.static.byName)+len(m.runtime.byName))
	for _, k := range m.runtime.byName {
		keys = append(keys, k.clone())
	}
	m.mu.RUnlock()
	for _, k := range m.static.byName {
		keys = append(keys, k.clone())
	}
	sortKeys(keys)
	return keys, nil
}

// Create implements [Store]. With a file, the key is only kept when the file
// was written.
func (m *Memory) Create(_ context.Context, k *Key) error {
	c, err := prepare(k, time.Now())
	if err != nil {
		return err
	}
	if err := m.static.conflict(c); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.runtime.conflict(c); err != nil {
		return err
	}
	m.runtime.add(c)
	if err := m.persist(); err != nil {
		m.runtime.remove(c)
		return err
	}
	return nil
}

// Delete implements [Store]. With a file, the key is only removed when the
// file was written.
func (m *Memory) Delete(_ context.Context, name string) error {
	if _, ok := m.static.byName[name]; ok {
		return ErrStatic
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k, ok := m.runtime.byName[name]
	if !ok {
		return ErrNotFound
	}
	m.runtime.remove(k)
	if err := m.persist(); err != nil {
		m.runtime.add(k)
		return err
	}
	return nil
}

// persist writes the runtime keys to the file (if any). Called with mu held.
func (m *Memory) persist() error {
	if m.file == "" {
		return nil
	}
	kf := keyFile{Keys: make([]*Key, 0, len(m.runtime.byName))}
	for _, k := range m.runtime.byName {
		kf.Keys = append(kf.Keys, k)
	}
	sortKeys(kf.Keys)
	data, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return fmt.Errorf("auth: encoding keys: %w", err)
	}
	if err := writeFileAtomic(m.file, append(data, '\n')); err != nil {
		return fmt.Errorf("auth: saving keys: %w", err)
	}
	return nil
}

// writeFileAtomic replaces name with data via a synced temporary file in the
// same directory and a rename, so readers see the old or the new content,
// never a partial one.
func writeFileAtomic(name string, data []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), name)
}
