package quota

import (
	"net/http"
	"strconv"
	"time"
)

// Report is what a provider's rate-limit headers say: the requests and
// tokens left (-1: not reported) and when each is replenished.
type Report struct {
	Requests, Tokens           int64
	ResetRequests, ResetTokens time.Duration
}

// Known reports whether the headers said anything.
func (r Report) Known() bool { return r.Requests >= 0 || r.Tokens >= 0 }

// ParseHeaders reads a provider's rate-limit headers:
//
//   - OpenAI (and the OpenAI-compatible APIs that copy it):
//     x-ratelimit-remaining-requests, x-ratelimit-remaining-tokens, and
//     x-ratelimit-reset-requests / -tokens as Go-style durations ("1s",
//     "6m0s", "20ms").
//     https://platform.openai.com/docs/guides/rate-limits#rate-limits-in-headers
//   - Anthropic: anthropic-ratelimit-requests-remaining,
//     anthropic-ratelimit-tokens-remaining (or, without it, the lower of
//     -input-tokens- and -output-tokens-remaining), and the -reset
//     headers as RFC 3339 times.
//     https://docs.anthropic.com/en/api/rate-limits#response-headers
func ParseHeaders(h http.Header, now time.Time) Report {
	r := Report{Requests: -1, Tokens: -1}
	if v := h.Get("X-Ratelimit-Remaining-Requests"); v != "" {
		r.Requests = parseCount(v)
		r.ResetRequests = parseReset(h.Get("X-Ratelimit-Reset-Requests"), now)
	}
	if v := h.Get("X-Ratelimit-Remaining-Tokens"); v != "" {
		r.Tokens = parseCount(v)
		r.ResetTokens = parseReset(h.Get("X-Ratelimit-Reset-Tokens"), now)
	}
	if v := h.Get("Anthropic-Ratelimit-Requests-Remaining"); v != "" {
		r.Requests = parseCount(v)
		r.ResetRequests = parseReset(h.Get("Anthropic-Ratelimit-Requests-Reset"), now)
	}
	if v := h.Get("Anthropic-Ratelimit-Tokens-Remaining"); v != "" {
		r.Tokens = parseCount(v)
		r.ResetTokens = parseReset(h.Get("Anthropic-Ratelimit-Tokens-Reset"), now)
	} else {
		for _, k := range [...]string{"Input", "Output"} {
			if v := h.Get("Anthropic-Ratelimit-" + k + "-Tokens-Remaining"); v != "" {
				if n := parseCount(v); n >= 0 && (r.Tokens < 0 || n < r.Tokens) {
					r.Tokens = n
					r.ResetTokens = parseReset(h.Get("Anthropic-Ratelimit-"+k+"-Tokens-Reset"), now)
				}
			}
		}
	}
	return r
}

func parseCount(v string) int64 {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// parseReset reads a reset as a duration ("6m0s"), a number of seconds,
// or an RFC 3339 time; 0 when it is none of them or in the past.
func parseReset(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if d, err := time.ParseDuration(v); err == nil {
		return max(0, d)
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return max(0, time.Duration(f*float64(time.Second)))
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return max(0, t.Sub(now))
	}
	return 0
}
