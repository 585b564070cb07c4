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
// carries a TTL; nothing is read, modified and written back from Go. An
// admission of many operations is one script (see [Redis.Admit] for Redis
// Cluster, where it is one script per hash slot); the undo operations of
// settlements are pipelined (see [Apply]).
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

// admitScript decides an admission: KEYS has one key per operation and
// ARGV seven values per operation, the first its kind:
//
//	t  Take: m, tauQ, tauR, incQ, incR (µs, fractions in 1/m µs)
//	p  Take of cost 0 (a peek); n  Take of cost > burst (never admitted)
//	a  Acquire: id, slots, lease ms
//	b  Reserve: limit, amount, expires (unix ms)
//
// Redis TIME is read once. Every operation is checked against the state
// before the admission; only when all are admitted are they written. The
// reply is {refused (1-based, 0 when admitted), then five values per
// operation}: Take {allowed, dq, df, nq, nf} (mirrors gcra.take), Acquire
// {allowed, holders, ms until last expiry, ms until first expiry, 0},
// Reserve {allowed, spent, reserved, ms until expiry, 0}, each the state
// after the admission as if it were taken.
var admitScript = redis.NewScript(luaPrelude + `
local t = redis.call('TIME')
local nowUs = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nowMs = math.floor(nowUs / 1000)

local function take(key, mode, m, tauQ, tauR, incQ, incR)
  local v = redis.call('HMGET', key, 'q', 'f')
  local tq, tf = tonumber(v[1]), tonumber(v[2]) or 0
  if tq == nil or tq < nowUs then tq, tf = nowUs, 0 end
  if tf >= m then tf = m - 1 end
  local dq, df = tq - nowUs, tf
  if mode == 'p' then return {1, dq, df, 0, 0} end
  if mode == 'n' then return {0, dq, df, 0, 0} end
  local nq, nf = dq + incQ, df + incR
  if nf >= m then nf, nq = nf - m, nq + 1 end
  if nq < tauQ or (nq == tauQ and nf <= tauR) then
    return {1, nq, nf, 0, 0}, function()
      if incQ > 0 or incR > 0 then
        redis.call('HSET', key, 'q', int(nowUs + nq), 'f', int(nf))
        local d = nq
        if nf > 0 then d = d + 1 end
        redis.call('PEXPIRE', key, int(math.max(1, math.ceil(d / 1000))))
      end
    end
  end
  return {0, dq, df, nq, nf}
end

-- ends returns the first and last expiry of the holders other than id.
local function ends(key, id)
  local first, last
  local lo = redis.call('ZRANGE', key, 0, 1, 'WITHSCORES')
  for i = 1, #lo, 2 do
    if lo[i] ~= id then first = tonumber(lo[i + 1]); break end
  end
  local hi = redis.call('ZREVRANGE', key, 0, 1, 'WITHSCORES')
  for i = 1, #hi, 2 do
    if hi[i] ~= id then last = tonumber(hi[i + 1]); break end
  end
  return first, last
end

local function acquire(key, id, slots, lease)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', nowMs)
  local n = redis.call('ZCARD', key)
  local held = redis.call('ZSCORE', key, id)
  local first, last = ends(key, id)
  local exp = nowMs + lease
  if held or n < slots then
    if not held then n = n + 1 end
    first, last = math.min(first or exp, exp), math.max(last or exp, exp)
    return {1, n, last - nowMs, first - nowMs, 0}, function()
      redis.call('ZADD', key, int(exp), id)
      redis.call('PEXPIRE', key, int(last - nowMs))
    end
  end
  local reset, retry = 0, 0
  if n > 0 then reset, retry = last - nowMs, first - nowMs end
  return {0, n, reset, retry, 0}
end

local function reserve(key, limit, amount, exp)
  if exp <= nowMs then
    if limit > 0 then return {1, 0, amount, 0, 0} end
    return {0, 0, amount, 0, 0}
  end
  local v = redis.call('HMGET', key, 'spent', 'reserved')
  local spent, reserved = tonumber(v[1]) or 0, tonumber(v[2]) or 0
  if spent + reserved >= limit then return {0, spent, reserved, exp - nowMs, 0} end
  if amount <= 0 then return {1, spent, reserved, exp - nowMs, 0} end
  return {1, spent, reserved + amount, exp - nowMs, 0}, function()
    redis.call('HINCRBY', key, 'reserved', int(amount))
    redis.call('PEXPIREAT', key, int(exp))
  end
end

local out, commits, refused = {0}, {}, 0
for i = 1, #KEYS do
  local a = (i - 1) * 7
  local kind = ARGV[a + 1]
  local x = {}
  for j = 2, 7 do x[j - 1] = ARGV[a + j] end
  local res, commit
  if kind == 'a' then
    res, commit = acquire(KEYS[i], x[1], tonumber(x[2]), tonumber(x[3]))
  elseif kind == 'b' then
    res, commit = reserve(KEYS[i], tonumber(x[1]), tonumber(x[2]), tonumber(x[3]))
  else
    res, commit = take(KEYS[i], kind, tonumber(x[1]), tonumber(x[2]), tonumber(x[3]), tonumber(x[4]), tonumber(x[5]))
  end
  if res[1] == 0 and refused == 0 then refused = i end
  if commit then commits[#commits + 1] = commit end
  for j = 1, 5 do out[#out + 1] = res[j] end
end
if refused == 0 then
  for _, commit in ipairs(commits) do commit() end
end
out[1] = refused
return out
`)

// refundScript mirrors gcra.refund in ratelimit.go.
//
// KEYS[1] state key. ARGV: mode (r=refund, c=charge), m, incQ, incR: the
// units as µs + fraction in 1/m µs.
var refundScript = redis.NewScript(luaPrelude + `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mode = ARGV[1]
local m = tonumber(ARGV[2])
local incQ, incR = tonumber(ARGV[3]), tonumber(ARGV[4])
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
tq, tf = tq + incQ, tf + incR
if tf >= m then tf, tq = tf - m, tq + 1 end
if tq - now > 1125899906842624 then tq, tf = now + 1125899906842624, 0 end
store(tq, tf)
return 0
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
	_, err = refundScript.Run(ctx, r.client, []string{r.gcraKey(key)}, mode, g.m, q, f).Result()
	if err != nil {
		return fmt.Errorf("ratelimit: redis: %w", err)
	}
	return nil
}

// Release implements [Limiter].
func (r *Redis) Release(ctx context.Context, key, id string, _ Backend) error {
	if err := r.client.ZRem(ctx, r.concKey(key), id).Err(); err != nil {
		return fmt.Errorf("ratelimit: redis: %w", err)
	}
	return nil
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
