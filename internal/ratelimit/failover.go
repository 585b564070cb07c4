package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// FailoverOptions configures a [Failover].
type FailoverOptions struct {
	// Timeout bounds every call to the primary. Default 50ms.
	Timeout time.Duration
	// FailOpen answers decisions from the fallback while the primary is
	// unavailable. When false (fail closed) they return ErrUnavailable.
	FailOpen bool
	// OnStateChange is called on every transition of the primary between up
	// and down (err is the failure that brought it down, nil when up). Calls
	// are serialized and made synchronously from a request goroutine, so it
	// must be quick and must not call back into the Failover.
	OnStateChange func(up bool, err error)
	// Backoff is how long the primary is skipped after it failed; it doubles
	// after each failed probe up to MaxBackoff. Defaults 250ms and 1s.
	Backoff, MaxBackoff time.Duration
}

// Failover is a [Limiter] that uses a primary (typically [Redis]) and, while
// that is unavailable, a fallback (typically [Memory]).
//
// Each primary call runs with FailoverOptions.Timeout. When it fails (any
// error other than ErrInvalid or the caller's own context ending), the
// primary is marked down and skipped for a backoff period, so requests do not
// each pay the timeout; after the backoff a single request probes it again
// while the others keep skipping it. A successful call marks it up again, so
// recovery needs no restart and happens within Timeout+MaxBackoff of the
// primary coming back.
//
// While the primary is down, decisions (Take, Acquire, Reserve, Spent) are
// answered by the fallback when FailOpen is set, with Result.Backend =
// BackendFallback, and fail with ErrUnavailable otherwise. Undo operations
// (Refund, Release, Settle) are routed by their Backend argument to the
// backend that made the decision; one meant for an unavailable primary fails
// with ErrUnavailable (its state expires there on its own). Settle of a
// fallback reservation releases the reservation on the fallback but records
// the actual spend on the primary when it is available, so money spent during
// an outage reaches the shared books whenever possible.
type Failover struct {
	primary, fallback Limiter
	opts              FailoverOptions

	down    atomic.Bool
	probeAt atomic.Int64 // unix ns after which the primary may be probed (while down)

	mu      sync.Mutex    // serializes transitions and OnStateChange
	backoff time.Duration // guarded by mu
}

var _ Limiter = (*Failover)(nil)

// errPrimaryDown is returned (fail closed) while the primary is being skipped.
var errPrimaryDown = fmt.Errorf("%w: primary marked down", ErrUnavailable)

// NewFailover returns a Limiter using primary and, while it is unavailable,
// fallback (see [Failover]). A nil fallback implies fail closed.
func NewFailover(primary, fallback Limiter, opts FailoverOptions) *Failover {
	if fallback == nil {
		opts.FailOpen = false
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 50 * time.Millisecond
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 250 * time.Millisecond
	}
	if opts.MaxBackoff < opts.Backoff {
		opts.MaxBackoff = max(time.Second, opts.Backoff)
	}
	return &Failover{primary: primary, fallback: fallback, opts: opts, backoff: opts.Backoff}
}

// Up reports whether the primary is currently considered available.
func (f *Failover) Up() bool { return !f.down.Load() }

// route reports whether to call the primary and whether that call is the
// probe of a primary marked down.
func (f *Failover) route() (use, probe bool) {
	if !f.down.Load() {
		return true, false
	}
	at := f.probeAt.Load()
	now := time.Now().UnixNano()
	if now < at {
		return false, false
	}
	// One caller wins the probe; the others keep skipping until it reports.
	ok := f.probeAt.CompareAndSwap(at, now+int64(f.opts.Timeout+f.opts.Backoff))
	return ok, ok
}

