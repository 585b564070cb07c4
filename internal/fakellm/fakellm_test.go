package fakellm

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const chatBody = `{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hello there friend"}]}]}`

func TestChatNonStream(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{})
	tests := []struct {
		name, body    string
		choices       int
		content       string
		finish        string
		wantCompleted int
	}{
		{"default", chatBody, 1, "Hello from fakellm word3 word4", "stop", 5},
		{"n=3", `{"model":"m","n":3,"messages":[{"role":"user","content":"hi"}]}`, 3, "Hello from fakellm word3 word4", "stop", 15},
		{"max_tokens", `{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"hi"}]}`, 1, "Hello from", "length", 2},
		{"max_completion_tokens", `{"model":"m","max_completion_tokens":3,"max_tokens":1,"messages":[]}`, 1, "Hello from fakellm", "length", 3},
		{"max_tokens above chunks", `{"model":"m","max_tokens":50,"messages":[]}`, 1, "Hello from fakellm word3 word4", "stop", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := do(t, ts, "POST", "/v1/chat/completions", tt.body)
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("status %d, content-type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
			}
			m := decode(t, b)
			var req struct{ Model string }
			_ = json.Unmarshal([]byte(tt.body), &req)
			if id := m["id"].(string); !strings.HasPrefix(id, "chatcmpl-") {
				t.Errorf("id = %q", id)
			}
			if m["object"] != "chat.completion" || m["model"] != req.Model || m["system_fingerprint"] == nil {
				t.Errorf("object/model/fingerprint: %v %v %v", m["object"], m["model"], m["system_fingerprint"])
			}
			if _, ok := m["created"].(float64); !ok {
				t.Errorf("created = %v", m["created"])
			}
			choices := m["choices"].([]any)
			if len(choices) != tt.choices {
				t.Fatalf("%d choices, want %d", len(choices), tt.choices)
			}
			for i := range choices {
				if got := path(t, m, "choices", i, "index"); got != float64(i) {
					t.Errorf("choice %d index = %v", i, got)
				}
				if got := path(t, m, "choices", i, "message", "role"); got != "assistant" {
					t.Errorf("role = %v", got)
				}
				if got := path(t, m, "choices", i, "message", "content"); got != tt.content {
					t.Errorf("content = %q, want %q", got, tt.content)
				}
				if got := path(t, m, "choices", i, "message", "refusal"); got != nil {
					t.Errorf("refusal = %v", got)
				}
				if got := path(t, m, "choices", i, "logprobs"); got != nil {
					t.Errorf("logprobs = %v", got)
				}
				if got := path(t, m, "choices", i, "finish_reason"); got != tt.finish {
					t.Errorf("finish_reason = %v, want %s", got, tt.finish)
				}
			}
			prompt := CountPromptTokens([]byte(tt.body))
			if got := path(t, m, "usage", "prompt_tokens"); got != float64(prompt) {
				t.Errorf("prompt_tokens = %v, want %d", got, prompt)
			}
			if got := path(t, m, "usage", "completion_tokens"); got != float64(tt.wantCompleted) {
				t.Errorf("completion_tokens = %v, want %d", got, tt.wantCompleted)
			}
			if got := path(t, m, "usage", "total_tokens"); got != float64(prompt+tt.wantCompleted) {
				t.Errorf("total_tokens = %v", got)
			}
			if got := path(t, m, "usage", "prompt_tokens_details", "cached_tokens"); got != 0.0 {
				t.Errorf("cached_tokens = %v", got)
			}
			if got := path(t, m, "usage", "completion_tokens_details", "reasoning_tokens"); got != 0.0 {
				t.Errorf("reasoning_tokens = %v", got)
			}
		})
	}
}

func TestCountPromptTokens(t *testing.T) {
	t.Parallel()
	tests := []struct {
		body string
		want int
	}{
		{chatBody, 3 + 2 + 3 + 3},
		{`{"model":"m","messages":[{"role":"user","content":"  a  b\tc\n"}]}`, 6},
		{`{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[]}]}`, 3},
		{`{"model":"m","prompt":"one two three"}`, 3},
		{`{"model":"m","prompt":["one two","three"]}`, 3},
		{`{"model":"m","prompt":[1,2,3,4]}`, 4},
		{`{"model":"m","input":[[1,2],[3]]}`, 3},
		{`{"model":"m","input":"a b","instructions":"be nice"}`, 4},
		{`{"model":"m","input":[{"role":"user","content":[{"type":"input_text","text":"x y"}]},{"role":"user","content":"z"}]}`, 3 + 2 + 3 + 1},
		{`not json`, 0},
	}
	for _, tt := range tests {
		if got := CountPromptTokens([]byte(tt.body)); got != tt.want {
			t.Errorf("CountPromptTokens(%s) = %d, want %d", tt.body, got, tt.want)
		}
	}
}

