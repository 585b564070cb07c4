package caddymodule

import (
	"context"
	"crypto/tls"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/testutil/redistest"
)

func TestParseRedisURL(t *testing.T) {
	cases := []struct {
		url      string
		mode     redisMode
		addrs    []string
		tls      bool
		db       int
		master   string
		user     string
		password string
		redacted string
	}{
		{url: "redis://127.0.0.1:6379/2", mode: redisSingle, addrs: []string{"127.0.0.1:6379"}, db: 2,
			redacted: "redis://127.0.0.1:6379/2"},
		{url: "rediss://gw:s3cret@cache.internal:6380", mode: redisSingle, addrs: []string{"cache.internal:6380"}, tls: true,
			user: "gw", password: "s3cret", redacted: "rediss://gw:xxxxx@cache.internal:6380"},
		{url: "redis+cluster://:s3cret@10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000", mode: redisCluster,
			addrs: []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"}, password: "s3cret",
			redacted: "redis+cluster://:xxxxx@10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000"},
		{url: "rediss+cluster://node.internal:7000", mode: redisCluster, addrs: []string{"node.internal:7000"}, tls: true,
			redacted: "rediss+cluster://node.internal:7000"},
		{url: "redis+sentinel://:sentinel-pw@10.0.0.1:26379/1?master_name=main&addr=10.0.0.2:26379&password=master-pw",
			mode: redisSentinel, addrs: []string{"10.0.0.1:26379", "10.0.0.2:26379"}, db: 1, master: "main",
			password: "master-pw",
			redacted: "redis+sentinel://:xxxxx@10.0.0.1:26379/1?addr=10.0.0.2%3A26379&master_name=main&password=xxxxx"},
		{url: "rediss+sentinel://10.0.0.1:26379?master_name=main", mode: redisSentinel, addrs: []string{"10.0.0.1:26379"},
			tls: true, master: "main", redacted: "rediss+sentinel://10.0.0.1:26379?master_name=main"},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			got, err := parseRedisURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if got.mode != tc.mode || got.String() != tc.redacted {
				t.Fatalf("mode %s, redacted %q; want %s, %q", got.mode, got.String(), tc.mode, tc.redacted)
			}
			var addrs []string
			var tlsConf *tls.Config
			var db int
			var master, user, password string
			switch tc.mode {
			case redisSingle:
				o := got.single
				addrs, tlsConf, db, user, password = []string{o.Addr}, o.TLSConfig, o.DB, o.Username, o.Password
			case redisCluster:
				o := got.cluster
				addrs, tlsConf, user, password = o.Addrs, o.TLSConfig, o.Username, o.Password
			case redisSentinel:
				o := got.failover
				addrs, tlsConf, db, master, user, password = o.SentinelAddrs, o.TLSConfig, o.DB, o.MasterName, o.Username, o.Password
			}
			if !slices.Equal(addrs, tc.addrs) || (tlsConf != nil) != tc.tls || db != tc.db || master != tc.master ||
				user != tc.user || password != tc.password {
				t.Fatalf("addrs %v tls %v db %d master %q user %q password %q", addrs, tlsConf != nil, db, master, user, password)
			}
			c := got.client(50 * time.Millisecond)
			defer c.Close()
			if _, ok := c.(*redis.ClusterClient); ok != (tc.mode == redisCluster) {
				t.Fatalf("client %T for mode %s", c, tc.mode)
			}
		})
	}
}

func TestParseRedisURLErrorsHideSecrets(t *testing.T) {
	cases := []struct{ url, want string }{
		{"http://u:hunter2@host:6379", "url scheme must be"},
		{"redis+ring://u:hunter2@host:6379", "url scheme must be"},
		{"redis+sentinel://u:hunter2@host:26379", "master_name"},
		{"redis://u:hunter2@host:6379/x", "database"},
		{"redis://u:hunter2@host:6379?dial_timeout=hunter2", "dial_timeout"},
		{"redis+cluster://u:hunter2@host:6379?nope=1", "unexpected option"},
		{"redis+sentinel://host:26379?master_name=m&password=hunter2&addr=hunter2", "addr"},
		{"redis://user:hun/ter2@host:6379", "invalid url"},
		{"redis://u:hunter2@host:6379/%zz", "invalid url"},
	}
	for _, tc := range cases {
		t.Run(tc.url, func(t *testing.T) {
			_, err := parseRedisURL(tc.url)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
			for _, secret := range []string{"hunter2", "hun", "ter2"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows the password", err)
				}
			}
		})
	}
}

func TestRedisPoolKeyHidesURL(t *testing.T) {
	url := "redis://user:hunter2@host:6379/0"
	k := redisPoolKey(url, 50*time.Millisecond)
	if strings.Contains(k, "hunter2") || strings.Contains(k, "host") {
		t.Fatalf("pool key %q shows the url", k)
	}
	if k != redisPoolKey(url, 50*time.Millisecond) {
		t.Fatal("pool key not stable")
	}
	if k == redisPoolKey(url, time.Second) || k == redisPoolKey("redis://user:other@host:6379/0", 50*time.Millisecond) {
		t.Fatal("different clients share a pool key")
	}
}

// Each URL form gives a client that runs the limiter's scripts and the key
// store's three-key scripts against a real deployment of its kind.
func TestRedisClientsOnRealDeployments(t *testing.T) {
	single := redistest.Start(t)
	cl := redistest.StartCluster(t)
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, master, "main")
	addrs := cl.Addrs()
	cases := []struct {
		name string
		url  string
		mode redisMode
	}{
		{"single", "redis://" + single.Addr() + "/0", redisSingle},
		{"cluster", "redis+cluster://" + addrs[0] + "?addr=" + addrs[1], redisCluster},
		{"sentinel", "redis+sentinel://" + sentinel.Addr() + "?master_name=main", redisSentinel},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			target, err := parseRedisURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if target.mode != tc.mode {
				t.Fatalf("mode %s, want %s", target.mode, tc.mode)
			}
			client := target.client(2 * time.Second)
			defer client.Close()
			lim := ratelimit.NewRedis(client, "aigw:rl:")
			rate := ratelimit.Rate{Limit: 1, Period: time.Minute}
			for i, want := range []bool{true, false} {
				res, err := lim.Take(ctx, "k", rate, 1)
				if err != nil || res.Allowed != want {
					t.Fatalf("take %d: %+v, %v; want allowed=%v", i, res, err, want)
				}
			}
			store, err := auth.NewRedis(client, "aigw:", nil)
			if err != nil {
				t.Fatal(err)
			}
			secret, _ := auth.NewSecret()
			if err := store.Create(ctx, &auth.Key{Name: "k", Hash: auth.HashSecret(secret)}); err != nil {
				t.Fatal(err)
			}
			if err := store.Delete(ctx, "k"); err != nil {
				t.Fatal(err)
			}
		})
	}
	if n := len(master.Keys("aigw:rl:*")); n != 1 {
		t.Fatalf("the sentinel client wrote %d limiter keys to the master, want 1", n)
	}
}