func (f *Failover) succeeded() {
	if !f.down.Load() {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down.Load() {
		f.backoff = f.opts.Backoff
		f.down.Store(false)
		if f.opts.OnStateChange != nil {
			f.opts.OnStateChange(true, nil)
		}
	}
}

func (f *Failover) failed(err error, probe bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	switch {
	case !f.down.Load():
		f.backoff = f.opts.Backoff
		f.probeAt.Store(now.Add(f.backoff).UnixNano())
		f.down.Store(true)
		if f.opts.OnStateChange != nil {
			f.opts.OnStateChange(false, err)
		}
	case probe:
		f.backoff = min(2*f.backoff, f.opts.MaxBackoff)
		f.probeAt.Store(now.Add(f.backoff).UnixNano())
	}
}

// callPrimary runs fn against the primary unless it is being skipped. It
// returns handled=true when the outcome (success or an error not caused by
// the primary) is final, and otherwise the reason the primary could not
// answer.
func callPrimary[T any](f *Failover, ctx context.Context, fn func(context.Context) (T, error)) (v T, handled bool, err error) {
	return callPrimaryFor(f, ctx, f.opts.Timeout, fn)
}

// callPrimaryFor is callPrimary with a timeout of its own (a settlement
// batch may take longer than one decision; 0: ctx's alone).
func callPrimaryFor[T any](f *Failover, ctx context.Context, timeout time.Duration, fn func(context.Context) (T, error)) (v T, handled bool, err error) {
	use, probe := f.route()
	if !use {
		return v, false, errPrimaryDown
	}
	pctx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		pctx, cancel = context.WithTimeout(ctx, timeout)
	}
	v, err = fn(pctx)
	cancel()
	if err == nil {
		f.succeeded()
		return v, true, nil
	}
	if errors.Is(err, ErrInvalid) || ctx.Err() != nil {
		return v, true, err
	}
	f.failed(err, probe)
	return v, false, fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// decide runs a decision on the primary, or on the fallback when the primary
// cannot answer and FailOpen is set.
func decide[T any](f *Failover, ctx context.Context, primary func(context.Context) (T, error), fallback func() (T, error)) (T, Backend, error) {
	v, handled, err := callPrimary(f, ctx, primary)
	if handled || !f.opts.FailOpen {
		return v, BackendPrimary, err
	}
	v, err = fallback()
	return v, BackendFallback, err
}

// undo runs an undo operation on the backend that made the decision.
func (f *Failover) undo(ctx context.Context, by Backend, fn func(context.Context, Limiter) error) error {
	if by == BackendFallback && f.fallback != nil {
		return fn(ctx, f.fallback)
	}
	_, _, err := callPrimary(f, ctx, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, fn(ctx, f.primary)
	})
	return err
}

// Take implements [Limiter].
func (f *Failover) Take(ctx context.Context, key string, rate Rate, cost int64) (Result, error) {
	res, by, err := decide(f, ctx, func(ctx context.Context) (Result, error) {
		return f.primary.Take(ctx, key, rate, cost)
	}, func() (Result, error) {
		return f.fallback.Take(ctx, key, rate, cost)
	})
	res.Backend = by
	return res, err
}

// Refund implements [Limiter].
func (f *Failover) Refund(ctx context.Context, key string, rate Rate, n int64, by Backend) error {
	return f.undo(ctx, by, func(ctx context.Context, l Limiter) error {
		return l.Refund(ctx, key, rate, n, BackendPrimary)
	})
}

// Acquire implements [Limiter].
func (f *Failover) Acquire(ctx context.Context, key, id string, slots int64, lease time.Duration) (Result, error) {
	res, by, err := decide(f, ctx, func(ctx context.Context) (Result, error) {
		return f.primary.Acquire(ctx, key, id, slots, lease)
	}, func() (Result, error) {
		return f.fallback.Acquire(ctx, key, id, slots, lease)
	})
	res.Backend = by
	return res, err
}

// Release implements [Limiter].
func (f *Failover) Release(ctx context.Context, key, id string, by Backend) error {
	return f.undo(ctx, by, func(ctx context.Context, l Limiter) error {
		return l.Release(ctx, key, id, BackendPrimary)
	})
}

// Reserve implements [Limiter].
func (f *Failover) Reserve(ctx context.Context, key, window string, limit, amount int64, expires time.Time) (Result, error) {
	res, by, err := decide(f, ctx, func(ctx context.Context) (Result, error) {
		return f.primary.Reserve(ctx, key, window, limit, amount, expires)
	}, func() (Result, error) {
		return f.fallback.Reserve(ctx, key, window, limit, amount, expires)
	})
	res.Backend = by
	return res, err
}

