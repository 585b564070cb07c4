package e2e

import (
	"bufio"
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// The hardening suite: each test runs a real Caddy against in-process
// fakellm upstreams and checks one property that must hold under abuse —
// abandoned streams leak nothing, reloads and shutdowns never cut a stream
// without a word, hostile credentials and paths never reach the upstream,
// and a request cannot point the gateway anywhere but its configured
// upstream.

// hardeningCaddyfile serves every model from one fakellm ({{.Up}}): through
// the OpenAI-compatible provider "up", and natively as Anthropic through
// "claude". {{.Global}} adds global options, {{.Guard}} ai_gateway options.
const hardeningCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	{{.Global}}
	ai_gateway {
		provider up {
			base_url {{.Up}}/v1
			api_key upstream-secret
		}
		provider claude {
			type anthropic
			base_url {{.Up}}
			api_key upstream-anthropic-key
		}
		model demo {
			target up fake-model
		}
		model slow {
			target up slow-model
		}
		model claude-slow {
			target claude slow-model
		}
		model hang {
			target up hang-model
		}
		{{.Guard}}
	}
}
:{{.Port}} {
	ai_gateway
}
`

// hardeningKey is the one gateway key of the keyed configuration.
const hardeningKey = "hardening-secret-0123"

const hardeningKeys = `key team {
			secret ` + hardeningKey + `
		}
		key other-only {
			secret other-only-secret
			models other
		}
		require_key`

func startHardeningGateway(t *testing.T, up *Fake, global, guard string) *Gateway {
	t.Helper()
	return startGateway(t, hardeningCaddyfile, map[string]any{"Up": up.URL, "Global": global, "Guard": guard})
}

// connTracker follows the connections of an httptest server by state.
type connTracker struct {
	mu    sync.Mutex
	state map[net.Conn]http.ConnState
}

func (c *connTracker) track(conn net.Conn, s http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s == http.StateClosed || s == http.StateHijacked {
		delete(c.state, conn)
		return
	}
	c.state[conn] = s
}

// counts returns the open connections and how many of them are active.
func (c *connTracker) counts() (open, active int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.state {
		if s == http.StateActive {
			active++
		}
	}
	return len(c.state), active
}

// startTrackedFake is startFake with a connection tracker on the server.
func startTrackedFake(t testing.TB, opts fakellm.Options) (*Fake, *connTracker) {
	t.Helper()
	s := fakellm.New(opts)
	ct := &connTracker{state: make(map[net.Conn]http.ConnState)}
	ts := httptest.NewUnstartedServer(s)
	ts.Config.ConnState = ct.track
	ts.Start()
	t.Cleanup(ts.Close)
	return &Fake{Server: s, URL: ts.URL}, ct
}

var goroutineTotal = regexp.MustCompile(`goroutine profile: total (\d+)`)

// goroutines reads Caddy's goroutine count from its admin pprof endpoint.
func goroutines(t testing.TB, g *Gateway) int {
	t.Helper()
	status, _, body := do(t, mustReq(t, http.MethodGet, g.AdminURL+"/debug/pprof/goroutine?debug=1", ""))
	m := goroutineTotal.FindStringSubmatch(body)
	if status != 200 || m == nil {
		t.Fatalf("pprof goroutine: %d %.200s", status, body)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// sseEvent is one server-sent event: its name ("" for none) and data.
type sseEvent struct{ name, data string }

// readSSE calls on for each event of r until EOF (nil) or a read error.
// on returning false stops the reading.
func readSSE(r io.Reader, on func(sseEvent) bool) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var ev sseEvent
	for {
		line, err := br.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "" && err == nil:
			if ev.name != "" || ev.data != "" {
				if !on(ev) {
					return nil
				}
			}
			ev = sseEvent{}
		case strings.HasPrefix(line, "event:"):
			ev.name = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			if ev.data != "" {
				ev.data += "\n"
			}
			ev.data += strings.TrimPrefix(line[len("data:"):], " ")
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// openStream POSTs body to url and returns the response of a 200 stream.
func openStream(ctx context.Context, c *http.Client, url, body string, hdr ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("status %d: %.300s", resp.StatusCode, b)
	}
	return resp, nil
}

func chatBody(model string, stream bool) string {
	s := `{"model":"` + model + `","messages":[{"role":"user","content":"say hello to the hardening suite"}]`
	if stream {
		s += `,"stream":true,"stream_options":{"include_usage":true}`
	}
	return s + "}"
}

const messagesBody = `{"model":"%s","max_tokens":4096,"stream":true,"messages":[{"role":"user","content":"hi there"}]}`

// a) Clients that hang up mid-stream leave nothing behind: no goroutine in
// Caddy, no upstream request still running, no upstream connection held.
func TestHardeningAbandonedStreams(t *testing.T) {
	up, conns := startTrackedFake(t, fakellm.Options{Name: "fake"})
	gw := startHardeningGateway(t, up, "", "")
	// Warm up so that pools, loggers and timers are in the baseline.
	for range 3 {
		if s, _, b := post(t, gw.URL+"/v1/chat/completions", chatBody("demo", false)); s != 200 {
			t.Fatalf("warm-up: %d %s", s, b)
		}
	}
	base := goroutines(t, gw)
	baseOpen, _ := conns.counts()
	up.Reset()
	// 400 chunks 50 ms apart: a stream would last 20 s.
	up.Script("slow-model", fakellm.Behavior{ChunkDelay: 50 * time.Millisecond, Chunks: 400})

	const total, parallel = 1000, 50
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	var (
		wg      sync.WaitGroup
		sem     = make(chan struct{}, parallel)
		failed  atomic.Int64
		firstMu sync.Mutex
		first   error
	)
	body := chatBody("slow", true)
	for range total {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err := func() error {
				resp, err := openStream(ctx, client, gw.URL+"/v1/chat/completions", body)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				content := 0
				// Hang up after the second content chunk.
				_ = readSSE(resp.Body, func(ev sseEvent) bool {
					if gjson.Get(ev.data, "choices.0.delta.content").Str != "" {
						content++
					}
					return content < 2
				})
				if content < 2 {
					return fmt.Errorf("stream ended after %d content chunks", content)
				}
				return nil
			}()
			if err != nil {
				failed.Add(1)
				firstMu.Lock()
				if first == nil {
					first = err
				}
				firstMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d streams failed before the client hung up; first: %v", n, total, first)
	}

	var now, open, active int
	var st fakellm.Stats
	deadline := time.Now().Add(5 * time.Second)
	for {
		now = goroutines(t, gw)
		open, active = conns.counts()
		st = up.Stats()
		if now <= base+10 && st.Cancelled == total && st.InFlight == 0 && active == 0 && open <= baseOpen {
			break
		}
		if time.Now().After(deadline) {
			_, _, dump := do(t, mustReq(t, http.MethodGet, gw.AdminURL+"/debug/pprof/goroutine?debug=1", ""))
			t.Logf("goroutines:\n%s", tail(dump, 8000))
			t.Fatalf("5 s after %d abandoned streams: goroutines %d (baseline %d); upstream cancelled %d of %d, in flight %d; upstream conns open %d (baseline %d), active %d",
				total, now, base, st.Cancelled, st.Total, st.InFlight, open, baseOpen, active)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st.Total != total {
		t.Errorf("upstream saw %d requests, want %d", st.Total, total)
	}
	t.Logf("goroutines: baseline %d, after %d; upstream conns open %d (baseline %d)", base, now, open, baseOpen)
}

// streamResult is what one raw SSE client saw.
type streamResult struct {
	content int    // chunks with delta content
	done    bool   // [DONE] was the last event
	usage   string // the usage object, raw
	last    sseEvent
	err     error
}

// readChatStream reads an OpenAI chat stream to its end.
func readChatStream(r io.Reader, started func()) streamResult {
	var (
		res   streamResult
		after error
	)
	err := readSSE(r, func(ev sseEvent) bool {
		if res.done {
			after = errors.New("event after [DONE]")
			return false
		}
		res.last = ev
		if ev.data == "[DONE]" {
			res.done = true
			return true
		}
		if u := gjson.Get(ev.data, "usage"); u.IsObject() {
			res.usage = u.Raw
		}
		if gjson.Get(ev.data, "choices.0.delta.content").Str != "" {
			res.content++
			if res.content == 1 && started != nil {
				started()
			}
		}
		return true
	})
	res.err = cmp.Or(after, err)
	return res
}

// b) Streams outlive config reloads: 200 streams, 10 reloads while they
// run (with a grace period shorter than the streams), none truncated.
func TestHardeningStreamsSurviveReloads(t *testing.T) {
	up := startFake(t, fakellm.Options{Name: "fake"})
	const chunks = 100
	// 100 chunks 80 ms apart: about 8 s per stream.
	up.Script("slow-model", fakellm.Behavior{ChunkDelay: 80 * time.Millisecond, Chunks: chunks})
	gw := startHardeningGateway(t, up, "grace_period 1s", "")

	const streams = 200
	body := chatBody("slow", true)
	wantPrompt := fakellm.CountPromptTokens([]byte(body))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: streams}}
	defer client.CloseIdleConnections()
	var (
		wg      sync.WaitGroup
		started atomic.Int64
		ended   atomic.Int64
		results = make([]streamResult, streams)
	)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer ended.Add(1)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			resp, err := openStream(ctx, client, gw.URL+"/v1/chat/completions", body)
			if err != nil {
				started.Add(1)
				results[i].err = err
				return
			}
			defer resp.Body.Close()
			results[i] = readChatStream(resp.Body, func() { started.Add(1) })
		}()
	}
	eventually(t, 30*time.Second, func() bool { return started.Load() == streams }, "streams did not all start")

	for range 10 {
		gw.reload(t)
	}
	if n := ended.Load(); n > 0 {
		t.Logf("%d streams ended before the 10th reload finished (the machine is slow)", n)
	}
	wg.Wait()
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Errorf("stream %d: %v", i, r.err)
		case r.content != chunks || !r.done:
			t.Errorf("stream %d truncated: %d of %d content chunks, [DONE] %v, last event %q", i, r.content, chunks, r.done, r.last.data)
		case gjson.Get(r.usage, "completion_tokens").Int() != chunks || gjson.Get(r.usage, "prompt_tokens").Int() != int64(wantPrompt):
			t.Errorf("stream %d usage %s, want %d prompt and %d completion tokens", i, r.usage, wantPrompt, chunks)
		}
	}
	// The new configuration serves too.
	if s, _, b := post(t, gw.URL+"/v1/chat/completions", chatBody("demo", false)); s != 200 {
		t.Fatalf("after the reloads: %d %s", s, b)
	}
}

// c) SIGTERM with live streams: every client gets a terminal error event in
// its own format within the grace period, then the stream ends; the process
// exits.
func TestHardeningShutdownEndsStreams(t *testing.T) {
	up := startFake(t, fakellm.Options{Name: "fake"})
	// 300 chunks 100 ms apart: 30 s, far beyond the grace period.
	up.Script("slow-model", fakellm.Behavior{ChunkDelay: 100 * time.Millisecond, Chunks: 300})
	up.Script("hang-model", fakellm.Behavior{Hang: true})
	const grace = 2 * time.Second
	gw := startHardeningGateway(t, up, "grace_period 2s", "")

	type kind int
	const (
		sdkChat kind = iota
		rawChat
		messagesTranslated
		messagesNative
	)
	clients := []kind{sdkChat, sdkChat, sdkChat, sdkChat, rawChat, rawChat,
		messagesTranslated, messagesTranslated, messagesNative, messagesNative}
	type outcome struct {
		kind    kind
		last    sseEvent // raw clients: the last event
		sdkErr  error    // SDK client: what the stream ended with
		content int
		endedAt time.Time
		err     error
	}
	var (
		wg      sync.WaitGroup
		started atomic.Int64
		results = make([]outcome, len(clients))
		client  = &http.Client{}
	)
	for i, k := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[i]
			res.kind = k
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			if k == sdkChat {
				c := gw.client()
				s := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
					Model: "slow", Messages: userMsg("hi"),
				})
				for s.Next() {
					if ch := s.Current().Choices; len(ch) > 0 && ch[0].Delta.Content != "" {
						res.content++
						if res.content == 1 {
							started.Add(1)
						}
					}
				}
				res.sdkErr, res.endedAt = s.Err(), time.Now()
				s.Close()
				return
			}
			url, body := gw.URL+"/v1/chat/completions", chatBody("slow", true)
			switch k {
			case messagesTranslated:
				url, body = gw.URL+"/v1/messages", fmt.Sprintf(messagesBody, "slow")
			case messagesNative:
				url, body = gw.URL+"/v1/messages", fmt.Sprintf(messagesBody, "claude-slow")
			}
			resp, err := openStream(ctx, client, url, body, "x-api-key", "client-key", "anthropic-version", "2023-06-01")
			if err != nil {
				started.Add(1)
				res.err = err
				return
			}
			defer resp.Body.Close()
			res.err = readSSE(resp.Body, func(ev sseEvent) bool {
				res.last = ev
				if gjson.Get(ev.data, "choices.0.delta.content").Str != "" || gjson.Get(ev.data, "delta.text").Str != "" {
					res.content++
					if res.content == 1 {
						started.Add(1)
					}
				}
				return true
			})
			res.endedAt = time.Now()
		}()
	}
	// A stream request still waiting for its first upstream byte.
	var waiting struct {
		status  int
		body    string
		endedAt time.Time
		err     error
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := client.Post(gw.URL+"/v1/chat/completions", "application/json", strings.NewReader(chatBody("hang", true)))
		if err != nil {
			waiting.err = err
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		waiting.status, waiting.body, waiting.endedAt, waiting.err = resp.StatusCode, string(b), time.Now(), err
	}()
	eventually(t, 30*time.Second, func() bool {
		return started.Load() == int64(len(clients)) && up.Stats().InFlight == len(clients)+1
	}, "streams did not all start")

	exited := make(chan time.Time, 1)
	go func() { <-gw.done; exited <- time.Now() }()
	sigAt := time.Now()
	if err := gw.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	var exitedAt time.Time
	select {
	case exitedAt = <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("caddy did not exit 10 s after SIGTERM")
	}
	var lastEnd time.Duration
	for i, r := range results {
		lastEnd = max(lastEnd, r.endedAt.Sub(sigAt))
		if !r.endedAt.Before(exitedAt) {
			t.Errorf("client %d (kind %d): stream ended when the process exited, not before", i, r.kind)
		}
		if r.err != nil {
			t.Errorf("client %d (kind %d): %v", i, r.kind, r.err)
			continue
		}
		if took := r.endedAt.Sub(sigAt); took > grace {
			t.Errorf("client %d (kind %d): stream ended %v after SIGTERM, past the %v grace period", i, r.kind, took, grace)
		}
		switch r.kind {
		case sdkChat:
			if r.sdkErr == nil || !strings.Contains(r.sdkErr.Error(), "gateway_shutting_down") {
				t.Errorf("client %d (SDK): stream ended with %v, want an error event gateway_shutting_down", i, r.sdkErr)
			}
		case rawChat:
			if c := gjson.Get(r.last.data, "error.code").Str; c != "gateway_shutting_down" || r.last.name != "" {
				t.Errorf("client %d (chat): last event %q %q, want an OpenAI error event gateway_shutting_down", i, r.last.name, r.last.data)
			}
		default:
			if r.last.name != "error" || gjson.Get(r.last.data, "type").Str != "error" || gjson.Get(r.last.data, "error.type").Str == "" {
				t.Errorf("client %d (messages, kind %d): last event %q %q, want Anthropic's event: error", i, r.kind, r.last.name, r.last.data)
			}
		}
		if r.content == 0 {
			t.Errorf("client %d: no content before the end", i)
		}
	}
	if waiting.err != nil || waiting.status != http.StatusServiceUnavailable || gjson.Get(waiting.body, "error.code").Str != "gateway_shutting_down" {
		t.Errorf("a stream request waiting for its first byte: %d %v %.300s, want 503 gateway_shutting_down", waiting.status, waiting.err, waiting.body)
	} else if took := waiting.endedAt.Sub(sigAt); took > grace {
		t.Errorf("the waiting request was answered %v after SIGTERM", took)
	}
	t.Logf("streams ended at most %v after SIGTERM; caddy exited after %v", lastEnd, exitedAt.Sub(sigAt))
}

// checkUnauthorized verifies a 401 in OpenAI's envelope (or Anthropic's on
// /v1/messages) that does not echo secret.
func checkUnauthorized(t *testing.T, what string, anthropicShape bool, status int, hdr http.Header, body, secret string) {
	t.Helper()
	if status != http.StatusUnauthorized {
		t.Errorf("%s: status %d, want 401: %.300s", what, status, body)
		return
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	if anthropicShape {
		if gjson.Get(body, "type").Str != "error" || gjson.Get(body, "error.type").Str != "authentication_error" || gjson.Get(body, "error.message").Str == "" {
			t.Errorf("%s: not Anthropic's authentication_error envelope: %.300s", what, body)
		}
	} else if gjson.Get(body, "error.type").Str != "invalid_request_error" || gjson.Get(body, "error.code").Str != "invalid_api_key" || gjson.Get(body, "error.message").Str == "" {
		t.Errorf("%s: not OpenAI's invalid_api_key envelope: %.300s", what, body)
	}
	if secret != "" && strings.Contains(body, secret) {
		t.Errorf("%s: the presented value is echoed in the body", what)
	}
}

// rawHTTP sends req (a complete HTTP/1.1 request) over a fresh TCP
// connection and returns the response status, headers and body.
func rawHTTP(t *testing.T, addr, req string) (int, http.Header, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to %.80q: %v", req, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func rawPost(host, path string, headers []string, body string) string {
	var b strings.Builder
	b.WriteString("POST " + path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: application/json\r\nConnection: close\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	return b.String()
}

// d) Hostile Authorization values always get a 401 in the client's
// envelope: never a 500, never a crash, never the value echoed back.
func TestHardeningHostileAuthorization(t *testing.T) {
	up := startFake(t, fakellm.Options{Name: "fake"})
	// Caddy answers 431 to headers over 16KB (its default): raise the limit
	// so that the 64KB values reach the gateway.
	gw := startHardeningGateway(t, up, "servers {\n\t\tmax_header_size 1MB\n\t}", hardeningKeys)
	host := fmt.Sprintf("127.0.0.1:%d", gw.Port)
	endpoints := []struct {
		path, body string
		anthropic  bool
	}{
		{"/v1/chat/completions", chatBody("demo", false), false},
		{"/v1/messages", `{"model":"demo","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`, true},
	}
	huge := strings.Repeat("A", 64<<10)
	basic := base64.StdEncoding.EncodeToString([]byte("team:" + hardeningKey))
	cases := []struct {
		name   string
		values []string // Authorization header values, in order
		secret string   // must not be echoed ("" for none worth checking)
	}{
		{"absent", nil, ""},
		{"empty", []string{""}, ""},
		{"Bearer alone", []string{"Bearer"}, ""},
		{"Bearer and a space", []string{"Bearer "}, ""},
		{"Bearer and blanks", []string{"Bearer  \t "}, ""},
		{"lower-case bearer alone", []string{"bearer"}, ""},
		{"64KB token", []string{"Bearer " + huge}, huge},
		{"64KB value", []string{strings.Repeat("Bearer", 64<<10/6)}, strings.Repeat("Bearer", 100)},
		{"non-ASCII token", []string{"Bearer ключ-доступа-🔑"}, "ключ-доступа"},
		{"non-UTF-8 token", []string{"Bearer \xff\xfe\xfdsecret"}, "\xff\xfe\xfd"},
		{"key and non-ASCII", []string{"Bearer " + hardeningKey + "é"}, hardeningKey + "é"},
		{"Basic with the key as password", []string{"Basic " + basic}, basic},
		{"Basic with the raw key", []string{"Basic " + hardeningKey}, ""},
		{"another scheme", []string{"Token " + hardeningKey}, ""},
		{"key then garbage", []string{"Bearer " + hardeningKey + "garbage"}, hardeningKey + "garbage"},
		{"key, space, garbage", []string{"Bearer " + hardeningKey + " garbage"}, "garbage"},
		{"key, tab, garbage", []string{"Bearer " + hardeningKey + "\tgarbage"}, "garbage"},
		{"key and a comma", []string{"Bearer " + hardeningKey + ", Bearer x"}, ""},
		{"two headers, wrong first", []string{"Bearer wrong-key-xyz", "Bearer " + hardeningKey}, "wrong-key-xyz"},
		{"two headers, key first", []string{"Bearer " + hardeningKey, "Bearer wrong-key-xyz"}, "wrong-key-xyz"},
		{"Basic then Bearer", []string{"Basic " + basic, "Bearer " + hardeningKey}, basic},
		{"the same key twice", []string{"Bearer " + hardeningKey, "Bearer " + hardeningKey}, ""},
	}
	for _, ep := range endpoints {
		// The control: the key itself is accepted.
		if s, _, b := post(t, gw.URL+ep.path, ep.body, "Authorization", "Bearer "+hardeningKey,
			"anthropic-version", "2023-06-01"); s != 200 {
			t.Fatalf("%s with the key: %d %s", ep.path, s, b)
		}
		for _, tc := range cases {
			t.Run(ep.path+"/"+tc.name, func(t *testing.T) {
				req := mustReq(t, http.MethodPost, gw.URL+ep.path, ep.body)
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("anthropic-version", "2023-06-01")
				for _, v := range tc.values {
					req.Header.Add("Authorization", v)
				}
				s, h, b := do(t, req)
				checkUnauthorized(t, tc.name, ep.anthropic, s, h, b, tc.secret)
			})
		}
		// What a client library would refuse to send, over raw TCP: CR/LF
		// smuggling, control characters, folded lines. The HTTP server may
		// refuse a malformed request itself (400) before the gateway sees it.
		raw := []struct {
			name    string
			headers []string
		}{
			{"CRLF then the key as a new header", []string{"Authorization: Bearer\r\nAuthorization: Bearer " + hardeningKey}},
			{"bare CR inside", []string{"Authorization: Bearer " + hardeningKey + "\rX-Injected: 1"}},
			{"bare LF inside", []string{"Authorization: Bearer wrong\nX-Api-Key: " + hardeningKey}},
			{"NUL inside", []string{"Authorization: Bearer " + hardeningKey + "\x00garbage"}},
			// The server unfolds an obs-fold into a space (RFC 9112 5.2), so
			// "Bearer" + fold + key is the key; folding garbage in is not.
			{"folded continuation", []string{"Authorization: Bearer " + hardeningKey, " garbage"}},
			{"folded header injection", []string{"Authorization: Bearer wrong", " X-Api-Key: " + hardeningKey}},
			{"control characters", []string{"Authorization: Bearer \x01\x02\x7f" + hardeningKey}},
			{"empty value", []string{"Authorization:"}},
			{"three headers", []string{"Authorization: Bearer a", "Authorization: Bearer b", "Authorization: Bearer " + hardeningKey}},
		}
		for _, tc := range raw {
			t.Run(ep.path+"/raw "+tc.name, func(t *testing.T) {
				hdr := append([]string{"anthropic-version: 2023-06-01"}, tc.headers...)
				s, h, b := rawHTTP(t, host, rawPost(host, ep.path, hdr, ep.body))
				if s == http.StatusBadRequest && !strings.Contains(b, "garbage") && !strings.Contains(b, hardeningKey) {
					return // refused by the HTTP server as malformed
				}
				checkUnauthorized(t, tc.name, ep.anthropic, s, h, b, "garbage")
			})
		}
	}
	if st := up.Stats(); st.Total != len(endpoints) {
		t.Errorf("upstream saw %d requests, want only the %d with the key", st.Total, len(endpoints))
	}
	// Still serving: no crash.
	if s, _, b := post(t, gw.URL+"/v1/chat/completions", chatBody("demo", false), "Authorization", "Bearer "+hardeningKey); s != 200 {
		t.Fatalf("after the hostile requests: %d %s", s, b)
	}
}

