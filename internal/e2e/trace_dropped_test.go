package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

// TestTraceSpansDropped: spans the gateway's own OTLP export could not
// deliver (the collector refused them) are counted in
// caddy_ai_gateway_trace_spans_dropped_total, which reads 0 before.
func TestTraceSpansDropped(t *testing.T) {
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	var exports atomic.Int64
	refuse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		exports.Add(1)
		http.Error(w, "refused", http.StatusBadRequest) // not retryable: the batch is dropped
	}))
	t.Cleanup(refuse.Close)
	upURL, _ := startRecordingFake(t)
	g := startGateway(t, telemetryCaddyfile, map[string]any{"A": upURL, "OTLP": refuse.URL, "Capture": ""})
	const series = "caddy_ai_gateway_trace_spans_dropped_total"
	if m := adminGet(t, g, "/metrics"); !slices.Contains(strings.Split(m, "\n"), series+" 0") {
		t.Fatalf("%s is not 0 before any request:\n%s", series, m)
	}
	cl := g.client(option.WithAPIKey("gateway-secret-telemetry"))
	if _, err := cl.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{
		Model:    "demo",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
	}); err != nil {
		t.Fatal(err)
	}
	// The request, admission and attempt spans: one refused export.
	deadline := time.Now().Add(15 * time.Second)
	for {
		n := scrapeSeries(t, g, series)
		if n == 3 {
			break
		}
		if n > 3 || time.Now().After(deadline) {
			t.Fatalf("%s = %v after %d refused exports, want 3", series, n, exports.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if exports.Load() == 0 {
		t.Fatal("the collector got no export")
	}
}
