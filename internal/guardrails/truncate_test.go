package guardrails

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/tokens"
)

var words = strings.Fields("the a gateway model token window history user assistant tool call result order shipped " +
	"invoice weather Paris Berlin 42 2026 function JSON stream context budget limit privacy detector quick brown fox")

func sentence(r *rand.Rand, n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = words[r.IntN(len(words))]
	}
	return strings.Join(w, " ")
}

// history builds a chat request of about n messages: a system message,
// then user turns answered by the assistant, some through tool calls with
// one or two results; a second system message sits in the middle.
func history(r *rand.Rand, n int) []byte {
	var msgs []map[string]any
	msgs = append(msgs, map[string]any{"role": "system", "content": "You are terse. " + sentence(r, 8)})
	call := 0
	for len(msgs) < n {
		if len(msgs) == n/2 {
			msgs = append(msgs, map[string]any{"role": "developer", "content": "Policy: " + sentence(r, 5)})
		}
		msgs = append(msgs, map[string]any{"role": "user", "content": sentence(r, 3+r.IntN(40))})
		if r.IntN(3) == 0 {
			k := 1 + r.IntN(2)
			var calls []map[string]any
			var results []map[string]any
			for j := 0; j < k; j++ {
				call++
				id := fmt.Sprintf("call_%d", call)
				calls = append(calls, map[string]any{"id": id, "type": "function",
					"function": map[string]any{"name": "lookup", "arguments": `{"q":"` + sentence(r, 3) + `"}`}})
				results = append(results, map[string]any{"role": "tool", "tool_call_id": id, "content": sentence(r, 5+r.IntN(30))})
			}
			msgs = append(msgs, map[string]any{"role": "assistant", "content": nil, "tool_calls": calls})
			for _, res := range results {
				msgs = append(msgs, res)
			}
		}
		msgs = append(msgs, map[string]any{"role": "assistant", "content": sentence(r, 3+r.IntN(60))})
	}
	b, _ := json.Marshal(map[string]any{"model": "gpt-4o", "messages": msgs})
	return b
}

// checkKept verifies what a truncation kept: it fits by exact count, every
// system message is kept, tool calls and results are together, the
// conversation starts with a user message and the latest message is kept.
func checkKept(t *testing.T, in, out []byte, c tokens.Counter, window, reserve int) {
	t.Helper()
	if n := c.Budgeted(1 << 30).Chat(out); n+reserve > window {
		t.Fatalf("kept prompt has %d tokens + %d reserved > window %d", n, reserve, window)
	}
	orig := gjson.GetBytes(in, "messages").Array()
	kept := gjson.GetBytes(out, "messages").Array()
	var sys, keptSys int
	for _, m := range orig {
		if r := m.Get("role").Str; r == "system" || r == "developer" {
			sys++
		}
	}
	// Kept messages are a subsequence of the original.
	j := 0
	for _, m := range kept {
		for j < len(orig) && orig[j].Raw != m.Raw {
			j++
		}
		if j == len(orig) {
			t.Fatalf("kept message %s is not in order in the original", m.Raw)
		}
		j++
	}
	if kept[len(kept)-1].Raw != orig[len(orig)-1].Raw {
		t.Fatal("the latest message was dropped")
	}
	calls := map[string]bool{}
	results := map[string]bool{}
	first := ""
	for _, m := range kept {
		role := m.Get("role").Str
		switch role {
		case "system", "developer":
			keptSys++
			continue
		case "tool":
			results[m.Get("tool_call_id").Str] = true
			if !calls[m.Get("tool_call_id").Str] {
				t.Fatalf("tool result %s kept without its call", m.Get("tool_call_id").Str)
			}
		case "assistant":
			m.Get("tool_calls").ForEach(func(_, tc gjson.Result) bool {
				calls[tc.Get("id").Str] = true
				return true
			})
		}
		if first == "" {
			first = role
		}
	}
	for id := range calls {
		if !results[id] {
			t.Fatalf("tool call %s kept without its result", id)
		}
	}
	if keptSys != sys {
		t.Fatalf("%d of %d system messages kept", keptSys, sys)
	}
	if first != "user" {
		t.Fatalf("the kept conversation starts with %q", first)
	}
}

