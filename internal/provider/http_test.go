package provider

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func testParser(status int, body []byte) *Error {
	return &Error{Message: "parsed " + string(body)}
}

// newTemplate builds a Post template for url.
func newTemplate(t testing.TB, url string) *http.Request {
	t.Helper()
	tmpl, err := http.NewRequest(http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.Header.Set("Content-Type", "application/json")
	tmpl.Header.Set("Authorization", "Bearer k")
	return tmpl
}

// sendKinds runs a test against the three ways to start an exchange.
func sendKinds(t *testing.T, f func(t *testing.T, send func(ctx context.Context, h *HTTP, url string, body []byte) (*Exchange, error))) {
	t.Run("Send", func(t *testing.T) {
		f(t, func(ctx context.Context, h *HTTP, url string, body []byte) (*Exchange, error) {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer k")
			return h.Send(ctx, req, testParser)
		})
	})
	t.Run("Begin", func(t *testing.T) {
		f(t, func(ctx context.Context, h *HTTP, url string, body []byte) (*Exchange, error) {
			x := h.Begin(ctx)
			req, err := http.NewRequestWithContext(x.Context(), http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer k")
			if err := x.Send(req, testParser); err != nil {
				x.Close()
				return nil, err
			}
			return x, nil
		})
	})
	t.Run("Post", func(t *testing.T) {
		f(t, func(ctx context.Context, h *HTTP, url string, body []byte) (*Exchange, error) {
			return h.Post(ctx, newTemplate(t, url), body, testParser)
		})
	})
}

func TestExchangeOK(t *testing.T) {
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(r.Method + " " + r.URL.Path + " " + r.Header.Get("Content-Type") + " " + r.Header.Get("Authorization") + " " + r.Host + " " + string(b))
		if r.ContentLength != int64(len(b)) {
			t.Errorf("content length %d for %d bytes", r.ContentLength, len(b))
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	}))
	defer srv.Close()
	h := NewHTTP("p", Timeouts{})
	defer h.Close()
	sendKinds(t, func(t *testing.T, send func(context.Context, *HTTP, string, []byte) (*Exchange, error)) {
		for _, body := range []string{`{"model":"m"}`, ""} {
			x, err := send(context.Background(), h, srv.URL+"/v1/chat", []byte(body))
			if err != nil {
				t.Fatal(err)
			}
			b, err := x.ReadAll()
			if err != nil || string(b) != `{"ok":true}` {
				t.Fatalf("ReadAll: %q %v", b, err)
			}
			if err := x.Close(); err != nil {
				t.Fatal(err)
			}
			if x.Context().Err() == nil {
				t.Fatal("Close did not cancel the attempt")
			}
			if want := "POST /v1/chat application/json Bearer k " + strings.TrimPrefix(srv.URL, "http://") + " " + body; got.Load() != want {
				t.Fatalf("server saw %q, want %q", got.Load(), want)
			}
		}
	})
}

func TestExchangeStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "2")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, "slow down")
	}))
	defer srv.Close()
	h := NewHTTP("p", Timeouts{})
	defer h.Close()
	sendKinds(t, func(t *testing.T, send func(context.Context, *HTTP, string, []byte) (*Exchange, error)) {
		x, err := send(context.Background(), h, srv.URL, []byte(`{}`))
		var pe *Error
		if x != nil || !errors.As(err, &pe) {
			t.Fatalf("got %v, %v", x, err)
		}
		if pe.Provider != "p" || pe.Kind != KindStatus || pe.Status != 429 || pe.RetryAfter != 2*time.Second || pe.Message != "parsed slow down" {
			t.Fatalf("error %+v", pe)
		}
	})
	// A parser may return nil.
	req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
	_, err := h.Send(context.Background(), req, func(int, []byte) *Error { return nil })
	if pe, ok := err.(*Error); !ok || pe.Status != 429 || pe.Kind != KindStatus {
		t.Fatalf("nil parser: %v", err)
	}
}

