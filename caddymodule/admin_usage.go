package caddymodule

import (
	"encoding/csv"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

// rollupPool keeps the in-process usage rollups (no Redis) across reloads.
var rollupPool = caddy.NewUsagePool()

type rollupValue struct{ *usage.MemoryRollups }

func (rollupValue) Destruct() error { return nil }

const rollupKey = "ai_gateway.rollups"

// provisionRollups takes the in-process rollups when Redis does not keep
// them (provisionGuard set a.rollups to Redis's).
func (a *App) provisionRollups() error {
	if a.rollups != nil {
		return nil
	}
	v, _, err := rollupPool.LoadOrNew(rollupKey, func() (caddy.Destructor, error) {
		return rollupValue{usage.NewMemoryRollups()}, nil
	})
	if err != nil {
		return err
	}
	a.rollups, a.rollupRef = v.(rollupValue).MemoryRollups, true
	return nil
}

func (a *App) cleanupRollups() {
	if a.rollupRef {
		a.rollupRef = false
		_, _ = rollupPool.Delete(rollupKey)
	}
}

// accounting books an ended request into the rollups (gateway.Guard's
// Accounting): a write that travels in the request's settlement, in the
// settlement queue's Redis pipeline when Redis keeps the rollups.
func (a *App) accounting(info *gateway.Info) ratelimit.Write {
	if a.rollups == nil || info.Route == "" {
		return nil
	}
	d := usage.Dims{Key: info.Key, Route: info.Route, Provider: info.Provider, Status: statusLabel(info.Status)}
	if info.Provider != "" {
		d.UpstreamModel = a.metrics.responseModel(info)
	}
	if info.Cache != "" {
		d.Cache = boundedLabel(info.Cache)
	}
	c := usage.Counts{Requests: 1, InputTokens: info.Usage.InputTokens, OutputTokens: info.Usage.OutputTokens,
		CachedTokens: info.Usage.CachedTokens, CostMicros: int64(math.Round(a.costUSD(info) * 1e6))}
	return &usage.RollupEntry{Rollups: a.rollups, At: time.Now(), Dims: d, Counts: c}
}

// usageQuery is a parsed /ai_gateway/usage query.
type usageQuery struct {
	step     usage.Step
	from, to time.Time
	groupBy  []string
	keep     [len(usage.DimNames)]bool
}

func parseUsageQuery(r *http.Request, defaultAll bool) (usageQuery, error) {
	q := r.URL.Query()
	uq := usageQuery{step: usage.StepHour}
	switch s := q.Get("step"); s {
	case "", "hour":
	case "day":
		uq.step = usage.StepDay
	default:
		return uq, apiErr(http.StatusBadRequest, "step must be hour or day")
	}
	now := time.Now().UTC()
	uq.to = now
	if s := q.Get("to"); s != "" {
		t, err := parseTime(s)
		if err != nil {
			return uq, apiErr(http.StatusBadRequest, "to: %v", err)
		}
		uq.to = t
	}
	uq.from = uq.to.Add(-24 * time.Hour)
	if uq.step == usage.StepDay {
		uq.from = uq.to.AddDate(0, 0, -30)
	}
	if s := q.Get("from"); s != "" {
		t, err := parseTime(s)
		if err != nil {
			return uq, apiErr(http.StatusBadRequest, "from: %v", err)
		}
		uq.from = t
	}
	if !uq.from.Before(uq.to) {
		return uq, apiErr(http.StatusBadRequest, "from must be before to")
	}
	if _, err := usage.Buckets(uq.step, uq.from, uq.to); err != nil {
		return uq, apiErr(http.StatusBadRequest, "%v", err)
	}
	gb := q.Get("group_by")
	if gb == "" && defaultAll {
		gb = strings.Join(usage.DimNames[:], ",")
	}
	for _, name := range strings.Split(gb, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		i := dimIndex(name)
		if i < 0 {
			return uq, apiErr(http.StatusBadRequest, "group_by: unknown dimension %q (one of %s)", name, strings.Join(usage.DimNames[:], ", "))
		}
		if !uq.keep[i] {
			uq.keep[i] = true
			uq.groupBy = append(uq.groupBy, usage.DimNames[i])
		}
	}
	return uq, nil
}

func dimIndex(name string) int {
	for i, n := range usage.DimNames {
		if n == name {
			return i
		}
	}
	return -1
}

// parseTime reads RFC 3339, a date (2006-01-02, UTC) or Unix seconds.
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > 1<<40 {
		return time.Time{}, apiErr(http.StatusBadRequest, "%q is not RFC 3339, a date (2006-01-02) or Unix seconds", s)
	}
	return time.Unix(n, 0).UTC(), nil
}

// usagePoint is one bucket of a series.
type usagePoint struct {
	Start        time.Time `json:"start"`
	Requests     int64     `json:"requests"`
	InputTokens  int64     `json:"input_tokens"`
	OutputTokens int64     `json:"output_tokens"`
	CachedTokens int64     `json:"cached_tokens"`
	CostUSD      float64   `json:"cost_usd"`
}

