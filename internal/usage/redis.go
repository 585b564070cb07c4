package usage

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisLedger is a [Ledger] shared by every gateway process using the same
// Redis and prefix. Each key and window is one hash
//
//	<prefix><key>@<window>  {requests, input, output, cached, cost, cache_hits, saved, saved_cost}
//
// incremented with HINCRBY in a MULTI/EXEC transaction together with a
// PEXPIREAT at the window's end, so records never outlive their window. A
// transaction touches that one key only, so Redis Cluster works too.
type RedisLedger struct {
	client redis.UniversalClient
	prefix string
}

var _ Ledger = (*RedisLedger)(nil)

// recordFields are the hash fields of a Record, in Record field order.
var recordFields = [...]string{"requests", "input", "output", "cached", "cost", "cache_hits", "saved", "saved_cost"}

// NewRedisLedger returns a ledger storing records in client under keys
// starting with prefix (e.g. "aigw:usage:"). The client is owned by the
// caller.
func NewRedisLedger(client redis.UniversalClient, prefix string) *RedisLedger {
	return &RedisLedger{client: client, prefix: prefix}
}

func (l *RedisLedger) key(key, window string) string { return l.prefix + key + "@" + window }

// Add implements [Ledger].
func (l *RedisLedger) Add(ctx context.Context, key, window string, r Record, expires time.Time) error {
	if !expires.After(time.Now()) {
		return nil
	}
	k := l.key(key, window)
	vals := [...]int64{r.Requests, r.InputTokens, r.OutputTokens, r.CachedTokens, r.CostMicros, r.CacheHits, r.SavedTokens, r.SavedMicros}
	_, err := l.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i, f := range recordFields {
			if vals[i] != 0 {
				p.HIncrBy(ctx, k, f, vals[i])
			}
		}
		p.PExpireAt(ctx, k, expires)
		return nil
	})
	if err != nil {
		return fmt.Errorf("usage: redis: %w", err)
	}
	return nil
}

// Get implements [Ledger].
func (l *RedisLedger) Get(ctx context.Context, key, window string) (Record, error) {
	v, err := l.client.HMGet(ctx, l.key(key, window), recordFields[:]...).Result()
	if err != nil {
		return Record{}, fmt.Errorf("usage: redis: %w", err)
	}
	var out [len(recordFields)]int64
	for i, x := range v {
		switch x := x.(type) {
		case nil:
		case string:
			if out[i], err = strconv.ParseInt(x, 10, 64); err != nil {
				return Record{}, fmt.Errorf("usage: redis: bad %s field %q: %w", recordFields[i], x, err)
			}
		default:
			return Record{}, errors.New("usage: redis: unexpected reply type")
		}
	}
	return Record{out[0], out[1], out[2], out[3], out[4], out[5], out[6], out[7]}, nil
}

// pipeAdd queues Add's commands on p (a settlement's pipeline): HINCRBY
// per field and PEXPIREAT, without MULTI/EXEC, so a reader may see a
// record's fields land one after the other within the pipeline.
func (l *RedisLedger) pipeAdd(ctx context.Context, p redis.Pipeliner, key, window string, r Record, expires time.Time) []redis.Cmder {
	if !expires.After(time.Now()) {
		return nil
	}
	k := l.key(key, window)
	vals := [...]int64{r.Requests, r.InputTokens, r.OutputTokens, r.CachedTokens, r.CostMicros, r.CacheHits, r.SavedTokens, r.SavedMicros}
	cmds := make([]redis.Cmder, 0, len(vals)+1)
	for i, f := range recordFields {
		if vals[i] != 0 {
			cmds = append(cmds, p.HIncrBy(ctx, k, f, vals[i]))
		}
	}
	return append(cmds, p.PExpireAt(ctx, k, expires))
}
