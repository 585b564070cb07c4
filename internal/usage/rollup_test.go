package usage_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

var _ ratelimit.Write = (*usage.RollupEntry)(nil)

func TestMemoryRollups(t *testing.T) {
	t.Parallel()
	r := usage.NewMemoryRollups()
	runRollupSuite(t, [2]usage.Rollups{r, r})
}

func TestRedisRollups(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	// Two clients act as two gateway processes sharing the buckets.
	runRollupSuite(t, [2]usage.Rollups{usage.NewRedisRollups(srv.Client(), "t:"), usage.NewRedisRollups(srv.Client(), "t:")})
}

func runRollupSuite(t *testing.T, r [2]usage.Rollups) {
	ctx := context.Background()
	base := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	team := usage.Dims{Key: "team", Route: "demo", Provider: "a", UpstreamModel: "fake-model", Status: "200"}
	other := usage.Dims{Route: "demo", Provider: "b", UpstreamModel: "m2", Cache: "hit", Status: "200"}
	adds := []struct {
		i  int
		at time.Time
		d  usage.Dims
		c  usage.Counts
	}{
		{0, base.Add(5 * time.Minute), team, usage.Counts{Requests: 1, InputTokens: 10, OutputTokens: 20, CostMicros: 50}},
		{1, base.Add(50 * time.Minute), team, usage.Counts{Requests: 1, InputTokens: 1, OutputTokens: 2, CachedTokens: 1, CostMicros: 5}},
		{1, base.Add(70 * time.Minute), other, usage.Counts{Requests: 1}},
	}
	for _, a := range adds {
		if err := r[a.i].Add(ctx, a.at, a.d, a.c); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := r[0].Query(ctx, usage.StepHour, base, base.Add(3*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || !rows[0].Start.Equal(base) || rows[0].Dims != team ||
		rows[0].Counts != (usage.Counts{Requests: 2, InputTokens: 11, OutputTokens: 22, CachedTokens: 1, CostMicros: 55}) ||
		!rows[1].Start.Equal(base.Add(time.Hour)) || rows[1].Dims != other || rows[1].Requests != 1 {
		t.Fatalf("hour rows %+v", rows)
	}
	day := usage.StepDay.Start(base)
	rows, err = r[1].Query(ctx, usage.StepDay, day, day.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var total usage.Counts
	for _, row := range rows {
		if !row.Start.Equal(day) && !row.Start.Equal(day.Add(24*time.Hour)) {
			t.Fatalf("day row at %v", row.Start)
		}
		total.Add(row.Counts)
	}
	if total != (usage.Counts{Requests: 3, InputTokens: 11, OutputTokens: 22, CachedTokens: 1, CostMicros: 55}) {
		t.Fatalf("day total %+v", total)
	}
	if _, err := r[0].Query(ctx, usage.StepHour, base.Add(-5000*time.Hour), base); err == nil {
		t.Fatal("a query over too many buckets was accepted")
	}
}

// Rollup entries travelling in one settlement batch (the settlement
// queue's path with Redis: added together per bucket inside the script)
// give the rows the same entries added one by one in process give, and
// their buckets expire.
func TestRedisRollupsInSettlements(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	client := srv.Client()
	rr, mem := usage.NewRedisRollups(client, "s:"), usage.NewMemoryRollups()
	base := time.Now().UTC().Truncate(time.Hour).Add(-time.Hour)
	dims := []usage.Dims{
		{Key: "team", Route: "demo", Provider: "a", UpstreamModel: "fake-model", Status: "200"},
		{Route: "demo", Provider: "b", UpstreamModel: "m2", Cache: "hit", Status: "200"},
		{Key: "team", Route: "demo", Status: "429"},
	}
	var batch []ratelimit.Settlement
	for i := range 300 {
		at := base.Add(time.Duration(i) * 17 * time.Second)
		d := dims[i%len(dims)]
		c := usage.Counts{Requests: 1, InputTokens: int64(i), OutputTokens: int64(2 * i), CachedTokens: int64(i % 3), CostMicros: int64(i % 7)}
		batch = append(batch, ratelimit.Settlement{Writes: []ratelimit.Write{&usage.RollupEntry{Rollups: rr, At: at, Dims: d, Counts: c}}})
		if err := mem.Add(ctx, at, d, c); err != nil {
			t.Fatal(err)
		}
	}
	lim := ratelimit.NewRedis(client, "s:rl:")
	if lost, err := ratelimit.Apply(ctx, lim, batch[:1]); lost != 0 || err != nil {
		t.Fatal(lost, err)
	}
	if lost, err := ratelimit.Apply(ctx, lim, batch[1:]); lost != 0 || err != nil {
		t.Fatal(lost, err)
	}
	for _, step := range []usage.Step{usage.StepHour, usage.StepDay} {
		from, to := step.Start(base), base.Add(48*time.Hour)
		got, err := rr.Query(ctx, step, from, to)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := mem.Query(ctx, step, from, to)
		if len(got) != len(want) || len(got) == 0 {
			t.Fatalf("%s: %d rows, want %d", step, len(got), len(want))
		}
		for i := range got {
			if !got[i].Start.Equal(want[i].Start) || got[i].Dims != want[i].Dims || got[i].Counts != want[i].Counts {
				t.Fatalf("%s row %d: %+v, want %+v", step, i, got[i], want[i])
			}
		}
	}
	keys, err := client.Keys(ctx, "s:[hd]:*").Result()
	if err != nil || len(keys) < 2 {
		t.Fatalf("bucket keys %v %v", keys, err)
	}
	for _, k := range keys {
		if ttl := client.PTTL(ctx, k).Val(); ttl <= 0 {
			t.Errorf("%s: PTTL %v, want an expiry", k, ttl)
		}
	}
}

// Adds over three days, across hour and day boundaries, from a few apps
// interleaved and in runs, land in the buckets Step.Start names: the rows
// the last Add used are reused only for the same dims in the same hour.
func TestMemoryRollupsBuckets(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := usage.NewMemoryRollups()
	dims := []usage.Dims{{Key: "a", Route: "m", Status: "200"}, {Key: "b", Route: "m", Status: "200"}, {Key: "a", Route: "m", Status: "429"}}
	from := time.Now().UTC().Add(-72 * time.Hour)
	type bucket struct {
		start int64
		d     usage.Dims
	}
	want := map[usage.Step]map[bucket]int64{usage.StepHour: {}, usage.StepDay: {}}
	rng := rand.New(rand.NewPCG(1, 2))
	at := from
	for i := range 3000 {
		at = at.Add(time.Duration(rng.IntN(170)) * time.Second)
		d := dims[(i/7+rng.IntN(2))%len(dims)] // runs of one app, then another
		if err := r.Add(ctx, at, d, usage.Counts{Requests: 1, InputTokens: int64(i)}); err != nil {
			t.Fatal(err)
		}
		for s := range want {
			want[s][bucket{s.Start(at).Unix(), d}] += int64(i)
		}
	}
	for s, w := range want {
		rows, err := r.Query(ctx, s, s.Start(from), at.Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := map[bucket]int64{}
		for _, row := range rows {
			got[bucket{row.Start.Unix(), row.Dims}] += row.InputTokens
		}
		if len(got) != len(w) {
			t.Fatalf("%v: %d buckets, want %d", s, len(got), len(w))
		}
		for b, n := range w {
			if got[b] != n {
				t.Fatalf("%v bucket %v: %d input tokens, want %d", s, b, got[b], n)
			}
		}
	}
}

// A bucket starts at the UTC hour or midnight of its time, whatever the
// time's zone, before 1970 too.
func TestStepStart(t *testing.T) {
	t.Parallel()
	zone := time.FixedZone("x", -7*3600-1800)
	for _, at := range []time.Time{
		time.Date(2026, 12, 3, 23, 59, 59, 999, time.UTC),
		time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 3, 1, 2, 30, 0, 5, zone),
		time.Date(1969, 12, 31, 23, 0, 1, 0, time.UTC),
		time.Date(1960, 2, 29, 5, 6, 7, 0, zone),
	} {
		u := at.UTC()
		if got, want := usage.StepHour.Start(at), time.Date(u.Year(), u.Month(), u.Day(), u.Hour(), 0, 0, 0, time.UTC); !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("hour of %v: %v, want %v", at, got, want)
		}
		if got, want := usage.StepDay.Start(at), time.Date(u.Year(), u.Month(), u.Day(), 0, 0, 0, 0, time.UTC); !got.Equal(want) || got.Location() != time.UTC {
			t.Errorf("day of %v: %v, want %v", at, got, want)
		}
	}
}
