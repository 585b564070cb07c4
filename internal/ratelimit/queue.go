package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// QueueOptions configures a [Queue].
type QueueOptions struct {
	// Size bounds the settlements waiting to be sent. Default 8192.
	Size int
	// MaxBatch bounds the settlements sent in one pipeline. Default 512.
	MaxBatch int
	// Timeout bounds the sending of one batch. Default 2s.
	Timeout time.Duration
	// OnLost is called (from the queue's goroutine or a settling request)
	// when settlements could not be applied, with how many and why.
	OnLost func(n int, err error)
}

// QueueStats counts what a [Queue] did.
type QueueStats struct {
	// Settled counts the settlements applied, Batches the pipelines that
	// carried them from the queue.
	Settled int64 `json:"settled"`
	Batches int64 `json:"batches"`
	// Inline counts the settlements applied by the request that made them
	// because the queue was full or closed.
	Inline int64 `json:"inline"`
	// Lost counts the settlements of which something could not be applied
	// (Redis down): their state expires on its own (leases, TTLs).
	Lost int64 `json:"lost"`
	// Pending is how many wait in the queue now.
	Pending int `json:"pending"`
}

// Queue takes settlements off the request path for a limiter that batches
// them (Redis, a Failover in front of it): a request hands its settlement
// over and returns; one goroutine sends whatever has gathered in one
// pipeline, so N settlements arriving while a pipeline is in flight leave
// in the next one (a released slot is back within about one round trip).
// When the queue is full or closed the request applies its settlement
// itself (one pipeline), so nothing is dropped while Redis is up. For any
// other limiter (Memory) settlements are applied at once: that is already
// fast.
type Queue struct {
	l    Limiter
	opts QueueOptions
	ch   chan Settlement

	mu     sync.RWMutex // guards closed against Settle's send
	closed bool
	cancel context.CancelFunc
	done   chan struct{}

	settled, batches, inline, lost atomic.Int64
}

// NewQueue returns a queue settling on l. Start it with Start; until then
// (and after Close) settlements are applied inline.
func NewQueue(l Limiter, opts QueueOptions) *Queue {
	if opts.Size <= 0 {
		opts.Size = 8192
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	q := &Queue{l: l, opts: opts, done: make(chan struct{})}
	if _, ok := l.(batcher); ok {
		q.ch = make(chan Settlement, opts.Size)
	} else {
		q.closed = true // nothing to batch: always inline
		close(q.done)
	}
	return q
}

// Start runs the queue's goroutine until ctx is done or Close is called;
// it then sends what is still queued and stops.
func (q *Queue) Start(ctx context.Context) {
	if q.ch == nil {
		return
	}
	ctx, q.cancel = context.WithCancel(ctx)
	go q.run(ctx)
}

// Close stops taking settlements, sends those queued and waits for that.
func (q *Queue) Close() {
	if q.cancel == nil { // never started: flush here
		q.shut()
		if q.ch != nil {
			var batch []Settlement
			for s := range q.ch {
				batch = append(batch, s)
			}
			if len(batch) > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), q.opts.Timeout)
				q.batches.Add(1)
				q.apply(ctx, batch)
				cancel()
			}
		}
		return
	}
	q.cancel()
	<-q.done
}

func (q *Queue) shut() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
}

// Settle hands s over; it never waits for the queue. An inline settlement
// runs with ctx's values but not its cancellation (the request may be
// over), bounded by QueueOptions.Timeout.
func (q *Queue) Settle(ctx context.Context, s Settlement) {
	if len(s.Ops) == 0 && len(s.Writes) == 0 {
		return
	}
	q.mu.RLock()
	if !q.closed {
		select {
		case q.ch <- s:
			q.mu.RUnlock()
			return
		default: // full
		}
	}
	q.mu.RUnlock()
	q.inline.Add(1)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), q.opts.Timeout)
	defer cancel()
	q.apply(ctx, []Settlement{s})
}

func (q *Queue) apply(ctx context.Context, batch []Settlement) {
	lost, err := Apply(ctx, q.l, batch)
	q.settled.Add(int64(len(batch) - lost))
	if lost > 0 {
		q.lost.Add(int64(lost))
		if q.opts.OnLost != nil {
			q.opts.OnLost(lost, err)
		}
	}
}

func (q *Queue) run(ctx context.Context) {
	defer close(q.done)
	batch := make([]Settlement, 0, q.opts.MaxBatch)
	send := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), q.opts.Timeout)
		q.batches.Add(1)
		q.apply(sctx, batch)
		cancel()
		clear(batch)
		batch = batch[:0]
	}
	for {
		select {
		case <-ctx.Done():
			q.shut()
			for s := range q.ch { // flush what is left
				if batch = append(batch, s); len(batch) == q.opts.MaxBatch {
					send()
				}
			}
			if len(batch) > 0 {
				send()
			}
			return
		case s := <-q.ch:
			batch = append(batch, s)
		gather:
			for len(batch) < q.opts.MaxBatch {
				select {
				case s := <-q.ch:
					batch = append(batch, s)
				default:
					break gather
				}
			}
			send()
		}
	}
}

// Stats returns the queue's counters.
func (q *Queue) Stats() QueueStats {
	st := QueueStats{Settled: q.settled.Load(), Batches: q.batches.Load(), Inline: q.inline.Load(), Lost: q.lost.Load()}
	if q.ch != nil {
		st.Pending = len(q.ch)
	}
	return st
}
