package consumer

import (
	"context"
	"encoding/json"
	"maps"
	"math"
	"strconv"
	"strings"
	"sync"
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
	// platform: prices are loaded from fal; a model asked for without a
	// price is wanted (loaded at the next fetch, which poke hastens).
	platform bool
	mu       sync.Mutex
	wanted   map[string]bool
	poke     chan struct{}
}

func newPriceTable(configured map[string]config.Price) *priceTable {
	return &priceTable{configured: configured, wanted: map[string]bool{}, poke: make(chan struct{}, 1)}
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
		if p, ok := (*m)[model]; ok {
			return p, true
		}
	}
	t.want(model)
	return config.Price{}, false
}

// want marks model's price as one to load from fal.
func (t *priceTable) want(model string) {
	if !t.platform || model == "" {
		return
	}
	t.mu.Lock()
	fresh := !t.wanted[model]
	t.wanted[model] = true
	t.mu.Unlock()
	if fresh {
		select {
		case t.poke <- struct{}{}:
		default:
		}
	}
}

// wantedIDs lists the models whose prices are loaded from fal.
func (t *priceTable) wantedIDs() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return sortedKeys(t.wanted)
}

// setFetched replaces the fetched prices.
func (t *priceTable) setFetched(m map[string]config.Price) { t.fetched.Store(&m) }

// PriceSource is fal's Platform API pricing call; *falclient.Client
// implements it.
type PriceSource interface {
	Pricing(ctx context.Context, endpointIDs ...string) ([]falclient.Price, error)
}

var _ PriceSource = (*falclient.Client)(nil)

// WithPriceSource sets where prices come from when spend.prices_source is
// platform (without it, or with prices_source config, only spend.prices
// prices).
func WithPriceSource(s PriceSource) Option { return func(p *Pool) { p.priceSource = s } }

// configUnit maps fal's unit name onto spend.prices' units: image,
// megapixel, second (of output video or audio) or request. Case, plurals,
// "per", "_" and "-" do not matter ("Images", "megapixels", "video
// seconds", "per_request"). Anything else, GPU or compute time and tokens
// included, is unknown (ok false): falbridge cannot read that quantity
// from a result, so such a model's results carry no cost rather than a
// wrong one.
func configUnit(falUnit string) (string, bool) {
	u := strings.ToLower(strings.TrimSpace(falUnit))
	u = strings.NewReplacer("_", " ", "-", " ").Replace(u)
	u = strings.Join(strings.Fields(u), " ")
	u = strings.TrimPrefix(u, "per ")
	u = strings.TrimPrefix(u, "1 ")
	switch u {
	case "image", "images", "output image", "output images":
		return "image", true
	case "megapixel", "megapixels", "mp", "mpx", "output megapixel", "output megapixels":
		return "megapixel", true
	case "second", "seconds", "video second", "video seconds", "second of video", "seconds of video",
		"audio second", "audio seconds", "output second", "output seconds":
		return "second", true
	case "request", "requests", "call", "calls", "run", "runs", "generation", "generations":
		return "request", true
	}
	return "", false
}

// pricesFetchPause is the least time between two fetches started by newly
// wanted models.
const pricesFetchPause = time.Second

// startPricing loads prices from fal's Platform API, when configured, at
// once and then every spend.prices_refresh (and soon after a model without
// a price turns up). Models asked for are those with a model budget or a
// pending_model_limits entry, and every model a job of ended or was
// admitted with no price.
func (p *Pool) startPricing() {
	if !p.prices.platform || p.priceSource == nil {
		return
	}
	for _, b := range p.budgets {
		if b.Scope == "model" {
			p.prices.want(b.Name)
		}
	}
	for m := range p.cfg.Limits.PendingModelLimits {
		p.prices.want(m)
	}
	p.workers.Add(1)
	go p.pricingLoop()
}

func (p *Pool) pricingLoop() {
	defer p.workers.Done()
	refresh := time.NewTicker(p.cfg.Spend.PricesRefresh)
	defer refresh.Stop()
	var last time.Time
	fetched := map[string]bool{}
	for {
		ids := p.prices.wantedIDs()
		var todo []string
		switch {
		case len(fetched) == 0 || time.Since(last) >= p.cfg.Spend.PricesRefresh:
			todo = ids // everything: at start and on refresh
		default:
			for _, id := range ids {
				if !fetched[id] {
					todo = append(todo, id)
				}
			}
		}
		if len(todo) > 0 {
			p.fetchPrices(todo)
			for _, id := range todo {
				fetched[id] = true
			}
			last = time.Now()
		}
		select {
		case <-p.quit:
			return
		case <-refresh.C:
			last = time.Time{}
			clear(fetched)
		case <-p.prices.poke:
			// A model without a price: fetch soon, but not more often
			// than every pricesFetchPause.
			fresh := false
			for _, id := range p.prices.wantedIDs() {
				fresh = fresh || !fetched[id]
			}
			if !fresh {
				continue
			}
			select {
			case <-time.After(pricesFetchPause - time.Since(last)):
			case <-p.quit:
				return
			}
		}
	}
}

// fetchPrices loads the prices of ids from fal and puts them in the table;
// a failure leaves the table as it was.
func (p *Pool) fetchPrices(ids []string) {
	ctx, cancel := context.WithTimeout(p.quitCtx, time.Minute)
	defer cancel()
	prices, err := p.priceSource.Pricing(ctx, ids...)
	if err != nil {
		p.log.Warn("loading prices from fal's Platform API failed; keeping the prices held", "models", len(ids), "err", err)
		return
	}
	next := map[string]config.Price{}
	if cur := p.prices.fetched.Load(); cur != nil {
		maps.Copy(next, *cur)
	}
	for _, id := range ids {
		delete(next, id) // asked for: fal's answer decides
	}
	for _, fp := range prices {
		unit, ok := configUnit(fp.Unit)
		switch {
		case !ok:
			p.logPriceOnce(fp, "fal's price has a unit falbridge cannot measure: its results carry no cost")
		case !strings.EqualFold(fp.Currency, p.cfg.Spend.Currency) && fp.Currency != "":
			p.logPriceOnce(fp, "fal's price is in another currency than spend.currency: its results carry no cost")
		default:
			next[fp.EndpointID] = config.Price{Amount: fp.UnitPrice, Unit: unit}
		}
	}
	p.prices.setFetched(next)
	p.log.Info("prices loaded from fal's Platform API", "asked", len(ids), "priced", len(prices))
}

// logPriceOnce logs a price that is not used, once per model, unit and
// currency.
func (p *Pool) logPriceOnce(fp falclient.Price, msg string) {
	key := fp.EndpointID + "|" + fp.Unit + "|" + fp.Currency
	if _, seen := p.pricesLogged.LoadOrStore(key, true); !seen {
		p.log.Warn(msg, "model_id", fp.EndpointID, "unit", fp.Unit, "currency", fp.Currency, "unit_price", fp.UnitPrice)
	}
}
