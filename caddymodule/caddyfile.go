package caddymodule

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("ai_gateway", parseGlobalOption)
	httpcaddyfile.RegisterHandlerDirective("ai_gateway", parseHandler)
	httpcaddyfile.RegisterDirectiveOrder("ai_gateway", httpcaddyfile.Before, "reverse_proxy")
}

func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("ai_gateway global option declared twice")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	var warnings []caddyconfig.Warning
	raw := caddyconfig.JSON(app, &warnings)
	if len(warnings) > 0 {
		return nil, d.Errf("ai_gateway: encoding the configuration: %s", warnings[0].Message)
	}
	return httpcaddyfile.App{Name: "ai_gateway", Value: raw}, nil
}

// UnmarshalCaddyfile sets up the app from the ai_gateway global option:
//
//	ai_gateway {
//		provider <name> {
//			type             openai|azure|mistral|groq|together|deepseek|openrouter|ollama|vllm|anthropic|gemini|cohere
//			base_url         <url>
//			api_key          <key, e.g. {env.OPENAI_API_KEY}>
//			api_version      <azure api-version | anthropic-version>
//			drop_unsupported_params
//			header           <name> <value>
//			connect_timeout  <duration>
//			first_byte_timeout <duration>
//			idle_timeout     <duration>
//			trust            local|third_party
//			rpm              <n>
//			tpm              <n>
//			queue            <duration>
//			health_check     <interval>
//		}
//		model <name|glob> {
//			target   <provider> [<upstream model>] [weight <n>] [rpm <n>] [tpm <n>] [queue <duration>]
//			fallback <model> [<model>...]
//			retries  <n>
//			max_tokens <n>
//			rpm      <n>
//			tpm      <n>
//			context_window <n>
//			policy   weighted|least_latency|least_busy|cost|headroom
//			hedge_after <duration>|p95
//			max_hedges <n>
//		}
//		max_body_size   <size>
//		max_messages    <n>
//		max_json_depth  <n>
//		max_tokens      <n>
//		deadline        <duration>
//		retry_backoff   <duration>
//		max_backoff     <duration>
//		max_retry_after <duration>
//		max_fails       <n>
//		cooldown        <duration>
//		key <name> {
//			secret      <secret, e.g. {env.TEAM_A_KEY}>
//			sha256      <hex sha256 of the secret>
//			models      <name|glob>...
//			rpm         <n>
//			burst       <n>
//			tpm         <n>
//			concurrency <n>
//			budget      <usd> [day|month]
//			cache       <namespace>
//			metadata    <name> <value>
//		}
//		require_key
//		keys_file   <path>
//		redis <redis|rediss|redis+cluster|rediss+cluster|redis+sentinel|rediss+sentinel://...> {
//			timeout    <duration>
//			on_failure fail_open|fail_closed
//			prefix     <prefix>
//		}
//		reserve_output_tokens <n>
//		price <model|glob> <input usd/1M> <output usd/1M> [<cached usd/1M>]
//		telemetry {
//			otlp           <endpoint> [grpc|http]
//			sample         <ratio>
//			service_name   <name>
//			capture_content
//		}
//		metrics {
//			key_label
//		}
//		collection <name> { ... }  (see unmarshalCollection)
//		cache { ... }   (see CacheConfig.unmarshal)
//	}
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // option name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		dir := d.Val()
		switch dir {
		case "provider":
			if !d.NextArg() {
				return d.ArgErr()
			}
			name := d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
			if a.Providers == nil {
				a.Providers = map[string]*ProviderConfig{}
			}
			if _, dup := a.Providers[name]; dup {
				return d.Errf("provider %q declared twice", name)
			}
			pc := new(ProviderConfig)
			if err := pc.unmarshal(d); err != nil {
				return err
			}
			a.Providers[name] = pc
			continue
		case "model":
			if !d.NextArg() {
				return d.ArgErr()
			}
			mc := &ModelConfig{Name: d.Val()}
			if d.NextArg() {
				return d.ArgErr()
			}
			for _, m := range a.Models {
				if m.Name == mc.Name {
					return d.Errf("model %q declared twice", mc.Name)
				}
			}
			if err := mc.unmarshal(d); err != nil {
				return err
			}
			a.Models = append(a.Models, mc)
			continue
		case "key":
			if !d.NextArg() {
				return d.ArgErr()
			}
			kc := &KeyConfig{Name: d.Val()}
			if d.NextArg() {
				return d.ArgErr()
			}
			for _, k := range a.Keys {
				if k.Name == kc.Name {
					return d.Errf("key %q declared twice", kc.Name)
				}
			}
			if err := kc.unmarshal(d); err != nil {
				return err
			}
			a.Keys = append(a.Keys, kc)
			continue
		case "price":
			args := d.RemainingArgs()
			if len(args) != 3 && len(args) != 4 {
				return d.ArgErr()
			}
			var nums [3]float64
			for i, s := range args[1:] {
				f, ok := parseAmount(s)
				if !ok {
					return d.Errf("price %s: invalid number %q", args[0], s)
				}
				nums[i] = f
			}
			if a.Prices == nil {
				a.Prices = map[string]PriceConfig{}
			}
			a.Prices[args[0]] = PriceConfig{Input: nums[0], Output: nums[1], Cached: nums[2]}
			continue
		case "collection":
			if err := a.unmarshalCollection(d); err != nil {
				return err
			}
			continue
		}
		if seen[dir] {
			return d.Errf("%s declared twice", dir)
		}
		seen[dir] = true
		var err error
		switch dir {
		case "max_body_size":
			a.MaxBodySize, err = parseSize(d)
		case "max_messages":
			a.MaxMessages, err = parseInt(d)
		case "max_json_depth":
			a.MaxJSONDepth, err = parseInt(d)
		case "max_tokens":
			var n int
			n, err = parseInt(d)
			a.MaxTokens = int64(n)
		case "deadline":
			a.Deadline, err = parseDuration(d)
		case "retry_backoff":
			a.RetryBackoff, err = parseDuration(d)
		case "max_backoff":
			a.MaxBackoff, err = parseDuration(d)
		case "max_retry_after":
			a.MaxRetryAfter, err = parseDuration(d)
		case "max_fails":
			a.MaxFails, err = parseInt(d)
		case "cooldown":
			a.Cooldown, err = parseDuration(d)
		case "require_key":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.RequireKey = true
		case "keys_file":
			err = parseString(d, &a.KeysFile)
		case "reserve_output_tokens":
			var n int
			n, err = parseInt(d)
			a.ReserveOutputTokens = int64(n)
		case "redis":
			a.Redis = new(RedisConfig)
			err = a.Redis.unmarshal(d)
		case "telemetry":
			a.Telemetry = new(TelemetryConfig)
			err = a.Telemetry.unmarshal(d)
		case "metrics":
			a.Metrics = new(MetricsConfig)
			err = a.Metrics.unmarshal(d)
		case "cache":
			a.Cache = new(CacheConfig)
			err = a.Cache.unmarshal(d)
		default:
			return d.Errf("unrecognized ai_gateway option %s", dir)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (pc *ProviderConfig) unmarshal(d *caddyfile.Dispenser) error {
	seen := once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if err := seen.check(d, "provider", dir, "header"); err != nil {
			return err
		}
		var err error
		switch dir {
		case "type":
			err = parseString(d, &pc.Type)
		case "base_url":
			err = parseString(d, &pc.BaseURL)
		case "api_key":
			err = parseString(d, &pc.APIKey)
		case "api_version":
			err = parseString(d, &pc.APIVersion)
		case "drop_unsupported_params":
			if d.NextArg() {
				return d.ArgErr()
			}
			pc.DropUnsupported = true
		case "h2c":
			if d.NextArg() {
				return d.ArgErr()
			}
			pc.H2C = true
		case "header":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.ArgErr()
			}
			if pc.Headers == nil {
				pc.Headers = map[string]string{}
			}
			pc.Headers[args[0]] = args[1]
		case "connect_timeout":
			pc.ConnectTimeout, err = parseDuration(d)
		case "first_byte_timeout":
			pc.FirstByteTimeout, err = parseDuration(d)
		case "idle_timeout":
			pc.IdleTimeout, err = parseDuration(d)
		case "trust":
			err = parseString(d, &pc.Trust)
		default:
			var ok bool
			if ok, err = pc.ProviderRouting.unmarshalCaddyfile(d, dir); !ok {
				return d.Errf("unrecognized provider subdirective %s", dir)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (mc *ModelConfig) unmarshal(d *caddyfile.Dispenser) error {
	seen := once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if err := seen.check(d, "model", dir, "target", "fallback"); err != nil {
			return err
		}
		var err error
		switch dir {
		case "target":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			t := TargetConfig{Provider: args[0]}
			if err := parseTargetArgs(d, &t, args[1:]); err != nil {
				return err
			}
			mc.Targets = append(mc.Targets, t)
		case "fallback":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			mc.Fallbacks = append(mc.Fallbacks, args...)
		case "retries":
			mc.Retries, err = parseInt(d)
		case "max_tokens":
			var n int
			n, err = parseInt(d)
			mc.MaxTokens = int64(n)
		case "rpm":
			mc.RPM, err = parseInt64(d)
		case "tpm":
			mc.TPM, err = parseInt64(d)
		case "context_window":
			mc.ContextWindow, err = parseInt(d)
		default:
			var ok bool
			if ok, err = mc.ModelRouting.unmarshalCaddyfile(d, dir); !ok {
				return d.Errf("unrecognized model subdirective %s", dir)
			}
		}
		if err != nil {
			return err
		}
	}
	if len(mc.Targets) == 0 {
		return d.Errf("model %q: at least one target is required", mc.Name)
	}
	return nil
}

func (kc *KeyConfig) unmarshal(d *caddyfile.Dispenser) error {
	seen := once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if err := seen.check(d, "key", dir, "models", "metadata"); err != nil {
			return err
		}
		var err error
		switch dir {
		case "secret":
			err = parseString(d, &kc.Secret)
		case "sha256":
			err = parseString(d, &kc.SHA256)
		case "models":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			kc.Models = append(kc.Models, args...)
		case "rpm":
			kc.RPM, err = parseInt64(d)
		case "burst":
			kc.Burst, err = parseInt64(d)
		case "tpm":
			kc.TPM, err = parseInt64(d)
		case "concurrency":
			kc.Concurrency, err = parseInt64(d)
		case "budget":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 {
				return d.ArgErr()
			}
			f, ok := parseAmount(strings.TrimPrefix(args[0], "$"))
			if !ok {
				return d.Errf("budget: invalid amount %q", args[0])
			}
			kc.Budget = f
			if len(args) == 2 {
				if args[1] != "day" && args[1] != "month" {
					return d.Errf("budget: period must be day or month, got %q", args[1])
				}
				kc.BudgetPeriod = args[1]
			}
		case "cache":
			err = parseString(d, &kc.Cache)
		case "metadata":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return d.ArgErr()
			}
			if kc.Metadata == nil {
				kc.Metadata = map[string]string{}
			}
			kc.Metadata[args[0]] = args[1]
		default:
			return d.Errf("unrecognized key subdirective %s", dir)
		}
		if err != nil {
			return err
		}
	}
	if kc.Secret == "" && kc.SHA256 == "" {
		return d.Errf("key %q: secret or sha256 is required", kc.Name)
	}
	return nil
}

