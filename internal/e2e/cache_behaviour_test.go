package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anthropics/anthropic-sdk-go"
	aoption "github.com/anthropics/anthropic-sdk-go/option"
	"github.com/openai/openai-go/v3"
	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
)

// chatBody is a raw chat request.
func cacheBody(model, prompt string, stream bool) string {
	return fmt.Sprintf(`{"model":%q,"stream":%t,"messages":[{"role":"user","content":%q}]}`, model, stream, prompt)
}

// answer is what a raw client got: the status, the cache header and the
// content (accumulated from the stream's chunks, or the body's).
type answer struct {
	status  int
	cache   string
	content string
	finish  string
	chunks  int
	err     error
}

var manyClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}, Timeout: 60 * time.Second}

func ask(ctx context.Context, url, body string, hdr ...string) answer {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := manyClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, cache: resp.Header.Get("X-AI-Gateway-Cache")}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, err := io.ReadAll(resp.Body)
		a.err = err
		a.content = gjson.GetBytes(b, "choices.0.message.content").String()
		a.finish = gjson.GetBytes(b, "choices.0.finish_reason").String()
		return a
	}
	sc := bufio.NewScanner(resp.Body)
	done := false
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			done = true
			continue
		}
		if gjson.Get(line, "error").Exists() {
			a.err = fmt.Errorf("stream error: %s", line)
		}
		a.chunks++
		a.content += gjson.Get(line, "choices.0.delta.content").String()
		if f := gjson.Get(line, "choices.0.finish_reason").String(); f != "" {
			a.finish = f
		}
	}
	if a.err == nil {
		a.err = sc.Err()
	}
	if a.err == nil && !done {
		a.err = fmt.Errorf("stream without [DONE]")
	}
	return a
}

func TestCacheMessages(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake", Chunks: 6})
	gw := noRace(t, startGateway(t, `{
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
		}
		cache
	}
}
:{{.Port}} {
	ai_gateway
}
`, map[string]any{"Fake": fake.URL}))
	c := anthropic.NewClient(aoption.WithBaseURL(gw.URL), aoption.WithAPIKey("client-key"), aoption.WithMaxRetries(0),
		aoption.WithRequestTimeout(30*time.Second))
	ctx := context.Background()
	stream := func(model, prompt string) (anthropic.Message, int, string) {
		var resp *http.Response
		s := c.Messages.NewStreaming(ctx, anthropic.MessageNewParams{Model: anthropic.Model(model), MaxTokens: 64,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock(prompt))}}, aoption.WithResponseInto(&resp))
		var msg anthropic.Message
		events := 0
		for s.Next() {
			if err := msg.Accumulate(s.Current()); err != nil {
				t.Fatal(err)
			}
			events++
		}
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		return msg, events, resp.Header.Get("X-AI-Gateway-Cache")
	}
	for _, model := range []string{"via-openai", "via-anthropic"} {
		t.Run(model, func(t *testing.T) {
			miss, missEvents, verdict := stream(model, "stream me "+model)
			if verdict != "miss" {
				t.Fatalf("first: %q", verdict)
			}
			calls := fake.Stats().Total
			hit, hitEvents, verdict := stream(model, "stream me "+model)
			if verdict != "hit" || fake.Stats().Total != calls {
				t.Fatalf("second: %q, upstream calls %d > %d", verdict, fake.Stats().Total, calls)
			}
			text := func(m anthropic.Message) string {
				var b strings.Builder
				for _, c := range m.Content {
					b.WriteString(c.Text)
				}
				return b.String()
			}
			if text(hit) != text(miss) || text(hit) == "" || hit.StopReason != miss.StopReason || hit.Usage.OutputTokens != miss.Usage.OutputTokens ||
				hitEvents < 4 || hitEvents != missEvents {
				t.Fatalf("replay differs: miss %q %s %+v (%d events), hit %q %s %+v (%d events)", text(miss), miss.StopReason, miss.Usage, missEvents,
					text(hit), hit.StopReason, hit.Usage, hitEvents)
			}
			if hit.ID == miss.ID {
				t.Fatalf("replay kept the id %s", hit.ID)
			}
		})
	}
	t.Run("body from a stream", func(t *testing.T) {
		calls := fake.Stats().Total
		msg, err := c.Messages.New(ctx, anthropic.MessageNewParams{Model: "via-openai", MaxTokens: 64,
			Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("stream me via-openai"))}})
		if err != nil {
			t.Fatal(err)
		}
		if fake.Stats().Total != calls || len(msg.Content) == 0 || !strings.HasPrefix(msg.Content[0].Text, "Hello from fake") {
			t.Fatalf("body from the recorded stream: %+v (calls %d > %d)", msg, fake.Stats().Total, calls)
		}
	})
}

