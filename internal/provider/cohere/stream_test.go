package cohere

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

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// Fixtures in the wire format of https://docs.cohere.com/reference/chat-stream.
const (
	textStream = "event: message-start\n" +
		`data: {"id":"29f14a5a-11de-4cae-9800-25e4747408ea","type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}` + "\n\n" +
		"event: content-start\n" +
		`data: {"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}` + "\n\n" +
		"event: content-delta\n" +
		`data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hello"}}},"logprobs":null}` + "\n\n" +
		"event: content-delta\n" +
		`data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":" \"world\"\n"}}}}` + "\n\n" +
		"event: content-end\n" +
		`data: {"type":"content-end","index":0}` + "\n\n" +
		"event: message-end\n" +
		`data: {"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":{"billed_units":{"input_tokens":3,"output_tokens":2},"tokens":{"input_tokens":69,"output_tokens":2}}}}` + "\n\n"

	toolStream = "event: message-start\n" +
		`data: {"id":"c1","type":"message-start","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[],"citations":[]}}}` + "\n\n" +
		"event: tool-plan-delta\n" +
		`data: {"type":"tool-plan-delta","delta":{"message":{"tool_plan":"I will check."}}}` + "\n\n" +
		"event: tool-call-start\n" +
		`data: {"type":"tool-call-start","index":0,"delta":{"message":{"tool_calls":{"id":"get_weather_1","type":"function","function":{"name":"get_weather","arguments":""}}}}}` + "\n\n" +
		"event: tool-call-delta\n" +
		`data: {"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"{\"city\":"}}}}}` + "\n\n" +
		"event: tool-call-delta\n" +
		`data: {"type":"tool-call-delta","index":0,"delta":{"message":{"tool_calls":{"function":{"arguments":"\"Paris\"}"}}}}}` + "\n\n" +
		"event: tool-call-end\n" +
		`data: {"type":"tool-call-end","index":0}` + "\n\n" +
		"event: tool-call-start\n" +
		`data: {"type":"tool-call-start","index":1,"delta":{"message":{"tool_calls":{"id":"get_time_2","type":"function","function":{"name":"get_time","arguments":"{}"}}}}}` + "\n\n" +
		"event: tool-call-end\n" +
		`data: {"type":"tool-call-end","index":1}` + "\n\n" +
		"event: message-end\n" +
		`data: {"type":"message-end","delta":{"finish_reason":"TOOL_CALL","usage":{"billed_units":{"input_tokens":20,"output_tokens":8},"tokens":{"input_tokens":900,"output_tokens":30}}}}` + "\n\n"

	// No "event:" lines but a data-less ping, CRLF line ends, a comment,
	// citations and no usage.
	bareStream = ": keep-alive\r\n\r\nevent: ping\r\n\r\n" +
		`data: {"type":"message-start","id":"b2"}` + "\r\n\r\n" +
		`data: {"type":"content-delta","delta":{"message":{"content":{"text":"Paris"}}}}` + "\r\n\r\n" +
		`data: {"type":"citation-start","index":0,"delta":{"message":{"citations":{"start":0,"end":5,"text":"Paris","sources":[]}}}}` + "\r\n\r\n" +
		`data: {"type":"citation-end","index":0}` + "\r\n\r\n" +
		`data: {"type":"message-end","delta":{"finish_reason":"MAX_TOKENS"}}` + "\r\n\r\n" +
		"data: this is never read\n\n"
)

const head = `{"id":"29f14a5a-11de-4cae-9800-25e4747408ea","object":"chat.completion.chunk","created":1700000000,"model":"command-r","choices":[`

// collect reads a translated stream to its end; the last entry is "EOF"
// or "ERR <error> started=<StreamStarted>".
func collect(r io.Reader, limit int) []string {
	s := newStream(r, nil, "co", "command-r", 1700000000, "chatcmpl-fallback")
	defer s.Close()
	var out []string
	for range limit {
		ev, err := s.Next()
		if err == io.EOF {
			return append(out, "EOF")
		}
		if err != nil {
			started := false
			var pe *provider.Error
			if errors.As(err, &pe) {
				started = pe.StreamStarted
			}
			return append(out, fmt.Sprintf("ERR %v started=%v", err, started))
		}
		if len(ev.Name) != 0 {
			out = append(out, "NAMED "+string(ev.Name))
		}
		out = append(out, string(ev.Data))
	}
	return append(out, "LIMIT")
}

