package semantic

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Unix(1_800_000_000, 0)

func pfx(n byte) [32]byte { return [32]byte{n} }

const question = "How do I reset my password?"

func TestLookupThreshold(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ix := New(Options{Threshold: 0.95})
	for _, c := range []struct {
		cos  float64
		want bool
	}{{0.999, true}, {0.96, true}, {0.951, true}, {0.949, false}, {0.9, false}, {0, false}, {-0.99, false}} {
		u, v := pairAt(rng, 64, c.cos)
		key := fmt.Sprint(c.cos)
		ix.Add(pfx(1), u, question, key, t0.Add(time.Hour))
		got, score, ok := ix.Lookup(pfx(1), v, question, t0)
		if ok != c.want || (ok && got != key) {
			t.Errorf("cos %.3f: Lookup = %q, %.4f, %v; want hit %v", c.cos, got, score, ok, c.want)
		}
		ix.Remove(key)
	}
}

func TestLookupBestAndScaling(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ix := New(Options{Threshold: 0.9})
	q := randomUnit(rng, 32)
	for _, cos := range []float64{0.91, 0.97, 0.93} {
		_, v := pairAtFrom(rng, q, cos)
		// Stored vectors need not be unit length.
		for i := range v {
			v[i] *= 7
		}
		ix.Add(pfx(1), v, question, fmt.Sprint(cos), t0.Add(time.Hour))
	}
	scaled := append([]float32(nil), q...)
	for i := range scaled {
		scaled[i] *= 0.01
	}
	key, score, ok := ix.Lookup(pfx(1), scaled, question, t0)
	if !ok || key != "0.97" || score < 0.969 || score > 0.971 {
		t.Fatalf("Lookup = %q, %.4f, %v; want the 0.97 entry", key, score, ok)
	}
}

func TestLookupPrefixIsolation(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	ix := New(Options{})
	v := randomUnit(rng, 16)
	ix.Add(pfx(1), v, question, "one", t0.Add(time.Hour))
	if _, _, ok := ix.Lookup(pfx(2), v, question, t0); ok {
		t.Fatal("hit across prefixes")
	}
	ix.Add(pfx(2), v, question, "two", t0.Add(time.Hour))
	for p, want := range map[byte]string{1: "one", 2: "two"} {
		if key, _, ok := ix.Lookup(pfx(p), v, question, t0); !ok || key != want {
			t.Errorf("prefix %d: Lookup = %q, %v; want %q", p, key, ok, want)
		}
	}
}

func TestLookupGate(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	ix := New(Options{})
	v := randomUnit(rng, 16)
	ix.Add(pfx(1), v, "Turn dark mode on", "on", t0.Add(time.Hour))
	if key, _, ok := ix.Lookup(pfx(1), v, "Turn dark mode off", t0); ok {
		t.Fatalf("identical vectors, opposite messages: hit %q", key)
	}
	// A second entry the gate accepts, less similar: the gate picks it
	// over the closer one it refuses.
	_, w := pairAtFrom(rng, v, 0.97)
	ix.Add(pfx(1), w, "turn dark mode off please", "off", t0.Add(time.Hour))
	if key, _, ok := ix.Lookup(pfx(1), v, "Turn dark mode off", t0); !ok || key != "off" {
		t.Fatalf("Lookup = %q, %v; want off", key, ok)
	}
}

func TestLookupExpiry(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	ix := New(Options{})
	v := randomUnit(rng, 16)
	ix.Add(pfx(1), v, question, "k", t0.Add(time.Minute))
	if _, _, ok := ix.Lookup(pfx(1), v, question, t0.Add(time.Minute-time.Nanosecond)); !ok {
		t.Fatal("miss before expiry")
	}
	if _, _, ok := ix.Lookup(pfx(1), v, question, t0.Add(time.Minute)); ok {
		t.Fatal("hit at expiry")
	}
	// That lookup saw the entry expired and swept it.
	if n := ix.Len(); n != 0 {
		t.Fatalf("Len = %d after the expired entry was seen; want 0", n)
	}
}

