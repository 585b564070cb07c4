package e2e

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// protoRecorder records the protocol and client address of every request
// a fakellm answers.
type protoRecorder struct {
	mu     sync.Mutex
	protos map[string]int            // "HTTP/2.0" -> requests
	conns  map[string]map[string]int // model path -> remote addr -> requests
}

func (p *protoRecorder) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.protos[r.Proto]++
		p.conns[r.Proto] = addTo(p.conns[r.Proto], r.RemoteAddr)
		p.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func addTo(m map[string]int, k string) map[string]int {
	if m == nil {
		m = map[string]int{}
	}
	m[k]++
	return m
}

func (p *protoRecorder) snapshot() (map[string]int, map[string]int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	protos := map[string]int{}
	for k, v := range p.protos {
		protos[k] = v
	}
	conns := map[string]int{}
	for k, v := range p.conns {
		conns[k] = len(v)
	}
	return protos, conns
}

// TestH2CUpstream drives a provider with `h2c` through a running Caddy: its
// requests reach fakellm as HTTP/2 with prior knowledge, streams held open
// at once share connections, and a provider without the switch on the
// same server still speaks HTTP/1.1.
func TestH2CUpstream(t *testing.T) {
	s := fakellm.New(fakellm.Options{Name: "h2"})
	// Slow streams so that they are open at the same time.
	s.Script("slow", fakellm.Behavior{Chunks: 10, ChunkDelay: 50 * time.Millisecond})
	rec := &protoRecorder{protos: map[string]int{}, conns: map[string]map[string]int{}}
	ts := httptest.NewUnstartedServer(rec.wrap(s))
	ts.Config.Protocols = fakellm.Protocols()
	ts.Start()
	t.Cleanup(ts.Close)

	gw := startGateway(t, `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider two {
			type openai
			base_url {{.URL}}/v1
			h2c
		}
		provider one {
			type openai
			base_url {{.URL}}/v1
		}
		model h2 {
			target two fake-model
		}
		model slow {
			target two slow
		}
		model h1 {
			target one fake-model
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`, map[string]any{"URL": ts.URL})
	c := gw.client()
	ctx := context.Background()

	out, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "h2", Messages: userMsg("hello over h2c")})
	if err != nil {
		t.Fatal(err)
	}
	if got := out.Choices[0].Message.Content; !strings.HasPrefix(got, "Hello from h2") {
		t.Fatalf("content %q", got)
	}

	const streams = 8
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	contents := make(chan string, streams)
	for range streams {
		wg.Go(func() {
			st := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "slow", Messages: userMsg("stream over h2c")})
			acc := openai.ChatCompletionAccumulator{}
			for st.Next() {
				acc.AddChunk(st.Current())
			}
			if err := st.Err(); err != nil {
				errs <- err
				return
			}
			contents <- acc.Choices[0].Message.Content
		})
	}
	wg.Wait()
	close(errs)
	close(contents)
	for err := range errs {
		t.Fatal(err)
	}
	for got := range contents {
		if !strings.HasPrefix(got, "Hello from h2") {
			t.Fatalf("stream content %q", got)
		}
	}

	if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "h1", Messages: userMsg("hello over http/1.1")}); err != nil {
		t.Fatal(err)
	}

	protos, conns := rec.snapshot()
	t.Logf("upstream requests by protocol %v, connections %v", protos, conns)
	if protos["HTTP/2.0"] != 1+streams || protos["HTTP/1.1"] != 1 {
		t.Fatalf("requests by protocol %v, want %d HTTP/2.0 and 1 HTTP/1.1", protos, 1+streams)
	}
	// The streams went over the connection the first request opened (a
	// second one only if a dial raced).
	if conns["HTTP/2.0"] >= streams {
		t.Fatalf("%d HTTP/2 connections for %d streams open at once: not shared", conns["HTTP/2.0"], streams)
	}
}
