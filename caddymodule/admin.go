package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/auth"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/gateway"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/jsonraw"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/ratelimit"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/usage"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the gateway's admin endpoints on Caddy's admin server:
//
//	POST   /ai_gateway/keys          create a key; the secret is returned once
//	GET    /ai_gateway/keys          list keys (never secrets)
//	GET    /ai_gateway/keys/{name}   a key with its usage this budget period
//	DELETE /ai_gateway/keys/{name}   revoke a runtime key
//	GET    /ai_gateway/status        circuit breakers and shared-state health
//	GET    /ai_gateway/usage         usage and spend per hour or day, grouped (admin_usage.go)
//	GET    /ai_gateway/usage/export  the same as CSV
//
// Caddy provisions it with each config it loads, before the config's apps
// start; it serves that config's ai_gateway app.
type adminAPI struct {
	app *App // nil when the config has no ai_gateway app
}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.ai_gateway",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

// Provision finds the config's ai_gateway app, loading it if need be.
func (api *adminAPI) Provision(ctx caddy.Context) error {
	app, err := ctx.AppIfConfigured("ai_gateway")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loading ai_gateway app: %v", err)
	}
	api.app = app.(*App)
	return nil
}

// Routes implements caddy.AdminRouter.
func (api *adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/ai_gateway/", Handler: caddy.AdminHandlerFunc(api.serve)}}
}

