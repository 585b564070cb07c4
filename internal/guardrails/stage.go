// Package guardrails is the gateway's last request stage: the prompt
// policy (system messages prepended or appended, a deny list), personal
// data and secrets (detected, then masked with reversible placeholders,
// refused, or sent to a local model instead), and truncation to the
// model's context window. A reply tap (Restorer) puts masked values back
// into the answer.
//
// The stage runs on chat, completions, responses and embeddings requests
// (the policy's system messages on chat requests only; truncation on chat
// messages and Responses input items, while a completions prompt is only
// checked to fit). A request from an Anthropic client keeps its native
// body through every rewrite — masked, given policy messages, truncated
// (the same messages dropped in the native JSON) or routed (its model
// changed) — and is read again with the Anthropic dialect, so that a
// native Anthropic target gets the client's Messages-only members (top_k,
// thinking, cache_control, …). Other requests are rewritten in the OpenAI
// view and re-parsed.
package guardrails

import (
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect"
	antdialect "github.com/caddy-ai-gateway/caddy-ai-gateway/internal/dialect/anthropic"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/openai"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/provider"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/tokens"
)

// Response headers.
const (
	HeaderGuardrails = "X-Ai-Gateway-Guardrails"
	HeaderTruncated  = "X-Ai-Gateway-Truncated"
)

// Action is what a rule does with a detected value.
type Action uint8

const (
	ActionNone Action = iota
	// ActionMask replaces the value with a placeholder.
	ActionMask
	// ActionRoute sends the request, unmasked, to the rule's model.
	ActionRoute
	// ActionBlock refuses the request (400 naming the detector).
	ActionBlock
)

func (a Action) String() string {
	switch a {
	case ActionMask:
		return "masked"
	case ActionRoute:
		return "routed"
	case ActionBlock:
		return "blocked"
	}
	return "none"
}

// Scopes of a rule.
const (
	ScopeAny        = ""
	ScopeThirdParty = "third_party"
	ScopeLocal      = "local"
)

// Rule applies an action to what some detectors find, for requests whose
// route has a target in the rule's scope.
type Rule struct {
	Action Action
	// Detectors are detector names or "all".
	Detectors []string
	// Scope is ScopeAny, ScopeThirdParty, ScopeLocal or a provider's name.
	Scope string
	// Model is where ActionRoute sends the request (a routing table name).
	Model string
}

// DenyPattern is a prompt pattern the policy refuses.
type DenyPattern struct {
	Name string
	Re   *regexp.Regexp
}

// Config configures a Stage.
type Config struct {
	Rules  []Rule
	Custom []Custom
	// PhoneRegions: see NewDetectors.
	PhoneRegions []string
	// Restore puts masked values back into the answer.
	Restore bool
	// Truncate, when set, fits chat requests into the context window.
	Truncate *Truncation
	// Windows overrides context windows per routing table entry (pattern).
	Windows map[string]int
	// Prepend and Append are system messages added to every chat request.
	Prepend, Append []string
	// Deny refuses requests whose prompt matches (400
	// content_policy_violation).
	Deny []DenyPattern
	// Local tells which providers are local (trust local); every other is
	// third party.
	Local map[string]bool
	// Routes resolves ActionRoute's model.
	Routes *route.Table
	// Calibration scales the estimate of non-OpenAI models by what their
	// upstreams reported (nil: the shipped estimate).
	Calibration *tokens.Calibration
}

// Stage is the guardrails stage (see the package comment).
type Stage struct {
	cfg Config
	det *Detectors
	// windows are the shipped windows of the models the routing table's
	// targets name (a target passing the requested name through is looked
	// up per request).
	windows map[string]int
}

// New returns the stage for cfg.
func New(cfg Config) *Stage {
	var names []string
	for _, r := range cfg.Rules {
		names = append(names, r.Detectors...)
	}
	s := &Stage{cfg: cfg, det: NewDetectors(names, cfg.Custom, cfg.PhoneRegions), windows: map[string]int{}}
	if cfg.Routes != nil {
		cfg.Routes.Each(func(r *route.Route) {
			for _, t := range r.Targets {
				if t.Model != "" {
					s.windows[t.Model] = Window(t.Model)
				}
			}
		})
	}
	return s
}

