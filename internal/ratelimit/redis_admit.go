package ratelimit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// scriptCall is one script invocation of a pipeline: its keys and its
// one argument.
type scriptCall struct {
	script *redis.Script
	keys   []string
	arg    []byte
}

// pipeline sends calls (EVALSHA) and the commands plain adds in one
// pipeline, one round trip (with a Cluster one per master, in parallel).
// Calls whose script Redis does not know (after a restart or SCRIPT
// FLUSH) are sent again with EVAL in a second one. The replies' errors
// are the callers' to read.
func (r *Redis) pipeline(ctx context.Context, calls []scriptCall, plain func(redis.Pipeliner)) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(calls))
	p := r.client.Pipeline()
	for i, c := range calls {
		cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.arg)
	}
	if plain != nil {
		plain(p)
	}
	_, _ = p.Exec(ctx) // errors are read per command
	var again []int
	for i, c := range cmds {
		if err := c.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		p := r.client.Pipeline()
		for _, i := range again {
			c := calls[i]
			cmds[i] = c.script.Eval(ctx, p, c.keys, c.arg)
		}
		_, _ = p.Exec(ctx)
	}
	return cmds
}

// stateKey is the Redis key of an operation's state.
func (r *Redis) stateKey(o *Op) string {
	switch o.Kind {
	case OpAcquire, OpRelease:
		return r.concKey(o.Key)
	case OpReserve, OpSettle:
		return r.budgetKey(o.Key, o.Window)
	}
	return r.gcraKey(o.Key)
}

// Admit implements [Limiter] with one EVALSHA of admitScript: one round
// trip, atomic, Redis TIME read once. While an admission's script is in
// flight, the admissions that arrive meanwhile wait and then go together
// in one call (see admitLane); each is still decided on its own, all or
// nothing, in order.
//
// With a Redis Cluster a script may only touch keys of one hash slot, and
// a key's limits and a model's limits hash to different slots (unless the
// prefix carries a hash tag), so the operations are grouped by slot and
// each group is one script; the scripts go out in one pipeline (a round
// trip per master, in parallel). Each group is atomic; when one refuses
// (or fails) the groups that were taken are given back with one more
// pipeline, so nothing stays taken, but two admissions racing for the last
// unit of different groups may then both be refused. Only admissions of
// one slot are batched.
func (r *Redis) Admit(ctx context.Context, ops []Op) (AdmitResult, error) {
	aops, err := compileAdmission(ops, nil)
	if err != nil {
		return AdmitResult{}, err
	}
	var slot uint16
	var groups [][]int // operation indexes by hash slot; nil: one group of all
	if _, cluster := r.client.(*redis.ClusterClient); cluster {
		bySlot := make(map[uint16]int, 2)
		for i := range aops {
			slot = keySlot(r.stateKey(aops[i].Op))
			g, ok := bySlot[slot]
			if !ok {
				g = len(groups)
				bySlot[slot] = g
				groups = append(groups, nil)
			}
			groups[g] = append(groups[g], i)
		}
		if len(groups) == 1 {
			groups = nil
		}
	}
	if groups == nil {
		return r.admitBatched(ctx, r.lane(slot), r.newAdmitWait(ctx, aops))
	}
	return r.admitGroups(ctx, aops, groups)
}

