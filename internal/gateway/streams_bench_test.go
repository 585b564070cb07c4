package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/openaicompat"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

// BenchmarkOpenStreams holds benchOpenStreams streams open at once through
// the real openaicompat provider and HTTP client, each with a 100 KiB
// prompt, and reports the Go heap and stacks they hold per stream
// ("heap-B/stream", "stack-B/stream"; see openStreams). With
// AIGW_STREAMS_HEAP=<file> a heap profile (of every allocation) is written
// while they are open; AIGW_STREAMS_BODY=<bytes> sets the prompt's size.
//
//	go test -run '^$' -bench OpenStreams -benchtime 1x ./internal/gateway/
func BenchmarkOpenStreams(b *testing.B) {
	size := 100 << 10
	if s := os.Getenv("AIGW_STREAMS_BODY"); s != "" {
		size, _ = strconv.Atoi(s)
	}
	profile := os.Getenv("AIGW_STREAMS_HEAP")
	if profile != "" {
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	var heap, stack float64
	for b.Loop() {
		h, s := openStreams(b, benchOpenStreams, benchChatBody("bench", true, size), profile)
		heap, stack = heap+h, stack+s
	}
	b.ReportMetric(heap/float64(b.N), "heap-B/stream")
	b.ReportMetric(stack/float64(b.N), "stack-B/stream")
}

// An open stream does not keep the client's prompt nor the upstream
// request body built from it: 20 streams of 1 MiB prompts held open cost
// far less than a prompt each (they cost two each when both were kept).
func TestOpenStreamsDropTheBody(t *testing.T) {
	prompt := strings.Repeat("All work and no play makes Jack a dull boy. ", 1<<20/44)
	body := []byte(`{"model":"bench","stream":true,"messages":[{"role":"user","content":"` + prompt + `"}]}`)
	if heap, _ := openStreams(t, 20, body, ""); heap > 256<<10 {
		t.Fatalf("%.0f KiB of heap per open stream of a 1 MiB prompt, want far less than the prompt", heap/1024)
	}
}

// openStreams opens n streams at once through the real openaicompat
// provider and HTTP client, each with the request body body, and returns
// the Go heap and stack bytes in use per stream while all are open. The
// upstream reads and discards the request body and holds each stream after
// its first chunk, so what it keeps is the same whatever the gateway does.
// With profile set a heap profile is written there while they are open.
func openStreams(tb testing.TB, n int, body []byte, profile string) (heap, stack float64) {
	tb.Helper()
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","model":"fake-model","choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n")
		w.(http.Flusher).Flush()
		<-release
		_, _ = io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk","model":"fake-model","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`+"\n\ndata: [DONE]\n\n")
	}))
	defer up.Close()
	var once sync.Once
	let := func() { once.Do(func() { close(release) }) } // the streams end
	defer let()
	h := provider.NewHTTP("fake", provider.Timeouts{})
	defer h.Close()
	tr := h.Client.Transport.(*http.Transport)
	tr.MaxConnsPerHost, tr.MaxIdleConnsPerHost = 0, n
	p, err := openaicompat.New(openaicompat.Config{Name: "fake", BaseURL: up.URL + "/v1"}, h)
	if err != nil {
		tb.Fatal(err)
	}
	rt, err := route.New([]route.Route{{Pattern: "bench", Targets: []route.Target{{Provider: "fake", Model: "fake-model"}}}}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	g, err := New(Config{Providers: map[string]provider.Provider{"fake": p}, Routes: rt})
	if err != nil {
		tb.Fatal(err)
	}
	before := memInUse()
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	for range n {
		go func() {
			defer done.Done()
			r := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/chat/completions", bytes.NewReader(body))
			w := &firstWriteSignal{benchWriter: newBenchWriter(), first: started.Done}
			g.ServeHTTP(w, r)
			if w.status != http.StatusOK {
				tb.Errorf("status %d", w.status)
			}
		}()
	}
	started.Wait()
	open := memInUse()
	if profile != "" {
		if out, err := os.Create(profile); err == nil {
			_ = pprof.WriteHeapProfile(out)
			out.Close()
		}
	}
	let()
	done.Wait()
	return float64(open.heap-before.heap) / float64(n), float64(open.stack-before.stack) / float64(n)
}

const benchOpenStreams = 300

type memUse struct{ heap, stack int64 }

func memInUse() memUse {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memUse{int64(ms.HeapAlloc), int64(ms.StackInuse)}
}

// firstWriteSignal calls first once, at the first write of the reply.
type firstWriteSignal struct {
	*benchWriter
	once  sync.Once
	first func()
}

func (w *firstWriteSignal) Write(p []byte) (int, error) {
	n, err := w.benchWriter.Write(p)
	w.once.Do(w.first)
	return n, err
}
