package caddymodule

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

// KeyConfig declares a gateway key in the configuration.
type KeyConfig struct {
	// Name identifies the key in logs, placeholders and the admin API.
	Name string `json:"name"`
	// Secret is the key itself; placeholders ({env.TEAM_A_KEY}) are
	// expanded at load time and only its SHA-256 is kept in memory.
	Secret string `json:"secret,omitempty"`
	// SHA256 is the hex SHA-256 of the secret, so that no plaintext is
	// stored (`caddy ai-gateway hash-key` prints it).
	SHA256 string `json:"sha256,omitempty"`
	// Policy: models, rpm, burst, tpm, concurrency, budget, budget_period,
	// cache, metadata.
	auth.Policy
}

// RedisConfig shares keys, limits, budgets and usage between gateways.
type RedisConfig struct {
	// URL names the Redis deployment (placeholders such as {env.REDIS_URL}
	// are expanded at load time); its scheme picks the kind:
	//
	//	redis://[user:password@]host:port[/db]             one server
	//	redis+cluster://[user:password@]host:port?addr=host:port&addr=...
	//	                                                   Redis Cluster: seed nodes, the rest is discovered
	//	redis+sentinel://[user:password@]host:port[/db]?master_name=<name>&addr=host:port&password=...
	//	                                                   Sentinel: the sentinels' addresses and the master's name
	//
	// and rediss, rediss+cluster, rediss+sentinel for the same over TLS.
	// Query options are go-redis's (redis.ParseURL, redis.ParseClusterURL,
	// redis.ParseFailoverURL). With Sentinel the password in front of the
	// host is the sentinels' and the password option the master's.
	// Passwords are never logged or shown; keep them out of the config with
	// a placeholder.
	URL string `json:"url"`
	// Timeout bounds one limiter decision. Default: 50ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// OnFailure is fail_open (decide in process while Redis is slow or
	// down) or fail_closed (answer 503). Default: fail_open.
	OnFailure string `json:"on_failure,omitempty"`
	// Prefix of every Redis key. Keys that scripts use together carry a
	// hash tag of their own, so the prefix needs none for Redis Cluster.
	// Default: "aigw:".
	Prefix string `json:"prefix,omitempty"`
}

// PriceConfig is a model's price in USD per 1M tokens.
type PriceConfig struct {
	Input  float64 `json:"input"`
	Output float64 `json:"output"`
	Cached float64 `json:"cached,omitempty"`
}

// pooled state that outlives config reloads.
var statePool = caddy.NewUsagePool()

type memoryState struct {
	limiter *ratelimit.Memory
	ledger  *usage.MemoryLedger
	keys    *auth.Memory // last provisioned runtime key store (no Redis)
	cancel  context.CancelFunc
}

func (m *memoryState) Destruct() error { m.cancel(); return nil }

type redisState struct{ client redis.UniversalClient }

func (r *redisState) Destruct() error { return r.client.Close() }

const memoryStateKey = "ai_gateway.memory"

