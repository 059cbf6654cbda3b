package falclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
)

// PlatformURLDefault is the base URL of fal's Platform API (model
// metadata and pricing); see [WithPlatformURL].
const PlatformURLDefault = "https://api.fal.ai/v1"

// OpPricing is the operation of [Client.Pricing] in errors and attempts.
const OpPricing = "pricing"

// Limits of one pricing call.
const (
	// pricingBatch is how many endpoint ids one request names.
	pricingBatch = 50
	// pricingMaxPages bounds the pages followed for one request, so a
	// server that always says has_more cannot keep the call going.
	pricingMaxPages = 100
)

// Price is the price of one endpoint as fal's Platform API states it:
// UnitPrice in Currency per Unit (fal's unit name, e.g. "image",
// "megapixels", "video seconds"; not normalised here).
type Price struct {
	EndpointID string  `json:"endpoint_id"`
	UnitPrice  float64 `json:"unit_price"`
	Unit       string  `json:"unit"`
	Currency   string  `json:"currency"`
}

// WithPlatformURL sets the base URL of fal's Platform API (default
// [PlatformURLDefault], "https://api.fal.ai/v1"): [Client.Pricing] calls
// {url}/models/pricing. Same rules as [WithQueueURL].
func WithPlatformURL(u string) Option {
	return func(o *options) (err error) {
		o.platformURL, err = checkBaseURL("WithPlatformURL", u)
		return err
	}
}

// Pricing returns the prices of the given endpoints from fal's Platform
// API: GET {platform}/models/pricing?endpoint_id=a&endpoint_id=b, following
// next_cursor (as ?cursor=) while has_more. Without endpoint ids it asks
// for every price fal lists. Ids are sent 50 to a request. Entries fal
// returns without an endpoint id, or with a negative or absent price, are
// left out; an endpoint fal does not price is simply missing. Transport
// errors, 429 and 5xx are retried as [Client.Status] retries them; other
// error answers are returned as *[APIError].
func (c *Client) Pricing(ctx context.Context, endpointIDs ...string) ([]Price, error) {
	var out []Price
	if len(endpointIDs) == 0 {
		return c.PricingPages(ctx, nil)
	}
	for start := 0; start < len(endpointIDs); start += pricingBatch {
		batch := endpointIDs[start:min(start+pricingBatch, len(endpointIDs))]
		prices, err := c.PricingPages(ctx, batch)
		if err != nil {
			return nil, err
		}
		out = append(out, prices...)
	}
	return out, nil
}

// PricingPages reads every page of one pricing request.
func (c *Client) PricingPages(ctx context.Context, ids []string) ([]Price, error) {
	var out []Price
	cursor := ""
	seen := map[string]bool{}
	for range pricingMaxPages {
		q := url.Values{}
		for _, id := range ids {
			q.Add("endpoint_id", id)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		u := c.platform + "/models/pricing"
		if len(q) > 0 {
			u += "?" + q.Encode()
		}
		page, err := c.PricingPage(ctx, u)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Prices...)
		if !page.HasMore || page.NextCursor == "" {
			return out, nil
		}
		if seen[page.NextCursor] {
			return nil, fmt.Errorf("falclient: %s: cursor %q came back twice", OpPricing, truncate(page.NextCursor, 64))
		}
		seen[page.NextCursor] = true
		cursor = page.NextCursor
	}
	return nil, fmt.Errorf("falclient: %s: more than %d pages", OpPricing, pricingMaxPages)
}

// PricingPage is one page of fal's pricing answer.
type PricingPage struct {
	Prices     []Price
	NextCursor string
	HasMore    bool
}

func (c *Client) PricingPage(ctx context.Context, u string) (*PricingPage, error) {
	cl := &call{op: OpPricing, method: http.MethodGet, url: u, accept: contentJSON, timeout: c.reqTimeout}
	r := c.newRetrier(OpPricing, "")
	for {
		rep, err := c.doOnce(ctx, cl)
		if err == nil {
			page, derr := DecodePricing(rep.body)
			if derr == nil {
				return page, nil
			}
			// A 2xx we cannot read: final, not retried.
			return nil, fmt.Errorf("falclient: %s: %w", OpPricing, derr)
		}
		if again, ferr := r.again(ctx, err, retryIdempotent(err)); !again {
			return nil, ferr
		}
	}
}

// ErrBadPricing is wrapped by the errors of [DecodePricing].
var ErrBadPricing = errors.New("unreadable pricing answer")

// DecodePricing reads one page of fal's pricing answer:
// {"prices":[{"endpoint_id","unit_price","unit","currency"}],
// "next_cursor":string|null,"has_more":bool}. The body must be a JSON
// object with a "prices" array (unknown fields are ignored); an entry that
// is not an object with a non-empty endpoint_id and a finite unit_price ≥ 0
// is left out, so that one odd entry never hides the others or yields a
// wrong price. Errors wrap [ErrBadPricing].
func DecodePricing(body []byte) (*PricingPage, error) {
	var raw struct {
		Prices     *[]json.RawMessage `json:"prices"`
		NextCursor *string            `json:"next_cursor"`
		HasMore    bool               `json:"has_more"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPricing, err)
	}
	if raw.Prices == nil {
		return nil, fmt.Errorf("%w: no \"prices\" array", ErrBadPricing)
	}
	page := &PricingPage{HasMore: raw.HasMore}
	if raw.NextCursor != nil {
		page.NextCursor = *raw.NextCursor
	}
	for _, e := range *raw.Prices {
		var p struct {
			EndpointID string   `json:"endpoint_id"`
			UnitPrice  *float64 `json:"unit_price"`
			Unit       string   `json:"unit"`
			Currency   string   `json:"currency"`
		}
		if json.Unmarshal(e, &p) != nil || strings.TrimSpace(p.EndpointID) == "" || p.UnitPrice == nil ||
			*p.UnitPrice < 0 || math.IsInf(*p.UnitPrice, 0) || math.IsNaN(*p.UnitPrice) {
			continue
		}
		page.Prices = append(page.Prices, Price{EndpointID: p.EndpointID, UnitPrice: *p.UnitPrice, Unit: p.Unit, Currency: p.Currency})
	}
	return page, nil
}
