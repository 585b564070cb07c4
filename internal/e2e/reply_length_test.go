package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// TestReplyLength: a non-stream answer, an upstream's or a cache hit's,
// small or large, reaches the client with its Content-Length and without
// chunked framing, over HTTP/1.1 and HTTP/2 (h2c). The gateway sets the
// header itself only for answers of 2 KiB or more; the server sets it for
// smaller ones.
func TestReplyLength(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake", Chunks: 5})
	fake.Script("big-model", fakellm.Behavior{Chunks: 600})
	gw := startGateway(t, `{
	admin 127.0.0.1:{{.AdminPort}}
	servers {
		protocols h1 h2c
	}
	ai_gateway {
		provider fake {
			base_url {{.Fake}}/v1
		}
		model small {
			target fake fake-model
		}
		model big {
			target fake big-model
		}
		cache {
			ttl 1h
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`, map[string]any{"Fake": fake.URL})
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	clients := map[string]*http.Client{
		"HTTP/1.1": {Transport: &http.Transport{}},
		"HTTP/2.0": {Transport: &http.Transport{Protocols: &h2}},
	}
	ctx := context.Background()
	for proto, c := range clients {
		for _, model := range []string{"small", "big"} {
			body := `{"model":"` + model + `","messages":[{"role":"user","content":"length over ` + proto + `"}]}`
			for _, want := range []string{"miss", "hit"} {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gw.URL+"/v1/chat/completions", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				if resp.Proto != proto || resp.StatusCode != 200 || resp.Header.Get("X-AI-Gateway-Cache") != want {
					t.Fatalf("%s %s %s: %s %d, cache %q: %s", proto, model, want, resp.Proto, resp.StatusCode, resp.Header.Get("X-AI-Gateway-Cache"), b)
				}
				if resp.ContentLength != int64(len(b)) || len(resp.TransferEncoding) > 0 || resp.Header.Get("Content-Length") == "" {
					t.Fatalf("%s %s %s: Content-Length %d (header %q), transfer encoding %v, for %d bytes",
						proto, model, want, resp.ContentLength, resp.Header.Get("Content-Length"), resp.TransferEncoding, len(b))
				}
				if size := len(b); (model == "big") != (size >= 2048) || !gjson.ValidBytes(b) {
					t.Fatalf("%s %s: a %d-byte answer", proto, model, size)
				}
			}
		}
	}
}
