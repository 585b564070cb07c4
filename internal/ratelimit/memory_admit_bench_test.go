package ratelimit_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
)

// BenchmarkMemoryAdmission is the full pipeline's admission in process
// (budget, key RPM/TPM, concurrency, model RPM/TPM) while 32 other
// requests of the key hold a concurrency lease, as under make bench's 32
// connections, and its release.
func BenchmarkMemoryAdmission(b *testing.B) {
	ctx := context.Background()
	m := ratelimit.NewMemory(nil)
	e := env{lim: m, now: time.Now}
	ops := admissionOps(e, "warm", 1)
	for i := range ops {
		ops[i].Rate = benchRate
		ops[i].Limit = 1 << 50
	}
	ops[3].Slots = 1 << 20
	for i := range 32 {
		if _, err := m.Acquire(ctx, ops[3].Key, "held-"+strconv.Itoa(i), ops[3].Slots, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		ops[3].ID = "bench"
		if res, err := m.Admit(ctx, ops); err != nil || !res.Allowed() {
			b.Fatalf("Admit: %+v, %v", res, err)
		}
		if err := m.Release(ctx, ops[3].Key, "bench", ratelimit.BackendPrimary); err != nil {
			b.Fatal(err)
		}
	}
}
