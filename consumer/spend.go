package consumer

import (
	"encoding/json"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// Spend: a result of a priced model (spend.prices) carries its estimated
// cost, counted in falbridge_spend_total; with budgets (spend.budgets) the
// admission record also keeps the spend of each budget's current window,
// written by the same compare-and-set that gives the job's slot back, so
// budgets cost no extra write and are shared by every replica.

// spendOutput is what a cost is read from in fal's output.
type spendOutput struct {
	Images []struct {
		Width  float64 `json:"width"`
		Height float64 `json:"height"`
	} `json:"images"`
	Video *struct {
		Duration json.Number `json:"duration"`
	} `json:"video"`
	Duration json.Number `json:"duration"`
}

// quantity returns how many of unit a run used, from its output and, for
// a video whose output gives no duration, its input's "duration".
func quantity(unit string, output, input json.RawMessage) float64 {
	var out spendOutput
	_ = json.Unmarshal(output, &out)
	switch unit {
	case "image":
		return float64(len(out.Images))
	case "megapixel":
		var mp float64
		for _, im := range out.Images {
			if im.Width > 0 && im.Height > 0 {
				mp += im.Width * im.Height / 1e6
			} else {
				mp++ // no size given: count one megapixel
			}
		}
		return math.Round(mp*1e4) / 1e4
	case "second":
		for _, n := range []json.Number{videoDuration(out), out.Duration} {
			if f, err := n.Float64(); err == nil && f > 0 {
				return f
			}
		}
		var in struct {
			Duration json.RawMessage `json:"duration"`
		}
		_ = json.Unmarshal(input, &in)
		if f := numberOrString(in.Duration); f > 0 {
			return f
		}
		return 1 // unknown length: one second
	default: // request
		return 1
	}
}

func videoDuration(out spendOutput) json.Number {
	if out.Video == nil {
		return ""
	}
	return out.Video.Duration
}

// numberOrString reads 5 or "5".
func numberOrString(raw json.RawMessage) float64 {
	var f float64
	if json.Unmarshal(raw, &f) == nil {
		return f
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return f
		}
	}
	return 0
}

// costOf prices a result of j, or returns nil when its model has no price.
func (p *Pool) costOf(j *job, output json.RawMessage) *publisher.Cost {
	price, ok := p.prices.get(j.ModelID)
	if !ok {
		return nil
	}
	var input json.RawMessage
	if t, err := publisher.DecodeTrigger(j.Trigger); err == nil {
		input = t.Input
	}
	q := quantity(price.Unit, output, input)
	return &publisher.Cost{
		Amount:    math.Round(q*price.Amount*1e6) / 1e6,
		Currency:  p.cfg.Spend.Currency,
		Unit:      price.Unit,
		Quantity:  q,
		Estimated: true,
	}
}

// spendKey names the spend of budget b in the window holding t.
func spendKey(b config.Budget, t time.Time) string {
	return b.Key() + "|" + b.WindowStart(t).Format(time.RFC3339)
}

// applies reports whether budget b covers a job of model and tenant.
func applies(b config.Budget, model, tenant string) bool {
	switch b.Scope {
	case "model":
		return b.Name == model
	case "tenant":
		return b.Name == tenant
	}
	return true
}

// falPriority is the queue priority a trigger's priority asks of fal: low
// is fal's low priority; high and normal are fal's normal one (fal's header
// can only lower a request's priority: high orders admission in the bridge).
func falPriority(p string) falclient.Priority {
	if p == publisher.PriorityHigh {
		return falclient.PriorityNormal
	}
	return falclient.Priority(p)
}

// priceTable is the price of each model: spend.prices, over the prices
// loaded from fal's Platform API (spend.prices_source platform). Safe for
// concurrent use.
type priceTable struct {
	configured map[string]config.Price
	fetched    atomic.Pointer[map[string]config.Price]
}

func newPriceTable(configured map[string]config.Price) *priceTable {
	return &priceTable{configured: configured}
}

// get returns model's price; configured prices win over fetched ones.
func (t *priceTable) get(model string) (config.Price, bool) {
	if t == nil {
		return config.Price{}, false
	}
	if p, ok := t.configured[model]; ok {
		return p, true
	}
	if m := t.fetched.Load(); m != nil {
		p, ok := (*m)[model]
		return p, ok
	}
	return config.Price{}, false
}

// setFetched replaces the fetched prices.
func (t *priceTable) setFetched(m map[string]config.Price) { t.fetched.Store(&m) }