// chatChunk is the subset of a chat.completion.chunk checked by tests.
type chatChunk struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	Model   string `json:"model"`
	Choices []struct {
		Index int `json:"index"`
		Delta struct {
			Role      *string `json:"role"`
			Content   *string `json:"content"`
			ToolCalls []struct {
				Index    int     `json:"index"`
				ID       *string `json:"id"`
				Type     *string `json:"type"`
				Function struct {
					Name      *string `json:"name"`
					Arguments *string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage json.RawMessage `json:"usage"`
}

// streamChat posts a streaming chat request and returns the parsed chunks
// and whether the stream ended with [DONE].
func streamChat(t *testing.T, ts *httptest.Server, body string, hdr ...string) (chunks []chatChunk, raw []map[string]any, done bool) {
	t.Helper()
	resp, b := do(t, ts, "POST", "/v1/chat/completions", body, hdr...)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content-type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	events, err := readSSE(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range events {
		if ev.Data == "[DONE]" {
			if i != len(events)-1 {
				t.Fatalf("[DONE] is not the last event")
			}
			return chunks, raw, true
		}
		var c chatChunk
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil {
			t.Fatalf("chunk %d: %v: %s", i, err, ev.Data)
		}
		chunks = append(chunks, c)
		raw = append(raw, decode(t, []byte(ev.Data)))
	}
	return chunks, raw, false
}

func TestChatStream(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{Name: "bob", Chunks: 4})
	for _, includeUsage := range []bool{false, true} {
		t.Run("include_usage="+strconv.FormatBool(includeUsage), func(t *testing.T) {
			body := `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi you"}]}`
			if includeUsage {
				body = `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi you"}]}`
			}
			chunks, raw, done := streamChat(t, ts, body)
			if !done {
				t.Fatal("no [DONE]")
			}
			// role + 4 words + finish (+ usage)
			want := 6
			if includeUsage {
				want++
			}
			if len(chunks) != want {
				t.Fatalf("%d chunks, want %d", len(chunks), want)
			}
			var content strings.Builder
			for i, c := range chunks {
				if c.ID != chunks[0].ID || c.Created != chunks[0].Created || c.Model != "gpt-4o" || c.Object != "chat.completion.chunk" {
					t.Errorf("chunk %d: id/created/model/object differ: %+v", i, c)
				}
				_, hasUsage := raw[i]["usage"]
				if hasUsage != includeUsage {
					t.Errorf("chunk %d: usage key present = %v", i, hasUsage)
				}
				isUsageChunk := includeUsage && i == len(chunks)-1
				if isUsageChunk {
					if len(c.Choices) != 0 {
						t.Errorf("usage chunk has choices")
					}
					var u struct{ PromptTokens, CompletionTokens, TotalTokens int }
					uj := strings.NewReplacer("prompt_tokens", "PromptTokens", "completion_tokens", "CompletionTokens", "total_tokens", "TotalTokens").Replace(string(c.Usage))
					_ = json.Unmarshal([]byte(uj), &u)
					if u.PromptTokens != CountPromptTokens([]byte(body)) || u.CompletionTokens != 4 || u.TotalTokens != u.PromptTokens+4 {
						t.Errorf("usage = %s", c.Usage)
					}
					continue
				}
				if hasUsage && string(c.Usage) != "null" {
					t.Errorf("chunk %d: usage = %s, want null", i, c.Usage)
				}
				if len(c.Choices) != 1 {
					t.Fatalf("chunk %d: %d choices", i, len(c.Choices))
				}
				ch := c.Choices[0]
				switch {
				case i == 0:
					if ch.Delta.Role == nil || *ch.Delta.Role != "assistant" || ch.Delta.Content == nil || *ch.Delta.Content != "" {
						t.Errorf("first delta = %+v", ch.Delta)
					}
				case ch.FinishReason != nil:
					if *ch.FinishReason != "stop" || ch.Delta.Content != nil || i != 5 {
						t.Errorf("finish chunk %d: %+v", i, ch)
					}
				default:
					if ch.Delta.Content == nil {
						t.Fatalf("chunk %d without content", i)
					}
					content.WriteString(*ch.Delta.Content)
				}
			}
			if got := content.String(); got != "Hello from bob word3" {
				t.Errorf("content = %q", got)
			}
		})
	}
}

func TestChatStreamChoices(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{Chunks: 3})
	chunks, _, done := streamChat(t, ts, `{"model":"m","stream":true,"n":2,"messages":[]}`)
	if !done {
		t.Fatal("no [DONE]")
	}
	content := map[int]string{}
	finish := map[int]string{}
	for _, c := range chunks {
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				content[ch.Index] += *ch.Delta.Content
			}
			if ch.FinishReason != nil {
				finish[ch.Index] = *ch.FinishReason
			}
		}
	}
	for i := range 2 {
		if content[i] != "Hello from fakellm" || finish[i] != "stop" {
			t.Errorf("choice %d: content %q finish %q", i, content[i], finish[i])
		}
	}
}

const toolsBody = `{"model":"gpt-4o","messages":[{"role":"user","content":"weather?"}],
 "tools":[{"type":"function","function":{"name":"get_forecast","parameters":{"type":"object",
  "properties":{"location":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},"days":{"type":["integer","null"]}}}}},
  {"type":"function","function":{"name":"other"}}]`

