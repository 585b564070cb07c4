package gateway

import (
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
)

func TestAppendResetDurationIsFmtDuration(t *testing.T) {
	ds := []time.Duration{-time.Second, 0, 1, 499 * time.Microsecond, 500 * time.Microsecond, time.Millisecond,
		20 * time.Millisecond, 999*time.Millisecond + 499*time.Microsecond, 999*time.Millisecond + 500*time.Microsecond,
		time.Second, 1499 * time.Millisecond, 59*time.Second + 600*time.Millisecond, time.Minute, 6 * time.Minute,
		time.Hour, 25*time.Hour + 61*time.Second, 1 << 62}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		ds = append(ds, time.Duration(rng.Int64N(int64(3*time.Hour))), time.Duration(rng.Int64N(int64(2*time.Second))))
	}
	for _, d := range ds {
		if got, want := string(appendResetDuration(nil, d)), fmtDuration(d); got != want {
			t.Fatalf("appendResetDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestRateHeaders(t *testing.T) {
	rpm := &hold{kind: holdRequests, take: &ratelimit.Op{Rate: ratelimit.Rate{Limit: 600}}}
	tpm := &hold{kind: holdTokens, take: &ratelimit.Op{Rate: ratelimit.Rate{Limit: 1_000_000_000_000}}}
	var rh rateHeaders
	rh.add(rpm, ratelimit.Result{Remaining: 599, ResetAfter: 100 * time.Millisecond})
	rh.add(tpm, ratelimit.Result{Remaining: 999_999_999_000, ResetAfter: 1 << 60})
	h := http.Header{}
	rh.set(h)
	want := http.Header{
		hdrLimitRequests: {"600"}, hdrRemainingRequests: {"599"}, hdrResetRequests: {"100ms"},
		hdrLimitTokens: {"1000000000000"}, hdrRemainingTokens: {"999999999000"}, hdrResetTokens: {fmtDuration(1 << 60)},
	}
	for k, v := range want {
		if got := h.Values(k); len(got) != 1 || got[0] != v[0] {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if len(h) != len(want) {
		t.Errorf("headers %v", h)
	}
	h.Add(hdrLimitRequests, "x") // the values do not share a backing array
	if h.Get(hdrRemainingRequests) != "599" {
		t.Fatalf("appending to one header changed another: %v", h)
	}
}
