package guardrails

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// The corpus: per detector, values that must be found (placed in a
// sentence) and near misses that must not.
func loadCorpus(t testing.TB) map[string]struct{ Positive, Negative []string } {
	b, err := os.ReadFile("testdata/pii_corpus.json")
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]struct{ Positive, Negative []string }
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

var templates = []string{"%s", "Please reach me at %s, thanks.", "Details (%s) below:\nok", "my data: %s."}

// TestDetectorPrecisionRecall prints each detector's precision and recall
// on the shipped corpus and holds both to 0.95.
func TestDetectorPrecisionRecall(t *testing.T) {
	corpus := loadCorpus(t)
	d := NewDetectors([]string{"all"}, nil, nil)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range corpus {
			if !yield(k) {
				return
			}
		}
	})
	for _, name := range names {
		c := corpus[name]
		var tp, fp, fn int
		for _, v := range c.Positive {
			for _, tpl := range templates {
				text := strings.Replace(tpl, "%s", v, 1)
				found := false
				for _, m := range d.Find(text) {
					if m.Detector != name {
						continue
					}
					if text[m.Start:m.End] == v {
						found = true
						tp++
					} else {
						fp++
						t.Logf("%s: in %q found %q", name, text, text[m.Start:m.End])
					}
				}
				if !found {
					fn++
					t.Logf("%s: missed %q in %q", name, v, text)
				}
			}
		}
		for _, v := range c.Negative {
			for _, tpl := range templates {
				text := strings.Replace(tpl, "%s", v, 1)
				for _, m := range d.Find(text) {
					if m.Detector == name {
						fp++
						t.Logf("%s: false positive %q in %q", name, text[m.Start:m.End], text)
					}
				}
			}
		}
		precision := float64(tp) / float64(max(1, tp+fp))
		recall := float64(tp) / float64(max(1, tp+fn))
		t.Logf("%-7s positives %3d negatives %3d  precision %.3f  recall %.3f", name, len(c.Positive), len(c.Negative), precision, recall)
		if precision < 0.95 || recall < 0.95 {
			t.Errorf("%s: precision %.3f, recall %.3f (want ≥ 0.95)", name, precision, recall)
		}
	}
}

// TestSecretCandidatesMissNothing runs every secret shape without the
// prefilter on the corpus and on shapes glued to each other: the
// prefiltered detector finds the same.
func TestSecretCandidatesMissNothing(t *testing.T) {
	var texts []string
	for _, c := range loadCorpus(t) {
		texts = append(texts, c.Positive...)
		texts = append(texts, c.Negative...)
	}
	texts = append(texts, "sk-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----",
		"ghp_live_abcdefghijklmnop0123", "x sk_live_abcdefghijklmnop0123 rk_test_abcdefghijklmnop0123",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U")
	for _, s := range texts {
		var want []Match
		for _, re := range secretShapes {
			for _, loc := range re.FindAllStringIndex(s, -1) {
				want = append(want, Match{loc[0], loc[1], DetectSecret})
			}
		}
		if got := findSecrets(s, nil); !slices.Equal(got, want) {
			t.Errorf("%q: found %v, want %v", s, got, want)
		}
	}
}
