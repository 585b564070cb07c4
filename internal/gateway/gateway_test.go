package gateway

import (
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

func TestUsageTap(t *testing.T) {
	usageChunk := []byte(`{"id":"x","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}`)
	content := []byte(`{"id":"x","choices":[{"index":0,"delta":{"content":"hi"}}],"usage":null}`)
	info := Info{Op: openai.OpChat}
	u := usageTap{info: &info}
	u.Event(&dialect.Event{Event: sse.Event{Data: content}}, provider.FormatOpenAI)
	if info.Usage.Known {
		t.Fatal("a content chunk carries no usage")
	}
	u.Event(&dialect.Event{Event: sse.Event{Data: usageChunk}}, provider.FormatOpenAI)
	if info.Usage != (openai.Usage{InputTokens: 7, OutputTokens: 3, CachedTokens: 2, Known: true}) {
		t.Fatalf("usage %+v", info.Usage)
	}
	info = Info{Op: openai.OpResponses}
	u.Event(&dialect.Event{Event: sse.Event{Name: []byte("response.completed"), Data: []byte(`{"response":{"usage":{"input_tokens":5,"output_tokens":6}}}`)}}, provider.FormatOpenAI)
	if info.Usage.InputTokens != 5 || info.Usage.OutputTokens != 6 {
		t.Fatalf("responses usage %+v", info.Usage)
	}
	// Native events are the stream's to account (provider.UsageReporter).
	info = Info{Op: openai.OpChat}
	u.Event(&dialect.Event{Event: sse.Event{Data: usageChunk}}, provider.FormatAnthropic)
	if info.Usage.Known {
		t.Fatal("native events must not be read as OpenAI's")
	}
	if u.Body([]byte(`{"usage":{"prompt_tokens":1,"completion_tokens":2}}`), provider.FormatOpenAI); info.Usage.OutputTokens != 2 {
		t.Fatalf("body usage %+v", info.Usage)
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
