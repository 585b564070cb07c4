package usage

import (
	"context"
	"sync"
	"time"
)

// minSweepLen is the map size below which MemoryLedger never sweeps.
const minSweepLen = 1024

// MemoryLedger is an in-process [Ledger]. Expired windows read as zero and
// are dropped lazily: when touched, and in a full sweep whenever the map has
// doubled since the last one.
type MemoryLedger struct {
	now func() time.Time

	mu        sync.Mutex
	records   map[ledgerKey]*memRecord // guarded by mu
	nextSweep int                      // guarded by mu
}

type ledgerKey struct{ key, window string }

type memRecord struct {
	Record
	expires time.Time
}

var _ Ledger = (*MemoryLedger)(nil)

// NewMemoryLedger returns an empty in-process ledger.
func NewMemoryLedger() *MemoryLedger {
	return &MemoryLedger{now: time.Now, records: make(map[ledgerKey]*memRecord), nextSweep: minSweepLen}
}

// Add implements [Ledger].
func (l *MemoryLedger) Add(_ context.Context, key, window string, r Record, expires time.Time) error {
	now := l.now()
	if !expires.After(now) {
		return nil
	}
	k := ledgerKey{key, window}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.records[k]
	if !ok || !e.expires.After(now) {
		if len(l.records) >= l.nextSweep {
			l.sweep(now)
		}
		e = &memRecord{}
		l.records[k] = e
	}
	e.add(r)
	e.expires = expires
	return nil
}

// Get implements [Ledger].
func (l *MemoryLedger) Get(_ context.Context, key, window string) (Record, error) {
	now := l.now()
	k := ledgerKey{key, window}
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.records[k]
	if !ok {
		return Record{}, nil
	}
	if !e.expires.After(now) {
		delete(l.records, k)
		return Record{}, nil
	}
	return e.Record, nil
}

// sweep drops expired records. Called with mu held.
func (l *MemoryLedger) sweep(now time.Time) {
	for k, e := range l.records {
		if !e.expires.After(now) {
			delete(l.records, k)
		}
	}
	l.nextSweep = max(minSweepLen, 2*len(l.records))
}
