package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSpendParsing(t *testing.T) {
	t.Parallel()
	s := Spend{
		Prices:  []string{"fal-ai/flux/dev=0.025/megapixel", "fal-ai/kling-video/v1.6/standard/text-to-video=0.045/second", "fal-ai/x=0.5/request"},
		Budgets: []string{"global=100/day", "model:fal-ai/flux/dev=10/hour", "tenant:team-a=2.5/day"},
	}
	prices, err := s.PriceTable()
	require.NoError(t, err)
	require.Equal(t, Price{Amount: 0.025, Unit: "megapixel"}, prices["fal-ai/flux/dev"])
	require.Equal(t, Price{Amount: 0.045, Unit: "second"}, prices["fal-ai/kling-video/v1.6/standard/text-to-video"])
	budgets, err := s.BudgetList()
	require.NoError(t, err)
	require.Equal(t, []Budget{
		{Scope: "global", Amount: 100, Window: "day"},
		{Scope: "model", Name: "fal-ai/flux/dev", Amount: 10, Window: "hour"},
		{Scope: "tenant", Name: "team-a", Amount: 2.5, Window: "day"},
	}, budgets)
	require.Equal(t, "tenant:team-a", budgets[2].Key())
	at := time.Date(2026, 12, 2, 7, 45, 10, 0, time.UTC)
	require.Equal(t, time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC), budgets[0].WindowStart(at))
	require.Equal(t, time.Date(2026, 12, 2, 7, 0, 0, 0, time.UTC), budgets[1].WindowStart(at))

	_, err = Spend{Budgets: []string{"global=1/day", "global=2/hour"}}.BudgetList()
	require.ErrorContains(t, err, "two budgets")
	_, err = Spend{Prices: []string{"m=1/image", "m=2/image"}}.PriceTable()
	require.ErrorContains(t, err, "priced twice")
}

func TestPricesSourceValidation(t *testing.T) {
	t.Parallel()
	c := Default()
	require.Equal(t, PricesFromConfig, c.Spend.PricesSource)
	require.Equal(t, time.Hour, c.Spend.PricesRefresh)
	require.Equal(t, "https://api.fal.ai/v1", c.Fal.PlatformURL)
	c.Spend.PricesSource = PricesFromPlatform
	require.NoError(t, c.Validate())
	c.Spend.PricesSource = "fal"
	c.Spend.PricesRefresh = time.Second
	c.Fal.PlatformURL = "ftp://x"
	err := c.Validate()
	require.ErrorContains(t, err, "spend.prices_source")
	require.ErrorContains(t, err, "spend.prices_refresh")
	require.ErrorContains(t, err, "fal.platform_url")
}
