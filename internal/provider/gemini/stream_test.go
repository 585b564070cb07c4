package gemini

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// sseOf frames Gemini events as Google's servers do: "data: ...\r\n\r\n".
func sseOf(events ...string) string {
	var sb strings.Builder
	for _, e := range events {
		sb.WriteString("data: " + e + "\r\n\r\n")
	}
	return sb.String()
}

// collect drains a stream.
func collect(s provider.Stream) ([]string, error) {
	defer s.Close()
	var out []string
	for {
		ev, err := s.Next()
		if err != nil {
			return out, err
		}
		if len(ev.Name) != 0 {
			return out, errors.New("named event")
		}
		out = append(out, string(ev.Data))
	}
}

const (
	testSeed    = 99
	testCreated = 1700000000
)

// newStream reads Gemini events from r through the decoder.
func newStream(r io.Reader, closer io.Closer, name, model string, created int64, seed uint64) *provider.SSEStream {
	return provider.NewStream(r, closer, name, newDecoder(model, created, seed))
}

func testStream(r io.Reader) *provider.SSEStream {
	return newStream(r, nil, "gem", "req-model", testCreated, testSeed)
}

// chunk renders an expected chunk of the test stream.
func chunk(id, model, choice string) string {
	return `{"id":"chatcmpl-` + id + `","object":"chat.completion.chunk","created":1700000000,"model":"` + model + `","choices":[` + choice + `]}`
}

func delta(idx int, d, finish string) string {
	f := "null"
	if finish != "" {
		f = `"` + finish + `"`
	}
	return fmt.Sprintf(`{"index":%d,"delta":%s,"logprobs":null,"finish_reason":%s}`, idx, d, f)
}

const roleDelta = `{"role":"assistant","content":""}`

func usageChunk(id, model, usage string) string {
	return `{"id":"chatcmpl-` + id + `","object":"chat.completion.chunk","created":1700000000,"model":"` + model + `","choices":[],"usage":` + usage + `}`
}

func derivedCallID(n uint64) string { return string(appendID(nil, "call_", testSeed, n)) }

// Fixtures written from the reference's GenerateContentResponse and a
// captured alt=sse stream.
var (
	textStream = sseOf(
		`{"candidates": [{"content": {"parts": [{"text": "Hel"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 5,"candidatesTokenCount": 1,"totalTokenCount": 6},"modelVersion": "models/gemini-2.5-flash","responseId": "r1"}`,
		`{"candidates": [{"content": {"parts": [{"text": "thinking...", "thought": true}],"role": "model"},"index": 0}],"modelVersion": "models/gemini-2.5-flash","responseId": "r1"}`,
		`{"candidates": [{"content": {"parts": [{"text": "lo, \"you\"\n"}, {"text": "!"}],"role": "model"},"index": 0}],"modelVersion": "models/gemini-2.5-flash","responseId": "r1"}`,
		`{"candidates": [{"content": {"parts": [{"text": ""}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 5,"candidatesTokenCount": 3,"totalTokenCount": 10,"thoughtsTokenCount": 2,"cachedContentTokenCount": 1},"modelVersion": "models/gemini-2.5-flash","responseId": "r1"}`)
	toolStream = sseOf(
		`{"candidates":[{"content":{"parts":[{"text":"Let me check."}],"role":"model"},"index":0}],"responseId":"r2","modelVersion":"g"}`,
		`{"candidates":[{"content":{"parts":[{"functionCall":{"name":"get_weather","args":{"city": "Paris", "n": [1, 2]}},"thoughtSignature":"c2ln"},{"functionCall":{"id":"x9","name":"get_time","args":{}}}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":9,"totalTokenCount":16},"responseId":"r2","modelVersion":"g"}`)
	multiStream = sseOf(
		`{"candidates":[{"content":{"parts":[{"text":"a"}]},"index":0},{"content":{"parts":[{"text":"b"}]},"index":1}],"responseId":"r3"}`,
		`{"candidates":[{"content":{"parts":[{"text":"c"}]},"finishReason":"STOP","index":0},{"content":{"parts":[{"text":"d"}]},"finishReason":"MAX_TOKENS","index":1}],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":4,"totalTokenCount":5},"responseId":"r3"}`)
	blockedStream = sseOf(`{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":4,"totalTokenCount":4},"modelVersion":"g","responseId":"b"}`)
	cutStream     = sseOf(`{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"responseId":"r4"}`)
	errorStream   = sseOf(`{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"responseId":"r5"}`,
		`{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}`)
)

