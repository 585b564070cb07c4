package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the shared [Limiter]: any number of gateway processes using the
// same Redis (and prefix) enforce the limits together, exactly.
//
// Every decision is one atomic Lua script (EVALSHA, falling back to EVAL when
// the script cache is empty, e.g. after a Redis restart) that takes the time
// from Redis TIME, so the clocks of the gateway hosts do not matter. Every key
// carries a TTL; nothing is read, modified and written back from Go. Each
// script touches a single key, so Redis Cluster works too.
//
// Key layout, below prefix:
//
//	gcra:<key>             hash {q, f}: TAT as µs + fraction (Take/Refund)
//	conc:<key>             sorted set id -> lease expiry in ms (Acquire/Release)
//	budget:<key>@<window>  hash {spent, reserved} (Reserve/Settle/Spent)
type Redis struct {
	client redis.UniversalClient
	prefix string
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a limiter storing its state in client under keys starting
// with prefix (e.g. "aigw:rl:"). The client is owned by the caller.
func NewRedis(client redis.UniversalClient, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix}
}

// luaPrelude makes TIME followed by writes legal on Redis < 5, which would
// otherwise replicate the script verbatim. Later versions always replicate
// effects and treat the call as a no-op.
const luaPrelude = `
if redis.replicate_commands then redis.replicate_commands() end
local function int(x) return string.format('%d', x) end
`

// gcraScript mirrors gcra.take and gcra.refund in ratelimit.go.
//
// KEYS[1] state key. ARGV: mode (t=take, p=peek, r=refund, c=charge), m,
// tauQ, tauR, incQ, incR. Times are µs, fractions in 1/m µs.
// Returns {allowed, dq, df, nq, nf} for t/p, 0 for r/c.
var gcraScript = redis.NewScript(luaPrelude + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mode = ARGV[1]
local m = tonumber(ARGV[2])
local tauQ, tauR = tonumber(ARGV[3]), tonumber(ARGV[4])
local incQ, incR = tonumber(ARGV[5]), tonumber(ARGV[6])
local v = redis.call('HMGET', KEYS[1], 'q', 'f')
local tq, tf = tonumber(v[1]), tonumber(v[2]) or 0
local exists = tq ~= nil
if tf >= m then tf = m - 1 end
local function store(q, f)
  redis.call('HSET', KEYS[1], 'q', int(q), 'f', int(f))
  local d = q - now
  if f > 0 then d = d + 1 end
  redis.call('PEXPIRE', KEYS[1], int(math.max(1, math.ceil(d / 1000))))
end
if mode == 'r' then
  if (not exists) or tq < now then return 0 end
  tq, tf = tq - incQ, tf - incR
  if tf < 0 then tf, tq = tf + m, tq - 1 end
  if tq < now or (tq == now and tf == 0) then redis.call('DEL', KEYS[1]) else store(tq, tf) end
  return 0
end
if (not exists) or tq < now then tq, tf = now, 0 end
if mode == 'c' then
  tq, tf = tq + incQ, tf + incR
  if tf >= m then tf, tq = tf - m, tq + 1 end
  if tq - now > 1125899906842624 then tq, tf = now + 1125899906842624, 0 end
  store(tq, tf)
  return 0
end
local dq, df = tq - now, tf
if mode == 'p' then return {1, dq, df, 0, 0} end
local nq, nf = dq + incQ, df + incR
if nf >= m then nf, nq = nf - m, nq + 1 end
if nq < tauQ or (nq == tauQ and nf <= tauR) then
  if incQ > 0 or incR > 0 then store(now + nq, nf) end
  return {1, nq, nf, 0, 0}
end
return {0, dq, df, nq, nf}
`)

// concScript: KEYS[1] sorted set. ARGV: id, slots, lease ms.
// Returns {allowed, holders, ms until last expiry, ms until first expiry}.
var concScript = redis.NewScript(luaPrelude + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
local allowed = 0
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or n < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], int(now + tonumber(ARGV[3])), ARGV[1])
  allowed = 1
end
n = redis.call('ZCARD', KEYS[1])
local reset, retry = 0, 0
if n > 0 then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  reset = tonumber(last[2]) - now
  retry = tonumber(first[2]) - now
  redis.call('PEXPIRE', KEYS[1], int(reset))
end
return {allowed, n, reset, retry}
`)

// reserveScript: KEYS[1] budget hash. ARGV: limit, amount, expires (unix ms).
// Returns {allowed, spent, reserved, ms until expiry}.
var reserveScript = redis.NewScript(luaPrelude + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, amount, exp = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
if exp <= now then
  if limit > 0 then return {1, 0, amount, 0} end
  return {0, 0, amount, 0}
end
local v = redis.call('HMGET', KEYS[1], 'spent', 'reserved')
local spent, reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
if spent + reserved >= limit then return {0, spent, reserved, exp - now} end
if amount > 0 then
  reserved = redis.call('HINCRBY', KEYS[1], 'reserved', ARGV[2])
  redis.call('PEXPIREAT', KEYS[1], ARGV[3])
end
return {1, spent, reserved, exp - now}
`)

// settleScript: KEYS[1] budget hash. ARGV: reserved, actual, expires (unix ms).
var settleScript = redis.NewScript(luaPrelude + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[3]) <= now then return 0 end
local r = tonumber(redis.call('HGET', KEYS[1], 'reserved')) or 0
local dec = math.min(tonumber(ARGV[1]), r)
local actual = tonumber(ARGV[2])
if dec <= 0 and actual <= 0 then return 0 end
if dec > 0 then redis.call('HINCRBY', KEYS[1], 'reserved', int(-dec)) end
if actual > 0 then redis.call('HINCRBY', KEYS[1], 'spent', ARGV[2]) end
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return 0
`)

