package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Settlement is the bookkeeping after one admission: its undo operations
// (Refund, Release, Settle) and the writes outside the limiter that go
// with them (the usage ledger's record), so that all of it can travel in
// one round trip.
type Settlement struct {
	Ops    []Op
	Writes []Write
}

// Write is a write outside the limiter carried by a [Settlement].
type Write interface {
	// Pipe adds the write's commands to p and returns them; ok is false
	// when the write has no Redis form (it is then done with Do).
	Pipe(ctx context.Context, p redis.Pipeliner) (cmds []redis.Cmder, ok bool)
	// Do performs the write on its own.
	Do(ctx context.Context) error
}

// batcher is implemented by limiters that settle many admissions in one
// round trip. lost counts the settlements of which something could not be
// applied.
type batcher interface {
	settleBatch(ctx context.Context, batch []Settlement) (lost int, err error)
}

// Apply applies batch on l: in one pipeline when l is (or fronts) Redis,
// else one operation after the other. It returns the number of
// settlements of which something was lost and the errors.
func Apply(ctx context.Context, l Limiter, batch []Settlement) (lost int, err error) {
	if b, ok := l.(batcher); ok {
		return b.settleBatch(ctx, batch)
	}
	return applyEach(ctx, l, batch)
}

// Batches reports whether l settles many settlements in one round trip
// (Redis, a Failover in front of it), so that they are worth gathering
// (see [Queue]); any other limiter decides in process.
func Batches(l Limiter) bool {
	_, ok := l.(batcher)
	return ok
}

func applyEach(ctx context.Context, l Limiter, batch []Settlement) (lost int, err error) {
	var errs []error
	for i := range batch {
		s := &batch[i]
		failed := false
		for j := range s.Ops {
			if _, e := s.Ops[j].Do(ctx, l); e != nil {
				errs, failed = append(errs, e), true
			}
		}
		for _, w := range s.Writes {
			if e := w.Do(ctx); e != nil {
				errs, failed = append(errs, e), true
			}
		}
		if failed {
			lost++
		}
	}
	return lost, errors.Join(errs...)
}

// HashAdd is a write that increments integer fields of one Redis hash,
// which expires at Expires when the write creates it: the form in which a
// [Write] travels inside a settlement's script.
type HashAdd struct {
	Key     string
	Fields  []string
	Values  []int64
	Expires time.Time
}

// HashAdder is a [Write] that has a [HashAdd] form. With Redis it is
// applied by the settlement's script, not by commands of its own.
type HashAdder interface {
	// HashAdd returns the write's HashAdd; ok is false when it has none
	// (it then goes through Pipe or Do). A HashAdd without fields writes
	// nothing.
	HashAdd() (h HashAdd, ok bool)
}

// settleArgs are the KEYS entry and ARGV values of the undo operation o
// in settleScript; ok is false when o has nothing to do.
func (r *Redis) settleArgs(o *Op) (key string, args []any, ok bool, err error) {
	switch o.Kind {
	case OpRefund:
		g, err := o.Rate.compile()
		if err != nil || o.Amount == 0 {
			return "", nil, false, err
		}
		mode, n := "r", o.Amount
		if n < 0 {
			mode, n = "c", -max(n, -maxInt64) // |n| without overflowing on MinInt64
		}
		q, f := g.spanClamped(n)
		return r.gcraKey(o.Key), []any{mode, g.m, q, f}, true, nil
	case OpSettle:
		if err := validAmounts(o.Reserved, o.Amount); err != nil || (o.Reserved == 0 && o.Amount == 0) {
			return "", nil, false, err
		}
		return r.budgetKey(o.Key, o.Window), []any{"s", o.Reserved, o.Amount, o.Expires.UnixMilli()}, true, nil
	case OpRelease:
		return r.concKey(o.Key), []any{"x", o.ID}, true, nil
	}
	return "", nil, false, fmt.Errorf("%w: %v is not a settlement", ErrInvalid, o.Kind)
}

// hashArgs are h's ARGV values in settleScript.
func hashArgs(h *HashAdd) []any {
	args := make([]any, 0, 3+2*len(h.Fields))
	args = append(args, "h", h.Expires.UnixMilli(), len(h.Fields))
	for i, f := range h.Fields {
		args = append(args, f, h.Values[i])
	}
	return args
}

// settleBatch sends batch in one pipeline: one settleScript call per
// settlement (with a Redis Cluster, per settlement and hash slot: a
// script may only touch keys of one slot), plus the commands of writes
// without a HashAdd form.
func (r *Redis) settleBatch(ctx context.Context, batch []Settlement) (lost int, err error) {
	_, cluster := r.client.(*redis.ClusterClient)
	calls := make([]scriptCall, 0, len(batch))
	owner := make([]int, 0, len(batch)) // settlement index of each call
	type pendingWrite struct {
		w  Write
		si int
	}
	var others []pendingWrite // writes without a HashAdd form
	for si := range batch {
		s := &batch[si]
		first := len(calls)
		var slots []uint16 // with a Cluster, the slot of each of s's calls
		add := func(key string, args []any) {
			i := first // the call of s (of key's slot)
			if cluster {
				slot := keySlot(key)
				for i < len(calls) && slots[i-first] != slot {
					i++
				}
				if i == len(calls) {
					slots = append(slots, slot)
				}
			}
			if i == len(calls) {
				calls = append(calls, scriptCall{script: settleScript})
				owner = append(owner, si)
			}
			c := &calls[i]
			c.keys, c.args = append(c.keys, key), append(c.args, args...)
		}
		for j := range s.Ops {
			key, args, ok, err := r.settleArgs(&s.Ops[j])
			if err != nil {
				return len(batch), err
			}
			if ok {
				add(key, args)
			}
		}
		for _, w := range s.Writes {
			if ha, ok := w.(HashAdder); ok {
				if h, ok := ha.HashAdd(); ok {
					if len(h.Fields) > 0 {
						add(h.Key, hashArgs(&h))
					}
					continue
				}
			}
			others = append(others, pendingWrite{w, si})
		}
	}
	type plainCmd struct {
		cmd redis.Cmder
		si  int
	}
	var plain []plainCmd
	var inline []pendingWrite
	var pipeOthers func(redis.Pipeliner)
	if len(others) > 0 {
		pipeOthers = func(p redis.Pipeliner) {
			for _, pw := range others {
				wc, ok := pw.w.Pipe(ctx, p)
				if !ok {
					inline = append(inline, pw)
				}
				for _, c := range wc {
					plain = append(plain, plainCmd{c, pw.si})
				}
			}
		}
	}
	var cmds []*redis.Cmd
	if len(calls) > 0 || len(others) > 0 {
		cmds = r.pipeline(ctx, calls, pipeOthers)
	}
	failed := make(map[int]bool)
	var firstErr error
	note := func(si int, err error) {
		failed[si] = true
		if firstErr == nil {
			firstErr = err
		}
	}
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			note(owner[i], err)
		}
	}
	for _, c := range plain {
		if err := c.cmd.Err(); err != nil {
			note(c.si, err)
		}
	}
	for _, pw := range inline {
		if err := pw.w.Do(ctx); err != nil {
			note(pw.si, err)
		}
	}
	if firstErr != nil {
		return len(failed), fmt.Errorf("ratelimit: redis: %w", firstErr)
	}
	return 0, nil
}

const maxInt64 = 1<<63 - 1
