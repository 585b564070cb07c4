package ratelimit

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

const memoryShards = 64

// minSweepLen is the map size below which a shard never sweeps lazily.
const minSweepLen = 1024

// Memory is the in-process [Limiter]. State lives in sharded maps guarded by
// mutexes. Expired entries are ignored when read, swept lazily from a shard
// whenever its maps have doubled since the last sweep, and swept periodically
// by [Memory.Run]. A concurrency set that empties is kept for the key's
// next request until a sweep. The steady-state paths (existing key) do not
// allocate.
type Memory struct {
	clock  func() time.Time
	seed   maphash.Seed
	shards [memoryShards]memShard
}

type memShard struct {
	mu      sync.Mutex
	gcra    map[string]gcraState
	conc    map[string]*concEntry
	budgets map[budgetKey]*budgetEntry
	// next sweep thresholds (lazy cleanup)
	gcraNext, concNext, budgetNext int
	_                              [64]byte // keep shards on separate cache lines
}

type concEntry struct {
	holders map[string]int64 // id -> lease expiry (unix ns)
	// ends is at most every lease's expiry (unix ns; 0 when unknown):
	// until then none has expired, and prune need not look.
	ends int64
}

// add stores id's lease until exp.
func (e *concEntry) add(id string, exp int64) {
	e.holders[id] = exp
	if len(e.holders) == 1 || exp < e.ends {
		e.ends = exp
	}
}

type budgetKey struct{ key, window string }

type budgetEntry struct {
	spent, reserved int64
	expires         int64 // unix ns
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an in-process limiter reading the time from clock
// (nil means time.Now). Call Run to sweep expired state periodically.
func NewMemory(clock func() time.Time) *Memory {
	if clock == nil {
		clock = time.Now
	}
	m := &Memory{clock: clock, seed: maphash.MakeSeed()}
	for i := range m.shards {
		s := &m.shards[i]
		s.gcra = make(map[string]gcraState)
		s.conc = make(map[string]*concEntry)
		s.budgets = make(map[budgetKey]*budgetEntry)
		s.gcraNext, s.concNext, s.budgetNext = minSweepLen, minSweepLen, minSweepLen
	}
	return m
}

// Run sweeps expired state every interval (<= 0 means one minute) until ctx
// is done. It blocks; start it with go m.Run(ctx, interval).
func (m *Memory) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.sweep()
		}
	}
}

// sweep removes all expired state and returns the number of live entries.
func (m *Memory) sweep() int {
	now := m.clock()
	live := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		s.sweepGCRA(now.UnixMicro())
		s.sweepConc(now.UnixNano())
		s.sweepBudgets(now.UnixNano())
		live += len(s.gcra) + len(s.conc) + len(s.budgets)
		s.mu.Unlock()
	}
	return live
}

func (s *memShard) sweepGCRA(nowUs int64) {
	for k, st := range s.gcra {
		if st.tq < nowUs {
			delete(s.gcra, k)
		}
	}
	s.gcraNext = max(2*len(s.gcra), minSweepLen)
}

func (s *memShard) sweepConc(nowNs int64) {
	for k, e := range s.conc {
		if e.prune(nowNs) == 0 {
			delete(s.conc, k)
		}
	}
	s.concNext = max(2*len(s.conc), minSweepLen)
}

func (s *memShard) sweepBudgets(nowNs int64) {
	for k, e := range s.budgets {
		if e.expires <= nowNs {
			delete(s.budgets, k)
		}
	}
	s.budgetNext = max(2*len(s.budgets), minSweepLen)
}

func (m *Memory) shard(key string) *memShard { return &m.shards[m.shardIndex(key)] }

func (m *Memory) shardIndex(key string) int {
	return int(maphash.String(m.seed, key) % memoryShards)
}

// Take implements [Limiter].
func (m *Memory) Take(_ context.Context, key string, rate Rate, cost int64) (Result, error) {
	g, err := rate.compile()
	if err != nil {
		return Result{}, err
	}
	if err := validCost(cost); err != nil {
		return Result{}, err
	}
	now := m.clock().UnixMicro()
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.take(key, &g, cost, now, true), nil
}

// take decides a Take at now (µs) under s.mu; only commit stores the new
// state, so that an admission can check all its operations first.
func (s *memShard) take(key string, g *gcra, cost, now int64, commit bool) Result {
	never := cost > g.burst
	var incQ, incR int64
	if !never {
		incQ, incR, _ = g.span(cost) // cost <= burst: cannot overflow
	}
	st := s.gcra[key]
	st, changed, allowed, dq, df, nq, nf := g.take(st, now, incQ, incR, !never && cost > 0)
	if changed && commit {
		if len(s.gcra) >= s.gcraNext {
			if _, ok := s.gcra[key]; !ok {
				s.sweepGCRA(now)
			}
		}
		s.gcra[key] = st
	}
	return g.result(allowed && !never, never, dq, df, nq, nf)
}

// Refund implements [Limiter].
func (m *Memory) Refund(_ context.Context, key string, rate Rate, n int64, _ Backend) error {
	g, err := rate.compile()
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	now := m.clock().UnixMicro()
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.gcra[key]
	st, remove := g.refund(st, ok, now, n)
	if remove {
		delete(s.gcra, key)
		return nil
	}
	if !ok && len(s.gcra) >= s.gcraNext {
		s.sweepGCRA(now)
	}
	s.gcra[key] = st
	return nil
}

