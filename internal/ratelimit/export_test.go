package ratelimit

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
