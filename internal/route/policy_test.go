package route

import (
	"strconv"
	"testing"
	"time"
)

type fixedHeadroom float64

func (f fixedHeadroom) Headroom(time.Time) float64 { return float64(f) }

func policyRoute(t testing.TB, p Policy, n int) (*Route, *Loads) {
	t.Helper()
	r := Route{Pattern: "m", Policy: p}
	for i := range n {
		r.Targets = append(r.Targets, Target{Provider: "p" + strconv.Itoa(i), Model: "m"})
	}
	tb, err := New([]Route{r}, nil)
	if err != nil {
		t.Fatal(err)
	}
	loads := NewLoads()
	tb.Bind(loads)
	rt, _ := tb.Lookup("m")
	for i := range rt.Targets {
		rt.Targets[i].Quota = fixedHeadroom(1)
	}
	return rt, loads
}

func TestChoosePolicies(t *testing.T) {
	now := time.Now()
	t.Run("least_latency", func(t *testing.T) {
		r, _ := policyRoute(t, PolicyLeastLatency, 3)
		// Unmeasured targets go first.
		r.Targets[0].Load().ObserveTTFT(300 * time.Millisecond)
		r.Targets[1].Load().ObserveTTFT(100 * time.Millisecond)
		if got := r.Choose(nil, now, nil); got != 2 {
			t.Fatalf("unmeasured target not explored: got %d", got)
		}
		r.Targets[2].Load().ObserveTTFT(200 * time.Millisecond)
		if got := r.Choose(nil, now, nil); got != 1 {
			t.Fatalf("got %d, want the fastest (1)", got)
		}
		if got := r.Choose(nil, now, []int{1}); got != 2 {
			t.Fatalf("got %d, want the fastest untried (2)", got)
		}
	})
	t.Run("least_busy", func(t *testing.T) {
		r, _ := policyRoute(t, PolicyLeastBusy, 3)
		r.Targets[0].Load().Begin()
		r.Targets[2].Load().Begin()
		r.Targets[2].Load().Begin()
		if got := r.Choose(nil, now, nil); got != 1 {
			t.Fatalf("got %d, want 1", got)
		}
	})
	t.Run("cost", func(t *testing.T) {
		r, _ := policyRoute(t, PolicyCost, 3)
		r.Targets[0].Cost, r.Targets[1].Cost, r.Targets[2].Cost = 3, 2, 1
		if got := r.Choose(nil, now, nil); got != 2 {
			t.Fatalf("got %d, want the cheapest (2)", got)
		}
	})
	t.Run("headroom", func(t *testing.T) {
		r, _ := policyRoute(t, PolicyHeadroom, 3)
		r.Targets[0].Quota, r.Targets[1].Quota, r.Targets[2].Quota = fixedHeadroom(.2), fixedHeadroom(.9), fixedHeadroom(.5)
		if got := r.Choose(nil, now, nil); got != 1 {
			t.Fatalf("got %d, want the most headroom (1)", got)
		}
	})
	t.Run("breaker", func(t *testing.T) {
		r, _ := policyRoute(t, PolicyCost, 2)
		r.Targets[0].Cost, r.Targets[1].Cost = 1, 2
		h := NewHealth(1, time.Minute)
		h.Failure(r.Targets[0].Key(), now, 0)
		if got := r.Choose(h, now, nil); got != 1 {
			t.Fatalf("got %d, want the one not cooling down", got)
		}
		h.Failure(r.Targets[1].Key(), now, 0)
		if got := r.Choose(h, now, nil); got != -1 {
			t.Fatalf("got %d, want -1", got)
		}
	})
	t.Run("ties by weight", func(t *testing.T) {
		r, _ := policyRoute(t, PolicyCost, 2)
		r.Targets[0].Weight, r.Targets[1].Weight = 3, 1
		var n [2]int
		for range 4000 {
			n[r.Choose(nil, now, nil)]++
		}
		if n[0] < 2700 || n[0] > 3300 {
			t.Fatalf("tie split %v, want about 3:1", n)
		}
	})
}

func TestParsePolicy(t *testing.T) {
	for _, s := range []string{"weighted", "least_latency", "least_busy", "cost", "headroom"} {
		p, err := ParsePolicy(s)
		if err != nil || p.String() != s {
			t.Errorf("ParsePolicy(%q) = %v, %v", s, p, err)
		}
	}
	if _, err := ParsePolicy("fastest"); err == nil {
		t.Error("want an error")
	}
}

func TestLoadP95(t *testing.T) {
	var l Load
	if l.TTFTP95() != 0 {
		t.Fatal("p95 before a sample")
	}
	for range 50 {
		l.ObserveTTFT(100 * time.Millisecond)
	}
	if p := l.TTFTP95(); p < 99*time.Millisecond || p > 101*time.Millisecond {
		t.Fatalf("steady p95 = %v", p)
	}
	l.ObserveTTFT(time.Second)
	if l.TTFTP95() <= l.TTFT() {
		t.Fatalf("p95 %v not above the mean %v after an outlier", l.TTFTP95(), l.TTFT())
	}
}

// BenchmarkChoose10 chooses among 10 targets by each policy, with a
// breaker: it must not allocate and stay well under 1 µs.
func BenchmarkChoose10(b *testing.B) {
	for _, p := range []Policy{PolicyWeighted, PolicyLeastLatency, PolicyLeastBusy, PolicyCost, PolicyHeadroom} {
		b.Run(p.String(), func(b *testing.B) {
			r, _ := policyRoute(b, p, 10)
			for i := range r.Targets {
				r.Targets[i].Load().ObserveTTFT(time.Duration(10+i) * time.Millisecond)
				r.Targets[i].Cost = float64(i % 3)
			}
			h := NewHealth(0, 0)
			now := time.Now()
			tried := []int{3}
			b.ReportAllocs()
			for b.Loop() {
				if r.Choose(h, now, tried) < 0 {
					b.Fatal("no target")
				}
			}
		})
	}
}
