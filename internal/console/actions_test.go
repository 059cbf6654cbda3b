package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/internal/falsim/falsimtest"
	"github.com/falbridge/falbridge/publisher"
)

// TestActionsThroughService: with a token configured, the console wants
// it; a cross-origin POST is refused; cancel reaches falbridge on the
// cancel subject and the job ends canceled.
func TestActionsThroughService(t *testing.T) {
	t.Parallel()
	sim := falsimtest.New(t, falsim.Config{Latency: 30 * time.Second})
	addrs := devService(t, sim, func(c *config.Config) { c.Admin.ConsoleToken = "console-s3cret" })
	pub := publisherOn(t, addrs.NATS)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := "slow-" + strings.ReplaceAll(t.Name(), "/", "_")
	_, _, err := pub.Publish(ctx, &publisher.Trigger{ID: id, ModelID: "fal-ai/flux/schnell", Input: json.RawMessage(`{"prompt":"p"}`)})
	require.NoError(t, err)

	noRedirect := &http.Client{Timeout: 25 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string, h http.Header) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, addrs.Console+path, nil)
		require.NoError(t, err)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := noRedirect.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	bearer := http.Header{"Authorization": {"Bearer console-s3cret"}}
	require.Equal(t, http.StatusUnauthorized, do(http.MethodGet, "jobs", nil).StatusCode)
	require.Equal(t, http.StatusOK, do(http.MethodGet, "jobs", bearer).StatusCode)
	// Metrics and probes stay open: the token guards the console only.
	resp, err := http.Get("http://" + addrs.Admin + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	// Wait until the job is at fal, then cancel it.
	require.Eventually(t, func() bool {
		return sim.Stats().Submits >= 1
	}, 10*time.Second, 20*time.Millisecond)
	crossSite := http.Header{"Authorization": bearer["Authorization"], "Sec-Fetch-Site": {"cross-site"}}
	require.Equal(t, http.StatusForbidden, do(http.MethodPost, "jobs/"+id+"/cancel", crossSite).StatusCode)
	resp = do(http.MethodPost, "jobs/"+id+"/cancel", bearer)
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	loc, err := url.Parse(resp.Header.Get("Location"))
	require.NoError(t, err)
	require.Equal(t, "/console/jobs/"+id, loc.Path)
	require.Regexp(t, `^cancel: (canceled|cancel_requested)`, loc.Query().Get("notice"))
	_, err = pub.Await(ctx, id)
	require.ErrorIs(t, err, &publisher.Error{Code: publisher.CodeCanceled})
}

// TestConsoleOffByDefault: with admin.console off (serve's default) the
// admin listener has no console.
func TestConsoleOffByDefault(t *testing.T) {
	t.Parallel()
	require.False(t, config.Default().Admin.Console)
	sim := falsimtest.New(t, falsim.Config{})
	addrs := devService(t, sim, func(c *config.Config) { c.Admin.Console = false })
	resp, err := http.Get("http://" + addrs.Admin + "/console/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// The overview shows the caps on jobs pending at fal with their use and the
// waiting work, from the admission record every replica shares.
func TestOverviewShowsCaps(t *testing.T) {
	t.Parallel()
	sim := falsimtest.New(t, falsim.Config{Latency: 30 * time.Second})
	addrs := devService(t, sim, func(c *config.Config) { c.Limits.MaxPending = 2 })
	pub := publisherOn(t, addrs.NATS)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		_, _, err := pub.Publish(ctx, &publisher.Trigger{ID: fmt.Sprintf("capped-%d", i), ModelID: "fal-ai/flux/schnell", Tenant: "team-a",
			Input: json.RawMessage(`{"prompt":"p","_sim":{"cancel":"honour"}}`)})
		require.NoError(t, err)
	}
	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get(addrs.Console)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return sim.Stats().Submits == 2 && strings.Contains(body, "<td>team-a</td><td>fal-ai/flux/schnell</td><td>normal</td><td>1</td>")
	}, 20*time.Second, 50*time.Millisecond, "overview: %s", body)
	require.Contains(t, body, "<td>global</td><td></td><td>2</td><td>2</td><td>1</td>", "the global cap, full, one waiting")
	require.NotContains(t, body, "No caps on jobs pending")
}

// publisherOn connects to the NATS at url and returns a Publisher on it.
func publisherOn(t *testing.T, url string) *publisher.Publisher {
	t.Helper()
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	pub, err := publisher.New(js)
	require.NoError(t, err)
	return pub
}
