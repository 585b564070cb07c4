package ratelimit

import "context"

// SweepMemory runs one janitor pass and returns the number of live entries.
func SweepMemory(m *Memory) int { return m.sweep() }

// MemoryLen returns the number of stored entries without sweeping.
func MemoryLen(m *Memory) int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		n += len(s.gcra) + len(s.conc) + len(s.budgets)
		s.mu.Unlock()
	}
	return n
}

// KeySlot is the Redis Cluster hash slot of key.
func KeySlot(key string) uint16 { return keySlot(key) }

// AdmitBatch decides admissions in one admitScript call, as a lane sends
// a batch.
func AdmitBatch(ctx context.Context, r *Redis, admissions [][]Op) ([]AdmitResult, error) {
	batch := make([]*admitWait, len(admissions))
	for i, ops := range admissions {
		aops, err := compileAdmission(ops, nil)
		if err != nil {
			return nil, err
		}
		batch[i] = r.newAdmitWait(ctx, aops)
	}
	r.admitCall(ctx, batch)
	out := make([]AdmitResult, len(batch))
	for i, w := range batch {
		if w.err != nil {
			return nil, w.err
		}
		out[i] = w.res
	}
	return out, nil
}

// QueuedAdmissions is the number of admissions waiting in r's lane of
// slot (0 without a Cluster).
func QueuedAdmissions(r *Redis, slot uint16) int {
	l := r.lane(slot)
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue)
}