func point(start time.Time, c usage.Counts) usagePoint {
	return usagePoint{Start: start, Requests: c.Requests, InputTokens: c.InputTokens, OutputTokens: c.OutputTokens,
		CachedTokens: c.CachedTokens, CostUSD: float64(c.CostMicros) / 1e6}
}

type usageSeries struct {
	usage.Dims
	Points []usagePoint `json:"points"`
	Total  usagePoint   `json:"total"`
}

type usageAnswer struct {
	Step    usage.Step    `json:"step"`
	From    time.Time     `json:"from"`
	To      time.Time     `json:"to"`
	GroupBy []string      `json:"group_by"`
	Series  []usageSeries `json:"series"`
	Total   usagePoint    `json:"total"`
}

// grouped sums rows by bucket and the kept dimensions, in bucket order.
func grouped(rows []usage.Row, keep [len(usage.DimNames)]bool) []usage.Row {
	type k struct {
		start int64
		dims  usage.Dims
	}
	idx := map[k]int{}
	var out []usage.Row
	for _, r := range rows {
		d := r.Dims.Project(keep)
		key := k{r.Start.Unix(), d}
		if i, ok := idx[key]; ok {
			out[i].Counts.Add(r.Counts)
			continue
		}
		idx[key] = len(out)
		out = append(out, usage.Row{Start: r.Start, Dims: d, Counts: r.Counts})
	}
	return out
}

// adminUsage serves GET /ai_gateway/usage (series to chart) and GET
// /ai_gateway/usage/export?format=csv (rows for finance).
func (a *App) adminUsage(w http.ResponseWriter, r *http.Request, export bool) error {
	if r.Method != http.MethodGet {
		return apiErr(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
	}
	if a.rollups == nil {
		return apiErr(http.StatusServiceUnavailable, "usage rollups are not available")
	}
	uq, err := parseUsageQuery(r, export)
	if err != nil {
		return err
	}
	if export {
		if f := r.URL.Query().Get("format"); f != "" && f != "csv" {
			return apiErr(http.StatusBadRequest, "format must be csv")
		}
	}
	rows, err := a.rollups.Query(r.Context(), uq.step, uq.from, uq.to)
	if err != nil {
		return apiErr(http.StatusServiceUnavailable, "reading usage: %v", err)
	}
	rows = grouped(rows, uq.keep)
	if export {
		return writeUsageCSV(w, uq, rows)
	}
	ans := usageAnswer{Step: uq.step, From: uq.from, To: uq.to, GroupBy: uq.groupBy, Series: []usageSeries{}}
	if ans.GroupBy == nil {
		ans.GroupBy = []string{}
	}
	series := map[usage.Dims]int{}
	var total usage.Counts
	totals := []usage.Counts{}
	for _, row := range rows {
		i, ok := series[row.Dims]
		if !ok {
			i = len(ans.Series)
			series[row.Dims] = i
			ans.Series = append(ans.Series, usageSeries{Dims: row.Dims})
			totals = append(totals, usage.Counts{})
		}
		ans.Series[i].Points = append(ans.Series[i].Points, point(row.Start, row.Counts))
		totals[i].Add(row.Counts)
		total.Add(row.Counts)
	}
	for i := range ans.Series {
		ans.Series[i].Total = point(uq.step.Start(uq.from), totals[i])
	}
	ans.Total = point(uq.step.Start(uq.from), total)
	return writeAdminJSON(w, http.StatusOK, ans)
}

func writeUsageCSV(w http.ResponseWriter, uq usageQuery, rows []usage.Row) error {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="ai-gateway-usage.csv"`)
	cw := csv.NewWriter(w)
	head := append([]string{"start", "step"}, uq.groupBy...)
	head = append(head, "requests", "input_tokens", "output_tokens", "cached_tokens", "cost_usd")
	if err := cw.Write(head); err != nil {
		return err
	}
	for _, row := range rows {
		rec := []string{row.Start.Format(time.RFC3339), string(uq.step)}
		f := [...]string{row.Dims.Key, row.Dims.Route, row.Dims.Provider, row.Dims.UpstreamModel, row.Dims.Cache, row.Dims.Status}
		for _, g := range uq.groupBy {
			rec = append(rec, csvSafe(f[dimIndex(g)]))
		}
		rec = append(rec, strconv.FormatInt(row.Requests, 10), strconv.FormatInt(row.InputTokens, 10),
			strconv.FormatInt(row.OutputTokens, 10), strconv.FormatInt(row.CachedTokens, 10),
			strconv.FormatFloat(float64(row.CostMicros)/1e6, 'f', 6, 64))
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// csvSafe keeps a spreadsheet from reading a value as a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@", rune(s[0])) {
		return "'" + s
	}
	return s
}
