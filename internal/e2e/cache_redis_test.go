package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

func startRedisCacheGateway(t *testing.T, fake *Fake, rs *redistest.Server) *Gateway {
	t.Helper()
	return startCacheGateway(t, fake, map[string]any{
		"Extra": "redis redis://" + rs.Addr() + " {\n\t\t\ttimeout 200ms\n\t\t}",
		"Cache": "backend redis\n\t\t\tttl 10m",
	})
}

// TestCacheRedisStampede: two gateways on one Redis; 1,000 identical cold
// requests spread over both (half streaming) make one upstream call (two
// at most: the lock is a SET NX PX of 10s; the second gateway goes
// upstream itself only if the first one's lock expired or was lost, e.g.
// Redis restarted, before its entry was stored).
func TestCacheRedisStampede(t *testing.T) {
	rs := redistest.Start(t)
	fake := startFake(t, fakellm.Options{Name: "fake", Chunks: 8, TTFT: 500 * time.Millisecond, ChunkDelay: 50 * time.Millisecond})
	a := startRedisCacheGateway(t, fake, rs)
	b := startRedisCacheGateway(t, fake, rs)
	answers := stampede(t, []string{a.URL, b.URL}, 1000, "redis stampede")
	checkSame(t, answers)
	if n := chatCalls(fake); n > 2 {
		t.Fatalf("%d upstream calls, want 1 (2 at most)", n)
	} else {
		t.Logf("%d upstream call(s)", n)
	}
	if keys := rs.Keys("aigw:cache:c:*"); len(keys) != 1 {
		t.Fatalf("redis entries %v", keys)
	}
	// An entry stored by one gateway is a hit on the other.
	ctx := context.Background()
	if got := ask(ctx, a.URL, cacheBody("demo", "across", false)); got.cache != "miss" {
		t.Fatalf("%+v", got)
	}
	if got := ask(ctx, b.URL, cacheBody("demo", "across", true)); got.cache != "hit" || got.chunks < 2 {
		t.Fatalf("%+v", got)
	}
}

// TestCacheRedisDown: with Redis killed mid-traffic every request is still
// answered (bypassing the cache); after Redis restarts the cache works
// again.
func TestCacheRedisDown(t *testing.T) {
	rs := redistest.Start(t)
	fake := startFake(t, fakellm.Options{Name: "fake"})
	gw := startRedisCacheGateway(t, fake, rs)
	ctx := context.Background()
	verdicts := map[string]int{}
	for i := range 60 {
		if i == 20 {
			rs.Kill()
		}
		if i == 45 {
			rs.Restart()
		}
		got := ask(ctx, gw.URL, cacheBody("demo", fmt.Sprintf("down %d", i%5), i%2 == 0))
		if got.status != 200 || got.err != nil || !strings.HasPrefix(got.content, "Hello from fake") {
			t.Fatalf("request %d: %+v", i, got)
		}
		if i >= 22 && i < 45 && got.cache != "bypass" {
			t.Fatalf("request %d with Redis down: %+v", i, got)
		}
		verdicts[got.cache]++
	}
	t.Logf("verdicts: %v", verdicts)
	eventually(t, 10*time.Second, func() bool {
		ask(ctx, gw.URL, cacheBody("demo", "back", false))
		return ask(ctx, gw.URL, cacheBody("demo", "back", false)).cache == "hit"
	}, "the cache did not come back after Redis restarted")
	if logs := gw.Logs(); strings.Count(logs, "cache store unavailable") != 1 || !strings.Contains(logs, "cache store is back") {
		t.Fatalf("want one outage log line and one recovery line:\n%s", tail(logs, 3000))
	}
}