func TestExchangeConnect(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	h := NewHTTP("p", Timeouts{})
	defer h.Close()
	sendKinds(t, func(t *testing.T, send func(context.Context, *HTTP, string, []byte) (*Exchange, error)) {
		_, err := send(context.Background(), h, url, []byte(`{}`))
		if pe, ok := err.(*Error); !ok || pe.Kind != KindConnect || pe.Provider != "p" {
			t.Fatalf("got %v", err)
		}
	})
}

// stallServer sends headers and one chunk, then stalls until the test ends.
func stallServer(t *testing.T) (*httptest.Server, chan struct{}) {
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(stop); srv.Close() })
	return srv, stop
}

func TestExchangeIdleTimeout(t *testing.T) {
	srv, _ := stallServer(t)
	h := NewHTTP("p", Timeouts{Idle: 100 * time.Millisecond})
	defer h.Close()
	sendKinds(t, func(t *testing.T, send func(context.Context, *HTTP, string, []byte) (*Exchange, error)) {
		x, err := send(context.Background(), h, srv.URL, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		buf := make([]byte, 64)
		n, err := x.Body.Read(buf)
		if err != nil || string(buf[:n]) != "data: {}\n\n" {
			t.Fatalf("first read: %q %v", buf[:n], err)
		}
		start := time.Now()
		_, err = io.ReadAll(x.Body)
		if pe, ok := err.(*Error); !ok || pe.Kind != KindTimeout || pe.Provider != "p" {
			t.Fatalf("stalled read: %v", err)
		}
		if d := time.Since(start); d < 80*time.Millisecond || d > 5*time.Second {
			t.Fatalf("idle timeout after %v", d)
		}
		if c := context.Cause(x.Context()); !errors.Is(c, ErrIdleTimeout) {
			t.Fatalf("cause %v", c)
		}
	})
}

func TestExchangeIdleResets(t *testing.T) {
	// Chunks every 40ms keep a 400ms idle timer from firing for 800ms (a
	// tenfold margin, for loaded machines).
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 20 {
			io.WriteString(w, "data: {}\n\n")
			w.(http.Flusher).Flush()
			time.Sleep(40 * time.Millisecond)
		}
	}))
	defer srv.Close()
	h := NewHTTP("p", Timeouts{Idle: 400 * time.Millisecond})
	defer h.Close()
	sendKinds(t, func(t *testing.T, send func(context.Context, *HTTP, string, []byte) (*Exchange, error)) {
		x, err := send(context.Background(), h, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		b, err := io.ReadAll(x.Body)
		if err != nil || len(b) != 200 {
			t.Fatalf("read %d bytes: %v", len(b), err)
		}
	})
}

