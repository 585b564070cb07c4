package tokens

import (
	"math"
	"sync"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

func TestRatioConverges(t *testing.T) {
	var r Ratio
	if r.Value() != 1 || r.Samples() != 0 {
		t.Fatalf("zero ratio: %v %d", r.Value(), r.Samples())
	}
	for range 50 {
		r.Observe(1000, 1500)
	}
	if v := r.Value(); math.Abs(v-1.5) > 1e-9 || r.Samples() != 50 {
		t.Fatalf("ratio %v after %d samples, want 1.5", v, r.Samples())
	}
	// A new regime: the average moves to it.
	for range 60 {
		r.Observe(1000, 800)
	}
	if v := r.Value(); math.Abs(v-0.8) > 0.01 {
		t.Fatalf("ratio %v, want about 0.8", v)
	}
	// Samples are clamped; tiny prompts and missing usage teach nothing.
	var c Ratio
	c.Observe(100, 1000)
	if c.Value() != MaxRatio {
		t.Fatalf("clamped high: %v", c.Value())
	}
	c.Observe(100, 1)
	if v := c.Value(); v != (MaxRatio+MinRatio)/2 {
		t.Fatalf("clamped low: %v", v)
	}
	n := c.Samples()
	c.Observe(minSample-1, 1000)
	c.Observe(1000, 0)
	if c.Samples() != n {
		t.Fatal("a tiny prompt or no usage was learned")
	}
}

func TestRatioConcurrent(t *testing.T) {
	var r Ratio
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				r.Observe(100, 130)
			}
		}()
	}
	wg.Wait()
	if v := r.Value(); math.Abs(v-1.3) > 1e-9 || r.Samples() != 8000 {
		t.Fatalf("ratio %v, samples %d", v, r.Samples())
	}
}

func TestCalibrationTable(t *testing.T) {
	var cs Calibrations
	c := cs.Table([]string{"claude-sonnet-4-5", "llama-*"})
	r := c.Lookup("claude-sonnet-4-5", "x")
	r.Observe(1000, 1700)
	if c.Lookup("llama-3.1-8b", "llama-*") == nil || c.Lookup("gpt-4o", "gpt-4o") != nil {
		t.Fatal("lookup by pattern, or an uncalibrated model")
	}
	// A reload keeps what the names it still has learned.
	c2 := cs.Table([]string{"claude-sonnet-4-5"})
	if c2.Lookup("claude-sonnet-4-5", "") != r || c2.Lookup("", "llama-*") != nil {
		t.Fatal("reload did not keep the ratio, or kept a dropped name")
	}
	var seen []string
	cs.Each(func(n string, _ *Ratio) { seen = append(seen, n) })
	if len(seen) != 1 {
		t.Fatalf("Each: %v", seen)
	}
	if Estimated("gpt-4o") || !Estimated("claude-3-haiku") || !Estimated("*") {
		t.Fatal("Estimated")
	}
}

func TestInputCalibrated(t *testing.T) {
	req, oe := openai.ParseRequest(openai.OpChat, []byte(cookbook), 0)
	if oe != nil {
		t.Fatal(oe)
	}
	var r Ratio
	base := Input(req, "claude-sonnet-4-5", true, &r)
	for range 20 {
		r.Observe(1000, 1500)
	}
	// The texts scale, the framing does not.
	if n := Input(req, "claude-sonnet-4-5", true, &r); float64(n) < 1.3*float64(base) || float64(n) > 1.6*float64(base) {
		t.Errorf("calibrated %d, uncalibrated %d", n, base)
	}
	if n := Input(req, "gpt-4o", true, &r); n != 124 {
		t.Errorf("an exact count is not calibrated: %d", n)
	}
	// A model of no family: the byte estimate until calibrated.
	if n := Input(req, "mystery", true, nil); n != openai.EstimateInputTokens(req) {
		t.Errorf("uncalibrated unknown model: %d", n)
	}
	if n := Input(req, "mystery", true, &r); n == openai.EstimateInputTokens(req) {
		t.Errorf("calibrated unknown model kept the byte estimate")
	}
}

func BenchmarkRatioObserve(b *testing.B) {
	var r Ratio
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			r.Observe(1000, 1234)
			_ = r.Value()
		}
	})
}

func TestRatioWantSamples(t *testing.T) {
	var r Ratio
	n := 0
	for range ratioWarmup + 10*sampleEvery {
		if r.Want() {
			n++
		}
	}
	if n != ratioWarmup+10 {
		t.Fatalf("%d of %d answers taught", n, ratioWarmup+10*sampleEvery)
	}
	if (*Ratio)(nil).Want() {
		t.Fatal("a nil ratio wants samples")
	}
}

// BenchmarkCalibrateSample is what one answer that teaches a ratio costs:
// the uncalibrated estimate of the prompt sent, and the update.
func BenchmarkCalibrateSample(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"1KB", 1 << 10}, {"4KB", 4 << 10}, {"100KB", 100 << 10}} {
		body := benchBody(size.n)
		c := For("claude-sonnet-4-5")
		var r Ratio
		b.Run(size.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				r.Observe(int64(c.Prompt(body)), 1000)
			}
		})
	}
}