func TestCacheControl(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	gw := startCacheGateway(t, fake, nil)
	ctx := context.Background()
	body := cacheBody("demo", "control me", false)
	if a := ask(ctx, gw.URL, body, "Cache-Control", "no-store"); a.status != 200 || a.cache != "bypass" {
		t.Fatalf("no-store: %+v", a)
	}
	if a := ask(ctx, gw.URL, body); a.cache != "miss" {
		t.Fatalf("after no-store: %+v (no-store must not write)", a)
	}
	if a := ask(ctx, gw.URL, body); a.cache != "hit" {
		t.Fatalf("then: %+v", a)
	}
	calls := chatCalls(fake)
	if a := ask(ctx, gw.URL, body, "Cache-Control", "no-cache"); a.cache != "refresh" || chatCalls(fake) != calls+1 {
		t.Fatalf("no-cache: %+v, calls %d", a, chatCalls(fake))
	}
	if a := ask(ctx, gw.URL, body, "Cache-Control", "no-store"); a.cache != "bypass" || chatCalls(fake) != calls+2 {
		t.Fatalf("no-store does not read: %+v", a)
	}
	time.Sleep(1100 * time.Millisecond)
	if a := ask(ctx, gw.URL, body, "Cache-Control", "max-age=0"); a.cache != "miss" {
		t.Fatalf("max-age=0: %+v", a)
	}
	if a := ask(ctx, gw.URL, body, "Cache-Control", "max-age=3600"); a.cache != "hit" {
		t.Fatalf("max-age=3600: %+v", a)
	}
	// A route that opts out.
	req, _ := http.NewRequest(http.MethodPost, gw.URL+"/nocache/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for range 2 {
		resp, err := http.DefaultClient.Do(req.Clone(ctx))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-AI-Gateway-Cache") != "" || resp.Header.Get("Cache-Status") != "" {
			t.Fatalf("cache off route: %d %v", resp.StatusCode, resp.Header)
		}
		req.Body = io.NopCloser(strings.NewReader(body))
	}
}

const tenantKeys = `key a {
			secret secret-a
			rpm 4
		}
		key b {
			secret secret-b
		}
		key c {
			secret secret-c
			cache team
		}
		key d {
			secret secret-d
			cache team
		}`