func TestSweepIsBounded(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	ix := New(Options{})
	for i := range 3 * sweepBatch {
		ix.Add(pfx(byte(i%5)), randomUnit(rng, 8), question, fmt.Sprint(i), t0.Add(time.Second))
	}
	ix.Add(pfx(9), randomUnit(rng, 8), question, "live", t0.Add(time.Hour))
	ix.Lookup(pfx(1), randomUnit(rng, 8), question, t0.Add(time.Minute))
	if n := ix.Len(); n != 2*sweepBatch+1 {
		t.Fatalf("Len = %d after one sweep; want %d", n, 2*sweepBatch+1)
	}
	ix.Lookup(pfx(1), randomUnit(rng, 8), question, t0.Add(time.Minute))
	ix.Lookup(pfx(1), randomUnit(rng, 8), question, t0.Add(time.Minute))
	if n := ix.Len(); n != 1 {
		t.Fatalf("Len = %d after three sweeps; want 1", n)
	}
}

func TestRemoveAndReplace(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 16))
	ix := New(Options{})
	v, w := randomUnit(rng, 16), randomUnit(rng, 16)
	ix.Add(pfx(1), v, question, "k", t0.Add(time.Hour))
	ix.Add(pfx(1), w, question, "k", t0.Add(time.Hour)) // replaces
	if n := ix.Len(); n != 1 {
		t.Fatalf("Len = %d after re-adding a key; want 1", n)
	}
	if _, _, ok := ix.Lookup(pfx(1), v, question, t0); ok {
		t.Fatal("the replaced vector still hits")
	}
	if _, _, ok := ix.Lookup(pfx(1), w, question, t0); !ok {
		t.Fatal("the new vector misses")
	}
	ix.Remove("k")
	ix.Remove("k")
	ix.Remove("never added")
	if _, _, ok := ix.Lookup(pfx(1), w, question, t0); ok || ix.Len() != 0 {
		t.Fatalf("after Remove: hit %v, Len %d", ok, ix.Len())
	}
}

