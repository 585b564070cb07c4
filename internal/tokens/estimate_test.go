package tokens

import (
	"math"
	"os"
	"path/filepath"
	"testing"
)

// TestEstimateError prints the estimate's error (and that of the rule of
// thumb it replaces, a token per 4 bytes) against o200k_base's exact
// counts on the shipped corpus, and holds the total error to 15 %.
func TestEstimateError(t *testing.T) {
	files, _ := filepath.Glob("testdata/corpus/*")
	if len(files) == 0 {
		t.Fatal("no corpus")
	}
	exact := For("gpt-4o")
	var sumExact, sumEst, sumBytes, sumAbs float64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		x := float64(exact.Text(s))
		e := estimateText(s)
		q := math.Ceil(float64(len(s)) / 4)
		t.Logf("%-14s exact %6.0f  estimate %6.0f (%+5.1f%%)  bytes/4 %6.0f (%+5.1f%%)", filepath.Base(f), x, e, 100*(e-x)/x, q, 100*(q-x)/x)
		sumExact += x
		sumEst += e
		sumBytes += q
		sumAbs += math.Abs(e - x)
	}
	t.Logf("total          exact %6.0f  estimate %6.0f (%+5.1f%%, mean abs %4.1f%%)  bytes/4 %6.0f (%+5.1f%%)",
		sumExact, sumEst, 100*(sumEst-sumExact)/sumExact, 100*sumAbs/sumExact, sumBytes, 100*(sumBytes-sumExact)/sumExact)
	if d := math.Abs(sumEst-sumExact) / sumExact; d > 0.15 {
		t.Errorf("estimate off by %.1f%% in total", 100*d)
	}
}
