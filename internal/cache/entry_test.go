package cache

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

var chunks = []string{
	`{"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
	`{"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,"delta":{"reasoning_content":"Think."},"finish_reason":null}]}`,
	`{"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}`,
	`{"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,"delta":{"content":" world"},"finish_reason":null}]}`,
	`{"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":"}}]},"finish_reason":null}]}`,
	`{"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"finish_reason":null}]}`,
	`{"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}`,
	`{"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1700000000,"model":"m","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}`,
}

func recorded() []Event {
	var evs []Event
	for _, c := range chunks {
		evs = append(evs, Event{Data: []byte(c)})
	}
	return evs
}

func TestStreamBodyConversion(t *testing.T) {
	body := chatBodyFromEvents(recorded())
	m := gjson.GetBytes(body, "choices.0.message")
	if m.Get("content").Str != "Hello world" || m.Get("reasoning_content").Str != "Think." ||
		m.Get("tool_calls.0.function.arguments").Str != `{"a":1}` || m.Get("tool_calls.0.id").Str != "call_1" ||
		gjson.GetBytes(body, "choices.0.finish_reason").Str != "tool_calls" || gjson.GetBytes(body, "usage.total_tokens").Int() != 12 ||
		gjson.GetBytes(body, "object").Str != "chat.completion" {
		t.Fatalf("body %s", body)
	}
	// And back: the body streamed again accumulates to the same body.
	events, _ := chatEventsFromBody(body)
	if len(events) < 5 {
		t.Fatalf("%d events", len(events))
	}
	again := chatBodyFromEvents(events)
	if string(again) != string(body) {
		t.Fatalf("round trip:\n%s\n%s", body, again)
	}
	if u := eventsUsage(events); u.InputTokens != 7 || u.OutputTokens != 5 {
		t.Fatalf("usage %+v", u)
	}
}

func TestPieces(t *testing.T) {
	if p := pieces("Hello from fake word3"); !reflect.DeepEqual(p, []string{"Hello", " from", " fake", " word3"}) {
		t.Fatalf("%q", p)
	}
	long := strings.Repeat("word ", 1000)
	if p := pieces(long); len(p) > maxPieces || strings.Join(p, "") != long {
		t.Fatalf("%d pieces", len(p))
	}
}

func TestFreshIDs(t *testing.T) {
	fr := newFreshener(pathsFor(provider.FormatOpenAI, openai.OpChat, true), 1800000000)
	var ids []string
	for _, c := range chunks {
		out := fr.apply(nil, []byte(c))
		if len(out) != len(c) || gjson.GetBytes(out, "created").Int() != 1800000000 {
			t.Fatalf("%s", out)
		}
		ids = append(ids, gjson.GetBytes(out, "id").Str)
	}
	if ids[0] == "chatcmpl-abc123" || !strings.HasPrefix(ids[0], "chatcmpl-") || ids[0] != ids[len(ids)-1] {
		t.Fatalf("ids %v", ids)
	}
}

func TestEntryEncoding(t *testing.T) {
	now := time.UnixMilli(time.Now().UnixMilli())
	e := &Entry{Format: provider.FormatAnthropic, Op: openai.OpChat, Stream: true, Events: []Event{{Name: []byte("message_start"), Data: []byte(`{}`)}},
		Usage: openai.Usage{InputTokens: 3, OutputTokens: 4, Known: true}, Provider: "p", Model: "m", Namespace: "key:a", Route: "r",
		Stored: now, Expires: now.Add(time.Hour)}
	b, _ := e.MarshalBinary()
	var got Entry
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, e) {
		t.Fatalf("%+v\n%+v", &got, e)
	}
	for i := range b {
		var x Entry
		_ = x.UnmarshalBinary(b[:i]) // never panics on a cut entry
	}
}