func TestTruncationProperties(t *testing.T) {
	c := tokens.For("gpt-4o")
	for _, n := range []int{10, 100, 1000, 10000} {
		for _, window := range []int{1500, 4000, 16000} {
			for _, st := range []Strategy{DropOldest, Middle} {
				seeds := 4
				if n == 10000 {
					seeds = 1
				}
				for seed := 0; seed < seeds; seed++ {
					r := rand.New(rand.NewPCG(uint64(n), uint64(seed*31+window)))
					in := history(r, n)
					nmsgs := int(gjson.GetBytes(in, "messages.#").Int())
					tr := Truncation{Strategy: st, ReserveOutput: 256}
					cut, oe := tr.Apply(in, c, window, 0, nmsgs)
					if oe != nil {
						// Refused: then even the system messages and the
						// latest user turn do not fit.
						if oe.Code != "context_length_exceeded" {
							t.Fatalf("n=%d window=%d: %v", n, window, oe)
						}
						continue
					}
					checkKept(t, in, cut.Body, c, window, 256)
					if got := gjson.GetBytes(cut.Body, "messages.#").Int(); int(got)+cut.Messages != nmsgs {
						t.Fatalf("kept %d + dropped %d != %d", got, cut.Messages, nmsgs)
					}
					if c.Budgeted(1<<30).Chat(in)+256 > window && (cut.Messages == 0 || cut.Tokens == 0) {
						t.Fatalf("n=%d window=%d: too long but nothing cut", n, window)
					}
					if st == Middle && cut.Messages > 0 {
						firstUser := ""
						gjson.GetBytes(in, "messages").ForEach(func(_, m gjson.Result) bool {
							if m.Get("role").Str == "user" {
								firstUser = m.Raw
								return false
							}
							return true
						})
						if !strings.Contains(string(cut.Body), firstUser) {
							t.Logf("n=%d window=%d: middle dropped the first user turn (it did not fit with the latest)", n, window)
						}
					}
				}
			}
		}
	}
}

func TestTruncationRefuses(t *testing.T) {
	c := tokens.For("gpt-4o")
	long := strings.Repeat("word ", 3000)
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},{"role":"assistant","content":"hello"},{"role":"user","content":"` + long + `"}]}`)
	for _, st := range []Strategy{DropOldest, Middle, Error} {
		_, oe := Truncation{Strategy: st}.Apply(body, c, 2000, 0, 4)
		if oe == nil || oe.Status != 400 || oe.Code != "context_length_exceeded" {
			t.Fatalf("%v: %+v", st, oe)
		}
	}
	// The error strategy refuses what the others would cut.
	short := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"` + long + `"},{"role":"assistant","content":"ok"},{"role":"user","content":"and now?"}]}`)
	if _, oe := (Truncation{Strategy: Error}).Apply(short, c, 2000, 0, 3); oe == nil {
		t.Fatal("error strategy did not refuse")
	}
	cut, oe := Truncation{}.Apply(short, c, 2000, 0, 3)
	if oe != nil || cut.Messages != 2 {
		t.Fatalf("drop_oldest: %+v %v", cut, oe)
	}
	// A request that fits is left as it is, without counting.
	small := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`)
	if cut, oe := (Truncation{}).Apply(small, c, 128000, 0, 1); oe != nil || &cut.Body[0] != &small[0] {
		t.Fatal("a fitting request was rewritten")
	}
}

func TestWindow(t *testing.T) {
	for m, want := range map[string]int{"gpt-4o-mini": 128000, "gpt-4": 8192, "gpt-4.1": 1047576, "claude-sonnet-4-5": 200000,
		"gemini-2.5-pro": 1048576, "gemini-1.5-pro-002": 2097152, "mistral-large-latest": 131072, "llama3.1:8b": 131072,
		"meta-llama/Llama-3.3-70B-Instruct": 131072, "unknown-model": 0, "o3-mini": 200000} {
		if got := Window(m); got != want {
			t.Errorf("Window(%q) = %d, want %d", m, got, want)
		}
	}
}
