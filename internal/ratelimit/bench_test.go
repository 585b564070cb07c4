package ratelimit_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"syscall"
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

// BenchmarkRedisAdmission runs a full admission (budget, key RPM, TPM and
// concurrency, model RPM and TPM) and its settlement (with a ledger-like
// write), counting Redis round trips: "admit-trips/op" before the upstream
// call, "settle-trips/op" after it.
func BenchmarkRedisAdmission(b *testing.B) {
	srv := redistest.Start(b)
	client, trips := countedClient(b, srv)
	ctx := context.Background()
	l := ratelimit.NewRedis(client, "bench:")
	e := env{lim: l, now: time.Now}
	ops := admissionOps(e, "warm", 1)
	for i := range ops {
		ops[i].Rate = benchRate
		ops[i].Limit = 1 << 50
	}
	run := func(id string) (admit, settle int64) {
		ops[3].ID = id
		if res, err := l.Admit(ctx, ops); err != nil || !res.Allowed() {
			b.Fatalf("Admit: %+v, %v", res, err)
		}
		s, p := trips.take()
		admit = s + p
		if _, err := ratelimit.Apply(ctx, l, []ratelimit.Settlement{settlementOf(ops, hashWrite{client, "bench:ledger"})}); err != nil {
			b.Fatal(err)
		}
		s, p = trips.take()
		return admit, s + p
	}
	run("warm") // loads the scripts
	var admit, settle int64
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a, s := run(strconv.Itoa(i))
		admit, settle = admit+a, settle+s
		i++
	}
	b.ReportMetric(float64(admit)/float64(i), "admit-trips/op")
	b.ReportMetric(float64(settle)/float64(i), "settle-trips/op")
}

// BenchmarkRedisAdmissionParallel runs the full admission of
// BenchmarkRedisAdmission from many goroutines at once (each its own
// concurrency id), as requests do under load, without the settlement:
// "scripts/op" counts the admission scripts sent per admission and
// "cpu-ns/op" the process's CPU time per admission (redis-server's not
// included).
func BenchmarkRedisAdmissionParallel(b *testing.B) {
	srv := redistest.Start(b)
	client, trips := countedClient(b, srv)
	ctx := context.Background()
	l := ratelimit.NewRedis(client, "benchp:")
	e := env{lim: l, now: time.Now}
	base := admissionOps(e, "warm", 1)
	for i := range base {
		base[i].Rate = benchRate
		base[i].Limit = 1 << 50
		base[i].Slots = 1 << 30
		base[i].Lease = time.Hour
	}
	if res, err := l.Admit(ctx, base); err != nil || !res.Allowed() { // loads the script
		b.Fatalf("Admit: %+v, %v", res, err)
	}
	trips.take()
	var worker atomic.Int64
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		ops := append([]ratelimit.Op(nil), base...)
		prefix := strconv.FormatInt(worker.Add(1), 10) + "-"
		i := 0
		for pb.Next() {
			ops[3].ID = prefix + strconv.Itoa(i)
			if res, err := l.Admit(ctx, ops); err != nil || !res.Allowed() {
				b.Errorf("Admit: %+v, %v", res, err)
				return
			}
			i++
		}
	})
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano()
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
	s, p := trips.take()
	b.ReportMetric(float64(s+p)/float64(b.N), "scripts/op")
}

// BenchmarkRedisAdmissionOneByOne is the same admission and settlement one
// operation at a time, for comparison.
func BenchmarkRedisAdmissionOneByOne(b *testing.B) {
	srv := redistest.Start(b)
	client, trips := countedClient(b, srv)
	ctx := context.Background()
	l := ratelimit.NewRedis(client, "bench1:")
	e := env{lim: l, now: time.Now}
	ops := admissionOps(e, "warm", 1)
	for i := range ops {
		ops[i].Rate = benchRate
		ops[i].Limit = 1 << 50
	}
	run := func(id string) (admit, settle int64) {
		ops[3].ID = id
		for _, o := range ops {
			if res, err := o.Do(ctx, l); err != nil || !res.Allowed {
				b.Fatalf("%v: %+v, %v", o.Kind, res, err)
			}
		}
		s, p := trips.take()
		admit = s + p
		st := settlementOf(ops, hashWrite{client, "bench1:ledger"})
		for _, o := range st.Ops {
			if _, err := o.Do(ctx, l); err != nil {
				b.Fatal(err)
			}
		}
		for _, w := range st.Writes {
			if err := w.Do(ctx); err != nil {
				b.Fatal(err)
			}
		}
		s, p = trips.take()
		return admit, s + p
	}
	run("warm")
	var admit, settle int64
	i := 0
	for b.Loop() {
		a, s := run(strconv.Itoa(i))
		admit, settle = admit+a, settle+s
		i++
	}
	b.ReportMetric(float64(admit)/float64(i), "admit-trips/op")
	b.ReportMetric(float64(settle)/float64(i), "settle-trips/op")
}
