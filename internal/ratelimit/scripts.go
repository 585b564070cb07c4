package ratelimit

import "github.com/redis/go-redis/v9"

// The Lua scripts of [Redis]: one decides an admission, one applies a
// settlement. Each runs as few Redis commands as it can, since every
// command inside a script is work on the one Redis thread:
//
//   - a rate (gcra:<key>, hash {q, f, v, e}) is read with one HMGET and
//     written with one HSET. Its expiry is moved only when the TAT would
//     outlive it, and then to a minute past the TAT (gcraSlackMs), so a
//     busy key is given a PEXPIREAT about once a minute rather than on
//     every request. e is that expiry (unix ms) and v the q it was set
//     with: a writer that moved q without setting e (an older version of
//     this code, which set the expiry to the TAT on every write) makes v
//     differ from q, and the expiry is then set again.
//   - a budget window (budget:<key>@<window>, hash {spent, reserved}) is
//     one HMGET and one write; its expiry (the window's end) is set when
//     the key is created, not on every request.
//   - a concurrency set (conc:<key>, sorted set id -> lease expiry in ms)
//     is counted with ZCARD; expired leases are pruned only when it is
//     full. A lease is one ZADD and a PEXPIRE GT (the key lives as long as
//     its last lease), a release one ZREM (one for a batch's releases of a
//     key).
//   - the admissions of a batch read each key once: the state is kept in
//     the script, updated by each admission that passes, and the rates
//     and budget windows are written back once after the last one (a
//     concurrency set's ZADD stays per lease, its expiry moved once).
//     A batch of five admissions of one key then runs about a fifth of
//     the commands of five calls.
//   - an admission's operations are one binary argument, read with
//     struct.unpack, and its reply one string of doubles: making and
//     converting a string per value was among the dearest steps on both
//     sides. A settlement's values are one argument too (length-prefixed
//     strings: its integers are added as strings, exact past 2^53).
//   - settlements (the undo operations and usage records of a batch of
//     requests) are one script, their operations and writes on one key
//     added together; TIME is read only when a rate is refunded.

// luaPrelude makes TIME followed by writes legal on Redis < 5, which would
// otherwise replicate the script verbatim (later versions always replicate
// effects and treat the call as a no-op), and holds what both scripts
// share: the rate state's load and store.
const luaPrelude = `
if redis.replicate_commands then redis.replicate_commands() end
local function int(x) return string.format('%d', x) end

local gcraSlackMs = 60000

-- gcraLoad returns a rate's TAT (q µs + f/m µs; q nil when there is no
-- state) and its key's expiry in unix ms when this code set it (nil when
-- unknown).
local function gcraLoad(key)
  local v = redis.call('HMGET', key, 'q', 'f', 'v', 'e')
  local e
  if v[1] and v[3] == v[1] then e = tonumber(v[4]) end
  return tonumber(v[1]), tonumber(v[2]) or 0, e
end

-- gcraStore stores the TAT q µs + f/m µs; the key's expiry e (from
-- gcraLoad) is moved only when the TAT would outlive it.
local function gcraStore(key, e, q, f)
  local qs = int(q)
  local need = math.ceil(q / 1000)
  if f > 0 and q % 1000 == 0 then need = need + 1 end
  if e and need <= e then
    redis.call('HSET', key, 'q', qs, 'f', int(f), 'v', qs)
    return
  end
  e = int(need + gcraSlackMs)
  redis.call('HSET', key, 'q', qs, 'f', int(f), 'v', qs, 'e', e)
  redis.call('PEXPIREAT', key, e)
end

-- plus returns cur + ds (ds an integer string) for an HSET when doubles
-- add them exactly: ds itself when cur is unset, else the sum as a number
-- (Redis writes an integral number's digits exactly, without a format
-- call here); otherwise HINCRBY adds ds and plus returns nil.
local function plus(key, field, cur, ds)
  if not cur then return ds end
  local a, b = tonumber(cur) or 0, tonumber(ds)
  if a > -1e15 and a < 1e15 and b > -1e15 and b < 1e15 then return a + b end
  redis.call('HINCRBY', key, field, ds)
end
`

