package cache

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

// Flights are the requests in flight by key: identical requests wait for
// the first one (the leader) instead of calling the upstream.
//
// A flight records the leader's answer as it arrives: a body, or the
// stream's events in a log that every listener (the leader and each
// follower) reads at its own pace. There is no goroutine: a listener that
// reaches the end of the log while the stream goes on reads the next event
// from the upstream itself (one at a time) and appends it for the others.
// So the leader's client leaving does not end the stream for the
// followers: the upstream call runs on a context of the flight's own, which
// ends when the last listener has gone.
type Flights struct {
	mu sync.Mutex
	m  map[Key]*flight
}

// NewFlights returns an empty set of flights.
func NewFlights() *Flights { return &Flights{m: make(map[Key]*flight)} }

// Len is the number of flights under way.
func (fs *Flights) Len() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return len(fs.m)
}

// has reports whether a flight of key is under way.
func (fs *Flights) has(key Key) bool {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.m[key] != nil
}

// join returns the flight of key and whether the caller leads it (a new
// flight) or follows it. A follower counts as a listener at once.
func (fs *Flights) join(key Key, maxSize int) (f *flight, leader bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f = fs.m[key]; f != nil {
		f.mu.Lock()
		ok := f.err == nil && f.size <= maxSize && f.listeners > 0
		if ok {
			f.listeners++
		}
		f.mu.Unlock()
		if ok {
			return f, false
		}
	}
	f = &flight{fs: fs, key: key, changed: make(chan struct{}), listeners: 1}
	fs.m[key] = f
	return f, true
}

// errAbandoned ends a flight whose every listener left, errNoAnswer one
// whose leader got no answer.
var (
	errAbandoned = errors.New("cache: every listener left")
	errNoAnswer  = errors.New("cache: the leader got no answer")
)

type flight struct {
	fs  *Flights
	key Key

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change

	hasReply bool
	format   provider.Format
	stream   bool
	body     []byte
	usage    openai.Usage
	events   []Event
	size     int
	provider string
	model    string
	// done: the answer is whole (the body arrived, the stream ended
	// cleanly); err: it never will be.
	done bool
	err  error

	up       provider.Stream
	pulling  bool
	upClosed bool
	cancel   context.CancelFunc // the upstream call's context

	listeners int // requests still waiting for or reading the answer
	open      int // open listener streams

	committed bool
}

// broadcastLocked wakes every waiter.
func (f *flight) broadcastLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// remove takes the flight out of its set (new requests lead a new one or
// find the entry).
func (f *flight) remove() {
	f.fs.mu.Lock()
	if f.fs.m[f.key] == f {
		delete(f.fs.m, f.key)
	}
	f.fs.mu.Unlock()
}

// leave is a listener losing interest (its client left, or it has its
// answer). When the last one leaves before the answer is whole, the
// upstream call is cancelled.
func (f *flight) leave() {
	f.mu.Lock()
	f.listeners--
	abandon := f.listeners <= 0 && !f.done && f.err == nil
	if abandon {
		f.err = errAbandoned
		f.broadcastLocked()
	}
	cancel := f.cancel
	closeUp := abandon && f.open == 0 && !f.pulling && f.up != nil && !f.upClosed
	if closeUp {
		f.upClosed = true
	}
	f.mu.Unlock()
	if abandon {
		f.remove()
		if cancel != nil {
			cancel()
		}
	}
	if closeUp {
		f.up.Close()
	}
}

// fail ends the flight without an answer.
func (f *flight) fail(err error) {
	f.mu.Lock()
	if !f.done && f.err == nil {
		f.err = err
		f.broadcastLocked()
	}
	f.mu.Unlock()
	f.remove()
}

// publish makes the leader's reply the flight's: a body is whole at once;
// a stream's first event starts the log, and the leader reads the rest
// through the flight (the returned stream) like every follower.
func (f *flight) publish(format provider.Format, body []byte, usage openai.Usage, st provider.Stream, first sse.Event, prov, model string) (sse.Event, provider.Stream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hasReply, f.format, f.provider, f.model = true, format, prov, model
	if st == nil {
		f.body, f.usage, f.size, f.done = body, usage, len(body), true
		if !usage.Known && format == provider.FormatOpenAI {
			f.usage = openai.UsageOf(body)
		}
		f.broadcastLocked()
		return first, nil
	}
	ev := cloneEvent(first)
	f.stream, f.up = true, st
	f.events = append(f.events, ev)
	f.size += len(ev.Name) + len(ev.Data)
	f.open++
	f.broadcastLocked()
	return sse.Event{Name: ev.Name, Data: ev.Data}, &listener{f: f, i: 1}
}

// publishEntry makes a stored entry (found while waiting on another
// gateway's lock) the flight's answer.
func (f *flight) publishEntry(e *Entry) {
	f.mu.Lock()
	f.hasReply, f.format, f.provider, f.model = true, e.Format, e.Provider, e.Model
	f.stream, f.body, f.events, f.usage, f.done, f.committed = e.Stream, e.Body, e.Events, e.Usage, true, true
	f.broadcastLocked()
	f.mu.Unlock()
	f.remove()
}

