package e2e

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/responses"
	"github.com/openai/openai-go/v3/shared"
	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// providersCaddyfile declares the three translated providers (each twice:
// the second block drops unsupported parameters) in front of one fakellm
// each. max_fails is high so that the scripted failures never open a
// target's circuit breaker between scenarios.
const providersCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider claude {
			type anthropic
			base_url {{.Claude}}
			api_key test-anthropic-key
		}
		provider claude-drop {
			type anthropic
			base_url {{.Claude}}
			api_key test-anthropic-key
			drop_unsupported_params
		}
		provider gem {
			type gemini
			base_url {{.Gem}}
			api_key test-gemini-key
		}
		provider gem-drop {
			type gemini
			base_url {{.Gem}}
			api_key test-gemini-key
			drop_unsupported_params
		}
		provider co {
			type cohere
			base_url {{.Co}}
			api_key test-cohere-key
		}
		provider co-drop {
			type cohere
			base_url {{.Co}}
			api_key test-cohere-key
			drop_unsupported_params
		}
		model claude {
			target claude claude-up
			retries 1
		}
		model claude-drop {
			target claude-drop claude-up
		}
		model claude-cool {
			target claude claude-cool-up
			retries 1
		}
		model gem {
			target gem gem-up
			retries 1
		}
		model gem-drop {
			target gem-drop gem-up
		}
		model gem-cool {
			target gem gem-cool-up
			retries 1
		}
		model co {
			target co co-up
			retries 1
		}
		model co-drop {
			target co-drop co-up
		}
		model co-cool {
			target co co-cool-up
			retries 1
		}
		retry_backoff 10ms
		max_fails 1000
	}
}
:{{.Port}} {
	log {
		output stdout
		format json
	}
	log_append ai_provider {http.ai_gateway.provider}
	log_append ai_upstream_model {http.ai_gateway.upstream_model}
	log_append ai_tokens_in {http.ai_gateway.tokens.input}
	log_append ai_tokens_out {http.ai_gateway.tokens.output}
	ai_gateway
}
`

// provClientKey is the key the SDK sends; it must never reach a provider.
const provClientKey = "client-key-never-forwarded"

// provCase describes one translated provider and how its fake counts.
type provCase struct {
	name     string // provider name = gateway model name
	upstream string // upstream model
	fake     *Fake
	fakeName string
	// credentials
	keyHeader, keyValue string
	// native paths
	chatPath, streamPath, embedPath string
	// prompt computes the prompt tokens the fake reports for a native
	// chat body (see the fake's docs), and wantPrompt is its value for
	// the system+user conversation of the plain scenarios.
	prompt     func(body []byte) int
	wantPrompt int
	// transient is a retryable failure the next attempt recovers from;
	// minWait is how long the gateway must have waited before retrying.
	transient fakellm.Behavior
	minWait   time.Duration
	// rlCode is the error code of an exhausted 429.
	rlCode string
	// toolResult checks the native body of the turn carrying the result.
	toolResult func(t *testing.T, body []byte, callID string)
	// multiChoice tells whether n > 1 is supported (else a 400 on "n").
	multiChoice bool
	// embedUsage is the prompt_tokens of the embeddings scenario.
	embedUsage int64
	// params maps JSON paths of the native body to the values the
	// parameters scenario must produce.
	params map[string]string
}

func provWords(s string) int { return len(strings.Fields(s)) }

// textWords counts the words of a string, or of the "text" of the blocks of
// an array (Anthropic's system, Gemini's parts).
func provTextWords(v gjson.Result) int {
	if v.Type == gjson.String {
		return provWords(v.Str)
	}
	n := 0
	v.ForEach(func(_, b gjson.Result) bool {
		n += provWords(b.Get("text").Str)
		return true
	})
	return n
}

// provAnthropicPrompt: input_tokens is CountPromptTokens of the body plus the
// words of "system".
func provAnthropicPrompt(body []byte) int {
	return fakellm.CountPromptTokens(body) + provTextWords(gjson.GetBytes(body, "system"))
}

// provGeminiPrompt: 3 plus the words of the text parts per content, plus the
// words of the system instruction.
func provGeminiPrompt(body []byte) int {
	n := 0
	gjson.GetBytes(body, "contents").ForEach(func(_, c gjson.Result) bool {
		n += 3 + provTextWords(c.Get("parts"))
		return true
	})
	return n + provTextWords(gjson.GetBytes(body, "systemInstruction.parts"))
}

// last returns the last request the fake received.
func provLast(t *testing.T, f *Fake) (body []byte, hdr http.Header, path string) {
	t.Helper()
	st := f.Stats()
	if len(st.Bodies) == 0 {
		t.Fatal("the fake received no request")
	}
	i := len(st.Bodies) - 1
	return st.Bodies[i], st.Headers[i], st.Paths[i]
}

func provWeatherTool() []openai.ChatCompletionToolUnionParam {
	return []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("Current weather of a city"),
		Parameters: shared.FunctionParameters{
			"type":       "object",
			"properties": map[string]any{"location": map[string]any{"type": "string"}},
			"required":   []string{"location"},
		},
	})}
}

// conversation is the system+user prompt of the plain scenarios.
func provConversation() []openai.ChatCompletionMessageParamUnion {
	return []openai.ChatCompletionMessageParamUnion{
		openai.SystemMessage("You are terse."),
		openai.UserMessage("hello there gateway"),
	}
}

func provAPIError(t *testing.T, err error, status int) *openai.Error {
	t.Helper()
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) {
		t.Fatalf("want an API error %d, got %v", status, err)
	}
	if apiErr.StatusCode != status {
		t.Fatalf("status %d want %d: %s", apiErr.StatusCode, status, apiErr.RawJSON())
	}
	return apiErr
}

// accumulate drains a stream into an accumulator, failing on a chunk the
// SDK refuses, and reports whether a chunk carried a non-zero usage.
func provAccumulate(t *testing.T, stream interface {
	Next() bool
	Current() openai.ChatCompletionChunk
	Err() error
}) (acc openai.ChatCompletionAccumulator, usageSeen bool, chunks int) {
	t.Helper()
	for stream.Next() {
		ch := stream.Current()
		chunks++
		if !acc.AddChunk(ch) {
			t.Fatalf("accumulator refused chunk %d: %s", chunks, ch.RawJSON())
		}
		if ch.JSON.Usage.Valid() && (ch.Usage.TotalTokens > 0 || ch.Usage.PromptTokens > 0 || ch.Usage.CompletionTokens > 0) {
			usageSeen = true
		}
	}
	return acc, usageSeen, chunks
}

func TestProviders(t *testing.T) {
	start := time.Now()
	claude := startFake(t, fakellm.Options{Name: "fake-claude"})
	gem := startFake(t, fakellm.Options{Name: "fake-gemini"})
	co := startFake(t, fakellm.Options{Name: "fake-cohere"})
	gw := startGateway(t, providersCaddyfile, map[string]any{"Claude": claude.URL, "Gem": gem.URL, "Co": co.URL})
	c := gw.client()
	t.Logf("gateway up after %v", time.Since(start))

	cases := []provCase{
		{
			name: "claude", upstream: "claude-up", fake: claude, fakeName: "fake-claude",
			keyHeader: "X-Api-Key", keyValue: "test-anthropic-key",
			chatPath: "/v1/messages", streamPath: "/v1/messages",
			prompt: provAnthropicPrompt, wantPrompt: 6 + 3, // user turn 3+3, system 3 words
			transient: fakellm.Behavior{Status: 529},
			rlCode:    "rate_limit_exceeded",
			params: map[string]string{
				"temperature": "0.5", "top_p": "0.9", "stop_sequences": `["END"]`, "max_tokens": "50",
				"tool_choice": `{"type":"any"}`, "metadata.user_id": `"user-42"`,
			},
			toolResult: func(t *testing.T, body []byte, callID string) {
				var use, result bool
				gjson.GetBytes(body, "messages").ForEach(func(_, m gjson.Result) bool {
					m.Get("content").ForEach(func(_, b gjson.Result) bool {
						switch b.Get("type").Str {
						case "tool_use":
							use = use || (m.Get("role").Str == "assistant" && b.Get("id").Str == callID &&
								b.Get("name").Str == "get_weather" && b.Get("input.location").Str == "Paris")
						case "tool_result":
							result = result || (m.Get("role").Str == "user" && b.Get("tool_use_id").Str == callID &&
								strings.Contains(b.Get("content").Raw, "temperature"))
						}
						return true
					})
					return true
				})
				if !use || !result {
					t.Fatalf("native body lacks the tool_use / tool_result (id %s): %s", callID, body)
				}
			},
		},
		{
			name: "gem", upstream: "gem-up", fake: gem, fakeName: "fake-gemini",
			keyHeader: "X-Goog-Api-Key", keyValue: "test-gemini-key",
			chatPath:   "/v1beta/models/gem-up:generateContent",
			streamPath: "/v1beta/models/gem-up:streamGenerateContent?alt=sse",
			embedPath:  "/v1beta/models/gem-up:batchEmbedContents",
			prompt:     provGeminiPrompt, wantPrompt: 6 + 3, // user content 3+3, system instruction 3 words
			// Google's 429 RESOURCE_EXHAUSTED with a RetryInfo of 1s.
			transient: fakellm.Behavior{Status: 429, RetryAfter: "1"}, minWait: 900 * time.Millisecond,
			rlCode: "resource_exhausted", multiChoice: true,
			params: map[string]string{
				"generationConfig.temperature": "0.5", "generationConfig.topP": "0.9", "generationConfig.stopSequences": `["END"]`,
				"generationConfig.maxOutputTokens": "50", "generationConfig.seed": "7",
				"toolConfig.functionCallingConfig.mode": `"ANY"`,
			},
			// batchEmbedContents reports no usage: a quarter of the characters.
			embedUsage: (11+3)/4 + (20+3)/4,
			toolResult: func(t *testing.T, body []byte, callID string) {
				var call, resp bool
				gjson.GetBytes(body, "contents").ForEach(func(_, c gjson.Result) bool {
					c.Get("parts").ForEach(func(_, p gjson.Result) bool {
						if fc := p.Get("functionCall"); fc.Exists() {
							call = call || (c.Get("role").Str == "model" && fc.Get("name").Str == "get_weather" &&
								fc.Get("args.location").Str == "Paris")
						}
						if fr := p.Get("functionResponse"); fr.Exists() {
							resp = resp || (c.Get("role").Str == "user" && fr.Get("name").Str == "get_weather" &&
								fr.Get("id").Str == callID && fr.Get("response.temperature").Int() == 21)
						}
						return true
					})
					return true
				})
				if !call || !resp {
					t.Fatalf("native body lacks the functionCall / functionResponse (id %s): %s", callID, body)
				}
			},
		},
		{
			name: "co", upstream: "co-up", fake: co, fakeName: "fake-cohere",
			keyHeader: "Authorization", keyValue: "Bearer test-cohere-key",
			chatPath: "/v2/chat", streamPath: "/v2/chat", embedPath: "/v2/embed",
			prompt: fakellm.CountPromptTokens, wantPrompt: 6 + 6, // system and user messages, 3+3 each
			transient:  fakellm.Behavior{Status: 429, RetryAfter: "0"},
			rlCode:     "rate_limit_exceeded",
			embedUsage: 3 + 6, // billed_units.input_tokens: the words
			params: map[string]string{
				"temperature": "0.5", "p": "0.9", "stop_sequences": `["END"]`, "max_tokens": "50", "seed": "7",
				"tool_choice": `"REQUIRED"`,
			},
			toolResult: func(t *testing.T, body []byte, callID string) {
				var call, result bool
				gjson.GetBytes(body, "messages").ForEach(func(_, m gjson.Result) bool {
					switch m.Get("role").Str {
					case "assistant":
						call = call || (m.Get("tool_calls.0.id").Str == callID && m.Get("tool_calls.0.function.name").Str == "get_weather")
					case "tool":
						result = result || (m.Get("tool_call_id").Str == callID && strings.Contains(m.Get("content").Raw, "temperature"))
					}
					return true
				})
				if !call || !result || !strings.Contains(string(body), `"role":"tool"`) {
					t.Fatalf("native body lacks the tool call / tool message (id %s): %s", callID, body)
				}
			},
		},
	}

	for _, p := range cases {
		wantContent := fmt.Sprintf("Hello from %s word3 word4", p.fakeName)
		wantCompletion := int64(fakellm.DefaultChunks)

		t.Run(p.name, func(t *testing.T) {
			t.Run("plain answer", func(t *testing.T) {
				var resp *http.Response
				out, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
					Model: p.name, Messages: provConversation(),
				}, option.WithResponseInto(&resp), option.WithHeader("X-Test-Id", "plain-"+p.name))
				if err != nil {
					t.Fatal(err)
				}
				provCheckLoggedTokens(t, gw, "plain-"+p.name, p.name, p.upstream, p.wantPrompt, int(wantCompletion))
				body, _, path := provLast(t, p.fake)
				if path != p.chatPath {
					t.Fatalf("native path %q want %q", path, p.chatPath)
				}
				if got := p.prompt(body); got != p.wantPrompt {
					t.Fatalf("the fake counts %d prompt tokens for %s, test expects %d", got, body, p.wantPrompt)
				}
				if len(out.Choices) != 1 || out.Choices[0].Message.Content != wantContent || out.Choices[0].FinishReason != "stop" ||
					out.Choices[0].Message.Role != "assistant" || out.Object != "chat.completion" || out.Model != p.upstream || out.ID == "" {
					t.Fatalf("answer %s", out.RawJSON())
				}
				u := out.Usage
				if u.PromptTokens != int64(p.wantPrompt) || u.CompletionTokens != wantCompletion || u.TotalTokens != int64(p.wantPrompt)+wantCompletion {
					t.Fatalf("usage %s, want prompt %d completion %d", u.RawJSON(), p.wantPrompt, wantCompletion)
				}
				if resp.Header.Get("X-AI-Gateway-Provider") != p.name || resp.Header.Get("X-AI-Gateway-Model") != p.upstream ||
					resp.Header.Get("X-AI-Gateway-Attempts") != "1" {
					t.Fatalf("gateway headers %v", resp.Header)
				}
			})

			t.Run("stream accumulated", func(t *testing.T) {
				var resp *http.Response
				stream := c.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
					Model: p.name, Messages: provConversation(),
				}, option.WithResponseInto(&resp), option.WithHeader("X-Test-Id", "stream-"+p.name))
				acc, usageSeen, chunks := provAccumulate(t, stream)
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				// The gateway accounts the usage even when the client did not ask for it.
				provCheckLoggedTokens(t, gw, "stream-"+p.name, p.name, p.upstream, p.wantPrompt, int(wantCompletion))
				if usageSeen {
					t.Fatal("a chunk carried usage although the client did not ask for it")
				}
				if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != wantContent || acc.Choices[0].FinishReason != "stop" || chunks < 5 {
					t.Fatalf("accumulated %q finish %q in %d chunks", acc.Choices[0].Message.Content, acc.Choices[0].FinishReason, chunks)
				}
				if _, _, path := provLast(t, p.fake); path != p.streamPath {
					t.Fatalf("native path %q want %q", path, p.streamPath)
				}
				if resp == nil || resp.Header.Get("X-AI-Gateway-Provider") != p.name || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
					t.Fatalf("stream headers %v", resp)
				}
			})

			t.Run("stream with usage", func(t *testing.T) {
				stream := c.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
					Model: p.name, Messages: provConversation(),
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
				})
				acc, usageSeen, _ := provAccumulate(t, stream)
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				if !usageSeen || acc.Choices[0].Message.Content != wantContent {
					t.Fatalf("usage seen %v, content %q", usageSeen, acc.Choices[0].Message.Content)
				}
				u := acc.Usage
				if u.PromptTokens != int64(p.wantPrompt) || u.CompletionTokens != wantCompletion || u.TotalTokens != int64(p.wantPrompt)+wantCompletion {
					t.Fatalf("usage %+v, want prompt %d completion %d", u, p.wantPrompt, wantCompletion)
				}
			})

			t.Run("echo with escapes", func(t *testing.T) {
				// The fake answers its raw native body, split into pieces on
				// rune boundaries: quotes, backslashes, control characters,
				// multi-byte runes and a long text cross the translators.
				text := "quote \" backslash \\ tab \t newline \n nul-ish \u0001 <b>&amp;</b> é 漢字 🎉 \u2028 " +
					strings.Repeat("lorem ipsum dolor sit amet ünïcödé ", 300)
				for _, streamed := range []bool{false, true} {
					p.fake.Enqueue(fakellm.Behavior{Echo: true, Chunks: 37})
					params := openai.ChatCompletionNewParams{Model: p.name, Messages: userMsg(text)}
					var content, finish string
					if streamed {
						stream := c.Chat.Completions.NewStreaming(t.Context(), params)
						acc, _, _ := provAccumulate(t, stream)
						if err := stream.Err(); err != nil {
							t.Fatal(err)
						}
						content, finish = acc.Choices[0].Message.Content, acc.Choices[0].FinishReason
					} else {
						out, err := c.Chat.Completions.New(t.Context(), params)
						if err != nil {
							t.Fatal(err)
						}
						content, finish = out.Choices[0].Message.Content, out.Choices[0].FinishReason
					}
					body, _, _ := provLast(t, p.fake)
					if content != string(body) || finish != "stop" {
						t.Fatalf("streamed=%v: echoed content differs from the native body (finish %q)\ngot  %.300q\nwant %.300q",
							streamed, finish, content, body)
					}
					if !strings.Contains(gjson.GetBytes(body, "@this").Raw, "🎉") && !strings.Contains(string(body), `\ud83c\udf89`) {
						t.Fatalf("the text did not reach the provider: %.300s", body)
					}
				}
			})

			t.Run("parameters mapped", func(t *testing.T) {
				params := openai.ChatCompletionNewParams{
					Model: p.name, Messages: provConversation(), Tools: provWeatherTool(),
					Temperature: openai.Float(0.5), TopP: openai.Float(0.9), MaxCompletionTokens: openai.Int(50),
					Stop:       openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"END"}},
					ToolChoice: openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")},
					User:       openai.String("user-42"),
				}
				if p.name != "claude" {
					params.Seed = openai.Int(7) // Anthropic has no seed
				}
				if _, err := c.Chat.Completions.New(t.Context(), params); err != nil {
					t.Fatal(err)
				}
				body, _, _ := provLast(t, p.fake)
				for path, want := range p.params {
					if got := gjson.GetBytes(body, path).Raw; got != want {
						t.Errorf("native %s = %s, want %s", path, got, want)
					}
				}
				if t.Failed() {
					t.Logf("native body %s", body)
				}
			})

			for _, streamed := range []bool{false, true} {
				name := "tool round trip"
				if streamed {
					name += " streamed"
				}
				t.Run(name, func(t *testing.T) {
					ctx := t.Context()
					question := openai.UserMessage("What is the weather in Paris?")
					params := openai.ChatCompletionNewParams{Model: p.name, Messages: []openai.ChatCompletionMessageParamUnion{question}, Tools: provWeatherTool()}
					p.fake.Enqueue(fakellm.Behavior{ToolCall: true})
					var msg openai.ChatCompletionMessage
					var finish string
					if streamed {
						stream := c.Chat.Completions.NewStreaming(ctx, params)
						acc, _, _ := provAccumulate(t, stream)
						if err := stream.Err(); err != nil {
							t.Fatal(err)
						}
						msg, finish = acc.Choices[0].Message, acc.Choices[0].FinishReason
					} else {
						out, err := c.Chat.Completions.New(ctx, params)
						if err != nil {
							t.Fatal(err)
						}
						msg, finish = out.Choices[0].Message, out.Choices[0].FinishReason
					}
					if len(msg.ToolCalls) != 1 || finish != "tool_calls" {
						t.Fatalf("tool calls %+v finish %q", msg.ToolCalls, finish)
					}
					call := msg.ToolCalls[0]
					var args map[string]any
					if call.ID == "" || call.Type != "function" || call.Function.Name != "get_weather" ||
						json.Unmarshal([]byte(call.Function.Arguments), &args) != nil || args["location"] != "Paris" {
						t.Fatalf("tool call %+v", call)
					}

					params.Messages = append(params.Messages, msg.ToParam(), openai.ToolMessage(`{"temperature":21,"unit":"C"}`, call.ID))
					var content string
					if streamed {
						stream := c.Chat.Completions.NewStreaming(ctx, params)
						acc, _, _ := provAccumulate(t, stream)
						if err := stream.Err(); err != nil {
							t.Fatal(err)
						}
						content, finish = acc.Choices[0].Message.Content, acc.Choices[0].FinishReason
					} else {
						out, err := c.Chat.Completions.New(ctx, params)
						if err != nil {
							t.Fatal(err)
						}
						content, finish = out.Choices[0].Message.Content, out.Choices[0].FinishReason
					}
					if content != wantContent || finish != "stop" {
						t.Fatalf("final answer %q finish %q", content, finish)
					}
					body, _, _ := provLast(t, p.fake)
					p.toolResult(t, body, call.ID)
				})
			}

			t.Run("provider 400 keeps its message", func(t *testing.T) {
				p.fake.Enqueue(fakellm.Behavior{Status: 400})
				before := p.fake.Stats().Total
				_, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: p.name, Messages: userMsg("x")})
				apiErr := provAPIError(t, err, 400)
				if !strings.Contains(apiErr.Message, "fakellm: scripted error 400") || apiErr.Type != "invalid_request_error" {
					t.Fatalf("error %s", apiErr.RawJSON())
				}
				if n := p.fake.Stats().Total - before; n != 1 {
					t.Fatalf("a 400 was tried %d times", n)
				}
			})

			t.Run("429 after retries exhausted", func(t *testing.T) {
				// Retry-After 1 (Google: a RetryInfo of 1s): waited once, then
				// passed on to the client.
				p.fake.Enqueue(fakellm.Behavior{Status: 429, RetryAfter: "1"}, fakellm.Behavior{Status: 429, RetryAfter: "1"})
				before := p.fake.Stats().Total
				var resp *http.Response
				_, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: p.name, Messages: userMsg("x")},
					option.WithResponseInto(&resp))
				apiErr := provAPIError(t, err, 429)
				if apiErr.Type != "rate_limit_exceeded" || apiErr.Code != p.rlCode || apiErr.Message == "" {
					t.Fatalf("error %s, want code %s", apiErr.RawJSON(), p.rlCode)
				}
				if n := p.fake.Stats().Total - before; n != 2 || resp.Header.Get("X-AI-Gateway-Attempts") != "2" {
					t.Fatalf("%d upstream requests, attempts header %q", n, resp.Header.Get("X-AI-Gateway-Attempts"))
				}
				if ra := resp.Header.Get("Retry-After"); ra != "1" {
					t.Fatalf("Retry-After %q, want 1", ra)
				}
			})

			t.Run("long Retry-After is passed on without waiting", func(t *testing.T) {
				// Beyond max_retry_after (10s) the gateway does not wait: the
				// target cools down and the client gets the delay. A model of
				// its own keeps the cooling target away from the other scenarios.
				p.fake.Enqueue(fakellm.Behavior{Status: 429, RetryAfter: "30"})
				var resp *http.Response
				begin := time.Now()
				_, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: p.name + "-cool", Messages: userMsg("x")},
					option.WithResponseInto(&resp))
				apiErr := provAPIError(t, err, 429)
				if el := time.Since(begin); el > 5*time.Second {
					t.Fatalf("the gateway waited %v", el)
				}
				if resp.Header.Get("Retry-After") != "30" || resp.Header.Get("X-AI-Gateway-Attempts") != "1" || apiErr.Code != p.rlCode {
					t.Fatalf("Retry-After %q attempts %q error %s", resp.Header.Get("Retry-After"), resp.Header.Get("X-AI-Gateway-Attempts"), apiErr.RawJSON())
				}
			})

			t.Run(fmt.Sprintf("transient %d retried", p.transient.Status), func(t *testing.T) {
				p.fake.Enqueue(p.transient)
				var resp *http.Response
				begin := time.Now()
				out, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: p.name, Messages: provConversation()},
					option.WithResponseInto(&resp))
				if err != nil {
					t.Fatal(err)
				}
				if el := time.Since(begin); el < p.minWait {
					t.Fatalf("retried after %v, before the upstream's retry delay %v", el, p.minWait)
				}
				if resp.Header.Get("X-AI-Gateway-Attempts") != "2" || out.Choices[0].Message.Content != wantContent ||
					out.Usage.PromptTokens != int64(p.wantPrompt) {
					t.Fatalf("attempts %q answer %s", resp.Header.Get("X-AI-Gateway-Attempts"), out.RawJSON())
				}
			})

			t.Run(fmt.Sprintf("transient %d retried, streamed", p.transient.Status), func(t *testing.T) {
				p.fake.Enqueue(p.transient)
				var resp *http.Response
				stream := c.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{
					Model: p.name, Messages: provConversation(),
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
				}, option.WithResponseInto(&resp))
				acc, _, _ := provAccumulate(t, stream)
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				if resp.Header.Get("X-AI-Gateway-Attempts") != "2" || acc.Choices[0].Message.Content != wantContent ||
					acc.Usage.PromptTokens != int64(p.wantPrompt) {
					t.Fatalf("attempts %q content %q usage %+v", resp.Header.Get("X-AI-Gateway-Attempts"), acc.Choices[0].Message.Content, acc.Usage)
				}
			})

			t.Run("stream refused before the first byte", func(t *testing.T) {
				p.fake.Enqueue(fakellm.Behavior{Status: 400})
				stream := c.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: p.name, Messages: userMsg("x")})
				for stream.Next() {
					t.Fatalf("chunk from a refused stream: %s", stream.Current().RawJSON())
				}
				apiErr := provAPIError(t, stream.Err(), 400)
				if !strings.Contains(apiErr.Message, "fakellm: scripted error 400") {
					t.Fatalf("error %s", apiErr.RawJSON())
				}
			})

			t.Run("garbage becomes 502", func(t *testing.T) {
				p.fake.Enqueue(fakellm.Behavior{Garbage: true}, fakellm.Behavior{Garbage: true})
				_, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: p.name, Messages: userMsg("x")})
				apiErr := provAPIError(t, err, 502)
				if apiErr.Code != "upstream_invalid_response" || strings.Contains(apiErr.Message, "<html") {
					t.Fatalf("error %s", apiErr.RawJSON())
				}
			})

			t.Run("max tokens cuts with finish length", func(t *testing.T) {
				params := openai.ChatCompletionNewParams{Model: p.name, Messages: provConversation(), MaxCompletionTokens: openai.Int(3),
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}}
				want := "Hello from " + p.fakeName
				stream := c.Chat.Completions.NewStreaming(t.Context(), params)
				acc, _, _ := provAccumulate(t, stream)
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				if acc.Choices[0].Message.Content != want || acc.Choices[0].FinishReason != "length" || acc.Usage.CompletionTokens != 3 {
					t.Fatalf("streamed %q finish %q usage %+v", acc.Choices[0].Message.Content, acc.Choices[0].FinishReason, acc.Usage)
				}
				params.StreamOptions = openai.ChatCompletionStreamOptionsParam{}
				out, err := c.Chat.Completions.New(t.Context(), params)
				if err != nil {
					t.Fatal(err)
				}
				if out.Choices[0].Message.Content != want || out.Choices[0].FinishReason != "length" || out.Usage.CompletionTokens != 3 {
					t.Fatalf("answer %s", out.RawJSON())
				}
			})

			t.Run("n choices", func(t *testing.T) {
				params := openai.ChatCompletionNewParams{Model: p.name, Messages: provConversation(), N: openai.Int(2),
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}}
				if !p.multiChoice {
					_, err := c.Chat.Completions.New(t.Context(), params)
					if apiErr := provAPIError(t, err, 400); apiErr.Param != "n" {
						t.Fatalf("error %s", apiErr.RawJSON())
					}
					return
				}
				out, err := c.Chat.Completions.New(t.Context(), params)
				if err != nil {
					t.Fatal(err)
				}
				if len(out.Choices) != 2 || out.Usage.CompletionTokens != 2*wantCompletion || out.Usage.PromptTokens != int64(p.wantPrompt) {
					t.Fatalf("answer %s", out.RawJSON())
				}
				for i, ch := range out.Choices {
					if ch.Index != int64(i) || ch.Message.Content != wantContent || ch.FinishReason != "stop" {
						t.Fatalf("choice %d: %+v", i, ch)
					}
				}
				stream := c.Chat.Completions.NewStreaming(t.Context(), params)
				acc, _, _ := provAccumulate(t, stream)
				if err := stream.Err(); err != nil {
					t.Fatal(err)
				}
				if len(acc.Choices) != 2 || acc.Usage.CompletionTokens != 2*wantCompletion {
					t.Fatalf("streamed %d choices, usage %+v", len(acc.Choices), acc.Usage)
				}
				for i, ch := range acc.Choices {
					if ch.Message.Content != wantContent || ch.FinishReason != "stop" {
						t.Fatalf("streamed choice %d: %q %q", i, ch.Message.Content, ch.FinishReason)
					}
				}
			})

			t.Run("client disconnect cancels upstream", func(t *testing.T) {
				p.fake.Enqueue(fakellm.Behavior{Chunks: 60, ChunkDelay: 50 * time.Millisecond})
				before := p.fake.Stats().Cancelled
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: p.name, Messages: userMsg("x")})
				got := ""
				for got == "" && stream.Next() {
					for _, ch := range stream.Current().Choices {
						got += ch.Delta.Content
					}
				}
				if got == "" {
					t.Fatalf("no content before the disconnect: %v", stream.Err())
				}
				cancel()
				stream.Close()
				eventually(t, 2*time.Second, func() bool { return p.fake.Stats().Cancelled > before },
					"upstream not cancelled within 2s of the client leaving")
				eventually(t, 2*time.Second, func() bool { return p.fake.Stats().InFlight == 0 }, "upstream request still in flight")
			})

			if p.name == "claude" {
				t.Run("529 exhausted becomes 503", func(t *testing.T) {
					p.fake.Enqueue(fakellm.Behavior{Status: 529}, fakellm.Behavior{Status: 529})
					_, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: p.name, Messages: userMsg("x")})
					apiErr := provAPIError(t, err, 503)
					if apiErr.Code != "upstream_overloaded" || apiErr.Message != "Overloaded" {
						t.Fatalf("error %s", apiErr.RawJSON())
					}
				})
			}

			t.Run("500 becomes 502 after retries", func(t *testing.T) {
				p.fake.Enqueue(fakellm.Behavior{Status: 500}, fakellm.Behavior{Status: 500})
				before := p.fake.Stats().Total
				var resp *http.Response
				_, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: p.name, Messages: userMsg("x")},
					option.WithResponseInto(&resp))
				apiErr := provAPIError(t, err, 502)
				if apiErr.Code != "upstream_error" || apiErr.Message == "" {
					t.Fatalf("error %s", apiErr.RawJSON())
				}
				if n := p.fake.Stats().Total - before; n != 2 || resp.Header.Get("X-AI-Gateway-Attempts") != "2" {
					t.Fatalf("%d upstream requests, attempts header %q", n, resp.Header.Get("X-AI-Gateway-Attempts"))
				}
			})

			t.Run("unsupported param", func(t *testing.T) {
				params := openai.ChatCompletionNewParams{Model: p.name, Messages: provConversation(), LogitBias: map[string]int64{"50256": -100}}
				before := p.fake.Stats().Total
				_, err := c.Chat.Completions.New(t.Context(), params)
				apiErr := provAPIError(t, err, 400)
				if apiErr.Param != "logit_bias" || apiErr.Code != "unsupported_parameter" || !strings.Contains(apiErr.Message, "logit_bias") {
					t.Fatalf("error %s", apiErr.RawJSON())
				}
				if n := p.fake.Stats().Total - before; n != 0 {
					t.Fatalf("an untranslatable request went upstream %d times", n)
				}
				if p.name == "claude" {
					// Anthropic's temperature range is 0-1.
					_, err = c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: p.name, Messages: provConversation(), Temperature: openai.Float(1.5)})
					if apiErr := provAPIError(t, err, 400); apiErr.Param != "temperature" {
						t.Fatalf("error %s", apiErr.RawJSON())
					}
					params.Temperature = openai.Float(1.5)
				}
				params.Model = p.name + "-drop"
				var resp *http.Response
				out, err := c.Chat.Completions.New(t.Context(), params, option.WithResponseInto(&resp))
				if err != nil {
					t.Fatalf("with drop_unsupported_params: %v", err)
				}
				body, _, _ := provLast(t, p.fake)
				if out.Choices[0].Message.Content != wantContent || resp.Header.Get("X-AI-Gateway-Provider") != p.name+"-drop" ||
					strings.Contains(string(body), "logit") || strings.Contains(string(body), "50256") {
					t.Fatalf("dropped: answer %q provider %q native body %s", out.Choices[0].Message.Content,
						resp.Header.Get("X-AI-Gateway-Provider"), body)
				}
				if p.name == "claude" && gjson.GetBytes(body, "temperature").Num != 1 {
					t.Fatalf("temperature not clamped to 1: %s", body)
				}
			})

			t.Run("mid-stream upstream error", func(t *testing.T) {
				p.fake.Enqueue(fakellm.Behavior{FailAfter: 2, Chunks: 10})
				before := p.fake.Stats().Total
				stream := c.Chat.Completions.NewStreaming(t.Context(), openai.ChatCompletionNewParams{Model: p.name, Messages: userMsg("x")})
				n, content := 0, ""
				finished := false
				for stream.Next() {
					n++
					for _, ch := range stream.Current().Choices {
						content += ch.Delta.Content
						finished = finished || ch.FinishReason != ""
					}
				}
				if stream.Err() == nil {
					t.Fatalf("cut stream ended cleanly after %d chunks (%q)", n, content)
				}
				if n == 0 || content == "" || finished {
					t.Fatalf("%d chunks, content %q, finished %v before the cut (err %v)", n, content, finished, stream.Err())
				}
				if k := p.fake.Stats().Total - before; k != 1 {
					t.Fatalf("a started stream went upstream %d times", k)
				}
			})

			t.Run("non-stream cut is retried", func(t *testing.T) {
				p.fake.Enqueue(fakellm.Behavior{FailAfter: 1})
				var resp *http.Response
				out, err := c.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: p.name, Messages: provConversation()},
					option.WithResponseInto(&resp))
				if err != nil {
					t.Fatal(err)
				}
				if resp.Header.Get("X-AI-Gateway-Attempts") != "2" || out.Choices[0].Message.Content != wantContent {
					t.Fatalf("attempts %q answer %s", resp.Header.Get("X-AI-Gateway-Attempts"), out.RawJSON())
				}
			})

			t.Run("embeddings", func(t *testing.T) {
				if p.embedPath == "" {
					// Anthropic has no embeddings API.
					before := p.fake.Stats().Total
					_, err := c.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
						Model: p.name, Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("the cat sat")},
					})
					apiErr := provAPIError(t, err, 400)
					if apiErr.Code != "unsupported_operation" || p.fake.Stats().Total != before {
						t.Fatalf("error %s", apiErr.RawJSON())
					}
					return
				}
				texts := []string{"the cat sat", "a dog ran on the mat"}
				out, err := c.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
					Model: p.name, Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: texts},
				})
				if err != nil {
					t.Fatal(err)
				}
				if _, _, path := provLast(t, p.fake); path != p.embedPath {
					t.Fatalf("native path %q want %q", path, p.embedPath)
				}
				if len(out.Data) != len(texts) || out.Usage.PromptTokens != p.embedUsage || out.Model == "" {
					t.Fatalf("embeddings %s", out.RawJSON())
				}
				for i, d := range out.Data {
					provCheckVector(t, d.Embedding, fakellm.Embed(texts[i], fakellm.DefaultDimensions))
					if d.Index != int64(i) {
						t.Fatalf("index %d at %d", d.Index, i)
					}
				}
				// dimensions reaches the provider.
				out, err = c.Embeddings.New(t.Context(), openai.EmbeddingNewParams{
					Model: p.name, Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("short vector")},
					Dimensions: openai.Int(16),
				})
				if err != nil {
					t.Fatal(err)
				}
				provCheckVector(t, out.Data[0].Embedding, fakellm.Embed("short vector", 16))
				body, _, _ := provLast(t, p.fake)
				if gjson.GetBytes(body, "requests.0.outputDimensionality").Int() != 16 && gjson.GetBytes(body, "output_dimension").Int() != 16 {
					t.Fatalf("dimensions not forwarded: %s", body)
				}
				// encoding_format base64: little-endian float32s, encoded by the gateway.
				status, _, raw := post(t, gw.URL+"/v1/embeddings", `{"model":"`+p.name+`","input":"base sixty four","encoding_format":"base64"}`,
					"Authorization", "Bearer "+provClientKey)
				if status != 200 {
					t.Fatalf("base64: %d %s", status, raw)
				}
				b, err := base64.StdEncoding.DecodeString(gjson.Get(raw, "data.0.embedding").Str)
				if err != nil || len(b) != 4*fakellm.DefaultDimensions {
					t.Fatalf("base64 embedding (%v): %s", err, raw)
				}
				vec := make([]float64, fakellm.DefaultDimensions)
				for i := range vec {
					vec[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
				}
				provCheckVector(t, vec, fakellm.Embed("base sixty four", fakellm.DefaultDimensions))
			})

			if p.name == "claude" {
				t.Run("cached tokens", func(t *testing.T) {
					const req = `{"model":"claude","messages":[` +
						`{"role":"system","content":[{"type":"text","text":"You are a cached assistant.","cache_control":{"type":"ephemeral"}}]},` +
						`{"role":"user","content":"hi"}]`
					status, _, body := post(t, gw.URL+"/v1/chat/completions", req+`}`, "Authorization", "Bearer "+provClientKey)
					if status != 200 {
						t.Fatalf("status %d: %s", status, body)
					}
					native, _, _ := provLast(t, p.fake)
					if gjson.GetBytes(native, "system.0.cache_control.type").Str != "ephemeral" {
						t.Fatalf("cache_control not forwarded: %s", native)
					}
					input := provAnthropicPrompt(native) // input_tokens, which excludes the cached tokens
					if input != 4+5 {
						t.Fatalf("the fake counts %d input tokens for %s", input, native)
					}
					want := input + fakellm.AnthropicCacheReadTokens
					u := gjson.Get(body, "usage")
					if u.Get("prompt_tokens").Int() != int64(want) || u.Get("prompt_tokens_details.cached_tokens").Int() != fakellm.AnthropicCacheReadTokens ||
						u.Get("completion_tokens").Int() != int64(fakellm.DefaultChunks) {
						t.Fatalf("usage %s, want prompt %d cached %d", u.Raw, want, fakellm.AnthropicCacheReadTokens)
					}

					// The same through a stream's usage chunk.
					status, _, body = post(t, gw.URL+"/v1/chat/completions",
						req+`,"stream":true,"stream_options":{"include_usage":true}}`, "Authorization", "Bearer "+provClientKey)
					if status != 200 {
						t.Fatalf("stream status %d: %s", status, body)
					}
					var usage gjson.Result
					for _, line := range strings.Split(body, "\n") {
						data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: ")
						if ok && data != "[DONE]" && gjson.Get(data, "usage").IsObject() {
							usage = gjson.Get(data, "usage")
						}
					}
					if usage.Get("prompt_tokens").Int() != int64(want) || usage.Get("prompt_tokens_details.cached_tokens").Int() != fakellm.AnthropicCacheReadTokens {
						t.Fatalf("stream usage %q, want prompt %d cached %d\n%s", usage.Raw, want, fakellm.AnthropicCacheReadTokens, body)
					}
				})
			}

			t.Run("other operations refused", func(t *testing.T) {
				before := p.fake.Stats().Total
				_, err := c.Completions.New(t.Context(), openai.CompletionNewParams{
					Model: openai.CompletionNewParamsModel(p.name), Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Say hi")},
				})
				if apiErr := provAPIError(t, err, 400); apiErr.Code != "unsupported_operation" {
					t.Fatalf("completions: %s", apiErr.RawJSON())
				}
				_, err = c.Responses.New(t.Context(), responses.ResponseNewParams{
					Model: p.name, Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello")},
				})
				if apiErr := provAPIError(t, err, 400); apiErr.Code != "unsupported_operation" {
					t.Fatalf("responses: %s", apiErr.RawJSON())
				}
				if p.fake.Stats().Total != before {
					t.Fatal("a refused operation went upstream")
				}
			})

			t.Run("concurrent requests", func(t *testing.T) {
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for i := range 8 {
					wg.Go(func() {
						params := openai.ChatCompletionNewParams{Model: p.name, Messages: provConversation(),
							StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}}
						var content string
						var usage openai.CompletionUsage
						if i%2 == 0 {
							stream := c.Chat.Completions.NewStreaming(context.Background(), params)
							var acc openai.ChatCompletionAccumulator
							for stream.Next() {
								if !acc.AddChunk(stream.Current()) {
									errs <- fmt.Errorf("request %d: chunk refused: %s", i, stream.Current().RawJSON())
									return
								}
							}
							if err := stream.Err(); err != nil {
								errs <- err
								return
							}
							content, usage = acc.Choices[0].Message.Content, acc.Usage
						} else {
							params.StreamOptions = openai.ChatCompletionStreamOptionsParam{}
							out, err := c.Chat.Completions.New(context.Background(), params)
							if err != nil {
								errs <- err
								return
							}
							content, usage = out.Choices[0].Message.Content, out.Usage
						}
						if content != wantContent || usage.PromptTokens != int64(p.wantPrompt) || usage.CompletionTokens != wantCompletion {
							errs <- fmt.Errorf("request %d: content %q usage %+v", i, content, usage)
						}
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
			})

			t.Run("credentials", func(t *testing.T) {
				st := p.fake.Stats()
				if len(st.Headers) < 10 {
					t.Fatalf("only %d native requests recorded", len(st.Headers))
				}
				for i, h := range st.Headers {
					if got := h.Get(p.keyHeader); got != p.keyValue {
						t.Fatalf("request %d (%s): %s = %q, want %q", i, st.Paths[i], p.keyHeader, got, p.keyValue)
					}
					if p.keyHeader != "Authorization" && h.Get("Authorization") != "" {
						t.Fatalf("request %d carries an Authorization header", i)
					}
					if p.name == "claude" && h.Get("Anthropic-Version") != "2023-06-01" {
						t.Fatalf("request %d: anthropic-version %q", i, h.Get("Anthropic-Version"))
					}
					for k, v := range h {
						if strings.Contains(strings.Join(v, " "), provClientKey) {
							t.Fatalf("request %d forwarded the client's key in %s", i, k)
						}
					}
					if strings.Contains(st.Paths[i], "key=") || strings.Contains(st.Paths[i], provClientKey) {
						t.Fatalf("key in the URL: %s", st.Paths[i])
					}
				}
			})
		})
	}

	t.Run("no data race in the gateway", func(t *testing.T) {
		if !raceEnabled {
			t.Skip("the gateway is not built with -race")
		}
		if logs := gw.Logs(); strings.Contains(logs, "DATA RACE") {
			t.Fatalf("race detector report:\n%s", tail(logs[strings.Index(logs, "DATA RACE"):], 8000))
		}
	})

	t.Logf("TestProviders took %v", time.Since(start))
}

// checkLoggedTokens finds the access log line of the request tagged with
// X-Test-Id: id and checks the gateway's accounting placeholders.
func provCheckLoggedTokens(t *testing.T, gw *Gateway, id, provider, upstream string, in, out int) {
	t.Helper()
	var line string
	eventually(t, 5*time.Second, func() bool {
		for _, l := range strings.Split(gw.Logs(), "\n") {
			if strings.Contains(l, `"X-Test-Id":["`+id+`"]`) {
				line = l
				return true
			}
		}
		return false
	}, "no access log line for %s:\n%s", id, tail(gw.Logs(), 3000))
	for _, want := range []string{`"ai_provider":"` + provider + `"`, `"ai_upstream_model":"` + upstream + `"`,
		fmt.Sprintf(`"ai_tokens_in":%d`, in), fmt.Sprintf(`"ai_tokens_out":%d`, out)} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s: %s", want, line)
		}
	}
	if strings.Contains(line, provClientKey) || strings.Contains(line, "test-anthropic-key") ||
		strings.Contains(line, "test-gemini-key") || strings.Contains(line, "test-cohere-key") {
		t.Errorf("secret in the log line: %s", line)
	}
}

func provCheckVector(t *testing.T, got []float64, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("vector of %d dimensions, want %d", len(got), len(want))
	}
	for i, v := range got {
		if float32(v) != want[i] {
			t.Fatalf("vector differs at %d: %v want %v", i, v, want[i])
		}
	}
}
