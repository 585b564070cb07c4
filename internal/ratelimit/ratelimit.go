// Package ratelimit provides the per-key limiting primitives of the gateway:
// request and token rates (GCRA with variable cost), concurrency slots with
// leases, and fixed-window spend budgets with reservations.
//
// Three implementations of [Limiter] exist:
//
//   - [Memory]: in-process, exact, for a single gateway process (and as the
//     fallback of a [Failover]).
//   - [Redis]: shared by any number of gateway processes; every decision is a
//     single atomic Lua script that reads the time from Redis itself, so
//     processes with skewed clocks still agree.
//   - [Failover]: wraps a primary (Redis) and a fallback (Memory) and decides
//     what happens while the primary is unreachable.
//
// Both backends implement the same arithmetic: GCRA state is kept as a
// theoretical arrival time (TAT) in whole microseconds plus an exact fraction,
// so rates such as 7 requests per minute neither drift nor lose burst capacity
// to rounding, and the Memory and Redis backends make identical decisions.
//
// Keys are opaque strings chosen by the caller (e.g. "key:team-a:rpm"). The
// three families (rates, concurrency, budgets) live in separate namespaces, so
// the same key may be used for all of them.
//
// An [Op] describes one Limiter call as data; [Op.Do] runs it.
// [Limiter.Admit] decides a request's operations together, all or nothing;
// a [Settlement] carries the undo operations after it (plus writes such as
// the usage record) and a [Queue] sends many of them to Redis in one
// pipeline, off the request path.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"
)

var (
	// ErrUnavailable is returned by [Failover] (fail-closed, or for operations
	// that cannot be redirected) while the primary backend is unreachable.
	// Callers typically map it to HTTP 503.
	ErrUnavailable = errors.New("ratelimit: backend unavailable")
	// ErrInvalid is returned (wrapped) for invalid arguments. It indicates a
	// caller bug or a bad configuration, never a backend failure.
	ErrInvalid = errors.New("ratelimit: invalid argument")
)

// MaxLimit bounds Rate.Limit and Rate.Burst. It keeps all intermediate values
// of the Redis scripts exactly representable as Lua numbers (doubles).
const MaxLimit = 1_000_000_000_000

// maxSpan bounds every stored time offset (burst tolerance, accumulated debt),
// in microseconds (~35 years). Together with Unix microseconds it stays below
// 2^53, i.e. exact in Lua.
const maxSpan = 1 << 50

// Backend identifies which backend of a [Failover] made a decision.
type Backend uint8

const (
	// BackendPrimary is the zero value: the decision was made by the limiter
	// itself (Memory, Redis) or by the primary of a Failover.
	BackendPrimary Backend = iota
	// BackendFallback marks a decision made by the fallback of a Failover.
	// Undo operations (Refund, Release, Settle) for it must be passed
	// BackendFallback so they reach the backend holding the state.
	BackendFallback
)

func (b Backend) String() string {
	switch b {
	case BackendPrimary:
		return "primary"
	case BackendFallback:
		return "fallback"
	}
	return fmt.Sprintf("Backend(%d)", uint8(b))
}

// Result of one decision. Fields map onto OpenAI's x-ratelimit-* headers.
type Result struct {
	// Allowed reports whether the request was admitted. When false nothing
	// was consumed.
	Allowed bool
	// Limit is the configured limit: units per period for rates, slots for
	// concurrency, the budget (e.g. micro-USD) for budgets.
	Limit int64
	// Remaining is what is left after this decision, always >= 0. For rates
	// it is the largest cost a Take issued at the same instant would be
	// admitted with (so it never exceeds the burst); for concurrency the free
	// slots; for budgets limit - spent - reserved.
	Remaining int64
	// ResetAfter is the time until the limit is fully replenished: rates back
	// to a full burst, concurrency until the last current lease expires
	// (when admitted: until the request's own lease expires), budgets until
	// the window expires.
	ResetAfter time.Duration
	// RetryAfter is set when !Allowed: the earliest time a retry could
	// succeed (exact for rates; for concurrency the time until the oldest
	// lease expires, which is an upper bound as a Release can free a slot
	// sooner; for budgets until the window expires). It is 0 when Never.
	RetryAfter time.Duration
	// Never reports that the request can never fit (rates: cost > burst;
	// budgets: limit <= 0), so the client must not be told to retry.
	Never bool
	// Backend tells which backend of a Failover made the decision. Pass it
	// to the matching Refund, Release or Settle.
	Backend Backend
}