// shipped is Window(model), from s.windows when there.
func (s *Stage) shipped(model string) int {
	if w, ok := s.windows[model]; ok {
		return w
	}
	return Window(model)
}

// Name implements gateway.Stage.
func (*Stage) Name() string { return "guardrails" }

// inScope reports whether rt, or a fallback it may reach, has a target in
// scope (a third-party fallback of a local model is third party's reach).
func (s *Stage) inScope(rt *route.Route, scope string) bool {
	if scope == ScopeAny {
		return true
	}
	seen := []*route.Route{rt}
	for i := 0; i < len(seen); i++ {
		for _, t := range seen[i].Targets {
			local := s.cfg.Local[t.Provider]
			if scope == ScopeThirdParty && !local || scope == ScopeLocal && local || scope == t.Provider {
				return true
			}
		}
		if s.cfg.Routes == nil {
			continue
		}
		for _, fb := range seen[i].Fallbacks {
			if next, ok := s.cfg.Routes.Lookup(fb); ok && !slices.Contains(seen, next) {
				seen = append(seen, next)
			}
		}
	}
	return false
}

// LocalOnly reports whether every target rt may reach (fallbacks
// included) is a local provider's.
func LocalOnly(rt *route.Route, routes *route.Table, local map[string]bool) bool {
	s := &Stage{cfg: Config{Routes: routes, Local: local}}
	return !s.inScope(rt, ScopeThirdParty)
}

