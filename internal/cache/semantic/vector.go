package semantic

import (
	"math"
	"slices"
	"sync"

	"github.com/viterin/vek/vek32"
)

// normalised returns a unit-length copy of v, or false when v is empty,
// zero, or holds NaN or Inf.
func normalised(v []float32) ([]float32, bool) {
	return normaliseInto(nil, v)
}

// normaliseInto is normalised writing into dst's array when it is large
// enough.
func normaliseInto(dst, v []float32) ([]float32, bool) {
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
	out := slices.Grow(dst[:0], len(v))[:len(v)]
	for i, x := range v {
		out[i] = x * inv
	}
	return out, true
}

// dot is the cosine similarity of two unit vectors (SIMD where the CPU has
// it).
func dot(a, b []float32) float32 { return vek32.Dot(a, b) }

// queryPool holds the buffers Lookup normalises queries into.
var queryPool = sync.Pool{New: func() any { return new([]float32) }}
