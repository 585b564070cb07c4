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
	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// Protocol headers belong to the client's dialect: a native target gets
// them, a translating one refuses the betas it cannot honour (or drops them
// under drop_unsupported_params).
const protocolCaddyfile = `{
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
		provider claude-lenient {
			type anthropic
			base_url {{.Fake}}
			api_key upstream-anthropic-key
			drop_unsupported_params
		}
		provider gem {
			type gemini
			base_url {{.Fake}}
			api_key upstream-gemini-key
			drop_unsupported_params
		}
		model via-openai {
			target oai fake-model
		}
		model via-anthropic {
			target claude claude-native
		}
		model via-anthropic-lenient {
			target claude-lenient claude-native
		}
		model via-gemini {
			target gem gemini-model
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`

func TestProtocolHeaders(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	gw := startGateway(t, protocolCaddyfile, map[string]any{"Fake": fake.URL})
	ctx := context.Background()
	const beta = "mcp-client-2025-04-04"
	ac := anthropic.NewClient(aoption.WithBaseURL(gw.URL), aoption.WithAPIKey("client-key"), aoption.WithMaxRetries(0),
		aoption.WithRequestTimeout(30*time.Second), aoption.WithHeader("anthropic-beta", beta))
	hello := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hello there"))}

	t.Run("anthropic-beta reaches a native Anthropic target", func(t *testing.T) {
		if _, err := ac.Messages.New(ctx, anthropic.MessageNewParams{Model: "via-anthropic", MaxTokens: 16, Messages: hello}); err != nil {
			t.Fatal(err)
		}
		_, hdr, path := provLast(t, fake)
		if path != "/v1/messages" || hdr.Get("Anthropic-Beta") != beta || hdr.Get("Anthropic-Version") == "" {
			t.Fatalf("path %s, headers %v", path, hdr)
		}
	})
	t.Run("anthropic-beta to a translated target is refused", func(t *testing.T) {
		before := len(fake.Stats().Bodies)
		_, err := ac.Messages.New(ctx, anthropic.MessageNewParams{Model: "via-openai", MaxTokens: 16, Messages: hello})
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest {
			t.Fatalf("err %v", err)
		}
		if len(fake.Stats().Bodies) != before {
			t.Fatal("the upstream was called")
		}
	})
	t.Run("dropped under drop_unsupported_params", func(t *testing.T) {
		if _, err := ac.Messages.New(ctx, anthropic.MessageNewParams{Model: "via-gemini", MaxTokens: 16, Messages: hello}); err != nil {
			t.Fatal(err)
		}
		if _, hdr, _ := provLast(t, fake); hdr.Get("Anthropic-Beta") != "" {
			t.Fatal("a dropped beta must not be sent")
		}
	})

	t.Run("top_k only reaches Anthropic", func(t *testing.T) {
		plain := anthropic.NewClient(aoption.WithBaseURL(gw.URL), aoption.WithAPIKey("client-key"), aoption.WithMaxRetries(0))
		p := anthropic.MessageNewParams{Model: "via-anthropic", MaxTokens: 16, Messages: hello, TopK: anthropic.Int(5)}
		if _, err := plain.Messages.New(ctx, p); err != nil {
			t.Fatal(err)
		}
		if body, _, _ := provLast(t, fake); gjson.GetBytes(body, "top_k").Int() != 5 {
			t.Fatalf("native body %s", body)
		}
		p.Model = "via-openai"
		_, err := plain.Messages.New(ctx, p)
		var ae *anthropic.Error
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusBadRequest || !strings.Contains(ae.Error(), "top_k") {
			t.Fatalf("translated: %v", err)
		}
		p.Model = "via-gemini" // drop_unsupported_params
		if _, err := plain.Messages.New(ctx, p); err != nil {
			t.Fatalf("dropped: %v", err)
		}
	})

	oc := gw.client(option.WithHeader("OpenAI-Beta", "assistants=v2"))
	msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}
	t.Run("OpenAI-Beta reaches an OpenAI-compatible target", func(t *testing.T) {
		if _, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "via-openai", Messages: msgs}); err != nil {
			t.Fatal(err)
		}
		if _, hdr, _ := provLast(t, fake); hdr.Get("OpenAI-Beta") != "assistants=v2" {
			t.Fatalf("headers %v", hdr)
		}
	})
	t.Run("OpenAI-Beta to a translated target is refused", func(t *testing.T) {
		_, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "via-anthropic", Messages: msgs})
		var oe *openai.Error
		if !errors.As(err, &oe) || oe.StatusCode != http.StatusBadRequest || oe.Code != "unsupported_parameter" || oe.Param != "openai-beta" {
			t.Fatalf("err %v", err)
		}
		if _, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "via-anthropic-lenient", Messages: msgs}); err != nil {
			t.Fatalf("lenient: %v", err)
		}
	})
	t.Run("no beta, no change", func(t *testing.T) {
		plain := anthropic.NewClient(aoption.WithBaseURL(gw.URL), aoption.WithAPIKey("client-key"), aoption.WithMaxRetries(0))
		if _, err := plain.Messages.New(ctx, anthropic.MessageNewParams{Model: "via-openai", MaxTokens: 16, Messages: hello}); err != nil {
			t.Fatal(err)
		}
	})
}
