package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// Fixtures follow the examples of
// https://docs.anthropic.com/en/api/messages-streaming.

const sseText = `event: message_start
data: {"type": "message_start", "message": {"id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY", "type": "message", "role": "assistant", "content": [], "model": "claude-sonnet-4-5", "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 25, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 7, "output_tokens": 1}}}

event: content_block_start
data: {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}

event: content_block_delta
data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!\n\"quoted\" \u00e9"}}

event: content_block_stop
data: {"type": "content_block_stop", "index": 0}

event: message_delta
data: {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence":null}, "usage": {"output_tokens": 15}}

event: message_stop
data: {"type": "message_stop"}

`

const sseTool = `event: message_start
data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-opus-4-1","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants the weather."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay, let me check."}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco, CA\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: content_block_start
data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_02","name":"get_time","input":{}}}

event: content_block_stop
data: {"type":"content_block_stop","index":3}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

`

const created = 1700000000

// newStream reads Anthropic events from r through the decoder.
func newStream(r io.Reader, closer io.Closer, name string, created int64) *provider.SSEStream {
	return provider.NewStream(r, closer, name, NewDecoder(created))
}

// run translates an upstream stream read through r and returns the chunks
// and the final error (nil for a clean io.EOF).
func run(r io.Reader) ([]string, error) {
	s := newStream(r, nil, "anth", created)
	defer s.Close()
	var out []string
	for {
		ev, err := s.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if len(ev.Name) != 0 {
			return out, errors.New("event with a name")
		}
		out = append(out, string(ev.Data))
	}
}

func TestStreamText(t *testing.T) {
	got, err := run(strings.NewReader(sseText))
	if err != nil {
		t.Fatal(err)
	}
	head := `{"id":"chatcmpl-msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","object":"chat.completion.chunk","created":1700000000,"model":"claude-sonnet-4-5","choices":[`
	want := []string{
		head + `{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`,
		head + `{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}`,
		head + `{"index":0,"delta":{"content":"!\n\"quoted\" \u00e9"},"logprobs":null,"finish_reason":null}]}`,
		head + `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`,
		head + `],"usage":{"prompt_tokens":35,"completion_tokens":15,"total_tokens":50,"prompt_tokens_details":{"cached_tokens":7}}}`,
	}
	assertChunks(t, got, want)
	var c struct {
		Choices []struct{ Delta struct{ Content string } }
	}
	if err := json.Unmarshal([]byte(got[2]), &c); err != nil || c.Choices[0].Delta.Content != "!\n\"quoted\" é" {
		t.Errorf("content %+v, %v", c, err)
	}
}

func TestStreamToolUse(t *testing.T) {
	got, err := run(strings.NewReader(sseTool))
	if err != nil {
		t.Fatal(err)
	}
	head := `{"id":"chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U","object":"chat.completion.chunk","created":1700000000,"model":"claude-opus-4-1","choices":[{"index":0,"delta":`
	tail := `,"logprobs":null,"finish_reason":null}]}`
	want := []string{
		head + `{"role":"assistant","content":""}` + tail,
		head + `{"content":"Okay, let me check."}` + tail,
		head + `{"tool_calls":[{"index":0,"id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","type":"function","function":{"name":"get_weather","arguments":""}}]}` + tail,
		head + `{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\":"}}]}` + tail,
		head + `{"tool_calls":[{"index":0,"function":{"arguments":" \"San Francisco, CA\"}"}}]}` + tail,
		head + `{"tool_calls":[{"index":1,"id":"toolu_02","type":"function","function":{"name":"get_time","arguments":""}}]}` + tail,
		head + `{"tool_calls":[{"index":1,"function":{"arguments":"{}"}}]}` + tail,
		head + `{},"logprobs":null,"finish_reason":"tool_calls"}]}`,
		`{"id":"chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U","object":"chat.completion.chunk","created":1700000000,"model":"claude-opus-4-1","choices":[],"usage":{"prompt_tokens":472,"completion_tokens":89,"total_tokens":561,"prompt_tokens_details":{"cached_tokens":0}}}`,
	}
	assertChunks(t, got, want)
}

func assertChunks(t *testing.T, got, want []string) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		var g, w string
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			t.Errorf("chunk %d:\n got %s\nwant %s", i, g, w)
		}
		if g != "" && !json.Valid([]byte(g)) {
			t.Errorf("chunk %d is not valid JSON: %s", i, g)
		}
	}
}

