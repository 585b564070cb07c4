package fakellm

import (
	"net/http"
	"strconv"
	"time"
)

// RateLimit makes the server hold clients to a quota the way OpenAI (and,
// on the Messages API, Anthropic) does:
// at most Requests inference requests per Window, counted over a sliding
// window of the requests it admitted. Every inference answer carries
// OpenAI's rate-limit headers (x-ratelimit-limit-requests,
// x-ratelimit-remaining-requests, x-ratelimit-reset-requests as a
// Go-style duration such as "1s" or "6m0s"); a request beyond the quota
// is answered 429 rate_limit_exceeded with Retry-After (seconds) and the
// same headers. On /v1/messages the headers are Anthropic's
// (anthropic-ratelimit-requests-*, see anthropicRateLimit).
// https://platform.openai.com/docs/guides/rate-limits#rate-limits-in-headers
// https://platform.openai.com/docs/guides/error-codes/api-errors
type RateLimit struct {
	Requests int
	// Window is the quota's period. Default: 1m.
	Window time.Duration
}

// rateLimiter is the server's sliding-window log; guarded by Server.mu.
type rateLimiter struct {
	admitted []time.Time // admitted arrivals within the window, oldest first
	arrivals []time.Time // every inference arrival (for Arrivals)
	refused  int
}

// admitRate counts an inference request against Options.RateLimit: ok
// reports whether it is admitted; limit, remaining and reset describe the
// quota after the decision. Without a RateLimit, limit is 0.
func (s *Server) admitRate() (ok bool, limit, remaining int, reset time.Duration) {
	rl := s.opts.RateLimit
	if rl == nil || rl.Requests <= 0 {
		return true, 0, 0, 0
	}
	window := rl.Window
	if window <= 0 {
		window = time.Minute
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	q := &s.limiter
	q.arrivals = append(q.arrivals, now)
	i := 0
	for i < len(q.admitted) && !q.admitted[i].After(now.Add(-window)) {
		i++
	}
	q.admitted = q.admitted[i:]
	ok = len(q.admitted) < rl.Requests
	if ok {
		q.admitted = append(q.admitted, now)
	} else {
		q.refused++
	}
	if len(q.admitted) > 0 {
		// Rounded up: after the reset there is room.
		reset = (q.admitted[0].Add(window).Sub(now) + time.Millisecond - 1).Truncate(time.Millisecond)
	}
	return ok, rl.Requests, rl.Requests - len(q.admitted), reset
}

// rateLimit applies Options.RateLimit to an OpenAI inference request; it
// reports whether the request may be answered (else it was answered 429).
func (x *exchange) rateLimit() bool {
	ok, limit, remaining, reset := x.s.admitRate()
	if limit == 0 {
		return true
	}
	h := x.w.Header()
	h.Set("X-Ratelimit-Limit-Requests", strconv.Itoa(limit))
	h.Set("X-Ratelimit-Remaining-Requests", strconv.Itoa(remaining))
	h.Set("X-Ratelimit-Reset-Requests", reset.String())
	if ok {
		return true
	}
	h.Set("Retry-After", strconv.Itoa(int((reset+time.Second-1)/time.Second)))
	x.writeError(http.StatusTooManyRequests, "fakellm: rate limit reached for requests: limit "+strconv.Itoa(limit)+".", "", "rate_limit_exceeded")
	return false
}

// anthropicRateLimit is rateLimit for the Messages API, with Anthropic's
// headers (anthropic-ratelimit-requests-limit, -remaining, and -reset as an
// RFC 3339 time) and its 429 rate_limit_error.
// https://docs.anthropic.com/en/api/rate-limits#response-headers
// https://docs.anthropic.com/en/api/errors
func (x *exchange) anthropicRateLimit() bool {
	ok, limit, remaining, reset := x.s.admitRate()
	if limit == 0 {
		return true
	}
	h := x.w.Header()
	h.Set("Anthropic-Ratelimit-Requests-Limit", strconv.Itoa(limit))
	h.Set("Anthropic-Ratelimit-Requests-Remaining", strconv.Itoa(remaining))
	// RFC 3339 has whole seconds here: rounded up, so that the reset is
	// never early.
	h.Set("Anthropic-Ratelimit-Requests-Reset", time.Now().Add(reset+time.Second-1).Truncate(time.Second).UTC().Format(time.RFC3339))
	if ok {
		return true
	}
	h.Set("Retry-After", strconv.Itoa(int((reset+time.Second-1)/time.Second)))
	x.writeAnthropicError(http.StatusTooManyRequests, "fakellm: rate limit reached for requests: limit "+strconv.Itoa(limit)+".")
	return false
}

// Arrivals returns when each inference request arrived while
// Options.RateLimit is set (admitted or not), oldest first.
func (s *Server) Arrivals() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.limiter.arrivals...)
}

// RateLimited is the number of requests answered 429 by Options.RateLimit.
func (s *Server) RateLimited() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limiter.refused
}

// MaxInWindow is the largest number of arrivals within any window of
// length d.
func MaxInWindow(arrivals []time.Time, d time.Duration) int {
	best, j := 0, 0
	for i := range arrivals {
		for arrivals[i].Sub(arrivals[j]) >= d {
			j++
		}
		best = max(best, i-j+1)
	}
	return best
}