// admitScript decides admissions, one after the other (a batch of them,
// see admitLane): KEYS has one key per operation, the admissions' in
// order, and ARGV[1] is one string of records (see admitRecordSize): per
// admission its number of operations n, then per operation its kind and
// five numbers (and an id):
//
//	t  Take: m, tauQ, tauR, incQ, incR (µs, fractions in 1/m µs)
//	p  Take of cost 0 (a peek); n  Take of cost > burst (never admitted)
//	a  Acquire: slots, lease ms, and the id
//	b  Reserve: limit, amount, expires (unix ms)
//
// Redis TIME is read once. Every operation of an admission is checked
// against the state before that admission (after the batch's earlier
// ones); only when all are admitted are they written. The reply, one
// string of little-endian doubles, is per admission {refused (1-based, 0
// when admitted), then five values per operation}: Take {allowed, dq, df,
// nq, nf} (mirrors gcra.take), Acquire {allowed, holders, ms until last
// expiry, ms until first expiry, 0}, Reserve {allowed, spent, reserved,
// ms until expiry, 0}, each the state after the admission as if it were
// taken.
var admitScript = redis.NewScript(luaPrelude + `
local t = redis.call('TIME')
local nowUs = tonumber(t[1]) * 1000000 + tonumber(t[2])
local nowMs = math.floor(nowUs / 1000)

-- arg is the admissions' records and pos the next one to read: reading a
-- record (struct.unpack) gives its numbers as numbers, without a string
-- per value to make and convert.
local arg, pos = ARGV[1], 1

-- out is the reply. Each decision writes its five reply values to out
-- from p and returns the function that commits it to the state below
-- when the whole admission passes (nil: nothing to commit) and the
-- function that completes the reply when the admission is refused (nil:
-- nothing to complete).
local out = {}

local function put(p, a, b, c, d, e)
  out[p], out[p + 1], out[p + 2], out[p + 3], out[p + 4] = a, b, c, d, e
end

-- The state the admissions read, per key, loaded at its first use in the
-- call and kept up to date by each admitted one, so that the next
-- admission of the batch decides on the state its predecessors left, as
-- separate calls would, without reading it again. The rates and budget
-- windows admitted are written back once, after the last admission, and a
-- concurrency set's expiry moved once (writeBack). order keeps the keys
-- in their first use, so that the writes run in a fixed order.
local rates, budgets, sets, order = {}, {}, {}, {}

local function rate(key)
  local r = rates[key]
  if not r then
    local q, f, e = gcraLoad(key)
    r = {q = q, f = f, e = e}
    rates[key] = r
    order[#order + 1] = key
  end
  return r
end

local function budget(key)
  local b = budgets[key]
  if not b then
    local v = redis.call('HMGET', key, 'spent', 'reserved')
    b = {spent = tonumber(v[1]) or 0, reserved = tonumber(v[2]) or 0, fresh = not v[1] and not v[2], add = 0}
    budgets[key] = b
    order[#order + 1] = key
  end
  return b
end

local function take(key, mode, p, m, tauQ, tauR, incQ, incR)
  local r = rate(key)
  local tq, tf = r.q, r.f
  if tq == nil or tq < nowUs then tq, tf = nowUs, 0 end
  if tf >= m then tf = m - 1 end
  local dq, df = tq - nowUs, tf
  if mode == 'p' then return put(p, 1, dq, df, 0, 0) end
  if mode == 'n' then return put(p, 0, dq, df, 0, 0) end
  local nq, nf = dq + incQ, df + incR
  if nf >= m then nf, nq = nf - m, nq + 1 end
  if nq < tauQ or (nq == tauQ and nf <= tauR) then
    put(p, 1, nq, nf, 0, 0)
    if incQ > 0 or incR > 0 then
      return function() r.q, r.f, r.dirty = nowUs + nq, nf, true end
    end
    return
  end
  put(p, 0, dq, df, nq, nf)
end

-- expireAfter makes key live at least ms more: PEXPIRE GT (Redis 7 and
-- later; a key created by this script has no expiry yet, so fresh is
-- true), or PTTL and PEXPIRE before that.
local function expireAfter(key, ms, fresh)
  if fresh then
    redis.call('PEXPIRE', key, ms)
  elseif redis.REDIS_VERSION_NUM then
    redis.call('PEXPIRE', key, ms, 'GT')
  elseif redis.call('PTTL', key) < ms then
    redis.call('PEXPIRE', key, ms)
  end
end

-- acquire counts the set (ZCARD). Expired leases are pruned and id's own
-- lease looked up only when the set is full (a crashed process's leases
-- take slots until then, and count in the holders reported), and the
-- oldest and newest leases read only when refused.
local function acquire(key, p, id, slots, lease)
  local c = sets[key]
  if not c then
    c = {n = redis.call('ZCARD', key)}
    sets[key] = c
    order[#order + 1] = key
  end
  local n, held = c.n, nil
  if n >= slots then
    n = n - redis.call('ZREMRANGEBYSCORE', key, '-inf', nowMs)
    c.n = n
    if n >= slots then held = redis.call('ZSCORE', key, id) ~= false end
  end
  if held or n < slots then
    local after = n
    if not held then after = n + 1 end -- when unknown: corrected below
    put(p, 1, after, lease, lease, 0)
    local complete
    if held == nil then
      complete = function()
        if redis.call('ZSCORE', key, id) then out[p + 1] = n end
      end
    end
    return function()
      if redis.call('ZADD', key, int(nowMs + lease), id) == 0 then
        out[p + 1] = n
      else
        c.n = n + 1
      end
      -- A lease that creates the set (none before it, or all pruned)
      -- gives it its first expiry: fresh, a PEXPIRE without GT.
      if n == 0 then c.fresh = true end
      c.lease = math.max(c.lease or 0, lease)
    end, complete
  end
  local lo = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local hi = redis.call('ZREVRANGE', key, 0, 0, 'WITHSCORES')
  put(p, 0, n, tonumber(hi[2]) - nowMs, tonumber(lo[2]) - nowMs, 0)
end

local function reserve(key, p, limit, amount, exp)
  if exp <= nowMs then
    if limit > 0 then return put(p, 1, 0, amount, 0, 0) end
    return put(p, 0, 0, amount, 0, 0)
  end
  local b = budget(key)
  local spent, reserved = b.spent, b.reserved
  if spent + reserved >= limit then return put(p, 0, spent, reserved, exp - nowMs, 0) end
  if amount <= 0 then return put(p, 1, spent, reserved, exp - nowMs, 0) end
  put(p, 1, spent, reserved + amount, exp - nowMs, 0)
  return function()
    b.reserved, b.add = b.reserved + amount, b.add + amount
    b.exp = b.exp or exp
  end
end

-- writeBack writes the rates and budget windows the admissions changed
-- and moves the expiry of the concurrency sets they joined.
local function writeBack()
  for _, key in ipairs(order) do
    local r, b, c = rates[key], budgets[key], sets[key]
    if r and r.dirty then gcraStore(key, r.e, r.q, r.f) end
    if b and b.add > 0 then
      redis.call('HINCRBY', key, 'reserved', int(b.add))
      if b.fresh then redis.call('PEXPIREAT', key, int(b.exp)) end
    end
    if c and c.lease then expireAfter(key, c.lease, c.fresh) end
  end
end

-- admit decides the admission of the n operations from KEYS[k + 1], whose
-- records follow pos; its reply goes to out from base: the refused
-- operation, then five values per operation.
local function admit(k, n, base)
  out[base] = 0 -- the array stays without holes
  local commits, nc, completes, refused = {}, 0, nil, 0
  for i = 1, n do
    local key, p = KEYS[k + i], base + 1 + (i - 1) * 5
    local kind, v1, v2, v3, v4, v5, id
    kind, v1, v2, v3, v4, v5, id, pos = struct.unpack('<c1dddddI4c0', arg, pos)
    local commit, complete
    if kind == 'a' then
      commit, complete = acquire(key, p, id, v1, v2)
    elseif kind == 'b' then
      commit = reserve(key, p, v1, v2, v3)
    else
      commit = take(key, kind, p, v1, v2, v3, v4, v5)
    end
    if refused == 0 and out[p] == 0 then refused = i end
    if commit then nc = nc + 1; commits[nc] = commit end
    if complete then
      completes = completes or {}
      completes[#completes + 1] = complete
    end
  end
  if refused == 0 then
    for j = 1, nc do commits[j]() end
  elseif completes then
    for j = 1, #completes do completes[j]() end
  end
  out[base] = refused
end

local k, at = 0, 1
while pos <= #arg do
  local n
  n, pos = struct.unpack('<I4', arg, pos)
  admit(k, n, at)
  k, at = k + n, at + 1 + 5 * n
end
writeBack()

-- The reply as doubles, packed a few hundred at a time (unpack puts them
-- on Lua's stack).
local parts, i = {}, 1
while i <= #out do
  local j = math.min(i + 255, #out)
  parts[#parts + 1] = struct.pack('<' .. string.rep('d', j - i + 1), unpack(out, i, j))
  i = j + 1
end
return table.concat(parts)
`)

