package guardrails

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/sse"
)

func chunk(content string, finish bool) []byte {
	fr := "null"
	if finish {
		fr = `"stop"`
	}
	return []byte(`{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"` +
		string(appendEscaped(nil, content)) + `"},"finish_reason":` + fr + `}]}`)
}

// stream runs parts through a restorer as chat chunks, then a finishing
// chunk with empty content, and returns the text the client reads.
func stream(v *Vault, parts []string) string {
	r := NewRestorer(v)
	var out strings.Builder
	for i, p := range parts {
		ev := dialect.Event{Event: sse.Event{Data: chunk(p, false)}}
		r.Event(&ev, provider.FormatOpenAI)
		out.WriteString(gjson.GetBytes(ev.Data, "choices.0.delta.content").Str)
		_ = i
	}
	ev := dialect.Event{Event: sse.Event{Data: []byte(`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`)}}
	r.Event(&ev, provider.FormatOpenAI)
	out.WriteString(gjson.GetBytes(ev.Data, "choices.0.delta.content").Str)
	return out.String()
}

func testVault() *Vault {
	v := new(Vault)
	v.placeholder(DetectEmail, "ana@example.com")
	v.placeholder(DetectCard, "4111 1111 1111 1111")
	v.placeholder(DetectPhone, `+44 "20" 7946 0958`) // a value needing JSON escapes
	v.placeholder(DetectEmail, "bo@example.org")
	return v
}

// TestRestoreSplitAtEveryByte splits an answer holding placeholders (and
// look-alikes that are none) at every byte boundary, in two and in three
// parts and one byte per chunk: the client always reads the same text,
// with every value back.
func TestRestoreSplitAtEveryByte(t *testing.T) {
	v := testVault()
	answer := "Mail [EMAIL_1] or [EMAIL_2]; card [CARD_1], phone [PHONE_1]. Not ours: [EMAIL_9], [x], [CARD_ and [ at the end ["
	want := "Mail ana@example.com or bo@example.org; card 4111 1111 1111 1111, phone +44 \"20\" 7946 0958. Not ours: [EMAIL_9], [x], [CARD_ and [ at the end ["
	if got := stream(v, []string{answer}); got != want {
		t.Fatalf("whole: %q", got)
	}
	for i := 0; i <= len(answer); i++ {
		if got := stream(v, []string{answer[:i], answer[i:]}); got != want {
			t.Fatalf("split at %d: %q", i, got)
		}
		for j := i; j <= len(answer); j += 7 {
			if got := stream(v, []string{answer[:i], answer[i:j], answer[j:]}); got != want {
				t.Fatalf("split at %d, %d: %q", i, j, got)
			}
		}
	}
	bytewise := make([]string, len(answer))
	for i := range answer {
		bytewise[i] = answer[i : i+1]
	}
	if got := stream(v, bytewise); got != want {
		t.Fatalf("byte by byte: %q", got)
	}
}

func TestRestoreBody(t *testing.T) {
	v := testVault()
	body := []byte(`{"choices":[{"message":{"role":"assistant","content":"to [EMAIL_1] and [PHONE_1]"}}]}`)
	got := NewRestorer(v).Body(body, provider.FormatOpenAI)
	if c := gjson.GetBytes(got, "choices.0.message.content").Str; c != `to ana@example.com and +44 "20" 7946 0958` {
		t.Fatalf("%s", got)
	}
}

func TestMaskConsistentPlaceholders(t *testing.T) {
	d := NewDetectors([]string{"all"}, nil, nil)
	m := &masker{d: d, rules: maskAll, on: 1}
	body := []byte(`{"model":"m","messages":[{"role":"user","content":"I am ana@example.com, card 4111 1111 1111 1111."},` +
		`{"role":"assistant","content":"Noted."},{"role":"user","content":[{"type":"text","text":"again: ana@example.com, and bo@example.org"}]}]}`)
	out := m.mask(body, m.detect(body))
	s := string(out)
	if strings.Contains(s, "example.com") || strings.Contains(s, "4111") || strings.Contains(s, "bo@") {
		t.Fatalf("private data left: %s", s)
	}
	if strings.Count(s, "[EMAIL_1]") != 2 || strings.Count(s, "[EMAIL_2]") != 1 || strings.Count(s, "[CARD_1]") != 1 {
		t.Fatalf("placeholders: %s", s)
	}
	if !gjson.ValidBytes(out) {
		t.Fatalf("invalid JSON: %s", s)
	}
	if got := m.summary(ActionMask); got != "masked=card:1,email:3" {
		t.Fatalf("summary %q", got)
	}
}