// Rate configures a GCRA limit: Limit units per Period, with bursts of up to
// Burst units admitted back to back.
//
// The emission interval is T = Period/Limit per unit. A cost c is admitted at
// time now when TAT' = max(TAT, now) + c*T satisfies TAT' - now <= Burst*T;
// TAT is then set to TAT'. In steady state exactly Limit units per Period are
// admitted; after a quiet period up to Burst units are admitted at once.
type Rate struct {
	// Limit is the number of units per Period, 1..MaxLimit.
	Limit int64
	// Period is the length of the rate window (e.g. time.Minute), > 0.
	Period time.Duration
	// Burst is the burst tolerance in units (the bucket size). A cost is
	// only admissible when cost <= Burst. <= 0 means Burst = Limit, which
	// is the usual choice for TPM; for RPM a smaller burst such as
	// max(1, Limit/10) spreads requests over the minute.
	Burst int64
}

// Limiter is one backend. All methods are safe for concurrent use.
//
// Methods return an error wrapping ErrInvalid for invalid arguments and, for
// remote backends, transport errors. A Limiter never blocks waiting for
// capacity: it decides immediately.
type Limiter interface {
	// Admit decides the operations of one request (Take, Acquire and
	// Reserve, on distinct keys) together and atomically: they are all
	// taken, or, when any refuses, none is. Each is checked against the
	// state before the admission. With a Redis Cluster the atomicity holds
	// per hash slot (see [Redis]).
	Admit(ctx context.Context, ops []Op) (AdmitResult, error)
	// Take admits cost units under rate (see [Rate] for the algorithm).
	// When not admitted nothing is consumed. cost > Burst is rejected with
	// Never set; cost == 0 is a read-only peek that always succeeds and
	// reports Remaining and ResetAfter.
	Take(ctx context.Context, key string, rate Rate, cost int64) (Result, error)
	// Refund gives back n units previously taken under rate (TPM settle:
	// reserved estimate minus real usage). The state never goes below a full
	// bucket, so refunds cannot bank capacity beyond Burst. A negative n
	// charges -n extra units (real usage above the estimate) without
	// blocking: the key goes into debt and later Takes wait it out.
	// by is the Backend of the Result of the matching Take.
	Refund(ctx context.Context, key string, rate Rate, n int64, by Backend) error

	// Acquire takes one of slots concurrency slots on key for id (unique per
	// request). The slot expires by itself after lease, so a crashed process
	// cannot leak it. Acquiring an id that already holds a slot renews its
	// lease and is always admitted (use it as a heartbeat for long streams).
	Acquire(ctx context.Context, key, id string, slots int64, lease time.Duration) (Result, error)
	// Release frees the slot of id. Releasing an unknown or expired id is a
	// no-op. by is the Backend of the Result of the matching Acquire.
	Release(ctx context.Context, key, id string, by Backend) error

	// Reserve counts amount against a fixed-window budget. window names the
	// bucket (e.g. "2026-11-25" or "2026-11"); its state expires at expires.
	// The request is admitted when spent+reserved before this call is <
	// limit; reserved then grows by amount. Decisions are atomic, so however
	// many requests race, reservations overshoot the limit by less than one
	// amount (settled spend can exceed it further when actual > reserved).
	// A window whose expires is not in the future
	// is already over: the call is admitted (if limit > 0) but nothing is
	// recorded.
	Reserve(ctx context.Context, key, window string, limit, amount int64, expires time.Time) (Result, error)
	// Settle converts a reservation into real spend: reserved decreases by
	// reserved (never below 0) and spent increases by actual. actual may be
	// used with reserved == 0 to record spend that was never reserved.
	// expires must be the window's expiry passed to Reserve. by is the
	// Backend of the Result of the matching Reserve.
	Settle(ctx context.Context, key, window string, reserved, actual int64, expires time.Time, by Backend) error
	// Spent reads the settled spend and the outstanding reservations of a
	// budget window (for the admin API). Unknown or expired windows read 0.
	Spent(ctx context.Context, key, window string) (spent, reserved int64, err error)
}

