package gateway

import (
	"net/http"

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
	take    ratelimit.Op
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
	t := &hd.take
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

// setHeaders sets OpenAI's x-ratelimit-* headers of hd's kind from its
// decision.
func (hd *hold) setHeaders(h http.Header, res ratelimit.Result) {
	limit := hd.take.Rate.Limit
	if hd.kind == holdTokens {
		setRateHeaders(h, hdrLimitTokens, hdrRemainingTokens, hdrResetTokens, limit, res)
		return
	}
	setRateHeaders(h, hdrLimitRequests, hdrRemainingRequests, hdrResetRequests, limit, res)
}