// Settle implements [Limiter].
func (f *Failover) Settle(ctx context.Context, key, window string, reserved, actual int64, expires time.Time, by Backend) error {
	if err := validAmounts(reserved, actual); err != nil {
		return err
	}
	if by != BackendFallback || f.fallback == nil {
		return f.undo(ctx, by, func(ctx context.Context, l Limiter) error {
			return l.Settle(ctx, key, window, reserved, actual, expires, BackendPrimary)
		})
	}
	if err := f.fallback.Settle(ctx, key, window, reserved, 0, expires, BackendPrimary); err != nil {
		return err
	}
	if actual == 0 {
		return nil
	}
	_, handled, err := callPrimary(f, ctx, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, f.primary.Settle(ctx, key, window, 0, actual, expires, BackendPrimary)
	})
	if handled {
		return err
	}
	return f.fallback.Settle(ctx, key, window, 0, actual, expires, BackendPrimary)
}

// Spent implements [Limiter]. While the primary is down it reads the fallback
// when FailOpen is set (a process-local view) and fails otherwise.
func (f *Failover) Spent(ctx context.Context, key, window string) (spent, reserved int64, err error) {
	v, _, err := decide(f, ctx, func(ctx context.Context) ([2]int64, error) {
		s, r, err := f.primary.Spent(ctx, key, window)
		return [2]int64{s, r}, err
	}, func() ([2]int64, error) {
		s, r, err := f.fallback.Spent(ctx, key, window)
		return [2]int64{s, r}, err
	})
	return v[0], v[1], err
}

// Admit implements [Limiter]: the primary decides the whole admission, or,
// when it cannot answer, the fallback (FailOpen) or nobody
// (ErrUnavailable), as for every decision.
func (f *Failover) Admit(ctx context.Context, ops []Op) (AdmitResult, error) {
	res, by, err := decide(f, ctx, func(ctx context.Context) (AdmitResult, error) {
		return f.primary.Admit(ctx, ops)
	}, func() (AdmitResult, error) {
		return f.fallback.Admit(ctx, ops)
	})
	res.Backend = by
	for i := range res.Results {
		res.Results[i].Backend = by
	}
	return res, err
}

// settleBatch routes each operation of batch by its Backend, as the undo
// methods do: the fallback's are applied there, the primary's (and the
// writes) go to the primary in one batch. The actual spend of a fallback
// reservation goes to the primary and, when that cannot take it, to the
// fallback. Settlements for a primary that is down are lost (their state
// expires there on its own) and counted.
func (f *Failover) settleBatch(ctx context.Context, batch []Settlement) (lost int, err error) {
	var errs []error
	primary := make([]Settlement, 0, len(batch))
	var spends []Op  // fallback reservations' actual spend, primary first
	recoverable := 0 // primary settlements that are such spends alone
	for i := range batch {
		s := &batch[i]
		var ps Settlement
		ps.Writes = s.Writes
		own := false // ps has an operation of the primary's
		for _, o := range s.Ops {
			if o.By != BackendFallback || f.fallback == nil {
				ps.Ops, own = append(ps.Ops, o), true
				continue
			}
			if o.Kind == OpSettle && o.Amount > 0 {
				spend := o
				spend.Reserved, spend.By = 0, BackendPrimary
				ps.Ops = append(ps.Ops, spend)
				spends = append(spends, spend)
				o.Amount = 0
			}
			if _, e := o.Do(ctx, f.fallback); e != nil {
				errs = append(errs, e)
			}
		}
		if len(ps.Ops) > 0 || len(ps.Writes) > 0 {
			primary = append(primary, ps)
			if !own && len(ps.Writes) == 0 {
				recoverable++
			}
		}
	}
	if len(primary) == 0 {
		return 0, errors.Join(errs...)
	}
	_, handled, perr := callPrimaryFor(f, ctx, 0, func(ctx context.Context) (int, error) {
		n, err := Apply(ctx, f.primary, primary)
		lost = n
		return n, err
	})
	if !handled || (perr != nil && lost == len(primary)) {
		lost = len(primary) - recoverable
		if f.fallback != nil {
			for _, o := range spends {
				if _, e := o.Do(ctx, f.fallback); e != nil {
					errs = append(errs, e)
				}
			}
		}
	}
	if perr != nil {
		errs = append(errs, perr)
	}
	return lost, errors.Join(errs...)
}
