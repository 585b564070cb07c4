package ratelimit

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the shared [Limiter]: any number of gateway processes using the
// same Redis (and prefix) enforce the limits together, exactly.
//
// Every decision is one atomic Lua script (EVALSHA, falling back to EVAL when
// the script cache is empty, e.g. after a Redis restart) that takes the time
// from Redis TIME, so the clocks of the gateway hosts do not matter. Every key
// carries a TTL; nothing is read, modified and written back from Go. An
// admission of many operations is one script, and the admissions that
// arrive while one is in flight go together in the next (see
// [Redis.Admit]; for Redis Cluster, one script per hash slot); so is a batch of
// settlements (their undo operations and writes such as the usage record,
// those of one kind on one key added together; see [Apply]). What the
// scripts do, command by command, is described in scripts.go.
//
// Key layout, below prefix:
//
//	gcra:<key>             hash {q, f, v, e}: TAT as µs + fraction, the key's expiry (Take/Refund)
//	conc:<key>             sorted set id -> lease expiry in ms (Acquire/Release)
//	budget:<key>@<window>  hash {spent, reserved} (Reserve/Settle/Spent)
type Redis struct {
	client redis.UniversalClient
	prefix string
	names  keyNames
	lane0  admitLane // admissions' lane (see admitLane); a Cluster's slot 0
	lanes  sync.Map  // Cluster: hash slot -> *admitLane
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a limiter storing its state in client under keys starting
// with prefix (e.g. "aigw:rl:"). The client is owned by the caller.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix}
}

func (r *Redis) gcraKey(key string) string { return r.names.name("gcra:", key, "", r.prefix) }
func (r *Redis) concKey(key string) string { return r.names.name("conc:", key, "", r.prefix) }
func (r *Redis) budgetKey(key, window string) string {
	return r.names.name("budget:", key, window, r.prefix)
}

// keyNames remembers the Redis key names of the limiter keys in use, so
// that a request does not build them again: reads are an atomic load and a
// map lookup; a name not seen yet copies the map. Past maxKeyNames names
// (keys revoked, windows past) it starts over.
type keyNames struct {
	m  atomic.Pointer[map[keyName]string]
	mu sync.Mutex // serializes writers
}

type keyName struct{ family, key, window string }

const maxKeyNames = 4096

// name returns prefix+family+key, with "@"+window for a budget.
func (c *keyNames) name(family, key, window, prefix string) string {
	kn := keyName{family, key, window}
	if m := c.m.Load(); m != nil {
		if n, ok := (*m)[kn]; ok {
			return n
		}
	}
	n := prefix + family + key
	if family == "budget:" {
		n += "@" + window
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[keyName]string, 8)
	if m := c.m.Load(); m != nil && len(*m) < maxKeyNames {
		next = make(map[keyName]string, len(*m)+1)
		for k, v := range *m {
			next[k] = v
		}
	}
	next[kn] = n
	c.m.Store(&next)
	return n
}

// Take implements [Limiter].
func (r *Redis) Take(ctx context.Context, key string, rate Rate, cost int64) (Result, error) {
	return r.decideOne(ctx, Op{Kind: OpTake, Key: key, Rate: rate, Amount: cost})
}

// Acquire implements [Limiter].
func (r *Redis) Acquire(ctx context.Context, key, id string, slots int64, lease time.Duration) (Result, error) {
	return r.decideOne(ctx, Op{Kind: OpAcquire, Key: key, ID: id, Slots: slots, Lease: lease})
}

// Reserve implements [Limiter].
func (r *Redis) Reserve(ctx context.Context, key, window string, limit, amount int64, expires time.Time) (Result, error) {
	return r.decideOne(ctx, Op{Kind: OpReserve, Key: key, Window: window, Limit: limit, Amount: amount, Expires: expires})
}

func (r *Redis) decideOne(ctx context.Context, o Op) (Result, error) {
	res, err := r.Admit(ctx, []Op{o})
	if err != nil {
		return Result{}, err
	}
	return res.Results[0], nil
}

// Refund implements [Limiter]: one settlement script.
func (r *Redis) Refund(ctx context.Context, key string, rate Rate, n int64, _ Backend) error {
	return r.settleOne(ctx, Op{Kind: OpRefund, Key: key, Rate: rate, Amount: n})
}

// Release implements [Limiter].
func (r *Redis) Release(ctx context.Context, key, id string, _ Backend) error {
	if err := r.client.ZRem(ctx, r.concKey(key), id).Err(); err != nil {
		return fmt.Errorf("ratelimit: redis: %w", err)
	}
	return nil
}

// Settle implements [Limiter]: one settlement script.
func (r *Redis) Settle(ctx context.Context, key, window string, reserved, actual int64, expires time.Time, _ Backend) error {
	return r.settleOne(ctx, Op{Kind: OpSettle, Key: key, Window: window, Reserved: reserved, Amount: actual, Expires: expires})
}

// settleOne runs the settlement script for the one operation o.
func (r *Redis) settleOne(ctx context.Context, o Op) error {
	_, err := r.settleBatch(ctx, []Settlement{{Ops: []Op{o}}})
	return err
}

// Spent implements [Limiter].
func (r *Redis) Spent(ctx context.Context, key, window string) (spent, reserved int64, err error) {
	v, err := r.client.HMGet(ctx, r.budgetKey(key, window), "spent", "reserved").Result()
	if err != nil {
		return 0, 0, fmt.Errorf("ratelimit: redis: %w", err)
	}
	out := [2]int64{}
	for i, x := range v {
		switch x := x.(type) {
		case nil:
		case string:
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return 0, 0, fmt.Errorf("ratelimit: redis: bad budget field %q: %w", x, err)
			}
			out[i] = n
		default:
			return 0, 0, fmt.Errorf("ratelimit: redis: unexpected budget field %T", x)
		}
	}
	return out[0], out[1], nil
}
