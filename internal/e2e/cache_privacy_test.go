package e2e

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/klauspost/compress/zstd"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

// A cached route that masks e-mail addresses (and restores them), one
// that sends card numbers unmasked to a local model, on the Redis cache.
const cachePrivacyCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider cloud {
			base_url {{.Cloud}}/v1
		}
		provider claude {
			type anthropic
			base_url {{.Cloud}}
			api_key upstream-anthropic-key
		}
		provider lan {
			type ollama
			base_url {{.Local}}/v1
		}
		model gpt-4o {
			target cloud echo-model
		}
		model claude-echo {
			target claude echo-model
		}
		model local-llama {
			target lan llama3.1:8b
		}
		redis redis://{{.Redis}}
		cache {
			backend redis
			ttl 10m
		}
	}
}
:{{.Port}} {
	handle /mask/* {
		ai_gateway {
			privacy {
				mask email
				restore on
			}
		}
	}
	handle /route/* {
		ai_gateway {
			privacy {
				route local-llama card
				mask email
			}
		}
	}
}
`

var contentField = regexp.MustCompile(`"(?:content|text)":"((?:[^"\\]|\\.)*)"`)

// TestCachePrivacyRestore: on a route that masks and restores, identical
// requests hit the cache, each client reads its own e-mail back (streamed
// or not), and no stored entry (Redis, after zstd) holds an address: the
// key is over the masked request and the entry is the upstream's masked
// answer. Requests that mask alike share the entry, each restored with its
// own value. A request routed unmasked to a local model is not cached.
func TestCachePrivacyRestore(t *testing.T) {
	rs := redistest.Start(t)
	cloud := startFake(t, fakellm.Options{Name: "cloud"})
	local := startFake(t, fakellm.Options{Name: "local"})
	// Echo: the answer is the request the upstream got, in many chunks.
	cloud.Script("echo-model", fakellm.Behavior{Echo: true, Chunks: 40})
	local.Script("llama3.1:8b", fakellm.Behavior{Echo: true, Chunks: 5})
	gw := noRace(t, startGateway(t, cachePrivacyCaddyfile, map[string]any{"Cloud": cloud.URL, "Local": local.URL, "Redis": rs.Addr()}))
	ctx := context.Background()
	c := gw.client(option.WithBaseURL(gw.URL + "/mask/v1/"))
	const ana, bob = "ana.garcia@example.com", "bob.jones@example.org"
	params := func(prompt string) openai.ChatCompletionNewParams {
		return openai.ChatCompletionNewParams{Model: "gpt-4o", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}}
	}
	ask := func(prompt, want, verdict string) {
		t.Helper()
		var resp *http.Response
		out, err := c.Chat.Completions.New(ctx, params(prompt), option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		text := out.Choices[0].Message.Content
		if got := resp.Header.Get("X-AI-Gateway-Cache"); got != verdict || !strings.Contains(text, want) || strings.Contains(text, "[EMAIL_") {
			t.Fatalf("cache %q (want %s), answer %s", got, verdict, text)
		}
	}
	askStream := func(prompt, want, verdict string) {
		t.Helper()
		acc, chunks, resp := streamChat(t, c, params(prompt))
		text := acc.Choices[0].Message.Content
		if got := resp.Header.Get("X-AI-Gateway-Cache"); got != verdict || chunks < 2 || !strings.Contains(text, want) || strings.Contains(text, "[EMAIL_") {
			t.Fatalf("stream: cache %q (want %s), %d chunks, answer %s", got, verdict, chunks, text)
		}
	}

	ask("Write to "+ana+" about the invoice.", ana, "miss")
	ask("Write to "+ana+" about the invoice.", ana, "hit")
	askStream("Write to "+ana+" about the invoice.", ana, "hit")
	// Another address masks the same way: the same entry, its own value.
	ask("Write to "+bob+" about the invoice.", bob, "hit")
	if n := chatCalls(cloud); n != 1 {
		t.Fatalf("%d upstream calls, want 1", n)
	}
	// A stream recorded live, then replayed.
	askStream("Tell "+ana+" the meeting moved.", ana, "miss")
	askStream("Tell "+ana+" the meeting moved.", ana, "hit")
	ask("Tell "+bob+" the meeting moved.", bob, "hit")
	if n := chatCalls(cloud); n != 2 {
		t.Fatalf("%d upstream calls, want 2", n)
	}
	for _, b := range cloud.Stats().Bodies {
		if strings.Contains(string(b), "@example.") {
			t.Fatalf("the upstream got an address: %s", b)
		}
	}

	// An Anthropic client to an Anthropic provider: the native body is
	// masked, the entry holds Anthropic's answer, and the replayed events
	// are restored (held back where a placeholder may be split).
	ac := anthropic.NewClient(aoption.WithBaseURL(gw.URL+"/mask"), aoption.WithAPIKey("client-key"), aoption.WithMaxRetries(0),
		aoption.WithRequestTimeout(30*time.Second))
	aparams := func(prompt string) anthropic.MessageNewParams {
		return anthropic.MessageNewParams{Model: "claude-echo", MaxTokens: 1024,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))}}
	}
	for _, verdict := range []string{"miss", "hit"} {
		var resp *http.Response
		msg, err := ac.Messages.New(ctx, aparams("Forward it to "+ana+" today."), aoption.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		var text strings.Builder
		for _, b := range msg.Content {
			text.WriteString(b.Text)
		}
		if got := resp.Header.Get("X-AI-Gateway-Cache"); got != verdict || !strings.Contains(text.String(), ana) || strings.Contains(text.String(), "[EMAIL_") {
			t.Fatalf("anthropic: cache %q (want %s), answer %s", got, verdict, text.String())
		}
	}
	for _, verdict := range []string{"miss", "hit"} {
		var resp *http.Response
		st := ac.Messages.NewStreaming(ctx, aparams("Stream it to "+ana+" today."), aoption.WithResponseInto(&resp))
		var text strings.Builder
		deltas := 0
		for st.Next() {
			if ev := st.Current(); ev.Type == "content_block_delta" {
				text.WriteString(ev.Delta.Text)
				deltas++
			}
		}
		if err := st.Err(); err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("X-AI-Gateway-Cache"); got != verdict || deltas < 2 || !strings.Contains(text.String(), ana) || strings.Contains(text.String(), "[EMAIL_") {
			t.Fatalf("anthropic stream: cache %q (want %s), %d deltas, answer %s", got, verdict, deltas, text.String())
		}
	}
	if n := cloud.Stats().Requests["/v1/messages"]; n != 2 {
		t.Fatalf("%d upstream Messages calls, want 2", n)
	}

	// What Redis holds: keys and values, decompressed.
	dec, err := zstd.NewReader(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	keys := rs.Keys("*")
	entries := 0
	for _, k := range keys {
		if strings.Contains(k, "@") {
			t.Errorf("redis key holds an address: %s", k)
		}
		if !strings.Contains(k, "cache:c:") {
			continue
		}
		raw, err := rs.Client().Get(ctx, k).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		val, err := dec.DecodeAll(raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		entries++
		if strings.Contains(string(val), "@example.") || strings.Contains(string(val), "garcia") || strings.Contains(string(val), "jones") {
			t.Errorf("stored entry holds an address: %q", val)
		}
		// The answer's text, joined across a stream's chunks.
		var text strings.Builder
		for _, m := range contentField.FindAllStringSubmatch(string(val), -1) {
			text.WriteString(m[1])
		}
		if !strings.Contains(text.String(), "[EMAIL_1]") {
			t.Errorf("stored entry lacks the placeholder: %q", val)
		}
	}
	if entries != 4 {
		t.Fatalf("%d entries in %v, want 4", entries, keys)
	}

	// Sent unmasked to the local model: never cached.
	rc := gw.client(option.WithBaseURL(gw.URL + "/route/v1/"))
	for range 2 {
		var resp *http.Response
		out, err := rc.Chat.Completions.New(ctx, params("My card is 4111 1111 1111 1111."), option.WithResponseInto(&resp))
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Header.Get("X-AI-Gateway-Cache"); got != "bypass" || !strings.Contains(out.Choices[0].Message.Content, "4111") {
			t.Fatalf("routed: cache %q, answer %s", got, out.Choices[0].Message.Content)
		}
	}
	if n := local.Stats().Requests["/v1/chat/completions"]; n != 2 {
		t.Fatalf("local model called %d times, want 2", n)
	}
}
