package e2e

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

// Prices of the spend tests, USD per 1M tokens.
const spendIn, spendOut = 1.5, 6.0

const spendCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider a {
			base_url {{.A}}/v1
		}
		model demo {
			target a fake-model
		}
		key team-a {
			secret spend-secret-a
		}
		key team-b {
			secret spend-secret-b
		}
		price fake-model 1.5 6
		metrics {
			key_label
		}
		{{.Redis}}
	}
}
:{{.Port}} {
	log {
		output stdout
		format json
	}
	log_append ai_cost_usd {http.ai_gateway.cost_usd}
	log_append ai_cache {http.ai_gateway.cache}
	log_append ai_key {http.ai_gateway.key}
	ai_gateway
}
`

// spent is what the SDK saw of one key's traffic.
type spent struct {
	requests, in, out int64
	costMicros        int64 // by the pricing table, rounded up per request as the gateway prices
}

func (s *spent) add(u openai.CompletionUsage) {
	s.requests++
	s.in += u.PromptTokens
	s.out += u.CompletionTokens
	s.costMicros += int64(math.Ceil(float64(u.PromptTokens)*spendIn + float64(u.CompletionTokens)*spendOut - 1e-9))
}

// spendTraffic sends n non-stream and n stream requests with key through
// g and returns what the SDK was told.
func spendTraffic(t *testing.T, g *Gateway, key string, n int) spent {
	t.Helper()
	var s spent
	cl := g.client(option.WithAPIKey(key))
	for i := range n {
		resp, err := cl.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
			Model:    "demo",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(strings.Repeat("tokens ", i+1))},
		})
		if err != nil {
			t.Fatal(err)
		}
		s.add(resp.Usage)
		st := cl.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{
			Model:         "demo",
			Messages:      []openai.ChatCompletionMessageParamUnion{openai.UserMessage("stream " + strings.Repeat("x ", i))},
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		var u openai.CompletionUsage
		for st.Next() {
			if c := st.Current(); c.Usage.TotalTokens > 0 {
				u = c.Usage
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if u.TotalTokens == 0 {
			t.Fatal("stream reported no usage")
		}
		s.add(u)
	}
	return s
}

// scrape parses the admin endpoint's /metrics.
func scrape(t *testing.T, g *Gateway) map[string]*dto.MetricFamily {
	t.Helper()
	body := adminGet(t, g, "/metrics")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams
}

// metricValue sums the samples of name whose labels include want (a
// histogram's sum, or its count when name ends in _count).
func metricValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	count := false
	fam := fams[name]
	if fam == nil {
		if base, ok := strings.CutSuffix(name, "_count"); ok {
			fam, count = fams[base], true
		}
	}
	if fam == nil {
		return math.NaN()
	}
	total := 0.0
next:
	for _, m := range fam.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Histogram != nil && count:
			total += float64(m.Histogram.GetSampleCount())
		case m.Histogram != nil:
			total += m.Histogram.GetSampleSum()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		}
	}
	return total
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

// TestSpendMetricsAndUsage: after scripted traffic through a running Caddy
// the semantic-convention token histograms and the spend counters equal
// what fakellm reported × the pricing table, the usage API and its CSV
// export total the same, and the access log carries the cost.
func TestSpendMetricsAndUsage(t *testing.T) {
	fake := startFake(t, fakellm.Options{Chunks: 5})
	g := startGateway(t, spendCaddyfile, map[string]any{"A": fake.URL, "Redis": ""})
	want := map[string]spent{"team-a": spendTraffic(t, g, "spend-secret-a", 3), "team-b": spendTraffic(t, g, "spend-secret-b", 2)}

	fams := scrape(t, g)
	var all spent
	for key, s := range want {
		got := metricValue(fams, "caddy_ai_gateway_spend_usd_total", map[string]string{"key": key, "model": "demo", "provider": "a"})
		if !near(got, float64(s.costMicros)/1e6) {
			t.Errorf("spend of %s = %v, want %v", key, got, float64(s.costMicros)/1e6)
		}
		all.requests += s.requests
		all.in += s.in
		all.out += s.out
		all.costMicros += s.costMicros
	}
	genai := map[string]string{"gen_ai_operation_name": "chat", "gen_ai_provider_name": "openai",
		"gen_ai_request_model": "demo", "gen_ai_response_model": "fake-model"}
	for typ, n := range map[string]int64{"input": all.in, "output": all.out} {
		l := map[string]string{"gen_ai_token_type": typ}
		for k, v := range genai {
			l[k] = v
		}
		if got := metricValue(fams, "gen_ai_client_token_usage", l); got != float64(n) {
			t.Errorf("gen_ai_client_token_usage{%s} sum = %v, want %d", typ, got, n)
		}
		if got := metricValue(fams, "gen_ai_client_token_usage_count", l); got != float64(all.requests) {
			t.Errorf("gen_ai_client_token_usage{%s} count = %v, want %d", typ, got, all.requests)
		}
	}
	if got := metricValue(fams, "gen_ai_client_operation_duration_seconds_count", genai); got != float64(all.requests) {
		t.Errorf("operation duration count %v, want %d", got, all.requests)
	}
	if got := metricValue(fams, "gen_ai_server_time_to_first_token_seconds_count", genai); got != float64(all.requests/2) {
		t.Errorf("TTFT count %v, want %d streams", got, all.requests/2)
	}
	for _, name := range []string{"gen_ai_server_time_per_output_token_seconds", "caddy_ai_gateway_requests_total", "caddy_ai_gateway_tokens_total"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("%s not exported", name)
		}
	}
	// Bucket boundaries are the conventions' (the text format adds +Inf).
	if b := fams["gen_ai_client_token_usage"].Metric[0].Histogram.Bucket; len(b) < 14 || b[0].GetUpperBound() != 1 || b[13].GetUpperBound() != 67108864 {
		t.Errorf("token usage buckets %v", b)
	}

	checkUsageAPI(t, g, want)

	// The access log prices each request.
	eventually(t, 10*time.Second, func() bool { return strings.Count(g.Logs(), `"ai_cost_usd"`) >= int(all.requests) }, "cost missing from the access log:\n%s", tail(g.Logs(), 3000))
	var logged float64
	for _, line := range strings.Split(g.Logs(), "\n") {
		var entry struct {
			Cost string `json:"ai_cost_usd"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Cost != "" {
			f, err := strconv.ParseFloat(entry.Cost, 64)
			if err != nil {
				t.Fatalf("ai_cost_usd %q", entry.Cost)
			}
			logged += f
		}
	}
	if !near(logged, float64(all.costMicros)/1e6) {
		t.Errorf("logged cost %v, want %v", logged, float64(all.costMicros)/1e6)
	}
	for _, line := range strings.Split(g.Logs(), "\n") {
		if strings.Contains(line, `"ai_cost_usd"`) {
			t.Logf("access log line: %s", line)
			break
		}
	}
}