func TestCacheTenants(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared=%t", shared), func(t *testing.T) {
			cacheBlock := "namespace per_key"
			if shared {
				cacheBlock = "namespace shared"
			}
			gw := startCacheGateway(t, fake, map[string]any{"Keys": tenantKeys, "Cache": cacheBlock})
			ctx := context.Background()
			body := cacheBody("demo", "tenant question", false)
			as := func(secret string) string { return ask(ctx, gw.URL, body, "Authorization", "Bearer "+secret).cache }
			if v := as("secret-a"); v != "miss" {
				t.Fatalf("a first: %s", v)
			}
			if v := as("secret-a"); v != "hit" {
				t.Fatalf("a second: %s", v)
			}
			want := "miss"
			if shared {
				want = "hit"
			}
			if v := as("secret-b"); v != want {
				t.Fatalf("b after a: %s, want %s", v, want)
			}
			// c and d share their own namespace, apart from a and b.
			if v := as("secret-c"); v != "miss" {
				t.Fatalf("c: %s", v)
			}
			if v := as("secret-d"); v != "hit" {
				t.Fatalf("d after c: %s", v)
			}
			if shared {
				return
			}
			// Hits count toward RPM (a has rpm 4: two used, two more pass).
			for i := range 3 {
				a := ask(ctx, gw.URL, body, "Authorization", "Bearer secret-a")
				if i < 2 && (a.status != 200 || a.cache != "hit") || i == 2 && a.status != 429 {
					t.Fatalf("a's request %d: %+v", i+3, a)
				}
			}
			// Hits spend no tokens; the key's usage shows what they saved.
			var u struct {
				Usage struct {
					Requests         int64 `json:"requests"`
					InputTokens      int64 `json:"input_tokens"`
					CacheHits        int64 `json:"cache_hits"`
					CacheSavedTokens int64 `json:"cache_saved_tokens"`
				} `json:"usage"`
			}
			eventually(t, 5*time.Second, func() bool {
				_ = json.Unmarshal([]byte(adminGet(t, gw, "/ai_gateway/keys/a")), &u)
				return u.Usage.Requests == 4
			}, "key a usage: %+v", &u)
			if u.Usage.CacheHits != 3 || u.Usage.CacheSavedTokens <= 0 || u.Usage.CacheSavedTokens%3 != 0 || u.Usage.InputTokens <= 0 ||
				u.Usage.InputTokens >= u.Usage.CacheSavedTokens/3 {
				t.Fatalf("key a usage %+v", u.Usage)
			}
		})
	}
}

func TestCacheNeverStoresFailures(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake", Chunks: 8})
	gw := startCacheGateway(t, fake, nil)
	ctx := context.Background()
	cases := []struct {
		name   string
		model  string
		stream bool
		b      fakellm.Behavior
	}{
		{"500", "demo", false, fakellm.Behavior{Status: 500}},
		{"429", "demo", true, fakellm.Behavior{Status: 429, RetryAfter: "0"}},
		{"first byte timeout", "tight", false, fakellm.Behavior{TTFT: 3 * time.Second}},
		{"idle timeout mid-stream", "tight", true, fakellm.Behavior{ChunkDelay: 3 * time.Second}},
		{"mid-stream error", "demo", true, fakellm.Behavior{FailAfter: 3}},
		{"body cut", "demo", false, fakellm.Behavior{FailAfter: 1}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := cacheBody(tc.model, fmt.Sprintf("failure %d", i), tc.stream)
			fake.Enqueue(tc.b)
			a := ask(ctx, gw.URL, body)
			if a.status == 200 && a.err == nil {
				t.Fatalf("the failure was answered as a success: %+v", a)
			}
			if a := ask(ctx, gw.URL, body); a.status != 200 || a.err != nil || a.cache != "miss" {
				t.Fatalf("after the failure: %+v (want a miss)", a)
			}
			if a := ask(ctx, gw.URL, body); a.cache != "hit" {
				t.Fatalf("then: %+v", a)
			}
		})
	}
	t.Run("client abort", func(t *testing.T) {
		body := cacheBody("demo", "abort me", true)
		fake.Enqueue(fakellm.Behavior{ChunkDelay: 300 * time.Millisecond})
		cctx, cancel := context.WithCancel(ctx)
		req, _ := http.NewRequestWithContext(cctx, http.MethodPost, gw.URL+"/v1/chat/completions", strings.NewReader(body))
		resp, err := manyClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		cancelled := fake.Stats().Cancelled
		cancel()
		resp.Body.Close()
		eventually(t, 10*time.Second, func() bool { return fake.Stats().Cancelled > cancelled }, "the upstream was not cancelled")
		if a := ask(ctx, gw.URL, body); a.cache != "miss" || a.err != nil {
			t.Fatalf("after the abort: %+v", a)
		}
	})
}

// TestCacheStampede: 1,000 identical cold requests at once, half
// streaming, make one upstream call; everyone gets the whole answer.
func TestCacheStampede(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake", Chunks: 8, TTFT: 500 * time.Millisecond, ChunkDelay: 50 * time.Millisecond})
	gw := startCacheGateway(t, fake, nil)
	answers := stampede(t, []string{gw.URL}, 1000, "stampede")
	if n := chatCalls(fake); n != 1 {
		t.Fatalf("%d upstream calls, want 1", n)
	}
	checkSame(t, answers)
}

