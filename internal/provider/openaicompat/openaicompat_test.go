package openaicompat

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// seen is a request as the upstream received it.
type seen struct {
	Method, URI, Host string
	Header            http.Header
	Body              string
}

// recorder is an upstream that records requests and answers as told.
type recorder struct {
	mu     sync.Mutex
	last   seen
	status int
	ctype  string
	answer string
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.last = seen{r.Method, r.RequestURI, r.Host, r.Header.Clone(), string(b)}
	status, ctype, answer := rec.status, rec.ctype, rec.answer
	rec.mu.Unlock()
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(status)
	io.WriteString(w, answer)
}

func (rec *recorder) take() seen {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	s := rec.last
	rec.last = seen{}
	return s
}

func (rec *recorder) set(status int, ctype, answer string) {
	rec.mu.Lock()
	rec.status, rec.ctype, rec.answer = status, ctype, answer
	rec.mu.Unlock()
}

// legacyRequest builds the upstream request exactly as Do did before
// request templates: the reference for what the upstream must receive.
func legacyRequest(p *Provider, cfg Config, ctx context.Context, call *provider.Call) (*http.Request, error) {
	body, err := call.Req.UpstreamBody(call.Model)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL(call.Req.Op, call.Model), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	h := req.Header
	for k, v := range cfg.Headers {
		h[k] = v
	}
	h.Set("Content-Type", "application/json")
	if call.Req.Stream {
		h.Set("Accept", "text/event-stream")
	} else {
		h.Set("Accept", "application/json")
	}
	if cfg.APIKey != "" {
		if cfg.Azure {
			h.Set("Api-Key", cfg.APIKey)
		} else {
			h.Set("Authorization", "Bearer "+cfg.APIKey)
		}
	}
	return req, nil
}

func parse(t testing.TB, op openai.Op, body string) *openai.Request {
	t.Helper()
	req, oerr := openai.ParseRequest(op, []byte(body), 0)
	if oerr != nil {
		t.Fatal(oerr)
	}
	return req
}

// TestRequestsMatchLegacy sends each call through Do and through the
// request Do used to build, and compares what the upstream received.
func TestRequestsMatchLegacy(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	h := provider.NewHTTP("p", provider.Timeouts{Idle: 5 * time.Second})
	defer h.Close()
	configs := []Config{
		{Name: "plain", BaseURL: srv.URL + "/v1/"},
		{Name: "key", BaseURL: srv.URL + "/v1", APIKey: "sk-test", Headers: http.Header{"X-Team": {"platform"}, "content-type": {"text/odd"}, "Accept": {"x/y"}}},
		{Name: "azure", BaseURL: srv.URL, APIKey: "az-key", Azure: true},
		{Name: "azure-nokey", BaseURL: srv.URL + "/", Azure: true, APIVersion: "2025-01-01-preview", Headers: http.Header{"X-A": {"1", "2"}}},
	}
	calls := []struct {
		op    openai.Op
		body  string
		model string
	}{
		{openai.OpChat, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, "up-model"},
		{openai.OpChat, `{"model":"m","messages":[],"stream":true}`, "up-model"},
		{openai.OpChat, `{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}`, "m"},
		{openai.OpCompletions, `{"model":"m","prompt":"hi","stream":true}`, "deploy/with space"},
		{openai.OpEmbeddings, `{"model":"m","input":"hi"}`, "emb"},
		{openai.OpResponses, `{"model":"m","input":"hi","stream":true}`, "resp"},
		{openai.OpResponses, `{"model":"m","input":"hi"}`, "resp"},
	}
	for _, cfg := range configs {
		p, err := New(cfg, h)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range calls {
			call := &provider.Call{Req: parse(t, c.op, c.body), Model: c.model}
			name := fmt.Sprintf("%s %v %s", cfg.Name, c.op, c.body)
			if call.Req.Stream {
				rec.set(200, "text/event-stream", "data: {\"a\":1}\n\ndata: [DONE]\n\n")
			} else {
				rec.set(200, "application/json", `{"ok":true}`)
			}
			for round := range 2 { // the second round hits the template caches
				resp, err := p.Do(context.Background(), call)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if resp.Stream != nil {
					ev, err := resp.Stream.Next()
					if err != nil || string(ev.Data) != `{"a":1}` {
						t.Fatalf("%s: stream %q %v", name, ev.Data, err)
					}
					if _, err := resp.Stream.Next(); err != io.EOF {
						t.Fatalf("%s: stream end %v", name, err)
					}
					resp.Stream.Close()
				} else if string(resp.Body) != `{"ok":true}` {
					t.Fatalf("%s: body %q", name, resp.Body)
				}
				got := rec.take()

				req, err := legacyRequest(p, cfg, context.Background(), call)
				if err != nil {
					t.Fatal(err)
				}
				x, err := h.Send(context.Background(), req, provider.ParseOpenAIError)
				if err != nil {
					t.Fatal(err)
				}
				x.ReadAll()
				x.Close()
				want := rec.take()
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s (round %d):\n got %+v\nwant %+v", name, round, got, want)
				}
			}
		}
	}
}

