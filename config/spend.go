package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Spend prices jobs and bounds what they may cost (keys spend.*). Costs are
// estimates from a price table the operator keeps, not fal's invoice.
type Spend struct {
	// Currency names the unit of every amount, for events and metrics.
	// Defaults to "USD".
	Currency string `koanf:"currency"`
	// Prices lists "model=amount/unit" entries, unit one of image,
	// megapixel, second (of video) or request, e.g.
	// "fal-ai/flux/dev=0.025/megapixel". A result of a priced model carries
	// its estimated cost. Defaults to none.
	Prices []string `koanf:"prices"`
	// Budgets lists "scope=amount/window" entries: scope global,
	// model:<model id> or tenant:<tenant>; window hour or day (UTC), e.g.
	// "tenant:team-a=20/day". A job is admitted only while its scope's
	// spend in the window, plus one unit of every pending job's price,
	// plus one unit of its own, stays within the budget. Needs
	// limits.max_pending (budgets live in the admission record). Defaults
	// to none.
	Budgets []string `koanf:"budgets"`
	// BudgetPolicy is what happens to a job over a budget: "wait" (for the
	// next window, as at a cap) or "fail" (error budget_exceeded). Defaults
	// to "wait".
	BudgetPolicy string `koanf:"budget_policy"`
	// PricesSource is where prices come from: "config" (Prices only) or
	// "platform" (fal's Platform API at fal.platform_url, loaded at start
	// and every PricesRefresh; an entry of Prices overrides fal's price of
	// its model). Defaults to [PricesFromConfig].
	PricesSource string `koanf:"prices_source"`
	// PricesRefresh is how often the Platform API's prices are reloaded.
	// Defaults to [PricesRefreshDefault] (1h).
	PricesRefresh time.Duration `koanf:"prices_refresh"`
}

// Sources of prices (spend.prices_source).
const (
	PricesFromConfig   = "config"
	PricesFromPlatform = "platform"
)

// PricesRefreshDefault is spend.prices_refresh.
const PricesRefreshDefault = time.Hour

// validateSource checks spend.prices_source and spend.prices_refresh.
func (s Spend) validateSource(v *validator) {
	switch s.PricesSource {
	case PricesFromConfig, PricesFromPlatform:
	default:
		v.add("spend.prices_source", "must be %q or %q (got %q)", PricesFromConfig, PricesFromPlatform, s.PricesSource)
	}
	if s.PricesRefresh < time.Minute {
		v.add("spend.prices_refresh", "must be ≥ 1m (got %s)", formatDuration(s.PricesRefresh))
	}
}

// Budget policies.
const (
	BudgetWait = "wait"
	BudgetFail = "fail"
)

// Price is one entry of spend.prices.
type Price struct {
	Amount float64 // per unit, in spend.currency
	Unit   string  // image, megapixel, second or request
}

// Budget is one entry of spend.budgets.
type Budget struct {
	Scope  string // "global", "model" or "tenant"
	Name   string // the model id or tenant ("" for global)
	Amount float64
	Window string // "hour" or "day"
}

// Key names the budget's scope, e.g. "tenant:team-a".
func (b Budget) Key() string {
	if b.Scope == "global" {
		return "global"
	}
	return b.Scope + ":" + b.Name
}

// WindowStart returns the start of the budget's window that holds t (UTC).
func (b Budget) WindowStart(t time.Time) time.Time {
	if b.Window == "hour" {
		return t.UTC().Truncate(time.Hour)
	}
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// PriceTable parses spend.prices.
func (s Spend) PriceTable() (map[string]Price, error) {
	out := map[string]Price{}
	for _, e := range s.Prices {
		model, rest, ok := strings.Cut(e, "=")
		amount, unit, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 || strings.TrimSpace(model) == "" {
			return nil, fmt.Errorf("%q: want model=amount/unit", e)
		}
		a, err := parseAmount(amount)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", e, err)
		}
		switch unit {
		case "image", "megapixel", "second", "request":
		default:
			return nil, fmt.Errorf("%q: unit must be image, megapixel, second or request (got %q)", e, unit)
		}
		if _, dup := out[model]; dup {
			return nil, fmt.Errorf("%q: model %s priced twice", e, model)
		}
		out[model] = Price{Amount: a, Unit: unit}
	}
	return out, nil
}

// BudgetList parses spend.budgets.
func (s Spend) BudgetList() ([]Budget, error) {
	var out []Budget
	seen := map[string]bool{}
	for _, e := range s.Budgets {
		scope, rest, ok := strings.Cut(e, "=")
		amount, window, ok2 := strings.Cut(rest, "/")
		if !ok || !ok2 {
			return nil, fmt.Errorf("%q: want scope=amount/window", e)
		}
		b := Budget{Scope: scope, Window: window}
		if kind, name, found := strings.Cut(scope, ":"); found {
			b.Scope, b.Name = kind, name
		}
		switch {
		case b.Scope == "global" && b.Name == "":
		case (b.Scope == "model" || b.Scope == "tenant") && b.Name != "":
		default:
			return nil, fmt.Errorf("%q: scope must be global, model:<model id> or tenant:<tenant>", e)
		}
		a, err := parseAmount(amount)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", e, err)
		}
		b.Amount = a
		if window != "hour" && window != "day" {
			return nil, fmt.Errorf("%q: window must be hour or day (got %q)", e, window)
		}
		if seen[b.Key()] {
			return nil, fmt.Errorf("%q: scope %s has two budgets", e, b.Key())
		}
		seen[b.Key()] = true
		out = append(out, b)
	}
	return out, nil
}

func parseAmount(s string) (float64, error) {
	a, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || a < 0 || a != a {
		return 0, fmt.Errorf("amount must be a number ≥ 0 (got %q)", s)
	}
	return a, nil
}
