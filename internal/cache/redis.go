package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/redis/go-redis/v9"
)

// Redis is the store shared by every gateway on one Redis: each entry is
// one string, zstd-compressed, with a time to live,
//
//	<prefix>c:<namespace hash>:<route hash>:{<key>}       the entry
//	<prefix>l:{<key>}                                      its coalescing lock
//
// so that deletes by namespace or model are one SCAN pattern, and an entry
// and its lock share a Cluster hash slot.
type Redis struct {
	client redis.UniversalClient
	prefix string
	enc    *zstd.Encoder
	dec    *zstd.Decoder
}

// NewRedis returns a store on client (owned by the caller) under prefix.
func NewRedis(client redis.UniversalClient, prefix string) (*Redis, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(256<<20))
	if err != nil {
		return nil, err
	}
	return &Redis{client: client, prefix: prefix, enc: enc, dec: dec}, nil
}

// Close releases the codecs (not the client).
func (r *Redis) Close() { r.dec.Close() }

func short(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

func (r *Redis) entryKey(ref Ref) string {
	return r.prefix + "c:" + short(ref.Namespace) + ":" + short(ref.Route) + ":{" + ref.Key.String() + "}"
}

func (r *Redis) lockKey(ref Ref) string { return r.prefix + "l:{" + ref.Key.String() + "}" }

func (r *Redis) decode(b []byte) (*Entry, error) {
	raw, err := r.dec.DecodeAll(b, nil)
	if err != nil {
		return nil, fmt.Errorf("cache: decompressing: %w", err)
	}
	e := new(Entry)
	if err := e.UnmarshalBinary(raw); err != nil {
		return nil, err
	}
	return e, nil
}

// Get implements Store.
func (r *Redis) Get(ctx context.Context, ref Ref) (*Entry, error) {
	b, err := r.client.Get(ctx, r.entryKey(ref)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return r.decode(b)
}

// Set implements Store.
func (r *Redis) Set(ctx context.Context, ref Ref, e *Entry) error {
	raw, _ := e.MarshalBinary()
	return r.client.Set(ctx, r.entryKey(ref), r.enc.EncodeAll(raw, nil), max(time.Until(e.Expires), time.Millisecond)).Err()
}

// Lock implements Locker.
func (r *Redis) Lock(ctx context.Context, ref Ref, token string, ttl time.Duration) (bool, error) {
	return r.client.SetNX(ctx, r.lockKey(ref), token, ttl).Result()
}

var unlockScript = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) end return 0`)

// Unlock implements Locker.
func (r *Redis) Unlock(ctx context.Context, ref Ref, token string) error {
	return unlockScript.Run(ctx, r.client, []string{r.lockKey(ref)}, token).Err()
}

// Poll implements Locker: one round trip (GET and EXISTS in a pipeline).
func (r *Redis) Poll(ctx context.Context, ref Ref) (*Entry, bool, error) {
	var get *redis.StringCmd
	var exists *redis.IntCmd
	_, err := r.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, r.entryKey(ref))
		exists = p.Exists(ctx, r.lockKey(ref))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, err
	}
	locked := exists.Val() > 0
	b, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, locked, nil
	}
	if err != nil {
		return nil, locked, err
	}
	e, err := r.decode(b)
	return e, locked, err
}

// scan calls fn with batches of the keys matching pattern, on every master
// of a Cluster.
func (r *Redis) scan(ctx context.Context, pattern string, fn func(c redis.UniversalClient, keys []string) error) error {
	each := func(ctx context.Context, c redis.UniversalClient) error {
		var cursor uint64
		for {
			keys, next, err := c.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return err
			}
			if len(keys) > 0 {
				if err := fn(c, keys); err != nil {
					return err
				}
			}
			if cursor = next; cursor == 0 {
				return nil
			}
		}
	}
	if cc, ok := r.client.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return each(ctx, c) })
	}
	return each(ctx, r.client)
}

// Delete implements Store.
func (r *Redis) Delete(ctx context.Context, f Filter) (int64, error) {
	ns, route := "*", "*"
	if f.Namespace != "" {
		ns = short(f.Namespace)
	}
	if f.Model != "" {
		route = short(f.Model)
	}
	var n int64
	err := r.scan(ctx, r.prefix+"c:"+ns+":"+route+":*", func(c redis.UniversalClient, keys []string) error {
		for _, k := range keys { // one slot each (Cluster)
			d, err := c.Del(ctx, k).Result()
			if err != nil {
				return err
			}
			n += d
		}
		return nil
	})
	return n, err
}

// Stats implements Store.
func (r *Redis) Stats(ctx context.Context) (StoreStats, error) {
	var st StoreStats
	err := r.scan(ctx, r.prefix+"c:*", func(c redis.UniversalClient, keys []string) error {
		st.Entries += int64(len(keys))
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.StrLen(ctx, k)
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for _, c := range cmds {
			if ic, ok := c.(*redis.IntCmd); ok {
				st.Bytes += ic.Val()
			}
		}
		return nil
	})
	return st, err
}

var (
	_ Store  = (*Redis)(nil)
	_ Locker = (*Redis)(nil)
)
