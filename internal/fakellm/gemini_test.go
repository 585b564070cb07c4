package fakellm

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const geminiKey = "X-Goog-Api-Key"

func TestGeminiGenerate(t *testing.T) {
	_, ts := newTestServer(t, Options{Chunks: 4})
	body := `{"systemInstruction":{"parts":[{"text":"be brief"}]},
		"contents":[{"role":"user","parts":[{"text":"hello there"}]},{"role":"model","parts":[{"text":"hi"}]},{"role":"user","parts":[{"text":"again"}]}]}`
	resp, b := do(t, ts, "POST", "/v1beta/models/gemini-x:generateContent", body, geminiKey, "k")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if !strings.Contains(string(b), "\n  ") {
		t.Errorf("answer is not pretty-printed: %s", b)
	}
	m := decode(t, b)
	if got := path(t, m, "candidates", 0, "content", "parts", 0, "text"); got != "Hello from fakellm word3" {
		t.Errorf("text = %q", got)
	}
	if got := path(t, m, "candidates", 0, "content", "role"); got != "model" {
		t.Errorf("role = %v", got)
	}
	if got := path(t, m, "candidates", 0, "finishReason"); got != "STOP" {
		t.Errorf("finishReason = %v", got)
	}
	// 3 contents: 3*3 + 2 + 1 + 1 words, + 2 system words
	if got := path(t, m, "usageMetadata", "promptTokenCount"); got != float64(15) {
		t.Errorf("promptTokenCount = %v", got)
	}
	if got := path(t, m, "usageMetadata", "candidatesTokenCount"); got != float64(4) {
		t.Errorf("candidatesTokenCount = %v", got)
	}
	if got := path(t, m, "usageMetadata", "totalTokenCount"); got != float64(19) {
		t.Errorf("totalTokenCount = %v", got)
	}
	if got := path(t, m, "modelVersion"); got != "gemini-x" {
		t.Errorf("modelVersion = %v", got)
	}
	if id, _ := path(t, m, "responseId").(string); id == "" {
		t.Error("no responseId")
	}

	// maxOutputTokens and candidateCount, key in the query, /v1 prefix
	resp, b = do(t, ts, "POST", "/v1/models/gemini-x:generateContent?key=k",
		`{"contents":[{"parts":[{"text":"hi"}]}],"generationConfig":{"maxOutputTokens":2,"candidateCount":2}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	m = decode(t, b)
	for i := range 2 {
		if got := path(t, m, "candidates", i, "content", "parts", 0, "text"); got != "Hello from" {
			t.Errorf("candidate %d text = %q", i, got)
		}
		if got := path(t, m, "candidates", i, "finishReason"); got != "MAX_TOKENS" {
			t.Errorf("candidate %d finishReason = %v", i, got)
		}
		if got := path(t, m, "candidates", i, "index"); got != float64(i) {
			t.Errorf("candidate %d index = %v", i, got)
		}
	}
	if got := path(t, m, "usageMetadata", "candidatesTokenCount"); got != float64(4) {
		t.Errorf("candidatesTokenCount = %v", got)
	}
}

func TestGeminiStream(t *testing.T) {
	_, ts := newTestServer(t, Options{Chunks: 3})
	resp, b := do(t, ts, "POST", "/v1beta/models/gm:streamGenerateContent?alt=sse",
		`{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`, geminiKey, "k")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	raw := string(b)
	if strings.Count(raw, "\r\n\r\n") != 3 || !strings.HasSuffix(raw, "}\r\n\r\n") || strings.Contains(raw, "[DONE]") {
		t.Fatalf("framing: %q", raw)
	}
	events, err := readSSE(strings.NewReader(raw))
	if err != nil || len(events) != 3 {
		t.Fatalf("events %v, %v", events, err)
	}
	var text strings.Builder
	var id string
	for i, ev := range events {
		m := decode(t, []byte(strings.TrimRight(ev.Data, "\r")))
		text.WriteString(path(t, m, "candidates", 0, "content", "parts", 0, "text").(string))
		c := path(t, m, "candidates", 0).(map[string]any)
		if _, ok := c["finishReason"]; ok != (i == 2) {
			t.Errorf("event %d: finishReason present = %v", i, ok)
		}
		if got := path(t, m, "usageMetadata", "candidatesTokenCount"); got != float64(i+1) {
			t.Errorf("event %d: candidatesTokenCount = %v", i, got)
		}
		rid := path(t, m, "responseId").(string)
		if id != "" && rid != id {
			t.Errorf("responseId changed: %q vs %q", rid, id)
		}
		id = rid
	}
	if text.String() != "Hello from fakellm" {
		t.Errorf("text = %q", text.String())
	}

	// without alt=sse: a JSON array of responses
	resp, b = do(t, ts, "POST", "/v1beta/models/gm:streamGenerateContent",
		`{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`, geminiKey, "k")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var arr []map[string]any
	if err := jsonUnmarshal(b, &arr); err != nil || len(arr) != 3 {
		t.Fatalf("array stream %q: %v", b, err)
	}
}

func TestGeminiToolCallAndEcho(t *testing.T) {
	s, ts := newTestServer(t, Options{})
	body := `{"contents":[{"role":"user","parts":[{"text":"weather?"}]}],
		"tools":[{"functionDeclarations":[{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}}}}]}]}`
	s.Enqueue(Behavior{ToolCall: true})
	resp, b := do(t, ts, "POST", "/v1beta/models/gm:generateContent", body, geminiKey, "k")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	m := decode(t, b)
	fc := path(t, m, "candidates", 0, "content", "parts", 0, "functionCall")
	if got := path(t, fc, "name"); got != "get_weather" {
		t.Errorf("name = %v", got)
	}
	if got := path(t, fc, "args", "city"); got != "Paris" {
		t.Errorf("args.city = %v", got)
	}
	if got := path(t, fc, "args", "days"); got != float64(1) {
		t.Errorf("args.days = %v", got)
	}
	if got := path(t, m, "candidates", 0, "finishReason"); got != "STOP" {
		t.Errorf("finishReason = %v", got)
	}

	// stream: the call arrives whole, with the finish reason
	s.Enqueue(Behavior{ToolCall: true})
	_, b = do(t, ts, "POST", "/v1beta/models/gm:streamGenerateContent?alt=sse", body, geminiKey, "k")
	events, _ := readSSE(strings.NewReader(string(b)))
	if len(events) != 1 || !strings.Contains(events[0].Data, `"functionCall":{"name":"get_weather","args":{"city":"Paris","days":1}}`) ||
		!strings.Contains(events[0].Data, `"finishReason":"STOP"`) {
		t.Errorf("tool stream: %q", b)
	}

	// echo: the text is the raw request body
	in := `{"contents":[{"parts":[{"text":"echo me"}]}]}`
	s.Enqueue(Behavior{Echo: true, Chunks: 3})
	_, b = do(t, ts, "POST", "/v1beta/models/gm:streamGenerateContent?alt=sse", in, geminiKey, "k")
	events, _ = readSSE(strings.NewReader(string(b)))
	var text strings.Builder
	for _, ev := range events {
		text.WriteString(path(t, decode(t, []byte(strings.TrimSpace(ev.Data))), "candidates", 0, "content", "parts", 0, "text").(string))
	}
	if text.String() != in {
		t.Errorf("echo = %q", text.String())
	}
}

func TestGeminiErrors(t *testing.T) {
	s, ts := newTestServer(t, Options{})
	good := `{"contents":[{"parts":[{"text":"hi"}]}]}`
	cases := []struct {
		name, path, body string
		key              bool
		status           int
		gstatus          string
	}{
		{"no key", "/v1beta/models/gm:generateContent", good, false, 403, "PERMISSION_DENIED"},
		{"unknown method", "/v1beta/models/gm:frobnicate", good, true, 404, "NOT_FOUND"},
		{"bad json", "/v1beta/models/gm:generateContent", `{`, true, 400, "INVALID_ARGUMENT"},
		{"no contents", "/v1beta/models/gm:generateContent", `{}`, true, 400, "INVALID_ARGUMENT"},
		{"empty parts", "/v1beta/models/gm:generateContent", `{"contents":[{"role":"user","parts":[]}]}`, true, 400, "INVALID_ARGUMENT"},
		{"empty text", "/v1beta/models/gm:generateContent", `{"contents":[{"role":"user","parts":[{"text":""}]}]}`, true, 400, "INVALID_ARGUMENT"},
		{"bad role", "/v1beta/models/gm:generateContent", `{"contents":[{"role":"assistant","parts":[{"text":"x"}]}]}`, true, 400, "INVALID_ARGUMENT"},
		{"empty part", "/v1beta/models/gm:generateContent", `{"contents":[{"role":"user","parts":[{}]}]}`, true, 400, "INVALID_ARGUMENT"},
		{"batch model mismatch", "/v1beta/models/e:batchEmbedContents", `{"requests":[{"model":"models/other","content":{"parts":[{"text":"x"}]}}]}`, true, 400, "INVALID_ARGUMENT"},
	}
	for _, c := range cases {
		var hdr []string
		if c.key {
			hdr = []string{geminiKey, "k"}
		}
		resp, b := do(t, ts, "POST", c.path, c.body, hdr...)
		if resp.StatusCode != c.status {
			t.Errorf("%s: status %d, want %d: %s", c.name, resp.StatusCode, c.status, b)
			continue
		}
		m := decode(t, b)
		if got := path(t, m, "error", "status"); got != c.gstatus {
			t.Errorf("%s: status %v, want %s", c.name, got, c.gstatus)
		}
		if got := path(t, m, "error", "code"); got != float64(c.status) {
			t.Errorf("%s: code %v", c.name, got)
		}
	}

	// scripted 429 with a RetryInfo detail and no Retry-After header
	s.Enqueue(Behavior{Status: 429, RetryAfter: "30"})
	resp, b := do(t, ts, "POST", "/v1beta/models/gm:generateContent", good, geminiKey, "k")
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "" {
		t.Fatalf("429: status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	m := decode(t, b)
	if got := path(t, m, "error", "status"); got != "RESOURCE_EXHAUSTED" {
		t.Errorf("status = %v", got)
	}
	d := path(t, m, "error", "details", 0)
	if path(t, d, "@type") != "type.googleapis.com/google.rpc.RetryInfo" || path(t, d, "retryDelay") != "30s" {
		t.Errorf("details = %v", d)
	}

	s.Enqueue(Behavior{Status: 503})
	resp, b = do(t, ts, "POST", "/v1beta/models/gm:streamGenerateContent?alt=sse", good, geminiKey, "k")
	if resp.StatusCode != 503 || path(t, decode(t, b), "error", "status") != "UNAVAILABLE" {
		t.Errorf("503: %d %s", resp.StatusCode, b)
	}
}

func TestGeminiFailAfter(t *testing.T) {
	s, ts := newTestServer(t, Options{Chunks: 5})
	s.Enqueue(Behavior{FailAfter: 2})
	resp, err := send(t.Context(), ts, "POST", "/v1beta/models/gm:streamGenerateContent?alt=sse",
		`{"contents":[{"parts":[{"text":"hi"}]}]}`, geminiKey, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Errorf("stream not cut abruptly: %q", raw)
	}
	events, _ := readSSE(strings.NewReader(string(raw)))
	if len(events) != 2 || strings.Contains(string(raw), "finishReason") {
		t.Errorf("events before the cut: %q", raw)
	}
}

func TestGeminiEmbed(t *testing.T) {
	_, ts := newTestServer(t, Options{})
	resp, b := do(t, ts, "POST", "/v1beta/models/emb:batchEmbedContents",
		`{"requests":[{"model":"models/emb","content":{"parts":[{"text":"hello world"}]},"outputDimensionality":8},
		 {"model":"models/emb","content":{"parts":[{"text":"second"}]}}]}`, geminiKey, "k")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	m := decode(t, b)
	v0 := path(t, m, "embeddings", 0, "values").([]any)
	v1 := path(t, m, "embeddings", 1, "values").([]any)
	if len(v0) != 8 || len(v1) != DefaultDimensions {
		t.Fatalf("dims %d, %d", len(v0), len(v1))
	}
	want := Embed("hello world", 8)
	for i, f := range want {
		if float32(v0[i].(float64)) != f {
			t.Fatalf("value %d = %v, want %v", i, v0[i], f)
		}
	}

	resp, b = do(t, ts, "POST", "/v1beta/models/emb:embedContent",
		`{"content":{"parts":[{"text":"hello"}]},"outputDimensionality":4}`, geminiKey, "k")
	if resp.StatusCode != 200 || len(path(t, decode(t, b), "embedding", "values").([]any)) != 4 {
		t.Fatalf("embedContent: %d %s", resp.StatusCode, b)
	}
}

func TestGeminiStreamLinesCRLF(t *testing.T) {
	_, ts := newTestServer(t, Options{Chunks: 2})
	resp, err := send(t.Context(), ts, "POST", "/v1beta/models/gm:streamGenerateContent?alt=sse",
		`{"contents":[{"parts":[{"text":"hi"}]}]}`, geminiKey, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(line, "\r\n") {
			t.Fatalf("line without CRLF: %q", line)
		}
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func TestGeminiHangTTFTGarbage(t *testing.T) {
	s, ts := newTestServer(t, Options{})
	body := `{"contents":[{"parts":[{"text":"hi"}]}]}`
	s.Enqueue(Behavior{Hang: true})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if resp, err := send(ctx, ts, "POST", "/v1beta/models/gm:generateContent", body, geminiKey, "k"); err == nil {
		resp.Body.Close()
		t.Fatal("a hanging request was answered")
	}
	waitFor(t, "the cancellation", func() bool { return s.Stats().Cancelled == 1 })

	s.Enqueue(Behavior{TTFT: 60 * time.Millisecond})
	start := time.Now()
	if resp, _ := do(t, ts, "POST", "/v1beta/models/gm:generateContent", body, geminiKey, "k"); resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Errorf("answered after %v", d)
	}

	s.Enqueue(Behavior{Garbage: true})
	if resp, b := do(t, ts, "POST", "/v1beta/models/gm:generateContent", body, geminiKey, "k"); resp.StatusCode != 200 || !strings.Contains(string(b), "<html>") {
		t.Errorf("garbage: %d %s", resp.StatusCode, b)
	}
}