// gcra holds the per-call constants of a Rate in the fixed-point time
// representation shared by all backends: whole microseconds plus a fraction
// in units of 1/m microsecond, with m = 1000*Limit, so that one unit lasts
// exactly periodNs/m microseconds.
type gcra struct {
	limit, burst int64
	periodNs     int64
	m            int64 // fraction denominator: 1000*limit
	tauQ, tauR   int64 // burst tolerance Burst*T = tauQ + tauR/m µs
}

func (r Rate) compile() (gcra, error) {
	if r.Limit < 1 || r.Limit > MaxLimit {
		return gcra{}, fmt.Errorf("%w: rate limit %d out of range [1, %d]", ErrInvalid, r.Limit, int64(MaxLimit))
	}
	if r.Period <= 0 {
		return gcra{}, fmt.Errorf("%w: rate period %v must be positive", ErrInvalid, r.Period)
	}
	g := gcra{limit: r.Limit, burst: r.Burst, periodNs: int64(r.Period), m: 1000 * r.Limit}
	if g.burst <= 0 {
		g.burst = r.Limit
	}
	if g.burst > MaxLimit {
		return gcra{}, fmt.Errorf("%w: rate burst %d out of range [1, %d]", ErrInvalid, g.burst, int64(MaxLimit))
	}
	var ok bool
	g.tauQ, g.tauR, ok = g.span(g.burst)
	if !ok {
		return gcra{}, fmt.Errorf("%w: rate burst tolerance %d*%v/%d too long", ErrInvalid, g.burst, r.Period, r.Limit)
	}
	return g, nil
}

// span returns n*T as q + r/m microseconds; ok is false when q > maxSpan.
func (g *gcra) span(n int64) (q, r int64, ok bool) {
	hi, lo := bits.Mul64(uint64(n), uint64(g.periodNs))
	if hi >= uint64(g.m) {
		return 0, 0, false
	}
	uq, ur := bits.Div64(hi, lo, uint64(g.m))
	if uq > maxSpan {
		return 0, 0, false
	}
	return int64(uq), int64(ur), true
}

// spanClamped is span with the result clamped to maxSpan.
func (g *gcra) spanClamped(n int64) (q, r int64) {
	q, r, ok := g.span(n)
	if !ok {
		return maxSpan, 0
	}
	return q, r
}

// result fills the rate fields of a Result from the state after the decision:
// d = dq + df/m µs is TAT - now (>= 0) and, when denied, the would-be TAT
// offset nq + nf/m.
func (g *gcra) result(allowed, never bool, dq, df, nq, nf int64) Result {
	res := Result{Allowed: allowed, Limit: g.limit, Never: never}
	res.ResetAfter = ceilMicros(dq, df)
	res.Remaining = g.remaining(dq, df)
	if !allowed && !never {
		// (nq + nf/m) - (tauQ + tauR/m) > 0, rounded up to whole µs.
		over := nq - g.tauQ
		if nf > g.tauR {
			over++
		}
		res.RetryAfter = time.Duration(max(over, 1)) * time.Microsecond
	}
	return res
}

// remaining returns floor((tau - d)/T) clamped to [0, burst]: the largest
// cost that would be admitted now.
func (g *gcra) remaining(dq, df int64) int64 {
	q := g.tauQ - dq
	r := g.tauR - df // in (-m, m)
	if q < 0 || (q == 0 && r < 0) {
		return 0
	}
	// x = q*m + r, in units of 1/m µs; one unit of rate lasts periodNs of them.
	hi, lo := bits.Mul64(uint64(q), uint64(g.m))
	var borrow, carry uint64
	if r >= 0 {
		lo, carry = bits.Add64(lo, uint64(r), 0)
		hi += carry
	} else {
		lo, borrow = bits.Sub64(lo, uint64(-r), 0)
		hi -= borrow
	}
	if hi >= uint64(g.periodNs) {
		return g.burst
	}
	n, _ := bits.Div64(hi, lo, uint64(g.periodNs))
	if n > uint64(g.burst) {
		return g.burst
	}
	return int64(n)
}

