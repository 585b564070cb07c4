package guardrails

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/tokens"
)

// anthropicHistory builds a native Messages body of about n messages:
// user turns, assistant answers, some through tool_use blocks answered
// by the next user message's tool_result blocks; native members besides.
func anthropicHistory(r *rand.Rand, n int) []byte {
	var msgs []map[string]any
	call := 0
	for len(msgs) < n {
		msgs = append(msgs, map[string]any{"role": "user", "content": sentence(r, 3+r.IntN(40))})
		if r.IntN(3) == 0 {
			call++
			id := fmt.Sprintf("toolu_%d", call)
			msgs = append(msgs,
				map[string]any{"role": "assistant", "content": []any{
					map[string]any{"type": "text", "text": sentence(r, 4)},
					map[string]any{"type": "tool_use", "id": id, "name": "lookup", "input": map[string]any{"q": sentence(r, 3)}}}},
				map[string]any{"role": "user", "content": []any{
					map[string]any{"type": "tool_result", "tool_use_id": id, "content": sentence(r, 5+r.IntN(30))}}})
		}
		msgs = append(msgs, map[string]any{"role": "assistant", "content": []any{map[string]any{"type": "text", "text": sentence(r, 3+r.IntN(60))}}})
	}
	msgs = append(msgs, map[string]any{"role": "user", "content": "the latest question"})
	b, _ := json.Marshal(map[string]any{"model": "claude-sonnet-4-5", "max_tokens": 256, "top_k": 7,
		"thinking": map[string]any{"type": "enabled", "budget_tokens": 1024},
		"system":   []any{map[string]any{"type": "text", "text": "Be terse. " + sentence(r, 10), "cache_control": map[string]any{"type": "ephemeral"}}},
		"messages": msgs})
	return b
}

func TestTruncationAnthropicNative(t *testing.T) {
	c := tokens.For("claude-sonnet-4-5")
	for _, n := range []int{10, 100, 1000} {
		for _, window := range []int{1500, 4000} {
			for _, st := range []Strategy{DropOldest, Middle} {
				r := rand.New(rand.NewPCG(uint64(n), uint64(window)))
				in := anthropicHistory(r, n)
				nmsgs := int(gjson.GetBytes(in, "messages.#").Int())
				cut, oe := Truncation{Strategy: st}.ApplyShape(ShapeAnthropic, in, c, window, 256, nmsgs)
				if oe != nil {
					t.Fatalf("n=%d window=%d: %v", n, window, oe)
				}
				out := gjson.ParseBytes(cut.Body)
				// The native members travel as they were.
				for _, k := range []string{"top_k", "thinking", "system", "max_tokens", "model"} {
					if out.Get(k).Raw != gjson.GetBytes(in, k).Raw {
						t.Fatalf("%s changed: %s", k, out.Get(k).Raw)
					}
				}
				kept := out.Get("messages").Array()
				if len(kept)+cut.Messages != nmsgs {
					t.Fatalf("kept %d + dropped %d != %d", len(kept), cut.Messages, nmsgs)
				}
				if c.Budgeted(1<<30).Prompt(cut.Body)+256 > window+16 { // Prompt frames the system member too
					t.Fatalf("n=%d window=%d: kept prompt too long", n, window)
				}
				if kept[0].Get("role").Str != "user" || kept[0].Get("content.0.type").Str == "tool_result" {
					t.Fatalf("starts with %s", kept[0].Raw)
				}
				if kept[len(kept)-1].Get("content").Str != "the latest question" {
					t.Fatal("the latest message was dropped")
				}
				uses := map[string]bool{}
				for _, m := range kept {
					m.Get("content").ForEach(func(_, b gjson.Result) bool {
						switch b.Get("type").Str {
						case "tool_use":
							uses[b.Get("id").Str] = true
						case "tool_result":
							if !uses[b.Get("tool_use_id").Str] {
								t.Fatalf("tool_result %s kept without its tool_use", b.Get("tool_use_id").Str)
							}
							delete(uses, b.Get("tool_use_id").Str)
						}
						return true
					})
				}
				if len(uses) > 0 {
					t.Fatalf("tool_use kept without its result: %v", uses)
				}
			}
		}
	}
}