func (r *Redis) gcraKey(key string) string { return r.prefix + "gcra:" + key }
func (r *Redis) concKey(key string) string { return r.prefix + "conc:" + key }
func (r *Redis) budgetKey(key, window string) string {
	return r.prefix + "budget:" + key + "@" + window
}

func (r *Redis) run(ctx context.Context, s *redis.Script, key string, want int, args ...any) ([]int64, error) {
	vals, err := s.Run(ctx, r.client, []string{key}, args...).Int64Slice()
	if err != nil {
		return nil, fmt.Errorf("ratelimit: redis: %w", err)
	}
	if len(vals) != want {
		return nil, fmt.Errorf("ratelimit: redis: unexpected script reply %v", vals)
	}
	return vals, nil
}

// Take implements [Limiter].
func (r *Redis) Take(ctx context.Context, key string, rate Rate, cost int64) (Result, error) {
	g, err := rate.compile()
	if err != nil {
		return Result{}, err
	}
	if err := validCost(cost); err != nil {
		return Result{}, err
	}
	never := cost > g.burst
	mode := "t"
	var incQ, incR int64
	if never || cost == 0 {
		mode = "p"
	} else {
		incQ, incR, _ = g.span(cost)
	}
	v, err := r.run(ctx, gcraScript, r.gcraKey(key), 5, mode, g.m, g.tauQ, g.tauR, incQ, incR)
	if err != nil {
		return Result{}, err
	}
	return g.result(v[0] == 1 && !never, never, v[1], v[2], v[3], v[4]), nil
}

// Refund implements [Limiter].
func (r *Redis) Refund(ctx context.Context, key string, rate Rate, n int64, _ Backend) error {
	g, err := rate.compile()
	if err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	mode := "r"
	if n < 0 {
		mode = "c"
		n = -max(n, -math.MaxInt64) // |n| without overflowing on MinInt64
	}
	q, f := g.spanClamped(n)
	_, err = gcraScript.Run(ctx, r.client, []string{r.gcraKey(key)}, mode, g.m, g.tauQ, g.tauR, q, f).Result()
	if err != nil {
		return fmt.Errorf("ratelimit: redis: %w", err)
	}
	return nil
}

// Acquire implements [Limiter].
func (r *Redis) Acquire(ctx context.Context, key, id string, slots int64, lease time.Duration) (Result, error) {
	if err := validSlot(id, slots, lease); err != nil {
		return Result{}, err
	}
	leaseMs := (lease + time.Millisecond - 1) / time.Millisecond
	v, err := r.run(ctx, concScript, r.concKey(key), 4, id, slots, int64(leaseMs))
	if err != nil {
		return Result{}, err
	}
	res := Result{Allowed: v[0] == 1, Limit: slots, Remaining: max(slots-v[1], 0)}
	res.ResetAfter = time.Duration(v[2]) * time.Millisecond
	if !res.Allowed {
		res.RetryAfter = time.Duration(v[3]) * time.Millisecond
	}
	return res, nil
}

// Release implements [Limiter].
func (r *Redis) Release(ctx context.Context, key, id string, _ Backend) error {
	if err := r.client.ZRem(ctx, r.concKey(key), id).Err(); err != nil {
		return fmt.Errorf("ratelimit: redis: %w", err)
	}
	return nil
}

// Reserve implements [Limiter].
func (r *Redis) Reserve(ctx context.Context, key, window string, limit, amount int64, expires time.Time) (Result, error) {
	if err := validAmounts(amount, 0); err != nil {
		return Result{}, err
	}
	v, err := r.run(ctx, reserveScript, r.budgetKey(key, window), 4, limit, amount, expires.UnixMilli())
	if err != nil {
		return Result{}, err
	}
	return budgetResult(v[0] == 1, limit, v[1], v[2], time.Duration(v[3])*time.Millisecond), nil
}

// Settle implements [Limiter].
func (r *Redis) Settle(ctx context.Context, key, window string, reserved, actual int64, expires time.Time, _ Backend) error {
	if err := validAmounts(reserved, actual); err != nil {
		return err
	}
	if reserved == 0 && actual == 0 {
		return nil
	}
	err := settleScript.Run(ctx, r.client, []string{r.budgetKey(key, window)}, reserved, actual, expires.UnixMilli()).Err()
	if err != nil {
		return fmt.Errorf("ratelimit: redis: %w", err)
	}
	return nil
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
