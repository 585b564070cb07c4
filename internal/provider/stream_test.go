package provider

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// echoDecoder queues each event's data twice, drops "skip", fails on
// "bad" and ends at "stop"; at EOF it queues "end".
type echoDecoder struct{}

func (echoDecoder) Decode(ev sse.Event, q *Events) (bool, error) {
	switch string(ev.Data) {
	case "skip":
		return false, nil
	case "stop":
		return true, nil
	case "bad":
		q.Buf = append(q.Buf, "partial"...)
		q.End()
		return false, Protocol("bad event")
	}
	for range 2 {
		q.Buf = append(q.Buf, ev.Data...)
		q.End()
	}
	return false, nil
}

func (echoDecoder) End(q *Events) error {
	q.Buf = append(q.Buf, "end"...)
	q.End()
	return nil
}

// gated hands out its input one part per Read, and nothing more until the
// test opens it again.
type gated struct{ parts []string }

func (g *gated) Read(p []byte) (int, error) {
	if len(g.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(p, g.parts[0])
	g.parts = g.parts[1:]
	return n, nil
}

func TestSSEStreamQueueAndPending(t *testing.T) {
	in := &gated{parts: []string{"data: a\n\ndata: skip\n\n", "data: b\n\ndata: stop\n\ndata: never\n\n"}}
	s := NewStream(in, nil, "p", echoDecoder{})
	defer s.Close()
	next := func(want string) {
		t.Helper()
		ev, err := s.Next()
		if err != nil || string(ev.Data) != want {
			t.Fatalf("Next: %q %v, want %q", ev.Data, err, want)
		}
	}
	next("a")
	if !s.Pending() {
		t.Error("second copy of a not pending")
	}
	next("a")
	// Only "skip" is buffered: decoding it ahead yields nothing, so the
	// next event is not ready.
	if s.Pending() {
		t.Error("pending after a buffered event that yields nothing")
	}
	next("b")
	next("b")
	if !s.Pending() { // the decoder ended the stream: Next will not wait
		t.Error("end not pending")
	}
	if _, err := s.Next(); err != io.EOF {
		t.Fatalf("after stop: %v", err)
	}
}

func TestSSEStreamEnds(t *testing.T) {
	read := func(in string) ([]string, error) {
		s := NewStream(strings.NewReader(in), nil, "p", echoDecoder{})
		defer s.Close()
		var out []string
		for {
			ev, err := s.Next()
			if err != nil {
				return out, err
			}
			out = append(out, string(ev.Data))
		}
	}
	if got, err := read("data: a\n\n"); err != io.EOF || strings.Join(got, ",") != "a,a,end" {
		t.Errorf("clean end: %q %v", got, err)
	}
	for in, msg := range map[string]string{
		"data: a\n\ndata: bad\n\n": "bad event",
		"data: a\n\ndata: cu":      "stream ended unexpectedly",
	} {
		got, err := read(in)
		var pe *Error
		if !errors.As(err, &pe) || pe.Kind != KindProtocol || pe.Message != msg || pe.Provider != "p" || !pe.StreamStarted ||
			strings.Join(got, ",") != "a,a" {
			t.Errorf("%q: %q %#v", in, got, err)
		}
	}
}
