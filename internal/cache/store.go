package cache

import (
	"context"
	"time"
)

// Ref names a stored entry: its key, and the namespace and route it was
// stored under (for deletes by namespace or model).
type Ref struct {
	Key       Key
	Namespace string
	Route     string
}

// Filter selects entries to delete: by namespace, by model (the routing
// table entry, or the upstream model in memory), or all when both are
// empty.
type Filter struct {
	Namespace string
	Model     string
}

// StoreStats is what a store holds.
type StoreStats struct {
	Entries int64 `json:"entries"`
	// Bytes is the stored size (in memory: the entries' weight; in Redis:
	// the compressed values).
	Bytes int64 `json:"bytes"`
}

// Store keeps entries for a time to live.
type Store interface {
	// Get returns the entry of ref, nil on a miss.
	Get(ctx context.Context, ref Ref) (*Entry, error)
	// Set stores e under ref until e.Expires.
	Set(ctx context.Context, ref Ref, e *Entry) error
	// Delete removes the entries f selects and returns how many.
	Delete(ctx context.Context, f Filter) (int64, error)
	// Stats counts the entries.
	Stats(ctx context.Context) (StoreStats, error)
}

// Locker is implemented by stores shared between gateways (Redis): a
// short lock per key makes one of them call the upstream for a burst of
// identical requests while the others wait for its entry.
type Locker interface {
	// Lock takes the lock of ref for ttl; ok is false when another holds it.
	Lock(ctx context.Context, ref Ref, token string, ttl time.Duration) (ok bool, err error)
	// Unlock releases the lock if token still holds it.
	Unlock(ctx context.Context, ref Ref, token string) error
	// Poll returns the entry of ref if stored by now, and whether its lock
	// is still held.
	Poll(ctx context.Context, ref Ref) (e *Entry, locked bool, err error)
}