func TestMaxEntries(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	ix := New(Options{MaxEntries: 10})
	vecs := map[string][]float32{}
	add := func(key string, expires time.Time) {
		v := randomUnit(rng, 16)
		vecs[key] = v
		ix.Add(pfx(byte(len(vecs)%3)), v, question, key, expires)
	}
	// Oldest first, one TTL: k0 … k9, then k10 evicts k0.
	for i := range 10 {
		add(fmt.Sprint("k", i), t0.Add(time.Hour+time.Duration(i)*time.Second))
	}
	add("k10", t0.Add(time.Hour+10*time.Second))
	if n := ix.Len(); n != 10 {
		t.Fatalf("Len = %d; want the bound, 10", n)
	}
	if ix.has("k0") || !ix.has("k1") || !ix.has("k10") {
		t.Fatal("the oldest entry was not the one evicted")
	}
	// An expired entry goes before any live one, however recent.
	add("stale", t0.Add(-time.Second)) // evicts k1, the oldest
	add("k11", t0.Add(time.Hour+11*time.Second))
	if ix.has("stale") || !ix.has("k2") {
		t.Fatal("eviction did not take the expired entry first")
	}
	for i := range 1000 {
		add(fmt.Sprint("x", i), t0.Add(2*time.Hour))
		if ix.Len() > 10 {
			t.Fatalf("Len = %d over the bound", ix.Len())
		}
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ix.checkLocked(t)
}

// TestMaxEntriesOne evicts the only entry of the bucket being added to.
func TestMaxEntriesOne(t *testing.T) {
	rng := rand.New(rand.NewPCG(23, 24))
	ix := New(Options{MaxEntries: 1})
	for i := range 5 {
		v := randomUnit(rng, 8)
		key := fmt.Sprint(i)
		ix.Add(pfx(1), v, question, key, t0.Add(time.Hour))
		if got, _, ok := ix.Lookup(pfx(1), v, question, t0); !ok || got != key || ix.Len() != 1 {
			t.Fatalf("after adding %s: Lookup %q %v, Len %d", key, got, ok, ix.Len())
		}
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ix.checkLocked(t)
}

func TestRejectsBadVectors(t *testing.T) {
	ix := New(Options{})
	nan := float32(0)
	nan /= nan
	for _, v := range [][]float32{nil, {}, {0, 0, 0}, {1, nan, 0}} {
		ix.Add(pfx(1), v, question, "k", t0.Add(time.Hour))
		if _, _, ok := ix.Lookup(pfx(1), v, question, t0); ok {
			t.Errorf("%v hits", v)
		}
	}
	long := strings.Repeat("reset my password ", MaxText/18+1)
	ix.Add(pfx(1), []float32{1, 0, 0}, long, "long", t0.Add(time.Hour))
	if ix.Len() != 0 {
		t.Fatalf("Len = %d; bad vectors or an overlong text were indexed", ix.Len())
	}
	if Gate(long, long) {
		t.Error("Gate passes texts over MaxText")
	}
	ix.Add(pfx(1), []float32{1, 0, 0}, question, "three", t0.Add(time.Hour))
	if _, _, ok := ix.Lookup(pfx(1), []float32{1, 0}, question, t0); ok {
		t.Error("a vector of another length hits")
	}
	// A new embedding length under the prefix replaces its entries.
	ix.Add(pfx(1), []float32{1, 0}, question, "two", t0.Add(time.Hour))
	if key, _, ok := ix.Lookup(pfx(1), []float32{1, 0}, question, t0); !ok || key != "two" || ix.Len() != 1 {
		t.Errorf("after a length change: %q %v, Len %d", key, ok, ix.Len())
	}
}

func TestNewDefaults(t *testing.T) {
	ix := New(Options{})
	if ix.threshold != DefaultThreshold || ix.maxEntries != DefaultMaxEntries {
		t.Fatalf("defaults: %v %v", ix.threshold, ix.maxEntries)
	}
	if New(Options{Threshold: 3}).threshold != 1 {
		t.Fatal("threshold above 1 not clamped")
	}
}

// TestGraphBucket drives a bucket past the graph size, with churn, and
// checks recall and the structures after every phase.
func TestGraphBucket(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 20))
	ix := New(Options{MaxEntries: 100_000})
	ix.graphMin = 200
	const dims = 48
	vecs := map[string][]float32{}
	next := 0
	add := func() {
		key := fmt.Sprint("k", next)
		next++
		v := randomUnit(rng, dims)
		vecs[key] = v
		ix.Add(pfx(1), v, question, key, t0.Add(time.Hour))
	}
	remove := func(n int) {
		for key := range vecs {
			if n == 0 {
				break
			}
			ix.Remove(key)
			delete(vecs, key)
			n--
		}
	}
	recall := func(phase string) {
		t.Helper()
		ix.mu.RLock()
		ix.checkLocked(t)
		graph := ix.buckets[pfx(1)] != nil && ix.buckets[pfx(1)].graph != nil
		ix.mu.RUnlock()
		found, tried := 0, 0
		for key, v := range vecs {
			if tried == 200 {
				break
			}
			tried++
			_, q := pairAtFrom(rng, v, 0.98)
			if got, _, ok := ix.Lookup(pfx(1), q, question, t0); ok && got == key {
				found++
			}
		}
		t.Logf("%s: %d entries, graph %v, recall %d/%d", phase, len(vecs), graph, found, tried)
		if found < tried*95/100 {
			t.Errorf("%s: recall %d/%d", phase, found, tried)
		}
	}
	for range 199 {
		add()
	}
	recall("below the graph size")
	for range 2000 {
		add()
	}
	recall("graph")
	remove(1500) // tombstones past the live count; the next Add rebuilds
	add()
	recall("after rebuild")
	for i := range 3000 {
		add()
		if i%2 == 0 {
			remove(1)
		}
	}
	recall("churn")
	remove(len(vecs) - 20) // below graphDrop: back to a scan
	recall("small again")
	remove(len(vecs))
	if ix.Len() != 0 || len(ix.buckets) != 0 {
		t.Fatalf("empty index: Len %d, %d buckets", ix.Len(), len(ix.buckets))
	}
}

