package cache

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// Entry is a recorded answer: a body, or the events of a stream as the
// upstream sent them (in Format, before the client's dialect translated
// them), with its usage and who answered. It is stored once and replayed
// as it came, or converted (a stream answers a non-stream request and the
// reverse) where the format allows (OpenAI Chat Completions).
//
// An Entry is immutable once stored: replays copy what they rewrite.
type Entry struct {
	Format provider.Format
	Op     openai.Op
	// Stream: Events hold the answer; otherwise Body does.
	Stream bool
	Body   []byte
	Events []Event
	Usage  openai.Usage
	// Provider and Model answered (the upstream model).
	Provider, Model string
	// Namespace and Route (the routing table entry's pattern) the entry
	// was stored under, for the admin API's deletes.
	Namespace, Route string
	// Stored is when the answer was recorded, Expires when it is dropped.
	Stored, Expires time.Time

	// usageOnly marks the events that are OpenAI's usage-only chunk,
	// found on the first replay (see usageMarks).
	usageOnly atomic.Pointer[[]bool]
	// spots are where Body's id and creation time are, found on the
	// first replay as a body (see bodySpots).
	spots atomic.Pointer[bodySpots]
	// other is the answer in the shape it was not recorded in, converted
	// by a hit that asked for that shape and kept by the memory store (see
	// Stage.keepShape); nil until then, and never encoded.
	other *shape
}

// shape is a recorded answer converted to the other shape: a recorded
// stream as one body, or a recorded body as a stream (with its usage-only
// marks, nil: none).
type shape struct {
	body   []byte
	events []Event
	marks  []bool
}

// size is the shape's approximate size in memory, in bytes.
func (sh *shape) size() int { return len(sh.body) + len(sh.marks) + eventsSize(sh.events) }

// withShape returns a copy of e that also holds sh.
func (e *Entry) withShape(sh *shape) *Entry {
	c := &Entry{Format: e.Format, Op: e.Op, Stream: e.Stream, Body: e.Body, Events: e.Events, Usage: e.Usage,
		Provider: e.Provider, Model: e.Model, Namespace: e.Namespace, Route: e.Route,
		Stored: e.Stored, Expires: e.Expires, other: sh}
	if m := e.usageOnly.Load(); m != nil {
		c.usageOnly.Store(m)
	}
	if sp := e.spots.Load(); sp != nil {
		c.spots.Store(sp)
	}
	return c
}

// bodySpots are the spots of Body's id and creation time, found once per
// entry: every replay of a body freshens them.
func (e *Entry) bodySpots(p idPaths) bodySpots {
	if sp := e.spots.Load(); sp != nil {
		return *sp
	}
	sp := findSpots(p, e.Body)
	e.spots.Store(&sp)
	return sp
}

// usageMarks reports, per event, whether it is OpenAI's usage-only chunk
// (a chunk with a usage object and no choices): a replay tells the gateway
// so (provider.UsageMarker) instead of having every event scanned on
// every replay. The marks are found once per entry. nil: none.
func (e *Entry) usageMarks() []bool {
	if m := e.usageOnly.Load(); m != nil {
		return *m
	}
	m := markUsageOnly(e.Format, e.Events)
	e.usageOnly.Store(&m)
	return m
}

// markUsageOnly returns the usage-only marks of events (nil: none).
func markUsageOnly(f provider.Format, events []Event) []bool {
	if f != provider.FormatOpenAI {
		return nil
	}
	var m []bool
	for i := range events {
		if _, present, noChoices := openai.ChunkUsage(events[i].Data); present && noChoices {
			if m == nil {
				m = make([]bool, len(events))
			}
			m[i] = true
		}
	}
	return m
}

// Event is one recorded stream event.
type Event struct {
	Name, Data []byte
}

// entryOverhead approximates an entry's bookkeeping in memory (struct,
// strings, the store's node), and eventOverhead an event's.
const (
	entryOverhead = 256
	eventOverhead = 56
)

// Size is the entry's approximate size in memory, in bytes.
func (e *Entry) Size() int {
	n := entryOverhead + len(e.Body) + len(e.Provider) + len(e.Model) + len(e.Namespace) + len(e.Route) + eventsSize(e.Events)
	if e.other != nil {
		n += e.other.size()
	}
	return n
}

// eventsSize is the approximate size of events in memory, in bytes.
func eventsSize(events []Event) int {
	n := 0
	for _, ev := range events {
		n += eventOverhead + len(ev.Name) + len(ev.Data)
	}
	return n
}

// Age is how long ago the entry was recorded.
func (e *Entry) Age(now time.Time) time.Duration { return max(0, now.Sub(e.Stored)) }

// entryVersion is the first byte of an encoded entry.
const entryVersion = 1

// MarshalBinary encodes the entry (before compression).
func (e *Entry) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, e.Size())
	b = append(b, entryVersion, byte(e.Format), byte(e.Op))
	var flags byte
	if e.Stream {
		flags |= 1
	}
	if e.Usage.Known {
		flags |= 2
	}
	b = append(b, flags)
	b = binary.AppendVarint(b, e.Stored.UnixMilli())
	b = binary.AppendVarint(b, e.Expires.UnixMilli())
	b = binary.AppendVarint(b, e.Usage.InputTokens)
	b = binary.AppendVarint(b, e.Usage.OutputTokens)
	b = binary.AppendVarint(b, e.Usage.CachedTokens)
	for _, s := range [...]string{e.Provider, e.Model, e.Namespace, e.Route} {
		b = appendBytes(b, []byte(s))
	}
	b = appendBytes(b, e.Body)
	b = binary.AppendUvarint(b, uint64(len(e.Events)))
	for _, ev := range e.Events {
		b = appendBytes(b, ev.Name)
		b = appendBytes(b, ev.Data)
	}
	return b, nil
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCorrupt = errors.New("cache: corrupt entry")

// UnmarshalBinary decodes an entry encoded by MarshalBinary. The entry's
// slices alias data.
func (e *Entry) UnmarshalBinary(data []byte) error {
	if len(data) < 4 || data[0] != entryVersion {
		return errCorrupt
	}
	e.Format, e.Op = provider.Format(data[1]), openai.Op(data[2])
	e.Stream, e.Usage.Known = data[3]&1 != 0, data[3]&2 != 0
	d := decoder{b: data[4:]}
	e.Stored = time.UnixMilli(d.varint())
	e.Expires = time.UnixMilli(d.varint())
	e.Usage.InputTokens, e.Usage.OutputTokens, e.Usage.CachedTokens = d.varint(), d.varint(), d.varint()
	e.Provider, e.Model, e.Namespace, e.Route = string(d.bytes()), string(d.bytes()), string(d.bytes()), string(d.bytes())
	e.Body = d.bytes()
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) {
		return errCorrupt
	}
	e.Events = make([]Event, n)
	for i := range e.Events {
		e.Events[i] = Event{Name: d.bytes(), Data: d.bytes()}
	}
	if d.err {
		return errCorrupt
	}
	if len(e.Body) == 0 {
		e.Body = nil
	}
	return nil
}

type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err || n > uint64(len(d.b)) {
		d.err = true
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}
