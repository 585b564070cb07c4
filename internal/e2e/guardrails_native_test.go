package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

func anthropicClient(gw *Gateway, prefix string) anthropic.Client {
	return anthropic.NewClient(aoption.WithBaseURL(gw.URL+prefix), aoption.WithAPIKey("client-key"), aoption.WithMaxRetries(0),
		aoption.WithRequestTimeout(30*time.Second))
}

// TestGuardrailsNativeTruncateRoute: a native Anthropic request that
// truncation cuts, or that a route rule sends to a local Anthropic model,
// reaches its native target as the client's own body: top_k, thinking
// and cache_control intact, the same messages dropped as the OpenAI view
// would, tool_use and tool_result together.
func TestGuardrailsNativeTruncateRoute(t *testing.T) {
	gw, cloud, local := startGuardrails(t)
	ctx := context.Background()
	native := func(t *testing.T, up string) {
		t.Helper()
		if gjson.Get(up, "top_k").Int() != 7 || gjson.Get(up, "thinking.budget_tokens").Int() != 1024 ||
			gjson.Get(up, "system.0.cache_control.type").Str != "ephemeral" {
			t.Errorf("upstream body lost the client's native members: %s", up)
		}
	}
	system := []anthropic.TextBlockParam{{Text: "Answer in French.", CacheControl: anthropic.NewCacheControlEphemeralParam()}}

	t.Run("truncate", func(t *testing.T) {
		var msgs []anthropic.MessageParam
		for i := 0; i < 30; i++ {
			msgs = append(msgs, anthropic.NewUserMessage(anthropic.NewTextBlock("question "+strings.Repeat("blah ", 6))),
				anthropic.NewAssistantMessage(anthropic.NewTextBlock("answer "+strings.Repeat("words ", 6))))
		}
		msgs = append(msgs,
			anthropic.NewUserMessage(anthropic.NewTextBlock("what is the weather?")),
			anthropic.NewAssistantMessage(anthropic.NewToolUseBlock("toolu_1", map[string]any{"city": "Paris"}, "weather")),
			anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_1", "sunny", false)),
			anthropic.NewAssistantMessage(anthropic.NewTextBlock("It is sunny.")),
			anthropic.NewUserMessage(anthropic.NewTextBlock("the latest question")))
		params := anthropic.MessageNewParams{Model: "claude-small", MaxTokens: 50, TopK: anthropic.Int(7), System: system,
			Thinking: anthropic.ThinkingConfigParamOfEnabled(1024), Messages: msgs}
		ac := anthropicClient(gw, "/trunc")
		for _, stream := range []bool{false, true} {
			var resp *http.Response
			if stream {
				st := ac.Messages.NewStreaming(ctx, params, aoption.WithResponseInto(&resp))
				for st.Next() {
				}
				if err := st.Err(); err != nil {
					t.Fatal(err)
				}
			} else if _, err := ac.Messages.New(ctx, params, aoption.WithResponseInto(&resp)); err != nil {
				t.Fatal(err)
			}
			if tr := resp.Header.Get("X-AI-Gateway-Truncated"); !strings.HasPrefix(tr, "messages=") {
				t.Fatalf("X-AI-Gateway-Truncated = %q", tr)
			}
			up := upstreamBody(cloud)
			native(t, up)
			kept := gjson.Get(up, "messages").Array()
			if len(kept) >= len(msgs) || kept[0].Get("role").Str != "user" || kept[len(kept)-1].Get("content.0.text").Str != "the latest question" {
				t.Fatalf("upstream got %d of %d messages: %s", len(kept), len(msgs), up)
			}
			if strings.Contains(up, "toolu_1") && (!strings.Contains(up, `"tool_use"`) || !strings.Contains(up, `"tool_result"`)) {
				t.Fatalf("a tool_use was separated from its tool_result: %s", up)
			}
		}
	})

	t.Run("route", func(t *testing.T) {
		params := anthropic.MessageNewParams{Model: "claude-echo", MaxTokens: 64, TopK: anthropic.Int(7), System: system,
			Thinking: anthropic.ThinkingConfigParamOfEnabled(1024),
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("charge 4111 1111 1111 1111 please"))}}
		var resp *http.Response
		before := local.Stats().Total
		rc := anthropicClient(gw, "/routeclaude")
		if _, err := rc.Messages.New(ctx, params, aoption.WithResponseInto(&resp)); err != nil {
			t.Fatal(err)
		}
		if local.Stats().Total != before+1 || resp.Header.Get("X-AI-Gateway-Provider") != "lanclaude" {
			t.Fatalf("the card did not go to the local model (provider %q)", resp.Header.Get("X-AI-Gateway-Provider"))
		}
		up := upstreamBody(local)
		native(t, up)
		if gjson.Get(up, "model").Str != "claude-local" || !strings.Contains(up, "4111 1111 1111 1111") {
			t.Errorf("upstream body: %s", up)
		}
	})
}