// settleScript applies settlements: KEYS has one key per unit (an undo
// operation, or several of one kind on one key added together; see
// settleUnit), and ARGV[1] holds per unit its kind and values, each a
// string (uint32 length, little-endian, then its bytes; see appendArg),
// read into A:
//
//	r  Refund: m, incQ, incR (the units as µs + fraction in 1/m µs)
//	c  a negative Refund (a charge): the same
//	x  Release: n, then n ids (one ZREM)
//	s  Settle: reserved, actual, expires (unix ms)
//	h  a hash's integer fields incremented: expires (unix ms), n, then n
//	   field, increment pairs
//
// Refunds mirror gcra.refund in ratelimit.go; TIME is read once per call,
// when a rate is refunded. A budget window or hash that a settlement
// creates gets its expiry; a window already over is gone, and what a
// settlement would write to it is dropped by that expiry at once. Each
// unit runs under pcall: the reply lists the units that failed (1-based
// index, error), and the others are applied.
var settleScript = redis.NewScript(luaPrelude + `
-- A is the units' values, read from the one argument (one argument for
-- Redis to read rather than one per value).
local A = {}
do
  local arg, pos, n = ARGV[1], 1, 0
  while pos <= #arg do
    n = n + 1
    A[n], pos = struct.unpack('<I4c0', arg, pos)
  end
end
local nowUs
local function clock()
  if not nowUs then
    local t = redis.call('TIME')
    nowUs = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return nowUs
end

local function refund(key, mode, m, incQ, incR)
  local tq, tf, e = gcraLoad(key)
  if tq == nil and mode == 'r' then return end
  local now = clock()
  if tf >= m then tf = m - 1 end
  if mode == 'r' then
    if tq < now then return end
    tq, tf = tq - incQ, tf - incR
    if tf < 0 then tf, tq = tf + m, tq - 1 end
    if tq < now or (tq == now and tf == 0) then redis.call('DEL', key) else gcraStore(key, e, tq, tf) end
    return
  end
  if tq == nil or tq < now then tq, tf = now, 0 end
  tq, tf = tq + incQ, tf + incR
  if tf >= m then tf, tq = tf - m, tq + 1 end
  if tq - now > 1125899906842624 then tq, tf = now + 1125899906842624, 0 end
  gcraStore(key, e, tq, tf)
end

local function settle(key, reserved, actual, exp)
  local v = redis.call('HMGET', key, 'spent', 'reserved')
  local dec = math.min(tonumber(reserved), tonumber(v[2]) or 0)
  if dec <= 0 and tonumber(actual) <= 0 then return end
  local set = {}
  if dec > 0 then
    local s = plus(key, 'reserved', v[2], int(-dec))
    if s then set[#set + 1], set[#set + 2] = 'reserved', s end
  end
  if tonumber(actual) > 0 then
    local s = plus(key, 'spent', v[1], actual)
    if s then set[#set + 1], set[#set + 2] = 'spent', s end
  end
  if #set > 0 then redis.call('HSET', key, unpack(set)) end
  if not v[1] and not v[2] then redis.call('PEXPIREAT', key, exp) end
end

local function release(key, at, n)
  local ids = {}
  for j = 1, n do ids[j] = A[at + j - 1] end
  redis.call('ZREM', key, unpack(ids))
end

local function hashAdd(key, exp, at, n)
  local fields = {}
  for j = 1, n do fields[j] = A[at + 2 * j - 2] end
  local cur = redis.call('HMGET', key, unpack(fields))
  local set, created = {}, true
  for j = 1, n do
    if cur[j] then created = false end
    local s = plus(key, fields[j], cur[j], A[at + 2 * j - 1])
    if s then set[#set + 1], set[#set + 2] = fields[j], s end
  end
  if #set > 0 then redis.call('HSET', key, unpack(set)) end
  if created then redis.call('PEXPIREAT', key, exp) end
end

local failed = {}
local i = 1
for k = 1, #KEYS do
  local key, kind = KEYS[k], A[i]
  local ok, err = true, nil
  if kind == 'r' or kind == 'c' then
    ok, err = pcall(refund, key, kind, tonumber(A[i + 1]), tonumber(A[i + 2]), tonumber(A[i + 3]))
    i = i + 4
  elseif kind == 'x' then
    local n = tonumber(A[i + 1])
    if n > 0 then ok, err = pcall(release, key, i + 2, n) end
    i = i + 2 + n
  elseif kind == 's' then
    ok, err = pcall(settle, key, A[i + 1], A[i + 2], A[i + 3])
    i = i + 4
  elseif kind == 'h' then
    local n = tonumber(A[i + 2])
    if n > 0 then ok, err = pcall(hashAdd, key, A[i + 1], i + 3, n) end
    i = i + 3 + 2 * n
  else
    return redis.error_reply('unknown settlement kind ' .. tostring(kind))
  end
  if not ok then
    if type(err) == 'table' then err = err.err end
    failed[#failed + 1], failed[#failed + 2] = k, tostring(err)
  end
end
return failed
`)