func ceilMicros(q, frac int64) time.Duration {
	if frac > 0 {
		q++
	}
	return time.Duration(q) * time.Microsecond
}

// gcraState is a TAT in the fixed-point representation: tq µs + tf/m µs.
type gcraState struct {
	tq, tf int64
}

// take runs one GCRA decision at time now (µs). It mirrors admitScript in
// redis.go exactly. cost <= burst is required; incQ/incR is cost*T.
// It returns the new state, whether it changed and the Result inputs.
func (g *gcra) take(s gcraState, now, incQ, incR int64, write bool) (ns gcraState, changed, allowed bool, dq, df, nq, nf int64) {
	if s.tq < now {
		s = gcraState{tq: now}
	}
	if s.tf >= g.m { // the limit of the key was lowered
		s.tf = g.m - 1
	}
	dq, df = s.tq-now, s.tf
	if !write {
		return s, false, true, dq, df, 0, 0
	}
	nq, nf = dq+incQ, df+incR
	if nf >= g.m {
		nf -= g.m
		nq++
	}
	if nq < g.tauQ || (nq == g.tauQ && nf <= g.tauR) {
		return gcraState{tq: now + nq, tf: nf}, incQ != 0 || incR != 0, true, nq, nf, 0, 0
	}
	return s, false, false, dq, df, nq, nf
}

// refund applies Refund(n) at time now. It mirrors refundScript. remove reports
// that the state is equivalent to a full bucket and can be dropped.
func (g *gcra) refund(s gcraState, exists bool, now, n int64) (ns gcraState, remove bool) {
	if s.tf >= g.m {
		s.tf = g.m - 1
	}
	if n >= 0 {
		if !exists || s.tq < now {
			return s, true
		}
		q, r := g.spanClamped(n)
		s.tq -= q
		s.tf -= r
		if s.tf < 0 {
			s.tf += g.m
			s.tq--
		}
		return s, s.tq < now || (s.tq == now && s.tf == 0) // TAT <= now: full bucket
	}
	if !exists || s.tq < now {
		s = gcraState{tq: now}
	}
	q, r := g.spanClamped(-max(n, -math.MaxInt64))
	s.tq += q
	s.tf += r
	if s.tf >= g.m {
		s.tf -= g.m
		s.tq++
	}
	if s.tq-now > maxSpan {
		s = gcraState{tq: now + maxSpan}
	}
	return s, false
}

func validCost(cost int64) error {
	if cost < 0 {
		return fmt.Errorf("%w: negative cost %d", ErrInvalid, cost)
	}
	return nil
}

func validSlot(id string, slots int64, lease time.Duration) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty concurrency id", ErrInvalid)
	case slots < 1:
		return fmt.Errorf("%w: concurrency slots %d must be >= 1", ErrInvalid, slots)
	case lease <= 0:
		return fmt.Errorf("%w: concurrency lease %v must be positive", ErrInvalid, lease)
	}
	return nil
}

func validAmounts(a, b int64) error {
	if a < 0 || b < 0 {
		return fmt.Errorf("%w: negative budget amount (%d, %d)", ErrInvalid, a, b)
	}
	return nil
}

// budgetResult builds the Result of a Reserve.
func budgetResult(allowed bool, limit, spent, reserved int64, untilExpiry time.Duration) Result {
	res := Result{Allowed: allowed, Limit: limit, ResetAfter: max(untilExpiry, 0)}
	res.Remaining = max(limit-satAdd(spent, reserved), 0)
	if !allowed {
		if limit <= 0 {
			res.Never = true
		} else {
			res.RetryAfter = res.ResetAfter
		}
	}
	return res
}

func satAdd(a, b int64) int64 {
	s := a + b
	if (s > a) != (b > 0) {
		if b > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return s
}
