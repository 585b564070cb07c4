package ratelimit

import (
	"context"
	"errors"
	"fmt"

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

// settleBatch sends every operation and write of batch in one pipeline.
func (r *Redis) settleBatch(ctx context.Context, batch []Settlement) (lost int, err error) {
	var calls []scriptCall
	var owner []int // settlement index of each call
	for si := range batch {
		for j := range batch[si].Ops {
			c, ok, err := r.settleCall(&batch[si].Ops[j])
			if err != nil {
				return len(batch), err
			}
			if ok {
				calls, owner = append(calls, c), append(owner, si)
			}
		}
	}
	type plainCmd struct {
		cmd redis.Cmder
		si  int
	}
	var plain []plainCmd
	var inline []Write
	var inlineOwner []int
	cmds := r.pipeline(ctx, calls, func(p redis.Pipeliner) {
		for si := range batch {
			s := &batch[si]
			for j := range s.Ops {
				if o := &s.Ops[j]; o.Kind == OpRelease {
					plain = append(plain, plainCmd{p.ZRem(ctx, r.concKey(o.Key), o.ID), si})
				}
			}
			for _, w := range s.Writes {
				wc, ok := w.Pipe(ctx, p)
				if !ok {
					inline, inlineOwner = append(inline, w), append(inlineOwner, si)
				}
				for _, c := range wc {
					plain = append(plain, plainCmd{c, si})
				}
			}
		}
	})
	failed := make(map[int]bool)
	var first error
	note := func(si int, err error) {
		failed[si] = true
		if first == nil {
			first = err
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
	for i, w := range inline {
		if err := w.Do(ctx); err != nil {
			note(inlineOwner[i], err)
		}
	}
	if first != nil {
		return len(failed), fmt.Errorf("ratelimit: redis: %w", first)
	}
	return 0, nil
}

// settleCall is the script call of an undo operation; ok is false for
// Release (a plain ZREM) and for operations with nothing to do.
func (r *Redis) settleCall(o *Op) (c scriptCall, ok bool, err error) {
	switch o.Kind {
	case OpRefund:
		g, err := o.Rate.compile()
		if err != nil || o.Amount == 0 {
			return c, false, err
		}
		mode, n := "r", o.Amount
		if n < 0 {
			mode, n = "c", -max(n, -maxInt64)
		}
		q, f := g.spanClamped(n)
		return scriptCall{refundScript, []string{r.gcraKey(o.Key)}, []any{mode, g.m, q, f}}, true, nil
	case OpSettle:
		if err := validAmounts(o.Reserved, o.Amount); err != nil || (o.Reserved == 0 && o.Amount == 0) {
			return c, false, err
		}
		return scriptCall{settleScript, []string{r.budgetKey(o.Key, o.Window)},
			[]any{o.Reserved, o.Amount, o.Expires.UnixMilli()}}, true, nil
	case OpRelease:
		return c, false, nil
	}
	return c, false, fmt.Errorf("%w: %v is not a settlement", ErrInvalid, o.Kind)
}

const maxInt64 = 1<<63 - 1
