package semantic

import (
	"math"

	"github.com/viterin/vek/vek32"
)

// normalised returns a unit-length copy of v, or false when v is empty,
// zero, or holds NaN or Inf.
func normalised(v []float32) ([]float32, bool) {
	if len(v) == 0 {
		return nil, false
	}
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	if sum == 0 || math.IsNaN(sum) || math.IsInf(sum, 0) {
		return nil, false
	}
	inv := float32(1 / math.Sqrt(sum))
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = x * inv
	}
	return out, true
}

// dot is the cosine similarity of two unit vectors (SIMD where the CPU has
// it).
func dot(a, b []float32) float32 { return vek32.Dot(a, b) }
