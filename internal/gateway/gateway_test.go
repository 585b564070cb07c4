package gateway

import (
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

func TestTapUsage(t *testing.T) {
	tbl, _ := route.New([]route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "p"}}}}, nil)
	g, _ := New(Config{Routes: tbl})
	usageChunk := []byte(`{"id":"x","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}`)
	content := []byte(`{"id":"x","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}`)
	for _, clientUsage := range []bool{false, true} {
		req := &openai.Request{Op: openai.OpChat, ClientUsage: clientUsage}
		var info Info
		if !g.tapUsage(req, sse.Event{Data: content}, &info) || info.Usage.Known {
			t.Fatal("content chunk must pass without usage")
		}
		if got := g.tapUsage(req, sse.Event{Data: usageChunk}, &info); got != clientUsage {
			t.Fatalf("clientUsage=%v: usage chunk forwarded=%v", clientUsage, got)
		}
		if info.Usage != (openai.Usage{InputTokens: 7, OutputTokens: 3, CachedTokens: 2, Known: true}) {
			t.Fatalf("usage %+v", info.Usage)
		}
	}
	var info Info
	req := &openai.Request{Op: openai.OpResponses}
	g.tapUsage(req, sse.Event{Name: []byte("response.completed"), Data: []byte(`{"response":{"usage":{"input_tokens":5,"output_tokens":6}}}`)}, &info)
	if info.Usage.InputTokens != 5 || info.Usage.OutputTokens != 6 {
		t.Fatalf("responses usage %+v", info.Usage)
	}
}

func TestBackoffBounds(t *testing.T) {
	tbl, _ := route.New([]route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "p"}}}}, nil)
	g, _ := New(Config{Routes: tbl, RetryBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	for try := 1; try < 40; try++ {
		for range 50 {
			d := g.backoff(try)
			limit := min(time.Second, 100*time.Millisecond<<(try-1))
			if try > 20 {
				limit = time.Second
			}
			if d < 0 || d > limit {
				t.Fatalf("try %d: backoff %v outside [0,%v]", try, d, limit)
			}
		}
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 20 * time.Millisecond: "20ms", 1500 * time.Millisecond: "2s", 6 * time.Minute: "6m0s",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
