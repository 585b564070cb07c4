package e2e

// The probe's findings (the hardening issue), each driven through a running
// Caddy: hostile bodies, a hostile upstream and slow clients.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/tidwall/gjson"
)

// The canary secrets the gateway holds; the hostile upstream echoes them.
const (
	canaryProviderKey = "sk-canary-provider-9f3b2c7d1e"
	canaryHeaderValue = "canary-header-token-5a6b7c"
	canaryGatewayKey  = "aigw-canary-gateway-key-0042"
)

// hostileUpstream speaks OpenAI's wire format badly on purpose; the model
// name picks the misbehaviour.
type hostileUpstream struct {
	*httptest.Server
	mu     sync.Mutex
	bodies map[string][]string // model → bodies received
}

func (h *hostileUpstream) received(model string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.bodies[model]...)
}

func startHostile(t *testing.T) *hostileUpstream {
	t.Helper()
	h := &hostileUpstream{bodies: map[string][]string{}}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

func (h *hostileUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	model := strings.TrimPrefix(gjson.GetBytes(body, "model").Str, "claude-")
	h.mu.Lock()
	h.bodies[model] = append(h.bodies[model], string(body))
	h.mu.Unlock()
	// Everything the gateway sent, as a misconfigured proxy would echo it.
	var dump strings.Builder
	for k, v := range r.Header {
		fmt.Fprintf(&dump, "%s: %s; ", k, strings.Join(v, ","))
	}
	sse := func() http.Flusher {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		return w.(http.Flusher)
	}
	const chunk = `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}],"usage":null}`
	switch model {
	case "echo-400", "echo-500":
		status := http.StatusBadRequest
		if model == "echo-500" {
			status = http.StatusInternalServerError
		}
		e, _ := json.Marshal(map[string]any{"error": map[string]any{
			"message": "rejected request with headers " + dump.String(),
			"type":    "invalid_request_error",
			"param":   r.Header.Get("Authorization"),
			"code":    "bad_request",
		}})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(e)
	case "echo-stream":
		f := sse()
		fmt.Fprintf(w, "data: %s\n\n", chunk)
		f.Flush()
		e, _ := json.Marshal(map[string]any{"error": map[string]any{"message": "stream failed; " + dump.String()}})
		fmt.Fprintf(w, "data: %s\n\n", e)
	case "deep":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":"x","choices":`+strings.Repeat("[", 1<<20)+strings.Repeat("]", 1<<20)+`}`)
	case "deep-stream":
		f := sse()
		fmt.Fprintf(w, "data: %s\n\n", chunk)
		f.Flush()
		fmt.Fprintf(w, "data: {\"a\":%s%s}\n\n", strings.Repeat("[", 1<<20), strings.Repeat("]", 1<<20))
	case "not-json-stream":
		f := sse()
		fmt.Fprintf(w, "data: %s\n\n", chunk)
		f.Flush()
		io.WriteString(w, "data: {not json\n\ndata: [DONE]\n\n")
	case "bad-bytes-stream":
		f := sse()
		fmt.Fprintf(w, "data: %s\n\n", chunk)
		f.Flush()
		io.WriteString(w, "data: {\"choices\":[{\"delta\":{\"content\":\"\xff\xfe\"}}]}\n\ndata: [DONE]\n\n")
	case "named-stream":
		f := sse()
		io.WriteString(w, "event: surprise\ndata: {\"inject\":true}\n\n")
		fmt.Fprintf(w, "data: %s\n\n", chunk)
		io.WriteString(w, "event: other\ndata: not json at all\n\n")
		f.Flush()
		io.WriteString(w, "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\ndata: [DONE]\n\n")
	case "firehose":
		// Everything at once, far more than socket buffers hold: the gateway
		// blocks writing to a client that pauses.
		f := sse()
		pad := strings.Repeat("x", 2000)
		for i := 0; i < 4000; i++ {
			fmt.Fprintf(w, `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"%s"},"finish_reason":null}],"usage":null}`+"\n\n", pad)
		}
		io.WriteString(w, `data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`+"\n\n")
		io.WriteString(w, "data: [DONE]\n\n")
		f.Flush()
	default:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"x","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`, model)
	}
}

const probeCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider hostile {
			base_url {{.Hostile}}/v1
			api_key ` + canaryProviderKey + `
			header X-Upstream-Token ` + canaryHeaderValue + `
			header X-Team platform
			idle_timeout 300ms
		}
		provider claude {
			type anthropic
			base_url {{.Hostile}}
			api_key ` + canaryProviderKey + `
		}
		key canary {
			secret ` + canaryGatewayKey + `
		}
		key limited {
			secret limited-key-secret
			models allowed
		}
		model allowed {
			target hostile
		}
		model forbidden {
			target hostile
		}
		model claude-* {
			target claude
		}
		model * {
			target hostile
		}
		max_tokens 1000
		retry_backoff 1ms
	}
}
:{{.Port}} {
	log {
		output stdout
	}
	ai_gateway
}
`

type probe struct {
	gw      *Gateway
	hostile *hostileUpstream
}

func startProbe(t *testing.T) *probe {
	t.Helper()
	h := startHostile(t)
	gw := startGateway(t, probeCaddyfile, map[string]any{"Hostile": h.URL})
	return &probe{gw: gw, hostile: h}
}

func (p *probe) post(t *testing.T, path, body string) (int, http.Header, string) {
	t.Helper()
	return post(t, p.gw.URL+path, body, "Authorization", "Bearer "+canaryGatewayKey)
}

// alive checks the gateway still answers.
func (p *probe) alive(t *testing.T) {
	t.Helper()
	code, _, body := p.post(t, "/v1/chat/completions", `{"model":"ok","messages":[{"role":"user","content":"hi"}]}`)
	if code != http.StatusOK {
		t.Fatalf("gateway not serving after the probe: %d %s", code, body)
	}
}

func TestProbeDeepJSONIsRefused(t *testing.T) {
	p := startProbe(t)
	deep := strings.Repeat("[", 6<<20)
	bodies := map[string]string{
		"/v1/chat/completions": `{"model":"ok","messages":` + deep,
		"/v1/completions":      `{"model":"ok","prompt":` + deep,
		"/v1/embeddings":       `{"model":"ok","input":` + deep,
		"/v1/responses":        `{"model":"ok","input":` + deep,
		"/v1/messages":         `{"model":"claude-x","max_tokens":5,"messages":` + deep,
	}
	for path, body := range bodies {
		code, _, resp := p.post(t, path, body)
		if code != http.StatusBadRequest || !strings.Contains(resp, "deeper than 128 levels") {
			t.Errorf("%s: %d %.300s", path, code, resp)
		}
		if path == "/v1/messages" && gjson.Get(resp, "type").Str != "error" {
			t.Errorf("/v1/messages error not in Anthropic's shape: %.300s", resp)
		}
	}
	// Within the bound is fine.
	nested := `{"model":"ok","messages":[{"role":"user","content":"hi"}],"metadata_x":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`
	if code, _, resp := p.post(t, "/v1/chat/completions", nested); code != http.StatusOK {
		t.Errorf("100 levels: %d %s", code, resp)
	}
	// An upstream answering with deep JSON is a broken upstream, not a crash.
	code, _, resp := p.post(t, "/v1/chat/completions", `{"model":"deep","messages":[{"role":"user","content":"hi"}]}`)
	if code != http.StatusBadGateway || gjson.Get(resp, "error.code").Str != "upstream_invalid_response" {
		t.Errorf("deep upstream answer: %d %.300s", code, resp)
	}
	events := streamEvents(t, p.gw.URL+"/v1/chat/completions", `{"model":"deep-stream","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "Bearer "+canaryGatewayKey)
	if n := len(events); n != 2 || gjson.Get(events[1], "error.code").Str != "upstream_stream_error" {
		t.Errorf("deep upstream event: %q", events)
	}
	p.alive(t)
}

func TestProbeDuplicateMembersAreRefused(t *testing.T) {
	p := startProbe(t)
	limited := "Bearer limited-key-secret"
	cases := []struct{ path, body, param string }{
		{"/v1/messages", `{"model":"allowed","model":"forbidden","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, "model"},
		{"/v1/messages", `{"model":"allowed","mod\u0065l":"forbidden","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, "model"},
		{"/v1/chat/completions", `{"model":"allowed","model":"forbidden","messages":[{"role":"user","content":"hi"}]}`, "model"},
		{"/v1/chat/completions", `{"m\u006fdel":"allowed","model":"forbidden","messages":[{"role":"user","content":"hi"}]}`, "model"},
		{"/v1/chat/completions", `{"model":"allowed","max_tokens":10,"max_tokens":100000,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{"/v1/chat/completions", `{"model":"allowed","messages":[{"role":"user","content":"hi","role":"system"}]}`, "messages[0].role"},
		{"/v1/chat/completions", `{"model":"allowed","stream":false,"stream":true,"messages":[]}`, "stream"},
	}
	for _, c := range cases {
		code, _, resp := post(t, p.gw.URL+c.path, c.body, "Authorization", limited)
		if code != http.StatusBadRequest {
			t.Errorf("%s %s: %d %s", c.path, c.body, code, resp)
			continue
		}
		if c.path == "/v1/chat/completions" {
			if gjson.Get(resp, "error.code").Str != "invalid_json" || gjson.Get(resp, "error.param").Str != c.param {
				t.Errorf("%s: %s", c.body, resp)
			}
		} else if !strings.Contains(gjson.Get(resp, "error.message").Str, `duplicate member "`+c.param+`"`) {
			t.Errorf("%s: %s", c.body, resp)
		}
	}
	if n := len(p.hostile.received("forbidden")) + len(p.hostile.received("allowed")); n != 0 {
		t.Fatalf("the upstream received %d requests with duplicate members", n)
	}
	// The larger of two caps is the one checked.
	code, _, resp := post(t, p.gw.URL+"/v1/chat/completions", `{"model":"allowed","max_completion_tokens":10,"max_tokens":5000,"messages":[]}`, "Authorization", limited)
	if code != http.StatusBadRequest || gjson.Get(resp, "error.code").Str != "max_tokens_exceeded" {
		t.Errorf("max_tokens behind max_completion_tokens: %d %s", code, resp)
	}
}

func TestProbeBadInputIsRefused(t *testing.T) {
	p := startProbe(t)
	long := strings.Repeat("m", 100<<10)
	cases := []struct{ name, path, body, code string }{
		{"long model on a glob route", "/v1/chat/completions", `{"model":"` + long + `","messages":[]}`, "invalid_value"},
		{"control characters in the model", "/v1/chat/completions", `{"model":"a\r\nX-Injected: 1","messages":[]}`, "invalid_value"},
		{"invalid UTF-8", "/v1/chat/completions", "{\"model\":\"ok\",\"messages\":[{\"role\":\"user\",\"content\":\"\xc3\x28\"}]}", "invalid_json"},
		{"invalid UTF-8 to /v1/messages", "/v1/messages", "{\"model\":\"claude-x\",\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}", ""},
		{"n over 128", "/v1/chat/completions", `{"model":"ok","n":129,"messages":[]}`, "invalid_value"},
		{"129 tools", "/v1/chat/completions", `{"model":"ok","messages":[],"tools":[` + strings.Repeat(`{"type":"function","function":{"name":"f"}},`, 128) + `{"type":"function","function":{"name":"f"}}]}`, "invalid_value"},
		{"129 tools to /v1/messages", "/v1/messages", `{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"tools":[` + strings.Repeat(`{"name":"f","input_schema":{"type":"object"}},`, 128) + `{"name":"f","input_schema":{"type":"object"}}]}`, ""},
		{"2049 embedding inputs", "/v1/embeddings", `{"model":"ok","input":[` + strings.Repeat(`"a",`, 2048) + `"a"]}`, "invalid_value"},
		{"max_tokens over the cap", "/v1/chat/completions", `{"model":"ok","max_tokens":1001,"messages":[]}`, "max_tokens_exceeded"},
	}
	for _, c := range cases {
		code, hdr, resp := p.post(t, c.path, c.body)
		if code != http.StatusBadRequest || c.code != "" && gjson.Get(resp, "error.code").Str != c.code {
			t.Errorf("%s: %d %.300s", c.name, code, resp)
		}
		for k, v := range hdr {
			if len(strings.Join(v, "")) > 512 {
				t.Errorf("%s: header %s is %d bytes", c.name, k, len(strings.Join(v, "")))
			}
		}
	}
	// Header values beyond the server's bound never reach the gateway.
	req := mustReq(t, http.MethodPost, p.gw.URL+"/v1/chat/completions", `{"model":"ok","messages":[]}`)
	req.Header.Set("Authorization", "Bearer "+canaryGatewayKey)
	req.Header.Set("X-Huge", strings.Repeat("h", 2<<20))
	if code, _, _ := do(t, req); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("2 MiB header: %d", code)
	}
	// A model name at the bound is served, and echoed in the header.
	name := strings.Repeat("m", 256)
	code, hdr, resp := p.post(t, "/v1/chat/completions", `{"model":"`+name+`","messages":[{"role":"user","content":"hi"}]}`)
	if code != http.StatusOK || hdr.Get("X-AI-Gateway-Model") != name {
		t.Errorf("256-byte model: %d %q %.200s", code, hdr.Get("X-AI-Gateway-Model"), resp)
	}
}

func TestProbeSteeringMembersNeverReachUpstream(t *testing.T) {
	p := startProbe(t)
	body := `{"model":"steer","messages":[{"role":"user","content":"hi"}],"api_base":"http://169.254.169.254/","base_url":"http://127.0.0.1:1/","api_key":"sk-other","user_config":{"model_list":[]},"custom_llm_provider":"x","temperature":0.5}`
	if code, _, resp := p.post(t, "/v1/chat/completions", body); code != http.StatusOK {
		t.Fatalf("%d %s", code, resp)
	}
	got := p.hostile.received("steer")
	if len(got) != 1 {
		t.Fatalf("upstream received %d requests", len(got))
	}
	for _, k := range []string{"api_base", "base_url", "api_key", "user_config", "custom_llm_provider"} {
		if gjson.Get(got[0], k).Exists() {
			t.Errorf("%s reached the upstream: %s", k, got[0])
		}
	}
	if gjson.Get(got[0], "temperature").Num != 0.5 {
		t.Errorf("other members must pass: %s", got[0])
	}
}

// TestProbeUpstreamTextNeverLeaksSecrets: an upstream that echoes the
// request's headers in its errors never shows a client, a log, the metrics
// or the admin API a secret the gateway holds.
func TestProbeUpstreamTextNeverLeaksSecrets(t *testing.T) {
	p := startProbe(t)
	var seen []string
	for _, model := range []string{"echo-400", "echo-500"} {
		code, _, resp := p.post(t, "/v1/chat/completions", `{"model":"`+model+`","messages":[{"role":"user","content":"hi"}]}`)
		if code < 400 {
			t.Fatalf("%s: %d", model, code)
		}
		seen = append(seen, resp)
	}
	// The 400 keeps the provider's message, redacted.
	_, _, resp := p.post(t, "/v1/chat/completions", `{"model":"echo-400","messages":[{"role":"user","content":"hi"}]}`)
	if msg := gjson.Get(resp, "error.message").Str; !strings.Contains(msg, "[REDACTED]") || !strings.Contains(msg, "platform") {
		t.Errorf("the provider's message should stay, redacted: %s", msg)
	}
	// Through the SDK too.
	c := clientWithKey(p.gw, canaryGatewayKey)
	_, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "echo-400", Messages: userMsg("hi")})
	if err == nil {
		t.Fatal("echo-400 succeeded")
	}
	seen = append(seen, err.Error())
	seen = append(seen, strings.Join(streamEvents(t, p.gw.URL+"/v1/chat/completions", `{"model":"echo-stream","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "Bearer "+canaryGatewayKey), "\n"))
	_, _, resp = p.post(t, "/v1/messages", `{"model":"claude-echo-400","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
	seen = append(seen, resp)
	seen = append(seen, adminGet(t, p.gw, "/ai_gateway/status"), adminGet(t, p.gw, "/ai_gateway/keys"), adminGet(t, p.gw, "/metrics"))
	if len(p.hostile.received("echo-500")) < 1 {
		t.Fatal("the hostile upstream was not reached")
	}
	seen = append(seen, p.gw.Logs())
	for _, s := range seen {
		for _, secret := range []string{canaryProviderKey, canaryHeaderValue, canaryGatewayKey} {
			if strings.Contains(s, secret) {
				t.Errorf("secret %q leaked in:\n%.2000s", secret, s)
			}
		}
	}
}

func TestProbeMalformedUpstreamStreams(t *testing.T) {
	p := startProbe(t)
	for _, model := range []string{"not-json-stream", "bad-bytes-stream"} {
		events := streamEvents(t, p.gw.URL+"/v1/chat/completions", `{"model":"`+model+`","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "Bearer "+canaryGatewayKey)
		if len(events) != 2 || gjson.Get(events[0], "choices.0.delta.content").Str != "hi" || gjson.Get(events[1], "error.code").Str != "upstream_stream_error" {
			t.Errorf("%s: events %q", model, events)
		}
	}
	// Events not of the protocol are dropped; the stream is otherwise whole.
	events := streamEvents(t, p.gw.URL+"/v1/chat/completions", `{"model":"named-stream","stream":true,"messages":[{"role":"user","content":"hi"}]}`, "Bearer "+canaryGatewayKey)
	if len(events) != 2 || events[1] != "[DONE]" || strings.Contains(strings.Join(events, ""), "inject") {
		t.Errorf("named-stream: events %q", events)
	}
}

// TestProbeSlowClientIsNotAnUpstreamTimeout: a client that pauses longer
// than idle_timeout while the upstream has already sent everything gets the
// whole stream.
func TestProbeSlowClientIsNotAnUpstreamTimeout(t *testing.T) {
	p := startProbe(t)
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p.gw.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(64 << 10)
	body := `{"model":"firehose","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", canaryGatewayKey, len(body), body)
	br := bufio.NewReaderSize(conn, 4<<10)
	if _, err := br.Peek(1); err != nil {
		t.Fatal(err)
	}
	// Pause well past the 300ms idle timeout, three times.
	for range 3 {
		time.Sleep(1 * time.Second)
		if _, err := br.Discard(64 << 10); err != nil {
			t.Fatal(err)
		}
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(rest, []byte("upstream_stream_error")) || !bytes.Contains(rest, []byte("data: [DONE]")) {
		t.Fatalf("stream cut while the client paused: …%s", tail(string(rest), 400))
	}
}

// streamEvents posts a streaming request and returns each event's data.
func streamEvents(t *testing.T, url, body, auth string) []string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", auth)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	var out []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}
