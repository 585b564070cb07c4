package caddymodule

import (
	"slices"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/guardrails"
)

// unmarshalGuardrails reads the handler's truncate, privacy (or pii) and
// policy blocks:
//
//	truncate {
//		strategy       drop_oldest|middle|error
//		reserve_output <n>
//	}
//	privacy {
//		mask   <detector...|all> [third_party|local|any|<provider>]
//		block  <detector...|all> [third_party|local|any|<provider>]
//		route  <model> <detector...|all> [third_party|local|any|<provider>]
//		detect <name> <regexp>
//		restore on|off
//		phone_regions <region>...
//	}
//	policy {
//		prepend <system message>
//		append  <system message>
//		deny    <name> <regexp>
//	}
//
// Detectors are email, phone, card, iban, ssn, ip, secret and the names
// given with detect (declared before the rules that use them). A rule's
// last argument is its scope when it names one (third_party, local, any,
// or a provider).
func (h *Handler) unmarshalGuardrails(d *caddyfile.Dispenser) error {
	dir := d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	switch dir {
	case "truncate":
		if h.Truncate != nil {
			return d.Err("truncate declared twice")
		}
		h.Truncate = new(TruncateConfig)
		seen := once{}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			if err := seen.check(d, "truncate", d.Val()); err != nil {
				return err
			}
			var err error
			switch d.Val() {
			case "strategy":
				err = parseString(d, &h.Truncate.Strategy)
			case "reserve_output":
				h.Truncate.ReserveOutput, err = parseInt(d)
			default:
				return d.Errf("unrecognized truncate subdirective %s", d.Val())
			}
			if err != nil {
				return err
			}
		}
	case "privacy", "pii":
		if h.Privacy != nil {
			return d.Errf("%s declared twice (privacy and pii are one block)", dir)
		}
		h.Privacy = new(PrivacyConfig)
		p := h.Privacy
		var custom []string
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch act := d.Val(); act {
			case "mask", "block", "route":
				args := d.RemainingArgs()
				r := PrivacyRule{Action: act}
				if act == "route" {
					if len(args) == 0 {
						return d.ArgErr()
					}
					r.Model, args = args[0], args[1:]
				}
				if len(args) == 0 {
					return d.ArgErr()
				}
				if n := len(args); n > 1 && isScope(args[n-1], custom) {
					r.Scope, args = args[n-1], args[:n-1]
					if r.Scope == "any" {
						r.Scope = ""
					}
				}
				r.Detectors = args
				p.Rules = append(p.Rules, r)
			case "detect":
				args := d.RemainingArgs()
				if len(args) != 2 {
					return d.ArgErr()
				}
				custom = append(custom, args[0])
				p.Custom = append(p.Custom, CustomDetector{Name: args[0], Pattern: args[1]})
			case "restore":
				if p.Restore != nil {
					return d.Errf("%s: restore declared twice", dir)
				}
				var v string
				if err := parseString(d, &v); err != nil {
					return err
				}
				on := v == "on"
				if !on && v != "off" {
					return d.Errf("restore: on or off, not %q", v)
				}
				p.Restore = &on
			case "phone_regions":
				args := d.RemainingArgs()
				if len(args) == 0 {
					return d.ArgErr()
				}
				p.PhoneRegions = append(p.PhoneRegions, args...)
			default:
				return d.Errf("unrecognized %s subdirective %s", dir, act)
			}
		}
	case "policy":
		if h.Policy != nil {
			return d.Err("policy declared twice")
		}
		h.Policy = new(PolicyConfig)
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch d.Val() {
			case "prepend", "append":
				which := d.Val()
				var s string
				if err := parseString(d, &s); err != nil {
					return err
				}
				if which == "prepend" {
					h.Policy.Prepend = append(h.Policy.Prepend, s)
				} else {
					h.Policy.Append = append(h.Policy.Append, s)
				}
			case "deny":
				args := d.RemainingArgs()
				if len(args) != 2 {
					return d.ArgErr()
				}
				h.Policy.Deny = append(h.Policy.Deny, CustomDetector{Name: args[0], Pattern: args[1]})
			default:
				return d.Errf("unrecognized policy subdirective %s", d.Val())
			}
		}
	}
	return nil
}

// isScope reports whether a rule's last argument names a scope rather
// than a detector: a scope keyword, or a name that is no detector.
func isScope(arg string, custom []string) bool {
	switch arg {
	case "third_party", "local", "any":
		return true
	case "all":
		return false
	}
	// Otherwise a provider's name (checked when the handler is
	// provisioned), unless it names a detector.
	return !slices.Contains(guardrails.Builtin, arg) && !slices.Contains(custom, arg)
}
