package cache

import (
	"context"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// A hit in the shape an entry was not recorded in converts it once: the
// memory store then holds the entry with both shapes, weighed with both,
// and later hits in that shape replay the kept one (the same answer, with
// fresh ids each time). An entry deleted or stored over in between is not
// brought back.
func TestKeepShape(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	for _, tc := range []struct {
		name   string
		entry  func() *Entry
		stream bool
	}{
		{"body asked as a stream", func() *Entry {
			return &Entry{Format: provider.FormatOpenAI, Op: openai.OpChat, Body: chatBodyFromEvents(recorded()),
				Usage: openai.Usage{Known: true, InputTokens: 7, OutputTokens: 5}, Model: "m", Stored: now, Expires: now.Add(time.Hour)}
		}, true},
		{"stream asked as a body", func() *Entry {
			return &Entry{Format: provider.FormatOpenAI, Op: openai.OpChat, Stream: true, Events: recorded(),
				Usage: openai.Usage{Known: true, InputTokens: 7, OutputTokens: 5}, Model: "m", Stored: now, Expires: now.Add(time.Hour)}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := NewMemory(1 << 20)
			defer mem.Close()
			s := New(Config{Store: mem})
			ref := Ref{Key: Key{1}}
			e := tc.entry()
			_ = mem.Set(ctx, ref, e)
			reply, conv := replyFrom(e, tc.stream, now)
			if reply == nil || conv == nil {
				t.Fatalf("first hit: reply %v, converted %v", reply, conv)
			}
			first, firstID := replayed(t, reply)
			s.keepShape(ref, e, conv)
			kept, _ := mem.Get(ctx, ref)
			if kept == e || kept.other != conv || kept.Size() != e.Size()+conv.size() || kept.Expires != e.Expires || kept.Stored != e.Stored {
				t.Fatalf("kept %+v (size %d), recorded size %d + converted %d", kept, kept.Size(), e.Size(), conv.size())
			}
			// The store applies weights shortly after a write.
			var st StoreStats
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(time.Millisecond) {
				if st, _ = mem.Stats(ctx); st.Entries == 1 && st.Bytes == int64(kept.Size()) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the store weighs %+v, the entry with both shapes is %d bytes", st, kept.Size())
				}
			}
			reply, again := replyFrom(kept, tc.stream, now.Add(time.Second))
			if reply == nil || again != nil {
				t.Fatalf("second hit converted again (%v)", again)
			}
			if second, id := replayed(t, reply); second != first || id == firstID {
				t.Fatalf("the kept shape replays another answer or the same id:\n%s %s\n%s %s", firstID, first, id, second)
			}
			// As recorded, it still replays without the other shape.
			if reply, c := replyFrom(kept, !tc.stream, now); reply == nil || c != nil {
				t.Fatalf("recorded shape: %v, converted %v", reply, c)
			}

			// Stored over or deleted since it was read: not replaced.
			newer := tc.entry()
			_ = mem.Set(ctx, ref, newer)
			s.keepShape(ref, kept, conv)
			if got, _ := mem.Get(ctx, ref); got != newer {
				t.Fatal("keepShape replaced a newer entry")
			}
			_, _ = mem.Delete(ctx, Filter{})
			s.keepShape(ref, newer, conv)
			if got, _ := mem.Get(ctx, ref); got != nil {
				t.Fatal("keepShape brought a deleted entry back")
			}
		})
	}
}

// An entry that would outgrow max_entry_size with both shapes keeps one.
func TestKeepShapeBounded(t *testing.T) {
	ctx := context.Background()
	mem := NewMemory(1 << 20)
	defer mem.Close()
	e := &Entry{Format: provider.FormatOpenAI, Op: openai.OpChat, Body: chatBodyFromEvents(recorded()), Expires: time.Now().Add(time.Hour)}
	s := New(Config{Store: mem, MaxEntrySize: e.Size() + 10})
	ref := Ref{Key: Key{2}}
	_ = mem.Set(ctx, ref, e)
	_, conv := replyFrom(e, true, time.Now())
	s.keepShape(ref, e, conv)
	if got, _ := mem.Get(ctx, ref); got != e {
		t.Fatal("an entry past max_entry_size kept both shapes")
	}
}

// withShape copies every field of the entry: a field added to Entry must
// be added there too.
func TestWithShapeCopies(t *testing.T) {
	now := time.Now()
	e := &Entry{Format: provider.FormatAnthropic, Op: openai.OpResponses, Stream: true, Body: []byte("b"), Events: recorded(),
		Usage: openai.Usage{Known: true, InputTokens: 1}, Provider: "p", Model: "m", Namespace: "n", Route: "r",
		Stored: now, Expires: now.Add(time.Minute)}
	marks := []bool{true}
	e.usageOnly.Store(&marks)
	spots := &bodySpots{}
	e.spots.Store(spots)
	sh := &shape{body: []byte("x")}
	c := e.withShape(sh)
	ev, cv := reflect.ValueOf(e).Elem(), reflect.ValueOf(c).Elem()
	for i := range ev.NumField() {
		name := ev.Type().Field(i).Name
		switch name {
		case "usageOnly":
			if c.usageOnly.Load() != &marks {
				t.Error("usageOnly not copied")
			}
		case "spots":
			if c.spots.Load() != spots {
				t.Error("spots not copied")
			}
		case "other":
			if c.other != sh {
				t.Error("other not set")
			}
		default:
			if ev.Field(i).IsZero() {
				t.Fatalf("set %s in this test", name)
			}
			if !reflect.DeepEqual(ev.Field(i).Interface(), cv.Field(i).Interface()) {
				t.Errorf("%s not copied", name)
			}
		}
	}
}

// replayed reads a reply to its end and returns its answer as a chat body's
// choices and usage (a stream accumulated), and its id.
func replayed(t *testing.T, r *gateway.Reply) (answer, id string) {
	t.Helper()
	body := r.Body
	if r.Stream != nil {
		events := []Event{{Name: r.First.Name, Data: append([]byte(nil), r.First.Data...)}}
		for {
			ev, err := r.Stream.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, Event{Name: append([]byte(nil), ev.Name...), Data: append([]byte(nil), ev.Data...)})
		}
		body = chatBodyFromEvents(events)
	}
	g := gjson.ParseBytes(body)
	return g.Get("choices").Raw + g.Get("usage").Raw, g.Get("id").String()
}
