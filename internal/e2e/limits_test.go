package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

// keysCaddyfile declares static keys; {{.Redis}} is empty for in-process
// state or a `redis` block.
const keysCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider fake {
			base_url {{.Fake}}/v1
		}
		model demo {
			target fake fake-model
		}
		model slow {
			target fake slow-model
		}
		model priced {
			target fake priced-model
		}
		model other {
			target fake other-model
		}
		price priced-model 1000 1000
		key team-a {
			secret {env.TEAM_A_KEY}
			models demo slow
			rpm 1
			metadata team a
		}
		key team-b {
			sha256 {{.HashB}}
			tpm 10000
		}
		key conc {
			secret conc-secret
			concurrency 10
		}
		key budget {
			secret budget-secret
			budget 0.02 day
		}
		key open {
			secret open-secret
			rpm 100000
		}
		{{.Redis}}
	}
}
:{{.Port}} {
	log {
		output stdout
		# Caddy redacts Authorization itself; SDKs also send keys in these.
		format filter {
			wrap json
			request>headers>Api-Key replace REDACTED
			request>headers>X-Api-Key replace REDACTED
		}
	}
	log_append ai_key {http.ai_gateway.key}
	ai_gateway
}
`

func startKeysGateway(t *testing.T, fake *Fake, redisBlock string) *Gateway {
	t.Helper()
	t.Setenv("TEAM_A_KEY", "team-a-secret")
	return startGateway(t, keysCaddyfile, map[string]any{
		"Fake": fake.URL, "HashB": sha256hex("team-b-secret"), "Redis": redisBlock,
	})
}

func clientWithKey(g *Gateway, key string) openai.Client {
	return g.client(option.WithAPIKey(key))
}

func TestKeysAndLimits(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	fake.Script("slow-model", fakellm.Behavior{ChunkDelay: 100 * time.Millisecond, Chunks: 40})
	gw := startKeysGateway(t, fake, "")
	ctx := context.Background()
	chat := gw.URL + "/v1/chat/completions"
	body := `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`

	t.Run("authentication", func(t *testing.T) {
		cases := []struct {
			name   string
			hdr    []string
			status int
			code   string
		}{
			{"no key", nil, 401, "invalid_api_key"},
			{"wrong key", []string{"Authorization", "Bearer nope"}, 401, "invalid_api_key"},
			{"bearer", []string{"Authorization", "Bearer open-secret"}, 200, ""},
			{"azure api-key", []string{"api-key", "open-secret"}, 200, ""},
			{"anthropic x-api-key", []string{"x-api-key", "open-secret"}, 200, ""},
			{"hashed config key", []string{"Authorization", "Bearer team-b-secret"}, 200, ""},
			{"model not allowed for key", []string{"Authorization", "Bearer team-a-secret"}, 404, "model_not_found"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				b := body
				if tc.code == "model_not_found" {
					b = strings.Replace(body, `"demo"`, `"other"`, 1)
				}
				status, _, resp := post(t, chat, b, tc.hdr...)
				if status != tc.status || (tc.code != "" && gjson.Get(resp, "error.code").Str != tc.code) {
					t.Fatalf("status %d body %s", status, resp)
				}
				if strings.Contains(resp, "secret") {
					t.Fatalf("body mentions a secret: %s", resp)
				}
			})
		}
		// Models list is filtered by the key's policy.
		req := mustReq(t, http.MethodGet, gw.URL+"/v1/models", "")
		req.Header.Set("Authorization", "Bearer team-a-secret")
		_, _, list := do(t, req)
		if !strings.Contains(list, `"demo"`) || strings.Contains(list, `"other"`) {
			t.Fatalf("team-a models: %s", list)
		}
		eventually(t, 5*time.Second, func() bool { return strings.Contains(gw.Logs(), `"ai_key":"team-b"`) }, "key name not logged")
		for _, s := range []string{"team-a-secret", "team-b-secret", "open-secret"} {
			if strings.Contains(gw.Logs(), s) {
				t.Fatalf("secret %q in logs", s)
			}
		}
	})

	t.Run("rpm headers and 429 through the SDK", func(t *testing.T) {
		c := clientWithKey(gw, "team-a-secret")
		var resp *http.Response
		if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "demo", Messages: userMsg("one")}, option.WithResponseInto(&resp)); err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("X-Ratelimit-Limit-Requests") != "1" || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" || resp.Header.Get("X-Ratelimit-Reset-Requests") == "" {
			t.Fatalf("rate limit headers: %v", resp.Header)
		}
		_, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "demo", Messages: userMsg("two")})
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 429 || apiErr.Code != "rate_limit_exceeded" || apiErr.Type != "rate_limit_exceeded" {
			t.Fatalf("want 429 rate_limit_exceeded, got %v", err)
		}
		if ra := apiErr.Response.Header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Fatalf("Retry-After %q", ra)
		}
		if apiErr.Response.Header.Get("X-Ratelimit-Remaining-Requests") != "0" {
			t.Fatalf("429 headers %v", apiErr.Response.Header)
		}
	})

	t.Run("tpm reservation: 20 concurrent streams against 10000 TPM", func(t *testing.T) {
		// Each request reserves its prompt estimate (8 tokens for one short
		// message) plus max_tokens 992 = 1000 tokens.
		c := clientWithKey(gw, "team-b-secret")
		var admitted, limited atomic.Int64
		var mu sync.Mutex
		before := adminGet(t, gw, "/ai_gateway/keys/team-b")
		used := gjson.Get(before, "usage.input_tokens").Int() + gjson.Get(before, "usage.output_tokens").Int()
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stream := c.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
					Model: "slow", Messages: userMsg("hi"), MaxTokens: openai.Int(992),
					StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
				})
				acc := openai.ChatCompletionAccumulator{}
				for stream.Next() {
					acc.AddChunk(stream.Current())
				}
				var apiErr *openai.Error
				switch err := stream.Err(); {
				case err == nil:
					admitted.Add(1)
					mu.Lock()
					used += acc.Usage.PromptTokens + acc.Usage.CompletionTokens
					mu.Unlock()
				case errors.As(err, &apiErr) && apiErr.StatusCode == 429:
					limited.Add(1)
				default:
					t.Errorf("unexpected: %v", err)
				}
			}()
		}
		wg.Wait()
		if n := admitted.Load(); n < 8 || n > 10 || admitted.Load()+limited.Load() != 20 {
			t.Fatalf("admitted %d, limited %d", n, limited.Load())
		}
		// The ledger equals what fakellm reported.
		eventually(t, 5*time.Second, func() bool {
			k := adminGet(t, gw, "/ai_gateway/keys/team-b")
			return gjson.Get(k, "usage.input_tokens").Int()+gjson.Get(k, "usage.output_tokens").Int() == used
		}, "ledger %s != fakellm usage %d", adminGet(t, gw, "/ai_gateway/keys/team-b"), used)
		// A request that can never fit gets a clear 429 without Retry-After.
		status, hdr, resp := post(t, chat, `{"model":"demo","max_tokens":20000,"messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer team-b-secret")
		if status != 429 || gjson.Get(resp, "error.code").Str != "request_too_large_for_limit" || hdr.Get("Retry-After") != "" {
			t.Fatalf("never fits: %d %v %s", status, hdr, resp)
		}
	})

	t.Run("concurrency 10 of 50 streams, slots released after 1000 disconnects", func(t *testing.T) {
		c := clientWithKey(gw, "conc-secret")
		cctx, cancel := context.WithCancel(ctx)
		var admitted, limited atomic.Int64
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stream := c.Chat.Completions.NewStreaming(cctx, openai.ChatCompletionNewParams{Model: "slow", Messages: userMsg("x")})
				if stream.Next() {
					admitted.Add(1)
					<-cctx.Done()
					stream.Close()
					return
				}
				var apiErr *openai.Error
				if errors.As(stream.Err(), &apiErr) && apiErr.StatusCode == 429 {
					limited.Add(1)
				} else {
					t.Errorf("unexpected: %v", stream.Err())
				}
			}()
		}
		eventually(t, 20*time.Second, func() bool { return admitted.Load()+limited.Load() == 50 }, "streams did not settle: %d/%d", admitted.Load(), limited.Load())
		if admitted.Load() != 10 {
			t.Fatalf("admitted %d streams, want 10", admitted.Load())
		}
		cancel()
		wg.Wait()
		// 1,000 open-read-disconnect cycles, 10 at a time.
		var cycles sync.WaitGroup
		var failures atomic.Int64
		for w := range 10 {
			cycles.Add(1)
			go func() {
				defer cycles.Done()
				for range 100 {
					req, _ := http.NewRequest(http.MethodPost, chat, strings.NewReader(`{"model":"slow","stream":true,"messages":[{"role":"user","content":"x"}]}`))
					req.Header.Set("Authorization", "Bearer conc-secret")
					rctx, rcancel := context.WithCancel(ctx)
					resp, err := http.DefaultClient.Do(req.WithContext(rctx))
					if err == nil {
						if resp.StatusCode == 200 {
							_, _ = bufio.NewReader(resp.Body).ReadString('\n')
						} else if resp.StatusCode != 429 {
							failures.Add(1)
						}
					}
					rcancel()
					if err == nil {
						resp.Body.Close()
					}
				}
				_ = w
			}()
		}
		cycles.Wait()
		if failures.Load() > 0 {
			t.Fatalf("%d cycles failed with neither 200 nor 429", failures.Load())
		}
		// All slots come back: 10 streams are admitted again, the 11th is not.
		eventually(t, 5*time.Second, func() bool { return fake.Stats().InFlight == 0 }, "fakellm still has requests in flight")
		cctx2, cancel2 := context.WithCancel(ctx)
		defer cancel2()
		var streams []*http.Response
		for i := range 11 {
			req, _ := http.NewRequestWithContext(cctx2, http.MethodPost, chat, strings.NewReader(`{"model":"slow","stream":true,"messages":[{"role":"user","content":"x"}]}`))
			req.Header.Set("Authorization", "Bearer conc-secret")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			streams = append(streams, resp)
			want := 200
			if i == 10 {
				want = 429
			}
			if resp.StatusCode != want {
				t.Fatalf("stream %d after the cycles: status %d, want %d (leaked slots)", i, resp.StatusCode, want)
			}
		}
		for _, s := range streams {
			s.Body.Close()
		}
	})

	t.Run("budget race", func(t *testing.T) {
		// Each request reserves 13 tokens at $1000/1M = $0.013 and really
		// costs 9 tokens = $0.009; the budget is $0.02, less than two.
		var admitted, quota atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		b := `{"model":"priced","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				status, _, resp := post(t, chat, b, "Authorization", "Bearer budget-secret")
				switch {
				case status == 200:
					admitted.Add(1)
				case status == 429 && gjson.Get(resp, "error.code").Str == "insufficient_quota":
					quota.Add(1)
				default:
					t.Errorf("unexpected %d %s", status, resp)
				}
			}()
		}
		close(start)
		wg.Wait()
		// Two reservations fill the budget; a third fits once the first
		// two have settled (2 x $0.009 < $0.02), which a loaded machine
		// can allow before the last requests arrive. Never a fourth.
		if n := admitted.Load(); n < 1 || n > 3 {
			t.Fatalf("admitted %d of 8 simultaneous first requests", n)
		}
		// Spend until refused; the overspend stays within one reservation.
		for i := 0; i < 5; i++ {
			status, _, _ := post(t, chat, b, "Authorization", "Bearer budget-secret")
			if status == 429 {
				break
			}
		}
		k := adminGet(t, gw, "/ai_gateway/keys/budget")
		spend := gjson.Get(k, "usage.spend_usd").Float()
		if spend < 0.02 || spend > 0.02+0.013+1e-9 {
			t.Fatalf("spend %v for a $0.02 budget: %s", spend, k)
		}
		status, _, resp := post(t, chat, b, "Authorization", "Bearer budget-secret")
		if status != 429 || gjson.Get(resp, "error.code").Str != "insufficient_quota" {
			t.Fatalf("over budget: %d %s", status, resp)
		}
	})

	t.Run("admin API creates, lists and revokes keys", func(t *testing.T) {
		status, created := adminDo(t, gw, http.MethodPost, "/ai_gateway/keys", `{"name":"runtime-1","models":["demo"],"rpm":100,"metadata":{"team":"x"}}`)
		secret := gjson.Get(created, "secret").Str
		if status != 201 || !strings.HasPrefix(secret, "sk-gw-") {
			t.Fatalf("create: %d %s", status, created)
		}
		if status, _ := adminDo(t, gw, http.MethodPost, "/ai_gateway/keys", `{"name":"runtime-1"}`); status != 409 {
			t.Fatalf("duplicate create: %d", status)
		}
		rc := clientWithKey(gw, secret)
		out, err := rc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "demo", Messages: userMsg("x")})
		if err != nil || out.Choices[0].Message.Content == "" {
			t.Fatalf("runtime key: %v", err)
		}
		list := adminGet(t, gw, "/ai_gateway/keys")
		if !strings.Contains(list, "runtime-1") || strings.Contains(list, secret) || strings.Contains(list, "sha256") {
			t.Fatalf("list: %s", list)
		}
		k := adminGet(t, gw, "/ai_gateway/keys/runtime-1")
		if gjson.Get(k, "usage.requests").Int() != 1 || gjson.Get(k, "policy.rpm").Int() != 100 {
			t.Fatalf("key view: %s", k)
		}
		if status, _ := adminDo(t, gw, http.MethodDelete, "/ai_gateway/keys/team-a", ""); status != 409 {
			t.Fatalf("deleting a config key: %d", status)
		}
		if status, _ := adminDo(t, gw, http.MethodDelete, "/ai_gateway/keys/runtime-1", ""); status != 204 {
			t.Fatalf("revoke: %d", status)
		}
		status, _, resp := post(t, chat, body, "Authorization", "Bearer "+secret)
		if status != 401 || gjson.Get(resp, "error.code").Str != "invalid_api_key" {
			t.Fatalf("revoked key: %d %s", status, resp)
		}
	})
}

func adminDo(t testing.TB, g *Gateway, method, path, body string) (int, string) {
	t.Helper()
	req := mustReq(t, method, g.AdminURL+path, body)
	status, _, resp := do(t, req)
	return status, resp
}

func adminGet(t testing.TB, g *Gateway, path string) string {
	t.Helper()
	status, resp := adminDo(t, g, http.MethodGet, path, "")
	if status != 200 {
		t.Fatalf("GET %s: %d %s", path, status, resp)
	}
	return resp
}

func sha256hex(s string) string { return hashHex(s) }

// sharedCaddyfile runs N gateways on one Redis with 50 keys.
const sharedCaddyfile = `{
	admin 127.0.0.1:{{.AdminPort}}
	ai_gateway {
		provider fake {
			base_url {{.Fake}}/v1
		}
		model demo {
			target fake fake-model
		}
		{{.Keys}}
		key open {
			secret open-secret
		}
		redis {{.RedisURL}} {
			timeout {{.Timeout}}
			on_failure {{.OnFailure}}
		}
	}
}
:{{.Port}} {
	ai_gateway
}
`

func TestSharedLimitsAcrossGateways(t *testing.T) {
	rs := redistest.Start(t)
	fake := startFake(t, fakellm.Options{Name: "fake", Chunks: 2})
	const (
		nKeys = 50
		rpm   = 120 // 2 per second
		burst = 6   // 3 s of slack: CPU stalls on a 2-core CI machine bunch arrivals
	)
	keys := rpmKeys(nKeys, rpm, burst)
	data := func() map[string]any {
		// A generous timeout: on this 2-core machine a race-enabled gateway
		// under load can miss 50 ms, and a fail-open decision is made in
		// process, which is not what this test measures.
		return map[string]any{"Fake": fake.URL, "Keys": keys, "RedisURL": "redis://" + rs.Addr(), "OnFailure": "fail_closed", "Timeout": "2s"}
	}
	gws := []*Gateway{startGateway(t, sharedCaddyfile, data()), startGateway(t, sharedCaddyfile, data()), startGateway(t, sharedCaddyfile, data())}
	checkSharedRPM(t, gws, nKeys, rpm, burst, 4*time.Second)
}

// rpmKeys declares keys k00… (secrets secret-00…) with rpm and burst.
func rpmKeys(n, rpm, burst int) string {
	var keys strings.Builder
	for i := range n {
		fmt.Fprintf(&keys, "key k%02d {\n\t\t\tsecret secret-%02d\n\t\t\trpm %d\n\t\t\tburst %d\n\t\t}\n\t\t", i, i, rpm, burst)
	}
	return keys.String()
}

// checkSharedRPM drives each of the nKeys keys of rpmKeys at twice its
// rate for window, requests spread over gws, and checks that every key got
// its rate in total (at least 99 %, at most the rate plus burst over the
// time the requests took), whichever gateway served them.
func checkSharedRPM(t *testing.T, gws []*Gateway, nKeys, rpm, burst int, window time.Duration) {
	t.Helper()
	body := `{"model":"demo","messages":[{"role":"user","content":"x"}]}`
	interval := time.Minute / time.Duration(rpm) / 2
	admitted := make([]atomic.Int64, nKeys)
	var other atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}, Timeout: 10 * time.Second}
	start := time.Now()
	var wg sync.WaitGroup
	for k := range nKeys {
		wg.Go(func() {
			// Open loop: one request per tick whatever the latency, so
			// the offered load stays at 2x the limit.
			tick := time.NewTicker(interval)
			defer tick.Stop()
			var reqs sync.WaitGroup
			for i := 0; time.Since(start) < window; i++ {
				reqs.Go(func() {
					req, _ := http.NewRequest(http.MethodPost, gws[(k+i)%len(gws)].URL+"/v1/chat/completions", strings.NewReader(body))
					req.Header.Set("Authorization", fmt.Sprintf("Bearer secret-%02d", k))
					resp, err := client.Do(req)
					if err != nil {
						other.Add(1)
						return
					}
					switch resp.StatusCode {
					case 200:
						admitted[k].Add(1)
					case 429:
					default:
						other.Add(1)
					}
					resp.Body.Close()
				})
				<-tick.C
			}
			reqs.Wait()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("drove %d keys at 2x %d rpm for %v (%v with stragglers)", nKeys, rpm, window, elapsed)
	if other.Load() > 0 {
		t.Fatalf("%d requests failed with neither 200 nor 429", other.Load())
	}
	// Admissions happen while requests are processed, up to `elapsed`.
	limit := float64(rpm) * window.Minutes()
	upper := float64(rpm)*elapsed.Minutes() + float64(burst)
	for k := range nKeys {
		if n := float64(admitted[k].Load()); n > upper+1 || n < 0.99*limit {
			t.Errorf("key k%02d: admitted %.0f, want between %.1f and %.1f", k, n, 0.99*limit, upper)
		}
	}
}

func TestRedisOutage(t *testing.T) {
	for _, policy := range []string{"fail_open", "fail_closed"} {
		t.Run(policy, func(t *testing.T) {
			rs := redistest.Start(t)
			fake := startFake(t, fakellm.Options{Name: "fake", Chunks: 2})
			gw := startGateway(t, sharedCaddyfile, map[string]any{
				"Fake": fake.URL, "Keys": "key k {\n\t\t\tsecret k-secret\n\t\t\trpm 100000\n\t\t\ttpm 10000000\n\t\t}",
				"RedisURL": "redis://" + rs.Addr(), "OnFailure": policy, "Timeout": "50ms",
			})
			chat := gw.URL + "/v1/chat/completions"
			body := `{"model":"demo","messages":[{"role":"user","content":"x"}]}`
			send := func() int {
				status, _, _ := post(t, chat, body, "Authorization", "Bearer k-secret")
				return status
			}
			if s := send(); s != 200 {
				t.Fatalf("before the outage: %d", s)
			}
			rs.Kill()
			killed := time.Now()
			wantDown := 200
			if policy == "fail_closed" {
				wantDown = 503
			}
			// The policy applies within 1 s; never a 500.
			var applied time.Duration
			for time.Since(killed) < 3*time.Second {
				s := send()
				if s >= 500 && s != 503 {
					t.Fatalf("status %d during the outage", s)
				}
				if s == wantDown && applied == 0 {
					applied = time.Since(killed)
				}
				if s != wantDown && applied > 0 && policy == "fail_closed" {
					t.Fatalf("status %d after the policy applied", s)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if applied == 0 || applied > time.Second {
				t.Fatalf("%s applied after %v", policy, applied)
			}
			rs.Restart()
			restarted := time.Now()
			eventually(t, 5*time.Second, func() bool {
				return send() == 200 && strings.Contains(adminGet(t, gw, "/ai_gateway/status"), `"redis":"up"`)
			}, "no recovery within 5s of the restart")
			t.Logf("%s: applied after %v, recovered after %v", policy, applied, time.Since(restarted))
		})
	}
}
