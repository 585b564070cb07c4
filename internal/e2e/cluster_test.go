package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/fakellm"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

// clusterPassword is sent with every connection (as the default user's, which
// an unauthenticated Redis accepts) so the tests can check it is never shown.
const clusterPassword = "cluster-pw-never-shown"

// clusterURL points the gateways at cl through the environment, the way a
// deployment keeps the password out of its Caddyfile.
func clusterURL(t *testing.T, cl *redistest.Cluster) string {
	t.Helper()
	addrs := cl.Addrs()
	t.Setenv("REDIS_URL", fmt.Sprintf("redis+cluster://default:%s@%s?addr=%s&addr=%s", clusterPassword, addrs[0], addrs[1], addrs[2]))
	return "{env.REDIS_URL}"
}

// checkNoPassword fails when a gateway showed the Redis password in its logs
// or its status, and checks that it logged the redacted URL.
func checkNoPassword(t *testing.T, gws ...*Gateway) {
	t.Helper()
	for i, g := range gws {
		status := adminGet(t, g, "/ai_gateway/status")
		if !strings.Contains(status, `"redis":"up"`) {
			t.Errorf("gateway %d status: %s", i, status)
		}
		logs := g.Logs()
		if strings.Contains(logs, clusterPassword) || strings.Contains(status, clusterPassword) {
			t.Fatalf("gateway %d shows the redis password", i)
		}
		if !strings.Contains(logs, `"mode":"cluster"`) || !strings.Contains(logs, "redis+cluster://default:xxxxx@") {
			t.Errorf("gateway %d did not log the redacted cluster url:\n%s", i, tail(logs, 3000))
		}
	}
}