// checkUsageAPI checks /ai_gateway/usage by key and its CSV export
// against want.
func checkUsageAPI(t *testing.T, g *Gateway, want map[string]spent) {
	t.Helper()
	type point struct {
		Requests     int64   `json:"requests"`
		InputTokens  int64   `json:"input_tokens"`
		OutputTokens int64   `json:"output_tokens"`
		CostUSD      float64 `json:"cost_usd"`
	}
	var ans struct {
		Step   string `json:"step"`
		Series []struct {
			Key    string  `json:"key"`
			Model  string  `json:"model"`
			Points []point `json:"points"`
			Total  point   `json:"total"`
		} `json:"series"`
		Total point `json:"total"`
	}
	var all spent
	for _, s := range want {
		all.requests += s.requests
		all.in += s.in
		all.out += s.out
		all.costMicros += s.costMicros
	}
	from := time.Now().UTC().Add(-3 * time.Hour).Format(time.RFC3339)
	// Settlements leave through a queue: poll until the books are whole.
	eventually(t, 15*time.Second, func() bool {
		body := adminGet(t, g, "/ai_gateway/usage?group_by=key,model&step=hour&from="+from)
		if err := json.Unmarshal([]byte(body), &ans); err != nil {
			t.Fatalf("usage answer %s: %v", body, err)
		}
		return ans.Total.Requests == all.requests
	}, "usage total %d requests, want %d", ans.Total.Requests, all.requests)
	if ans.Step != "hour" || len(ans.Series) != len(want) {
		t.Fatalf("usage answer %+v", ans)
	}
	for _, s := range ans.Series {
		w := want[s.Key]
		if s.Model != "demo" || s.Total.Requests != w.requests || s.Total.InputTokens != w.in || s.Total.OutputTokens != w.out || !near(s.Total.CostUSD, float64(w.costMicros)/1e6) {
			t.Errorf("series %s: %+v, want %+v", s.Key, s.Total, w)
		}
	}
	// Daily rollups agree.
	body := adminGet(t, g, "/ai_gateway/usage?group_by=provider&step=day&from="+time.Now().UTC().AddDate(0, 0, -2).Format(time.DateOnly))
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		t.Fatal(err)
	}
	if ans.Total.Requests != all.requests || ans.Total.OutputTokens != all.out || !near(ans.Total.CostUSD, float64(all.costMicros)/1e6) {
		t.Errorf("daily total %+v, want %+v", ans.Total, all)
	}
	// The CSV export: one header, rows summing to the same.
	csvBody := adminGet(t, g, "/ai_gateway/usage/export?format=csv&from="+from)
	recs, err := csv.NewReader(strings.NewReader(csvBody)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	head := strings.Join(recs[0], ",")
	if head != "start,step,key,model,provider,upstream_model,cache,status,requests,input_tokens,output_tokens,cached_tokens,cost_usd" {
		t.Fatalf("csv header %s", head)
	}
	var reqs, out int64
	var cost float64
	for _, r := range recs[1:] {
		n, _ := strconv.ParseInt(r[8], 10, 64)
		o, _ := strconv.ParseInt(r[10], 10, 64)
		c, _ := strconv.ParseFloat(r[12], 64)
		reqs, out, cost = reqs+n, out+o, cost+c
		if r[7] != "200" || r[5] != "fake-model" {
			t.Errorf("csv row %v", r)
		}
	}
	if reqs != all.requests || out != all.out || !near(cost, float64(all.costMicros)/1e6) {
		t.Errorf("csv totals %d requests %d output $%v, want %+v", reqs, out, cost, all)
	}
	if status, resp := adminDo(t, g, "GET", "/ai_gateway/usage?step=week", ""); status != 400 {
		t.Errorf("bad step: %d %s", status, resp)
	}
	if status, resp := adminDo(t, g, "GET", "/ai_gateway/usage?group_by=secret", ""); status != 400 {
		t.Errorf("bad group_by: %d %s", status, resp)
	}
}