// runStoreSuite runs one behaviour suite against a store.
func runStoreSuite(t *testing.T, s Store) {
	ctx := context.Background()
	now := time.Now()
	put := func(ns, route, model string, k byte) Ref {
		ref := Ref{Key: Key{k}, Namespace: ns, Route: route}
		if err := s.Set(ctx, ref, &Entry{Body: []byte(`{"x":1}`), Namespace: ns, Route: route, Model: model, Stored: now, Expires: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		return ref
	}
	a := put("key:a", "demo", "up-demo", 1)
	b := put("key:b", "demo", "up-demo", 2)
	c := put("key:a", "other", "up-other", 3)
	if e, err := s.Get(ctx, a); err != nil || e == nil || string(e.Body) != `{"x":1}` {
		t.Fatalf("get: %v %v", e, err)
	}
	if e, _ := s.Get(ctx, Ref{Key: Key{9}, Namespace: "key:a", Route: "demo"}); e != nil {
		t.Fatal("a miss found an entry")
	}
	if n, err := s.Delete(ctx, Filter{Namespace: "key:a", Model: "demo"}); err != nil || n != 1 {
		t.Fatalf("delete ns+model: %d %v", n, err)
	}
	if e, _ := s.Get(ctx, a); e != nil {
		t.Fatal("a survived")
	}
	if e, _ := s.Get(ctx, c); e == nil {
		t.Fatal("c deleted")
	}
	if n, err := s.Delete(ctx, Filter{}); err != nil || n != 2 {
		t.Fatalf("delete all: %d %v", n, err)
	}
	if e, _ := s.Get(ctx, b); e != nil {
		t.Fatal("b survived")
	}
	short := Ref{Key: Key{4}, Namespace: "x", Route: "y"}
	if err := s.Set(ctx, short, &Entry{Body: []byte(`{}`), Stored: now, Expires: time.Now().Add(50 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if e, _ := s.Get(ctx, short); e != nil {
		t.Fatal("an expired entry was returned")
	}
}

func TestStores(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		m := NewMemory(1 << 20)
		defer m.Close()
		runStoreSuite(t, m)
	})
	t.Run("redis", func(t *testing.T) {
		rs := redistest.Start(t)
		c := rs.Client()
		r, err := NewRedis(c, "test:")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		runStoreSuite(t, r)
		ctx := context.Background()
		ref := Ref{Key: Key{7}, Namespace: "n", Route: "r"}
		if ok, err := r.Lock(ctx, ref, "t1", time.Second); !ok || err != nil {
			t.Fatalf("lock: %v %v", ok, err)
		}
		if ok, _ := r.Lock(ctx, ref, "t2", time.Second); ok {
			t.Fatal("locked twice")
		}
		if _, locked, err := r.Poll(ctx, ref); !locked || err != nil {
			t.Fatalf("poll: %v %v", locked, err)
		}
		_ = r.Unlock(ctx, ref, "t2") // not the holder: no effect
		if _, locked, _ := r.Poll(ctx, ref); !locked {
			t.Fatal("unlocked by another token")
		}
		_ = r.Unlock(ctx, ref, "t1")
		if _, locked, _ := r.Poll(ctx, ref); locked {
			t.Fatal("still locked")
		}
		// Values are compressed.
		big := &Entry{Body: []byte(strings.Repeat(`{"content":"the same words again"}`, 1000)), Expires: time.Now().Add(time.Minute)}
		_ = r.Set(ctx, ref, big)
		if st, _ := r.Stats(ctx); st.Entries != 1 || st.Bytes >= int64(len(big.Body))/10 {
			t.Fatalf("stats %+v for a %d-byte body", st, len(big.Body))
		}
		if pttl := c.PTTL(ctx, rs.Keys("test:c:*")[0]).Val(); pttl <= 0 || pttl > time.Minute {
			t.Fatalf("pttl %v", pttl)
		}
	})
}

// TestFreshReference: events that begin like the reference take its
// rewritten prefix, others are parsed; either way only the id and created
// change, every event gets the same fresh id, and a look-alike id in the
// content (not at the reference's place) is left alone.
func TestFreshReference(t *testing.T) {
	const id = "chatcmpl-abc123"
	events := []string{
		`{"id":"` + id + `","object":"chat.completion.chunk","created":1700000000,"choices":[{"index":0,"delta":{"role":"assistant"}}]}`,
		`{"id":"` + id + `","object":"chat.completion.chunk","created":1700000000,"choices":[{"index":0,"delta":{"content":"Hi"}}]}`,
		// Other members first: parsed, not matched by the prefix.
		`{"object":"chat.completion.chunk","id":"` + id + `","created":1700000000,"choices":[{"index":0,"delta":{"content":"` + id + `"}}]}`,
		// The same prefix up to the id only: parsed.
		`{"id":"` + id + `","object":"chat.completion.chunk","created":1700000001,"choices":[]}`,
		`{"id":"` + id + `","object":"chat.completion.chunk","created":1700000000,"choices":[{"index":0,"delta":{"content":"\"id\":\"` + id + `\""}}]}`,
	}
	fr := newFreshener(pathsFor(provider.FormatOpenAI, openai.OpChat, true), 1800000000)
	var fresh string
	var buf []byte
	for i, ev := range events {
		buf = fr.apply(buf, []byte(ev))
		got := string(buf)
		if i == 1 && fr.ref == nil {
			t.Fatal("no reference taken")
		}
		if fresh == "" {
			fresh = gjson.Get(got, "id").Str
		}
		if fresh == id || len(fresh) != len(id) || gjson.Get(got, "id").Str != fresh || gjson.Get(got, "created").Int() != 1800000000 {
			t.Fatalf("event %d: %s", i, got)
		}
		// Only the id and created differ.
		want := strings.Replace(strings.Replace(ev, `"id":"`+id+`"`, `"id":"`+fresh+`"`, 1), `"created":170000000`, `"created":180000000`, 1)
		want = strings.Replace(want, `"created":1800000001`, `"created":1800000000`, 1)
		if i == 2 {
			want = strings.Replace(ev, `"id":"`+id+`","created":1700000000`, `"id":"`+fresh+`","created":1800000000`, 1)
		}
		if got != want {
			t.Fatalf("event %d:\n got %s\nwant %s", i, got, want)
		}
	}
}