// e) Every spelling of an API path is either refused (404 in the envelope)
// without reaching the upstream, or authenticated exactly like the
// canonical path: no path reaches the upstream without the key check.
func TestHardeningPathNormalisation(t *testing.T) {
	up := startFake(t, fakellm.Options{Name: "fake"})
	gw := startHardeningGateway(t, up, "", hardeningKeys)
	host := fmt.Sprintf("127.0.0.1:%d", gw.Port)
	posts := []string{
		"/v1/chat/completions", // canonical
		"/v1//chat/completions",
		"/v1/./chat/completions",
		"/v1/chat/completions/",
		"/V1/chat/completions",
		"/v1/chat%2Fcompletions",
		"/v1%2Fchat%2Fcompletions",
		"/v1/chat/completions%2F",
		"/v1/models/../chat/completions",
		"/v1/models/%2E%2E/chat/completions",
		"/v1/models/..%2Fchat/completions",
		"//v1/chat/completions",
		"/x/../v1/chat/completions",
		"/v1/chat/completions?x=/v1/models",
		"/v1/chat/completions;/v1/models",
		"/v1/messages/../chat/completions",
		"/v1/chat/./completions",
		"/v1/chat/completions/.",
		"/v1/CHAT/completions",
	}
	gets := []string{
		"/v1/models",
		"/v1//models",
		"/v1/./models",
		"/v1/models/",
		"/V1/models",
		"/v1/chat/../models",
		"/v1/models/demo",
		"/v1/models/./demo",
		"/v1/models//demo",
		"/v1/models/%64emo",
		"//v1/models",
	}
	body := chatBody("demo", false)
	send := func(method, path, auth string) (int, http.Header, string) {
		var hdr []string
		if auth != "" {
			hdr = append(hdr, "Authorization: "+auth)
		}
		req := rawPost(host, path, hdr, body)
		if method == http.MethodGet {
			req = "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n"
			for _, h := range hdr {
				req += h + "\r\n"
			}
			req += "\r\n"
		}
		return rawHTTP(t, host, req)
	}
	check := func(method, path string) {
		t.Run(method+" "+path, func(t *testing.T) {
			before := up.Stats().Total
			s0, _, b0 := send(method, path, "")
			s1, _, b1 := send(method, path, "Bearer wrong-key-123")
			if up.Stats().Total != before {
				t.Fatalf("reached the upstream without a valid key: %d %s / %d %s", s0, b0, s1, b1)
			}
			for i, r := range []struct {
				s int
				b string
			}{{s0, b0}, {s1, b1}} {
				// 405: a models path POSTed to (the method is checked first).
				if r.s != http.StatusUnauthorized && r.s != http.StatusNotFound && r.s != http.StatusBadRequest && r.s != http.StatusMethodNotAllowed {
					t.Errorf("without a valid key (%d): status %d, want 401, 404 or 405: %.300s", i, r.s, r.b)
				}
				if r.s != http.StatusBadRequest && gjson.Get(r.b, "error.code").Str == "" {
					t.Errorf("without a valid key (%d): no OpenAI error envelope: %.300s", i, r.b)
				}
			}
			s2, _, b2 := send(method, path, "Bearer "+hardeningKey)
			reached := up.Stats().Total - before
			switch {
			case s2 == http.StatusOK:
				if s0 != http.StatusUnauthorized || s1 != http.StatusUnauthorized {
					t.Errorf("served with the key but answered %d / %d without", s0, s1)
				}
				if method == http.MethodPost && reached != 1 {
					t.Errorf("served with the key but the upstream saw %d requests", reached)
				}
				// The key's policy applies on this spelling too.
				s3, _, b3 := send(method, path, "Bearer other-only-secret")
				if method == http.MethodPost && (s3 != http.StatusNotFound || gjson.Get(b3, "error.code").Str != "model_not_found") {
					t.Errorf("a key limited to another model: %d %.300s", s3, b3)
				}
				if method == http.MethodGet && strings.Contains(b3, `"demo"`) {
					t.Errorf("a key limited to another model sees demo: %.300s", b3)
				}
			case s2 == http.StatusNotFound || s2 == http.StatusBadRequest || s2 == http.StatusMethodNotAllowed:
				if reached != 0 {
					t.Errorf("refused with %d but the upstream saw %d requests", s2, reached)
				}
			default:
				t.Errorf("with the key: status %d: %.300s", s2, b2)
			}
			if up.Stats().Total-before > 1 {
				t.Errorf("the upstream saw %d requests", up.Stats().Total-before)
			}
			t.Logf("no key %d, wrong key %d, key %d", s0, s1, s2)
		})
	}
	for _, p := range posts {
		check(http.MethodPost, p)
	}
	for _, p := range gets {
		check(http.MethodGet, p)
	}
	// The canonical path must be served (the test would pass vacuously
	// otherwise).
	if s, _, b := send(http.MethodPost, "/v1/chat/completions", "Bearer "+hardeningKey); s != 200 {
		t.Fatalf("canonical path with the key: %d %s", s, b)
	}
}

