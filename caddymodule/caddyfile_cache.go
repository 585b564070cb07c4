package caddymodule

import (
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unmarshal reads the app's cache block:
//
//	cache {
//		backend        memory|redis
//		ttl            <duration>
//		max_entry_size <size>
//		max_memory     <size>
//		namespace      per_key|shared
//		semantic {
//			embed     <embedding model>
//			threshold <0..1>
//		}
//	}
func (cc *CacheConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] {
			return d.Errf("cache: %s declared twice", dir)
		}
		seen[dir] = true
		var err error
		switch dir {
		case "backend":
			if err = parseString(d, &cc.Backend); err == nil && cc.Backend != "memory" && cc.Backend != "redis" {
				return d.Errf("cache: backend must be memory or redis, got %q", cc.Backend)
			}
		case "ttl":
			cc.TTL, err = parseDuration(d)
		case "max_entry_size":
			cc.MaxEntrySize, err = parseSize(d)
		case "max_memory":
			cc.MaxMemory, err = parseSize(d)
		case "namespace":
			if err = parseString(d, &cc.Namespace); err == nil && cc.Namespace != "per_key" && cc.Namespace != "shared" {
				return d.Errf("cache: namespace must be per_key or shared, got %q", cc.Namespace)
			}
		case "semantic":
			cc.Semantic = new(SemanticCacheConfig)
			err = cc.Semantic.unmarshal(d)
		default:
			return d.Errf("unrecognized cache subdirective %s", dir)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (sc *SemanticCacheConfig) unmarshal(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "embed":
			err = parseString(d, &sc.Embed)
		case "threshold":
			var s string
			if err = parseString(d, &s); err == nil {
				f, perr := strconv.ParseFloat(s, 64)
				if perr != nil || f <= 0 || f > 1 {
					return d.Errf("semantic: threshold must be a number in (0, 1], got %q", s)
				}
				sc.Threshold = f
			}
		default:
			return d.Errf("unrecognized semantic subdirective %s", d.Val())
		}
		if err != nil {
			return err
		}
	}
	if sc.Embed == "" {
		return d.Err("semantic: embed <model> is required")
	}
	return nil
}

// unmarshalHandlerCache reads a route's `cache off`.
func unmarshalHandlerCache(d *caddyfile.Dispenser, h *Handler) error {
	if err := parseString(d, &h.Cache); err != nil {
		return err
	}
	if h.Cache != "off" {
		return d.Errf("cache: only `cache off` is allowed in a route, got %q", h.Cache)
	}
	return nil
}