func TestConcurrent(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	ix := New(Options{MaxEntries: 500})
	ix.graphMin = 64
	const dims = 32
	pool := make([][]float32, 256)
	for i := range pool {
		pool[i] = randomUnit(rng, dims)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range 600 {
				v := pool[r.IntN(len(pool))]
				p := pfx(byte(r.IntN(3)))
				now := t0.Add(time.Duration(i) * time.Millisecond)
				switch r.IntN(10) {
				case 0, 1, 2:
					ix.Add(p, v, question, fmt.Sprint(w, "-", i), now.Add(time.Duration(r.IntN(2000))*time.Millisecond))
				case 3:
					ix.Remove(fmt.Sprint(w, "-", r.IntN(i+1)))
				case 4:
					ix.Len()
				default:
					ix.Lookup(p, v, question, now)
				}
			}
		})
	}
	wg.Wait()
	if ix.Len() > 500 {
		t.Fatalf("Len = %d over the bound", ix.Len())
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	ix.checkLocked(t)
}

// pairAtFrom returns u and a unit vector with cosine similarity cos to it.
func pairAtFrom(rng *rand.Rand, u []float32, cos float64) ([]float32, []float32) {
	v := make([]float32, len(u))
	w := randomUnit(rng, len(u))
	var d float64
	for i := range u {
		d += float64(u[i]) * float64(w[i])
	}
	var norm float64
	for i := range w {
		w[i] -= float32(d) * u[i]
		norm += float64(w[i]) * float64(w[i])
	}
	sin := math.Sqrt(1 - cos*cos)
	for i := range v {
		v[i] = float32(cos)*u[i] + float32(sin/math.Sqrt(norm))*w[i]
	}
	return u, v
}

func (ix *Index) has(key string) bool {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	_, ok := ix.byKey[key]
	return ok
}

// checkLocked verifies that the maps, the heap and the buckets agree.
func (ix *Index) checkLocked(t *testing.T) {
	t.Helper()
	if len(ix.expiry) != len(ix.byKey) {
		t.Fatalf("heap %d, keys %d", len(ix.expiry), len(ix.byKey))
	}
	for i, e := range ix.expiry {
		if e.heapAt != i {
			t.Fatalf("heap position %d recorded as %d", i, e.heapAt)
		}
		if i > 0 && ix.expiry.less(i, (i-1)/2) {
			t.Fatal("heap order broken")
		}
	}
	n := 0
	for p, b := range ix.buckets {
		if len(b.entries) == 0 || b.prefix != p {
			t.Fatalf("bucket %x: %d entries, prefix %x", p[:2], len(b.entries), b.prefix[:2])
		}
		for i, e := range b.entries {
			if e.slot != i || ix.byKey[e.key] != e || b.byID[e.id] != e {
				t.Fatalf("entry %q misfiled", e.key)
			}
			if b.graph != nil && (e.node < 0 || int(e.node) >= b.graph.len() || b.graph.nodes[e.node].e != e || b.graph.nodes[e.node].dead) {
				t.Fatalf("entry %q missing from its bucket's graph", e.key)
			}
		}
		if b.graph != nil && b.graph.len() != len(b.entries)+b.dead {
			t.Fatalf("graph %d nodes, %d live, %d dead", b.graph.len(), len(b.entries), b.dead)
		}
		n += len(b.entries)
	}
	if n != len(ix.byKey) {
		t.Fatalf("buckets hold %d entries, keys %d", n, len(ix.byKey))
	}
}
