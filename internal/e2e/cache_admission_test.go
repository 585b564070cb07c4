package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

// TestCacheHitNeedsOnlyRPM: a key whose tokens per minute (or budget) are
// used up still gets its cached answers, streamed or not, and a 429 for
// anything uncached; hits count toward its requests per minute. With the
// memory backend, and with Redis (the cache, the limits and the budget all
// on one real redis-server).
func TestCacheHitNeedsOnlyRPM(t *testing.T) {
	t.Run("memory", func(t *testing.T) { testHitNeedsOnlyRPM(t, "", "ttl 1h") })
	t.Run("redis", func(t *testing.T) {
		rs := redistest.Start(t)
		testHitNeedsOnlyRPM(t, "\n\t\tredis redis://"+rs.Addr(), "backend redis\n\t\t\tttl 10m")
	})
}

func testHitNeedsOnlyRPM(t *testing.T, extra, cacheBlock string) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	gw := startCacheGateway(t, fake, map[string]any{
		"Keys": "key t {\n\t\t\tsecret secret-t\n\t\t\ttpm 120\n\t\t}\n" +
			"\t\tkey b {\n\t\t\tsecret secret-b\n\t\t\tbudget 0.1 month\n\t\t}\n" +
			"\t\tkey r {\n\t\t\tsecret secret-r\n\t\t\trpm 3\n\t\t\ttpm 100000\n\t\t}",
		"Extra": "reserve_output_tokens 5\n\t\tprice fake-model 1000 1000" + extra,
		"Cache": cacheBlock,
	})
	ctx := context.Background()
	for _, tc := range []struct{ key, code string }{
		{"secret-t", "rate_limit_exceeded"},
		{"secret-b", "insufficient_quota"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			c := gw.client(option.WithAPIKey(tc.key))
			params := func(prompt string) openai.ChatCompletionNewParams {
				return openai.ChatCompletionNewParams{Model: "demo", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(prompt)}}
			}
			cached := params("cached before the limit " + tc.key)
			var resp *http.Response
			first, err := c.Chat.Completions.New(ctx, cached, option.WithResponseInto(&resp))
			if err != nil || resp.Header.Get("X-AI-Gateway-Cache") != "miss" {
				t.Fatalf("first: %v %v", err, resp.Header)
			}
			// Uncached requests until the limit refuses one, and still does
			// once the settlements (queued with Redis) have given back what
			// the answered ones reserved and did not use.
			useUp := func(round int) {
				t.Helper()
				for i := range 40 {
					_, err := c.Chat.Completions.New(ctx, params(fmt.Sprintf("use it up %d.%d", round, i)))
					var apiErr *openai.Error
					switch {
					case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusTooManyRequests && apiErr.Code == tc.code:
						return
					case err != nil:
						t.Fatalf("request %d: %v", i, err)
					}
				}
				t.Fatal("the limit never refused")
			}
			refusedNow := func() bool {
				_, err := c.Chat.Completions.New(ctx, params("refused?"))
				var apiErr *openai.Error
				return errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusTooManyRequests && apiErr.Code == tc.code
			}
			for round := 0; ; round++ {
				if round == 10 {
					t.Fatal("the limit does not stay used up")
				}
				useUp(round)
				time.Sleep(300 * time.Millisecond)
				if refusedNow() {
					break
				}
			}
			calls := chatCalls(fake)
			for range 3 {
				got, err := c.Chat.Completions.New(ctx, cached, option.WithResponseInto(&resp))
				if err != nil {
					t.Fatalf("hit with the limit used up: %v", err)
				}
				if h := resp.Header.Get("X-AI-Gateway-Cache"); h != "hit" || got.Choices[0].Message.Content != first.Choices[0].Message.Content {
					t.Fatalf("cache %q, content %q", h, got.Choices[0].Message.Content)
				}
			}
			acc, chunks, resp := streamChat(t, c, cached)
			if h := resp.Header.Get("X-AI-Gateway-Cache"); h != "hit" || chunks < 2 || acc.Choices[0].Message.Content != first.Choices[0].Message.Content {
				t.Fatalf("streamed hit: cache %q, %d chunks, %q", h, chunks, acc.Choices[0].Message.Content)
			}
			_, err = c.Chat.Completions.New(ctx, params("uncached after the limit"))
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Code != tc.code {
				t.Fatalf("uncached after the limit: %v", err)
			}
			if n := chatCalls(fake); n != calls {
				t.Fatalf("%d upstream calls after the limit, want none", n-calls)
			}
		})
	}
	t.Run("hits count toward rpm", func(t *testing.T) {
		c := gw.client(option.WithAPIKey("secret-r"))
		p := openai.ChatCompletionNewParams{Model: "demo", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("rpm")}}
		for i := range 3 { // a miss, then two hits
			if _, err := c.Chat.Completions.New(ctx, p); err != nil {
				t.Fatalf("request %d: %v", i, err)
			}
		}
		_, err := c.Chat.Completions.New(ctx, p)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusTooManyRequests || apiErr.Code != "rate_limit_exceeded" {
			t.Fatalf("fourth request in the minute (a hit): %v", err)
		}
	})
}
