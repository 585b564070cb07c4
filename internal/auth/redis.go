package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lifetimes of the in-process Lookup cache of [Redis].
const (
	PositiveCacheTTL = 2 * time.Second
	NegativeCacheTTL = 500 * time.Millisecond
	// maxCacheEntries bounds the cache: when full, expired entries are
	// dropped, and if that is not enough the whole cache is cleared (so a
	// flood of unknown secrets cannot grow it).
	maxCacheEntries = 10000
)

// Redis is a [Store] whose runtime keys live in Redis and are shared by every
// gateway process using the same Redis and prefix. Static keys live only in
// the process (each process has its own configuration); they shadow runtime
// keys of the same name.
//
// Key layout, below prefix:
//
//	{keys}:key:<name>   hash {sha256, policy (JSON), created (RFC 3339)}
//	{keys}:hash:<hex>   string: the name of the key with that secret hash
//	{keys}:names        set of all runtime key names (for List)
//
// Create and Delete are atomic Lua scripts over three of these keys, so name
// and hash uniqueness hold across processes. The hash tag {keys} keeps every
// key of the store in one Redis Cluster slot, which such scripts need (a
// hash tag in prefix itself does the same).
//
// Lookup, the per-request path, is served from an in-process cache: a found
// key is cached for PositiveCacheTTL and an unknown hash for
// NegativeCacheTTL. Create and Delete on this process take effect here
// immediately; on other processes a deleted key keeps being accepted for up
// to PositiveCacheTTL and a new key may be rejected for up to
// NegativeCacheTTL. Get and List always read Redis.
type Redis struct {
	client redis.UniversalClient
	prefix string
	static index

	posTTL, negTTL time.Duration

	mu    sync.Mutex
	cache map[Hash]cacheEntry // guarded by mu
	gen   uint64              // bumped by every local change; guarded by mu
}

type cacheEntry struct {
	key     *Key // nil: not found
	expires time.Time
}

var _ Store = (*Redis)(nil)

// slotTag follows the prefix of every key of a [Redis] store: a Redis
// Cluster hash tag that puts them all in one slot.
const slotTag = "{keys}:"

// NewRedis returns a store keeping runtime keys in client under keys starting
// with prefix (e.g. "aigw:"). Static keys are validated as by [NewMemory].
// The client is owned by the caller.
func NewRedis(client redis.UniversalClient, prefix string, static []*Key) (*Redis, error) {
	// Redis Cluster hashes the text between the first '{' and the first '}'
	// after it; an empty "{}" there would make it hash whole key names.
	if i := strings.IndexByte(prefix, '{'); i >= 0 && strings.HasPrefix(prefix[i+1:], "}") {
		return nil, fmt.Errorf("auth: redis: prefix %q starts an empty hash tag {}", prefix)
	}
	st, err := staticIndex(static)
	if err != nil {
		return nil, err
	}
	return &Redis{
		client: client, prefix: prefix + slotTag, static: st,
		posTTL: PositiveCacheTTL, negTTL: NegativeCacheTTL,
		cache: make(map[Hash]cacheEntry),
	}, nil
}

