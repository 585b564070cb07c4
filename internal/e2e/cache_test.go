package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// cacheCaddyfile is a gateway with the response cache on; .Cache is the
// cache block's body, .Keys extra key blocks, .Extra extra app options.
const cacheCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider fake {
			base_url {{.Fake}}/v1
		}
		model demo {
			target fake fake-model
		}
		model tools {
			target fake tool-model
		}
		model broken {
			target fake broken-model
		}
		provider tight {
			base_url {{.Fake}}/v1
			first_byte_timeout 1s
			idle_timeout 1s
		}
		model tight {
			target tight fake-model
		}
		model primary {
			target fake down-model
			fallback demo
		}
		{{.Keys}}
		{{.Extra}}
		cache {
			{{.Cache}}
		}
		retry_backoff 10ms
	}
}
:{{.Port}} {
	route /nocache/* {
		ai_gateway {
			cache off
		}
	}
	ai_gateway
}
`

func startCacheGateway(t *testing.T, fake *Fake, data map[string]any) *Gateway {
	t.Helper()
	d := map[string]any{"Fake": fake.URL, "Keys": "", "Extra": "", "Cache": "ttl 1h"}
	for k, v := range data {
		d[k] = v
	}
	return noRace(t, startGateway(t, cacheCaddyfile, d))
}

// noRace fails t when the gateway's race detector (a -race build) reported
// a race.
func noRace(t *testing.T, gw *Gateway) *Gateway {
	t.Cleanup(func() {
		if logs := gw.Logs(); strings.Contains(logs, "DATA RACE") {
			t.Errorf("race detector report:\n%s", tail(logs[strings.Index(logs, "DATA RACE"):], 8000))
		}
	})
	return gw
}

func chatCalls(f *Fake) int { return f.Stats().Requests["/v1/chat/completions"] }

// streamChat runs a streaming chat request and returns the accumulated
// message, the number of chunks and the response.
func streamChat(t *testing.T, c openai.Client, params openai.ChatCompletionNewParams, opts ...option.RequestOption) (openai.ChatCompletionAccumulator, int, *http.Response) {
	t.Helper()
	var resp *http.Response
	stream := c.Chat.Completions.NewStreaming(context.Background(), params, append(opts, option.WithResponseInto(&resp))...)
	acc := openai.ChatCompletionAccumulator{}
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return acc, chunks, resp
}

func TestCacheHitAndReplay(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake", Chunks: 6})
	fake.Script("tool-model", fakellm.Behavior{ToolCall: true})
	gw := startCacheGateway(t, fake, nil)
	c := gw.client()
	ctx := context.Background()

	t.Run("body then body and stream", func(t *testing.T) {
		params := openai.ChatCompletionNewParams{Model: "demo", Messages: userMsg("body first")}
		var resp *http.Response
		first, err := c.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("X-AI-Gateway-Cache"); got != "miss" {
			t.Fatalf("first: X-AI-Gateway-Cache %q", got)
		}
		if got := resp.Header.Get("Cache-Status"); got != "ai_gateway; fwd=uri-miss; stored" {
			t.Fatalf("first: Cache-Status %q", got)
		}
		calls := chatCalls(fake)
		second, err := c.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("X-AI-Gateway-Cache"); got != "hit" || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "ai_gateway; hit; ttl=") ||
			resp.Header.Get("Age") == "" || resp.Header.Get("X-AI-Gateway-Cache-Saved-Tokens") == "0" {
			t.Fatalf("second: headers %v", resp.Header)
		}
		if second.Choices[0].Message.Content != first.Choices[0].Message.Content || second.Usage.TotalTokens != first.Usage.TotalTokens {
			t.Fatalf("hit %+v differs from miss %+v", second.Choices[0].Message, first.Choices[0].Message)
		}
		if second.ID == first.ID {
			t.Fatalf("hit kept the id %q", first.ID)
		}
		acc, chunks, resp := streamChat(t, c, params)
		if resp.Header.Get("X-AI-Gateway-Cache") != "hit" || acc.Choices[0].Message.Content != first.Choices[0].Message.Content || chunks < 3 {
			t.Fatalf("stream from body: %q in %d chunks, %v", acc.Choices[0].Message.Content, chunks, resp.Header)
		}
		if acc.Usage.TotalTokens != 0 {
			t.Fatalf("stream from body: a usage chunk reached a client that did not ask for it: %+v", acc.Usage)
		}
		if chatCalls(fake) != calls {
			t.Fatalf("hits called upstream: %d > %d", chatCalls(fake), calls)
		}

		// A stored tool-call body streamed: the tool call and the usage
		// survive the conversion.
		tools := openai.ChatCompletionNewParams{Model: "tools", Messages: userMsg("weather in Rome, body first?"),
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
				Name: "get_weather", Parameters: shared.FunctionParameters{"type": "object",
					"properties": map[string]any{"location": map[string]any{"type": "string"}}}})}}
		tb, err := c.Chat.Completions.New(ctx, tools)
		if err != nil {
			t.Fatal(err)
		}
		tools.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
		tacc, tchunks, resp := streamChat(t, c, tools)
		m, h := tb.Choices[0].Message, tacc.Choices[0].Message
		if resp.Header.Get("X-AI-Gateway-Cache") != "hit" || len(m.ToolCalls) == 0 || len(h.ToolCalls) != len(m.ToolCalls) ||
			h.ToolCalls[0].ID != m.ToolCalls[0].ID || h.ToolCalls[0].Function.Name != m.ToolCalls[0].Function.Name ||
			h.ToolCalls[0].Function.Arguments != m.ToolCalls[0].Function.Arguments || tacc.Choices[0].FinishReason != tb.Choices[0].FinishReason ||
			tacc.Usage.TotalTokens != tb.Usage.TotalTokens || tchunks < 3 {
			t.Fatalf("tool stream from body (%d chunks, %v):\nbody   %+v\nstream %+v", tchunks, resp.Header, tb, tacc.ChatCompletion)
		}
	})

	// An answer asked in the shape it was not recorded in is converted
	// once: the memory store keeps both shapes (it weighs more), and later
	// hits in that shape replay the kept one, with fresh ids.
	t.Run("the other shape is kept", func(t *testing.T) {
		bytes := func() int64 { return gjson.Get(adminGet(t, gw, "/ai_gateway/cache"), "bytes").Int() }
		for _, stream := range []bool{true, false} {
			params := openai.ChatCompletionNewParams{Model: "demo", Messages: userMsg(fmt.Sprintf("recorded as stream %v", !stream))}
			var recorded string
			if stream {
				b, err := c.Chat.Completions.New(ctx, params)
				if err != nil {
					t.Fatal(err)
				}
				recorded = b.Choices[0].Message.Content
			} else {
				acc, _, _ := streamChat(t, c, params)
				recorded = acc.Choices[0].Message.Content
			}
			var before int64
			eventually(t, 5*time.Second, func() bool { n := bytes(); ok := n > 0 && n == before; before = n; return ok },
				"stream %v: the store's size does not settle", stream)
			calls := chatCalls(fake)
			var ids []string
			for range 2 {
				var content, id string
				var resp *http.Response
				if stream {
					acc, chunks, r := streamChat(t, c, params)
					content, id, resp = acc.Choices[0].Message.Content, acc.ID, r
					if chunks < 3 {
						t.Fatalf("stream from a body in %d chunks", chunks)
					}
				} else {
					b, err := c.Chat.Completions.New(ctx, params, option.WithResponseInto(&resp))
					if err != nil {
						t.Fatal(err)
					}
					content, id = b.Choices[0].Message.Content, b.ID
				}
				if resp.Header.Get("X-AI-Gateway-Cache") != "hit" || content != recorded {
					t.Fatalf("stream %v: %q (%v), recorded %q", stream, content, resp.Header, recorded)
				}
				ids = append(ids, id)
				if len(ids) == 1 {
					var after int64
					eventually(t, 5*time.Second, func() bool { after = bytes(); return after > before },
						"stream %v: the store did not keep the converted shape (%d bytes before)", stream, before)
					before = after
				}
			}
			if ids[0] == ids[1] || chatCalls(fake) != calls {
				t.Fatalf("stream %v: ids %q, upstream calls %d, want %d", stream, ids, chatCalls(fake), calls)
			}
			if n := bytes(); n != before {
				t.Fatalf("stream %v: the second hit stored again: %d bytes, %d before", stream, n, before)
			}
		}
	})

	t.Run("stream replay", func(t *testing.T) {
		for _, p := range []openai.ChatCompletionNewParams{
			{Model: "demo", Messages: userMsg("stream first"), StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}},
			{Model: "tools", Messages: userMsg("weather in Paris?"), StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
				Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
					Name: "get_weather", Parameters: shared.FunctionParameters{"type": "object",
						"properties": map[string]any{"location": map[string]any{"type": "string"}}}})}},
		} {
			calls := chatCalls(fake)
			miss, missChunks, resp := streamChat(t, c, p)
			if resp.Header.Get("X-AI-Gateway-Cache") != "miss" {
				t.Fatalf("first stream: %v", resp.Header)
			}
			hit, hitChunks, resp := streamChat(t, c, p)
			if resp.Header.Get("X-AI-Gateway-Cache") != "hit" {
				t.Fatalf("second stream: %v", resp.Header)
			}
			if chatCalls(fake) != calls+1 {
				t.Fatalf("upstream calls %d, want %d", chatCalls(fake), calls+1)
			}
			m, h := miss.Choices[0], hit.Choices[0]
			if m.Message.Content != h.Message.Content || m.FinishReason != h.FinishReason || miss.Usage.TotalTokens != hit.Usage.TotalTokens || miss.Usage.PromptTokens != hit.Usage.PromptTokens ||
				len(m.Message.ToolCalls) != len(h.Message.ToolCalls) || hitChunks < 2 || hitChunks != missChunks {
				t.Fatalf("replay differs:\nmiss %+v (%d chunks)\nhit  %+v (%d chunks)", miss.ChatCompletion, missChunks, hit.ChatCompletion, hitChunks)
			}
			if p.Model == "tools" && len(m.Message.ToolCalls) == 0 {
				t.Fatal("the tool model answered no tool call")
			}
			for i := range m.Message.ToolCalls {
				a, b := m.Message.ToolCalls[i], h.Message.ToolCalls[i]
				if a.Function.Name != b.Function.Name || a.Function.Arguments != b.Function.Arguments || a.ID != b.ID {
					t.Fatalf("tool call %d: %+v vs %+v", i, m.Message.ToolCalls[i], h.Message.ToolCalls[i])
				}
			}
			if miss.ID == hit.ID {
				t.Fatal("replay kept the id")
			}
			// The recorded stream answers a non-stream request.
			body, err := c.Chat.Completions.New(ctx, p)
			if err != nil {
				t.Fatal(err)
			}
			if body.Choices[0].Message.Content != m.Message.Content || body.Choices[0].FinishReason != m.FinishReason ||
				len(body.Choices[0].Message.ToolCalls) != len(m.Message.ToolCalls) || body.Usage.TotalTokens != miss.Usage.TotalTokens {
				t.Fatalf("body from stream %+v, stream %+v", body, miss.ChatCompletion)
			}
			if chatCalls(fake) != calls+1 {
				t.Fatalf("upstream calls %d, want %d", chatCalls(fake), calls+1)
			}
		}
	})
}
