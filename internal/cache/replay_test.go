package cache_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/cache"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/openaicompat"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
)

// A replayed stream marks its usage-only chunk itself (no scan of its
// events): a client that did not ask for usage does not get it, one that
// did gets it; either way the hit is several events ending in [DONE], sent
// with its length.
func TestReplayUsageChunk(t *testing.T) {
	srv := httptest.NewServer(fakellm.New(fakellm.Options{Chunks: 5}))
	defer srv.Close()
	h := provider.NewHTTP("fake", provider.Timeouts{})
	defer h.Close()
	p, err := openaicompat.New(openaicompat.Config{Name: "fake", BaseURL: srv.URL + "/v1"}, h)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := route.New([]route.Route{{Pattern: "m", Targets: []route.Target{{Provider: "fake", Model: "fake-model"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mem := cache.NewMemory(1 << 20)
	defer mem.Close()
	g, err := gateway.New(gateway.Config{Providers: map[string]provider.Provider{"fake": p}, Routes: rt,
		Stages: []gateway.Stage{cache.New(cache.Config{Store: mem, Routes: rt})}})
	if err != nil {
		t.Fatal(err)
	}
	serve := func(body string) (*httptest.ResponseRecorder, string) {
		r := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/chat/completions", strings.NewReader(body))
		w := httptest.NewRecorder()
		var info gateway.Info
		g.Serve(w, r, &info)
		return w, info.Cache
	}
	for _, usage := range []bool{false, true} {
		body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"usage?"}]}`
		if usage {
			body = `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"usage?"}]}`
		}
		serve(body) // a miss, or a hit of the other shape: recorded either way
		w, verdict := serve(body)
		if verdict != cache.VerdictHit {
			t.Fatalf("usage %v: verdict %q", usage, verdict)
		}
		out, _ := io.ReadAll(w.Result().Body)
		events := bytes.Count(out, []byte("data: "))
		usageChunk := bytes.Contains(out, []byte(`"choices":[]`))
		if usageChunk != usage || events < 3 || !bytes.HasSuffix(out, []byte("data: [DONE]\n\n")) {
			t.Fatalf("usage %v: usage chunk %v, %d events:\n%s", usage, usageChunk, events, out)
		}
		if cl := w.Header().Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(out)) {
			t.Fatalf("Content-Length %s for %d bytes", cl, len(out))
		}
	}
}
