package sse

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

type ev struct{ name, data string }

func readAll(t testing.TB, r io.Reader) ([]ev, error) {
	rd := NewReader(r, 0)
	var out []ev
	for {
		e, err := rd.Next()
		if err != nil {
			if err == io.EOF {
				return out, nil
			}
			return out, err
		}
		out = append(out, ev{string(e.Name), string(e.Data)})
	}
}

func TestReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []ev
		err  error
	}{
		{"openai", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []ev{{"", `{"a":1}`}, {"", "[DONE]"}}, nil},
		{"crlf", "event: x\r\ndata: y\r\n\r\n", []ev{{"x", "y"}}, nil},
		{"multiline", "data: a\ndata: b\n\n", []ev{{"", "a\nb"}}, nil},
		{"no space", "data:a\n\n", []ev{{"", "a"}}, nil},
		{"comments and ids", ": ping\n\nid: 7\n\nevent: message_start\ndata: {}\n\n", []ev{{"message_start", "{}"}}, nil},
		{"bom", "\xEF\xBB\xBFdata: 1\n\n", []ev{{"", "1"}}, nil},
		{"cut mid event", "data: 1\n\ndata: 2", []ev{{"", "1"}}, io.ErrUnexpectedEOF},
		{"cut after line", "data: 1\n\ndata: 2\n", []ev{{"", "1"}}, io.ErrUnexpectedEOF},
		{"empty", "", nil, nil},
		{"unknown field", "foo: bar\ndata: x\n\n", []ev{{"", "x"}}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(t, strings.NewReader(tc.in))
			if !errors.Is(err, tc.err) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("event %d = %q, want %q", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestLongLine(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	got, err := readAll(t, strings.NewReader("data: "+long+"\n\n"))
	if err != nil || len(got) != 1 || got[0].data != long {
		t.Fatalf("long line: err=%v n=%d", err, len(got))
	}
	rd := NewReader(strings.NewReader("data: "+long+"\n\n"), 1000)
	if _, err := rd.Next(); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
}

func TestAppendEventRoundTrip(t *testing.T) {
	var buf []byte
	buf = AppendEvent(buf, []byte("response.created"), []byte("{\"a\":\n1}"))
	buf = AppendEvent(buf, nil, Done)
	got, err := readAll(t, bytes.NewReader(buf))
	if err != nil || len(got) != 2 || got[0] != (ev{"response.created", "{\"a\":\n1}"}) || got[1].data != "[DONE]" {
		t.Fatalf("round trip: %q %v", got, err)
	}
}

// FuzzReader checks that how the bytes are split into reads never changes the
// parsed events, and that garbage never panics.
func FuzzReader(f *testing.F) {
	f.Add([]byte("data: {\"x\":\"h\xc3\xa9llo\"}\n\nevent: e\r\ndata: 2\r\n\r\n"), uint8(3))
	f.Add([]byte(": c\n\ndata: [DONE]\n\n"), uint8(1))
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		want, werr := readAll(t, bytes.NewReader(in))
		got, gerr := readAll(t, iotest.OneByteReader(bytes.NewReader(in)))
		if (werr == nil) != (gerr == nil) || len(got) != len(want) {
			t.Fatalf("one-byte reads differ: %q %v vs %q %v", got, gerr, want, werr)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("event %d differs", i)
			}
		}
		if step == 0 {
			step = 1
		}
		got2, _ := readAll(t, &stepReader{b: in, n: int(step)})
		if len(got2) != len(want) {
			t.Fatalf("step reads differ")
		}
	})
}

type stepReader struct {
	b []byte
	n int
}

func (s *stepReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := min(s.n, len(p), len(s.b))
	copy(p, s.b[:n])
	s.b = s.b[n:]
	return n, nil
}

func BenchmarkReader(b *testing.B) {
	chunk := `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hello"},"finish_reason":null}]}` + "\n\n"
	in := []byte(strings.Repeat(chunk, 100))
	rd := NewReader(bytes.NewReader(in), 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		rd.Reset(bytes.NewReader(in))
		for {
			if _, err := rd.Next(); err != nil {
				break
			}
		}
	}
}

func TestHasEvent(t *testing.T) {
	pr, pw := io.Pipe()
	rd := NewReader(pr, 0)
	go func() {
		pw.Write([]byte("data: 1\n\ndata: 2\n\n: ping\n\ndata: 3"))
		pw.Write([]byte("\n\n"))
		pw.Close()
	}()
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	if !rd.HasEvent() {
		t.Fatal("event 2 is buffered")
	}
	if _, err := rd.Next(); err != nil {
		t.Fatal(err)
	}
	if rd.HasEvent() {
		t.Fatal("event 3 is incomplete in the buffer: Next would block")
	}
}

// A reader reused after a huge event does not keep its size.
func TestResetDropsHugeBuffers(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	rd := NewReader(strings.NewReader("data: "+huge+"\n\ndata: small\n\n"), 0)
	if ev, err := rd.Next(); err != nil || len(ev.Data) != len(huge) {
		t.Fatalf("huge event: %d bytes, %v", len(ev.Data), err)
	}
	rd.Reset(strings.NewReader("data: next\n\n"))
	if cap(rd.data) > keepBufferSize || cap(rd.line) > keepBufferSize {
		t.Fatalf("kept %d and %d bytes", cap(rd.data), cap(rd.line))
	}
	if ev, err := rd.Next(); err != nil || string(ev.Data) != "next" {
		t.Fatalf("after Reset: %q, %v", ev.Data, err)
	}
}
