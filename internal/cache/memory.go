package cache

import (
	"context"
	"math"
	"time"

	"github.com/maypok86/otter/v2"
)

// Memory is the in-process store: bounded in bytes (the entries' Size),
// each entry dropped at its Expires, sharded and lock-free on reads
// (otter).
type Memory struct {
	c *otter.Cache[Key, *Entry]
}

// NewMemory returns a store holding at most maxBytes.
func NewMemory(maxBytes int64) *Memory {
	return &Memory{c: otter.Must(&otter.Options[Key, *Entry]{
		MaximumWeight: uint64(max(maxBytes, 1)),
		Weigher: func(_ Key, e *Entry) uint32 {
			return uint32(min(e.Size(), math.MaxUint32))
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[Key, *Entry]) time.Duration {
			return max(time.Until(e.Value.Expires), time.Millisecond)
		}),
	})}
}

// SetMaxBytes changes the bound (a reload with another max_memory).
func (m *Memory) SetMaxBytes(n int64) { m.c.SetMaximum(uint64(max(n, 1))) }

// Close stops the store's maintenance goroutines.
func (m *Memory) Close() { m.c.StopAllGoroutines() }

// Get implements Store.
func (m *Memory) Get(_ context.Context, ref Ref) (*Entry, error) {
	e, ok := m.c.GetIfPresent(ref.Key)
	if !ok || !time.Now().Before(e.Expires) {
		return nil, nil
	}
	return e, nil
}

// Set implements Store (e.Expires is the time to live).
func (m *Memory) Set(_ context.Context, ref Ref, e *Entry) error {
	m.c.Set(ref.Key, e)
	return nil
}

// Replace stores e in place of old if old is still ref's entry: not
// deleted, expired or stored over since it was read. The store weighs e
// anew; its expiry stays old's (e.Expires).
func (m *Memory) Replace(ref Ref, old, e *Entry) {
	m.c.ComputeIfPresent(ref.Key, func(v *Entry) (*Entry, otter.ComputeOp) {
		if v != old {
			return v, otter.CancelOp
		}
		return e, otter.WriteOp
	})
}

// Delete implements Store.
func (m *Memory) Delete(_ context.Context, f Filter) (int64, error) {
	var n int64
	if f.Namespace == "" && f.Model == "" {
		n = int64(m.c.EstimatedSize())
		m.c.InvalidateAll()
		return n, nil
	}
	for k, e := range m.c.All() {
		if f.matches(e) {
			if _, ok := m.c.Invalidate(k); ok {
				n++
			}
		}
	}
	return n, nil
}

func (f Filter) matches(e *Entry) bool {
	if f.Namespace != "" && e.Namespace != f.Namespace {
		return false
	}
	return f.Model == "" || e.Route == f.Model || e.Model == f.Model
}

// Stats implements Store.
func (m *Memory) Stats(context.Context) (StoreStats, error) {
	return StoreStats{Entries: int64(m.c.EstimatedSize()), Bytes: int64(m.c.WeightedSize())}, nil
}

var _ Store = (*Memory)(nil)