// TestUsageAcrossGatewaysRedis: two Caddy instances sharing one
// redis-server book into the same rollups; either one's usage API totals
// the traffic of both.
func TestUsageAcrossGatewaysRedis(t *testing.T) {
	rs := redistest.Start(t)
	fake := startFake(t, fakellm.Options{Chunks: 4})
	data := func() map[string]any {
		return map[string]any{"A": fake.URL, "Redis": fmt.Sprintf("redis redis://%s", rs.Addr())}
	}
	g1 := startGateway(t, spendCaddyfile, data())
	g2 := startGateway(t, spendCaddyfile, data())
	a := spendTraffic(t, g1, "spend-secret-a", 2)
	b := spendTraffic(t, g2, "spend-secret-b", 2)
	a2 := spendTraffic(t, g2, "spend-secret-a", 1)
	a.requests, a.in, a.out, a.costMicros = a.requests+a2.requests, a.in+a2.in, a.out+a2.out, a.costMicros+a2.costMicros
	want := map[string]spent{"team-a": a, "team-b": b}
	checkUsageAPI(t, g1, want)
	checkUsageAPI(t, g2, want)
	if keys := rs.Keys("aigw:rollup:*"); len(keys) != 2 {
		t.Errorf("rollup hashes %v, want one hour and one day", keys)
	}
}