func TestToolCall(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{})
	s.Script("gpt-4o", Behavior{ToolCall: true})
	const wantArgs = `{"location":"Paris","unit":"celsius","days":1}`

	t.Run("non-stream", func(t *testing.T) {
		_, b := do(t, ts, "POST", "/v1/chat/completions", toolsBody+"}")
		m := decode(t, b)
		if got := path(t, m, "choices", 0, "finish_reason"); got != "tool_calls" {
			t.Errorf("finish_reason = %v", got)
		}
		if got := path(t, m, "choices", 0, "message", "content"); got != nil {
			t.Errorf("content = %v", got)
		}
		tc := path(t, m, "choices", 0, "message", "tool_calls", 0)
		if id := path(t, tc, "id").(string); !strings.HasPrefix(id, "call_") {
			t.Errorf("id = %q", id)
		}
		if path(t, tc, "type") != "function" || path(t, tc, "function", "name") != "get_forecast" {
			t.Errorf("tool call = %v", tc)
		}
		if got := path(t, tc, "function", "arguments"); got != wantArgs {
			t.Errorf("arguments = %v, want %s", got, wantArgs)
		}
	})

	t.Run("stream", func(t *testing.T) {
		chunks, _, done := streamChat(t, ts, toolsBody+`,"stream":true}`)
		if !done {
			t.Fatal("no [DONE]")
		}
		var args strings.Builder
		fragments := 0
		for i, c := range chunks {
			ch := c.Choices[0]
			switch {
			case i == 0:
				if len(ch.Delta.ToolCalls) != 1 {
					t.Fatalf("first chunk: %+v", ch.Delta)
				}
				tc := ch.Delta.ToolCalls[0]
				if tc.Index != 0 || tc.ID == nil || tc.Type == nil || *tc.Type != "function" ||
					tc.Function.Name == nil || *tc.Function.Name != "get_forecast" ||
					tc.Function.Arguments == nil || *tc.Function.Arguments != "" {
					t.Errorf("first tool chunk = %+v", tc)
				}
			case ch.FinishReason != nil:
				if *ch.FinishReason != "tool_calls" || i != len(chunks)-1 {
					t.Errorf("finish chunk %d: %v", i, *ch.FinishReason)
				}
			default:
				if len(ch.Delta.ToolCalls) != 1 {
					t.Fatalf("chunk %d: %+v", i, ch.Delta)
				}
				tc := ch.Delta.ToolCalls[0]
				if tc.ID != nil || tc.Type != nil || tc.Function.Name != nil || tc.Function.Arguments == nil {
					t.Errorf("fragment chunk %d carries more than index+arguments: %+v", i, tc)
				}
				args.WriteString(*tc.Function.Arguments)
				fragments++
			}
		}
		if fragments < 2 {
			t.Errorf("arguments streamed in %d pieces", fragments)
		}
		if !json.Valid([]byte(args.String())) || args.String() != wantArgs {
			t.Errorf("arguments = %s, want %s", args.String(), wantArgs)
		}
	})

	t.Run("no tools", func(t *testing.T) {
		_, b := do(t, ts, "POST", "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`)
		if got := path(t, decode(t, b), "choices", 0, "message", "tool_calls", 0, "function", "arguments"); got != fallbackToolArgs {
			t.Errorf("arguments = %v", got)
		}
	})
}

func TestEcho(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{})
	body := `{"model":"m","messages":[{"role":"user","content":"ünïcödé \"quotes\" \\ back\nslash 🎉 <tag>"}]}`
	t.Run("non-stream", func(t *testing.T) {
		_, b := do(t, ts, "POST", "/v1/chat/completions", body, HeaderEcho, "1")
		if got := path(t, decode(t, b), "choices", 0, "message", "content"); got != body {
			t.Errorf("content = %q, want %q", got, body)
		}
	})
	t.Run("stream", func(t *testing.T) {
		sbody := strings.Replace(body, `{"model":"m"`, `{"model":"m","stream":true`, 1)
		chunks, _, _ := streamChat(t, ts, sbody, HeaderEcho, "1")
		var content strings.Builder
		pieces := 0
		for _, c := range chunks {
			if d := c.Choices[0].Delta.Content; d != nil && *d != "" {
				content.WriteString(*d)
				pieces++
			}
		}
		if content.String() != sbody {
			t.Errorf("content = %q, want %q", content.String(), sbody)
		}
		if pieces != DefaultChunks {
			t.Errorf("%d pieces, want %d", pieces, DefaultChunks)
		}
	})
	t.Run("completions", func(t *testing.T) {
		cbody := `{"model":"m","prompt":"say \"hi\""}`
		_, b := do(t, ts, "POST", "/v1/completions", cbody, HeaderEcho, "true")
		if got := path(t, decode(t, b), "choices", 0, "text"); got != cbody {
			t.Errorf("text = %q", got)
		}
	})
}

func TestErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		setup      func(s *Server)
		hdr        []string
		status     int
		typ, code  string
		retryAfter string
	}{
		{"queued 429", func(s *Server) { s.Enqueue(Behavior{Status: 429, RetryAfter: "1"}) }, nil, 429, "requests", "rate_limit_exceeded", "1"},
		{"header 503", nil, []string{HeaderStatus, "503", HeaderRetryAfter, "7"}, 503, "server_error", "service_unavailable", "7"},
		{"script 500", func(s *Server) { s.Script("m", Behavior{Status: 500}) }, nil, 500, "server_error", "server_error", ""},
		{"default script 401", func(s *Server) { s.Script("", Behavior{Status: 401}) }, nil, 401, "invalid_request_error", "invalid_api_key", ""},
		{"header beats script", func(s *Server) { s.Script("m", Behavior{Status: 500}) }, []string{HeaderStatus, "400"}, 400, "invalid_request_error", "", ""},
		{"queue beats header", func(s *Server) { s.Enqueue(Behavior{Status: 502}) }, []string{HeaderStatus, "400"}, 502, "server_error", "server_error", ""},
		{"model script beats default", func(s *Server) { s.Script("", Behavior{Status: 500}); s.Script("m", Behavior{}) }, nil, 200, "", "", ""},
		{"bad header", nil, []string{HeaderTTFT, "soon"}, 400, "invalid_request_error", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ts := newTestServer(t, Options{})
			if tt.setup != nil {
				tt.setup(s)
			}
			resp, b := do(t, ts, "POST", "/v1/chat/completions", `{"model":"m","messages":[]}`, tt.hdr...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
			}
			if tt.status == 200 {
				return
			}
			m := decode(t, b)
			if msg, _ := path(t, m, "error", "message").(string); msg == "" {
				t.Errorf("empty message")
			}
			if got := path(t, m, "error", "type"); got != tt.typ {
				t.Errorf("type = %v, want %s", got, tt.typ)
			}
			wantCode := any(tt.code)
			if tt.code == "" {
				wantCode = nil
			}
			if got := path(t, m, "error", "code"); got != wantCode {
				t.Errorf("code = %v, want %v", got, wantCode)
			}
			if _, ok := m["error"].(map[string]any)["param"]; !ok {
				t.Errorf("missing param")
			}
			// One-shot: the next request is answered normally.
			if resp, _ := do(t, ts, "POST", "/v1/chat/completions", `{"model":"x","messages":[]}`); strings.HasPrefix(tt.name, "queue") && resp.StatusCode != 200 {
				t.Errorf("queued behaviour not consumed: %d", resp.StatusCode)
			}
		})
	}
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{})
	tests := []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/v1/chat/completions", `{"model":`, 400},
		{"POST", "/v1/chat/completions", `[1,2]`, 400},
		{"POST", "/v1/chat/completions", `{"messages":[]}`, 400},
		{"POST", "/v1/embeddings", `{"model":"m"}`, 400},
		{"POST", "/v1/embeddings", `{"model":"m","input":"x","encoding_format":"hex"}`, 400},
		{"POST", "/v1/nope", `{}`, 404},
		{"GET", "/v1/chat/completions", "", 405},
		{"POST", "/v1/models", "", 405},
		{"GET", "/v1/models/unknown", "", 404},
	}
	for _, tt := range tests {
		resp, b := do(t, ts, tt.method, tt.path, tt.body)
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s %s: status %d, want %d", tt.method, tt.path, tt.body, resp.StatusCode, tt.status)
			continue
		}
		if _, ok := decode(t, b)["error"].(map[string]any); !ok {
			t.Errorf("%s %s: no error envelope: %s", tt.method, tt.path, b)
		}
	}
	// Early rejections (malformed body, missing model, models requests) do
	// not consume the queue.
	s.Enqueue(Behavior{Status: 500})
	do(t, ts, "POST", "/v1/chat/completions", `{"model":`)
	do(t, ts, "POST", "/v1/chat/completions", `{}`)
	do(t, ts, "GET", "/v1/models", "")
	if resp, _ := do(t, ts, "POST", "/v1/chat/completions", `{"model":"m"}`); resp.StatusCode != 500 {
		t.Errorf("status %d, want the queued 500", resp.StatusCode)
	}
}

func TestGarbage(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{})
	resp, b := do(t, ts, "POST", "/v1/chat/completions", `{"model":"m","stream":true}`, HeaderGarbage, "1")
	if resp.StatusCode != 200 || json.Valid(b) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("status %d, content-type %q, body %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
}

func TestFailAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		path, body    string
		failAfter     int
		wantDelivered int
	}{
		{"chat", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[]}`, 2, 2},
		{"chat beyond answer", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[]}`, 99, 5},
		{"completions", "/v1/completions", `{"model":"m","stream":true,"prompt":"x"}`, 1, 1},
		{"responses", "/v1/responses", `{"model":"m","stream":true,"input":"x"}`, 3, 3},
		{"non-stream", "/v1/chat/completions", `{"model":"m","messages":[]}`, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, ts := newTestServer(t, Options{})
			s.Script("m", Behavior{FailAfter: tt.failAfter})
			resp, err := send(context.Background(), ts, "POST", tt.path, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil {
				t.Fatalf("body read without error: %s", b)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Logf("read error: %v", err)
			}
			if strings.Contains(string(b), "[DONE]") || strings.Contains(string(b), "response.completed") {
				t.Errorf("stream completed: %s", b)
			}
			events, _ := readSSE(strings.NewReader(string(b)))
			delivered := 0
			for _, ev := range events {
				switch {
				case ev.Event != "":
					if ev.Event == "response.output_text.delta" {
						delivered++
					}
				case strings.Contains(ev.Data, `"content":"`) && !strings.Contains(ev.Data, `"content":""`),
					strings.Contains(ev.Data, `"text":"`) && !strings.Contains(ev.Data, `"text":""`):
					delivered++
				}
			}
			if delivered != tt.wantDelivered {
				t.Errorf("%d content chunks delivered, want %d:\n%s", delivered, tt.wantDelivered, b)
			}
		})
	}
}

func TestHangCancelled(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{})
	s.Script("slow", Behavior{Hang: true})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		resp, err := send(ctx, ts, "POST", "/v1/chat/completions", `{"model":"slow","messages":[]}`)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, "request in flight", func() bool { return s.Stats().InFlight == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("client error = %v", err)
	}
	waitFor(t, "cancellation recorded", func() bool { st := s.Stats(); return st.Cancelled == 1 && st.InFlight == 0 })
}

