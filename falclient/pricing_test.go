package falclient_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/falclient"
)

// Pricing asks fal's Platform API for the named endpoints, with the key,
// and follows the cursor while has_more.
func TestPricing(t *testing.T) {
	t.Parallel()
	f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if r.URL.Path != "/v1/models/pricing" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Query().Get("cursor") {
		case "":
			fmt.Fprint(w, `{"prices":[{"endpoint_id":"fal-ai/flux/dev","unit_price":0.025,"unit":"megapixels","currency":"USD"}],"next_cursor":"p2","has_more":true}`)
		case "p2":
			fmt.Fprint(w, `{"prices":[{"endpoint_id":"fal-ai/kling-video/v1/standard/text-to-video","unit_price":0.045,"unit":"video seconds","currency":"USD"},`+
				`{"endpoint_id":"","unit_price":1},{"endpoint_id":"x/neg","unit_price":-1},{"endpoint_id":"x/none"},"odd"],"next_cursor":null,"has_more":false}`)
		}
	})
	c := newTestClient(t, f.URL, falclient.WithPlatformURL(f.URL+"/v1/"))
	prices, err := c.Pricing(t.Context(), "fal-ai/flux/dev", "fal-ai/kling-video/v1/standard/text-to-video")
	require.NoError(t, err)
	require.Equal(t, []falclient.Price{
		{EndpointID: "fal-ai/flux/dev", UnitPrice: 0.025, Unit: "megapixels", Currency: "USD"},
		{EndpointID: "fal-ai/kling-video/v1/standard/text-to-video", UnitPrice: 0.045, Unit: "video seconds", Currency: "USD"},
	}, prices, "odd entries are left out")
	reqs := f.requests()
	require.Len(t, reqs, 2)
	for i, r := range reqs {
		q, err := url.ParseQuery(r.RawQuery)
		require.NoError(t, err)
		require.Equal(t, []string{"fal-ai/flux/dev", "fal-ai/kling-video/v1/standard/text-to-video"}, q["endpoint_id"], "request %d", i)
		require.Equal(t, "Key "+string(testKey), r.Header.Get("Authorization"))
		require.Equal(t, http.MethodGet, r.Method)
	}
	require.Equal(t, "p2", mustQuery(t, reqs[1].RawQuery).Get("cursor"))
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	q, err := url.ParseQuery(raw)
	require.NoError(t, err)
	return q
}

// Many ids go 50 to a request; none asks for every price.
func TestPricingBatches(t *testing.T) {
	t.Parallel()
	f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) {
		fmt.Fprint(w, `{"prices":[],"next_cursor":null,"has_more":false}`)
	})
	c := newTestClient(t, f.URL, falclient.WithPlatformURL(f.URL))
	ids := make([]string, 120)
	for i := range ids {
		ids[i] = fmt.Sprintf("fal-ai/m%d", i)
	}
	prices, err := c.Pricing(t.Context(), ids...)
	require.NoError(t, err)
	require.Empty(t, prices)
	reqs := f.requests()
	require.Len(t, reqs, 3)
	require.Len(t, mustQuery(t, reqs[0].RawQuery)["endpoint_id"], 50)
	require.Len(t, mustQuery(t, reqs[2].RawQuery)["endpoint_id"], 20)
	require.Equal(t, "/models/pricing", reqs[0].Path)

	_, err = c.Pricing(t.Context())
	require.NoError(t, err)
	require.Empty(t, f.requests()[3].RawQuery)
}

// 5xx and 429 are retried; 4xx is fal's answer; a 2xx that does not read
// is final; a cursor that loops is an error, not a hang.
func TestPricingFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler func(w http.ResponseWriter, n int)
		check   func(t *testing.T, err error, calls int64)
	}{
		{"503 then ok", func(w http.ResponseWriter, n int) {
			if n == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			fmt.Fprint(w, `{"prices":[],"has_more":false}`)
		}, func(t *testing.T, err error, calls int64) {
			require.NoError(t, err)
			require.EqualValues(t, 2, calls)
		}},
		{"401", func(w http.ResponseWriter, n int) {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"detail":"bad key"}`)
		}, func(t *testing.T, err error, calls int64) {
			require.ErrorIs(t, err, falclient.ErrUnauthorized)
			require.EqualValues(t, 1, calls)
		}},
		{"not json", func(w http.ResponseWriter, n int) {
			fmt.Fprint(w, `<html>`)
		}, func(t *testing.T, err error, calls int64) {
			require.ErrorIs(t, err, falclient.ErrBadPricing)
			require.EqualValues(t, 1, calls)
		}},
		{"cursor loop", func(w http.ResponseWriter, n int) {
			fmt.Fprint(w, `{"prices":[],"next_cursor":"same","has_more":true}`)
		}, func(t *testing.T, err error, calls int64) {
			require.ErrorContains(t, err, "came back twice")
			require.EqualValues(t, 2, calls)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { tt.handler(w, n) })
			c := newTestClient(t, f.URL, falclient.WithPlatformURL(f.URL))
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, err := c.Pricing(ctx, "fal-ai/flux/dev")
			tt.check(t, err, f.calls.Load())
		})
	}
}

func TestWithPlatformURLInvalid(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"", "ftp://x", "https://x/v1?q=1", "https://user@x"} {
		_, err := falclient.New(falclient.WithPlatformURL(u))
		require.ErrorIs(t, err, falclient.ErrInvalidOption, u)
		require.ErrorContains(t, err, "WithPlatformURL")
	}
}

// DecodePricing reads outside input: never a panic, never a negative,
// infinite or empty-id price, an error that wraps ErrBadPricing.
func FuzzDecodePricing(f *testing.F) {
	f.Add([]byte(`{"prices":[{"endpoint_id":"fal-ai/flux/dev","unit_price":0.025,"unit":"image","currency":"USD"}],"next_cursor":null,"has_more":false}`))
	f.Add([]byte(`{"prices":[{"endpoint_id":"a","unit_price":1e309}],"next_cursor":"c","has_more":true}`))
	f.Add([]byte(`{"prices":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		page, err := falclient.DecodePricing(body)
		if err != nil {
			if !errors.Is(err, falclient.ErrBadPricing) {
				t.Fatalf("error does not wrap ErrBadPricing: %v", err)
			}
			return
		}
		for _, p := range page.Prices {
			if p.EndpointID == "" || p.UnitPrice < 0 || math.IsInf(p.UnitPrice, 0) || math.IsNaN(p.UnitPrice) {
				t.Fatalf("bad price let through: %+v", p)
			}
		}
	})
}