// Run implements gateway.Stage.
func (s *Stage) Run(x *gateway.Exchange) (*gateway.Reply, *openai.Error) {
	req := x.Req.OpenAI
	body := req.Body
	if oe := s.deny(body); oe != nil {
		x.Info.Guardrails = "denied=policy:1"
		return nil, oe
	}
	rewritten := false
	masked := false // by the masker (in the OpenAI view)
	var m masker
	model := req.Model // the model asked for, after any route rule
	var summary []string

	// Personal data and secrets.
	var vault *Vault
	if len(s.cfg.Rules) > 0 {
		m = masker{d: s.det, rules: s.cfg.Rules}
		if len(m.rules) > 64 {
			m.rules = slices.DeleteFunc(slices.Clone(m.rules), func(r Rule) bool { return !s.inScope(x.Route, r.Scope) })
			m.on = ^uint64(0)
		} else {
			for i, r := range m.rules {
				if s.inScope(x.Route, r.Scope) {
					m.on |= 1 << i
				}
			}
		}
		if m.on != 0 && len(m.rules) > 0 {
			fs := m.detect(body)
			if len(fs) > 0 {
				// One action wins: block over route over mask.
				for _, a := range [...]Action{ActionBlock, ActionRoute, ActionMask} {
					if len(m.found[a]) > 0 {
						summary = append(summary, m.summary(a))
						break
					}
				}
				x.Info.Guardrails = strings.Join(summary, " ")
				x.Header().Set(HeaderGuardrails, x.Info.Guardrails)
				if blocked := m.found[ActionBlock]; len(blocked) > 0 {
					dets := slices.Sorted(mapKeys(blocked))
					return nil, &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "pii_detected",
						Message: "The request contains data this gateway does not forward (" + strings.Join(dets, ", ") + ")."}
				}
				if routed := m.found[ActionRoute]; len(routed) > 0 {
					// The first route rule that matched names the model.
					to := ""
					for i, r := range m.rules {
						if m.on&(1<<(i%64)) != 0 && r.Action == ActionRoute && to == "" {
							for det := range routed {
								if slices.Contains(r.Detectors, det) || slices.Contains(r.Detectors, "all") {
									to = r.Model
									break
								}
							}
						}
					}
					rt, ok := s.cfg.Routes.Lookup(to)
					if !ok {
						return nil, &openai.Error{Status: http.StatusServiceUnavailable, Type: openai.TypeServer, Code: "guardrails_route_unavailable",
							Message: "The request must go to a local model, which is not configured."}
					}
					b, err := sjson.SetBytes(body, "model", to)
					if err != nil {
						return nil, openai.BadRequest("The request could not be rewritten.", "", "invalid_request")
					}
					body, rewritten, model = b, true, to
					x.Route = rt
					x.Info.Route = rt.Pattern
				} else if m.found[ActionMask] != nil {
					body, rewritten, masked = m.mask(body, fs), true, true
					vault = m.vault
				}
			}
		}
	}

	// Policy system messages.
	policy := false
	nmsgs := req.Messages
	if req.Op == openai.OpChat && (len(s.cfg.Prepend) > 0 || len(s.cfg.Append) > 0) {
		body = s.policyMessages(body)
		nmsgs += len(s.cfg.Prepend) + len(s.cfg.Append)
		rewritten, policy = true, true
	}

	// A native Anthropic body gets the same rewrites, so that a native
	// target gets its Messages-only members (top_k, thinking, …).
	var native []byte
	if x.Req.Format == provider.FormatAnthropic && x.Req.Native != nil {
		native = x.Req.Native
		if rewritten {
			var oe *openai.Error
			if native, oe = s.rewriteNative(native, &m, masked, policy); oe != nil {
				return nil, oe
			}
			if model != req.Model {
				b, err := sjson.SetBytes(native, "model", model)
				if err != nil {
					return nil, openai.BadRequest("The request could not be rewritten.", "", "invalid_request")
				}
				native = b
			}
		}
	}

	// Truncation.
	if t := s.cfg.Truncate; t != nil {
		target, sh := &body, ShapeChat
		if native != nil {
			target, sh = &native, ShapeAnthropic
		}
		if req.Op == openai.OpResponses {
			sh = ShapeResponses
		}
		if req.Op == openai.OpChat || req.Op == openai.OpResponses || req.Op == openai.OpCompletions {
			window, counted := s.window(x.Route, model)
			if window > 0 {
				c := tokens.For(counted).Calibrated(s.cfg.Calibration.Lookup(counted, x.Route.Pattern))
				var (
					cut Cut
					oe  *openai.Error
				)
				if req.Op == openai.OpCompletions {
					oe = t.Fits(*target, c, window, req.MaxTokens)
				} else {
					cut, oe = t.ApplyShape(sh, *target, c, window, req.MaxTokens, nmsgs)
				}
				if oe != nil {
					return nil, oe
				}
				if cut.Messages > 0 {
					*target, rewritten = cut.Body, true
					x.Info.Truncated = "messages=" + strconv.Itoa(cut.Messages) + " tokens=" + strconv.Itoa(cut.Tokens)
					x.Header().Set(HeaderTruncated, x.Info.Truncated)
				}
			}
		}
	}

	if !rewritten {
		return nil, nil
	}
	if native != nil {
		// The client's own body, rewritten, is read again.
		var nr dialect.Request
		if oe := (antdialect.Dialect{}).Parse(&nr, req.Op, native, x.Req.Header, jsonraw.MaxDepthLimit); oe != nil {
			return nil, oe
		}
		nr.Header = x.Req.Header
		*x.Req = nr
	} else {
		nreq, oe := openai.ParseRequest(req.Op, body, jsonraw.MaxDepthLimit)
		if oe != nil {
			return nil, oe
		}
		x.Req.OpenAI = nreq
		x.Req.Native = nil // the rewritten prompt is what goes upstream: translated
	}
	if vault.Len() > 0 && s.cfg.Restore {
		x.PrependTap(NewRestorer(vault))
	}
	return nil, nil
}

// rewriteNative rewrites a native Anthropic body as the OpenAI view was:
// masked with m's vault (the values found in it get the placeholders
// they got in the OpenAI view), the policy's system messages added to its
// system blocks (where Anthropic's translation puts system messages:
// prepended before, appended after the client's).
func (s *Stage) rewriteNative(native []byte, m *masker, masked, policy bool) ([]byte, *openai.Error) {
	if masked {
		n := *m
		n.found = nil // counted in the OpenAI view already
		counts := maps.Clone(m.vault.Counts)
		native = n.mask(native, n.detect(native))
		m.vault.Counts = counts
	}
	if policy {
		var err error
		if native, err = s.policySystem(native); err != nil {
			return nil, openai.BadRequest("The request could not be rewritten.", "", "invalid_request")
		}
	}
	return native, nil
}