// Two gateways share one Redis Cluster: RPM, budgets and runtime keys hold
// across both.
func TestClusterKeysLimitsAndBudgets(t *testing.T) {
	cl := redistest.StartCluster(t)
	fake := startFake(t, fakellm.Options{Name: "fake"})
	block := "redis " + clusterURL(t, cl) + " {\n\t\t\ttimeout 2s\n\t\t\ton_failure fail_closed\n\t\t}"
	gws := []*Gateway{startKeysGateway(t, fake, block), startKeysGateway(t, fake, block)}
	body := `{"model":"demo","messages":[{"role":"user","content":"hi"}]}`
	chat := func(i int) string { return gws[i%2].URL + "/v1/chat/completions" }

	t.Run("rpm 1 across both gateways", func(t *testing.T) {
		if s, _, b := post(t, chat(0), body, "Authorization", "Bearer team-a-secret"); s != 200 {
			t.Fatalf("first request on gateway 0: %d %s", s, b)
		}
		s, hdr, b := post(t, chat(1), body, "Authorization", "Bearer team-a-secret")
		if s != 429 || gjson.Get(b, "error.code").Str != "rate_limit_exceeded" || hdr.Get("Retry-After") == "" {
			t.Fatalf("second request on gateway 1: %d %v %s", s, hdr, b)
		}
	})

	t.Run("budget race across both gateways", func(t *testing.T) {
		// As in TestKeysAndLimits: each request reserves $0.013 and costs
		// $0.009 against a $0.02 budget.
		b := `{"model":"priced","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
		var admitted atomic.Int64
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range 8 {
			wg.Go(func() {
				<-start
				status, _, resp := post(t, chat(i), b, "Authorization", "Bearer budget-secret")
				switch {
				case status == 200:
					admitted.Add(1)
				case status == 429 && gjson.Get(resp, "error.code").Str == "insufficient_quota":
				default:
					t.Errorf("unexpected %d %s", status, resp)
				}
			})
		}
		close(start)
		wg.Wait()
		// Two reservations fill the budget; a third fits only once the
		// first two have settled (2 x $0.009 < $0.02), which requests sent
		// through two processes at once can allow. Never a fourth.
		if n := admitted.Load(); n < 1 || n > 3 {
			t.Fatalf("admitted %d of 8 simultaneous first requests", n)
		}
		// With Redis a request's settlement lands just after its answer
		// (the settlement queue): wait for the books before each step.
		settled := func() {
			eventually(t, 5*time.Second, func() bool {
				return gjson.Get(adminGet(t, gws[0], "/ai_gateway/keys/budget"), "usage.reserved_usd").Float() == 0
			}, "reservations still outstanding")
		}
		for i := range 6 {
			settled()
			if status, _, _ := post(t, chat(i), b, "Authorization", "Bearer budget-secret"); status == 429 {
				break
			}
		}
		settled()
		for i := range 2 {
			k := adminGet(t, gws[i], "/ai_gateway/keys/budget")
			if spend := gjson.Get(k, "usage.spend_usd").Float(); spend < 0.02 || spend > 0.02+0.013+1e-9 {
				t.Fatalf("gateway %d: spend %v for a $0.02 budget: %s", i, spend, k)
			}
			status, _, resp := post(t, chat(i), b, "Authorization", "Bearer budget-secret")
			if status != 429 || gjson.Get(resp, "error.code").Str != "insufficient_quota" {
				t.Fatalf("gateway %d over budget: %d %s", i, status, resp)
			}
		}
	})

	t.Run("runtime key created on one gateway, revoked on the other", func(t *testing.T) {
		status, created := adminDo(t, gws[0], http.MethodPost, "/ai_gateway/keys", `{"name":"cluster-key","rpm":100}`)
		secret := gjson.Get(created, "secret").Str
		if status != 201 || secret == "" {
			t.Fatalf("create: %d %s", status, created)
		}
		if status, _ := adminDo(t, gws[1], http.MethodPost, "/ai_gateway/keys", `{"name":"cluster-key"}`); status != 409 {
			t.Fatalf("duplicate create on the other gateway: %d", status)
		}
		eventually(t, 5*time.Second, func() bool {
			s, _, _ := post(t, chat(1), body, "Authorization", "Bearer "+secret)
			return s == 200
		}, "gateway 1 never accepted the key created on gateway 0")
		if status, _ := adminDo(t, gws[1], http.MethodDelete, "/ai_gateway/keys/cluster-key", ""); status != 204 {
			t.Fatalf("revoke on gateway 1: %d", status)
		}
		eventually(t, 5*time.Second, func() bool {
			s, _, _ := post(t, chat(0), body, "Authorization", "Bearer "+secret)
			return s == 401
		}, "gateway 0 still accepts the key revoked on gateway 1")
	})

	checkNoPassword(t, gws...)
}

// Two gateways on one Redis Cluster, 20 keys driven at twice their RPM: each
// key gets its rate (plus burst) in total, its state spread over the masters.
func TestClusterSharedLimitsAcrossGateways(t *testing.T) {
	cl := redistest.StartCluster(t)
	fake := startFake(t, fakellm.Options{Name: "fake", Chunks: 2})
	const (
		nKeys = 20
		rpm   = 120 // 2 per second
		burst = 6
	)
	keys := rpmKeys(nKeys, rpm, burst)
	url := clusterURL(t, cl)
	data := func() map[string]any {
		return map[string]any{"Fake": fake.URL, "Keys": keys, "RedisURL": url, "OnFailure": "fail_closed", "Timeout": "2s"}
	}
	gws := []*Gateway{startGateway(t, sharedCaddyfile, data()), startGateway(t, sharedCaddyfile, data())}
	checkSharedRPM(t, gws, nKeys, rpm, burst, 4*time.Second)

	// The limiter state is spread over the masters, not held in one slot.
	perNode := 0
	for _, n := range cl.Nodes {
		if len(n.Keys("aigw:rl:*")) > 0 {
			perNode++
		}
	}
	if perNode < 2 {
		t.Errorf("limiter keys on %d of 3 masters, want them spread", perNode)
	}
	checkNoPassword(t, gws...)
}
