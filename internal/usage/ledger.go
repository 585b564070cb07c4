package usage

import (
	"context"
	"time"
)

// Record is the usage of one key in one window.
type Record struct {
	Requests     int64 `json:"requests"`
	InputTokens  int64 `json:"input_tokens"`
	OutputTokens int64 `json:"output_tokens"`
	CachedTokens int64 `json:"cached_tokens"`
	CostMicros   int64 `json:"cost_micros"`
	// CacheHits counts requests the response cache answered; SavedTokens
	// and SavedMicros what they did not spend.
	CacheHits   int64 `json:"cache_hits"`
	SavedTokens int64 `json:"saved_tokens"`
	SavedMicros int64 `json:"saved_micros"`
}

// add increments r by o.
func (r *Record) add(o Record) {
	r.Requests += o.Requests
	r.InputTokens += o.InputTokens
	r.OutputTokens += o.OutputTokens
	r.CachedTokens += o.CachedTokens
	r.CostMicros += o.CostMicros
	r.CacheHits += o.CacheHits
	r.SavedTokens += o.SavedTokens
	r.SavedMicros += o.SavedMicros
}

// Ledger accumulates Records per key and window. Methods are safe for
// concurrent use.
type Ledger interface {
	// Add increments the record of key in window by r, atomically. The
	// window's record expires at expires; when that is not in the future
	// nothing is recorded.
	Add(ctx context.Context, key, window string, r Record, expires time.Time) error
	// Get returns the record of key in window (zero when unknown or
	// expired).
	Get(ctx context.Context, key, window string) (Record, error)
}

// Budget periods accepted by [Window].
const (
	PeriodDay   = "day"
	PeriodMonth = "month"
)

// Window returns the id of the budget window of period containing t (in UTC)
// and the instant it ends: for "day" "2006-01-02" ending at the next
// midnight, for "month" (and any other value) "2006-01" ending on the first
// of the next month.
func Window(period string, t time.Time) (id string, end time.Time) {
	t = t.UTC()
	y, m, d := t.Date()
	if period == PeriodDay {
		start := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
		return start.Format(time.DateOnly), start.AddDate(0, 0, 1)
	}
	start := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	return start.Format("2006-01"), start.AddDate(0, 1, 0)
}
