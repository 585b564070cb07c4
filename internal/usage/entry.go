package usage

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
)

// Entry is one [Ledger.Add] described as data, so that it can travel with
// a limiter settlement (it is a ratelimit.Write): in the settlement's
// Redis pipeline for a [RedisLedger], on its own for any other.
type Entry struct {
	Ledger  Ledger
	Key     string
	Window  string
	Record  Record
	Expires time.Time
}

// Pipe queues the entry on p when its ledger is a RedisLedger.
func (e *Entry) Pipe(ctx context.Context, p redis.Pipeliner) ([]redis.Cmder, bool) {
	rl, ok := e.Ledger.(*RedisLedger)
	if !ok {
		return nil, false
	}
	return rl.pipeAdd(ctx, p, e.Key, e.Window, e.Record, e.Expires), true
}

// HashAdd is the entry as a ratelimit.HashAdd when its ledger is a
// RedisLedger, so that it is applied by the settlement's own script: the
// record's non-zero fields, nothing when its window is over.
func (e *Entry) HashAdd() (ratelimit.HashAdd, bool) {
	rl, ok := e.Ledger.(*RedisLedger)
	if !ok {
		return ratelimit.HashAdd{}, false
	}
	if !e.Expires.After(time.Now()) {
		return ratelimit.HashAdd{}, true
	}
	r := &e.Record
	vals := [...]int64{r.Requests, r.InputTokens, r.OutputTokens, r.CachedTokens, r.CostMicros}
	fv := new(struct { // one allocation for both
		fields [len(vals)]string
		values [len(vals)]int64
	})
	n := 0
	for i, v := range vals {
		if v != 0 {
			fv.fields[n], fv.values[n] = recordFields[i], v
			n++
		}
	}
	return ratelimit.HashAdd{Key: rl.key(e.Key, e.Window), Expires: e.Expires, Fields: fv.fields[:n:n], Values: fv.values[:n:n]}, true
}

// Do adds the entry to its ledger.
func (e *Entry) Do(ctx context.Context) error {
	return e.Ledger.Add(ctx, e.Key, e.Window, e.Record, e.Expires)
}