func TestStreamText(t *testing.T) {
	t.Parallel()
	got := collect(strings.NewReader(textStream), 100)
	want := []string{
		head + `{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`,
		head + `{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}`,
		head + `{"index":0,"delta":{"content":" \"world\"\n"},"logprobs":null,"finish_reason":null}]}`,
		head + `{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`,
		head + `],"usage":{"prompt_tokens":69,"completion_tokens":2,"total_tokens":71}}`,
		"EOF",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestStreamToolCalls(t *testing.T) {
	t.Parallel()
	got := collect(strings.NewReader(toolStream), 100)
	deltas := []string{
		`{"role":"assistant","content":""}`,
		`{"tool_calls":[{"index":0,"id":"get_weather_1","type":"function","function":{"name":"get_weather","arguments":""}}]}`,
		`{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}`,
		`{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}`,
		`{"tool_calls":[{"index":1,"id":"get_time_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]}`,
		`{}`,
	}
	if len(got) != len(deltas)+2 {
		t.Fatalf("got %d events:\n%s", len(got), strings.Join(got, "\n"))
	}
	for i, d := range deltas {
		jsonEqual(t, []byte(gjson.Get(got[i], "choices.0.delta").Raw), d)
		if id := gjson.Get(got[i], "id").Str; id != "c1" {
			t.Errorf("chunk %d id %q", i, id)
		}
	}
	if f := gjson.Get(got[5], "choices.0.finish_reason").Str; f != "tool_calls" {
		t.Errorf("finish %q", f)
	}
	jsonEqual(t, []byte(gjson.Get(got[6], "usage").Raw), `{"prompt_tokens":900,"completion_tokens":30,"total_tokens":930}`)
	if got[7] != "EOF" {
		t.Errorf("end %q", got[7])
	}
}

func TestStreamBare(t *testing.T) {
	t.Parallel()
	got := collect(strings.NewReader(bareStream), 100)
	if len(got) != 4 || got[3] != "EOF" {
		t.Fatalf("got:\n%s", strings.Join(got, "\n"))
	}
	if gjson.Get(got[1], "choices.0.delta.content").Str != "Paris" || gjson.Get(got[0], "id").Str != "b2" ||
		gjson.Get(got[2], "choices.0.finish_reason").Str != "length" {
		t.Errorf("got:\n%s", strings.Join(got, "\n"))
	}
}

func TestStreamErrors(t *testing.T) {
	t.Parallel()
	start := "event: message-start\n" + `data: {"id":"e1","type":"message-start"}` + "\n\n"
	delta := "event: content-delta\n" + `data: {"type":"content-delta","delta":{"message":{"content":{"text":"Hi"}}}}` + "\n\n"
	tests := []struct {
		name, in string
		events   int // chunks before the error
		err      string
	}{
		{"empty", "", 0, "ERR provider co: invalid response: stream ended before message-end started=false"},
		{"eof before message-end", start + delta, 2, "ERR provider co: invalid response: stream ended before message-end started=true"},
		{"cut inside an event", start + "event: content-delta\ndata: {\"type\":\"con", 1,
			"ERR provider co: invalid response: stream ended unexpectedly started=true"},
		{"not JSON", start + "data: <html>\n\n", 1, "ERR provider co: invalid response: event data is not JSON started=true"},
		{"not an object", "data: [1,2]\n\n", 0, "ERR provider co: invalid response: event data is not an object started=false"},
		{"delta before start", start + "event: tool-call-delta\n" + `data: {"type":"tool-call-delta","delta":{"message":{"tool_calls":{"function":{"arguments":"{"}}}}}` + "\n\n",
			1, "ERR provider co: invalid response: tool-call-delta before tool-call-start started=true"},
		{"generation error", start + delta + "event: message-end\n" + `data: {"type":"message-end","delta":{"finish_reason":"ERROR","error":"model overloaded"}}` + "\n\n",
			2, "ERR provider co: HTTP 502: Cohere failed to generate the answer: model overloaded started=true"},
		{"timeout", start + "event: message-end\n" + `data: {"type":"message-end","delta":{"finish_reason":"TIMEOUT"}}` + "\n\n",
			1, "ERR provider co: HTTP 504: Cohere timed out generating the answer (finish_reason TIMEOUT). started=true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := collect(strings.NewReader(tt.in), 100)
			if len(got) != tt.events+1 || got[tt.events] != tt.err {
				t.Errorf("got:\n%s\nwant %d events then %s", strings.Join(got, "\n"), tt.events, tt.err)
			}
		})
	}

	// The error is sticky and typed.
	s := newStream(strings.NewReader(start+delta), nil, "co", "m", 1, "f")
	for range 2 {
		if _, err := s.Next(); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		_, err := s.Next()
		var pe *provider.Error
		if !errors.As(err, &pe) || pe.Kind != provider.KindProtocol || !pe.StreamStarted || pe.Provider != "co" || !pe.Retryable() {
			t.Fatalf("error %#v", err)
		}
		if ce := pe.ClientError(); ce.Status != 502 {
			t.Errorf("client error %+v", ce)
		}
	}
	s.Close()
}

// newStream reads Cohere events from r through the decoder; closer
// releases the upstream.
func newStream(r io.Reader, closer func() error, name, model string, created int64, fallbackID string) *provider.SSEStream {
	var c io.Closer
	if closer != nil {
		c = closerFunc(closer)
	}
	return provider.NewStream(r, c, name, newDecoder(model, created, fallbackID))
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

func TestStreamNoMessageStart(t *testing.T) {
	t.Parallel()
	in := "event: content-delta\n" + `data: {"type":"content-delta","delta":{"message":{"content":{"text":"Hi"}}}}` + "\n\n" +
		"event: message-end\n" + `data: {"type":"message-end","delta":{"finish_reason":"COMPLETE"}}` + "\n\n"
	got := collect(strings.NewReader(in), 100)
	if len(got) != 4 || got[3] != "EOF" {
		t.Fatalf("got:\n%s", strings.Join(got, "\n"))
	}
	for _, ev := range got[:3] {
		if gjson.Get(ev, "id").Str != "chatcmpl-fallback" {
			t.Errorf("id in %s", ev)
		}
	}
	if gjson.Get(got[0], "choices.0.delta.role").Str != "assistant" || gjson.Get(got[1], "choices.0.delta.content").Str != "Hi" {
		t.Errorf("got:\n%s", strings.Join(got, "\n"))
	}
}

func TestStreamClose(t *testing.T) {
	t.Parallel()
	closed := 0
	s := newStream(strings.NewReader(textStream), func() error { closed++; return nil }, "co", "m", 1, "f")
	if _, err := s.Next(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil || closed != 1 {
		t.Fatalf("second close: %v, closer called %d times", err, closed)
	}
	if _, err := s.Next(); err != io.EOF {
		t.Fatalf("Next after Close: %v", err)
	}
}

// stepReader returns at most step bytes per Read.
type stepReader struct {
	b    []byte
	step int
}

func (r *stepReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), r.step, len(r.b))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

func FuzzStream(f *testing.F) {
	for _, s := range []string{textStream, toolStream, bareStream, "", "data: {}\n\n", "event: message-end\ndata: {\"delta\":{\"finish_reason\":\"ERROR\"}}\n\n",
		textStream[:len(textStream)/2], strings.ReplaceAll(textStream, "\n", "\r\n")} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		const limit = 10000
		want := collect(bytes.NewReader(data), limit)
		for _, ev := range want[:len(want)-1] {
			if !gjson.Valid(ev) {
				t.Fatalf("invalid JSON chunk %q from %q", ev, data)
			}
		}
		if got := collect(iotest.OneByteReader(bytes.NewReader(data)), limit); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("one-byte reads:\n%s\nwhole:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if got := collect(&stepReader{b: data, step: int(step)%64 + 1}, limit); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("step %d reads:\n%s\nwhole:\n%s", int(step)%64+1, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// longStream is a text stream of n content deltas.
func longStream(n int) []byte {
	var b bytes.Buffer
	b.WriteString("event: message-start\n" + `data: {"id":"29f14a5a-11de-4cae-9800-25e4747408ea","type":"message-start","delta":{"message":{"role":"assistant","content":[]}}}` + "\n\n")
	b.WriteString("event: content-start\n" + `data: {"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}` + "\n\n")
	for i := range n {
		// Escapes (\n, \") are the norm in model output and must not cost an
		// allocation either.
		fmt.Fprintf(&b, "event: content-delta\ndata: {\"type\":\"content-delta\",\"index\":0,\"delta\":{\"message\":{\"content\":{\"text\":\" \\\"word%d\\\"\\n\"}}}}\n\n", i)
	}
	b.WriteString("event: content-end\n" + `data: {"type":"content-end","index":0}` + "\n\n")
	b.WriteString("event: message-end\n" + `data: {"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":{"billed_units":{"input_tokens":3,"output_tokens":2},"tokens":{"input_tokens":69,"output_tokens":2}}}}` + "\n\n")
	return b.Bytes()
}

func drain(r io.Reader) int {
	s := newStream(r, nil, "co", "command-r", 1700000000, "f")
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

// TestStreamAllocsPerChunk checks that a warmed-up stream allocates nothing
// per translated chunk: a 1000-chunk stream costs what a 10-chunk one does.
func TestStreamAllocsPerChunk(t *testing.T) {
	short, long := longStream(10), longStream(1010)
	rd := bytes.NewReader(nil)
	measure := func(data []byte) float64 {
		return testing.AllocsPerRun(50, func() { rd.Reset(data); drain(rd) })
	}
	a, b := measure(short), measure(long)
	perChunk := (b - a) / 1000
	t.Logf("allocs per stream: %.1f (10 chunks), %.1f (1010 chunks); per chunk %.4f", a, b, perChunk)
	if perChunk > 0.01 {
		t.Errorf("%.4f allocations per chunk", perChunk)
	}
}

func BenchmarkStream(b *testing.B) {
	const chunks = 100
	data := longStream(chunks)
	rd := bytes.NewReader(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	events := 0
	for b.Loop() {
		rd.Reset(data)
		events += drain(rd)
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(events), "allocs/chunk")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/chunk")
}
