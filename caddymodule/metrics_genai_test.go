package caddymodule

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
)

func TestForEachGuardrail(t *testing.T) {
	var got []string
	forEachGuardrail("masked=email:2,card:1 blocked=injection;bad masked=x:-1,y:z,{evil}:3,phone:4", func(a, d string, n int) {
		got = append(got, a+"/"+d+"/"+strings.Repeat("#", n))
	})
	want := "masked/email/##,masked/card/#,blocked/injection/#,masked/phone/####"
	if strings.Join(got, ",") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
}

// TestStageMetrics: what the cache, RAG and guardrail stages put in Info
// is counted; a request with none of it counts nothing there.
func TestStageMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.configure(nil, []*ModelConfig{{Name: "demo", Targets: []TargetConfig{{Provider: "a", Model: "m1"}}}}, false)
	m.observe(&gateway.Info{Route: "demo", Provider: "a", UpstreamModel: "m1", Status: 200, Outcome: gateway.OutcomeCompleted}, 0.1, 0)
	for _, name := range []string{"caddy_ai_gateway_cache_requests_total", "caddy_ai_gateway_rag_chunks_injected_total", "caddy_ai_gateway_guardrail_actions_total"} {
		if n := testutil.CollectAndCount(reg, name); n != 0 {
			t.Fatalf("%s has %d series for a request without stages", name, n)
		}
	}
	m.observe(&gateway.Info{Route: "demo", Provider: "a", UpstreamModel: "m1", Status: 200, Outcome: gateway.OutcomeCompleted,
		Cache: "hit", CacheSaved: openai.Usage{InputTokens: 10, OutputTokens: 20, Known: true}, CacheSavedUSD: 0.5,
		RAG: "used", RAGSources: []string{"a#0", "b#1"}, RAGTime: 30 * time.Millisecond,
		Guardrails: "masked=email:2,card:1"}, 0.1, 0)
	checks := map[string]float64{
		`caddy_ai_gateway_cache_requests_total{model="demo",result="hit"}`:           1,
		`caddy_ai_gateway_cache_saved_tokens_total{direction="output",model="demo"}`: 20,
		`caddy_ai_gateway_cache_saved_usd_total{model="demo"}`:                       0.5,
		`caddy_ai_gateway_rag_chunks_injected_total{model="demo"}`:                   2,
		`caddy_ai_gateway_guardrail_actions_total{action="masked",detector="email"}`: 2,
		`caddy_ai_gateway_guardrail_actions_total{action="masked",detector="card"}`:  1,
	}
	for series, want := range checks {
		name, labels, _ := strings.Cut(series, "{")
		var got float64
		switch name {
		case "caddy_ai_gateway_cache_requests_total":
			got = testutil.ToFloat64(m.cacheRequests.WithLabelValues("demo", "hit"))
		case "caddy_ai_gateway_cache_saved_tokens_total":
			got = testutil.ToFloat64(m.cacheTokens.WithLabelValues("demo", "output"))
		case "caddy_ai_gateway_cache_saved_usd_total":
			got = testutil.ToFloat64(m.cacheUSD.WithLabelValues("demo"))
		case "caddy_ai_gateway_rag_chunks_injected_total":
			got = testutil.ToFloat64(m.ragChunks.WithLabelValues("demo"))
		case "caddy_ai_gateway_guardrail_actions_total":
			det := "email"
			if strings.Contains(labels, "card") {
				det = "card"
			}
			got = testutil.ToFloat64(m.guardrailsActions.WithLabelValues("masked", det))
		}
		if got != want {
			t.Errorf("%s = %v, want %v", series, got, want)
		}
	}
	if n := testutil.CollectAndCount(reg, "caddy_ai_gateway_rag_retrieval_duration_seconds"); n != 1 {
		t.Errorf("rag latency series %d", n)
	}
}

// describing is a Registerer recording the names of what registers.
type describing struct{ names map[string]bool }

func (d *describing) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	for desc := range ch {
		s := desc.String()
		if i := strings.Index(s, `fqName: "`); i >= 0 {
			rest := s[i+len(`fqName: "`):]
			d.names[rest[:strings.IndexByte(rest, '"')]] = true
		}
	}
	return nil
}
func (d *describing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = d.Register(c)
	}
}
func (d *describing) Unregister(prometheus.Collector) bool { return false }

// TestDashboardMetricsRegistered: every metric deploy/grafana/ai-gateway.json
// queries is one the gateway registers (the e2e test checks they are
// exported after traffic; the cache's only once a cache stage feeds them).
func TestDashboardMetricsRegistered(t *testing.T) {
	raw, err := os.ReadFile("../deploy/grafana/ai-gateway.json")
	if err != nil {
		t.Fatal(err)
	}
	reg := &describing{names: map[string]bool{}}
	if _, err := newMetrics(reg); err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\b(caddy_ai_gateway_[a-z_]+|gen_ai_[a-z_]+)(\{|\[)`)
	n := 0
	for _, m := range re.FindAllStringSubmatch(string(raw), -1) {
		name := m[1]
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suf)
		}
		n++
		if !reg.names[name] {
			t.Errorf("the dashboard queries %s, which is not registered", name)
		}
	}
	if n < 10 {
		t.Fatalf("only %d metric references found", n)
	}
}

var statusSink string

// TestStatusLabel: every code is spelled in decimal, and the codes a
// request ends with take no allocation.
func TestStatusLabel(t *testing.T) {
	for _, c := range []int{-1, 0, 7, 99, 100, 200, 404, 499, 599, 600, 1000} {
		if got, want := statusLabel(c), strconv.Itoa(c); got != want {
			t.Errorf("statusLabel(%d) = %q, want %q", c, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { statusSink = statusLabel(200); statusSink = statusLabel(503) }); n != 0 {
		t.Errorf("statusLabel allocates %v times per two calls", n)
	}
}
