package ratelimit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of one batched admission call: a script blocks Redis while it
// runs, and its arguments are held in memory on both sides.
const (
	maxBatchAdmissions = 64
	maxBatchBytes      = 64 << 10
)

// giveBackTimeout bounds the giving back of an admission that was applied
// after its request had gone.
const giveBackTimeout = 2 * time.Second

// admitLane group-commits the admissions of one Redis (of one hash slot
// with a Cluster): at most one admission script is in flight at a time.
// An admission that finds the lane free sends its own script at once
// (the first one never waits for others). One that finds a script in
// flight waits in the queue; when the script returns, its sender takes up
// to maxBatchAdmissions (maxBatchBytes) of the waiting admissions and
// hands them, as one batch, to the first of them, which sends them in one
// call and does the same when it returns. There is no timer: a batch
// leaves as soon as the lane is free, and under load the admissions that
// arrive during one round trip leave in the next.
//
// admitScript decides a batch's admissions one after the other, each all
// or nothing, exactly as separate calls in that order would (at the one
// Redis TIME of the call). An error of the call (Redis down, a timeout)
// is every admission's error.
//
// A request whose context ends while it waits in the queue is not
// admitted; one whose context ends while its batch is in flight gets its
// context's error, and when the script admitted it, its operations are
// given back (see giveBack).
type admitLane struct {
	mu    sync.Mutex
	busy  bool // a script is in flight
	queue []*admitWait
}

// The states of an admitWait. A queued admission becomes sent (in a
// batch) or leading (the first of a batch, which sends it) under the
// lane's lock; queued or sent become abandoned when its request goes, and
// sent becomes done when its result is delivered.
const (
	waitQueued int32 = iota
	waitSent
	waitLeading
	waitDone
	waitAbandoned
)

// admitWait is one admission on its way through a lane.
type admitWait struct {
	ctx  context.Context
	aops []admitOp
	keys []string // the admission's KEYS of admitScript
	arg  []byte   // and its records of the script's argument
	size int      // about the bytes of keys and arg

	state atomic.Int32
	ready chan struct{} // signalled once: result delivered, or leadership
	batch []*admitWait  // leading: the batch to send
	res   AdmitResult   // written by the sender before done
	err   error
}

// newAdmitWait builds aops' part of an admitScript call.
func (r *Redis) newAdmitWait(ctx context.Context, aops []admitOp) *admitWait {
	n := 4
	for i := range aops {
		n += admitRecordSize + len(aops[i].ID)
	}
	w := &admitWait{ctx: ctx, aops: aops, keys: make([]string, len(aops)), arg: make([]byte, 0, n)}
	w.arg = appendAdmitHeader(w.arg, len(aops))
	w.size = n
	for i := range aops {
		o := &aops[i]
		w.keys[i] = r.stateKey(o.Op)
		w.arg = appendAdmitRecord(w.arg, o)
		w.size += len(w.keys[i])
	}
	return w
}

// lane returns the lane of a hash slot (always the same one without a
// Cluster).
func (r *Redis) lane(slot uint16) *admitLane {
	if slot == 0 {
		return &r.lane0
	}
	if l, ok := r.lanes.Load(slot); ok {
		return l.(*admitLane)
	}
	l, _ := r.lanes.LoadOrStore(slot, &admitLane{})
	return l.(*admitLane)
}

// admitBatched decides w through lane: at once when the lane is free,
// else in the next batch.
func (r *Redis) admitBatched(ctx context.Context, lane *admitLane, w *admitWait) (AdmitResult, error) {
	lane.mu.Lock()
	if !lane.busy {
		lane.busy = true
		lane.mu.Unlock()
		w.state.Store(waitLeading)
		one := [1]*admitWait{w}
		return r.send(lane, w, one[:])
	}
	w.ready = make(chan struct{}, 1)
	lane.queue = append(lane.queue, w)
	lane.mu.Unlock()
	select {
	case <-w.ready:
	case <-ctx.Done():
		if w.state.CompareAndSwap(waitQueued, waitAbandoned) || w.state.CompareAndSwap(waitSent, waitAbandoned) {
			return AdmitResult{}, fmt.Errorf("ratelimit: redis: %w", ctx.Err())
		}
		<-w.ready // done or leading: signalled at once
	}
	if w.state.Load() == waitLeading {
		return r.send(lane, w, w.batch)
	}
	return w.res, w.err
}

