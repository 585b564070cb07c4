package fakellm

import (
	"encoding/json"
	"strings"
	"testing"
)

const cohereAuth = "Authorization"

func TestCohereAuth(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{})
	for _, hdr := range [][]string{nil, {cohereAuth, "Bearer "}, {cohereAuth, "Basic abc"}} {
		resp, b := do(t, ts, "POST", "/v2/chat", `{"model":"command-r","messages":[]}`, hdr...)
		if resp.StatusCode != 401 {
			t.Fatalf("%v: status %d", hdr, resp.StatusCode)
		}
		m := decode(t, b)
		if m["message"] != "no api key supplied" || m["id"] == nil || m["error"] != nil {
			t.Errorf("%v: body %s", hdr, b)
		}
	}
	resp, b := do(t, ts, "GET", "/v2/chat", "", cohereAuth, "Bearer k")
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" || decode(t, b)["message"] == nil {
		t.Errorf("GET: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, ts, "POST", "/v2/chat", `{"messages":[]}`, cohereAuth, "Bearer k")
	if resp.StatusCode != 400 || !strings.Contains(decode(t, b)["message"].(string), "model") {
		t.Errorf("no model: %d %s", resp.StatusCode, b)
	}
	resp, b = do(t, ts, "POST", "/v2/chat", `{`, cohereAuth, "Bearer k")
	if resp.StatusCode != 400 {
		t.Errorf("bad JSON: %d %s", resp.StatusCode, b)
	}
}

func TestCohereChatJSON(t *testing.T) {
	t.Parallel()
	s, ts := newTestServer(t, Options{})
	body := `{"model":"command-r","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hello there"}]}]}`
	resp, b := do(t, ts, "POST", "/v2/chat", body, cohereAuth, "Bearer k")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var got struct {
		ID           string `json:"id"`
		FinishReason string `json:"finish_reason"`
		Message      struct {
			Role    string `json:"role"`
			Content []struct{ Type, Text string }
		}
		Usage struct {
			BilledUnits struct {
				InputTokens  int `json:"input_tokens"`
				OutputTokens int `json:"output_tokens"`
			} `json:"billed_units"`
			Tokens struct {
				InputTokens  int `json:"input_tokens"`
				OutputTokens int `json:"output_tokens"`
			}
		}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.ID) != 36 || got.FinishReason != "COMPLETE" || got.Message.Role != "assistant" ||
		len(got.Message.Content) != 1 || got.Message.Content[0].Type != "text" ||
		got.Message.Content[0].Text != "Hello from fakellm word3 word4" {
		t.Errorf("answer: %s", b)
	}
	want := CountPromptTokens([]byte(body))
	if want != 3+2+3+2 || got.Usage.Tokens.InputTokens != want || got.Usage.BilledUnits.InputTokens != want ||
		got.Usage.Tokens.OutputTokens != 5 || got.Usage.BilledUnits.OutputTokens != 5 {
		t.Errorf("usage (want %d in): %s", want, b)
	}
	if st := s.Stats(); st.Requests["/v2/chat"] != 1 {
		t.Errorf("stats: %v", st.Requests)
	}

	resp, b = do(t, ts, "POST", "/v2/chat", `{"model":"m","max_tokens":2,"messages":[]}`, cohereAuth, "Bearer k")
	m := decode(t, b)
	if resp.StatusCode != 200 || m["finish_reason"] != "MAX_TOKENS" || path(t, m, "message", "content", 0, "text") != "Hello from" {
		t.Errorf("max_tokens: %s", b)
	}
}

func TestCohereChatToolCallJSON(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{})
	body := `{"model":"m","messages":[{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}}}}}]}`
	_, b := do(t, ts, "POST", "/v2/chat", body, cohereAuth, "Bearer k", HeaderToolCall, "1")
	m := decode(t, b)
	if m["finish_reason"] != "TOOL_CALL" || path(t, m, "message", "tool_plan") == "" {
		t.Fatalf("tool call: %s", b)
	}
	tc := path(t, m, "message", "tool_calls", 0).(map[string]any)
	if !strings.HasPrefix(tc["id"].(string), "get_weather_") || tc["type"] != "function" ||
		path(t, tc, "function", "name") != "get_weather" || path(t, tc, "function", "arguments") != `{"city":"Paris","days":1}` {
		t.Errorf("tool call: %v", tc)
	}
}

func cohereStream(t *testing.T, body string, hdr ...string) []sseEvent {
	t.Helper()
	_, ts := newTestServer(t, Options{})
	resp, b := do(t, ts, "POST", "/v2/chat", body, append([]string{cohereAuth, "Bearer k"}, hdr...)...)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	events, err := readSSE(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		var d struct{ Type string }
		if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || d.Type != ev.Event {
			t.Fatalf("event %q data %s (%v)", ev.Event, ev.Data, err)
		}
	}
	return events
}

func eventNames(events []sseEvent) string {
	names := make([]string, len(events))
	for i, ev := range events {
		names[i] = ev.Event
	}
	return strings.Join(names, " ")
}

