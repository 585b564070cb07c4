package ratelimit

import (
	"context"
	"fmt"
	"slices"
)

// AdmitResult is the decision of an admission: the operations of one
// request decided together (see [Limiter.Admit]).
type AdmitResult struct {
	// Results has one Result per operation, in order, up to and including
	// the one that refused (the later ones were not decided). The Result of
	// an operation before the refusal is what it would have left had the
	// admission been taken, although it was not.
	Results []Result
	// Refused is the index of the first operation that refused, -1 when
	// the admission was taken.
	Refused int
	// Backend tells which backend of a Failover made the decision; every
	// Result carries it too.
	Backend Backend
}

// Allowed reports whether the admission was taken.
func (r AdmitResult) Allowed() bool { return r.Refused < 0 }

// admitOp is an admission's operation validated and compiled.
type admitOp struct {
	*Op
	g     gcra // OpTake
	shard int  // Memory: the shard of Key
}

// compileAdmission checks ops: only Take, Acquire and Reserve decide. The
// result is in buf when it fits.
func compileAdmission(ops []Op, buf []admitOp) ([]admitOp, error) {
	out := buf[:0]
	if cap(out) < len(ops) {
		out = make([]admitOp, 0, len(ops))
	}
	out = out[:len(ops)]
	for i := range ops {
		o := &ops[i]
		out[i].Op = o
		var err error
		switch o.Kind {
		case OpTake:
			if out[i].g, err = o.Rate.compile(); err == nil {
				err = validCost(o.Amount)
			}
		case OpAcquire:
			err = validSlot(o.ID, o.Slots, o.Lease)
		case OpReserve:
			err = validAmounts(o.Amount, 0)
		default:
			err = fmt.Errorf("%w: %v cannot be part of an admission", ErrInvalid, o.Kind)
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// finishAdmission trims results to the first refusal.
func finishAdmission(results []Result) AdmitResult {
	for i, r := range results {
		if !r.Allowed {
			return AdmitResult{Results: results[:i+1], Refused: i}
		}
	}
	return AdmitResult{Results: results, Refused: -1}
}

// Admit implements [Limiter]: every shard an operation touches is locked
// for the whole decision, the operations are checked, and they are
// committed only when all of them are admitted.
func (m *Memory) Admit(_ context.Context, ops []Op) (AdmitResult, error) {
	var abuf [8]admitOp
	aops, err := compileAdmission(ops, abuf[:])
	if err != nil {
		return AdmitResult{}, err
	}
	var idx [8]int
	shards := idx[:0]
	for i := range aops {
		aops[i].shard = m.shardIndex(aops[i].Key)
		shards = append(shards, aops[i].shard)
	}
	slices.Sort(shards)
	shards = slices.Compact(shards)
	for _, i := range shards {
		m.shards[i].mu.Lock()
	}
	defer func() {
		for _, i := range shards {
			m.shards[i].mu.Unlock()
		}
	}()
	now := m.clock()
	results := make([]Result, len(aops))
	decide := func(commit bool) bool {
		for i := range aops {
			o := &aops[i]
			s := &m.shards[o.shard]
			switch o.Kind {
			case OpTake:
				results[i] = s.take(o.Key, &o.g, o.Amount, now.UnixMicro(), commit)
			case OpAcquire:
				results[i] = s.acquire(o.Key, o.ID, o.Slots, o.Lease, now.UnixNano(), commit, commit)
			case OpReserve:
				results[i] = s.reserve(o.Key, o.Window, o.Limit, o.Amount, o.Expires.UnixNano(), now.UnixNano(), commit)
			}
			if !results[i].Allowed {
				return false
			}
		}
		return true
	}
	if decide(false) {
		decide(true)
	}
	return finishAdmission(results), nil
}
