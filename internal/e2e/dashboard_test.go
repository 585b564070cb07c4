package e2e

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

const dashboardCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider a {
			base_url {{.A}}/v1
		}
		model demo {
			target a fake-model
			retries 1
		}
		key team-a {
			secret spend-secret-a
		}
		key team-b {
			secret spend-secret-b
		}
		key tight {
			secret tight-secret
			rpm 1
		}
		price fake-model 1.5 6
		retry_backoff 1ms
		metrics {
			key_label
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`

// stageFed are the dashboard's metrics that only the response cache stage
// feeds (Info.Cache): this branch has no such stage, so a running Caddy
// exports them once one is configured. caddymodule's
// TestDashboardMetricsRegistered checks they are registered.
var stageFed = map[string]bool{
	"caddy_ai_gateway_cache_requests_total":     true,
	"caddy_ai_gateway_cache_saved_usd_total":    true,
	"caddy_ai_gateway_cache_saved_tokens_total": true,
}

// dashboardMetrics returns the metric names the dashboard's queries name,
// without the _bucket, _sum and _count suffixes of histograms.
func dashboardMetrics(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../deploy/grafana/ai-gateway.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	re := regexp.MustCompile(`\b(caddy_ai_gateway_[a-z_]+|gen_ai_[a-z_]+)\b`)
	seen := map[string]bool{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			names := re.FindAllString(tg.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no gateway metric", p.Title, tg.Expr)
			}
			for _, n := range names {
				if strings.HasPrefix(n, "gen_ai_") && !strings.HasSuffix(n, "_bucket") && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") && !strings.Contains(tg.Expr, n+"{") && !strings.Contains(tg.Expr, n+"[") {
					continue // a label (gen_ai_provider_name), not a metric
				}
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					n = strings.TrimSuffix(n, suf)
				}
				seen[n] = true
			}
		}
	}
	var out []string
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TestDashboardMetricsExported loads deploy/grafana/ai-gateway.json and
// checks that every metric its queries name is exported by a running
// Caddy after scripted traffic: answers, a stream, a retry, an upstream
// error and a rate-limit rejection.
func TestDashboardMetricsExported(t *testing.T) {
	names := dashboardMetrics(t)
	if len(names) < 10 {
		t.Fatalf("dashboard names only %v", names)
	}
	fake := startFake(t, fakellm.Options{Chunks: 4})
	g := startGateway(t, dashboardCaddyfile, map[string]any{"A": fake.URL})
	spendTraffic(t, g, "spend-secret-a", 1)
	spendTraffic(t, g, "spend-secret-b", 1)
	fake.Enqueue(fakellm.Behavior{Status: 503}) // retried
	spendTraffic(t, g, "spend-secret-a", 1)
	fake.Enqueue(fakellm.Behavior{Status: 400}, fakellm.Behavior{Status: 400}) // answered 400
	cl := g.client(option.WithAPIKey("spend-secret-a"))
	params := openai.ChatCompletionNewParams{Model: "demo", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}}
	if _, err := cl.Chat.Completions.New(context.Background(), params); err == nil {
		t.Fatal("an upstream 400 was answered 200")
	}
	tight := g.client(option.WithAPIKey("tight-secret"))
	var limited bool
	for range 3 {
		if _, err := tight.Chat.Completions.New(context.Background(), params); err != nil {
			limited = strings.Contains(err.Error(), "429")
		}
	}
	if !limited {
		t.Fatal("the rpm 1 key was never refused")
	}
	fams := scrape(t, g)
	for _, n := range names {
		if fams[n] != nil {
			continue
		}
		if stageFed[n] {
			t.Logf("%s: fed by the cache stage, not configured here", n)
			continue
		}
		t.Errorf("the dashboard queries %s, which the gateway does not export", n)
	}
	if v := metricValue(fams, "caddy_ai_gateway_rejected_total", map[string]string{"reason": "rate_limit_exceeded"}); v < 1 {
		t.Errorf("rejections %v", v)
	}
}
