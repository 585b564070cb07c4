package usage

import "time"

// LedgerLen returns the number of stored records, expired ones included.
func LedgerLen(l *MemoryLedger) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.records)
}

// SetLedgerClock makes l read the time from now.
func SetLedgerClock(l *MemoryLedger, now func() time.Time) { l.now = now }