func apiErr(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func (api *adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	if api.app == nil || api.app.unloaded() {
		return apiErr(http.StatusServiceUnavailable, "the ai_gateway app is not running")
	}
	return api.app.serveAdmin(w, r)
}

// unloaded reports whether a's config was unloaded (replaced, stopped, or
// failed to start).
func (a *App) unloaded() bool { return a.ctx.Context != nil && a.ctx.Err() != nil }

// serveAdmin routes an admin request to a's endpoints. Errors are
// caddy.APIError values, which Caddy's admin server answers as JSON.
func (a *App) serveAdmin(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/ai_gateway/")
	switch {
	case rest == "keys":
		switch r.Method {
		case http.MethodGet:
			return a.adminListKeys(w, r)
		case http.MethodPost:
			return a.adminCreateKey(w, r)
		}
		return apiErr(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
	case strings.HasPrefix(rest, "keys/"):
		name := strings.TrimPrefix(rest, "keys/")
		switch r.Method {
		case http.MethodGet:
			return a.adminGetKey(w, r, name)
		case http.MethodDelete:
			return a.adminDeleteKey(w, r, name)
		}
		return apiErr(http.StatusMethodNotAllowed, "method %s not allowed", r.Method)
	case rest == "status" && r.Method == http.MethodGet:
		return a.adminStatus(w)
	case rest == "cache":
		return a.adminCache(w, r)
	case rest == "usage" || rest == "usage/export":
		return a.adminUsage(w, r, rest == "usage/export")
	case strings.HasPrefix(rest, "collections/"):
		return a.serveAdminRAG(w, r, strings.TrimPrefix(rest, "collections/"))
	}
	return apiErr(http.StatusNotFound, "unknown ai_gateway admin path")
}

// keyView is a key as the admin API shows it: no secret, no hash.
type keyView struct {
	Name    string      `json:"name"`
	Policy  auth.Policy `json:"policy"`
	Created time.Time   `json:"created"`
	Static  bool        `json:"static"`
	Usage   *usageView  `json:"usage,omitempty"`
}

type usageView struct {
	Period       string   `json:"period"`
	Window       string   `json:"window"`
	Requests     int64    `json:"requests"`
	InputTokens  int64    `json:"input_tokens"`
	OutputTokens int64    `json:"output_tokens"`
	CachedTokens int64    `json:"cached_tokens"`
	SpendUSD     float64  `json:"spend_usd"`
	ReservedUSD  float64  `json:"reserved_usd"`
	BudgetUSD    float64  `json:"budget_usd,omitempty"`
	RemainingUSD *float64 `json:"remaining_usd,omitempty"`
	// What the response cache answered for the key, and did not spend.
	CacheHits        int64   `json:"cache_hits"`
	CacheSavedTokens int64   `json:"cache_saved_tokens"`
	CacheSavedUSD    float64 `json:"cache_saved_usd"`
}

func view(k *auth.Key) keyView {
	return keyView{Name: k.Name, Policy: k.Policy, Created: k.Created, Static: k.Static}
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

func (a *App) adminListKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := a.keys.List(r.Context())
	if err != nil {
		return apiErr(http.StatusServiceUnavailable, "listing keys: %v", err)
	}
	out := make([]keyView, 0, len(keys))
	for _, k := range keys {
		out = append(out, view(k))
	}
	return writeAdminJSON(w, http.StatusOK, out)
}

type createKeyRequest struct {
	Name string `json:"name"`
	auth.Policy
}

// maxAdminBody bounds the body of an admin request.
const maxAdminBody = 1 << 20

// decodeCreateKey reads the body of POST /ai_gateway/keys: one JSON object
// of known fields and nothing after it. A body over maxAdminBody is 413,
// anything else malformed 400.
func decodeCreateKey(w http.ResponseWriter, r *http.Request) (createKeyRequest, error) {
	var req createKeyRequest
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return req, apiErr(http.StatusRequestEntityTooLarge, "key JSON larger than %d bytes", tooBig.Limit)
	case err != nil:
		return req, apiErr(http.StatusBadRequest, "reading the key JSON: %v", err)
	}
	// Bounded nesting, UTF-8 and no member twice, before encoding/json
	// (which would keep the last of duplicates).
	if ce := jsonraw.Check(body, 0, jsonraw.Unique|jsonraw.UTF8); ce != nil {
		return req, apiErr(http.StatusBadRequest, "invalid key JSON: %v", ce)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, apiErr(http.StatusBadRequest, "invalid key JSON: %v", err)
	}
	return req, nil
}

func (a *App) adminCreateKey(w http.ResponseWriter, r *http.Request) error {
	req, err := decodeCreateKey(w, r)
	if err != nil {
		return err
	}
	secret, err := auth.NewSecret()
	if err != nil {
		return apiErr(http.StatusInternalServerError, "generating a secret: %v", err)
	}
	k := &auth.Key{Name: req.Name, Hash: auth.HashSecret(secret), Policy: req.Policy}
	if err := k.Validate(); err != nil {
		return apiErr(http.StatusBadRequest, "%v", err)
	}
	if err := a.keys.Create(r.Context(), k); err != nil {
		if errors.Is(err, auth.ErrExists) {
			return apiErr(http.StatusConflict, "a key named %q already exists", req.Name)
		}
		if errors.Is(err, auth.ErrInvalid) {
			return apiErr(http.StatusBadRequest, "%v", err)
		}
		return apiErr(http.StatusServiceUnavailable, "creating key: %v", err)
	}
	a.logger.Info("gateway key created", zapName(k.Name))
	if !a.RequireKey && len(a.Keys) == 0 {
		a.logger.Warn("the gateway is open (no key declared, require_key off): clients may omit this key and bypass its limits; set require_key")
	}
	created, err := a.keys.Get(r.Context(), k.Name)
	if err != nil {
		created = k
	}
	return writeAdminJSON(w, http.StatusCreated, struct {
		keyView
		Secret string `json:"secret"`
	}{view(created), secret})
}

func (a *App) adminGetKey(w http.ResponseWriter, r *http.Request, name string) error {
	k, err := a.keys.Get(r.Context(), name)
	if errors.Is(err, auth.ErrNotFound) {
		return apiErr(http.StatusNotFound, "no key named %q", name)
	} else if err != nil {
		return apiErr(http.StatusServiceUnavailable, "reading key: %v", err)
	}
	v := view(k)
	window, _ := usage.Window(k.Policy.Period(), time.Now())
	rec, err := a.ledger.Get(r.Context(), k.Name, window)
	if err != nil {
		return apiErr(http.StatusServiceUnavailable, "reading usage: %v", err)
	}
	u := &usageView{Period: k.Policy.Period(), Window: window, Requests: rec.Requests, InputTokens: rec.InputTokens,
		OutputTokens: rec.OutputTokens, CachedTokens: rec.CachedTokens, SpendUSD: float64(rec.CostMicros) / 1e6,
		CacheHits: rec.CacheHits, CacheSavedTokens: rec.SavedTokens, CacheSavedUSD: float64(rec.SavedMicros) / 1e6}
	if k.Policy.Budget > 0 {
		spent, reserved, err := a.limiter.Spent(r.Context(), gateway.LimiterKey(gateway.ScopeKey, k.Name, gateway.LimitBudget), window)
		if err == nil {
			u.ReservedUSD = float64(reserved) / 1e6
			rem := math.Max(0, k.Policy.Budget-float64(spent+reserved)/1e6)
			u.RemainingUSD = &rem
		}
		u.BudgetUSD = k.Policy.Budget
	}
	v.Usage = u
	return writeAdminJSON(w, http.StatusOK, v)
}

func (a *App) adminDeleteKey(w http.ResponseWriter, r *http.Request, name string) error {
	err := a.keys.Delete(r.Context(), name)
	switch {
	case errors.Is(err, auth.ErrNotFound):
		return apiErr(http.StatusNotFound, "no key named %q", name)
	case errors.Is(err, auth.ErrStatic):
		return apiErr(http.StatusConflict, "key %q is declared in the configuration; remove it there", name)
	case err != nil:
		return apiErr(http.StatusServiceUnavailable, "revoking key: %v", err)
	}
	a.logger.Info("gateway key revoked", zapName(name))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *App) adminStatus(w http.ResponseWriter) error {
	type status struct {
		CoolingDown map[string]time.Time `json:"cooling_down"`
		Redis       string               `json:"redis"`
		// Settlements: the queue of settlements to Redis.
		Settlements *ratelimit.QueueStats `json:"settlements,omitempty"`
		// Targets: per target, its TTFT, in flight, breaker and quotas.
		Targets map[string]TargetStatus `json:"targets,omitempty"`
		// TokenEstimates: per estimated model, its learned ratio.
		TokenEstimates map[string]TokenEstimate `json:"token_estimates,omitempty"`
	}
	st := status{CoolingDown: map[string]time.Time{}, Redis: "not configured", Targets: a.targetStatus(), TokenEstimates: a.tokenEstimates()}
	for k, until := range a.health.CoolingDown(time.Now()) {
		st.CoolingDown[strings.ReplaceAll(k, "\x00", "/")] = until
	}
	if f, ok := a.limiter.(interface{ Up() bool }); ok {
		st.Redis = "up"
		if !f.Up() {
			st.Redis = "down"
		}
	}
	if a.settlements != nil {
		qs := a.settlements.Stats()
		st.Settlements = &qs
	}
	return writeAdminJSON(w, http.StatusOK, st)
}

// Interface guards
var (
	_ caddy.AdminRouter = (*adminAPI)(nil)
	_ caddy.Provisioner = (*adminAPI)(nil)
)
