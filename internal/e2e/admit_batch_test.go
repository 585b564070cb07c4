package e2e

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

// 200 requests at once, over two gateways on one Redis, against a key's
// burst of 50 (rpm 1: nothing is replenished during the test): exactly 50
// are admitted, the others get 429, however the admissions were batched.
func TestRedisBatchedAdmissionsExact(t *testing.T) {
	rs := redistest.Start(t)
	fake := startFake(t, fakellm.Options{Name: "fake", Chunks: 2})
	data := func() map[string]any {
		return map[string]any{"Fake": fake.URL, "Keys": rpmKeys(1, 1, 50), "RedisURL": "redis://" + rs.Addr(),
			"OnFailure": "fail_closed", "Timeout": "5s"}
	}
	gws := []*Gateway{startGateway(t, sharedCaddyfile, data()), startGateway(t, sharedCaddyfile, data())}
	scripts := func() int64 {
		s := rs.Client().Info(context.Background(), "commandstats").Val()
		var n int64
		for _, l := range strings.Split(s, "\n") {
			for _, c := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
				if rest, ok := strings.CutPrefix(strings.TrimSpace(l), c); ok {
					v, _, _ := strings.Cut(rest, ",")
					x, _ := strconv.ParseInt(v, 10, 64)
					n += x
				}
			}
		}
		return n
	}
	before := scripts()
	const n = 200
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		c := gws[i%len(gws)].client(option.WithAPIKey("secret-00"))
		wg.Go(func() {
			_, err := c.Chat.Completions.New(context.Background(), openai.ChatCompletionNewParams{Model: "demo", Messages: userMsg("x")})
			var apiErr *openai.Error
			switch {
			case err == nil:
				admitted.Add(1)
			case errors.As(err, &apiErr) && apiErr.StatusCode == 429:
				refused.Add(1)
			default:
				t.Errorf("request %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if admitted.Load() != 50 || refused.Load() != n-50 {
		t.Fatalf("%d admitted, %d refused; want 50 and %d", admitted.Load(), refused.Load(), n-50)
	}
	t.Logf("%d script calls (admissions and settlements) for %d requests", scripts()-before, n)
}
