package usage_test

import (
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

func TestWindow(t *testing.T) {
	t.Parallel()
	utc := func(y int, m time.Month, d, h, min, s, ns int) time.Time {
		return time.Date(y, m, d, h, min, s, ns, time.UTC)
	}
	tokyo := time.FixedZone("JST", 9*3600)
	for _, tc := range []struct {
		period string
		t      time.Time
		id     string
		end    time.Time
	}{
		{"day", utc(2026, 11, 25, 12, 0, 0, 0), "2026-11-25", utc(2026, 11, 26, 0, 0, 0, 0)},
		{"day", utc(2026, 11, 25, 0, 0, 0, 0), "2026-11-25", utc(2026, 11, 26, 0, 0, 0, 0)},
		{"day", utc(2026, 11, 25, 23, 59, 59, 999999999), "2026-11-25", utc(2026, 11, 26, 0, 0, 0, 0)},
		{"day", utc(2026, 12, 31, 23, 0, 0, 0), "2026-12-31", utc(2027, 1, 1, 0, 0, 0, 0)},
		{"day", utc(2028, 2, 28, 5, 0, 0, 0), "2028-02-28", utc(2028, 2, 29, 0, 0, 0, 0)},
		// 2026-11-26 08:00 in Tokyo is still the 25th in UTC.
		{"day", time.Date(2026, 11, 26, 8, 0, 0, 0, tokyo), "2026-11-25", utc(2026, 11, 26, 0, 0, 0, 0)},
		{"month", utc(2026, 11, 25, 12, 0, 0, 0), "2026-11", utc(2026, 12, 1, 0, 0, 0, 0)},
		{"month", utc(2026, 11, 1, 0, 0, 0, 0), "2026-11", utc(2026, 12, 1, 0, 0, 0, 0)},
		{"month", utc(2026, 12, 31, 23, 59, 59, 999999999), "2026-12", utc(2027, 1, 1, 0, 0, 0, 0)},
		{"month", utc(2026, 1, 31, 12, 0, 0, 0), "2026-01", utc(2026, 2, 1, 0, 0, 0, 0)},
		{"", utc(2026, 11, 25, 12, 0, 0, 0), "2026-11", utc(2026, 12, 1, 0, 0, 0, 0)},
	} {
		id, end := usage.Window(tc.period, tc.t)
		if id != tc.id || !end.Equal(tc.end) || end.Location() != time.UTC {
			t.Errorf("Window(%q, %v) = %s, %v; want %s, %v", tc.period, tc.t, id, end, tc.id, tc.end)
		}
		if !tc.t.Before(end) {
			t.Errorf("Window(%q, %v): end %v not after t", tc.period, tc.t, end)
		}
	}
}