// Completions' choices[].text, several choices at once, and Responses'
// output_text.delta events are restored with a placeholder split across
// events.
func TestRestoreOtherStreams(t *testing.T) {
	v := testVault()
	r := NewRestorer(v)
	events := []string{
		`{"choices":[{"index":0,"text":"to [EMA"},{"index":1,"text":"card [CA"}]}`,
		`{"choices":[{"index":1,"text":"RD_1] ok"},{"index":0,"text":"IL_1]!"}]}`,
		`{"choices":[{"index":0,"text":"","finish_reason":"stop"},{"index":1,"text":" [","finish_reason":"stop"}]}`,
	}
	var got [2]strings.Builder
	for _, e := range events {
		ev := dialect.Event{Event: sse.Event{Data: []byte(e)}}
		r.Event(&ev, provider.FormatOpenAI)
		gjson.GetBytes(ev.Data, "choices").ForEach(func(_, ch gjson.Result) bool {
			got[ch.Get("index").Int()].WriteString(ch.Get("text").Str)
			return true
		})
	}
	if got[0].String() != "to ana@example.com!" || got[1].String() != "card 4111 1111 1111 1111 ok [" {
		t.Fatalf("%q %q", got[0].String(), got[1].String())
	}

	r = NewRestorer(v)
	var out strings.Builder
	for _, d := range []string{"write to [EMAIL", "_2] now", "."} {
		ev := dialect.Event{Event: sse.Event{Name: []byte("response.output_text.delta"),
			Data: []byte(`{"type":"response.output_text.delta","delta":"` + d + `"}`)}}
		r.Event(&ev, provider.FormatOpenAI)
		out.WriteString(gjson.GetBytes(ev.Data, "delta").Str)
	}
	if out.String() != "write to bo@example.org now." {
		t.Fatalf("%q", out.String())
	}
	// A whole event elsewhere (the completed response) is restored in place.
	ev := dialect.Event{Event: sse.Event{Name: []byte("response.completed"),
		Data: []byte(`{"response":{"output":[{"content":[{"text":"to [EMAIL_1]"}]}]}}`)}}
	r.Event(&ev, provider.FormatOpenAI)
	if !strings.Contains(string(ev.Data), "to ana@example.com") {
		t.Fatalf("%s", ev.Data)
	}
}

func TestCustomDetectorAndRegions(t *testing.T) {
	d := NewDetectors([]string{"badge", "phone"}, []Custom{{Name: "badge", Re: regexp.MustCompile(`B-\d{4}`)}}, []string{"FR"})
	ms := d.Find("badge B-1234, tél 01 42 68 53 00, US (415) 555-2671")
	var names []string
	for _, m := range ms {
		names = append(names, m.Detector)
	}
	// FR only: the French national number is found, the US one is not.
	if strings.Join(names, ",") != "badge,phone" {
		t.Fatalf("%v", ms)
	}
}

// A placeholder the client wrote itself is never handed out, so restoring
// leaves the client's own text alone.
func TestPlaceholderAvoidsClientText(t *testing.T) {
	d := NewDetectors([]string{"email"}, nil, nil)
	m := &masker{d: d, rules: maskAll, on: 1}
	body := []byte(`{"messages":[{"role":"user","content":"template [EMAIL_1] for ana@example.com"}]}`)
	out := m.mask(body, m.detect(body))
	if !strings.Contains(string(out), "template [EMAIL_1] for [EMAIL_2]") {
		t.Fatalf("%s", out)
	}
	if got := m.vault.Restore("[EMAIL_1] / [EMAIL_2]", false); got != "[EMAIL_1] / ana@example.com" {
		t.Fatalf("%q", got)
	}
}

func TestMayHold(t *testing.T) {
	for data, want := range map[string]bool{
		`{"choices":[{"index":0,"delta":{"content":"hello"}}]}`:         false,
		`{"choices":[{"index":0,"delta":{"content":"see [EMAIL_1]"}}]}`: true,
		`{"choices":[{"index":0,"delta":{"content":"list:["}}]}`:        true,
		`{"choices":[{"index":0,"delta":{"content":"["}}]}`:             true,
		`[`:              true,
		`{"choices":[]}`: false,
	} {
		if got := mayHold([]byte(data)); got != want {
			t.Errorf("mayHold(%s) = %v", data, got)
		}
	}
}

// A native Anthropic stream: text deltas are restored per content block
// with placeholders split across events; what a block still holds at its
// end (a '[' that began no placeholder) is released as a text delta of its
// own before the block's content_block_stop.
func TestRestoreAnthropicStream(t *testing.T) {
	r := NewRestorer(testVault())
	delta := func(i int, text string) sse.Event {
		return sse.Event{Name: []byte("content_block_delta"),
			Data: []byte(`{"type":"content_block_delta","index":` + strconv.Itoa(i) + `,"delta":{"type":"text_delta","text":"` + text + `"}}`)}
	}
	stop := func(i int) sse.Event {
		return sse.Event{Name: []byte("content_block_stop"), Data: []byte(`{"type":"content_block_stop","index":` + strconv.Itoa(i) + `}`)}
	}
	events := []sse.Event{delta(0, "to [EMA"), delta(0, "IL_1] and [PH"), delta(0, "ONE_1"), delta(0, "] ["), stop(0),
		{Name: []byte("content_block_delta"), Data: []byte(`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"to\":\"[EMAIL_1]\"}"}}`)},
		stop(1)}
	var text, args strings.Builder
	var names []string
	write := func(ev sse.Event) {
		names = append(names, string(ev.Name))
		d := gjson.GetBytes(ev.Data, "delta")
		text.WriteString(d.Get("text").Str)
		args.WriteString(d.Get("partial_json").Str)
	}
	for _, e := range events {
		ev := dialect.Event{Event: e}
		if rel, ok := r.Release(&ev, provider.FormatAnthropic); ok {
			write(rel)
		}
		r.Event(&ev, provider.FormatAnthropic)
		write(ev.Event)
	}
	if got := text.String(); got != `to ana@example.com and +44 "20" 7946 0958 [` {
		t.Fatalf("text %q", got)
	}
	if got := args.String(); got != `{"to":"ana@example.com"}` {
		t.Fatalf("tool input %q", got)
	}
	want := []string{"content_block_delta", "content_block_delta", "content_block_delta", "content_block_delta",
		"content_block_delta", "content_block_stop", "content_block_delta", "content_block_stop"}
	if !slices.Equal(names, want) {
		t.Fatalf("events %v", names)
	}
}

