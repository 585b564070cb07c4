package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

var benchRate = ratelimit.Rate{Limit: 1 << 30, Period: time.Minute, Burst: 1 << 20}

func BenchmarkMemoryTake(b *testing.B) {
	ctx := context.Background()
	m := ratelimit.NewMemory(nil)
	b.Run("OneKey", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.Take(ctx, "key:team-a:rpm", benchRate, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Parallel", func(b *testing.B) {
		keys := []string{"key:a:rpm", "key:b:rpm", "key:c:rpm", "key:d:rpm", "key:e:rpm", "key:f:rpm", "key:g:rpm", "key:h:rpm"}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := m.Take(ctx, keys[i%len(keys)], benchRate, 1); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}

func BenchmarkRedisTake(b *testing.B) {
	srv := redistest.Start(b)
	ctx := context.Background()
	l := ratelimit.NewRedis(srv.Client(), "bench:")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Take(ctx, "key:team-a:rpm", benchRate, 1); err != nil {
			b.Fatal(err)
		}
	}
}
