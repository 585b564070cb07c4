package auth_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

func TestRedisSuite(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	client := srv.Client()
	runStoreSuite(t, func(t *testing.T, static []*auth.Key) (auth.Store, error) {
		return auth.NewRedis(client, "test:"+t.Name()+":", static)
	})
}

func TestRedisClusterSuite(t *testing.T) {
	// Create and Delete are scripts over three keys: on a cluster they only
	// run when the keys share a slot.
	t.Parallel()
	cl := redistest.StartCluster(t)
	client := cl.Client()
	runStoreSuite(t, func(t *testing.T, static []*auth.Key) (auth.Store, error) {
		return auth.NewRedis(client, "test:"+t.Name()+":", static)
	})
}

func TestRedisClusterSharedBetweenProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cl := redistest.StartCluster(t)
	a, err := auth.NewRedis(cl.Client(), "aigw:", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := auth.NewRedis(cl.Client(), "aigw:", nil)
	if err != nil {
		t.Fatal(err)
	}
	k, secret := newKey(t, "shared")
	h := auth.HashSecret(secret)
	if err := a.Create(ctx, k); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, b, h, true, auth.NegativeCacheTTL)
	if list, err := b.List(ctx); err != nil || len(list) != 1 || list[0].Name != "shared" {
		t.Fatalf("B List = %v, %v", list, err)
	}
	if err := b.Create(ctx, k); !errors.Is(err, auth.ErrExists) {
		t.Fatalf("B Create of A's key: %v", err)
	}
	if err := b.Delete(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	waitLookup(t, a, h, false, auth.PositiveCacheTTL)
	if keys := cl.Keys("aigw:*"); len(keys) != 0 {
		t.Fatalf("keys left after Delete: %v", keys)
	}
}

func TestRedisRejectsEmptyHashTag(t *testing.T) {
	// NewRedis does not talk to Redis.
	for _, prefix := range []string{"{}", "gw:{}:", "{}{x}"} {
		if _, err := auth.NewRedis(nil, prefix, nil); err == nil {
			t.Errorf("prefix %q accepted", prefix)
		}
	}
	for _, prefix := range []string{"", "gw:", "{gw}:", "gw{"} {
		if _, err := auth.NewRedis(nil, prefix, nil); err != nil {
			t.Errorf("prefix %q: %v", prefix, err)
		}
	}
}

func TestRedisSharedBetweenProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	a, err := auth.NewRedis(srv.Client(), "aigw:", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := auth.NewRedis(srv.Client(), "aigw:", nil)
	if err != nil {
		t.Fatal(err)
	}
	k, secret := newKey(t, "shared")
	h := auth.HashSecret(secret)

	// B caches "unknown", then A creates the key: B accepts it within the
	// negative TTL.
	if _, err := b.Lookup(ctx, h); !errors.Is(err, auth.ErrNotFound) {
		t.Fatal(err)
	}
	if err := a.Create(ctx, k); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Lookup(ctx, h); err != nil || got.Name != "shared" {
		t.Fatalf("A Lookup after its own Create = %+v, %v", got, err)
	}
	waitLookup(t, b, h, true, auth.NegativeCacheTTL)
	if got, err := b.Get(ctx, "shared"); err != nil || got.Policy.Budget != 5 {
		t.Fatalf("B Get = %+v, %v", got, err)
	}
	if list, err := b.List(ctx); err != nil || len(list) != 1 {
		t.Fatalf("B List = %v, %v", list, err)
	}

	// Nothing stored in Redis contains the secret.
	client := srv.Client()
	keys, err := client.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, rk := range keys {
		dump, _ := client.Dump(ctx, rk).Result()
		if strings.Contains(rk, secret) || strings.Contains(dump, secret) {
			t.Fatalf("redis key %q holds the secret", rk)
		}
	}

	// A deletes it: A stops at once, B within the positive TTL.
	if err := a.Delete(ctx, "shared"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Lookup(ctx, h); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("A Lookup after its own Delete: %v", err)
	}
	waitLookup(t, b, h, false, auth.PositiveCacheTTL)
	if err := b.Delete(ctx, "shared"); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("B Delete of a deleted key: %v", err)
	}
	if n, _ := client.Exists(ctx, "aigw:{keys}:key:shared", "aigw:{keys}:hash:"+h.String()).Result(); n != 0 {
		t.Fatalf("%d redis keys left after Delete", n)
	}
	if n, _ := client.SCard(ctx, "aigw:{keys}:names").Result(); n != 0 {
		t.Fatalf("%d names left after Delete", n)
	}
}

// waitLookup polls s until Lookup(h) finds a key (found) or ErrNotFound, and
// fails when that takes longer than within plus some slack.
func waitLookup(t *testing.T, s auth.Store, h auth.Hash, found bool, within time.Duration) {
	t.Helper()
	start := time.Now()
	for {
		_, err := s.Lookup(context.Background(), h)
		if err != nil && !errors.Is(err, auth.ErrNotFound) {
			t.Fatal(err)
		}
		if (err == nil) == found {
			t.Logf("converged after %v", time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > within+time.Second {
			t.Fatalf("Lookup still found=%v after %v, want within %v", !found, time.Since(start), within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRedisUniquenessAcrossProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	var stores [2]*auth.Redis
	for i := range stores {
		s, err := auth.NewRedis(srv.Client(), "race:", nil)
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = s
	}
	shared, _ := newKey(t, "hash-owner")
	for round := range 5 {
		var byName, byHash atomic.Int32
		var wg sync.WaitGroup
		name := "contested-" + string(rune('a'+round))
		for i := range 16 {
			s := stores[i%2]
			k, _ := newKey(t, name) // same name, different secrets
			sameHash := *shared     // same secret, different names
			sameHash.Name = name + "-" + string(rune('a'+i))
			wg.Go(func() {
				for _, c := range []struct {
					k   *auth.Key
					won *atomic.Int32
				}{{k, &byName}, {&sameHash, &byHash}} {
					switch err := s.Create(ctx, c.k); {
					case err == nil:
						c.won.Add(1)
					case !errors.Is(err, auth.ErrExists):
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if byName.Load() != 1 || byHash.Load() != 1 {
			t.Fatalf("round %d: %d Creates of one name and %d of one secret succeeded, want 1 each", round, byName.Load(), byHash.Load())
		}
		// Free the secret for the next round. The Delete also evicts what
		// this Lookup cached.
		s := stores[round%2]
		got, err := s.Lookup(ctx, shared.Hash)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Delete(ctx, got.Name); err != nil {
			t.Fatal(err)
		}
	}
}
