package ratelimit

import (
	"context"
	"fmt"
	"time"
)

// OpKind names the [Limiter] method an [Op] calls.
type OpKind uint8

// The kinds, one per Limiter method that changes state.
const (
	OpTake OpKind = iota
	OpRefund
	OpAcquire
	OpRelease
	OpReserve
	OpSettle
)

func (k OpKind) String() string {
	switch k {
	case OpTake:
		return "take"
	case OpRefund:
		return "refund"
	case OpAcquire:
		return "acquire"
	case OpRelease:
		return "release"
	case OpReserve:
		return "reserve"
	case OpSettle:
		return "settle"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op is one Limiter call described as data: the gateway builds the
// operations of a request's limits first and runs them after, so that they
// can be inspected, undone and sent on together. Only the fields of its
// Kind are read.
type Op struct {
	Kind OpKind
	Key  string
	// Rate of Take and Refund.
	Rate Rate
	// Amount is Take's cost, Refund's units, Reserve's amount and Settle's
	// actual spend.
	Amount int64
	// ID, Slots and Lease of Acquire; ID of Release.
	ID    string
	Slots int64
	Lease time.Duration
	// Window and Expires of Reserve and Settle; Limit of Reserve; Reserved
	// of Settle.
	Window   string
	Limit    int64
	Reserved int64
	Expires  time.Time
	// By is the Backend of the decision that Refund, Release and Settle
	// undo.
	By Backend
}

// Do runs o on l. Refund, Release and Settle return a zero Result.
func (o *Op) Do(ctx context.Context, l Limiter) (Result, error) {
	switch o.Kind {
	case OpTake:
		return l.Take(ctx, o.Key, o.Rate, o.Amount)
	case OpRefund:
		return Result{}, l.Refund(ctx, o.Key, o.Rate, o.Amount, o.By)
	case OpAcquire:
		return l.Acquire(ctx, o.Key, o.ID, o.Slots, o.Lease)
	case OpRelease:
		return Result{}, l.Release(ctx, o.Key, o.ID, o.By)
	case OpReserve:
		return l.Reserve(ctx, o.Key, o.Window, o.Limit, o.Amount, o.Expires)
	case OpSettle:
		return Result{}, l.Settle(ctx, o.Key, o.Window, o.Reserved, o.Amount, o.Expires, o.By)
	}
	return Result{}, fmt.Errorf("%w: unknown operation %v", ErrInvalid, o.Kind)
}