func stampede(t *testing.T, urls []string, n int, prompt string) []answer {
	t.Helper()
	ctx := context.Background()
	answers := make([]answer, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			answers[i] = ask(ctx, urls[i%len(urls)], cacheBody("demo", prompt, i%2 == 0))
		}()
	}
	close(start)
	wg.Wait()
	return answers
}

func checkSame(t *testing.T, answers []answer) {
	t.Helper()
	want := ""
	verdicts := map[string]int{}
	for i, a := range answers {
		if a.err != nil || a.status != 200 || a.finish != "stop" {
			t.Fatalf("client %d: %+v", i, a)
		}
		if want == "" {
			want = a.content
		}
		if a.content != want || !strings.HasPrefix(a.content, "Hello from fake") {
			t.Fatalf("client %d got %q, client 0 %q", i, a.content, want)
		}
		verdicts[a.cache]++
	}
	t.Logf("verdicts: %v", verdicts)
}

// TestCacheLeaderLeaves: the leader's client leaving mid-stream does not
// break its followers; the answer is still stored.
func TestCacheLeaderLeaves(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake", Chunks: 10, ChunkDelay: 150 * time.Millisecond})
	gw := startCacheGateway(t, fake, nil)
	ctx := context.Background()
	body := cacheBody("demo", "leader leaves", true)
	lctx, cancel := context.WithCancel(ctx)
	req, _ := http.NewRequestWithContext(lctx, http.MethodPost, gw.URL+"/v1/chat/completions", strings.NewReader(body))
	resp, err := manyClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	answers := make([]answer, 6)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = ask(ctx, gw.URL, cacheBody("demo", "leader leaves", i%2 == 0))
		}()
	}
	time.Sleep(300 * time.Millisecond) // the followers join
	cancel()
	resp.Body.Close()
	wg.Wait()
	checkSame(t, answers)
	for i, a := range answers {
		if a.cache != "hit" {
			t.Fatalf("follower %d: %+v", i, a)
		}
	}
	if n := chatCalls(fake); n != 1 {
		t.Fatalf("%d upstream calls", n)
	}
	if a := ask(ctx, gw.URL, body); a.cache != "hit" {
		t.Fatalf("the answer was not stored: %+v", a)
	}
}