func TestStream(t *testing.T) {
	usage := `{"prompt_tokens":5,"completion_tokens":5,"total_tokens":10,"prompt_tokens_details":{"cached_tokens":1},"completion_tokens_details":{"reasoning_tokens":2}}`
	cases := []struct {
		name string
		in   string
		want []string
	}{
		{"text", textStream, []string{
			chunk("r1", "gemini-2.5-flash", delta(0, roleDelta, "")),
			chunk("r1", "gemini-2.5-flash", delta(0, `{"content":"Hel"}`, "")),
			chunk("r1", "gemini-2.5-flash", delta(0, `{"content":"lo, \"you\"\n!"}`, "")),
			chunk("r1", "gemini-2.5-flash", delta(0, `{}`, "stop")),
			usageChunk("r1", "gemini-2.5-flash", usage),
		}},
		{"tool calls", toolStream, []string{
			chunk("r2", "g", delta(0, roleDelta, "")),
			chunk("r2", "g", delta(0, `{"content":"Let me check."}`, "")),
			chunk("r2", "g", delta(0, `{"tool_calls":[{"index":0,"id":"`+derivedCallID(1)+`","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\",\"n\":[1,2]}"},"extra_content":{"google":{"thought_signature":"c2ln"}}}]}`, "")),
			chunk("r2", "g", delta(0, `{"tool_calls":[{"index":1,"id":"x9","type":"function","function":{"name":"get_time","arguments":"{}"}}]}`, "")),
			chunk("r2", "g", delta(0, `{}`, "tool_calls")),
			usageChunk("r2", "g", `{"prompt_tokens":7,"completion_tokens":9,"total_tokens":16,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}`),
		}},
		{"candidates", multiStream, []string{
			chunk("r3", "req-model", delta(0, roleDelta, "")),
			chunk("r3", "req-model", delta(0, `{"content":"a"}`, "")),
			chunk("r3", "req-model", delta(1, roleDelta, "")),
			chunk("r3", "req-model", delta(1, `{"content":"b"}`, "")),
			chunk("r3", "req-model", delta(0, `{"content":"c"}`, "")),
			chunk("r3", "req-model", delta(0, `{}`, "stop")),
			chunk("r3", "req-model", delta(1, `{"content":"d"}`, "")),
			chunk("r3", "req-model", delta(1, `{}`, "length")),
			usageChunk("r3", "req-model", `{"prompt_tokens":1,"completion_tokens":4,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}`),
		}},
		{"blocked prompt", blockedStream, []string{
			chunk("b", "g", delta(0, roleDelta, "")),
			chunk("b", "g", delta(0, `{}`, "content_filter")),
			usageChunk("b", "g", `{"prompt_tokens":4,"completion_tokens":0,"total_tokens":4,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}`),
		}},
		{"LF framing, comments, no usage", ": keep-alive\n\ndata: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},\"finishReason\":\"SAFETY\"}],\"responseId\":\"r6\"}\n\n", []string{
			chunk("r6", "req-model", delta(0, roleDelta, "")),
			chunk("r6", "req-model", delta(0, `{"content":"x"}`, "")),
			chunk("r6", "req-model", delta(0, `{}`, "content_filter")),
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := collect(testStream(strings.NewReader(c.in)))
			if err != io.EOF {
				t.Fatalf("end: %v", err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("%d events, want %d:\n%s", len(got), len(c.want), strings.Join(got, "\n"))
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("event %d\n got: %s\nwant: %s", i, got[i], c.want[i])
				}
			}
			// what the gateway reads from the stream
			var u openai.Usage
			for _, ev := range got {
				if v := gjson.Get(ev, "usage"); v.IsObject() {
					u = openai.ParseUsage(v)
				}
			}
			if c.name == "text" && (u.InputTokens != 5 || u.OutputTokens != 5 || u.CachedTokens != 1) {
				t.Errorf("usage: %+v", u)
			}
		})
	}
}

func TestStreamFailures(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		events  int // events before the error
		kind    provider.Kind
		status  int
		started bool
	}{
		{"cut before finish", cutStream, 2, provider.KindProtocol, 0, true},
		{"empty", "", 0, provider.KindProtocol, 0, false},
		{"error event", errorStream, 2, provider.KindStatus, 429, true},
		{"first event error", sseOf(`{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}`), 0, provider.KindStatus, 503, false},
		{"error without code", sseOf(`{"error":{"message":"x","status":"INTERNAL"}}`), 0, provider.KindStatus, 502, false},
		{"malformed JSON", sseOf(`{"candidates":[{"content":{"parts":[{"text":"a"}]},"index":0}]}`, `{"candidates":[`), 2, provider.KindProtocol, 0, true},
		{"not an object", sseOf(`[1,2]`), 0, provider.KindProtocol, 0, false},
		{"truncated event", sseOf(`{"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP","index":0}]}`) + `data: {"usageMetadata":{}}`, 3, provider.KindProtocol, 0, true},
		{"bad candidate index", sseOf(`{"candidates":[{"content":{"parts":[{"text":"a"}]},"index":1000}]}`), 0, provider.KindProtocol, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := testStream(strings.NewReader(c.in))
			got, err := collect(s)
			if len(got) != c.events {
				t.Errorf("%d events before the error, want %d: %v", len(got), c.events, got)
			}
			pe, ok := err.(*provider.Error)
			if !ok {
				t.Fatalf("error %T %v", err, err)
			}
			if pe.Kind != c.kind || pe.Status != c.status || pe.StreamStarted != c.started || pe.Provider != "gem" {
				t.Errorf("error %+v", *pe)
			}
			if c.status == 429 && (pe.Type != openai.TypeRateLimit || pe.Code != "resource_exhausted" || !pe.Retryable()) {
				t.Errorf("429 mapping %+v", *pe)
			}
			// sticky
			if _, err2 := s.Next(); err2 != err && !(c.kind == provider.KindProtocol && err2 != nil) {
				t.Errorf("second Next: %v", err2)
			}
		})
	}
}

