package auth

import (
	"fmt"
	"math"

	"github.com/caddy-ai-gateway/caddy-ai-gateway/internal/glob"
)

// Budget periods of a [Policy].
const (
	PeriodDay   = "day"
	PeriodMonth = "month"
)

// Policy is what a gateway key may do. Zero values mean "no limit".
type Policy struct {
	// Models lists the model names the key may request: exact names or
	// globs with the semantics of glob.Match ('*' any run, '?' one byte).
	// Empty allows every model.
	Models []string `json:"models,omitempty"`
	// RPM and TPM are requests and tokens per minute.
	RPM int64 `json:"rpm,omitempty"`
	TPM int64 `json:"tpm,omitempty"`
	// Burst is how many requests may arrive back to back within the RPM
	// limit (GCRA burst tolerance). 0 means RPM: a full minute's worth.
	Burst int64 `json:"burst,omitempty"`
	// Concurrency bounds the requests in flight.
	Concurrency int64 `json:"concurrency,omitempty"`
	// Budget is the spend allowed per BudgetPeriod, in USD.
	Budget float64 `json:"budget,omitempty"`
	// BudgetPeriod is PeriodDay or PeriodMonth ("" means month).
	BudgetPeriod string `json:"budget_period,omitempty"`
	// Cache is the response cache namespace of the key.
	Cache string `json:"cache,omitempty"`
	// Metadata is free-form data attached to the key (e.g. team, owner).
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Validate checks that numbers are non-negative (and the budget finite), the
// budget period is known and every model pattern is a usable glob.
func (p *Policy) Validate() error {
	switch {
	case p.RPM < 0, p.TPM < 0, p.Concurrency < 0, p.Burst < 0:
		return fmt.Errorf("%w: negative rpm, tpm or concurrency", ErrInvalid)
	case p.Budget < 0 || p.Budget > 1e9 || math.IsNaN(p.Budget) || math.IsInf(p.Budget, 0):
		return fmt.Errorf("%w: budget %v must be a finite number from 0 to 1e9", ErrInvalid, p.Budget)
	case p.BudgetPeriod != "" && p.BudgetPeriod != PeriodDay && p.BudgetPeriod != PeriodMonth:
		return fmt.Errorf("%w: budget_period %q must be %q or %q", ErrInvalid, p.BudgetPeriod, PeriodDay, PeriodMonth)
	}
	for _, m := range p.Models {
		if m == "" {
			return fmt.Errorf("%w: empty model pattern", ErrInvalid)
		}
		for i := 0; i < len(m); i++ {
			if c := m[i]; c <= ' ' || c == 0x7f {
				return fmt.Errorf("%w: model pattern %q contains whitespace or control characters", ErrInvalid, m)
			}
		}
	}
	return nil
}

// Period returns the budget period with the default applied.
func (p *Policy) Period() string {
	if p.BudgetPeriod == "" {
		return PeriodMonth
	}
	return p.BudgetPeriod
}

// AllowsModel reports whether the key may request model.
func (p *Policy) AllowsModel(model string) bool {
	if len(p.Models) == 0 {
		return true
	}
	for _, pat := range p.Models {
		if glob.Match(pat, model) {
			return true
		}
	}
	return false
}

// clone returns a deep copy of p.
func (p Policy) clone() Policy {
	p.Models = append([]string(nil), p.Models...)
	if p.Metadata != nil {
		m := make(map[string]string, len(p.Metadata))
		for k, v := range p.Metadata {
			m[k] = v
		}
		p.Metadata = m
	}
	return p
}
