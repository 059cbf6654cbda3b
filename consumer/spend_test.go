package consumer

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/falclient"
)

func TestQuantityFromOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, unit, output, input string
		want                      float64
	}{
		{"images", "image", `{"images":[{"url":"a"},{"url":"b"}]}`, `{}`, 2},
		{"no images", "image", `{"text":"x"}`, `{}`, 0},
		{"megapixels", "megapixel", `{"images":[{"width":1024,"height":768},{"width":1000,"height":1000}]}`, `{}`, 1.7864},
		{"megapixels without size", "megapixel", `{"images":[{"url":"a"}]}`, `{}`, 1},
		{"video duration in output", "second", `{"video":{"url":"v","duration":5.5}}`, `{"duration":"10"}`, 5.5},
		{"video duration from input string", "second", `{"video":{"url":"v"}}`, `{"duration":"10"}`, 10},
		{"video duration from input number", "second", `{"video":{"url":"v"}}`, `{"duration":5}`, 5},
		{"video duration unknown", "second", `{"video":{"url":"v"}}`, `{}`, 1},
		{"request", "request", `{"anything":1}`, `{}`, 1},
		{"garbage output", "image", `not json`, `{}`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.InDelta(t, tt.want, quantity(tt.unit, json.RawMessage(tt.output), json.RawMessage(tt.input)), 1e-9)
		})
	}
}

// quantity reads fal's output: never a panic, never a negative amount.
func FuzzQuantity(f *testing.F) {
	f.Add("megapixel", `{"images":[{"width":1024,"height":768}]}`, `{}`)
	f.Add("second", `{"video":{"duration":"x"}}`, `{"duration":[1]}`)
	f.Fuzz(func(t *testing.T, unit, output, input string) {
		if q := quantity(unit, json.RawMessage(output), json.RawMessage(input)); q < 0 {
			t.Fatalf("negative quantity %v", q)
		}
	})
}

// fal's unit names onto spend.prices' units; anything falbridge cannot
// measure from a result is unknown.
func TestConfigUnit(t *testing.T) {
	t.Parallel()
	tests := []struct{ fal, want string }{
		{"image", "image"}, {"Images", "image"}, {"per image", "image"}, {"output_images", "image"},
		{"megapixels", "megapixel"}, {"MP", "megapixel"}, {"megapixel", "megapixel"},
		{"video seconds", "second"}, {"seconds", "second"}, {"video_second", "second"}, {"per-second", "second"},
		{"request", "request"}, {"per_request", "request"}, {"Requests", "request"},
		{"compute seconds", ""}, {"gpu seconds", ""}, {"1M tokens", ""}, {"", ""}, {"minutes", ""},
	}
	for _, tt := range tests {
		got, ok := configUnit(tt.fal)
		require.Equal(t, tt.want, got, tt.fal)
		require.Equal(t, tt.want != "", ok, tt.fal)
	}
}

// countingPrices answers every id with one price and counts the calls.
type countingPrices struct {
	mu    sync.Mutex
	calls [][]string
}

func (c *countingPrices) Pricing(_ context.Context, ids ...string) ([]falclient.Price, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, ids)
	var out []falclient.Price
	for _, id := range ids {
		out = append(out, falclient.Price{EndpointID: id, UnitPrice: float64(len(c.calls)), Unit: "image", Currency: "usd"},
			falclient.Price{EndpointID: id + "/gpu", UnitPrice: 1, Unit: "GPU seconds", Currency: "USD"})
	}
	return out, nil
}

func (c *countingPrices) n() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.calls)
}

// The pricing loop loads the wanted models at start and again every
// spend.prices_refresh; a price in a unit falbridge cannot measure is
// left out (and logged once).
func TestPricingLoopRefreshes(t *testing.T) {
	t.Parallel()
	src := &countingPrices{}
	quitCtx, end := context.WithCancel(context.Background())
	p := &Pool{cfg: config.Default(), priceSource: src, prices: newPriceTable(nil), quitCtx: quitCtx, quit: quitCtx.Done(),
		log: slog.New(slog.DiscardHandler)}
	p.cfg.Spend.PricesSource = config.PricesFromPlatform
	p.cfg.Spend.PricesRefresh = 50 * time.Millisecond
	p.cfg.Limits.PendingModelLimits = map[string]int{"fal-ai/flux/dev": 2}
	p.prices.platform = true
	p.startPricing()
	defer func() { end(); p.workers.Wait() }()
	require.Eventually(t, func() bool { return src.n() >= 3 }, 5*time.Second, 5*time.Millisecond, "refreshed")
	price, ok := p.prices.get("fal-ai/flux/dev")
	require.True(t, ok)
	require.Equal(t, "image", price.Unit)
	require.Positive(t, price.Amount)
	_, ok = p.prices.get("fal-ai/flux/dev/gpu")
	require.False(t, ok, "GPU seconds: no price")
	logged := 0
	p.pricesLogged.Range(func(_, _ any) bool { logged++; return true })
	require.Equal(t, 1, logged, "logged once however many refreshes")
}