// provisionGuard builds the key store, limiter and ledger.
func (a *App) provisionGuard(ctx caddy.Context, repl *caddy.Replacer) error {
	v, _, err := statePool.LoadOrNew(memoryStateKey, func() (caddy.Destructor, error) {
		jctx, cancel := context.WithCancel(context.Background())
		lim := ratelimit.NewMemory(nil)
		go lim.Run(jctx, time.Minute)
		return &memoryState{limiter: lim, ledger: usage.NewMemoryLedger(), cancel: cancel}, nil
	})
	if err != nil {
		return err
	}
	a.mem = v.(*memoryState)
	a.poolKeys = append(a.poolKeys, memoryStateKey)

	static := make([]*auth.Key, 0, len(a.Keys))
	for _, kc := range a.Keys {
		if kc == nil {
			continue
		}
		k := &auth.Key{Name: kc.Name, Policy: kc.Policy}
		switch {
		case kc.Secret != "" && kc.SHA256 != "":
			return fmt.Errorf("key %q: set secret or sha256, not both", kc.Name)
		case kc.Secret != "":
			secret := repl.ReplaceKnown(kc.Secret, "")
			if secret == "" {
				return fmt.Errorf("key %q: secret is empty (is its environment variable set?)", kc.Name)
			}
			k.Hash = auth.HashSecret(secret)
			a.secrets = append(a.secrets, secret)
		case kc.SHA256 != "":
			if k.Hash, err = auth.ParseHash(repl.ReplaceKnown(kc.SHA256, "")); err != nil {
				return fmt.Errorf("key %q: %v", kc.Name, err)
			}
		default:
			return fmt.Errorf("key %q: secret or sha256 is required", kc.Name)
		}
		if err := k.Validate(); err != nil {
			return fmt.Errorf("key %q: %v", kc.Name, err)
		}
		static = append(static, k)
	}

	a.pricing = usage.DefaultPricing()
	for pattern, p := range a.Prices {
		a.pricing.Set(pattern, usage.Price{Input: p.Input, Output: p.Output, Cached: p.Cached})
	}

	logger := a.logger.Named("guard")
	if a.Redis == nil {
		a.limiter, a.ledger = a.mem.limiter, a.mem.ledger
		store, err := auth.NewMemory(static, repl.ReplaceKnown(a.KeysFile, ""))
		if err != nil {
			return fmt.Errorf("key store: %v", err)
		}
		// Keep the runtime keys created through the admin API across reloads.
		if prev := a.mem.keys; prev != nil && a.KeysFile == "" {
			keys, _ := prev.List(ctx)
			for _, k := range keys {
				if !k.Static {
					_ = store.Create(ctx, k)
				}
			}
		}
		a.mem.keys = store
		a.keys = store
		return nil
	}

	rawURL := repl.ReplaceKnown(a.Redis.URL, "")
	target, err := parseRedisURL(rawURL)
	if err != nil {
		return fmt.Errorf("redis: %v", err)
	}
	timeout := time.Duration(a.Redis.Timeout)
	if timeout <= 0 {
		timeout = 50 * time.Millisecond
	}
	poolKey := redisPoolKey(rawURL, timeout)
	rv, loaded, err := statePool.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
		return &redisState{client: target.client(timeout)}, nil
	})
	if err != nil {
		return err
	}
	if !loaded {
		logger.Info("redis client", zap.String("mode", string(target.mode)), zap.Stringer("url", target))
	}
	a.poolKeys = append(a.poolKeys, poolKey)
	client := rv.(*redisState).client
	a.redisClient = client
	prefix := a.Redis.Prefix
	if prefix == "" {
		prefix = "aigw:"
	}
	a.redisPrefix = prefix
	failOpen := true
	switch strings.ToLower(a.Redis.OnFailure) {
	case "", "fail_open":
	case "fail_closed":
		failOpen = false
	default:
		return fmt.Errorf("redis: on_failure must be fail_open or fail_closed")
	}
	a.limiter = ratelimit.NewFailover(ratelimit.NewRedis(client, prefix+"rl:"), a.mem.limiter, ratelimit.FailoverOptions{
		Timeout:  timeout,
		FailOpen: failOpen,
		OnStateChange: func(up bool, err error) {
			if up {
				logger.Info("redis is back: limits are shared again")
				return
			}
			policy := "fail_closed: answering 503"
			if failOpen {
				policy = "fail_open: limiting in process"
			}
			logger.Error("redis unavailable", zap.String("policy", policy), zap.Error(err))
			a.metrics.redisDown()
		},
	})
	a.ledger = usage.NewRedisLedger(client, prefix+"usage:")
	a.rollups = usage.NewRedisRollups(client, prefix+"rollup:")
	a.settlements = ratelimit.NewQueue(a.limiter, ratelimit.QueueOptions{
		OnLost: func(n int, err error) {
			logger.Warn("settlements lost: Redis unavailable (their leases and reservations expire on their own)",
				zap.Int("count", n), zap.Error(err))
			a.metrics.settlementsLost(n)
		},
	})
	a.settlements.Start(ctx)
	store, err := auth.NewRedis(client, prefix, static)
	if err != nil {
		return fmt.Errorf("key store: %v", err)
	}
	a.keys = store
	return nil
}

// guard returns the gateway's guard for a handler.
func (a *App) guard(logger *zap.Logger) *gateway.Guard {
	limits := make(map[string]gateway.ModelLimits)
	for _, m := range a.Models {
		if m != nil && (m.RPM > 0 || m.TPM > 0) {
			limits[m.Name] = gateway.ModelLimits{RPM: m.RPM, TPM: m.TPM}
		}
	}
	return &gateway.Guard{
		Keys:           a.keys,
		Required:       a.RequireKey || len(a.Keys) > 0,
		Limiter:        a.limiter,
		Settlements:    a.settlements,
		Ledger:         a.ledger,
		Pricing:        a.pricing,
		ModelLimits:    limits,
		OutputEstimate: a.ReserveOutputTokens,
		Logger:         logger,
		Accounting:     a.accounting,
	}
}
