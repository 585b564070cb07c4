package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// Inbound Anthropic Messages API: the official Anthropic Go SDK talks to
// the gateway's /v1/messages; the routing table sends it to an Anthropic
// target (native pass-through) or an OpenAI-compatible one (translated).
const messagesCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider oai {
			base_url {{.Fake}}/v1
		}
		provider claude {
			type anthropic
			base_url {{.Fake}}
			api_key upstream-anthropic-key
		}
		model via-openai {
			target oai fake-model
		}
		model via-anthropic {
			target claude claude-native
			retries 1
		}
		model tools-openai {
			target oai tool-model
		}
		model tools-anthropic {
			target claude tool-model
		}
		model cut-openai {
			target oai cut-model
		}
		model cut-anthropic {
			target claude cut-model
		}
		model limited {
			target claude limited-model
		}
		retry_backoff 10ms
	}
}
:{{.Port}} {
	ai_gateway
}
`

func TestMessagesInbound(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	fake.Script("tool-model", fakellm.Behavior{ToolCall: true})
	fake.Script("cut-model", fakellm.Behavior{FailAfter: 2, Chunks: 8})
	fake.Script("limited-model", fakellm.Behavior{Status: 429, RetryAfter: "0"})
	gw := startGateway(t, messagesCaddyfile, map[string]any{"Fake": fake.URL})
	c := anthropic.NewClient(aoption.WithBaseURL(gw.URL), aoption.WithAPIKey("client-key"), aoption.WithMaxRetries(0),
		aoption.WithRequestTimeout(30*time.Second))
	ctx := context.Background()
	hello := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello there"))}

	for _, model := range []string{"via-openai", "via-anthropic"} {
		t.Run(model, func(t *testing.T) {
			t.Run("message", func(t *testing.T) {
				var resp *http.Response
				msg, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: 64, Messages: hello},
					aoption.WithResponseInto(&resp))
				if err != nil {
					t.Fatal(err)
				}
				if len(msg.Content) != 1 || !strings.HasPrefix(msg.Content[0].Text, "Hello from fake") || msg.StopReason != "end_turn" {
					t.Fatalf("message %+v", msg)
				}
				if msg.Usage.InputTokens == 0 || msg.Usage.OutputTokens != 5 {
					t.Fatalf("usage %+v", msg.Usage)
				}
				if resp.Header.Get("X-AI-Gateway-Attempts") != "1" {
					t.Fatalf("headers %v", resp.Header)
				}
			})
			t.Run("stream accumulated", func(t *testing.T) {
				stream := c.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: 64, Messages: hello})
				var msg anthropic.Message
				for stream.Next() {
					if err := msg.Accumulate(stream.Current()); err != nil {
						t.Fatal(err)
					}
				}
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				if len(msg.Content) != 1 || !strings.HasPrefix(msg.Content[0].Text, "Hello from fake") || msg.StopReason != "end_turn" || msg.Usage.OutputTokens != 5 {
					t.Fatalf("accumulated %+v", msg)
				}
			})
		})
	}

	for _, model := range []string{"tools-openai", "tools-anthropic"} {
		t.Run(model+" tool round trip", func(t *testing.T) {
			tools := []anthropic.ToolUnionParam{{OfTool: &anthropic.ToolParam{
				Name: "get_weather",
				InputSchema: anthropic.ToolInputSchemaParam{
					Properties: map[string]any{"location": map[string]any{"type": "string"}},
				},
			}}}
			for _, stream := range []bool{false, true} {
				params := anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: 64, Messages: hello, Tools: tools}
				var msg anthropic.Message
				if stream {
					s := c.Messages.NewStreaming(ctx, params)
					for s.Next() {
						if err := msg.Accumulate(s.Current()); err != nil {
							t.Fatal(err)
						}
					}
					if err := s.Err(); err != nil {
						t.Fatal(err)
					}
				} else {
					m, err := c.Messages.New(ctx, params)
					if err != nil {
						t.Fatal(err)
					}
					msg = *m
				}
				var use *anthropic.ContentBlockUnion
				for i := range msg.Content {
					if msg.Content[i].Type == "tool_use" {
						use = &msg.Content[i]
					}
				}
				if use == nil || use.Name != "get_weather" || !json.Valid(use.Input) || msg.StopReason != "tool_use" {
					t.Fatalf("stream=%v: no tool_use: %+v", stream, msg)
				}
				// Send the tool result back; the answer is text.
				params.Messages = append(append([]anthropic.MessageParam{}, hello...), msg.ToParam(),
					anthropic.NewUserMessage(anthropic.NewToolResultBlock(use.ID, "18°C and sunny", false)))
				params.Tools = nil
				params.Model = "via-" + strings.TrimPrefix(model, "tools-")
				final, err := c.Messages.New(ctx, params)
				if err != nil {
					t.Fatal(err)
				}
				if final.StopReason != "end_turn" || !strings.HasPrefix(final.Content[0].Text, "Hello") {
					t.Fatalf("final %+v", final)
				}
				body := lastBody(fake, map[string]string{"via-openai": "fake-model", "via-anthropic": "claude-native"}[string(params.Model)])
				if model == "tools-openai" {
					if gjson.Get(body, `messages.#(role=="tool").tool_call_id`).Str != use.ID {
						t.Fatalf("tool result not translated: %s", body)
					}
				} else if gjson.Get(body, `messages.2.content.0.tool_use_id`).Str != use.ID {
					t.Fatalf("tool result not passed through: %s", body)
				}
			}
		})
	}

	t.Run("native pass-through sends the gateway's key", func(t *testing.T) {
		if _, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: "via-anthropic", MaxTokens: 16, Messages: hello}); err != nil {
			t.Fatal(err)
		}
		st := fake.Stats()
		h := st.Headers[len(st.Headers)-1]
		if h.Get("X-Api-Key") != "upstream-anthropic-key" || st.Paths[len(st.Paths)-1] != "/v1/messages" {
			t.Fatalf("upstream headers %v path %s", h, st.Paths[len(st.Paths)-1])
		}
	})

	t.Run("errors in Anthropic's shape", func(t *testing.T) {
		cases := []struct {
			name, body string
			status     int
			typ        string
		}{
			{"malformed", `{"model":`, 400, "invalid_request_error"},
			{"unknown model", `{"model":"nope","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, 404, "not_found_error"},
			{"upstream 429", `{"model":"limited","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, 429, "rate_limit_error"},
		}
		for _, tc := range cases {
			status, _, body := post(t, gw.URL+"/v1/messages", tc.body)
			if status != tc.status || gjson.Get(body, "type").Str != "error" || gjson.Get(body, "error.type").Str != tc.typ {
				t.Errorf("%s: %d %s", tc.name, status, body)
			}
		}
		_, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: "nope", MaxTokens: 5, Messages: hello})
		var apiErr *anthropic.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 {
			t.Fatalf("SDK error: %v", err)
		}
	})

	t.Run("529 overloaded is retried", func(t *testing.T) {
		fake.Enqueue(fakellm.Behavior{Status: 529, RetryAfter: "0"})
		var resp *http.Response
		if _, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: "via-anthropic", MaxTokens: 16, Messages: hello}, aoption.WithResponseInto(&resp)); err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("X-AI-Gateway-Attempts") != "2" {
			t.Fatalf("attempts %q", resp.Header.Get("X-AI-Gateway-Attempts"))
		}
	})

	for _, model := range []string{"cut-openai", "cut-anthropic"} {
		t.Run(model+" mid-stream failure is an error event", func(t *testing.T) {
			s := c.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: 64, Messages: hello})
			n := 0
			for s.Next() {
				n++
			}
			if s.Err() == nil || n == 0 {
				t.Fatalf("stream ended cleanly after %d events (err %v)", n, s.Err())
			}
		})
	}
}
