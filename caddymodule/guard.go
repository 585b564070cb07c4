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
	// URL is a redis:// or rediss:// URL (placeholders expanded).
	URL string `json:"url"`
	// Timeout bounds one limiter decision. Default: 50ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// OnFailure is fail_open (decide in process while Redis is slow or
	// down) or fail_closed (answer 503). Default: fail_open.
	OnFailure string `json:"on_failure,omitempty"`
	// Prefix of every Redis key. Default: "aigw:".
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

type redisState struct{ client *redis.Client }

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

	url := repl.ReplaceKnown(a.Redis.URL, "")
	opts, err := redis.ParseURL(url)
	if err != nil {
		return fmt.Errorf("redis: invalid url")
	}
	timeout := time.Duration(a.Redis.Timeout)
	if timeout <= 0 {
		timeout = 50 * time.Millisecond
	}
	poolKey := "ai_gateway.redis." + url
	rv, _, err := statePool.LoadOrNew(poolKey, func() (caddy.Destructor, error) {
		opts.DialTimeout = max(opts.DialTimeout, 200*time.Millisecond)
		opts.MaxRetries = -1 // the failover decides; retries would stretch the timeout
		// Honour the per-decision context deadline (go-redis ignores it
		// otherwise and waits for its 3 s socket timeouts).
		opts.ContextTimeoutEnabled = true
		opts.ReadTimeout = max(timeout, 100*time.Millisecond)
		opts.WriteTimeout = max(timeout, 100*time.Millisecond)
		opts.PoolTimeout = max(timeout, 100*time.Millisecond)
		return &redisState{client: redis.NewClient(opts)}, nil
	})
	if err != nil {
		return err
	}
	a.poolKeys = append(a.poolKeys, poolKey)
	client := rv.(*redisState).client
	prefix := a.Redis.Prefix
	if prefix == "" {
		prefix = "aigw:"
	}
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
			metricRedisDown()
		},
	})
	a.ledger = usage.NewRedisLedger(client, prefix+"usage:")
	store, err := auth.NewRedis(client, prefix+"keys:", static)
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
		Ledger:         a.ledger,
		Pricing:        a.pricing,
		ModelLimits:    limits,
		OutputEstimate: a.ReserveOutputTokens,
		Logger:         logger,
	}
}