func TestStreamCancelledMidway(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{ChunkDelay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, err := send(ctx, ts, "POST", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[]}`)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	if n, err := resp.Body.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "data: ") {
		t.Fatalf("first read: %q %v", buf[:n], err)
	}
	cancel()
	waitFor(t, "cancellation recorded", func() bool { st := s.Stats(); return st.Cancelled == 1 && st.InFlight == 0 })
}

func TestTimings(t *testing.T) {
	t.Parallel()
	const ttft, delay = 40 * time.Millisecond, 15 * time.Millisecond
	var mu sync.Mutex
	var sent []time.Time
	var idx []int
	s, ts := newTestServer(t, Options{TTFT: ttft, ChunkDelay: delay, Chunks: 3, OnChunk: func(i int, at time.Time) {
		mu.Lock()
		idx = append(idx, i)
		sent = append(sent, at)
		mu.Unlock()
	}})
	start := time.Now()
	resp, err := send(context.Background(), ts, "POST", "/v1/chat/completions", `{"model":"m","stream":true,"messages":[]}`)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < ttft {
		t.Errorf("headers after %v, want >= %v", d, ttft)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
		t.Errorf("stream: %s", b)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(idx, []int{0, 1, 2}) {
		t.Fatalf("OnChunk indexes = %v", idx)
	}
	for i := 1; i < len(sent); i++ {
		if d := sent[i].Sub(sent[i-1]); d < delay {
			t.Errorf("chunk %d sent %v after previous, want >= %v", i, d, delay)
		}
	}

	// Behaviour override from header.
	s.Script("", Behavior{})
	start = time.Now()
	resp, body := do(t, ts, "POST", "/v1/chat/completions", `{"model":"m","messages":[]}`, HeaderTTFT, "1ms", HeaderChunks, "2")
	if d := time.Since(start); resp.StatusCode != 200 || d >= ttft {
		t.Errorf("header TTFT ignored: %v", d)
	}
	if got := path(t, decode(t, body), "choices", 0, "message", "content"); got != "Hello from" {
		t.Errorf("content = %v", got)
	}
}

func TestCompletions(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{})
	body := `{"model":"gpt-3.5-turbo-instruct","prompt":"Say this is a test","max_tokens":4,"n":2}`
	_, b := do(t, ts, "POST", "/v1/completions", body)
	m := decode(t, b)
	if m["object"] != "text_completion" || !strings.HasPrefix(m["id"].(string), "cmpl-") || m["model"] != "gpt-3.5-turbo-instruct" {
		t.Errorf("head = %v %v %v", m["object"], m["id"], m["model"])
	}
	for i := range 2 {
		if got := path(t, m, "choices", i, "text"); got != "Hello from fakellm word3" {
			t.Errorf("text = %v", got)
		}
		if path(t, m, "choices", i, "index") != float64(i) || path(t, m, "choices", i, "finish_reason") != "length" || path(t, m, "choices", i, "logprobs") != nil {
			t.Errorf("choice %d = %v", i, path(t, m, "choices", i))
		}
	}
	if path(t, m, "usage", "prompt_tokens") != 5.0 || path(t, m, "usage", "completion_tokens") != 8.0 || path(t, m, "usage", "total_tokens") != 13.0 {
		t.Errorf("usage = %v", m["usage"])
	}

	resp, b := do(t, ts, "POST", "/completions", `{"model":"m","prompt":"x","stream":true,"stream_options":{"include_usage":true}}`)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("content-type %q", resp.Header.Get("Content-Type"))
	}
	events, _ := readSSE(strings.NewReader(string(b)))
	if len(events) != 5+1+1+1 || events[len(events)-1].Data != "[DONE]" {
		t.Fatalf("events: %v", events)
	}
	var text strings.Builder
	for _, ev := range events[:5] {
		c := decode(t, []byte(ev.Data))
		if c["object"] != "text_completion" || path(t, c, "choices", 0, "finish_reason") != nil || c["usage"] != nil {
			t.Errorf("chunk = %s", ev.Data)
		}
		text.WriteString(path(t, c, "choices", 0, "text").(string))
	}
	if text.String() != "Hello from fakellm word3 word4" {
		t.Errorf("text = %q", text.String())
	}
	if got := path(t, decode(t, []byte(events[5].Data)), "choices", 0, "finish_reason"); got != "stop" {
		t.Errorf("finish = %v", got)
	}
	u := decode(t, []byte(events[6].Data))
	if len(u["choices"].([]any)) != 0 || path(t, u, "usage", "completion_tokens") != 5.0 {
		t.Errorf("usage chunk = %s", events[6].Data)
	}
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

func TestEmbed(t *testing.T) {
	t.Parallel()
	a := Embed("The cat sat on the mat", 0)
	if len(a) != DefaultDimensions {
		t.Fatalf("len = %d", len(a))
	}
	if !slices.Equal(a, Embed("the CAT sat, on the mat!", 64)) {
		t.Error("not deterministic / case and punctuation sensitive")
	}
	if n := cosine(a, a); math.Abs(n-1) > 1e-6 {
		t.Errorf("not normalised: %v", n)
	}
	near := cosine(a, Embed("a cat sat on a mat", 64))
	far := cosine(a, Embed("quantum chromodynamics lecture", 64))
	if near <= far || near < 0.5 {
		t.Errorf("similarity: near %v far %v", near, far)
	}
	if z := Embed("  ...  ", 8); slices.ContainsFunc(z, func(f float32) bool { return f != 0 }) {
		t.Errorf("no words: %v", z)
	}
}

func TestEmbeddings(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{})
	type embResp struct {
		Object string `json:"object"`
		Data   []struct {
			Object    string          `json:"object"`
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Model string `json:"model"`
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}
	tests := []struct {
		name, body string
		texts      []string
		dims       int
		base64     bool
	}{
		{"string", `{"model":"e","input":"hello world"}`, []string{"hello world"}, 64, false},
		{"array", `{"model":"e","input":["hello world","bye"],"dimensions":16}`, []string{"hello world", "bye"}, 16, false},
		{"tokens", `{"model":"e","input":[12,34,56]}`, []string{"12 34 56"}, 64, false},
		{"token arrays", `{"model":"e","input":[[1,2],[3]]}`, []string{"1 2", "3"}, 64, false},
		{"base64", `{"model":"e","input":["a b c"],"encoding_format":"base64","dimensions":8}`, []string{"a b c"}, 8, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := do(t, ts, "POST", "/v1/embeddings", tt.body)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			var r embResp
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if r.Object != "list" || r.Model != "e" || len(r.Data) != len(tt.texts) {
				t.Fatalf("response = %s", b)
			}
			want := CountPromptTokens([]byte(tt.body))
			if r.Usage.PromptTokens != want || r.Usage.TotalTokens != want {
				t.Errorf("usage = %+v, want %d", r.Usage, want)
			}
			for i, d := range r.Data {
				if d.Object != "embedding" || d.Index != i {
					t.Errorf("item %d: %+v", i, d)
				}
				var vec []float32
				if tt.base64 {
					var s string
					if err := json.Unmarshal(d.Embedding, &s); err != nil {
						t.Fatal(err)
					}
					raw, err := base64.StdEncoding.DecodeString(s)
					if err != nil {
						t.Fatal(err)
					}
					for j := 0; j+4 <= len(raw); j += 4 {
						vec = append(vec, math.Float32frombits(binary.LittleEndian.Uint32(raw[j:])))
					}
				} else if err := json.Unmarshal(d.Embedding, &vec); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(vec, Embed(tt.texts[i], tt.dims)) {
					t.Errorf("item %d: vector differs from Embed(%q, %d)", i, tt.texts[i], tt.dims)
				}
			}
		})
	}
	if got := s.Stats().Requests["/v1/embeddings"]; got != len(tests) {
		t.Errorf("requests = %d", got)
	}
}

func TestResponses(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{Chunks: 3})
	body := `{"model":"gpt-4.1","instructions":"be brief","input":[{"role":"user","content":[{"type":"input_text","text":"hi there"}]}]}`
	wantIn := CountPromptTokens([]byte(body))

	t.Run("non-stream", func(t *testing.T) {
		_, b := do(t, ts, "POST", "/v1/responses", body)
		m := decode(t, b)
		if !strings.HasPrefix(m["id"].(string), "resp_") || m["object"] != "response" || m["status"] != "completed" || m["model"] != "gpt-4.1" {
			t.Errorf("head: %v %v %v %v", m["id"], m["object"], m["status"], m["model"])
		}
		item := path(t, m, "output", 0)
		if path(t, item, "type") != "message" || path(t, item, "role") != "assistant" || path(t, item, "status") != "completed" {
			t.Errorf("item = %v", item)
		}
		if !strings.HasPrefix(path(t, item, "id").(string), "msg_") {
			t.Errorf("item id = %v", path(t, item, "id"))
		}
		if path(t, item, "content", 0, "type") != "output_text" || path(t, item, "content", 0, "text") != "Hello from fakellm" {
			t.Errorf("content = %v", path(t, item, "content"))
		}
		if a, ok := path(t, item, "content", 0, "annotations").([]any); !ok || len(a) != 0 {
			t.Errorf("annotations = %v", path(t, item, "content", 0, "annotations"))
		}
		u := m["usage"]
		if path(t, u, "input_tokens") != float64(wantIn) || path(t, u, "output_tokens") != 3.0 || path(t, u, "total_tokens") != float64(wantIn+3) ||
			path(t, u, "input_tokens_details", "cached_tokens") != 0.0 || path(t, u, "output_tokens_details", "reasoning_tokens") != 0.0 {
			t.Errorf("usage = %v", u)
		}
	})

	t.Run("stream", func(t *testing.T) {
		resp, b := do(t, ts, "POST", "/v1/responses", strings.Replace(body, "{", `{"stream":true,`, 1))
		if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("content-type %q", resp.Header.Get("Content-Type"))
		}
		events, err := readSSE(strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
			"response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
			"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}
		var got []string
		var deltas strings.Builder
		for i, ev := range events {
			got = append(got, ev.Event)
			m := decode(t, []byte(ev.Data))
			if m["type"] != ev.Event || m["sequence_number"] != float64(i) {
				t.Errorf("event %d: type %v seq %v", i, m["type"], m["sequence_number"])
			}
			if ev.Event == "response.output_text.delta" {
				deltas.WriteString(m["delta"].(string))
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("events:\n%v\nwant\n%v", got, want)
		}
		created := decode(t, []byte(events[0].Data))
		if path(t, created, "response", "status") != "in_progress" || path(t, created, "response", "usage") != nil {
			t.Errorf("created = %s", events[0].Data)
		}
		done := decode(t, []byte(events[len(events)-1].Data))
		if path(t, done, "response", "status") != "completed" || path(t, done, "response", "usage", "output_tokens") != 3.0 ||
			path(t, done, "response", "usage", "input_tokens") != float64(wantIn) {
			t.Errorf("completed = %s", events[len(events)-1].Data)
		}
		text := path(t, done, "response", "output", 0, "content", 0, "text")
		if text != deltas.String() || text != "Hello from fakellm" {
			t.Errorf("text %q, deltas %q", text, deltas.String())
		}
		if strings.Contains(string(b), "[DONE]") {
			t.Error("responses stream must not end with [DONE]")
		}
	})

	t.Run("tool call stream", func(t *testing.T) {
		tb := `{"model":"m","stream":true,"input":"weather?","tools":[{"type":"function","name":"lookup","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}]}`
		_, b := do(t, ts, "POST", "/v1/responses", tb, HeaderToolCall, "1")
		events, _ := readSSE(strings.NewReader(string(b)))
		var args strings.Builder
		var types []string
		for _, ev := range events {
			types = append(types, ev.Event)
			if ev.Event == "response.function_call_arguments.delta" {
				args.WriteString(decode(t, []byte(ev.Data))["delta"].(string))
			}
		}
		if args.String() != `{"q":"Paris"}` {
			t.Errorf("arguments = %q (events %v)", args.String(), types)
		}
		done := decode(t, []byte(events[len(events)-1].Data))
		item := path(t, done, "response", "output", 0)
		if path(t, item, "type") != "function_call" || path(t, item, "name") != "lookup" || path(t, item, "arguments") != args.String() {
			t.Errorf("item = %v", item)
		}
		if tools := path(t, done, "response", "tools").([]any); len(tools) != 1 {
			t.Errorf("tools = %v", tools)
		}
	})

	t.Run("incomplete", func(t *testing.T) {
		_, b := do(t, ts, "POST", "/v1/responses", `{"model":"m","input":"x","max_output_tokens":1}`)
		m := decode(t, b)
		if m["status"] != "incomplete" || path(t, m, "incomplete_details", "reason") != "max_output_tokens" || path(t, m, "output", 0, "content", 0, "text") != "Hello" {
			t.Errorf("response = %s", b)
		}
	})
}

func TestAzureAndPrefixes(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{})
	s.Script("my-deployment", Behavior{Chunks: 2})
	const uri = "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
	resp, b := do(t, ts, "POST", uri, `{"messages":[{"role":"user","content":"hi"}]}`, "api-key", "azure-secret")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	m := decode(t, b)
	if m["model"] != "my-deployment" || path(t, m, "choices", 0, "message", "content") != "Hello from" {
		t.Errorf("response = %s", b)
	}
	for _, p := range []string{
		"/openai/deployments/my-deployment/embeddings?api-version=2024-10-21",
		"/openai/deployments/d/completions?api-version=2024-10-21",
		"/chat/completions", "/openai/v1/chat/completions", "/embeddings", "/responses",
	} {
		body := `{"model":"m","input":"x","prompt":"x","messages":[]}`
		if resp, b := do(t, ts, "POST", p, body); resp.StatusCode != 200 {
			t.Errorf("%s: status %d: %s", p, resp.StatusCode, b)
		}
	}
	for _, p := range []string{"/openai/deployments/d/responses", "/openai/deployments//chat/completions"} {
		if resp, _ := do(t, ts, "POST", p, `{"model":"m"}`); resp.StatusCode != 404 {
			t.Errorf("%s: status %d", p, resp.StatusCode)
		}
	}
	st := s.Stats()
	if st.Paths[0] != uri || st.Headers[0].Get("Api-Key") != "azure-secret" {
		t.Errorf("recorded %q %v", st.Paths[0], st.Headers[0])
	}
}

func TestModels(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{})
	s.Script("zeta", Behavior{})
	s.Script("alpha", Behavior{})
	s.Script("", Behavior{})
	for _, p := range []string{"/v1/models", "/models"} {
		_, b := do(t, ts, "GET", p, "")
		var list struct {
			Object string
			Data   []modelObject
		}
		if err := json.Unmarshal(b, &list); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, d := range list.Data {
			ids = append(ids, d.ID)
			if d.Object != "model" || d.Created == 0 || d.OwnedBy == "" {
				t.Errorf("model = %+v", d)
			}
		}
		if list.Object != "list" || !slices.Equal(ids, []string{"alpha", DefaultModel, "zeta"}) {
			t.Errorf("%s: %s", p, b)
		}
	}
	_, b := do(t, ts, "GET", "/v1/models/zeta", "")
	if got := compactJSON(t, string(b)); got != `{"id":"zeta","object":"model","created":1700000000,"owned_by":"fakellm"}` {
		t.Errorf("model = %s", got)
	}
}

func TestStatsAndReset(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{})
	for i := range historySize + 5 {
		body := `{"model":"m","messages":[],"i":` + strconv.Itoa(i) + `}`
		do(t, ts, "POST", "/v1/chat/completions?i="+strconv.Itoa(i), body, "Authorization", "Bearer key-"+strconv.Itoa(i))
	}
	do(t, ts, "GET", "/v1/models", "")
	do(t, ts, "GET", statsPath, "") // not recorded
	st := s.Stats()
	if st.Total != historySize+6 || st.Requests["/v1/chat/completions"] != historySize+5 || st.Requests["/v1/models"] != 1 || st.InFlight != 0 {
		t.Errorf("stats = total %d requests %v inflight %d", st.Total, st.Requests, st.InFlight)
	}
	if len(st.Bodies) != historySize || len(st.Headers) != historySize || len(st.Paths) != historySize {
		t.Fatalf("history lengths %d %d %d", len(st.Bodies), len(st.Headers), len(st.Paths))
	}
	// Oldest kept is request #6, newest the models request.
	if !strings.Contains(string(st.Bodies[0]), `"i":6}`) || st.Paths[0] != "/v1/chat/completions?i=6" || st.Headers[0].Get("Authorization") != "Bearer key-6" {
		t.Errorf("oldest = %s %s %v", st.Bodies[0], st.Paths[0], st.Headers[0])
	}
	if st.Paths[historySize-1] != "/v1/models" {
		t.Errorf("newest = %s", st.Paths[historySize-1])
	}

	resp, b := do(t, ts, "GET", statsPath, "")
	if m := decode(t, b); resp.StatusCode != 200 || m["total"] != float64(historySize+6) {
		t.Errorf("stats endpoint: %s", b)
	}

	s.Script("m", Behavior{Status: 500})
	s.Enqueue(Behavior{Status: 500})
	s.Reset()
	if st := s.Stats(); st.Total != 0 || len(st.Requests) != 0 || len(st.Bodies) != 0 {
		t.Errorf("after reset: %+v", st)
	}
	if resp, _ := do(t, ts, "POST", "/v1/chat/completions", `{"model":"m"}`); resp.StatusCode != 200 {
		t.Errorf("scripts/queue survived reset: %d", resp.StatusCode)
	}
}