func TestStreamFinishReasons(t *testing.T) {
	for stop, want := range map[string]string{
		`"end_turn"`: "stop", `"stop_sequence"`: "stop", `"pause_turn"`: "stop", `"max_tokens"`: "length",
		`"tool_use"`: "tool_calls", `"refusal"`: "content_filter", `"model_context_window_exceeded"`: "length", `null`: "stop",
	} {
		in := strings.Replace(sseText, `"stop_reason": "end_turn"`, `"stop_reason": `+stop, 1)
		got, err := run(strings.NewReader(in))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(got[3], `"finish_reason":"`+want+`"`) {
			t.Errorf("%s: %s", stop, got[3])
		}
	}
}

func TestStreamErrors(t *testing.T) {
	start := "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"model\":\"m\",\"usage\":{\"input_tokens\":1}}}\n\n"
	blockStart := "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
	delta := "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
	tests := []struct {
		name    string
		in      string
		chunks  int
		kind    provider.Kind
		status  int
		typ     string
		code    string
		started bool
	}{
		{"overloaded mid-stream", start + blockStart + delta + "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
			2, provider.KindStatus, 529, "server_error", "overloaded", true},
		{"rate limit before start", "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":\"slow down\"}}\n\n",
			0, provider.KindStatus, 429, "rate_limit_exceeded", "rate_limit_exceeded", false},
		{"api_error", start + "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"x\"}}\n\n",
			1, provider.KindStatus, 500, "server_error", "api_error", true},
		{"invalid request", start + "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"x\"}}\n\n",
			1, provider.KindStatus, 400, "invalid_request_error", "", true},
		{"cut without message_stop", start + blockStart + delta, 2, provider.KindProtocol, 0, "", "", true},
		{"cut mid-event", start + blockStart + "event: content_block_delta\ndata: {\"type\":\"content_bl", 1, provider.KindProtocol, 0, "", "", true},
		{"empty body", "", 0, provider.KindProtocol, 0, "", "", false},
		{"malformed JSON", start + "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\n\n", 1, provider.KindProtocol, 0, "", "", true},
		{"delta before start", delta, 0, provider.KindProtocol, 0, "", "", false},
		{"delta for unknown block", start + delta, 1, provider.KindProtocol, 0, "", "", true},
		{"double message_start", start + start, 1, provider.KindProtocol, 0, "", "", true},
		{"bad index", start + "data: {\"type\":\"content_block_start\",\"index\":-1,\"content_block\":{\"type\":\"text\"}}\n\n", 1, provider.KindProtocol, 0, "", "", true},
		{"huge index", start + "data: {\"type\":\"content_block_start\",\"index\":99999999999,\"content_block\":{\"type\":\"text\"}}\n\n", 1, provider.KindProtocol, 0, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := run(strings.NewReader(tt.in))
			if len(got) != tt.chunks {
				t.Errorf("%d chunks, want %d: %q", len(got), tt.chunks, got)
			}
			var pe *provider.Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v (%T), want *provider.Error", err, err)
			}
			if pe.Kind != tt.kind || pe.Status != tt.status || pe.Type != tt.typ || pe.Code != tt.code ||
				pe.StreamStarted != tt.started || pe.Provider != "anth" {
				t.Errorf("error %+v", pe)
			}
			if !pe.Retryable() && tt.status != 400 {
				t.Errorf("not retryable: %+v", pe)
			}
		})
	}
}

func TestStreamUnknownEventsAndDeltaUsage(t *testing.T) {
	// Unknown event types are ignored (the API may add some); a
	// message_delta carrying cumulative input counts replaces them.
	in := strings.Replace(sseText, "event: ping\n", "event: some_future_event\ndata: {\"type\":\"some_future_event\"}\n\nevent: ping\n", 1)
	in = strings.Replace(in, `"usage": {"output_tokens": 15}`, `"usage": {"input_tokens": 30, "cache_read_input_tokens": 0, "output_tokens": 15}`, 1)
	in = strings.ReplaceAll(in, "\n", "\r\n") // CRLF line ends are valid SSE
	got, err := run(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || !strings.HasSuffix(got[4], `"usage":{"prompt_tokens":33,"completion_tokens":15,"total_tokens":48,"prompt_tokens_details":{"cached_tokens":0}}}`) {
		t.Errorf("%q", got)
	}
}

func TestStreamAfterEndAndClose(t *testing.T) {
	s := newStream(strings.NewReader(sseText), nil, "anth", created)
	for {
		if _, err := s.Next(); err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			break
		}
	}
	if _, err := s.Next(); err != io.EOF {
		t.Errorf("after EOF: %v", err)
	}
	c := &closeCounter{}
	s2 := newStream(strings.NewReader(sseText), c, "anth", created)
	if err := s2.Close(); err != nil || c.n != 1 {
		t.Errorf("close: %v, %d", err, c.n)
	}
	_ = s2.Close()
	if c.n != 1 {
		t.Errorf("closed %d times", c.n)
	}
	if _, err := s2.Next(); err != io.EOF {
		t.Errorf("Next after Close: %v", err)
	}
}

