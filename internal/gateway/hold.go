package gateway

import (
	"net/http"
	"strconv"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
)

// holdKind is what a hold counts, and so how it settles.
type holdKind uint8

const (
	// holdBudget reserves the estimated cost against a budget; it settles
	// to the real cost.
	holdBudget holdKind = iota
	// holdRequests takes one request from an RPM; it is given back only
	// when the admission is refused.
	holdRequests
	// holdTokens takes the token estimate from a TPM; the part the request
	// did not use is given back.
	holdTokens
	// holdSlot takes a concurrency slot; it is released however the request
	// ends.
	holdSlot
)

// hold is one limit an admitted request holds until it ends. Its take and
// its settlement are limiter operations described as data
// ([ratelimit.Op]), so that an admission's operations can be decided
// together.
type hold struct {
	kind holdKind
	what string // in logs: "rpm", "model tpm", … (the refusing limit)
	// headers: the decision sets the x-ratelimit-* headers of its kind.
	headers bool
	take    *ratelimit.Op     // in its admission's ops
	by      ratelimit.Backend // the backend that decided the take
}

// ending is what holds settle from: how the request ended and what it
// really used.
type ending struct {
	outcome Outcome
	usage   openai.Usage
	cost    int64 // micro-USD of usage at the answering model's price
}

// settlement is the operation that settles hd for e; ok is false when there
// is nothing to do. A request that got no answer gives back everything
// reserved; an answered one keeps its reservation unless its usage is known,
// and then settles to it.
func (hd *hold) settlement(e ending) (op ratelimit.Op, ok bool) {
	t := hd.take
	switch hd.kind {
	case holdBudget:
		var actual int64
		if e.outcome.Answered() {
			actual = t.Amount
			if e.usage.Known {
				actual = e.cost
			}
		}
		return ratelimit.Op{Kind: ratelimit.OpSettle, Key: t.Key, Window: t.Window, Reserved: t.Amount, Amount: actual,
			Expires: t.Expires, By: hd.by}, true
	case holdRequests:
		if e.outcome != OutcomeRefused {
			return op, false
		}
		return ratelimit.Op{Kind: ratelimit.OpRefund, Key: t.Key, Rate: t.Rate, Amount: t.Amount, By: hd.by}, true
	case holdTokens:
		refund := t.Amount
		if e.outcome.Answered() {
			refund = 0
			if e.usage.Known {
				refund = t.Amount - (e.usage.InputTokens + e.usage.OutputTokens)
			}
		}
		if refund == 0 {
			return op, false
		}
		return ratelimit.Op{Kind: ratelimit.OpRefund, Key: t.Key, Rate: t.Rate, Amount: refund, By: hd.by}, true
	case holdSlot:
		return ratelimit.Op{Kind: ratelimit.OpRelease, Key: t.Key, ID: t.ID, By: hd.by}, true
	}
	return op, false
}

// rateHeaders gathers OpenAI's x-ratelimit-* headers of an admission's
// decisions and sets them with two allocations: one string holding every
// value, one slice backing the header values.
type rateHeaders struct {
	n    int
	name [6]string
	end  [6]int // end of each value in buf
	buf  [160]byte
}

// add adds the three headers of hd's kind from its decision.
func (rh *rateHeaders) add(hd *hold, res ratelimit.Result) {
	names := [3]string{hdrLimitRequests, hdrRemainingRequests, hdrResetRequests}
	if hd.kind == holdTokens {
		names = [3]string{hdrLimitTokens, hdrRemainingTokens, hdrResetTokens}
	}
	if rh.n+3 > len(rh.name) {
		return
	}
	b := rh.buf[:rh.used()]
	b = strconv.AppendInt(b, hd.take.Rate.Limit, 10)
	rh.name[rh.n], rh.end[rh.n] = names[0], len(b)
	b = strconv.AppendInt(b, res.Remaining, 10)
	rh.name[rh.n+1], rh.end[rh.n+1] = names[1], len(b)
	b = appendResetDuration(b, res.ResetAfter)
	rh.name[rh.n+2], rh.end[rh.n+2] = names[2], len(b)
	if len(b) > len(rh.buf) { // cannot happen (two kinds of three values of at most 20 bytes)
		return // and b is not rh.buf: nothing refers to it
	}
	rh.n += 3
}

func (rh *rateHeaders) used() int {
	if rh.n == 0 {
		return 0
	}
	return rh.end[rh.n-1]
}

// set sets the gathered headers on h.
func (rh *rateHeaders) set(h http.Header) {
	if rh.n == 0 {
		return
	}
	all := string(rh.buf[:rh.used()])
	vals := make([]string, rh.n)
	start := 0
	for i := range rh.n {
		vals[i] = all[start:rh.end[i]]
		start = rh.end[i]
		h[rh.name[i]] = vals[i : i+1 : i+1]
	}
}

// appendResetDuration appends d the way OpenAI's reset headers show it
// ("1s", "6m0s", "20ms"): fmtDuration(d), without its allocation.
func appendResetDuration(b []byte, d time.Duration) []byte {
	switch {
	case d <= 0:
		return append(b, "0s"...)
	case d < time.Second:
		ms := int64(d.Round(time.Millisecond) / time.Millisecond)
		switch ms {
		case 0:
			return append(b, "0s"...)
		case 1000:
			return append(b, "1s"...)
		}
		return append(strconv.AppendInt(b, ms, 10), "ms"...)
	}
	s := int64(d.Round(time.Second) / time.Second)
	h, m := s/3600, s/60%60
	s %= 60
	if h > 0 {
		b = append(strconv.AppendInt(b, h, 10), 'h')
	}
	if h > 0 || m > 0 {
		b = append(strconv.AppendInt(b, m, 10), 'm')
	}
	return append(strconv.AppendInt(b, s, 10), 's')
}