func TestExchangeClientCancel(t *testing.T) {
	srv, _ := stallServer(t)
	h := NewHTTP("p", Timeouts{})
	defer h.Close()
	sendKinds(t, func(t *testing.T, send func(context.Context, *HTTP, string, []byte) (*Exchange, error)) {
		ctx, cancel := context.WithCancel(context.Background())
		x, err := send(ctx, h, srv.URL, []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		buf := make([]byte, 64)
		if _, err := x.Body.Read(buf); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err = io.ReadAll(x.Body)
		if err != context.Canceled {
			t.Fatalf("read after the client left: %v", err)
		}
		// A request on an ended context fails with the context's error.
		if _, err := send(ctx, h, srv.URL, nil); err != context.Canceled {
			t.Fatalf("send on a canceled context: %v", err)
		}
	})
}

func TestExchangeCloseStopsTimer(t *testing.T) {
	srv, _ := stallServer(t)
	h := NewHTTP("p", Timeouts{Idle: time.Hour})
	defer h.Close()
	sendKinds(t, func(t *testing.T, send func(context.Context, *HTTP, string, []byte) (*Exchange, error)) {
		x, err := send(context.Background(), h, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		x.Close()
		if x.timer.Stop() {
			t.Fatal("Close left the idle timer running")
		}
		if context.Cause(x.Context()) != context.Canceled {
			t.Fatalf("cause after Close: %v", context.Cause(x.Context()))
		}
		if _, err := x.Body.Read(make([]byte, 8)); err == nil {
			t.Fatal("read after Close")
		}
		x.Close() // twice is fine
	})
	// So is closing an exchange whose Send failed, or never ran.
	x := h.Begin(context.Background())
	req, _ := http.NewRequestWithContext(x.Context(), http.MethodPost, "http://127.0.0.1:1/", nil)
	if x.Send(req, testParser) == nil {
		t.Fatal("send to port 1 succeeded")
	}
	x.Close()
	h.Begin(context.Background()).Close()
}

func TestExchangeReadAll(t *testing.T) {
	big := strings.Repeat("x", 100_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("chunked") {
			for i := 0; i < len(big); i += 1000 {
				io.WriteString(w, big[i:i+1000])
				w.(http.Flusher).Flush()
			}
			return
		}
		if r.URL.Query().Has("huge") {
			chunk := make([]byte, 1<<20)
			for range MaxResponseBody>>20 + 1 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			return
		}
		io.WriteString(w, big)
	}))
	defer srv.Close()
	h := NewHTTP("p", Timeouts{})
	defer h.Close()
	for _, q := range []string{"", "?chunked"} {
		x, err := h.Post(context.Background(), newTemplate(t, srv.URL+q), nil, testParser)
		if err != nil {
			t.Fatal(err)
		}
		b, err := x.ReadAll()
		x.Close()
		if err != nil || string(b) != big {
			t.Fatalf("%s: %d bytes, %v", q, len(b), err)
		}
	}
	if testing.Short() {
		return
	}
	x, err := h.Post(context.Background(), newTemplate(t, srv.URL+"?huge"), nil, testParser)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if _, err := x.ReadAll(); err == nil || err.(*Error).Kind != KindProtocol {
		t.Fatalf("huge answer: %v", err)
	}
}

func TestPostTemplateUntouched(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	h := NewHTTP("p", Timeouts{})
	defer h.Close()
	tmpl := newTemplate(t, srv.URL+"/v1")
	before := *tmpl
	hdr := tmpl.Header.Clone()
	for range 3 {
		x, err := h.Post(context.Background(), tmpl, []byte(`{"a":1}`), testParser)
		if err != nil {
			t.Fatal(err)
		}
		x.ReadAll()
		x.Close()
	}
	if tmpl.Body != nil || tmpl.GetBody != nil || tmpl.ContentLength != 0 || tmpl.URL != before.URL ||
		tmpl.URL.String() != srv.URL+"/v1" || tmpl.Context() != context.Background() {
		t.Fatalf("template modified: %+v", tmpl)
	}
	if len(tmpl.Header) != len(hdr) {
		t.Fatalf("template headers modified: %v", tmpl.Header)
	}
	for k, v := range hdr {
		if tmpl.Header.Get(k) != v[0] {
			t.Fatalf("template headers modified: %v", tmpl.Header)
		}
	}
}

func TestPostGetBody(t *testing.T) {
	h := NewHTTP("p", Timeouts{})
	x := h.Begin(context.Background())
	defer x.Close()
	x.reqBytes = []byte("payload")
	for range 2 {
		rc, err := x.getBody()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if string(b) != "payload" {
			t.Fatalf("GetBody: %q", b)
		}
	}
}

// echoServer is a server answering each request with its body, and a
// client for it.
func echoServer(t *testing.T) (*httptest.Server, *HTTP) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	h := NewHTTP("p", Timeouts{})
	t.Cleanup(h.Close)
	return srv, h
}

// writeCounter counts the writes on the connections its dial makes.
type writeCounter struct {
	net.Conn
	n *atomic.Int64
}

func (c writeCounter) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