// send is run by lead, the first admission of batch: it sends the batch's
// admissions still wanted in one call, hands the lane on, delivers the
// results and returns lead's.
func (r *Redis) send(lane *admitLane, lead *admitWait, batch []*admitWait) (AdmitResult, error) {
	gone := lead.ctx.Err() // lead's request went while it waited
	live := batch[:0]
	deadline, bounded := time.Time{}, true
	for _, w := range batch {
		if (w == lead && gone != nil) || (w != lead && w.state.Load() == waitAbandoned) {
			continue
		}
		live = append(live, w)
		if d, ok := w.ctx.Deadline(); !ok {
			bounded = false
		} else if d.After(deadline) {
			deadline = d
		}
	}
	switch {
	case len(live) == 1 && live[0] == lead: // alone: as a call of its own
		r.admitCall(lead.ctx, live)
	case len(live) > 0:
		// The call outlives any one request: it ends when the last of them
		// would have given up.
		ctx, cancel := context.WithoutCancel(lead.ctx), context.CancelFunc(func() {})
		if bounded {
			ctx, cancel = context.WithDeadline(ctx, deadline)
		}
		r.admitCall(ctx, live)
		cancel()
	}
	lane.handOff()
	var undo []Op
	for _, w := range live {
		if w == lead {
			continue
		}
		if w.state.CompareAndSwap(waitSent, waitDone) {
			w.ready <- struct{}{}
			continue
		}
		if w.err == nil && w.res.Allowed() { // applied after its request went
			undo = w.appendUndo(undo)
		}
	}
	if len(undo) > 0 {
		go r.giveBack(lead.ctx, undo)
	}
	if gone != nil {
		return AdmitResult{}, fmt.Errorf("ratelimit: redis: %w", gone)
	}
	return lead.res, lead.err
}

// handOff passes the lane to the next batch of waiting admissions, or
// frees it when none waits.
func (lane *admitLane) handOff() {
	lane.mu.Lock()
	var batch []*admitWait
	size, i := 0, 0
	for ; i < len(lane.queue) && len(batch) < maxBatchAdmissions; i++ {
		w := lane.queue[i]
		if w.state.Load() == waitAbandoned {
			continue
		}
		if len(batch) > 0 && size+w.size > maxBatchBytes {
			break
		}
		to := waitSent
		if len(batch) == 0 {
			to = waitLeading
		}
		if w.state.CompareAndSwap(waitQueued, to) {
			batch, size = append(batch, w), size+w.size
		}
	}
	n := copy(lane.queue, lane.queue[i:])
	clear(lane.queue[n:])
	lane.queue = lane.queue[:n]
	lane.busy = len(batch) > 0
	lane.mu.Unlock()
	if len(batch) > 0 {
		batch[0].batch = batch
		batch[0].ready <- struct{}{}
	}
}

// admitCall decides batch's admissions with one admitScript call and sets
// their res and err. A panic below it is every admission's error, so that
// the lane is handed on whatever happens.
func (r *Redis) admitCall(ctx context.Context, batch []*admitWait) {
	defer func() {
		if p := recover(); p != nil {
			err := fmt.Errorf("ratelimit: redis: admission call panicked: %v", p)
			for _, w := range batch {
				w.res, w.err = AdmitResult{}, err
			}
		}
	}()
	keys, arg := batch[0].keys, batch[0].arg
	if len(batch) > 1 {
		nk, na := 0, 0
		for _, w := range batch {
			nk, na = nk+len(w.keys), na+len(w.arg)
		}
		keys, arg = make([]string, 0, nk), make([]byte, 0, na)
		for _, w := range batch {
			keys, arg = append(keys, w.keys...), append(arg, w.arg...)
		}
	}
	v, err := runAdmit(ctx, r.client, keys, arg)
	at := 0
	for _, w := range batch {
		n := 1 + 5*len(w.aops)
		if err == nil && len(v) < at+n {
			err = fmt.Errorf("unexpected script reply %v", v)
		}
		if err != nil {
			break
		}
		results := make([]Result, len(w.aops))
		for i := range w.aops {
			results[i] = w.aops[i].result(v[at+1+5*i : at+6+5*i])
		}
		w.res, at = finishAdmission(results), at+n
	}
	if err != nil {
		err = fmt.Errorf("ratelimit: redis: %w", err)
		for _, w := range batch {
			w.res, w.err = AdmitResult{}, err
		}
	}
}

// appendUndo appends the operations that give back w's admission.
func (w *admitWait) appendUndo(undo []Op) []Op {
	for i := range w.aops {
		if o, ok := w.aops[i].undo(); ok {
			undo = append(undo, o)
		}
	}
	return undo
}

// giveBack applies undo, the operations of admissions that were applied
// after their requests had gone, with ctx's values, bounded by
// giveBackTimeout. When Redis cannot take them they expire on their own
// (leases, TTLs).
func (r *Redis) giveBack(ctx context.Context, undo []Op) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), giveBackTimeout)
	defer cancel()
	_, _ = r.settleBatch(ctx, []Settlement{{Ops: undo}})
}
