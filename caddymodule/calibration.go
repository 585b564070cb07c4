package caddymodule

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/route"
	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/tokens"
)

// calibrationPool keeps the token estimate's learned ratios across config
// reloads (tokens.Calibrations).
var calibrationPool = caddy.NewUsagePool()

type calibrationValue struct{ *tokens.Calibrations }

func (calibrationValue) Destruct() error { return nil }

const calibrationKey = "ai_gateway.calibration"

// calibrationState is the app's share of the calibration.
type calibrationState struct {
	calibrations   *tokens.Calibrations // shared across reloads
	calibration    *tokens.Calibration  // this configuration's names
	calibrationRef bool                 // holds a calibrationPool reference
}

// calibrationNames are the routing table's names whose prompts are
// estimated: each target's upstream model, or the route's pattern when a
// target passes the requested name through.
func calibrationNames(tbl *route.Table) []string {
	var names []string
	seen := map[string]bool{}
	tbl.Each(func(r *route.Route) {
		for _, t := range r.Targets {
			n := t.Model
			if n == "" {
				n = r.Pattern
			}
			if !seen[n] && tokens.Estimated(n) {
				seen[n] = true
				names = append(names, n)
			}
		}
	})
	return names
}

// provisionCalibration takes the shared ratios and builds the routing
// table's calibration, with its gauge.
func (a *App) provisionCalibration(ctx caddy.Context) error {
	v, _, err := calibrationPool.LoadOrNew(calibrationKey, func() (caddy.Destructor, error) {
		return calibrationValue{new(tokens.Calibrations)}, nil
	})
	if err != nil {
		return err
	}
	a.calibrations, a.calibrationRef = v.(calibrationValue).Calibrations, true
	a.calibration = a.calibrations.Table(calibrationNames(a.routes))
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		var c prometheus.Collector = &ratioCollector{cs: a.calibrations}
		if err := register(reg, &c); err != nil {
			return err
		}
	}
	return nil
}

func (a *App) cleanupCalibration() {
	if a.calibrationRef {
		a.calibrationRef = false
		_, _ = calibrationPool.Delete(calibrationKey)
	}
}

// TokenEstimate is a model's learned token estimate ratio (admin status).
type TokenEstimate struct {
	// Ratio is what the estimate is multiplied by: the upstream's reported
	// prompt tokens over the estimate, averaged (1 before any sample).
	Ratio float64 `json:"ratio"`
	// Samples is how many answered requests it learned from.
	Samples int64 `json:"samples"`
}

// tokenEstimates is the status's view of the calibration.
func (a *App) tokenEstimates() map[string]TokenEstimate {
	out := map[string]TokenEstimate{}
	a.calibration.Each(func(name string, r *tokens.Ratio) {
		out[name] = TokenEstimate{Ratio: r.Value(), Samples: r.Samples()}
	})
	return out
}

// ratioCollector exports caddy_ai_gateway_token_estimate_ratio{model}, the
// ratios of the current configuration's names (from the routing table).
type ratioCollector struct{ cs *tokens.Calibrations }

var ratioDesc = prometheus.NewDesc(ns+"_"+sub+"_token_estimate_ratio",
	"What the token estimate of a non-OpenAI model is multiplied by, learned from the upstream's reported prompt tokens (1 before any answer).",
	[]string{"model"}, nil)

func (c *ratioCollector) Describe(ch chan<- *prometheus.Desc) { ch <- ratioDesc }

func (c *ratioCollector) Collect(ch chan<- prometheus.Metric) {
	c.cs.Each(func(name string, r *tokens.Ratio) {
		ch <- prometheus.MustNewConstMetric(ratioDesc, prometheus.GaugeValue, r.Value(), name)
	})
}