// waitReply waits until the flight has a reply (true) or ended without
// one, or ctx ended (false).
func (f *flight) waitReply(ctx context.Context) bool {
	for {
		f.mu.Lock()
		has, err, ch := f.hasReply, f.err, f.changed
		f.mu.Unlock()
		if has {
			return true
		}
		if err != nil {
			return false
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

func cloneEvent(ev sse.Event) Event {
	b := make([]byte, len(ev.Name)+len(ev.Data))
	n := copy(b, ev.Name)
	copy(b[n:], ev.Data)
	return Event{Name: b[:n:n], Data: b[n:]}
}

// streamUsageLocked is a finished stream's usage: the upstream's own
// account, else the usage its events carry.
func (f *flight) streamUsageLocked() openai.Usage {
	if ur, ok := f.up.(provider.UsageReporter); ok {
		if u := ur.Usage(); u.Known {
			return u
		}
	}
	return eventsUsage(f.events)
}

// eventsUsage reads the usage from the last events of an OpenAI stream
// (the usage chunk, a Responses completion).
func eventsUsage(events []Event) openai.Usage {
	for i := len(events) - 1; i >= 0 && i >= len(events)-4; i-- {
		ev := events[i]
		if u, present, _ := openai.ChunkUsage(ev.Data); present {
			return u
		}
		if u := openai.UsageAt(ev.Data, "response.usage"); u.Known {
			return u
		}
	}
	return openai.Usage{}
}

// listener reads a flight's stream from its log, pulling from the
// upstream when it is at the end and nobody else is.
type listener struct {
	f      *flight
	i      int
	ctx    context.Context // the listener's client (nil: do not watch)
	fresh  *freshener      // followers' fresh ids (nil: the leader's)
	buf    []byte
	sawEOF bool
	closed bool
	leave  func() // a follower's interest, dropped on Close
	commit func(*flight)
	// finish: the leader's stream, whose request must outlive its client
	// while followers listen (the upstream call ends with it): Close reads
	// the stream on for them.
	finish bool
}

// Next implements provider.Stream.
func (l *listener) Next() (sse.Event, error) {
	f := l.f
	for {
		f.mu.Lock()
		if l.i < len(f.events) {
			ev := f.events[l.i]
			l.i++
			f.mu.Unlock()
			if l.fresh != nil {
				l.buf = l.fresh.apply(l.buf, ev.Data)
				return sse.Event{Name: ev.Name, Data: l.buf}, nil
			}
			return sse.Event{Name: ev.Name, Data: ev.Data}, nil
		}
		if f.done {
			f.mu.Unlock()
			l.sawEOF = true
			return sse.Event{}, io.EOF
		}
		if f.err != nil {
			err := f.err
			f.mu.Unlock()
			return sse.Event{}, err
		}
		if !f.pulling {
			f.pulling = true
			up := f.up
			f.mu.Unlock()
			ev, err := up.Next()
			var rec Event
			if err == nil {
				rec = cloneEvent(ev)
			}
			f.mu.Lock()
			f.pulling = false
			var closeUp bool
			switch {
			case err == nil:
				f.events = append(f.events, rec)
				f.size += len(rec.Name) + len(rec.Data)
			case err == io.EOF:
				f.done = true
				f.usage = f.streamUsageLocked()
				closeUp = !f.upClosed
			default:
				if f.err == nil {
					f.err = err
				}
				closeUp = !f.upClosed
			}
			f.upClosed = f.upClosed || closeUp
			f.broadcastLocked()
			f.mu.Unlock()
			if closeUp {
				up.Close()
				if err != io.EOF {
					f.remove()
				}
			}
			continue
		}
		ch := f.changed
		f.mu.Unlock()
		var done <-chan struct{}
		if l.ctx != nil {
			done = l.ctx.Done()
		}
		select {
		case <-ch:
		case <-done:
			return sse.Event{}, l.ctx.Err()
		}
	}
}

// Pending implements provider.Pender: the next event is in the log.
func (l *listener) Pending() bool {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	return l.i < len(l.f.events)
}

// Usage implements provider.UsageReporter: the stream's usage once it
// ended.
func (l *listener) Usage() openai.Usage {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	if !l.f.done {
		return openai.Usage{}
	}
	return l.f.usage
}

// Close implements provider.Stream. The listener that saw the end commits
// the recording (after its client has the whole answer); the last one to
// close an unfinished stream closes the upstream.
func (l *listener) Close() error {
	if l.closed {
		return nil
	}
	l.closed = true
	f := l.f
	if l.finish {
		l.ctx = nil // its client may be gone: wait for the others' puller
		for {
			f.mu.Lock()
			over := f.done || f.err != nil || f.listeners <= 0
			f.mu.Unlock()
			if over {
				break
			}
			if _, err := l.Next(); err != nil {
				break
			}
		}
	}
	f.mu.Lock()
	f.open--
	commit := l.sawEOF && !f.committed && l.commit != nil
	if commit {
		f.committed = true
	}
	closeUp := f.open == 0 && f.err != nil && !f.upClosed && !f.pulling && f.up != nil
	if closeUp {
		f.upClosed = true
	}
	f.mu.Unlock()
	if closeUp {
		f.up.Close()
	}
	if commit {
		l.commit(f)
	}
	if l.leave != nil {
		l.leave()
	}
	return nil
}
