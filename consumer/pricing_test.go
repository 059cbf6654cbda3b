package consumer_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// fakePricing answers Pricing from a fixed list, recording what it was
// asked.
type fakePricing struct {
	mu     sync.Mutex
	asked  [][]string
	prices []falclient.Price
}

func (f *fakePricing) Pricing(_ context.Context, ids ...string) ([]falclient.Price, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, ids)
	var out []falclient.Price
	for _, p := range f.prices {
		for _, id := range ids {
			if p.EndpointID == id {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// spend.prices_source platform: a model's price is loaded from fal when its
// first job is admitted; spend.prices overrides fal's price; a price whose
// unit falbridge cannot measure, or in another currency, gives no cost
// (never a wrong one).
func TestPricesFromPlatform(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.cfg = func(c *config.Config) {
			c.Limits.MaxPending = 8
			c.Spend.PricesSource = config.PricesFromPlatform
			c.Spend.Prices = []string{"fal-ai/flux/dev=0.05/image"}
		}
	})
	src := &fakePricing{prices: []falclient.Price{
		{EndpointID: "fal-ai/flux/schnell", UnitPrice: 0.003, Unit: "images", Currency: "USD"},
		{EndpointID: "fal-ai/flux/dev", UnitPrice: 0.025, Unit: "megapixels", Currency: "USD"},
		{EndpointID: "fal-ai/fast-sdxl", UnitPrice: 0.01, Unit: "compute seconds", Currency: "USD"},
		{EndpointID: "fal-ai/flux-pro/v1.1", UnitPrice: 0.04, Unit: "image", Currency: "EUR"},
	}}
	p, err := consumer.New(b.nc, b.fal, b.cfg, consumer.WithVerifier(b.fal.Verifier()), consumer.WithLogger(testLogger(t)), consumer.WithPriceSource(src))
	require.NoError(t, err)
	b.start(p)
	models := []string{"fal-ai/flux/schnell", "fal-ai/flux/dev", "fal-ai/fast-sdxl", "fal-ai/flux-pro/v1.1"}
	for i, m := range models {
		b.publish("p", fmt.Sprintf(`{"id":"price-%d","model_id":%q,"input":{"prompt":"p","num_images":2,"_sim":{"latency_ms":2000}}}`, i, m))
	}
	want := []*publisher.Cost{
		{Amount: 0.006, Currency: "USD", Unit: "image", Quantity: 2, Estimated: true},
		{Amount: 0.1, Currency: "USD", Unit: "image", Quantity: 2, Estimated: true}, // spend.prices wins
		nil, // compute seconds: not measurable
		nil, // EUR, not spend.currency
	}
	for i := range models {
		res, ev := b.terminal(fmt.Sprintf("price-%d", i))
		require.Nil(t, ev)
		require.Equal(t, want[i], res.Cost, models[i])
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	require.NotEmpty(t, src.asked)
	for _, ids := range src.asked {
		require.NotEmpty(t, ids, "never asks for every price fal has")
	}
}

// With prices_source config (the default) fal is never asked.
func TestPricesFromConfigOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.cfg = func(c *config.Config) { c.Limits.MaxPending = 8 }
	})
	src := &fakePricing{}
	p, err := consumer.New(b.nc, b.fal, b.cfg, consumer.WithVerifier(b.fal.Verifier()), consumer.WithLogger(testLogger(t)), consumer.WithPriceSource(src))
	require.NoError(t, err)
	b.start(p)
	b.publish("p", `{"id":"cfg-only","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	res, ev := b.terminal("cfg-only")
	require.Nil(t, ev)
	require.Nil(t, res.Cost)
	time.Sleep(100 * time.Millisecond)
	src.mu.Lock()
	defer src.mu.Unlock()
	require.Empty(t, src.asked)
}