func TestDoErrors(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	h := provider.NewHTTP("p", provider.Timeouts{Idle: 5 * time.Second})
	defer h.Close()
	p, err := New(Config{Name: "p", BaseURL: srv.URL + "/v1"}, h)
	if err != nil {
		t.Fatal(err)
	}
	chat := parse(t, openai.OpChat, `{"model":"m","messages":[]}`)
	stream := parse(t, openai.OpChat, `{"model":"m","messages":[],"stream":true}`)
	check := func(req *openai.Request, kind provider.Kind, status int) {
		t.Helper()
		_, err := p.Do(context.Background(), &provider.Call{Req: req, Model: "m"})
		pe, ok := err.(*provider.Error)
		if !ok || pe.Kind != kind || pe.Status != status || pe.Provider != "p" {
			t.Fatalf("got %#v", err)
		}
	}
	rec.set(200, "text/plain", "not json")
	check(chat, provider.KindProtocol, 0)
	rec.set(200, "application/json", `{"ok":true}`)
	check(stream, provider.KindProtocol, 0) // not an event stream
	rec.set(400, "application/json", `{"error":{"message":"bad","type":"invalid_request_error","code":"x"}}`)
	check(chat, provider.KindStatus, 400)
	rec.set(429, "application/json", `{}`)
	check(stream, provider.KindStatus, 429)
}

func TestAzureManyDeployments(t *testing.T) {
	rec := &recorder{}
	rec.set(200, "application/json", `{}`)
	srv := httptest.NewServer(rec)
	defer srv.Close()
	h := provider.NewHTTP("p", provider.Timeouts{Idle: 5 * time.Second})
	defer h.Close()
	p, err := New(Config{Name: "az", BaseURL: srv.URL, Azure: true, APIKey: "k"}, h)
	if err != nil {
		t.Fatal(err)
	}
	req := parse(t, openai.OpChat, `{"model":"m","messages":[]}`)
	// More deployments than the transport caches templates for.
	for i := range 300 {
		model := fmt.Sprintf("dep-%d", i)
		if _, err := p.Do(context.Background(), &provider.Call{Req: req, Model: model}); err != nil {
			t.Fatal(err)
		}
		if got := rec.take(); !strings.HasPrefix(got.URI, "/openai/deployments/"+model+"/chat/completions?") || got.Header.Get("Api-Key") != "k" {
			t.Fatalf("request %+v", got)
		}
	}
}

// BenchmarkDo measures one call through the provider and its HTTP client
// to an in-process fakellm (both sides' allocations count).
func BenchmarkDo(b *testing.B) {
	srv := httptest.NewServer(fakellm.New(fakellm.Options{Chunks: 20}))
	defer srv.Close()
	h := provider.NewHTTP("fake", provider.Timeouts{})
	defer h.Close()
	p, err := New(Config{Name: "fake", BaseURL: srv.URL + "/v1", APIKey: "sk-bench"}, h)
	if err != nil {
		b.Fatal(err)
	}
	for _, stream := range []bool{false, true} {
		name := "json"
		if stream {
			name = "stream"
		}
		b.Run(name, func(b *testing.B) {
			body := `{"model":"bench","messages":[{"role":"user","content":"hi"}]`
			if stream {
				body += `,"stream":true`
			}
			call := &provider.Call{Req: parse(b, openai.OpChat, body+"}"), Model: "fake-model"}
			b.ReportAllocs()
			for b.Loop() {
				resp, err := p.Do(context.Background(), call)
				if err != nil {
					b.Fatal(err)
				}
				if stream {
					for {
						if _, err := resp.Stream.Next(); err != nil {
							if err != io.EOF {
								b.Fatal(err)
							}
							break
						}
					}
					resp.Stream.Close()
				}
			}
		})
	}
}
