package fakellm

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
)

// anthHdr are the headers the Messages API requires.
var anthHdr = []string{"X-Api-Key", "sk-ant-test", "Anthropic-Version", "2023-06-01"}

const anthBody = `{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"be brief","messages":[{"role":"user","content":"hello there friend"}]}`

// ids replaces generated ids by stable placeholders.
var ids = regexp.MustCompile(`"(msg|toolu|req)_[0-9a-f]{24}"`)

func stableIDs(s string) string { return ids.ReplaceAllString(s, `"${1}_X"`) }

func TestAnthropicNonStream(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{})
	tests := []struct {
		name, body, want string
	}{
		{"text", anthBody,
			// input_tokens: message 3 + 3 words, system 2 words.
			`{"id":"msg_X","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello from fakellm word3 word4"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":8,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":5}}`},
		{"max_tokens truncates", `{"model":"m","max_tokens":2,"messages":[{"role":"user","content":[{"type":"text","text":"a b"}]}]}`,
			`{"id":"msg_X","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"Hello from"}],"stop_reason":"max_tokens","stop_sequence":null,"usage":{"input_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":2}}`},
		{"cached system", `{"model":"m","max_tokens":9,"system":[{"type":"text","text":"long shared context","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":"hi"}]}`,
			`{"id":"msg_X","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"Hello from fakellm word3 word4"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":7,"cache_creation_input_tokens":0,"cache_read_input_tokens":10,"output_tokens":5}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := do(t, ts, "POST", "/v1/messages", tt.body, anthHdr...)
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") || resp.Header.Get("Request-Id") == "" {
				t.Fatalf("status %d, headers %v: %s", resp.StatusCode, resp.Header, b)
			}
			if got := stableIDs(string(b)); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestAnthropicStream(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{Chunks: 3})
	body := strings.Replace(anthBody, `"max_tokens"`, `"stream":true,"max_tokens"`, 1)
	resp, b := do(t, ts, "POST", "/v1/messages", body, anthHdr...)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	want := `event: message_start
data: {"type":"message_start","message":{"id":"msg_X","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":8,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" from"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" fakellm"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}

event: message_stop
data: {"type":"message_stop"}

`
	if got := stableIDs(string(b)); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestAnthropicToolCall(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{})
	tools := `"tools":[{"type":"web_search_20250305","name":"web_search"},{"name":"get_weather","description":"d","input_schema":{"type":"object","properties":{"location":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}}}}]`
	s.Script("m", Behavior{ToolCall: true, Chunks: 3})
	resp, b := do(t, ts, "POST", "/v1/messages", `{"model":"m","max_tokens":5,`+tools+`,"messages":[{"role":"user","content":"w?"}]}`, anthHdr...)
	want := `{"id":"msg_X","type":"message","role":"assistant","model":"m","content":[{"type":"tool_use","id":"toolu_X","name":"get_weather","input":{"location":"Paris","unit":"celsius"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":4,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":3}}`
	if got := stableIDs(string(b)); resp.StatusCode != 200 || got != want {
		t.Errorf("status %d\ngot  %s\nwant %s", resp.StatusCode, got, want)
	}

	resp, b = do(t, ts, "POST", "/v1/messages", `{"model":"m","stream":true,"max_tokens":5,`+tools+`,"messages":[{"role":"user","content":"w?"}]}`, anthHdr...)
	events, err := readSSE(strings.NewReader(string(b)))
	if err != nil || resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode, err)
	}
	var names []string
	var args strings.Builder
	for _, ev := range events {
		names = append(names, ev.Event)
		if ev.Event == "content_block_delta" {
			m := decode(t, []byte(ev.Data))
			args.WriteString(path(t, m, "delta", "partial_json").(string))
		}
	}
	if got := strings.Join(names, " "); got != "message_start content_block_start ping content_block_delta content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop" {
		t.Errorf("events: %s", got)
	}
	if args.String() != `{"location":"Paris","unit":"celsius"}` {
		t.Errorf("arguments %q", args.String())
	}
	if !strings.Contains(stableIDs(events[1].Data), `"content_block":{"type":"tool_use","id":"toolu_X","name":"get_weather","input":{}}`) ||
		!strings.Contains(events[len(events)-2].Data, `"stop_reason":"tool_use"`) {
		t.Errorf("events: %v", events)
	}
}

func TestAnthropicEcho(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{})
	body := `{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"say \"hi\""}]}`
	_, b := do(t, ts, "POST", "/v1/messages", body, append([]string{HeaderEcho, "1"}, anthHdr...)...)
	if got := path(t, decode(t, b), "content", 0, "text"); got != body {
		t.Errorf("echo %q", got)
	}
}

func TestAnthropicErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		hdr        []string
		setup      func(s *Server)
		status     int
		typ        string
		retryAfter string
	}{
		{"no api key", anthBody, []string{"Anthropic-Version", "2023-06-01"}, nil, 401, "authentication_error", ""},
		{"no version", anthBody, []string{"X-Api-Key", "k"}, nil, 400, "invalid_request_error", ""},
		{"no max_tokens", `{"model":"m","messages":[]}`, anthHdr, nil, 400, "invalid_request_error", ""},
		{"max_tokens 0", `{"model":"m","max_tokens":0,"messages":[]}`, anthHdr, nil, 400, "invalid_request_error", ""},
		{"no model", `{"max_tokens":1,"messages":[]}`, anthHdr, nil, 400, "invalid_request_error", ""},
		{"no messages", `{"model":"m","max_tokens":1}`, anthHdr, nil, 400, "invalid_request_error", ""},
		{"bad JSON", `{"model":`, anthHdr, nil, 400, "invalid_request_error", ""},
		{"overloaded", anthBody, anthHdr, func(s *Server) { s.Enqueue(Behavior{Status: 529, RetryAfter: "2"}) }, 529, "overloaded_error", "2"},
		{"rate limited", anthBody, append([]string{HeaderStatus, "429", HeaderRetryAfter, "5"}, anthHdr...), nil, 429, "rate_limit_error", "5"},
		{"server error", anthBody, anthHdr, func(s *Server) { s.Script("claude-sonnet-4-5", Behavior{Status: 500}) }, 500, "api_error", ""},
		{"not found", anthBody, anthHdr, func(s *Server) { s.Script("", Behavior{Status: 404}) }, 404, "not_found_error", ""},
		{"too large", anthBody, anthHdr, func(s *Server) { s.Enqueue(Behavior{Status: 413}) }, 413, "request_too_large", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ts := newTestServer(t, Options{})
			if tt.setup != nil {
				tt.setup(s)
			}
			resp, b := do(t, ts, "POST", "/v1/messages", tt.body, tt.hdr...)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
			m := decode(t, b)
			if m["type"] != "error" || path(t, m, "error", "type") != tt.typ || path(t, m, "error", "message") == "" {
				t.Errorf("body %s", b)
			}
			if id, _ := m["request_id"].(string); !strings.HasPrefix(id, "req_") || resp.Header.Get("Request-Id") != id {
				t.Errorf("request_id %q, header %q", id, resp.Header.Get("Request-Id"))
			}
		})
	}
	// Early rejections do not consume the queue.
	s, ts := newTestServer(t, Options{})
	s.Enqueue(Behavior{Status: 529})
	do(t, ts, "POST", "/v1/messages", anthBody)
	do(t, ts, "POST", "/v1/messages", `{"model":"m","messages":[]}`, anthHdr...)
	if resp, _ := do(t, ts, "GET", "/v1/messages", "", anthHdr...); resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	if resp, _ := do(t, ts, "POST", "/v1/messages", anthBody, anthHdr...); resp.StatusCode != 529 {
		t.Errorf("status %d, want the queued 529", resp.StatusCode)
	}
}

func TestAnthropicFailAfter(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{})
	s.Script("m", Behavior{FailAfter: 2})
	resp, err := send(context.Background(), ts, "POST", "/v1/messages", `{"model":"m","stream":true,"max_tokens":9,"messages":[]}`, anthHdr...)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("stream read without error: %s", b)
	}
	if n := strings.Count(string(b), `"text_delta"`); n != 2 || strings.Contains(string(b), "message_stop") {
		t.Errorf("%d deltas delivered:\n%s", n, b)
	}
	// Non-stream: half a body, then the cut.
	resp, err = send(context.Background(), ts, "POST", "/v1/messages", `{"model":"m","max_tokens":9,"messages":[]}`, anthHdr...)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("body read without error: %s", b)
	}
}

func TestAnthropicStats(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{})
	do(t, ts, "POST", "/v1/messages", anthBody, anthHdr...)
	st := s.Stats()
	if st.Requests["/v1/messages"] != 1 || st.Headers[0].Get("X-Api-Key") != "sk-ant-test" || string(st.Bodies[0]) != anthBody {
		t.Errorf("stats %+v", st)
	}
}
