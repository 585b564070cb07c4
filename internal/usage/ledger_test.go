package usage_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

func TestMemoryLedger(t *testing.T) {
	t.Parallel()
	runLedgerSuite(t, func(*testing.T) [2]usage.Ledger {
		l := usage.NewMemoryLedger()
		return [2]usage.Ledger{l, l}
	})
}

func TestRedisLedger(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// Two ledgers with their own clients act as two gateway processes.
	a, b := srv.Client(), srv.Client()
	runLedgerSuite(t, func(t *testing.T) [2]usage.Ledger {
		prefix := "test:" + t.Name() + ":"
		return [2]usage.Ledger{usage.NewRedisLedger(a, prefix), usage.NewRedisLedger(b, prefix)}
	})
}

func TestRedisClusterLedger(t *testing.T) {
	t.Parallel()
	cl := redistest.StartCluster(t)
	a, b := cl.Client(), cl.Client()
	runLedgerSuite(t, func(t *testing.T) [2]usage.Ledger {
		prefix := "test:" + t.Name() + ":"
		return [2]usage.Ledger{usage.NewRedisLedger(a, prefix), usage.NewRedisLedger(b, prefix)}
	})
}

// runLedgerSuite checks a Ledger; the factory returns two ledgers sharing
// their state (the same one twice for Memory).
func runLedgerSuite(t *testing.T, newLedgers func(*testing.T) [2]usage.Ledger) {
	ctx := context.Background()
	one := usage.Record{Requests: 1, InputTokens: 100, OutputTokens: 20, CachedTokens: 40, CostMicros: 333}

	t.Run("AddGet", func(t *testing.T) {
		t.Parallel()
		l := newLedgers(t)[0]
		exp := time.Now().Add(time.Hour)
		if got, err := l.Get(ctx, "k", "2026-11"); err != nil || got != (usage.Record{}) {
			t.Fatalf("empty Get = %+v, %v", got, err)
		}
		mustAdd(t, l, "k", "2026-11", one, exp)
		mustAdd(t, l, "k", "2026-11", usage.Record{Requests: 1, CostMicros: 7}, exp)
		mustAdd(t, l, "k", "2026-12", one, exp)
		mustAdd(t, l, "other", "2026-11", one, exp)
		want := usage.Record{Requests: 2, InputTokens: 100, OutputTokens: 20, CachedTokens: 40, CostMicros: 340}
		if got, err := l.Get(ctx, "k", "2026-11"); err != nil || got != want {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, want)
		}
		// A window that is already over records nothing.
		mustAdd(t, l, "k", "2026-10", one, time.Now().Add(-time.Second))
		if got, _ := l.Get(ctx, "k", "2026-10"); got != (usage.Record{}) {
			t.Fatalf("expired window recorded %+v", got)
		}
	})

	t.Run("Expiry", func(t *testing.T) {
		t.Parallel()
		l := newLedgers(t)[0]
		mustAdd(t, l, "k", "w", one, time.Now().Add(500*time.Millisecond))
		if got, _ := l.Get(ctx, "k", "w"); got != one {
			t.Fatalf("Get = %+v", got)
		}
		time.Sleep(600 * time.Millisecond)
		if got, _ := l.Get(ctx, "k", "w"); got != (usage.Record{}) {
			t.Fatalf("Get after expiry = %+v", got)
		}
		// The next Add starts a fresh record.
		mustAdd(t, l, "k", "w", one, time.Now().Add(time.Hour))
		if got, _ := l.Get(ctx, "k", "w"); got != one {
			t.Fatalf("Get after re-Add = %+v", got)
		}
	})

	t.Run("ConcurrentAddsSumExactly", func(t *testing.T) {
		t.Parallel()
		ls := newLedgers(t)
		exp := time.Now().Add(time.Hour)
		const workers, adds = 8, 50
		var wg sync.WaitGroup
		for w := range workers {
			l := ls[w%2]
			wg.Go(func() {
				for range adds {
					if err := l.Add(ctx, "k", "w", one, exp); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		n := int64(workers * adds)
		want := usage.Record{Requests: n, InputTokens: 100 * n, OutputTokens: 20 * n, CachedTokens: 40 * n, CostMicros: 333 * n}
		for i, l := range ls {
			if got, err := l.Get(ctx, "k", "w"); err != nil || got != want {
				t.Fatalf("ledger %d: Get = %+v, %v; want %+v", i, got, err, want)
			}
		}
	})
}

func mustAdd(t *testing.T, l usage.Ledger, key, window string, r usage.Record, exp time.Time) {
	t.Helper()
	if err := l.Add(context.Background(), key, window, r, exp); err != nil {
		t.Fatal(err)
	}
}

func TestRedisLedgerTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	client := srv.Client()
	l := usage.NewRedisLedger(client, "aigw:usage:")
	_, end := usage.Window("day", time.Now())
	mustAdd(t, l, "team-a", "today", usage.Record{Requests: 1, CostMicros: 5}, end)
	got, err := client.PExpireTime(ctx, "aigw:usage:team-a@today").Result()
	if err != nil {
		t.Fatal(err)
	}
	if got != time.Duration(end.UnixMilli())*time.Millisecond {
		t.Fatalf("PEXPIRETIME = %v, want the window end %v", got, end)
	}
	if f, _ := client.HGetAll(ctx, "aigw:usage:team-a@today").Result(); f["requests"] != "1" || f["cost"] != "5" || len(f) != 2 {
		t.Fatalf("stored fields %v", f)
	}
}

func TestMemoryLedgerDropsExpiredWindows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := usage.NewMemoryLedger()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	usage.SetLedgerClock(l, func() time.Time { return now })
	window := func(i int) string { return time.Unix(int64(i), 0).UTC().Format(time.DateTime) }
	for i := range 1500 { // one sweep (at 1024, nothing expired yet) doubles the threshold
		mustAdd(t, l, "k", window(i), usage.Record{Requests: 1}, now.Add(time.Minute))
	}
	now = now.Add(time.Minute)
	if got, _ := l.Get(ctx, "k", window(0)); got != (usage.Record{}) {
		t.Fatalf("expired record read as %+v", got)
	}
	if n := usage.LedgerLen(l); n != 1499 {
		t.Fatalf("%d records after reading an expired one, want 1499", n)
	}
	// Growing the map to the threshold sweeps the expired windows.
	for i := range 600 {
		mustAdd(t, l, "live", window(i), usage.Record{Requests: 1}, now.Add(time.Hour))
	}
	if n := usage.LedgerLen(l); n != 600 {
		t.Fatalf("%d records kept, want the 600 live ones", n)
	}
	if got, _ := l.Get(ctx, "live", window(3)); got.Requests != 1 {
		t.Fatalf("live record %+v", got)
	}
}
