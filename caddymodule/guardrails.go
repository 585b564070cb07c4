package caddymodule

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/guardrails"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider/registry"
)

// TruncateConfig fits chat requests into their model's context window
// (the routing entry's context_window, else the shipped window of its
// targets' models; a model of unknown window is not truncated).
type TruncateConfig struct {
	// Strategy is drop_oldest (the oldest turns go first), middle (the
	// first user turn and the latest turns stay) or error (400
	// context_length_exceeded instead). Default: drop_oldest.
	Strategy string `json:"strategy,omitempty"`
	// ReserveOutput is the answer's share of the window when the request
	// sets no max_tokens. Default: 1024.
	ReserveOutput int `json:"reserve_output,omitempty"`
}

// PrivacyConfig detects personal data and secrets in prompts and masks
// them, refuses the request or sends it to a local model.
type PrivacyConfig struct {
	// Rules say what to do with what detectors find. Where several match
	// a request, block wins over route, route over mask.
	Rules []PrivacyRule `json:"rules,omitempty"`
	// Custom detectors: a name and a regular expression (RE2 syntax).
	Custom []CustomDetector `json:"custom,omitempty"`
	// Restore puts masked values back into the answer (bodies and
	// streams). Default: true.
	Restore *bool `json:"restore,omitempty"`
	// PhoneRegions are the regions (ISO 3166 codes) whose national phone
	// formats are recognized without a country code. Default: US GB DE FR.
	PhoneRegions []string `json:"phone_regions,omitempty"`
}

// PrivacyRule is one privacy rule.
type PrivacyRule struct {
	// Action is mask, block or route.
	Action string `json:"action"`
	// Detectors are email, phone, card, iban, ssn, ip, secret, custom
	// detectors' names, or all.
	Detectors []string `json:"detectors"`
	// Scope limits the rule to requests whose model has a target in it:
	// third_party, local, or a provider's name. Default: every request.
	Scope string `json:"scope,omitempty"`
	// Model is where route sends the request (a model of the routing
	// table, typically served by a local provider).
	Model string `json:"model,omitempty"`
}

// CustomDetector is a detector defined by a regular expression.
type CustomDetector struct {
	Name    string `json:"name"`
	Pattern string `json:"pattern"`
}

// PolicyConfig is the prompt policy.
type PolicyConfig struct {
	// Prepend and Append are system messages added before and after a
	// chat request's messages.
	Prepend []string `json:"prepend,omitempty"`
	Append  []string `json:"append,omitempty"`
	// Deny refuses requests whose prompt matches a pattern: 400
	// content_policy_violation naming the pattern.
	Deny []CustomDetector `json:"deny,omitempty"`
}

// providerLocal reports whether the provider named name is local: its
// trust, else its type's preset.
func providerLocal(name string, pc *ProviderConfig) (bool, error) {
	switch pc.Trust {
	case "local":
		return true, nil
	case "third_party":
		return false, nil
	case "":
	default:
		return false, fmt.Errorf("provider %q: trust must be local or third_party, not %q", name, pc.Trust)
	}
	typ := strings.ToLower(pc.Type)
	if typ == "" {
		typ = "openai"
		if _, ok := registry.Lookup(name); ok {
			typ = name
		}
	}
	return registry.Local(typ), nil
}

// guardrails builds the handler's guardrails stage; nil when it has none.
func (a *App) guardrails(h *Handler) (gateway.Stage, error) {
	if h.Truncate == nil && h.Privacy == nil && h.Policy == nil {
		return nil, nil
	}
	cfg := guardrails.Config{Restore: true, Routes: a.routes, Local: map[string]bool{}, Windows: map[string]int{}, Calibration: a.calibration}
	for name, pc := range a.Providers {
		if pc == nil {
			continue
		}
		local, err := providerLocal(name, pc)
		if err != nil {
			return nil, err
		}
		cfg.Local[name] = local
	}
	for _, m := range a.Models {
		if m != nil && m.ContextWindow > 0 {
			cfg.Windows[m.Name] = m.ContextWindow
		}
	}
	if t := h.Truncate; t != nil {
		st, ok := guardrails.ParseStrategy(t.Strategy)
		if !ok {
			return nil, fmt.Errorf("truncate: unknown strategy %q (drop_oldest, middle or error)", t.Strategy)
		}
		if t.ReserveOutput < 0 {
			return nil, fmt.Errorf("truncate: reserve_output must not be negative")
		}
		cfg.Truncate = &guardrails.Truncation{Strategy: st, ReserveOutput: t.ReserveOutput}
	}
	if p := h.Privacy; p != nil {
		if p.Restore != nil {
			cfg.Restore = *p.Restore
		}
		cfg.PhoneRegions = p.PhoneRegions
		known := slices.Clone(guardrails.Builtin)
		for _, c := range p.Custom {
			re, err := regexp.Compile(c.Pattern)
			if err != nil {
				return nil, fmt.Errorf("privacy: detector %q: %v", c.Name, err)
			}
			if c.Name == "" || slices.Contains(known, c.Name) || c.Name == "all" {
				return nil, fmt.Errorf("privacy: detector name %q is empty or taken", c.Name)
			}
			known = append(known, c.Name)
			cfg.Custom = append(cfg.Custom, guardrails.Custom{Name: c.Name, Re: re})
		}
		for _, r := range p.Rules {
			rule := guardrails.Rule{Detectors: r.Detectors, Scope: r.Scope, Model: r.Model}
			switch r.Action {
			case "mask":
				rule.Action = guardrails.ActionMask
			case "block":
				rule.Action = guardrails.ActionBlock
			case "route":
				rule.Action = guardrails.ActionRoute
				rt, ok := a.routes.Lookup(r.Model)
				if !ok || r.Model == "" {
					return nil, fmt.Errorf("privacy: route to %q: no such model in the routing table", r.Model)
				}
				if !guardrails.LocalOnly(rt, a.routes, cfg.Local) {
					return nil, fmt.Errorf("privacy: route to %q: the model (or a fallback) has a third-party target; route sends data unmasked, so its targets must be trust local", r.Model)
				}
			default:
				return nil, fmt.Errorf("privacy: unknown action %q (mask, block or route)", r.Action)
			}
			if len(r.Detectors) == 0 {
				return nil, fmt.Errorf("privacy: %s: no detectors", r.Action)
			}
			for _, d := range r.Detectors {
				if d != "all" && !slices.Contains(known, d) {
					return nil, fmt.Errorf("privacy: unknown detector %q", d)
				}
			}
			if r.Scope == "any" {
				rule.Scope = guardrails.ScopeAny
			} else if r.Scope != "" && r.Scope != guardrails.ScopeThirdParty && r.Scope != guardrails.ScopeLocal {
				if _, ok := a.Providers[r.Scope]; !ok {
					return nil, fmt.Errorf("privacy: scope %q is neither third_party, local nor a provider", r.Scope)
				}
			}
			cfg.Rules = append(cfg.Rules, rule)
		}
	}
	if p := h.Policy; p != nil {
		cfg.Prepend, cfg.Append = p.Prepend, p.Append
		for _, d := range p.Deny {
			re, err := regexp.Compile(d.Pattern)
			if err != nil {
				return nil, fmt.Errorf("policy: deny %q: %v", d.Name, err)
			}
			cfg.Deny = append(cfg.Deny, guardrails.DenyPattern{Name: d.Name, Re: re})
		}
	}
	return guardrails.New(cfg), nil
}
