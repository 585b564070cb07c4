package ratelimit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
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

// Apply applies batch on l: in one pipeline when l is (or fronts) Redis
// (the batch's operations and writes on one key added together, which
// leaves the state of applying them one after the other in some order),
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

// HashAdders is a [Write] that has the form of several [HashAdd]s (a usage
// rollup: one per bucket), applied like a HashAdder's.
type HashAdders interface {
	// HashAdds returns the write's HashAdds; ok is false when it has none.
	HashAdds() (hs []HashAdd, ok bool)
}

// settleUnit is one entry of settleScript: an undo operation or a hash
// write, or several of the same kind on the same key from the settlements
// of one batch added together (owners lists them), so that N requests of
// one key settle with the commands of one.
type settleUnit struct {
	kind   byte // 'r' refund, 'c' charge, 's' settle, 'x' release, 'h' hash write
	key    string
	g      gcra           // r, c
	n      int64          // r, c: the units; s: the actual spend
	res    int64          // s: the reserved amount
	exp    int64          // s, h: expiry, unix ms
	ids    []string       // x
	names  []string       // h
	vals   []int64        // h
	index  map[string]int // h: field -> index, once it has many fields
	owners []int
}

// unitID says which entries may be added together: the same kind on the
// same key (a refund with the same rate, a settlement or hash write with
// the same expiry).
type unitID struct {
	kind byte
	key  string
	rate Rate
	exp  int64
}

// Bounds of one unit (Lua unpacks its fields and ids onto its stack) and
// of one script call (a script blocks Redis while it runs).
const (
	maxUnitItems = 256
	maxCallUnits = 128
)

// settleUnits are the units of a batch (its limiter operations and its
// HashAdd writes) and the writes without a HashAdd form.
type settleUnits struct {
	units  []settleUnit
	byID   map[unitID]int
	others []pendingWrite
}

type pendingWrite struct {
	w  Write
	si int
}

// unit returns the unit of id to add to, a new one when there is none or
// when fits says the current one cannot take the addition.
func (su *settleUnits) unit(id unitID, si int, fits func(u *settleUnit) bool) *settleUnit {
	if i, ok := su.byID[id]; ok {
		u := &su.units[i]
		if fits(u) {
			if u.owners[len(u.owners)-1] != si {
				u.owners = append(u.owners, si)
			}
			return u
		}
	}
	su.byID[id] = len(su.units)
	su.units = append(su.units, settleUnit{kind: id.kind, key: id.key, exp: id.exp, owners: []int{si}})
	return &su.units[len(su.units)-1]
}

// addFits reports whether a+b does not overflow.
func addFits(a, b int64) bool {
	if b > 0 {
		return a <= maxInt64-b
	}
	return a >= -maxInt64-1-b
}

// addOp adds the undo operation o of settlement si.
func (r *Redis) addOp(su *settleUnits, si int, o *Op) error {
	switch o.Kind {
	case OpRefund:
		g, err := o.Rate.compile()
		if err != nil || o.Amount == 0 {
			return err
		}
		kind, n := byte('r'), o.Amount
		if n < 0 {
			kind, n = 'c', -max(n, -maxInt64) // |n| without overflowing on MinInt64
		}
		u := su.unit(unitID{kind: kind, key: r.gcraKey(o.Key), rate: o.Rate}, si, func(u *settleUnit) bool { return addFits(u.n, n) })
		u.g, u.n = g, u.n+n
	case OpSettle:
		if err := validAmounts(o.Reserved, o.Amount); err != nil || (o.Reserved == 0 && o.Amount == 0) {
			return err
		}
		u := su.unit(unitID{kind: 's', key: r.budgetKey(o.Key, o.Window), exp: o.Expires.UnixMilli()}, si,
			func(u *settleUnit) bool { return addFits(u.n, o.Amount) && addFits(u.res, o.Reserved) })
		u.n, u.res = u.n+o.Amount, u.res+o.Reserved
	case OpRelease:
		u := su.unit(unitID{kind: 'x', key: r.concKey(o.Key)}, si, func(u *settleUnit) bool { return len(u.ids) < maxUnitItems })
		u.ids = append(u.ids, o.ID)
	default:
		return fmt.Errorf("%w: %v is not a settlement", ErrInvalid, o.Kind)
	}
	return nil
}

// addHash adds h, a write of settlement si.
func (su *settleUnits) addHash(si int, h *HashAdd) {
	for i, f := range h.Fields {
		v := h.Values[i]
		u := su.unit(unitID{kind: 'h', key: h.Key, exp: h.Expires.UnixMilli()}, si, func(u *settleUnit) bool {
			j, ok := u.field(f)
			if ok {
				return addFits(u.vals[j], v)
			}
			return len(u.names) < maxUnitItems
		})
		if j, ok := u.field(f); ok {
			u.vals[j] += v
			continue
		}
		u.names, u.vals = append(u.names, f), append(u.vals, v)
		if u.index != nil {
			u.index[f] = len(u.names) - 1
		} else if len(u.names) > 8 {
			u.index = make(map[string]int, 2*len(u.names))
			for j, n := range u.names {
				u.index[n] = j
			}
		}
	}
}