func TestCohereChatStream(t *testing.T) {
	t.Parallel()
	events := cohereStream(t, `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}`, HeaderChunks, "3")
	if got := eventNames(events); got != "message-start content-start content-delta content-delta content-delta content-end message-end" {
		t.Fatalf("events: %s", got)
	}
	var text strings.Builder
	for _, ev := range events[2:5] {
		var d struct {
			Index int
			Delta struct {
				Message struct{ Content struct{ Text string } }
			}
		}
		_ = json.Unmarshal([]byte(ev.Data), &d)
		text.WriteString(d.Delta.Message.Content.Text)
	}
	if text.String() != "Hello from fakellm" {
		t.Errorf("text %q", text.String())
	}
	start := decode(t, []byte(events[0].Data))
	if len(start["id"].(string)) != 36 || path(t, start, "delta", "message", "role") != "assistant" {
		t.Errorf("message-start: %s", events[0].Data)
	}
	end := decode(t, []byte(events[6].Data))
	if path(t, end, "delta", "finish_reason") != "COMPLETE" ||
		path(t, end, "delta", "usage", "tokens", "input_tokens") != float64(4) ||
		path(t, end, "delta", "usage", "billed_units", "output_tokens") != float64(3) {
		t.Errorf("message-end: %s", events[6].Data)
	}
}

func TestCohereChatStreamToolCall(t *testing.T) {
	t.Parallel()
	events := cohereStream(t, `{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"q":{"type":"string"}}}}}]}`,
		HeaderToolCall, "1", HeaderChunks, "4")
	if got := eventNames(events); got != "message-start tool-plan-delta tool-call-start tool-call-delta tool-call-delta tool-call-delta tool-call-delta tool-call-end message-end" {
		t.Fatalf("events: %s", got)
	}
	start := decode(t, []byte(events[2].Data))
	if path(t, start, "delta", "message", "tool_calls", "function", "name") != "lookup" ||
		!strings.HasPrefix(path(t, start, "delta", "message", "tool_calls", "id").(string), "lookup_") {
		t.Errorf("tool-call-start: %s", events[2].Data)
	}
	var args strings.Builder
	for _, ev := range events[3:7] {
		args.WriteString(path(t, decode(t, []byte(ev.Data)), "delta", "message", "tool_calls", "function", "arguments").(string))
	}
	if args.String() != `{"q":"Paris"}` {
		t.Errorf("arguments %q", args.String())
	}
	if path(t, decode(t, []byte(events[8].Data)), "delta", "finish_reason") != "TOOL_CALL" {
		t.Errorf("message-end: %s", events[8].Data)
	}
}

func TestCohereEchoAndErrors(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{})
	body := `{"model":"m","messages":[{"role":"user","content":"x\"y"}]}`
	_, b := do(t, ts, "POST", "/v2/chat", body, cohereAuth, "Bearer k", HeaderEcho, "1")
	if got := path(t, decode(t, b), "message", "content", 0, "text"); got != body {
		t.Errorf("echo %q", got)
	}
	resp, b := do(t, ts, "POST", "/v2/chat", body, cohereAuth, "Bearer k", HeaderStatus, "429", HeaderRetryAfter, "3")
	m := decode(t, b)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "3" || m["message"] == nil || m["id"] == nil || m["error"] != nil {
		t.Errorf("429: %d %v %s", resp.StatusCode, resp.Header, b)
	}
	resp, b = do(t, ts, "POST", "/v2/embed", `{"model":"e"}`, cohereAuth, "Bearer k", HeaderStatus, "503")
	if resp.StatusCode != 503 || decode(t, b)["message"] == nil {
		t.Errorf("503: %d %s", resp.StatusCode, b)
	}
}

func TestCohereFailAfter(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{})
	resp, err := send(t.Context(), ts, "POST", "/v2/chat", `{"model":"m","stream":true,"messages":[]}`, cohereAuth, "Bearer k", HeaderFailAfter, "2")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events, err := readSSE(resp.Body)
	if err == nil {
		t.Errorf("stream not cut")
	}
	if got := eventNames(events); got != "message-start content-start content-delta content-delta" {
		t.Errorf("events: %s", got)
	}
}

func TestCohereEmbed(t *testing.T) {
	t.Parallel()
	_, ts := newTestServer(t, Options{})
	resp, b := do(t, ts, "POST", "/v2/embed", `{"model":"embed-v4.0","texts":["hello world","the cat sat"],"input_type":"search_document","embedding_types":["float"],"output_dimension":8}`,
		cohereAuth, "Bearer k")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	var got struct {
		ID         string
		Embeddings struct{ Float [][]float32 }
		Texts      []string
		Meta       struct {
			BilledUnits struct {
				InputTokens int `json:"input_tokens"`
			} `json:"billed_units"`
		}
		ResponseType string `json:"response_type"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Embeddings.Float) != 2 || got.Meta.BilledUnits.InputTokens != 5 || got.ResponseType != "embeddings_by_type" || len(got.Texts) != 2 {
		t.Fatalf("embed: %s", b)
	}
	for i, text := range []string{"hello world", "the cat sat"} {
		want := Embed(text, 8)
		for j := range want {
			if got.Embeddings.Float[i][j] != want[j] {
				t.Fatalf("vector %d = %v, want %v", i, got.Embeddings.Float[i], want)
			}
		}
	}
	_, b = do(t, ts, "POST", "/v2/embed", `{"model":"e","texts":["a"],"input_type":"search_query"}`, cohereAuth, "Bearer k")
	if n := len(path(t, decode(t, b), "embeddings", "float", 0).([]any)); n != DefaultDimensions {
		t.Errorf("default dims %d", n)
	}
	for _, bad := range []string{
		`{"model":"e","texts":[],"input_type":"search_query"}`,
		`{"model":"e","texts":["a"]}`,
		`{"model":"e","texts":["a"],"input_type":"search_query","embedding_types":["int8"]}`,
	} {
		resp, b := do(t, ts, "POST", "/v2/embed", bad, cohereAuth, "Bearer k")
		if resp.StatusCode != 400 || decode(t, b)["message"] == nil {
			t.Errorf("%s: %d %s", bad, resp.StatusCode, b)
		}
	}
}
