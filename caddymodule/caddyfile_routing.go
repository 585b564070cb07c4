package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// unmarshalCaddyfile reads a provider's routing subdirective, reporting
// whether dir is one:
//
//	rpm          <n>
//	tpm          <n>
//	queue        <duration>
//	health_check <interval>
func (pr *ProviderRouting) unmarshalCaddyfile(d *caddyfile.Dispenser, dir string) (bool, error) {
	var err error
	switch dir {
	case "rpm":
		pr.RPM, err = parseInt64(d)
	case "tpm":
		pr.TPM, err = parseInt64(d)
	case "queue":
		pr.Queue, err = parseDuration(d)
	case "health_check":
		pr.HealthCheck, err = parseDuration(d)
		if err == nil && pr.HealthCheck <= 0 {
			err = d.Errf("health_check: the interval must be positive")
		}
	default:
		return false, nil
	}
	return true, err
}

// unmarshalCaddyfile reads a model's routing subdirective, reporting
// whether dir is one:
//
//	policy      weighted|least_latency|least_busy|cost|headroom
//	hedge_after <duration>|p95
//	max_hedges  <n>
func (mr *ModelRouting) unmarshalCaddyfile(d *caddyfile.Dispenser, dir string) (bool, error) {
	var err error
	switch dir {
	case "policy":
		err = parseString(d, &mr.Policy)
		if err == nil {
			switch mr.Policy {
			case "weighted", "least_latency", "least_busy", "cost", "headroom":
			default:
				err = d.Errf("policy: want weighted, least_latency, least_busy, cost or headroom, got %q", mr.Policy)
			}
		}
	case "hedge_after":
		err = parseString(d, &mr.HedgeAfter)
		if err == nil && mr.HedgeAfter != "p95" {
			if dur, perr := caddy.ParseDuration(mr.HedgeAfter); perr != nil || dur <= 0 {
				err = d.Errf("hedge_after: want a positive duration or p95, got %q", mr.HedgeAfter)
			}
		}
	case "max_hedges":
		mr.MaxHedges, err = parseInt(d)
	default:
		return false, nil
	}
	return true, err
}

// parseTargetArgs reads what follows a target's provider:
//
//	target <provider> [<upstream model>] [weight <n>] [rpm <n>] [tpm <n>] [queue <duration>]
func parseTargetArgs(d *caddyfile.Dispenser, t *TargetConfig, args []string) error {
	keyword := func(s string) bool {
		switch s {
		case "weight", "rpm", "tpm", "queue":
			return true
		}
		return false
	}
	if len(args) > 0 && !keyword(args[0]) {
		t.Model, args = args[0], args[1:]
	}
	seen := map[string]bool{}
	for len(args) > 0 {
		if len(args) < 2 || !keyword(args[0]) || seen[args[0]] {
			return d.Errf("target: expected 'weight <n>', 'rpm <n>', 'tpm <n>' or 'queue <duration>', got %s", strings.Join(args, " "))
		}
		k, v := args[0], args[1]
		seen[k] = true
		args = args[2:]
		if k == "queue" {
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur < 0 {
				return d.Errf("target: invalid queue %q", v)
			}
			t.Queue = caddy.Duration(dur)
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return d.Errf("target: invalid %s %q", k, v)
		}
		switch k {
		case "weight":
			t.Weight = int(n)
		case "rpm":
			t.RPM = n
		case "tpm":
			t.TPM = n
		}
	}
	return nil
}