// responsesStream runs parts through a restorer as a Responses stream's
// output_text.delta events of output item 1, then the events that end
// the text, asking Release first as the gateway does; it returns the
// text the deltas carry, the done event's text and the event names.
func responsesStream(v *Vault, parts []string) (string, string, []string) {
	r := NewRestorer(v)
	var deltas strings.Builder
	var done string
	var names []string
	full := strings.Join(parts, "")
	write := func(ev sse.Event) {
		names = append(names, string(ev.Name))
		switch string(ev.Name) {
		case "response.output_text.delta":
			deltas.WriteString(gjson.GetBytes(ev.Data, "delta").Str)
		case "response.output_text.done":
			done = gjson.GetBytes(ev.Data, "text").Str
		}
	}
	events := []sse.Event{{Name: []byte("response.output_item.added"), Data: []byte(`{"type":"response.output_item.added","output_index":1,"item":{"id":"msg_1","type":"message"}}`)}}
	for i, p := range parts {
		events = append(events, sse.Event{Name: []byte("response.output_text.delta"),
			Data: []byte(`{"type":"response.output_text.delta","item_id":"msg_1","output_index":1,"content_index":0,"delta":"` +
				string(appendEscaped(nil, p)) + `","sequence_number":` + strconv.Itoa(i+2) + `}`)})
	}
	n := strconv.Itoa(len(parts) + 2)
	events = append(events,
		sse.Event{Name: []byte("response.output_text.done"), Data: []byte(`{"type":"response.output_text.done","item_id":"msg_1","output_index":1,"content_index":0,"text":"` +
			string(appendEscaped(nil, full)) + `","sequence_number":` + n + `}`)},
		sse.Event{Name: []byte("response.content_part.done"), Data: []byte(`{"type":"response.content_part.done","item_id":"msg_1","output_index":1,"content_index":0}`)},
		sse.Event{Name: []byte("response.output_item.done"), Data: []byte(`{"type":"response.output_item.done","output_index":1,"item":{"id":"msg_1"}}`)})
	for _, e := range events {
		ev := dialect.Event{Event: e}
		if rel, ok := r.Release(&ev, provider.FormatOpenAI); ok {
			if !gjson.ValidBytes(rel.Data) || gjson.GetBytes(rel.Data, "item_id").Str != "msg_1" || gjson.GetBytes(rel.Data, "output_index").Int() != 1 ||
				gjson.GetBytes(rel.Data, "sequence_number").Str != n && gjson.GetBytes(rel.Data, "sequence_number").Raw != n {
				panic("released event: " + string(rel.Data))
			}
			write(rel)
		}
		r.Event(&ev, provider.FormatOpenAI)
		write(ev.Event)
	}
	return deltas.String(), done, names
}

// TestRestoreResponsesTail: a Responses stream ending with text held back
// (a possible placeholder at the last delta's end) releases it as a delta
// before response.output_text.done, at every split of the answer.
func TestRestoreResponsesTail(t *testing.T) {
	v := testVault()
	for _, c := range []struct{ answer, want string }{
		{"Mail [EMAIL_1] or [PHONE_1], not [EMAIL_9] [", `Mail ana@example.com or +44 "20" 7946 0958, not [EMAIL_9] [`},
		{"card [CARD_1]", "card 4111 1111 1111 1111"},
		{"ends [EMAIL_", "ends [EMAIL_"},
	} {
		for i := 0; i <= len(c.answer); i++ {
			for j := i; j <= len(c.answer); j += 3 {
				got, done, _ := responsesStream(v, []string{c.answer[:i], c.answer[i:j], c.answer[j:]})
				if got != c.want || done != c.want {
					t.Fatalf("split at %d, %d: deltas %q, done %q", i, j, got, done)
				}
			}
		}
		bytewise := make([]string, len(c.answer))
		for i := range c.answer {
			bytewise[i] = c.answer[i : i+1]
		}
		if got, _, _ := responsesStream(v, bytewise); got != c.want {
			t.Fatalf("byte by byte: %q", got)
		}
	}
	_, _, names := responsesStream(v, []string{"to [EMA"})
	if want := []string{"response.output_item.added", "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
		"response.content_part.done", "response.output_item.done"}; !slices.Equal(names, want) {
		t.Fatalf("events %v", names)
	}
}