// A request whose headers and body fit the connection's write buffer goes
// out in one write: net/http flushes the headers first, a write of their
// own, unless it knows the body to be in memory. A larger body takes
// more, and is still delivered whole.
func TestPostWritesSmallRequestsAtOnce(t *testing.T) {
	srv, h := echoServer(t)
	var writes atomic.Int64
	tr := h.Client.Transport.(*http.Transport)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return writeCounter{c, &writes}, nil
	}
	tmpl := newTemplate(t, srv.URL)
	for _, tc := range []struct {
		size     int
		atOnce   bool
		describe string
	}{
		{800, true, "a chat request"},
		{heldBody, true, "the largest body held"},
		{heldBody + 1, false, "a larger body"},
		{256 << 10, false, "a long prompt"},
	} {
		body := bytes.Repeat([]byte("a"), tc.size)
		writes.Store(0)
		x, err := h.Post(context.Background(), tmpl, body, testParser)
		if err != nil {
			t.Fatalf("%s: %v", tc.describe, err)
		}
		got, err := x.ReadAll()
		x.Close()
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("%s: %d bytes back, %v", tc.describe, len(got), err)
		}
		if n := writes.Load(); tc.atOnce != (n == 1) {
			t.Errorf("%s (%d bytes): %d writes, want one: %v", tc.describe, tc.size, n, tc.atOnce)
		}
	}
}

// getBodyChecker checks that requests can be replayed (GetBody), as the
// transport does on a stale keep-alive connection.
type getBodyChecker struct {
	t  *testing.T
	rt http.RoundTripper
}

func (c getBodyChecker) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.GetBody == nil {
		c.t.Error("request without GetBody")
	} else {
		rc, err := req.GetBody()
		if err != nil {
			c.t.Error(err)
		} else {
			b, _ := io.ReadAll(rc)
			rc.Close()
			if n := req.ContentLength; int64(len(b)) != n {
				c.t.Errorf("GetBody gave %d bytes, ContentLength %d", len(b), n)
			}
		}
	}
	return c.rt.RoundTrip(req)
}

func TestPostReplayableBody(t *testing.T) {
	srv, h := echoServer(t)
	h.Client.Transport = getBodyChecker{t, h.Client.Transport}
	tmpl := newTemplate(t, srv.URL)
	for i, body := range []string{`{"i":1}`, "", `{"i":2}`, `{"i":3}`} {
		x, err := h.Post(context.Background(), tmpl, []byte(body), testParser)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := x.ReadAll()
		x.Close()
		if err != nil || string(b) != body {
			t.Fatalf("request %d: %q %v", i, b, err)
		}
	}
}