type closeCounter struct{ n int }

func (c *closeCounter) Close() error { c.n++; return nil }

// stepReader returns at most step bytes per Read, cycling through steps.
type stepReader struct {
	r     io.Reader
	steps []int
	i     int
}

func (s *stepReader) Read(p []byte) (int, error) {
	n := s.steps[s.i%len(s.steps)]
	s.i++
	if n < len(p) {
		p = p[:n]
	}
	return s.r.Read(p)
}

func outcome(chunks []string, err error) string {
	var b strings.Builder
	for _, c := range chunks {
		b.WriteString(c)
		b.WriteByte('\n')
	}
	if err != nil {
		b.WriteString("error: " + err.Error())
		var pe *provider.Error
		if errors.As(err, &pe) {
			b.WriteString(" status=" + strconv.Itoa(pe.Status) + " started=" + strconv.FormatBool(pe.StreamStarted))
		}
	}
	return b.String()
}

// FuzzStream checks that the translation does not depend on how the
// upstream bytes are split across reads, that every chunk is valid JSON and
// that garbage never panics.
func FuzzStream(f *testing.F) {
	f.Add([]byte(sseText), uint8(1), uint8(7))
	f.Add([]byte(sseTool), uint8(3), uint8(2))
	f.Add([]byte(sseText[:len(sseText)/2]), uint8(5), uint8(1))
	f.Add([]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"), uint8(2), uint8(9))
	f.Add([]byte("data: {\"type\":\"message_start\",\"message\":{\"id\":\"a\\\"b\"}}\n\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"n\",\"input\":{\"a\":[1,{\"b\":\"}\"}]}}}\n\n"), uint8(4), uint8(4))
	f.Add([]byte("data: {\"type\":\"message_start\"\n\ndata: [1,2]\n\n: comment\n\n"), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, a, b uint8) {
		want := outcome(run(bytes.NewReader(data)))
		if got := outcome(run(iotest.OneByteReader(bytes.NewReader(data)))); got != want {
			t.Fatalf("one-byte reads differ:\n got %s\nwant %s", got, want)
		}
		steps := []int{int(a%64) + 1, int(b%64) + 1}
		if got := outcome(run(&stepReader{r: bytes.NewReader(data), steps: steps})); got != want {
			t.Fatalf("reads of %v bytes differ:\n got %s\nwant %s", steps, got, want)
		}
		chunks, _ := run(bytes.NewReader(data))
		for _, c := range chunks {
			if !json.Valid([]byte(c)) {
				t.Fatalf("invalid chunk JSON: %s", c)
			}
		}
	})
}

// textStream builds an upstream stream of n text deltas.
func textStream(n int) []byte {
	var b bytes.Buffer
	b.WriteString("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"claude-sonnet-4-5\",\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n")
	b.WriteString("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n")
	for i := range n {
		b.WriteString("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" word")
		b.WriteString(strconv.Itoa(i))
		b.WriteString(" \\\"quoted\\\"\\n\"}}\n\n")
	}
	b.WriteString("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n")
	b.WriteString("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":" + strconv.Itoa(n) + "}}\n\n")
	b.WriteString("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
	return b.Bytes()
}

func drain(s provider.Stream) int {
	n := 0
	for {
		if _, err := s.Next(); err != nil {
			return n
		}
		n++
	}
}

// TestStreamAllocsPerChunk checks that chunks cost no allocation: a stream
// of 1000 deltas allocates as much as one of 10.
func TestStreamAllocsPerChunk(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	measure := func(n int) float64 {
		data := textStream(n)
		r := bytes.NewReader(data)
		return testing.AllocsPerRun(20, func() {
			r.Reset(data)
			s := newStream(r, nil, "anth", created)
			if got := drain(s); got != n+3 {
				t.Fatalf("%d chunks, want %d", got, n+3)
			}
			s.Close()
		})
	}
	small, large := measure(10), measure(1000)
	if perChunk := (large - small) / 990; perChunk > 0.01 {
		t.Errorf("%.3f allocations per chunk (%v for 10 deltas, %v for 1000)", perChunk, small, large)
	}
}

func BenchmarkStream(b *testing.B) {
	const n = 1000
	data := textStream(n)
	r := bytes.NewReader(data)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	chunks := 0
	for b.Loop() {
		r.Reset(data)
		s := newStream(r, nil, "anth", created)
		chunks += drain(s)
		s.Close()
	}
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(chunks), "allocs/chunk")
}
