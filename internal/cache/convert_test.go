package cache

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
)

// TestChatEventsFromBodyEncoding: the chunks a body is streamed as decode
// to what encoding/json writes for the same chunk documents (chatDoc with
// a delta), for every kind of chunk and for text that needs escaping.
func TestChatEventsFromBodyEncoding(t *testing.T) {
	body := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"m","system_fingerprint":"fp_1",
		"choices":[
			{"index":0,"message":{"role":"assistant","content":"Hi <b> & \"quoted\"\n\ttab é 😀 \u2028 end","reasoning_content":"Think <first>.",
				"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},{"function":{"arguments":""}}]},"finish_reason":"tool_calls"},
			{"index":1,"message":{"role":"assistant","content":null,"refusal":"No.","reasoning":"Why"},"finish_reason":null}],
		"usage":{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}}`)
	events, usageLast := chatEventsFromBody(body)
	if m := markUsageOnly(provider.FormatOpenAI, events); !usageLast || len(m) != len(events) || !m[len(m)-1] || slices.Contains(m[:len(m)-1], true) {
		t.Fatalf("usageLast %v, marks %v", usageLast, m)
	}

	// The reference: the same chunks through encoding/json.
	base := chatDoc{ID: "chatcmpl-1", Object: "chat.completion.chunk", Created: 1700000000, Model: "m", SystemFingerprint: "fp_1"}
	chunk := func(i int, d *chatDelta, finish string) []byte {
		doc := base
		var f *string
		if finish != "" {
			f = &finish
		}
		doc.Choices = []chatChoice{{Index: i, Delta: d, Logprobs: nullJSON, FinishReason: f}}
		b, err := json.Marshal(&doc)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	zero, one := 0, 1
	var want [][]byte
	want = append(want, chunk(0, &chatDelta{Role: "assistant"}, ""))
	for _, p := range pieces("Think <first>.") {
		want = append(want, chunk(0, &chatDelta{reasoning: p, reasoningKey: "reasoning_content"}, ""))
	}
	for _, p := range pieces("Hi <b> & \"quoted\"\n\ttab é 😀 \u2028 end") {
		want = append(want, chunk(0, &chatDelta{Content: p}, ""))
	}
	want = append(want,
		chunk(0, &chatDelta{ToolCalls: []toolCall{{Index: &zero, ID: "call_1", Type: "function", Function: toolFunction{Name: "f", Arguments: `{"a":1}`}}}}, ""),
		chunk(0, &chatDelta{ToolCalls: []toolCall{{Index: &one}}}, ""),
		chunk(0, &chatDelta{}, "tool_calls"),
		chunk(1, &chatDelta{Role: "assistant"}, ""))
	for _, p := range pieces("Why") {
		want = append(want, chunk(1, &chatDelta{reasoning: p, reasoningKey: "reasoning"}, ""))
	}
	want = append(want, chunk(1, &chatDelta{Refusal: "No."}, ""), chunk(1, &chatDelta{}, "stop"))
	usage := base
	usage.Choices = []chatChoice{}
	usage.Usage = json.RawMessage(`{"prompt_tokens":7,"completion_tokens":5,"total_tokens":12}`)
	u, _ := json.Marshal(&usage)
	want = append(want, u)

	if len(events) != len(want) {
		t.Fatalf("%d events, want %d", len(events), len(want))
	}
	for i, ev := range events {
		if !json.Valid(ev.Data) {
			t.Fatalf("event %d is not JSON: %s", i, ev.Data)
		}
		var got, exp any
		_ = json.Unmarshal(ev.Data, &got)
		_ = json.Unmarshal(want[i], &exp)
		if !reflect.DeepEqual(got, exp) {
			t.Errorf("event %d:\n got %s\nwant %s", i, ev.Data, want[i])
		}
		if cap(ev.Data) != len(ev.Data) {
			t.Errorf("event %d shares capacity with the next", i)
		}
	}
	// And back to the same body.
	if got := gjson.GetBytes(chatBodyFromEvents(events), "choices.0.message.content").Str; got != "Hi <b> & \"quoted\"\n\ttab é 😀 \u2028 end" {
		t.Fatalf("round trip content %q", got)
	}
}

// BenchmarkChatEventsFromBody: a stored body answering a stream request
// (20 words, usage), as on every such hit.
func BenchmarkChatEventsFromBody(b *testing.B) {
	body := []byte(`{"id":"chatcmpl-5ecaee7e89c3292800000001","object":"chat.completion","created":1796186494,"model":"fake-model","system_fingerprint":"fp_fakellm","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from bench word3 word4 word5 word6 word7 word8 word9 word10 word11 word12 word13 word14 word15 word16 word17 word18 word19 word20","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":111,"completion_tokens":20,"total_tokens":131}}`)
	b.ReportAllocs()
	for b.Loop() {
		if ev, _ := chatEventsFromBody(body); len(ev) != 24 { // role, 21 words, finish, usage
			b.Fatal("events")
		}
	}
}

// BenchmarkChatBodyFromEvents: a stored stream answering a body request.
func BenchmarkChatBodyFromEvents(b *testing.B) {
	body := []byte(`{"id":"chatcmpl-5ecaee7e89c3292800000001","object":"chat.completion","created":1796186494,"model":"fake-model","system_fingerprint":"fp_fakellm","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from bench word3 word4 word5 word6 word7 word8 word9 word10 word11 word12 word13 word14 word15 word16 word17 word18 word19 word20","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":111,"completion_tokens":20,"total_tokens":131}}`)
	events, _ := chatEventsFromBody(body)
	b.ReportAllocs()
	for b.Loop() {
		if len(chatBodyFromEvents(events)) == 0 {
			b.Fatal("body")
		}
	}
}