func TestConcurrentQueue(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{})
	const n = 20
	for range n / 2 {
		s.Enqueue(Behavior{Status: 500})
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range n {
		wg.Go(func() {
			resp, err := send(context.Background(), ts, "POST", "/v1/chat/completions", `{"model":"m","stream":true}`)
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[500] != n/2 || codes[200] != n/2 {
		t.Errorf("codes = %v", codes)
	}
}

func TestSplitEven(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "a", "hello world", "héllo wörld 🎉🎉🎉", strings.Repeat("x", 101)} {
		for n := 1; n <= 7; n++ {
			p := splitEven(s, n)
			if strings.Join(p, "") != s || len(p) > max(n, 1) {
				t.Errorf("splitEven(%q, %d) = %q", s, n, p)
			}
			for _, piece := range p {
				if !json.Valid(appendJSONString(nil, piece)) || strings.ContainsRune(piece, '\uFFFD') {
					t.Errorf("splitEven(%q, %d): piece %q cuts a rune", s, n, piece)
				}
			}
		}
	}
}

func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "q\"b\\s/", "\x00\x01\x1f\n\r\t", "ünï 🎉 \u2028", "bad\xffutf8"} {
		var got string
		if err := json.Unmarshal(appendJSONString(nil, s), &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if got != want {
			t.Errorf("round trip %q = %q", s, got)
		}
	}
}

// flushRecorder is a minimal ResponseWriter for allocation benchmarks.
type flushRecorder struct{ h http.Header }

func (f *flushRecorder) Header() http.Header         { return f.h }
func (f *flushRecorder) Write(p []byte) (int, error) { return len(p), nil }
func (f *flushRecorder) WriteHeader(int)             {}
func (f *flushRecorder) Flush()                      {}

func benchmarkServe(b *testing.B, opts Options, body string) {
	s := New(opts)
	w := &flushRecorder{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest("POST", "/v1/chat/completions", strings.NewReader(body))
		clear(w.h)
		s.ServeHTTP(w, r)
	}
}

func BenchmarkChatStream(b *testing.B) {
	benchmarkServe(b, Options{Chunks: 100}, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
}

func BenchmarkChatJSON(b *testing.B) {
	benchmarkServe(b, Options{Chunks: 100}, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
}

func TestRateLimitWindow(t *testing.T) {
	s := New(Options{RateLimit: &RateLimit{Requests: 2, Window: 300 * time.Millisecond}})
	ts := httptest.NewServer(s)
	defer ts.Close()
	chat := func() *http.Response {
		resp, err := http.Post(ts.URL+"/v1/chat/completions", "application/json",
			strings.NewReader(`{"model":"m","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for i, want := range []string{"1", "0"} {
		resp := chat()
		if resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Remaining-Requests") != want || resp.Header.Get("X-Ratelimit-Limit-Requests") != "2" {
			t.Fatalf("request %d: %d remaining %q", i, resp.StatusCode, resp.Header.Get("X-Ratelimit-Remaining-Requests"))
		}
	}
	resp := chat()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("3rd request: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if d, err := time.ParseDuration(resp.Header.Get("X-Ratelimit-Reset-Requests")); err != nil || d <= 0 || d > 300*time.Millisecond {
		t.Fatalf("reset %q", resp.Header.Get("X-Ratelimit-Reset-Requests"))
	}
	time.Sleep(350 * time.Millisecond)
	if resp := chat(); resp.StatusCode != 200 {
		t.Fatalf("after the window: %d", resp.StatusCode)
	}
	if s.RateLimited() != 1 || len(s.Arrivals()) != 4 || MaxInWindow(s.Arrivals(), 300*time.Millisecond) != 3 {
		t.Fatalf("refused %d arrivals %d max %d", s.RateLimited(), len(s.Arrivals()), MaxInWindow(s.Arrivals(), 300*time.Millisecond))
	}
}