// policySystem adds the policy's system messages to an Anthropic body's
// system, as text blocks before and after the client's.
func (s *Stage) policySystem(native []byte) ([]byte, error) {
	arr := make([]byte, 0, 256)
	arr = append(arr, '[')
	add := func(raw string) {
		if len(arr) > 1 {
			arr = append(arr, ',')
		}
		arr = append(arr, raw...)
	}
	text := func(t string) string {
		return `{"type":"text","text":"` + string(appendEscaped(nil, t)) + `"}`
	}
	for _, p := range s.cfg.Prepend {
		add(text(p))
	}
	switch sys := openai.GetInPlace(native, "system"); {
	case sys.Type == gjson.String && sys.Str != "":
		add(`{"type":"text","text":` + sys.Raw + `}`)
	case sys.IsArray():
		sys.ForEach(func(_, b gjson.Result) bool { add(b.Raw); return true })
	}
	for _, a := range s.cfg.Append {
		add(text(a))
	}
	arr = append(arr, ']')
	return sjson.SetRawBytes(native, "system", arr)
}

// window is the context window of rt: its context_window, else the
// smallest shipped window of its targets' models (the requested name when
// a target passes it through); 0 when unknown. model is the model the
// tokens are counted for.
func (s *Stage) window(rt *route.Route, requested string) (int, string) {
	model := rt.Targets[0].UpstreamModel(requested)
	if w := s.cfg.Windows[rt.Pattern]; w > 0 {
		return w, model
	}
	best := 0
	for i := range rt.Targets {
		m := rt.Targets[i].UpstreamModel(requested)
		if w := s.shipped(m); w > 0 && (best == 0 || w < best) {
			best, model = w, m
		}
	}
	return best, model
}

// deny refuses a prompt matching one of the deny patterns, naming the
// pattern (never the text).
func (s *Stage) deny(body []byte) *openai.Error {
	if len(s.cfg.Deny) == 0 {
		return nil
	}
	var hit string
	scan(body, func(v gjson.Result, _ int) {
		if hit != "" {
			return
		}
		for _, p := range s.cfg.Deny {
			if p.Re.MatchString(v.Str) {
				hit = p.Name
				return
			}
		}
	})
	if hit == "" {
		return nil
	}
	return &openai.Error{Status: http.StatusBadRequest, Type: openai.TypeInvalidRequest, Code: "content_policy_violation",
		Message: "The request was refused by the gateway's content policy (" + hit + ")."}
}

// policyMessages adds the policy's system messages before and after the
// request's messages.
func (s *Stage) policyMessages(body []byte) []byte {
	msgs := openai.GetInPlace(body, "messages")
	if !msgs.IsArray() {
		return body
	}
	arr := make([]byte, 0, len(msgs.Raw)+256)
	arr = append(arr, '[')
	add := func(raw string) {
		if len(arr) > 1 {
			arr = append(arr, ',')
		}
		arr = append(arr, raw...)
	}
	sys := func(text string) string {
		return `{"role":"system","content":"` + string(appendEscaped(nil, text)) + `"}`
	}
	for _, p := range s.cfg.Prepend {
		add(sys(p))
	}
	msgs.ForEach(func(_, m gjson.Result) bool { add(m.Raw); return true })
	for _, a := range s.cfg.Append {
		add(sys(a))
	}
	arr = append(arr, ']')
	out, err := sjson.SetRawBytes(body, "messages", arr)
	if err != nil {
		return body
	}
	return out
}

// summary renders what action a found, by detector: "masked=card:1,email:2".
func (m *masker) summary(a Action) string {
	f := m.found[a]
	var parts []string
	for _, det := range slices.Sorted(mapKeys(f)) {
		parts = append(parts, det+":"+strconv.Itoa(f[det]))
	}
	return a.String() + "=" + strings.Join(parts, ",")
}

func mapKeys(m map[string]int) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

var _ gateway.Stage = (*Stage)(nil)
