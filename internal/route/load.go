package route

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Load is what the gateway learns about one target while it serves: an
// exponentially weighted moving average of its time to first token (and
// of its square, for the p95 estimate hedging uses) and the requests in
// flight. It is updated with atomics, so the attempt loop reads it without
// a lock; Loads keeps one per target across config reloads.
type Load struct {
	ttft     atomic.Int64 // EWMA of TTFT in ns; 0 = no sample yet
	ttftSq   atomic.Uint64
	samples  atomic.Int64
	inFlight atomic.Int64
}

// ewmaAlpha weighs a new TTFT sample: 0.3 follows a change within a few
// requests and still smooths single outliers.
const ewmaAlpha = 0.3

// Begin counts a request to the target as in flight; End ends it.
func (l *Load) Begin() { l.inFlight.Add(1) }

// End counts the end of a request begun with Begin.
func (l *Load) End() { l.inFlight.Add(-1) }

// InFlight is the number of requests to the target under way.
func (l *Load) InFlight() int64 { return l.inFlight.Load() }

// ObserveTTFT adds a time-to-first-token sample to the averages.
func (l *Load) ObserveTTFT(d time.Duration) {
	if d <= 0 {
		d = 1
	}
	x := float64(d)
	if l.samples.Add(1) == 1 {
		l.ttft.Store(int64(d))
		l.ttftSq.Store(math.Float64bits(x * x))
		return
	}
	// Lost updates under a race only drop a sample; the averages stay
	// averages.
	old := float64(l.ttft.Load())
	l.ttft.Store(int64(old + ewmaAlpha*(x-old)))
	oldSq := math.Float64frombits(l.ttftSq.Load())
	l.ttftSq.Store(math.Float64bits(oldSq + ewmaAlpha*(x*x-oldSq)))
}

// TTFT is the moving average of the time to first token; 0 before the
// first sample.
func (l *Load) TTFT() time.Duration { return time.Duration(l.ttft.Load()) }

// TTFTP95 estimates the 95th percentile of the time to first token from
// the moving mean and variance (mean + 1.645 standard deviations, as for a
// normal distribution); 0 before the first sample.
func (l *Load) TTFTP95() time.Duration {
	m := float64(l.ttft.Load())
	if m == 0 {
		return 0
	}
	v := math.Float64frombits(l.ttftSq.Load()) - m*m
	if v < 0 {
		v = 0
	}
	return time.Duration(m + 1.645*math.Sqrt(v))
}

// Loads holds the Load of every target by key (Target.Key). It lives in a
// usage pool, so a reload keeps what was learned.
type Loads struct {
	mu sync.Mutex
	m  map[string]*Load
}

// NewLoads returns an empty set.
func NewLoads() *Loads { return &Loads{m: make(map[string]*Load)} }

// Get returns the target's Load, creating it.
func (s *Loads) Get(key string) *Load {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.m[key]
	if l == nil {
		l = new(Load)
		s.m[key] = l
	}
	return l
}