type closeCounter struct{ n int }

func (c *closeCounter) Close() error { c.n++; return nil }

func TestStreamClose(t *testing.T) {
	var cc closeCounter
	s := newStream(strings.NewReader(textStream), &cc, "gem", "m", 1, 1)
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil || cc.n != 1 {
		t.Fatalf("close: %v, %d", err, cc.n)
	}
	if err := s.Close(); err != nil || cc.n != 1 {
		t.Fatalf("second close: %v, %d", err, cc.n)
	}
	if _, err := s.Next(); err != io.EOF {
		t.Fatalf("Next after Close: %v", err)
	}
}

// stepReader returns at most step bytes per Read.
type stepReader struct {
	data []byte
	step int
}

func (r *stepReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(r.step, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func describe(err error) string {
	if pe, ok := err.(*provider.Error); ok {
		return fmt.Sprintf("%+v", *pe)
	}
	return fmt.Sprint(err)
}

func FuzzStream(f *testing.F) {
	for _, s := range []string{textStream, toolStream, multiStream, blockedStream, cutStream, errorStream,
		"data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\xff\u2028\"}]},\"finishReason\":\"STOP\"}]}\n\n",
		"data: {\"a\":1\r\ndata: }\r\n\r\n", ":\n\nevent: x\ndata: {}\n\n", "data: null\n\n"} {
		f.Add([]byte(s), uint8(1))
		f.Add([]byte(s), uint8(13))
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		want, werr := collect(testStream(bytes.NewReader(data)))
		for _, ev := range want {
			if !gjson.Valid(ev) {
				t.Fatalf("invalid JSON event %q", ev)
			}
		}
		for _, r := range []io.Reader{iotest.OneByteReader(bytes.NewReader(data)), &stepReader{data, int(step)%64 + 1}} {
			got, gerr := collect(testStream(r))
			if describe(gerr) != describe(werr) {
				t.Fatalf("error %s, want %s", describe(gerr), describe(werr))
			}
			if len(got) != len(want) {
				t.Fatalf("%d events, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("event %d: %s, want %s", i, got[i], want[i])
				}
			}
		}
	})
}

// benchStream is a stream of n text events and a final one.
func benchStream(n int) []byte {
	var sb strings.Builder
	for i := range n {
		fmt.Fprintf(&sb, "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \" word%d and \\\"more\\\"\"}],\"role\": \"model\"},\"index\": 0}],"+
			"\"usageMetadata\": {\"promptTokenCount\": 12,\"candidatesTokenCount\": %d,\"totalTokenCount\": %d},"+
			"\"modelVersion\": \"gemini-2.5-flash\",\"responseId\": \"AdVRaMmDCYekqtsPrb_-iAw\"}\r\n\r\n", i, i+1, i+13)
	}
	sb.WriteString(`data: {"candidates": [{"content": {"parts": [{"text": "."}],"role": "model"},"finishReason": "STOP","index": 0}],` +
		`"usageMetadata": {"promptTokenCount": 12,"candidatesTokenCount": 99,"totalTokenCount": 111},"modelVersion": "gemini-2.5-flash","responseId": "AdVRaMmDCYekqtsPrb_-iAw"}` + "\r\n\r\n")
	return []byte(sb.String())
}

func drain(data []byte, r *bytes.Reader) int {
	r.Reset(data)
	s := newStream(r, nil, "gem", "m", 1, 1)
	n := 0
	for {
		if _, err := s.Next(); err != nil {
			if err != io.EOF {
				panic(err)
			}
			break
		}
		n++
	}
	s.Close()
	return n
}

func BenchmarkStream(b *testing.B) {
	const events = 200
	data := benchStream(events)
	r := bytes.NewReader(data)
	chunks := drain(data, r)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for b.Loop() {
		drain(data, r)
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	total := float64(b.N) * float64(chunks)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/total, "allocs/chunk")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/total, "ns/chunk")
}

// TestStreamAllocsPerChunk checks that a warmed-up stream allocates nothing
// per chunk: a long stream costs the same allocations as a short one.
func TestStreamAllocsPerChunk(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	short, long := benchStream(10), benchStream(1010)
	r := bytes.NewReader(nil)
	n := drain(long, r) - drain(short, r)
	a := testing.AllocsPerRun(20, func() { drain(short, r) })
	b := testing.AllocsPerRun(20, func() { drain(long, r) })
	perChunk := (b - a) / float64(n)
	t.Logf("allocs per stream: %v (short), %v (long); per chunk: %.4f", a, b, perChunk)
	if perChunk > 0.01 {
		t.Errorf("%.4f allocations per chunk", perChunk)
	}
}