// prune drops expired holders and returns the number left.
func (e *concEntry) prune(nowNs int64) int {
	if nowNs < e.ends {
		return len(e.holders) // none has expired
	}
	ends := int64(0)
	for id, exp := range e.holders {
		if exp <= nowNs {
			delete(e.holders, id)
		} else if ends == 0 || exp < ends {
			ends = exp
		}
	}
	e.ends = ends
	return len(e.holders)
}

// Acquire implements [Limiter].
func (m *Memory) Acquire(_ context.Context, key, id string, slots int64, lease time.Duration) (Result, error) {
	if err := validSlot(id, slots, lease); err != nil {
		return Result{}, err
	}
	now := m.clock().UnixNano()
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acquire(key, id, slots, lease, now, true, false), nil
}

// acquire decides an Acquire at now (ns) under s.mu; only commit stores
// the lease. The Result is the state after the lease either way. pruned
// says that the set's leases over at now are gone already (an admission's
// commit after its check, at the same now: the leases added since end
// later).
func (s *memShard) acquire(key, id string, slots int64, lease time.Duration, now int64, commit, pruned bool) Result {
	e := s.conc[key]
	var n int64
	held := false
	if e != nil {
		if pruned {
			n = int64(len(e.holders))
		} else {
			n = int64(e.prune(now))
		}
		_, held = e.holders[id]
	}
	res := Result{Limit: slots, Allowed: held || n < slots}
	exp := now + int64(lease)
	if res.Allowed && !held {
		n++
	}
	// A refusal tells when the first lease ends and when the last does;
	// an admitted lease's result needs neither (its reset is the lease).
	first, last := int64(0), int64(0)
	if e != nil && !res.Allowed {
		for _, hexp := range e.holders {
			if first == 0 || hexp < first {
				first = hexp
			}
			last = max(last, hexp)
		}
	}
	if commit && res.Allowed {
		if e == nil {
			if len(s.conc) >= s.concNext {
				s.sweepConc(now)
			}
			e = &concEntry{holders: make(map[string]int64)}
			s.conc[key] = e
		}
		e.add(id, exp)
	}
	res.Remaining = max(slots-n, 0)
	if res.Allowed {
		res.ResetAfter = lease
	} else if n > 0 {
		res.ResetAfter = time.Duration(last - now)
	}
	if !res.Allowed {
		res.RetryAfter = time.Duration(first - now)
	}
	return res
}

// Release implements [Limiter].
func (m *Memory) Release(_ context.Context, key, id string, _ Backend) error {
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.conc[key]; e != nil {
		delete(e.holders, id) // an emptied set stays for the next request, until a sweep
	}
	return nil
}

// Reserve implements [Limiter].
func (m *Memory) Reserve(_ context.Context, key, window string, limit, amount int64, expires time.Time) (Result, error) {
	if err := validAmounts(amount, 0); err != nil {
		return Result{}, err
	}
	now := m.clock().UnixNano()
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reserve(key, window, limit, amount, expires.UnixNano(), now, true), nil
}

// reserve decides a Reserve at now (ns) under s.mu; only commit stores the
// reservation. The Result is the state after it either way.
func (s *memShard) reserve(key, window string, limit, amount, exp, now int64, commit bool) Result {
	if exp <= now { // the window is over: nothing to count against
		return budgetResult(limit > 0, limit, 0, amount, 0)
	}
	bk := budgetKey{key, window}
	e := s.budgets[bk]
	if e != nil && e.expires <= now {
		e = nil
		delete(s.budgets, bk)
	}
	var spent, reserved int64
	if e != nil {
		spent, reserved = e.spent, e.reserved
	}
	allowed := satAdd(spent, reserved) < limit
	if allowed && amount > 0 {
		reserved = satAdd(reserved, amount)
		if commit {
			if e == nil {
				if len(s.budgets) >= s.budgetNext {
					s.sweepBudgets(now)
				}
				e = &budgetEntry{}
				s.budgets[bk] = e
			}
			e.reserved = reserved
			e.expires = exp
		}
	}
	return budgetResult(allowed, limit, spent, reserved, time.Duration(exp-now))
}

// Settle implements [Limiter].
func (m *Memory) Settle(_ context.Context, key, window string, reserved, actual int64, expires time.Time, _ Backend) error {
	if err := validAmounts(reserved, actual); err != nil {
		return err
	}
	now := m.clock().UnixNano()
	exp := expires.UnixNano()
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	bk := budgetKey{key, window}
	e := s.budgets[bk]
	if e != nil && e.expires <= now {
		e = nil
		delete(s.budgets, bk)
	}
	if exp <= now || (e == nil && actual == 0) {
		return nil
	}
	if e == nil {
		if len(s.budgets) >= s.budgetNext {
			s.sweepBudgets(now)
		}
		e = &budgetEntry{}
		s.budgets[bk] = e
	}
	e.reserved -= min(reserved, e.reserved)
	e.spent = satAdd(e.spent, actual)
	e.expires = exp
	return nil
}

// Spent implements [Limiter].
func (m *Memory) Spent(_ context.Context, key, window string) (spent, reserved int64, err error) {
	now := m.clock().UnixNano()
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.budgets[budgetKey{key, window}]; e != nil && e.expires > now {
		return e.spent, e.reserved, nil
	}
	return 0, 0, nil
}
