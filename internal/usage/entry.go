package usage

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
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

// Do adds the entry to its ledger.
func (e *Entry) Do(ctx context.Context) error {
	return e.Ledger.Add(ctx, e.Key, e.Window, e.Record, e.Expires)
}
