// Package sse reads and writes Server-Sent Events as the HTML Living Standard
// defines them (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
// The reader reuses its buffers: an Event is valid until the next call to
// Next, so a stream costs no allocation per event once warmed up.
package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// Event is one dispatched event. Name is the "event:" field (empty for the
// default "message" type); Data is the "data:" lines joined by '\n'.
type Event struct {
	Name []byte
	Data []byte
	ID   []byte
}

// Done is the payload OpenAI sends as its final stream event.
var Done = []byte("[DONE]")

// IsDone reports whether ev is OpenAI's "data: [DONE]" terminator.
func (ev *Event) IsDone() bool { return len(ev.Name) == 0 && bytes.Equal(ev.Data, Done) }

// ErrTooLarge is returned when one event exceeds the reader's limit.
var ErrTooLarge = errors.New("sse: event too large")

// readBufferSize is the reader's buffer: events of streamed answers are a
// few hundred bytes, and a line longer than the buffer is gathered in a
// scratch slice. It holds a burst of events (a few KiB), so that HasEvent
// sees what one read of the upstream brought and the writer sends it with
// one write and one flush: a 1 KiB buffer cost a flush per KiB.
const readBufferSize = 4 << 10

// DefaultMaxEventSize bounds one event (all its lines) by default.
const DefaultMaxEventSize = 8 << 20

// Reader parses an event stream.
type Reader struct {
	br      *bufio.Reader
	max     int
	line    []byte // scratch for lines longer than the bufio buffer
	name    []byte
	data    []byte
	id      []byte
	hasData bool
	started bool
}

// NewReader returns a Reader over r. maxEvent bounds one event's size
// (0 = DefaultMaxEventSize).
func NewReader(r io.Reader, maxEvent int) *Reader {
	if maxEvent <= 0 {
		maxEvent = DefaultMaxEventSize
	}
	return &Reader{br: bufio.NewReaderSize(r, readBufferSize), max: maxEvent}
}

// keepBufferSize bounds the scratch buffers Reset keeps: one huge event
// must not make every later stream of a pooled reader hold its size.
const keepBufferSize = 16 << 10

// Reset makes the reader read from r, keeping its buffers (those that grew
// past keepBufferSize are dropped).
func (r *Reader) Reset(rd io.Reader) {
	r.br.Reset(rd)
	r.line, r.name, r.data, r.id = keep(r.line), keep(r.name), keep(r.data), keep(r.id)
	r.hasData, r.started = false, false
}

func keep(b []byte) []byte {
	if cap(b) > keepBufferSize {
		return nil
	}
	return b[:0]
}

// Next returns the next event. At the end of the stream it returns io.EOF,
// or io.ErrUnexpectedEOF when the stream ended in the middle of an event.
// Events with neither data nor a name (e.g. a lone "id:") are skipped, as are
// comments.
func (r *Reader) Next() (Event, error) {
	r.name, r.data, r.id = r.name[:0], r.data[:0], r.id[:0]
	r.hasData = false
	pending := false // saw a field of the current event
	for {
		line, err := r.readLine()
		if err != nil {
			if err == io.EOF && pending {
				// The spec discards an incomplete event at EOF; tell the caller
				// the stream was cut rather than pretend it ended cleanly.
				return Event{}, io.ErrUnexpectedEOF
			}
			return Event{}, err
		}
		if len(line) == 0 {
			if r.hasData || len(r.name) > 0 {
				return Event{Name: r.name, Data: r.data, ID: r.id}, nil
			}
			pending = false
			continue
		}
		if line[0] == ':' {
			continue // comment, e.g. ": ping"
		}
		pending = true
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			if r.hasData {
				r.data = append(r.data, '\n')
			}
			if len(r.data)+len(value) > r.max {
				return Event{}, ErrTooLarge
			}
			r.data = append(r.data, value...)
			r.hasData = true
		case "event":
			r.name = append(r.name[:0], value...)
		case "id":
			r.id = append(r.id[:0], value...)
		}
	}
}

// readLine returns the next line without its terminator ("\n" or "\r\n").
// The slice is valid until the next call.
func (r *Reader) readLine() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		r.line = append(r.line[:0], line...)
		for err == bufio.ErrBufferFull {
			if len(r.line) > r.max {
				return nil, ErrTooLarge
			}
			line, err = r.br.ReadSlice('\n')
			r.line = append(r.line, line...)
		}
		line = r.line
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			// A final line without terminator still counts as a line; the
			// event it belongs to is not dispatched (no blank line follows).
			err = nil
		} else {
			return nil, err
		}
	}
	if !r.started {
		r.started = true
		line = bytes.TrimPrefix(line, []byte("\xEF\xBB\xBF")) // optional BOM
	}
	n := len(line)
	if n > 0 && line[n-1] == '\n' {
		n--
	}
	if n > 0 && line[n-1] == '\r' {
		n--
	}
	return line[:n], nil
}

// AppendEvent appends the wire form of an event to dst: an optional
// "event:" line, one "data:" line per line of data, and a blank line.
func AppendEvent(dst []byte, name, data []byte) []byte {
	if len(name) > 0 {
		dst = append(dst, "event: "...)
		dst = append(dst, name...)
		dst = append(dst, '\n')
	}
	for {
		i := bytes.IndexByte(data, '\n')
		dst = append(dst, "data: "...)
		if i < 0 {
			dst = append(dst, data...)
			break
		}
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		data = data[i+1:]
	}
	return append(dst, '\n', '\n')
}

// HasEvent reports whether a complete event is already buffered, so that
// Next will not block on the underlying reader. Writers use it to coalesce
// flushes: flush only when the next event is not at hand yet.
// Comment-only blocks (": ping") and blocks Next would skip don't count.
func (r *Reader) HasEvent() bool {
	n := r.br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := r.br.Peek(n)
	field := false
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return false
		}
		line := bytes.TrimSuffix(b[:i], []byte("\r"))
		b = b[i+1:]
		switch {
		case len(line) == 0:
			if field {
				return true
			}
		case line[0] == ':':
		case bytes.HasPrefix(line, []byte("data")) || bytes.HasPrefix(line, []byte("event")):
			field = true
		}
	}
	return false
}