// TestGuardrailsTruncateResponsesCompletions: Responses input items are
// cut like chat messages (instructions and developer items kept, a
// function_call with its output); a completions prompt that does not fit
// is refused.
func TestGuardrailsTruncateResponsesCompletions(t *testing.T) {
	gw, cloud, _ := startGuardrails(t)
	ctx := context.Background()
	c := gw.client(option.WithBaseURL(gw.URL + "/trunc/v1/"))

	t.Run("responses", func(t *testing.T) {
		items := []string{`{"role":"developer","content":"Be terse."}`}
		for i := 0; i < 30; i++ {
			items = append(items, `{"role":"user","content":"question `+strings.Repeat("blah ", 5)+`"}`,
				`{"type":"message","role":"assistant","content":[{"type":"output_text","text":"answer `+strings.Repeat("words ", 5)+`"}]}`)
		}
		items = append(items, `{"role":"user","content":"weather?"}`,
			`{"type":"function_call","call_id":"call_1","name":"weather","arguments":"{\"city\":\"Paris\"}"}`,
			`{"type":"function_call_output","call_id":"call_1","output":"sunny"}`,
			`{"role":"user","content":"the latest question"}`)
		body := `{"model":"small","instructions":"Answer in French.","input":[` + strings.Join(items, ",") + `]}`
		code, h, resp := post(t, gw.URL+"/trunc/v1/responses", body)
		if code != 200 {
			t.Fatalf("%d %s", code, resp)
		}
		if tr := h.Get("X-AI-Gateway-Truncated"); !strings.HasPrefix(tr, "messages=") {
			t.Fatalf("X-AI-Gateway-Truncated = %q", tr)
		}
		up := upstreamBody(cloud)
		kept := gjson.Get(up, "input").Array()
		if len(kept) >= len(items) || gjson.Get(up, "instructions").Str != "Answer in French." || kept[0].Get("role").Str != "developer" ||
			kept[1].Get("role").Str != "user" || kept[len(kept)-1].Get("content").Str != "the latest question" {
			t.Fatalf("upstream got %d of %d items: %s", len(kept), len(items), up)
		}
		if strings.Contains(up, `"function_call"`) != strings.Contains(up, `"function_call_output"`) {
			t.Fatalf("a function_call was separated from its output: %s", up)
		}
		// Through the SDK, streamed: the same cut.
		st := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "small",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String(strings.Repeat("long ", 600))}})
		for st.Next() {
		}
		var apiErr *openai.Error
		if err := st.Err(); !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "context_length_exceeded" {
			t.Fatalf("an input string too long: %v", err)
		}
	})

	t.Run("completions", func(t *testing.T) {
		before := cloud.Stats().Total
		_, err := c.Completions.New(ctx, openai.CompletionNewParams{Model: "small",
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String(strings.Repeat("long ", 600))}})
		var apiErr *openai.Error
		if err == nil || !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "context_length_exceeded" {
			t.Fatalf("a prompt too long: %v", err)
		}
		if cloud.Stats().Total != before {
			t.Fatal("a prompt that cannot fit reached the upstream")
		}
		if _, err := c.Completions.New(ctx, openai.CompletionNewParams{Model: "small",
			Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Say hi")}}); err != nil {
			t.Fatal(err)
		}
	})
}

// TestGuardrailsResponsesStreamTail: a Responses stream whose answer ends
// with text the restorer holds back (a "[" that could open a placeholder)
// still delivers it, as a last delta before response.output_text.done;
// the placeholders in it come back restored, in the deltas and in the
// done events.
func TestGuardrailsResponsesStreamTail(t *testing.T) {
	gw, cloud, _ := startGuardrails(t)
	const answer = "Write to [EMAIL_1] today, then ["
	const want = "Write to ana.garcia@example.com today, then ["
	ctx := context.Background()
	c := gw.client(option.WithBaseURL(gw.URL + "/mask/v1/"))
	for _, chunks := range []int{1, 4, 9, len(answer)} {
		cloud.Script("tail-model", fakellmBehaviorText(answer, chunks))
		st := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{Model: "gpt-tail",
			Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("My address is ana.garcia@example.com.")}})
		var deltas strings.Builder
		var done, completed string
		for st.Next() {
			switch ev := st.Current(); ev.Type {
			case "response.output_text.delta":
				deltas.WriteString(ev.Delta)
			case "response.output_text.done":
				done = ev.Text
			case "response.completed":
				completed = ev.Response.OutputText()
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if up := upstreamBody(cloud); strings.Contains(up, "ana.garcia@example.com") || !strings.Contains(up, "[EMAIL_1]") {
			t.Fatalf("upstream not masked: %s", up)
		}
		if deltas.String() != want || done != want || completed != want {
			t.Fatalf("%d chunks: deltas %q, done %q, completed %q", chunks, deltas.String(), done, completed)
		}
	}
}

func fakellmBehaviorText(text string, chunks int) fakellm.Behavior {
	return fakellm.Behavior{Text: text, Chunks: chunks}
}