func TestCacheAdminAndMemoryBound(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	gw := startCacheGateway(t, fake, map[string]any{"Cache": "max_memory 64KiB"})
	ctx := context.Background()
	body := cacheBody("demo", "delete me", false)
	ask(ctx, gw.URL, body)
	if a := ask(ctx, gw.URL, body); a.cache != "hit" {
		t.Fatalf("%+v", a)
	}
	status, resp := adminDo(t, gw, http.MethodDelete, "/ai_gateway/cache?model=demo", "")
	if status != 200 || gjson.Get(resp, "deleted").Int() < 1 {
		t.Fatalf("DELETE: %d %s", status, resp)
	}
	if a := ask(ctx, gw.URL, body); a.cache != "miss" {
		t.Fatalf("after DELETE: %+v", a)
	}
	status, resp = adminDo(t, gw, http.MethodDelete, "/ai_gateway/cache", "")
	if status != 200 || !gjson.Get(resp, "deleted").Exists() {
		t.Fatalf("DELETE all: %d %s", status, resp)
	}
	if a := ask(ctx, gw.URL, body); a.cache != "miss" {
		t.Fatalf("after DELETE all: %+v", a)
	}
	c := gw.client()
	for i := range 640 { // about 10 times max_memory in unique entries
		if _, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "demo", Messages: userMsg(fmt.Sprintf("unique %d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	var st struct {
		Entries, Bytes, Hits, Misses, Stored int64
	}
	eventually(t, 10*time.Second, func() bool {
		_ = json.Unmarshal([]byte(adminGet(t, gw, "/ai_gateway/cache")), &st)
		return st.Bytes > 0 && st.Bytes <= 64<<10
	}, "cache holds more than max_memory: %+v", &st)
	if st.Stored != 643 || st.Misses != 643 || st.Entries >= 640 {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("after 640 unique answers: %+v", st)
	// The same size as gauges, within the bound (nothing is written now,
	// but the store may still evict: read both until they agree).
	eventually(t, 10*time.Second, func() bool {
		fams := scrape(t, gw)
		entries, bytes := metricValue(fams, "caddy_ai_gateway_cache_entries", nil), metricValue(fams, "caddy_ai_gateway_cache_bytes", nil)
		_ = json.Unmarshal([]byte(adminGet(t, gw, "/ai_gateway/cache")), &st)
		return entries > 0 && bytes > 0 && bytes <= 64<<10 && int64(entries) == st.Entries && int64(bytes) == st.Bytes
	}, "cache_entries / cache_bytes gauges do not match the admin view %+v", &st)
}

// TestCacheFallbackStoredUnderAnsweringModel: an answer from a fallback is
// stored under the fallback's route, not the requested one.
func TestCacheFallbackStoredUnderAnsweringModel(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	fake.Script("down-model", fakellm.Behavior{Status: 500})
	gw := startCacheGateway(t, fake, nil)
	ctx := context.Background()
	if a := ask(ctx, gw.URL, cacheBody("primary", "fall back", false)); a.status != 200 || a.cache != "miss" {
		t.Fatalf("primary: %+v", a)
	}
	if a := ask(ctx, gw.URL, cacheBody("demo", "fall back", true)); a.cache != "hit" {
		t.Fatalf("demo after primary's fallback answered: %+v", a)
	}
	if a := ask(ctx, gw.URL, cacheBody("primary", "fall back", false)); a.cache != "miss" {
		t.Fatalf("primary again: %+v (its own route has no entry)", a)
	}
	status, metrics := adminDo(t, gw, http.MethodGet, "/metrics", "")
	if status != 200 || !strings.Contains(metrics, `caddy_ai_gateway_cache_requests_total{model="demo",result="hit"} 1`) ||
		!strings.Contains(metrics, "caddy_ai_gateway_cache_saved_tokens_total") || !strings.Contains(metrics, "caddy_ai_gateway_cache_stored_total 2") {
		t.Fatalf("metrics: %d\n%s", status, metrics)
	}
}

// TestCacheSurvivesReload: the memory backend's entries outlive a config
// reload (usage pool).
func TestCacheSurvivesReload(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	gw := startCacheGateway(t, fake, nil)
	ctx := context.Background()
	body := cacheBody("demo", "reload me", false)
	ask(ctx, gw.URL, body)
	gw.reload(t)
	manyClient.CloseIdleConnections() // the old server closes its connections
	if a := ask(ctx, gw.URL, body); a.cache != "hit" {
		t.Fatalf("after reload: %+v", a)
	}
}

// TestCacheHitsSpendNoTokens: hits neither take TPM nor spend budget.
func TestCacheHitsSpendNoTokens(t *testing.T) {
	fake := startFake(t, fakellm.Options{Name: "fake"})
	gw := startCacheGateway(t, fake, map[string]any{
		"Keys":  "key t {\n\t\t\tsecret secret-t\n\t\t\ttpm 150\n\t\t\tbudget 1000 month\n\t\t}",
		"Extra": "reserve_output_tokens 10\n\t\tprice fake-model 1000 1000",
	})
	ctx := context.Background()
	body := cacheBody("demo", "spend nothing twice", false)
	if a := ask(ctx, gw.URL, body, "Authorization", "Bearer secret-t"); a.status != 200 || a.cache != "miss" {
		t.Fatalf("miss: %+v", a)
	}
	spend := func() float64 { return gjson.Get(adminGet(t, gw, "/ai_gateway/keys/t"), "usage.spend_usd").Float() }
	var after float64
	eventually(t, 5*time.Second, func() bool { after = spend(); return after > 0 }, "the miss spent nothing")
	for i := range 20 { // 20 × (prompt + output) is far over the TPM of 150
		if a := ask(ctx, gw.URL, body, "Authorization", "Bearer secret-t"); a.status != 200 || a.cache != "hit" {
			t.Fatalf("hit %d: %+v", i, a)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if s := spend(); s != after {
		t.Fatalf("hits spent: %v, then %v", after, s)
	}
}