// f) A request cannot make the gateway contact anything but its configured
// upstream: not through body fields, forwarding headers nor the query; and
// the upstream does not receive the client's routing fields.
func TestHardeningSSRFPlacements(t *testing.T) {
	up := startFake(t, fakellm.Options{Name: "fake"})
	var canaryHits atomic.Int64
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		canaryHits.Add(1)
		http.Error(w, "canary", http.StatusTeapot)
	}))
	defer canary.Close()
	canaryHost := strings.TrimPrefix(canary.URL, "http://")
	gw := startHardeningGateway(t, up, "", "")

	fields := `"api_base":"` + canary.URL + `/v1","base_url":"` + canary.URL + `/v1","api_key":"sk-attacker",` +
		`"user_config":{"api_base":"` + canary.URL + `","base_url":"` + canary.URL + `","api_key":"sk-attacker"}`
	query := "?base_url=" + canary.URL + "/&api_base=" + canary.URL + "/v1&api_key=sk-attacker"
	headers := []string{
		"X-Forwarded-Host", canaryHost,
		"X-Forwarded-Proto", "http",
		"X-Forwarded-For", "127.0.0.1",
		"X-Original-URL", canary.URL + "/v1/chat/completions",
		"X-Rewrite-URL", canary.URL + "/v1/chat/completions",
		"X-Original-Host", canaryHost,
		"Forwarded", "for=127.0.0.1;host=" + canaryHost + ";proto=http",
		"X-Api-Base", canary.URL,
		"X-Base-Url", canary.URL,
	}
	requests := []struct {
		name, path, body string
		stream           bool
	}{
		{"chat", "/v1/chat/completions", `{"model":"demo",` + fields + `,"messages":[{"role":"user","content":"hi"}]}`, false},
		{"chat stream", "/v1/chat/completions", `{"model":"demo",` + fields + `,"stream":true,"messages":[{"role":"user","content":"hi"}]}`, true},
		{"completions", "/v1/completions", `{"model":"demo",` + fields + `,"prompt":"hi"}`, false},
		{"embeddings", "/v1/embeddings", `{"model":"demo",` + fields + `,"input":"hi"}`, false},
		{"responses", "/v1/responses", `{"model":"demo",` + fields + `,"input":"hi"}`, false},
		{"messages", "/v1/messages", `{"model":"demo",` + fields + `,"max_tokens":16,"messages":[{"role":"user","content":"hi"}]}`, false},
	}
	for _, rq := range requests {
		t.Run(rq.name, func(t *testing.T) {
			before := up.Stats().Total
			req := mustReq(t, http.MethodPost, gw.URL+rq.path+query, rq.body)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("anthropic-version", "2023-06-01")
			for i := 0; i+1 < len(headers); i += 2 {
				req.Header.Set(headers[i], headers[i+1])
			}
			req.Host = canaryHost
			s, _, b := do(t, req)
			if s != 200 {
				t.Fatalf("status %d: %.300s", s, b)
			}
			st := up.Stats()
			if st.Total != before+1 {
				t.Fatalf("the configured upstream saw %d requests, want 1", st.Total-before)
			}
			upBody := st.Bodies[len(st.Bodies)-1]
			upHdr := st.Headers[len(st.Headers)-1]
			upPath := st.Paths[len(st.Paths)-1]
			for _, f := range []string{"api_base", "base_url", "api_key", "user_config"} {
				if gjson.GetBytes(upBody, f).Exists() {
					t.Errorf("the upstream received the client's %q field: %.300s", f, upBody)
				}
			}
			if strings.Contains(upPath, canaryHost) || strings.Contains(upPath, "base_url") {
				t.Errorf("the upstream request URI carries the client's query: %s", upPath)
			}
			for i := 0; i+1 < len(headers); i += 2 {
				if v := upHdr.Get(headers[i]); strings.Contains(v, canaryHost) || strings.Contains(v, canary.URL) {
					t.Errorf("the upstream received %s: %s", headers[i], v)
				}
			}
			if strings.Contains(strings.Join(upHdr.Values("Authorization"), " ")+upHdr.Get("X-Api-Key"), "sk-attacker") {
				t.Error("the client's api_key field reached the upstream as a credential")
			}
		})
	}
	if n := canaryHits.Load(); n != 0 {
		t.Fatalf("the canary server received %d requests", n)
	}
}
