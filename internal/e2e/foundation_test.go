package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
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

const foundationCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider a {
			base_url {{.A}}/v1
			api_key upstream-secret-a
		}
		provider b {
			base_url {{.B}}/v1
			header X-Team platform
		}
		provider dead {
			base_url http://127.0.0.1:{{.DeadPort}}/v1
			connect_timeout 1s
		}
		provider slow {
			base_url {{.A}}/v1
			first_byte_timeout 500ms
			idle_timeout 500ms
		}
		provider az {
			type azure
			base_url {{.A}}
			api_key az-secret
			api_version 2024-10-21
		}
		provider ticker {
			base_url {{.Ticker}}/v1
		}
		model demo {
			target a fake-model
		}
		model echo {
			target a echo-model
		}
		model tools {
			target a tool-model
		}
		model flaky {
			target a flaky-model
			retries 1
		}
		model primary {
			target a broken-model
			fallback backup
		}
		model backup {
			target b backup-model
		}
		model deadend {
			target dead x
		}
		model hang {
			target slow hang-model
		}
		model hang-long {
			target a hang-model
		}
		model garbage {
			target a garbage-model
		}
		model cutoff {
			target a cutoff-model
		}
		model slowstream {
			target a slowstream-model
		}
		model azure-dep {
			target az my-deployment
		}
		model cool {
			target a cool-model
			fallback backup
		}
		model ticker {
			target ticker tick-model
		}
		model gpt-* {
			target a
		}
		retry_backoff 10ms
		max_fails 2
		cooldown 1m
	}
}
:{{.Port}} {
	encode gzip zstd
	log {
		output stdout
		# Caddy redacts Authorization itself; SDKs also send keys in these.
		format filter {
			wrap json
			request>headers>Api-Key replace REDACTED
			request>headers>X-Api-Key replace REDACTED
		}
	}
	log_append ai_model {http.ai_gateway.model}
	log_append ai_provider {http.ai_gateway.provider}
	log_append ai_upstream_model {http.ai_gateway.upstream_model}
	log_append ai_attempts {http.ai_gateway.attempts}
	log_append ai_tokens_in {http.ai_gateway.tokens.input}
	log_append ai_tokens_out {http.ai_gateway.tokens.output}
	log_append ai_ttft_ms {http.ai_gateway.ttft_ms}
	handle_path /openai/* {
		ai_gateway
	}
	handle /small/* {
		ai_gateway {
			max_body_size 1KB
			max_messages 3
			models demo gpt-*
		}
	}
	handle {
		ai_gateway
	}
}
`

type foundation struct {
	gw     *Gateway
	a, b   *Fake
	ticker *Fake
	sent   *sentTimes
}

type sentTimes struct {
	mu sync.Mutex
	t  []time.Time
}

func (s *sentTimes) add(_ int, at time.Time) {
	s.mu.Lock()
	s.t = append(s.t, at)
	s.mu.Unlock()
}

func (s *sentTimes) get() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.t...)
}

var (
	foundationOnce sync.Once
	foundationEnv  *foundation
)

// startFoundation starts one gateway shared by the foundation tests (they
// run sequentially and use distinct model names).
func startFoundation(t *testing.T) *foundation {
	t.Helper()
	a := startFake(t, fakellm.Options{Name: "fake-a"})
	b := startFake(t, fakellm.Options{Name: "fake-b"})
	sent := &sentTimes{}
	ticker := startFake(t, fakellm.Options{Name: "ticker", ChunkDelay: 200 * time.Millisecond, Chunks: 6, OnChunk: sent.add})
	a.Script("echo-model", fakellm.Behavior{Echo: true})
	a.Script("tool-model", fakellm.Behavior{ToolCall: true})
	a.Script("broken-model", fakellm.Behavior{Status: 500})
	a.Script("hang-model", fakellm.Behavior{Hang: true})
	a.Script("garbage-model", fakellm.Behavior{Garbage: true})
	a.Script("cutoff-model", fakellm.Behavior{FailAfter: 2, Chunks: 10})
	a.Script("slowstream-model", fakellm.Behavior{ChunkDelay: 100 * time.Millisecond, Chunks: 100})
	a.Script("cool-model", fakellm.Behavior{Status: 503})
	gw := startGateway(t, foundationCaddyfile, map[string]any{
		"A": a.URL, "B": b.URL, "Ticker": ticker.URL, "DeadPort": freePort(t),
	})
	return &foundation{gw: gw, a: a, b: b, ticker: ticker, sent: sent}
}

func userMsg(s string) []openai.ChatCompletionMessageParamUnion {
	return []openai.ChatCompletionMessageParamUnion{openai.UserMessage(s)}
}

// lastBody returns the last body the fake received for an upstream model.
func lastBody(f *Fake, model string) string {
	st := f.Stats()
	for i := len(st.Bodies) - 1; i >= 0; i-- {
		if gjson.GetBytes(st.Bodies[i], "model").Str == model {
			return string(st.Bodies[i])
		}
	}
	return ""
}

func countModel(f *Fake, model string) int {
	n := 0
	for _, b := range f.Stats().Bodies {
		if gjson.GetBytes(b, "model").Str == model {
			n++
		}
	}
	return n
}

func TestFoundation(t *testing.T) {
	env := startFoundation(t)
	gw := env.gw
	c := gw.client()
	ctx := context.Background()

	t.Run("chat non-stream", func(t *testing.T) {
		var resp *http.Response
		out, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: "demo", Messages: userMsg("hello there gateway"),
		}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		if got := out.Choices[0].Message.Content; !strings.HasPrefix(got, "Hello from fake-a") {
			t.Fatalf("content %q", got)
		}
		if resp.Header.Get("X-AI-Gateway-Provider") != "a" || resp.Header.Get("X-AI-Gateway-Model") != "fake-model" || resp.Header.Get("X-AI-Gateway-Attempts") != "1" {
			t.Fatalf("headers %v", resp.Header)
		}
		body := lastBody(env.a, "fake-model")
		if want := int64(fakellm.CountPromptTokens([]byte(body))); out.Usage.PromptTokens != want || out.Usage.CompletionTokens == 0 {
			t.Fatalf("usage %+v, want prompt %d", out.Usage, want)
		}
		h := env.a.Stats().Headers
		last := h[len(h)-1]
		if last.Get("Authorization") != "Bearer upstream-secret-a" {
			t.Fatalf("upstream auth %q", last.Get("Authorization"))
		}
		for k, v := range last {
			if strings.Contains(strings.Join(v, " "), "client-key-never-forwarded") {
				t.Fatalf("client key forwarded in %s", k)
			}
		}
		// Placeholders reach the access log.
		eventually(t, 5*time.Second, func() bool {
			return strings.Contains(gw.Logs(), `"ai_upstream_model":"fake-model"`)
		}, "placeholders not logged:\n%s", tail(gw.Logs(), 3000))
		for _, line := range strings.Split(gw.Logs(), "\n") {
			if strings.Contains(line, `"ai_upstream_model":"fake-model"`) {
				for _, want := range []string{`"ai_model":"demo"`, `"ai_provider":"a"`, `"ai_attempts":1`, fmt.Sprintf(`"ai_tokens_in":%d`, out.Usage.PromptTokens), fmt.Sprintf(`"ai_tokens_out":%d`, out.Usage.CompletionTokens), `"ai_ttft_ms"`} {
					if !strings.Contains(line, want) {
						t.Errorf("log line lacks %s: %s", want, line)
					}
				}
				if strings.Contains(line, "upstream-secret-a") || strings.Contains(line, "client-key-never-forwarded") {
					t.Errorf("secret in log: %s", line)
				}
				break
			}
		}
	})

	t.Run("chat stream accumulated", func(t *testing.T) {
		stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "demo", Messages: userMsg("stream please")})
		acc := openai.ChatCompletionAccumulator{}
		chunks := 0
		for stream.Next() {
			ch := stream.Current()
			acc.AddChunk(ch)
			chunks++
			if ch.JSON.Usage.Valid() && ch.Usage.TotalTokens > 0 {
				t.Fatalf("usage chunk reached a client that did not ask for it")
			}
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		if got := acc.Choices[0].Message.Content; !strings.HasPrefix(got, "Hello from fake-a") || chunks < 5 {
			t.Fatalf("content %q in %d chunks", got, chunks)
		}
		// The gateway asked upstream for usage anyway.
		if !gjson.Get(lastBody(env.a, "fake-model"), "stream_options.include_usage").Bool() {
			t.Fatal("gateway did not request include_usage upstream")
		}
	})

	t.Run("chat stream with usage", func(t *testing.T) {
		stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
			Model: "demo", Messages: userMsg("count my tokens please"),
			StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
		})
		acc := openai.ChatCompletionAccumulator{}
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		want := int64(fakellm.CountPromptTokens([]byte(lastBody(env.a, "fake-model"))))
		if acc.Usage.PromptTokens != want || acc.Usage.CompletionTokens == 0 {
			t.Fatalf("usage %+v want prompt %d", acc.Usage, want)
		}
	})

	t.Run("streamed tool call", func(t *testing.T) {
		params := openai.ChatCompletionNewParams{
			Model:    "tools",
			Messages: userMsg("weather in Paris?"),
			Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
				Name: "get_weather",
				Parameters: shared.FunctionParameters{
					"type":       "object",
					"properties": map[string]any{"location": map[string]any{"type": "string"}},
				},
			})},
		}
		stream := c.Chat.Completions.NewStreaming(ctx, params)
		acc := openai.ChatCompletionAccumulator{}
		for stream.Next() {
			acc.AddChunk(stream.Current())
		}
		if err := stream.Err(); err != nil {
			t.Fatal(err)
		}
		calls := acc.Choices[0].Message.ToolCalls
		if len(calls) != 1 || calls[0].Function.Name != "get_weather" || !json.Valid([]byte(calls[0].Function.Arguments)) ||
			!strings.Contains(calls[0].Function.Arguments, "location") || acc.Choices[0].FinishReason != "tool_calls" {
			t.Fatalf("tool calls %+v finish %q", calls, acc.Choices[0].FinishReason)
		}
		out, err := c.Chat.Completions.New(ctx, params)
		if err != nil || len(out.Choices[0].Message.ToolCalls) != 1 {
			t.Fatalf("non-stream tool call: %v %+v", err, out)
		}
	})

	t.Run("echo shows what went upstream", func(t *testing.T) {
		// Body fields that look like routing or credentials never steer.
		out, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "echo", Messages: userMsg("hi")},
			option.WithJSONSet("api_base", "http://127.0.0.1:1/v1"), option.WithJSONSet("base_url", "http://127.0.0.1:1"),
			option.WithJSONSet("api_key", "attacker"), option.WithJSONSet("temperature", 0.25))
		if err != nil {
			t.Fatal(err)
		}
		sent := out.Choices[0].Message.Content
		if gjson.Get(sent, "model").Str != "echo-model" || gjson.Get(sent, "temperature").Num != 0.25 ||
			gjson.Get(sent, "messages.0.content").Str != "hi" {
			t.Fatalf("upstream body %s", sent)
		}
	})

	t.Run("completions", func(t *testing.T) {
		out, err := c.Completions.New(ctx, openai.CompletionNewParams{
			Model: "demo", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Say hi")},
		})
		if err != nil || !strings.Contains(out.Choices[0].Text, "fake-a") || out.Usage.TotalTokens == 0 {
			t.Fatalf("completions: %v %+v", err, out)
		}
		stream := c.Completions.NewStreaming(ctx, openai.CompletionNewParams{
			Model: "demo", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Say hi")},
		})
		var text strings.Builder
		for stream.Next() {
			if ch := stream.Current(); len(ch.Choices) > 0 {
				text.WriteString(ch.Choices[0].Text)
			}
		}
		if err := stream.Err(); err != nil || !strings.Contains(text.String(), "fake-a") {
			t.Fatalf("completions stream: %v %q", err, text.String())
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		out, err := c.Embeddings.New(ctx, openai.EmbeddingNewParams{
			Model: "demo", Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"the cat sat", "a dog ran"}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Data) != 2 || out.Usage.PromptTokens == 0 {
			t.Fatalf("embeddings %+v", out)
		}
		want := fakellm.Embed("the cat sat", len(out.Data[0].Embedding))
		for i, v := range out.Data[0].Embedding {
			if float32(v) != want[i] {
				t.Fatalf("vector differs at %d", i)
			}
		}
	})

	t.Run("responses", func(t *testing.T) {
		out, err := c.Responses.New(ctx, responses.ResponseNewParams{
			Model: "demo", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello responses")},
		})
		if err != nil || !strings.Contains(out.OutputText(), "fake-a") || out.Usage.InputTokens == 0 {
			t.Fatalf("responses: %v %+v", err, out)
		}
		stream := c.Responses.NewStreaming(ctx, responses.ResponseNewParams{
			Model: "demo", Input: responses.ResponseNewParamsInputUnion{OfString: openai.String("hello responses")},
		})
		var text strings.Builder
		completed := false
		for stream.Next() {
			ev := stream.Current()
			switch ev.Type {
			case "response.output_text.delta":
				text.WriteString(ev.Delta)
			case "response.completed":
				completed = ev.Response.Usage.OutputTokens > 0
			}
		}
		if err := stream.Err(); err != nil || !completed || !strings.Contains(text.String(), "fake-a") {
			t.Fatalf("responses stream: %v completed=%v %q", err, completed, text.String())
		}
	})

	t.Run("models", func(t *testing.T) {
		page, err := c.Models.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, m := range page.Data {
			ids[m.ID] = true
		}
		if !ids["demo"] || !ids["backup"] || ids["gpt-*"] {
			t.Fatalf("model ids %v", ids)
		}
		m, err := c.Models.Get(ctx, "gpt-4o-mini")
		if err != nil || m.ID != "gpt-4o-mini" || m.OwnedBy != "a" {
			t.Fatalf("get glob model: %v %+v", err, m)
		}
		_, err = c.Models.Get(ctx, "claude-nope")
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" {
			t.Fatalf("unknown model: %v", err)
		}
		// The site restricted to some models lists only those.
		status, _, body := do(t, mustReq(t, http.MethodGet, gw.URL+"/small/v1/models", ""))
		if status != 200 || !strings.Contains(body, `"demo"`) || strings.Contains(body, `"backup"`) {
			t.Fatalf("restricted list: %d %s", status, body)
		}
	})

	t.Run("path prefix", func(t *testing.T) {
		pc := openai.NewClient(option.WithBaseURL(gw.URL+"/openai/v1/"), option.WithAPIKey("k"), option.WithMaxRetries(0))
		out, err := pc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "demo", Messages: userMsg("prefixed")})
		if err != nil || !strings.Contains(out.Choices[0].Message.Content, "fake-a") {
			t.Fatalf("prefix: %v", err)
		}
	})

	t.Run("azure", func(t *testing.T) {
		if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "azure-dep", Messages: userMsg("hi azure")}); err != nil {
			t.Fatal(err)
		}
		st := env.a.Stats()
		path, hdr := st.Paths[len(st.Paths)-1], st.Headers[len(st.Headers)-1]
		if path != "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21" {
			t.Fatalf("azure path %q", path)
		}
		if hdr.Get("Api-Key") != "az-secret" || hdr.Get("Authorization") != "" {
			t.Fatalf("azure headers %v", hdr)
		}
	})

	t.Run("errors", func(t *testing.T) {
		chat := gw.URL + "/v1/chat/completions"
		cases := []struct {
			name, url, method, body string
			status                  int
			code                    string
		}{
			{"malformed json", chat, "POST", `{"model":`, 400, "invalid_json"},
			{"not an object", chat, "POST", `[1,2]`, 400, "invalid_json"},
			{"missing model", chat, "POST", `{"messages":[]}`, 400, "missing_model"},
			{"missing messages", chat, "POST", `{"model":"demo"}`, 400, "missing_required_parameter"},
			{"bad stream type", chat, "POST", `{"model":"demo","stream":"yes","messages":[]}`, 400, "invalid_type"},
			{"unknown model", chat, "POST", `{"model":"nope","messages":[]}`, 404, "model_not_found"},
			{"model not on this site", gw.URL + "/small/v1/chat/completions", "POST", `{"model":"backup","messages":[]}`, 404, "model_not_found"},
			{"body too large", gw.URL + "/small/v1/chat/completions", "POST", `{"model":"demo","messages":[{"role":"user","content":"` + strings.Repeat("x", 2000) + `"}]}`, 413, "request_too_large"},
			{"too many messages", gw.URL + "/small/v1/chat/completions", "POST", `{"model":"demo","messages":[{},{},{},{}]}`, 400, "too_many_messages"},
			{"wrong method", chat, "GET", ``, 405, "method_not_allowed"},
			{"unknown path", gw.URL + "/v1/nope", "POST", `{}`, 404, "unknown_url"},
			{"upstream unreachable", chat, "POST", `{"model":"deadend","messages":[{"role":"user","content":"x"}]}`, 502, "upstream_unavailable"},
			{"upstream first byte timeout", chat, "POST", `{"model":"hang","messages":[{"role":"user","content":"x"}]}`, 504, "upstream_timeout"},
			{"upstream garbage", chat, "POST", `{"model":"garbage","messages":[{"role":"user","content":"x"}]}`, 502, "upstream_invalid_response"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				status, hdr, body := do(t, mustReq(t, tc.method, tc.url, tc.body))
				if status != tc.status {
					t.Fatalf("status %d want %d: %s", status, tc.status, body)
				}
				if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") || !gjson.Valid(body) {
					t.Fatalf("not JSON: %s", body)
				}
				e := gjson.Get(body, "error")
				if e.Get("code").Str != tc.code || e.Get("message").Str == "" || e.Get("type").Str == "" || !e.Get("param").Exists() {
					t.Fatalf("envelope %s", body)
				}
				for _, leak := range []string{"127.0.0.1", "upstream-secret", "<html", "<!DOCTYPE", "client-key"} {
					if strings.Contains(body, leak) {
						t.Fatalf("error body leaks %q: %s", leak, body)
					}
				}
				if tc.status == 405 && hdr.Get("Allow") == "" {
					t.Fatal("405 without Allow")
				}
			})
		}
		// The operator's log says why the provider could not be reached
		// (the client's body above does not), without the request URL.
		eventually(t, 5*time.Second, func() bool {
			return strings.Contains(gw.Logs(), `"provider":"dead"`)
		}, "no failed attempt logged for provider dead:\n%s", tail(gw.Logs(), 3000))
		for _, line := range strings.Split(gw.Logs(), "\n") {
			if strings.Contains(line, `"upstream attempt failed"`) && strings.Contains(line, `"provider":"dead"`) {
				cause := gjson.Get(line, "cause").Str
				if !strings.Contains(cause, "connection refused") || strings.Contains(cause, "/v1/chat/completions") || strings.Contains(cause, "Post ") {
					t.Fatalf("cause %q in %s", cause, line)
				}
			}
			if strings.Contains(line, `"upstream attempt failed"`) && strings.Contains(line, `"provider":"slow"`) && gjson.Get(line, "cause").Str == "" {
				t.Fatalf("a timed-out attempt logged no cause: %s", line)
			}
		}
		// Provider 4xx keeps its status and the provider's own message.
		env.a.Enqueue(fakellm.Behavior{Status: 400})
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "demo", Messages: userMsg("x")})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Message == "" {
			t.Fatalf("provider 400: %v", err)
		}
	})

	t.Run("retry after 429 honours Retry-After", func(t *testing.T) {
		env.a.Enqueue(fakellm.Behavior{Status: 429, RetryAfter: "1"})
		var resp *http.Response
		start := time.Now()
		out, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "flaky", Messages: userMsg("retry me")}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		if el := time.Since(start); el < 900*time.Millisecond {
			t.Fatalf("retried after %v, before Retry-After", el)
		}
		if resp.Header.Get("X-AI-Gateway-Attempts") != "2" || out.Choices[0].Message.Content == "" {
			t.Fatalf("attempts %q", resp.Header.Get("X-AI-Gateway-Attempts"))
		}
		// Retries exhausted: the client sees the 429 with Retry-After.
		env.a.Enqueue(fakellm.Behavior{Status: 429, RetryAfter: "1"}, fakellm.Behavior{Status: 429, RetryAfter: "1"})
		_, err = c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "flaky", Messages: userMsg("retry me")}, option.WithResponseInto(&resp))
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || resp.Header.Get("X-AI-Gateway-Attempts") != "2" || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("exhausted: %v attempts %q", err, resp.Header.Get("X-AI-Gateway-Attempts"))
		}
	})

	t.Run("fallback to next model", func(t *testing.T) {
		var resp *http.Response
		out, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "primary", Messages: userMsg("fall back")}, option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("X-AI-Gateway-Provider") != "b" || resp.Header.Get("X-AI-Gateway-Model") != "backup-model" ||
			resp.Header.Get("X-AI-Gateway-Attempts") != "2" || !strings.Contains(out.Choices[0].Message.Content, "fake-b") {
			t.Fatalf("fallback headers %v", resp.Header)
		}
		st := env.b.Stats()
		if st.Headers[len(st.Headers)-1].Get("X-Team") != "platform" {
			t.Fatal("provider header not sent")
		}
	})

	t.Run("cooldown", func(t *testing.T) {
		for i := range 2 {
			if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "cool", Messages: userMsg("x")}); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
		if n := countModel(env.a, "cool-model"); n != 2 {
			t.Fatalf("cool-model tried %d times, want 2", n)
		}
		var resp *http.Response
		for range 5 {
			if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "cool", Messages: userMsg("x")}, option.WithResponseInto(&resp)); err != nil {
				t.Fatal(err)
			}
		}
		if n := countModel(env.a, "cool-model"); n != 2 {
			t.Fatalf("cooling target still tried: %d", n)
		}
		if resp.Header.Get("X-AI-Gateway-Attempts") != "1" || resp.Header.Get("X-AI-Gateway-Provider") != "b" {
			t.Fatalf("during cooldown: %v", resp.Header)
		}
	})

	t.Run("mid-stream upstream failure is an error, not a clean finish", func(t *testing.T) {
		stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: "cutoff", Messages: userMsg("x")})
		n := 0
		for stream.Next() {
			n++
		}
		if stream.Err() == nil {
			t.Fatalf("cut stream ended cleanly after %d chunks", n)
		}
		if n == 0 {
			t.Fatal("no chunk before the cut")
		}
	})

	t.Run("client disconnect cancels upstream", func(t *testing.T) {
		for _, model := range []string{"slowstream", "hang-long"} {
			before := env.a.Stats().Cancelled
			cctx, cancel := context.WithCancel(ctx)
			if model == "slowstream" {
				stream := c.Chat.Completions.NewStreaming(cctx, openai.ChatCompletionNewParams{Model: model, Messages: userMsg("x")})
				if !stream.Next() {
					t.Fatalf("no first chunk: %v", stream.Err())
				}
				cancel()
				stream.Close()
			} else {
				go func() { time.Sleep(300 * time.Millisecond); cancel() }()
				_, _ = c.Chat.Completions.New(cctx, openai.ChatCompletionNewParams{Model: model, Messages: userMsg("x")})
			}
			cancelledAt := time.Now()
			eventually(t, time.Second, func() bool { return env.a.Stats().Cancelled > before },
				"%s: upstream not cancelled within 1s of the client leaving", model)
			t.Logf("%s: upstream saw the cancel after %v", model, time.Since(cancelledAt))
			cancel()
		}
	})

	t.Run("stream is not buffered nor compressed", func(t *testing.T) {
		req := mustReq(t, http.MethodPost, gw.URL+"/v1/chat/completions", `{"model":"ticker","stream":true,"messages":[{"role":"user","content":"tick"}]}`)
		req.Header.Set("Accept-Encoding", "gzip, zstd")
		tr := &http.Transport{DisableCompression: true}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if ce := resp.Header.Get("Content-Encoding"); ce != "" {
			t.Fatalf("stream compressed with %s", ce)
		}
		br := bufio.NewReader(resp.Body)
		var got []time.Time
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				break
			}
			if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"content":"`) && !strings.Contains(line, `"content":""`) {
				got = append(got, time.Now())
			}
		}
		sent := env.sent.get()
		if len(got) != 6 || len(sent) != 6 {
			t.Fatalf("received %d content chunks, fake sent %d", len(got), len(sent))
		}
		for i := range got {
			if lag := got[i].Sub(sent[i]); lag > 50*time.Millisecond {
				t.Errorf("chunk %d reached the client %v after it was sent", i, lag)
			}
		}
	})
}

func mustReq(t testing.TB, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

var _ = net.Dial