// createScript: KEYS key:<name>, hash:<hex>, names. ARGV name, hex, policy,
// created. Returns 0 on success, 1 when the name is taken, 2 when the hash is.
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 2 end
redis.call('HSET', KEYS[1], 'sha256', ARGV[2], 'policy', ARGV[3], 'created', ARGV[4])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 0
`)

// deleteScript: KEYS key:<name>, hash:<hex>, names. ARGV name, hex. Returns
// 1 when deleted, 0 when there is no such key, -1 when the key's hash is no
// longer hex (deleted and re-created meanwhile: retry).
var deleteScript = redis.NewScript(`
local h = redis.call('HGET', KEYS[1], 'sha256')
if not h then return 0 end
if h ~= ARGV[2] then return -1 end
redis.call('DEL', KEYS[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
redis.call('SREM', KEYS[3], ARGV[1])
return 1
`)

func (r *Redis) keyKey(name string) string { return r.prefix + "key:" + name }
func (r *Redis) hashKey(hex string) string { return r.prefix + "hash:" + hex }
func (r *Redis) namesKey() string          { return r.prefix + "names" }

func redisErr(err error) error { return fmt.Errorf("auth: redis: %w", err) }

// Lookup implements [Store]. Redis errors are returned, not cached.
func (r *Redis) Lookup(ctx context.Context, h Hash) (*Key, error) {
	if k, ok := r.static.lookup(h); ok {
		return k.clone(), nil
	}
	now := time.Now()
	r.mu.Lock()
	e, ok := r.cache[h]
	gen := r.gen
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		if e.key == nil || !e.key.Hash.Equal(h) {
			return nil, ErrNotFound
		}
		return e.key.clone(), nil
	}

	k, err := r.fetch(ctx, h)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	ttl := r.posTTL
	if k == nil {
		ttl = r.negTTL
	}
	r.mu.Lock()
	if r.gen == gen { // no local Create/Delete raced with the read
		r.put(h, cacheEntry{key: k, expires: now.Add(ttl)})
	}
	r.mu.Unlock()
	if k == nil {
		return nil, ErrNotFound
	}
	return k.clone(), nil
}

// put stores a cache entry, making room first when the cache is full.
// Called with mu held.
func (r *Redis) put(h Hash, e cacheEntry) {
	if _, ok := r.cache[h]; !ok && len(r.cache) >= maxCacheEntries {
		now := time.Now()
		for k, v := range r.cache {
			if !now.Before(v.expires) {
				delete(r.cache, k)
			}
		}
		if len(r.cache) >= maxCacheEntries {
			clear(r.cache)
		}
	}
	r.cache[h] = e
}

// invalidate drops the cache entry of h and makes in-flight Lookups not
// cache what they read.
func (r *Redis) invalidate(h Hash) {
	r.mu.Lock()
	delete(r.cache, h)
	r.gen++
	r.mu.Unlock()
}

// fetch reads the runtime key with hash h from Redis.
func (r *Redis) fetch(ctx context.Context, h Hash) (*Key, error) {
	name, err := r.client.Get(ctx, r.hashKey(h.String())).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, redisErr(err)
	}
	k, err := r.get(ctx, name)
	if err != nil {
		return nil, err
	}
	if !k.Hash.Equal(h) {
		return nil, ErrNotFound
	}
	return k, nil
}

// get reads the runtime key called name from Redis.
func (r *Redis) get(ctx context.Context, name string) (*Key, error) {
	f, err := r.client.HGetAll(ctx, r.keyKey(name)).Result()
	if err != nil {
		return nil, redisErr(err)
	}
	return decodeKey(name, f)
}

// decodeKey builds a key from its Redis hash fields.
func decodeKey(name string, f map[string]string) (*Key, error) {
	if len(f) == 0 {
		return nil, ErrNotFound
	}
	k := &Key{Name: name}
	var err error
	if k.Hash, err = ParseHash(f["sha256"]); err != nil {
		return nil, fmt.Errorf("auth: redis: key %q: %w", name, err)
	}
	if err := json.Unmarshal([]byte(f["policy"]), &k.Policy); err != nil {
		return nil, fmt.Errorf("auth: redis: key %q: policy: %w", name, err)
	}
	if k.Created, err = time.Parse(time.RFC3339Nano, f["created"]); err != nil {
		return nil, fmt.Errorf("auth: redis: key %q: created: %w", name, err)
	}
	return k, nil
}

// Get implements [Store].
func (r *Redis) Get(ctx context.Context, name string) (*Key, error) {
	if k, ok := r.static.byName[name]; ok {
		return k.clone(), nil
	}
	if !ValidName(name) {
		return nil, ErrNotFound
	}
	return r.get(ctx, name)
}

// List implements [Store].
func (r *Redis) List(ctx context.Context) ([]*Key, error) {
	names, err := r.client.SMembers(ctx, r.namesKey()).Result()
	if err != nil {
		return nil, redisErr(err)
	}
	keys := make([]*Key, 0, len(names)+len(r.static.byName))
	for _, k := range r.static.byName {
		keys = append(keys, k.clone())
	}
	var cmds []*redis.MapStringStringCmd
	var runtime []string
	_, err = r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, n := range names {
			if _, ok := r.static.byName[n]; !ok {
				runtime = append(runtime, n)
				cmds = append(cmds, p.HGetAll(ctx, r.keyKey(n)))
			}
		}
		return nil
	})
	if err != nil {
		return nil, redisErr(err)
	}
	for i, c := range cmds {
		k, err := decodeKey(runtime[i], c.Val())
		if errors.Is(err, ErrNotFound) { // deleted meanwhile
			continue
		}
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	sortKeys(keys)
	return keys, nil
}

// Create implements [Store].
func (r *Redis) Create(ctx context.Context, k *Key) error {
	c, err := prepare(k, time.Now())
	if err != nil {
		return err
	}
	if err := r.static.conflict(c); err != nil {
		return err
	}
	policy, err := json.Marshal(c.Policy)
	if err != nil {
		return fmt.Errorf("auth: encoding policy: %w", err)
	}
	hex := c.Hash.String()
	res, err := createScript.Run(ctx, r.client,
		[]string{r.keyKey(c.Name), r.hashKey(hex), r.namesKey()},
		c.Name, hex, policy, c.Created.Format(time.RFC3339Nano)).Int()
	if err != nil {
		return redisErr(err)
	}
	switch res {
	case 0:
		r.invalidate(c.Hash)
		return nil
	case 1:
		return fmt.Errorf("%w: name %q is taken", ErrExists, c.Name)
	default:
		return fmt.Errorf("%w: key %q: the secret is already in use", ErrExists, c.Name)
	}
}

// Delete implements [Store]. Other processes may keep accepting the key for
// up to PositiveCacheTTL.
func (r *Redis) Delete(ctx context.Context, name string) error {
	if _, ok := r.static.byName[name]; ok {
		return ErrStatic
	}
	if !ValidName(name) {
		return ErrNotFound
	}
	for range 5 {
		hex, err := r.client.HGet(ctx, r.keyKey(name), "sha256").Result()
		if errors.Is(err, redis.Nil) {
			return ErrNotFound
		}
		if err != nil {
			return redisErr(err)
		}
		h, err := ParseHash(hex)
		if err != nil {
			return fmt.Errorf("auth: redis: key %q: %w", name, err)
		}
		res, err := deleteScript.Run(ctx, r.client,
			[]string{r.keyKey(name), r.hashKey(hex), r.namesKey()}, name, hex).Int()
		if err != nil {
			return redisErr(err)
		}
		switch res {
		case 1:
			r.invalidate(h)
			return nil
		case 0:
			return ErrNotFound
		}
	}
	return fmt.Errorf("auth: redis: deleting key %q: it keeps being re-created", name)
}