// field finds the field f of a hash unit.
func (u *settleUnit) field(f string) (int, bool) {
	if u.index != nil {
		j, ok := u.index[f]
		return j, ok
	}
	for j, n := range u.names {
		if n == f {
			return j, true
		}
	}
	return 0, false
}

// appendArgs appends the unit's values of settleScript's argument.
func (u *settleUnit) appendArgs(b []byte) []byte {
	switch u.kind {
	case 'r', 'c':
		q, f := u.g.spanClamped(u.n)
		b = appendArg(b, string(u.kind))
		return appendInt(appendInt(appendInt(b, u.g.m), q), f)
	case 's':
		return appendInt(appendInt(appendInt(appendArg(b, "s"), u.res), u.n), u.exp)
	case 'x':
		b = appendInt(appendArg(b, "x"), int64(len(u.ids)))
		for _, id := range u.ids {
			b = appendArg(b, id)
		}
		return b
	}
	b = appendInt(appendInt(appendArg(b, "h"), u.exp), int64(len(u.names)))
	for j, f := range u.names {
		b = appendInt(appendArg(b, f), u.vals[j])
	}
	return b
}

// appendArg appends one value of settleScript's argument: its length
// (uint32, little-endian) and bytes.
func appendArg(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// appendInt appends v as a decimal value of settleScript's argument: the
// script adds integers as strings (HINCRBY past 2^53).
func appendInt(b []byte, v int64) []byte {
	at := len(b)
	b = append(b, 0, 0, 0, 0)
	b = strconv.AppendInt(b, v, 10)
	binary.LittleEndian.PutUint32(b[at:], uint32(len(b)-at-4))
	return b
}

// settleBatch sends batch in one pipeline. Its undo operations and HashAdd
// writes become units (those of one kind and key added together, see
// settleUnit), sent as few settleScript calls as the units allow (with a
// Redis Cluster, one per hash slot: a script may only touch keys of one
// slot); the commands of writes without a HashAdd form go in the same
// pipeline. A unit that fails costs the settlements it carries, not the
// others of its call.
func (r *Redis) settleBatch(ctx context.Context, batch []Settlement) (lost int, err error) {
	su := settleUnits{byID: make(map[unitID]int, 8)}
	for si := range batch {
		s := &batch[si]
		for j := range s.Ops {
			if err := r.addOp(&su, si, &s.Ops[j]); err != nil {
				return len(batch), err
			}
		}
		for _, w := range s.Writes {
			if ha, ok := w.(HashAdder); ok {
				if h, ok := ha.HashAdd(); ok {
					su.addHash(si, &h)
					continue
				}
			}
			if ha, ok := w.(HashAdders); ok {
				if hs, ok := ha.HashAdds(); ok {
					for i := range hs {
						su.addHash(si, &hs[i])
					}
					continue
				}
			}
			su.others = append(su.others, pendingWrite{w, si})
		}
	}
	// The calls: units in order, by slot with a Cluster, at most
	// maxCallUnits each.
	_, cluster := r.client.(*redis.ClusterClient)
	var calls []scriptCall
	var members [][]int      // unit indexes of each call
	open := map[uint16]int{} // slot -> its call still taking units
	for ui := range su.units {
		u := &su.units[ui]
		var slot uint16
		if cluster {
			slot = keySlot(u.key)
		}
		ci, ok := open[slot]
		if !ok || len(members[ci]) == maxCallUnits {
			ci = len(calls)
			open[slot] = ci
			calls = append(calls, scriptCall{script: settleScript})
			members = append(members, nil)
		}
		c := &calls[ci]
		c.keys, c.arg = append(c.keys, u.key), u.appendArgs(c.arg)
		members[ci] = append(members[ci], ui)
	}
	type plainCmd struct {
		cmd redis.Cmder
		si  int
	}
	var plain []plainCmd
	var inline []pendingWrite
	var pipeOthers func(redis.Pipeliner)
	if len(su.others) > 0 {
		pipeOthers = func(p redis.Pipeliner) {
			for _, pw := range su.others {
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
	if len(calls) > 0 || len(su.others) > 0 {
		cmds = r.pipeline(ctx, calls, pipeOthers)
	}
	failed := make(map[int]bool)
	var firstErr error
	note := func(owners []int, err error) {
		for _, si := range owners {
			failed[si] = true
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	for ci, c := range cmds {
		bad, err := c.Slice()
		if err != nil {
			for _, ui := range members[ci] {
				note(su.units[ui].owners, err)
			}
			continue
		}
		for j := 0; j+1 < len(bad); j += 2 { // 1-based index within the call, error
			k, ok := bad[j].(int64)
			if !ok || k < 1 || int(k) > len(members[ci]) {
				continue
			}
			u := &su.units[members[ci][k-1]]
			note(u.owners, fmt.Errorf("settling %s: %v", u.key, bad[j+1]))
		}
	}
	for _, c := range plain {
		if err := c.cmd.Err(); err != nil {
			note([]int{c.si}, err)
		}
	}
	for _, pw := range inline {
		if err := pw.w.Do(ctx); err != nil {
			note([]int{pw.si}, err)
		}
	}
	if firstErr != nil {
		return len(failed), fmt.Errorf("ratelimit: redis: %w", firstErr)
	}
	return 0, nil
}

const maxInt64 = 1<<63 - 1
