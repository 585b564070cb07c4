package caddymodule

import (
	"bytes"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/telemetry"
)

// TestHotSeries: requests observed through the remembered series leave
// every metric as the labelled way does (which serves requests past the
// bound): the same series, no more, with the same values. (Four
// completed chat answers to m1, three times: 12.)
func TestHotSeries(t *testing.T) {
	infos := []gateway.Info{
		{Route: "demo", Provider: "a", UpstreamModel: "m1", Op: openai.OpChat, Status: 200, Outcome: gateway.OutcomeCompleted, Attempts: 1,
			Usage: openai.Usage{InputTokens: 10, OutputTokens: 20, Known: true}, Key: "team"},
		{Route: "demo", Provider: "a", UpstreamModel: "m1", Op: openai.OpChat, Status: 200, Outcome: gateway.OutcomeCompleted, Attempts: 2,
			Usage: openai.Usage{InputTokens: 7, OutputTokens: 3, CachedTokens: 4, Known: true}, Key: "team"},
		{Route: "demo", Provider: "a", UpstreamModel: "m1", Op: openai.OpChat, Status: 200, Outcome: gateway.OutcomeCompleted, Attempts: 1,
			Stream: true, TTFT: 30 * time.Millisecond, Usage: openai.Usage{InputTokens: 5, OutputTokens: 9, Known: true}, Key: "other"},
		{Route: "demo", Provider: "b", UpstreamModel: "client-chosen", Op: openai.OpChat, Status: 599, Outcome: gateway.OutcomeStreamBroken, Attempts: 1,
			Stream: true, TTFT: 10 * time.Millisecond},
		{Route: "demo", Provider: "a", UpstreamModel: "m1", Op: openai.OpEmbeddings, Status: 502, Outcome: gateway.OutcomeUpstreamError, Attempts: 3},
		{Route: "demo", Provider: "a", UpstreamModel: "m1", Op: openai.OpChat, Status: 429, Limited: "rate_limit_exceeded"},
		{Route: "demo", Status: 429, Limited: "insufficient_quota"},
		{Status: 404},
		{Route: "demo", Provider: "a", UpstreamModel: "m1", Op: openai.OpChat, Status: 200, Outcome: gateway.OutcomeCompleted, Attempts: 1,
			Cache: "hit", CacheSaved: openai.Usage{InputTokens: 1, OutputTokens: 2, Known: true}},
		// A hit as the cache answers it (no attempt, no usage spent; the
		// saved usage and spend), streamed and not; a miss that was
		// answered and stored; a bypass.
		{Route: "demo", Provider: "a", UpstreamModel: "m1", Op: openai.OpChat, Status: 200, Outcome: gateway.OutcomeCompleted,
			Cache: "hit", CacheSaved: openai.Usage{InputTokens: 11, OutputTokens: 5, Known: true}, CacheSavedUSD: 0.0005, Key: "team"},
		{Route: "demo", Provider: "a", UpstreamModel: "m1", Op: openai.OpChat, Status: 200, Outcome: gateway.OutcomeCompleted, Stream: true,
			TTFT: time.Millisecond, Cache: "semantic-hit", CacheSaved: openai.Usage{InputTokens: 3, OutputTokens: 4, Known: true}, CacheSavedUSD: 0.0001},
		{Route: "demo", Provider: "a", UpstreamModel: "m1", Op: openai.OpChat, Status: 200, Outcome: gateway.OutcomeCompleted, Attempts: 1,
			Usage: openai.Usage{InputTokens: 8, OutputTokens: 2, Known: true}, Cache: "miss", Key: "team"},
		{Route: "demo", Provider: "b", UpstreamModel: "client-chosen", Op: openai.OpChat, Status: 200, Outcome: gateway.OutcomeCompleted, Attempts: 1,
			Usage: openai.Usage{InputTokens: 8, OutputTokens: 2, Known: true}, Cache: "bypass"},
	}
	costs := []float64{0.25, 0.5, 0.125, 0, 0, 0, 0, 0, 0, 0, 0, 0.0625, 0.03125}
	for _, keyLabel := range []bool{false, true} {
		gather := func(limit int) string {
			reg := prometheus.NewPedanticRegistry()
			m, err := newMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			m.hot.limit = limit
			m.configure(map[string]telemetry.Upstream{"a": telemetry.UpstreamOf("openai", "http://127.0.0.1:1/v1")},
				[]*ModelConfig{{Name: "demo", Targets: []TargetConfig{{Provider: "a", Model: "m1"}, {Provider: "b"}}}}, keyLabel)
			for range 3 {
				for i := range infos {
					m.observe(&infos[i], 0.5+float64(i), costs[i])
				}
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			for _, mf := range mfs {
				if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
					t.Fatal(err)
				}
			}
			return b.String()
		}
		hot, labelled := gather(0), gather(-1)
		if hot != labelled {
			t.Fatalf("key_label %v: remembered series:\n%s\nlabelled:\n%s", keyLabel, hot, labelled)
		}
		if !bytes.Contains([]byte(hot), []byte(`gen_ai_client_operation_duration_seconds_count{error_type="",gen_ai_operation_name="chat",gen_ai_provider_name="openai",gen_ai_request_model="demo",gen_ai_response_model="m1"} 21`)) ||
			!bytes.Contains([]byte(hot), []byte(`caddy_ai_gateway_cache_requests_total{model="demo",result="hit"} 6`)) {
			t.Fatalf("unexpected metrics:\n%s", hot)
		}
	}
}

// BenchmarkObserve is the metrics of one answered chat request of make
// bench's full pipeline: through the remembered series, and the labelled
// way.
func BenchmarkObserve(b *testing.B) {
	info := gateway.Info{Route: "bench", Provider: "fake", UpstreamModel: "fake-model", Op: openai.OpChat, Status: 200,
		Outcome: gateway.OutcomeCompleted, Attempts: 1, Usage: openai.Usage{InputTokens: 120, OutputTokens: 20, Known: true}, Key: "bench"}
	for _, c := range []struct {
		name  string
		limit int
	}{{"hot", 0}, {"labelled", -1}} {
		b.Run(c.name, func(b *testing.B) {
			m, err := newMetrics(prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			m.hot.limit = c.limit
			m.configure(map[string]telemetry.Upstream{"fake": telemetry.UpstreamOf("openai", "http://127.0.0.1:1/v1")},
				[]*ModelConfig{{Name: "bench", Targets: []TargetConfig{{Provider: "fake", Model: "fake-model"}}}}, false)
			b.ReportAllocs()
			for b.Loop() {
				m.observe(&info, 0.001, 0.0001)
			}
		})
	}
}