// admitGroups decides an admission whose operations are in several hash
// slots of a Cluster: a script per group, in one pipeline.
func (r *Redis) admitGroups(ctx context.Context, aops []admitOp, groups [][]int) (AdmitResult, error) {
	calls := make([]scriptCall, 0, len(groups))
	for _, idx := range groups {
		c := scriptCall{script: admitScript, keys: make([]string, len(idx))}
		arg := appendAdmitHeader(make([]byte, 0, 4+len(idx)*admitRecordSize), len(idx))
		for j, i := range idx {
			o := &aops[i]
			c.keys[j] = r.stateKey(o.Op)
			arg = appendAdmitRecord(arg, o)
		}
		c.arg = arg
		calls = append(calls, c)
	}
	cmds := r.pipeline(ctx, calls, nil)

	results := make([]Result, len(aops))
	taken := make([]bool, 0, len(groups))
	var errs []error
	refused := false
	for gi, idx := range groups {
		taken = append(taken, false)
		var v []int64
		s, err := cmds[gi].Text()
		if err == nil {
			v, err = admitReply(s)
		}
		if err == nil && len(v) != 1+5*len(idx) {
			err = fmt.Errorf("unexpected script reply %v", v)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		taken[gi] = v[0] == 0
		refused = refused || !taken[gi]
		for j, i := range idx {
			results[i] = aops[i].result(v[1+5*j : 6+5*j])
		}
	}
	if len(errs) > 0 || refused { // give the taken groups back
		var undo []Op
		for gi, idx := range groups {
			if taken[gi] {
				for _, i := range idx {
					if o, ok := aops[i].undo(); ok {
						undo = append(undo, o)
					}
				}
			}
		}
		if len(undo) > 0 {
			if _, err := r.settleBatch(ctx, []Settlement{{Ops: undo}}); err != nil {
				errs = append(errs, fmt.Errorf("giving back a refused admission: %w", err))
			}
		}
	}
	if len(errs) > 0 {
		return AdmitResult{}, fmt.Errorf("ratelimit: redis: %w", errors.Join(errs...))
	}
	return finishAdmission(results), nil
}

// admitScript's argument is one string of records, so that a batch of
// admissions is one argument to write and for Redis to read rather than
// seven per operation (and the reply one string rather than an array of
// integers): per admission its number of operations (uint32), then per
// operation its kind (one byte), five numbers (float64; every value the
// scripts handle is an integer below 2^53) and an id (uint32 length and
// bytes), all little-endian, as Lua's struct.unpack('<I4') and
// ('<c1dddddI4c0') read them.
const admitRecordSize = 1 + 5*8 + 4

// appendAdmitHeader appends the record that starts an admission of n
// operations.
func appendAdmitHeader(b []byte, n int) []byte {
	return binary.LittleEndian.AppendUint32(b, uint32(n))
}

// appendAdmitRecord appends o's record to b.
func appendAdmitRecord(b []byte, o *admitOp) []byte {
	switch o.Kind {
	case OpAcquire:
		leaseMs := (o.Lease + time.Millisecond - 1) / time.Millisecond
		return appendRecord(b, 'a', o.Slots, int64(leaseMs), 0, 0, 0, o.ID)
	case OpReserve:
		return appendRecord(b, 'b', o.Limit, o.Amount, o.Expires.UnixMilli(), 0, 0, "")
	}
	g := &o.g
	switch {
	case o.Amount > g.burst:
		return appendRecord(b, 'n', g.m, g.tauQ, g.tauR, 0, 0, "")
	case o.Amount == 0:
		return appendRecord(b, 'p', g.m, g.tauQ, g.tauR, 0, 0, "")
	}
	incQ, incR, _ := g.span(o.Amount)
	return appendRecord(b, 't', g.m, g.tauQ, g.tauR, incQ, incR, "")
}

func appendRecord(b []byte, kind byte, v1, v2, v3, v4, v5 int64, id string) []byte {
	b = append(b, kind)
	for _, v := range [5]int64{v1, v2, v3, v4, v5} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(v)))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(id)))
	return append(b, id...)
}

// admitReply decodes admitScript's reply, n float64 values (integers),
// little-endian.
func admitReply(s string) ([]int64, error) {
	if len(s)%8 != 0 {
		return nil, fmt.Errorf("unexpected script reply of %d bytes", len(s))
	}
	v := make([]int64, len(s)/8)
	for i := range v {
		v[i] = int64(math.Float64frombits(binary.LittleEndian.Uint64([]byte(s[8*i : 8*i+8]))))
	}
	return v, nil
}

// runAdmit runs admitScript on keys and arg and decodes its reply.
func runAdmit(ctx context.Context, c redis.Scripter, keys []string, arg []byte) ([]int64, error) {
	s, err := admitScript.Run(ctx, c, keys, arg).Text()
	if err != nil {
		return nil, err
	}
	return admitReply(s)
}

// result converts o's five reply values of admitScript.
func (o *admitOp) result(v []int64) Result {
	switch o.Kind {
	case OpAcquire:
		res := Result{Allowed: v[0] == 1, Limit: o.Slots, Remaining: max(o.Slots-v[1], 0)}
		res.ResetAfter = time.Duration(v[2]) * time.Millisecond
		if !res.Allowed {
			res.RetryAfter = time.Duration(v[3]) * time.Millisecond
		}
		return res
	case OpReserve:
		return budgetResult(v[0] == 1, o.Limit, v[1], v[2], time.Duration(v[3])*time.Millisecond)
	}
	never := o.Amount > o.g.burst
	return o.g.result(v[0] == 1 && !never, never, v[1], v[2], v[3], v[4])
}

// undo is the operation that gives back what o took.
func (o *admitOp) undo() (Op, bool) {
	switch o.Kind {
	case OpAcquire:
		return Op{Kind: OpRelease, Key: o.Key, ID: o.ID}, true
	case OpReserve:
		return Op{Kind: OpSettle, Key: o.Key, Window: o.Window, Reserved: o.Amount, Expires: o.Expires}, o.Amount > 0
	}
	return Op{Kind: OpRefund, Key: o.Key, Rate: o.Rate, Amount: o.Amount}, o.Amount > 0 && o.Amount <= o.g.burst
}

// keySlot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of its
// hash tag (the part between the first "{" and the next "}", when not
// empty) or of the whole key, modulo 16384.
func keySlot(key string) uint16 {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}