// responsesHistory builds a Responses body: instructions, a developer
// message, then user and assistant messages, some answered through
// reasoning, parallel function calls and their outputs.
func responsesHistory(r *rand.Rand, n int) []byte {
	items := []any{map[string]any{"role": "developer", "content": "Policy: " + sentence(r, 6)}}
	call := 0
	for len(items) < n {
		items = append(items, map[string]any{"role": "user", "content": sentence(r, 3+r.IntN(40))})
		if r.IntN(3) == 0 {
			items = append(items, map[string]any{"type": "reasoning", "id": fmt.Sprintf("rs_%d", call), "summary": []any{}})
			k := 1 + r.IntN(2)
			for j := 0; j < k; j++ {
				items = append(items, map[string]any{"type": "function_call", "call_id": fmt.Sprintf("call_%d_%d", call, j), "name": "lookup",
					"arguments": `{"q":"` + sentence(r, 3) + `"}`})
			}
			for j := 0; j < k; j++ {
				items = append(items, map[string]any{"type": "function_call_output", "call_id": fmt.Sprintf("call_%d_%d", call, j),
					"output": sentence(r, 5+r.IntN(30))})
			}
			call++
		}
		items = append(items, map[string]any{"type": "message", "role": "assistant",
			"content": []any{map[string]any{"type": "output_text", "text": sentence(r, 3+r.IntN(60))}}})
	}
	items = append(items, map[string]any{"role": "user", "content": "the latest question"})
	b, _ := json.Marshal(map[string]any{"model": "gpt-4o", "instructions": "Be terse.", "input": items})
	return b
}

func TestTruncationResponses(t *testing.T) {
	c := tokens.For("gpt-4o")
	for _, n := range []int{10, 100, 1000} {
		for _, window := range []int{1500, 4000} {
			r := rand.New(rand.NewPCG(uint64(n), uint64(window)))
			in := responsesHistory(r, n)
			nitems := int(gjson.GetBytes(in, "input.#").Int())
			cut, oe := Truncation{}.ApplyShape(ShapeResponses, in, c, window, 256, nitems)
			if oe != nil {
				t.Fatalf("n=%d window=%d: %v", n, window, oe)
			}
			if n := c.Budgeted(1 << 30).Prompt(cut.Body); n+256 > window {
				t.Fatalf("kept prompt %d tokens", n)
			}
			out := gjson.ParseBytes(cut.Body)
			if out.Get("instructions").Str != "Be terse." {
				t.Fatal("instructions dropped")
			}
			kept := out.Get("input").Array()
			if len(kept)+cut.Messages != nitems {
				t.Fatalf("kept %d + dropped %d != %d", len(kept), cut.Messages, nitems)
			}
			if kept[0].Get("role").Str != "developer" || kept[1].Get("role").Str != "user" {
				t.Fatalf("starts with %s, %s", kept[0].Raw, kept[1].Raw)
			}
			if kept[len(kept)-1].Get("content").Str != "the latest question" {
				t.Fatal("the latest item was dropped")
			}
			calls := map[string]bool{}
			for _, it := range kept {
				switch it.Get("type").Str {
				case "function_call":
					calls[it.Get("call_id").Str] = true
				case "function_call_output":
					if !calls[it.Get("call_id").Str] {
						t.Fatalf("output %s kept without its call", it.Get("call_id").Str)
					}
					delete(calls, it.Get("call_id").Str)
				}
			}
			if len(calls) > 0 {
				t.Fatalf("calls kept without their outputs: %v", calls)
			}
		}
	}
	// An input string has nothing to drop: it fits or is refused.
	long := []byte(`{"model":"gpt-4o","input":"` + sentence(rand.New(rand.NewPCG(1, 2)), 3000) + `"}`)
	if _, oe := (Truncation{}).ApplyShape(ShapeResponses, long, c, 1000, 0, 1); oe == nil || oe.Code != "context_length_exceeded" || oe.Param != "input" {
		t.Fatalf("a long input string: %+v", oe)
	}
}

func TestFitsCompletions(t *testing.T) {
	c := tokens.For("gpt-3.5-turbo-instruct")
	short := []byte(`{"model":"gpt-3.5-turbo-instruct","prompt":"Say hi"}`)
	if oe := (Truncation{}).Fits(short, c, 4096, 0); oe != nil {
		t.Fatal(oe)
	}
	long := []byte(`{"model":"gpt-3.5-turbo-instruct","prompt":"` + sentence(rand.New(rand.NewPCG(1, 2)), 4000) + `"}`)
	for _, st := range []Strategy{DropOldest, Middle, Error} {
		if oe := (Truncation{Strategy: st}).Fits(long, c, 4096, 0); oe == nil || oe.Status != 400 || oe.Code != "context_length_exceeded" || oe.Param != "prompt" {
			t.Fatalf("%v: %+v", st, oe)
		}
	}
	// The reserve counts: a prompt that fits alone does not with max_tokens.
	mid := []byte(`{"model":"gpt-3.5-turbo-instruct","prompt":"` + sentence(rand.New(rand.NewPCG(1, 2)), 500) + `"}`)
	n := c.Prompt(mid)
	if (Truncation{}).Fits(mid, c, n+10, 10) != nil || (Truncation{}).Fits(mid, c, n+10, 11) == nil {
		t.Fatalf("the reserve is not counted (prompt %d)", n)
	}
}