func (rc *RedisConfig) unmarshal(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	rc.URL = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := once{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if err := seen.check(d, "redis", dir); err != nil {
			return err
		}
		var err error
		switch dir {
		case "timeout":
			rc.Timeout, err = parseDuration(d)
		case "on_failure":
			err = parseString(d, &rc.OnFailure)
			if err == nil && rc.OnFailure != "fail_open" && rc.OnFailure != "fail_closed" {
				return d.Errf("on_failure must be fail_open or fail_closed")
			}
		case "prefix":
			err = parseString(d, &rc.Prefix)
		default:
			return d.Errf("unrecognized redis subdirective %s", dir)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func parseInt64(d *caddyfile.Dispenser) (int64, error) {
	n, err := parseInt(d)
	return int64(n), err
}

// parseHandler sets up the handler from the ai_gateway directive:
//
//	ai_gateway {
//		max_body_size  <size>
//		max_messages   <n>
//		max_json_depth <n>
//		max_tokens    <n>
//		models        <name|glob>...
//		truncate { … }          (see unmarshalGuardrails)
//		privacy  { … }          (alias pii)
//		policy   { … }
//		rag <collection> { ... }  (see unmarshalRAG)
//		cache         off
//	}
func parseHandler(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	hd := new(Handler)
	err := hd.UnmarshalCaddyfile(h.Dispenser)
	return hd, err
}

// UnmarshalCaddyfile implements caddyfile.Unmarshaler.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := once{}
	for d.NextBlock(0) {
		// The blocks (truncate, privacy, policy, rag) refuse
		// their own repetition.
		if err := seen.check(d, "ai_gateway", d.Val(), "models", "truncate", "privacy", "pii", "policy", "rag"); err != nil {
			return err
		}
		var err error
		switch d.Val() {
		case "max_body_size":
			h.MaxBodySize, err = parseSize(d)
		case "max_messages":
			h.MaxMessages, err = parseInt(d)
		case "max_json_depth":
			h.MaxJSONDepth, err = parseInt(d)
		case "max_tokens":
			var n int
			n, err = parseInt(d)
			h.MaxTokens = int64(n)
		case "models":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			h.Models = append(h.Models, args...)
		case "truncate", "privacy", "pii", "policy":
			err = h.unmarshalGuardrails(d)
		case "rag":
			err = h.unmarshalRAG(d)
		case "cache":
			err = unmarshalHandlerCache(d, h)
		default:
			return d.Errf("unrecognized ai_gateway subdirective %s", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// once refuses a second occurrence of a single-value subdirective in
// one block, which the Caddyfile would otherwise settle silently by
// keeping the last; the subdirectives named as repeatable (lists, maps)
// may occur any number of times.
type once map[string]bool

func (o once) check(d *caddyfile.Dispenser, block, dir string, repeatable ...string) error {
	if slices.Contains(repeatable, dir) {
		return nil
	}
	if o[dir] {
		return d.Errf("%s: %s declared twice", block, dir)
	}
	o[dir] = true
	return nil
}

func parseString(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func parseInt(d *caddyfile.Dispenser) (int, error) {
	dir := d.Val()
	var s string
	if err := parseString(d, &s); err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, d.Errf("%s: invalid number %q", dir, s)
	}
	return n, nil
}

// parseAmount parses a price or a budget: a finite, non-negative number
// (NaN and Inf would make the configuration impossible to encode as JSON).
func parseAmount(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

func parseDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	var s string
	if err := parseString(d, &s); err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(s)
	if err != nil || dur < 0 {
		return 0, d.Errf("invalid duration %q", s)
	}
	return caddy.Duration(dur), nil
}

func parseSize(d *caddyfile.Dispenser) (int64, error) {
	var s string
	if err := parseString(d, &s); err != nil {
		return 0, err
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 || n > 1<<40 {
		return 0, d.Errf("invalid size %q", s)
	}
	return int64(n), nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Handler)(nil)
)