func TestSSEStreamInExchange(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"a\":1}\n\ndata: {\"a\":2}\n\ndata: [DONE]\n\n")
	}))
	defer srv.Close()
	h := NewHTTP("p", Timeouts{})
	defer h.Close()
	x, err := h.Post(context.Background(), newTemplate(t, srv.URL), []byte(`{}`), testParser)
	if err != nil {
		t.Fatal(err)
	}
	st := NewSSEStream(x, true)
	var got []string
	for {
		ev, err := st.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(ev.Data))
	}
	if strings.Join(got, " ") != `{"a":1} {"a":2}` {
		t.Fatalf("events %q", got)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// Benchmarks of one small non-stream exchange over loopback. "Send" builds
// the request as provider packages do (NewRequestWithContext, header map)
// and goes through HTTP.Send; "Post" uses a prebuilt template. Both count
// the client and the httptest server's allocations.
func benchExchange(b *testing.B, send func(h *HTTP, url string, body []byte) (*Exchange, error)) {
	answer := []byte(`{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1}}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"application/json"}
		w.Write(answer)
	}))
	defer srv.Close()
	h := NewHTTP("p", Timeouts{})
	defer h.Close()
	body := bytes.Repeat([]byte("x"), 1024)
	b.ReportAllocs()
	for b.Loop() {
		x, err := send(h, srv.URL+"/v1/chat/completions", body)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := x.ReadAll(); err != nil {
			b.Fatal(err)
		}
		x.Close()
	}
}

func BenchmarkSend(b *testing.B) {
	benchExchange(b, func(h *HTTP, url string, body []byte) (*Exchange, error) {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "Bearer "+"sk-key")
		return h.Send(context.Background(), req, ParseOpenAIError)
	})
}

func BenchmarkPost(b *testing.B) {
	var tmpl *http.Request
	benchExchange(b, func(h *HTTP, url string, body []byte) (*Exchange, error) {
		if tmpl == nil {
			tmpl = newTemplate(b, url)
			tmpl.Header.Set("Accept", "application/json")
			tmpl.Host = ""
		}
		return h.Post(context.Background(), tmpl, body, ParseOpenAIError)
	})
}

func TestExchangeIdleIgnoresTimeBetweenReads(t *testing.T) {
	// The upstream has sent everything at once; the reader pausing longer
	// than the idle timeout between reads (a slow client downstream) is
	// not upstream silence.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 3 {
			io.WriteString(w, "data: {}\n\n")
			w.(http.Flusher).Flush()
		}
	}))
	defer srv.Close()
	h := NewHTTP("p", Timeouts{Idle: 50 * time.Millisecond})
	defer h.Close()
	sendKinds(t, func(t *testing.T, send func(context.Context, *HTTP, string, []byte) (*Exchange, error)) {
		x, err := send(context.Background(), h, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer x.Close()
		buf := make([]byte, 10)
		total := 0
		for {
			n, err := x.Body.Read(buf)
			total += n
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("after %d bytes: %v", total, err)
			}
			time.Sleep(120 * time.Millisecond)
		}
		if total != 30 {
			t.Fatalf("read %d bytes, want 30", total)
		}
	})
}

// readSSE streams body through an SSEStream and returns the events' data
// and the error that ended it.
func readSSE(t *testing.T, body string, needDone bool) ([]string, error) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, body)
	}))
	defer srv.Close()
	h := NewHTTP("p", Timeouts{})
	defer h.Close()
	x, err := h.Post(context.Background(), newTemplate(t, srv.URL), []byte(`{}`), testParser)
	if err != nil {
		t.Fatal(err)
	}
	st := NewSSEStream(x, needDone)
	defer st.Close()
	var got []string
	for {
		ev, err := st.Next()
		if err != nil {
			return got, err
		}
		got = append(got, string(ev.Name)+"|"+string(ev.Data))
	}
}

func TestSSEStreamRefusesWhatIsNotOpenAIs(t *testing.T) {
	cases := []struct {
		name, body string
		want       string // events joined
		broken     bool   // ends with a protocol error (else io.EOF)
	}{
		{"not json", "data: {\"a\":1}\n\ndata: {not json\n\ndata: [DONE]\n\n", `|{"a":1}`, true},
		{"invalid bytes", "data: {\"a\":\"\xff\xfe\"}\n\ndata: [DONE]\n\n", ``, true},
		{"not an object", "data: [1,2]\n\ndata: [DONE]\n\n", ``, true},
		{"unknown event names dropped", "event: weird\ndata: {\"x\":1}\n\ndata: {\"a\":1}\n\nevent: other\ndata: junk\n\ndata: [DONE]\n\n", `|{"a":1}`, false},
		{"deep", "data: " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "\n\ndata: [DONE]\n\n", ``, true},
		{"spaced json", "data:   {\"a\":1}\n\ndata: [DONE]\n\n", `|  {"a":1}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := readSSE(t, c.body, true)
			if strings.Join(got, " ") != c.want {
				t.Fatalf("events %q, want %q", got, c.want)
			}
			if c.broken {
				if pe, ok := err.(*Error); !ok || pe.Kind != KindProtocol {
					t.Fatalf("end %v, want a protocol error", err)
				}
			} else if err != io.EOF {
				t.Fatalf("end %v, want EOF", err)
			}
		})
	}
	// Responses streams are named.
	got, err := readSSE(t, "event: response.created\ndata: {\"type\":\"response.created\"}\n\n", false)
	if err != io.EOF || len(got) != 1 {
		t.Fatalf("responses: %q %v", got, err)
	}
}
