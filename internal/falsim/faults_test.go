package falsim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/falsim"
)

func TestRateLimitFault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		retryAfter time.Duration
		header     string
	}{
		{"with Retry-After", 2500 * time.Millisecond, "3"},
		{"without Retry-After", 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, falsim.Config{Faults: falsim.Faults{RateLimitRate: 1, RetryAfter: tc.retryAfter}})
			for _, c := range []struct{ method, path string }{
				{"POST", "/fal-ai/flux/dev"}, {"POST", "/run/fal-ai/flux/dev"}, {"GET", "/fal-ai/flux/requests/x/status"},
				{"GET", "/fal-ai/flux/requests/x"}, {"PUT", "/fal-ai/flux/requests/x/cancel"},
			} {
				r := b.do(c.method, c.path, map[string]any{"prompt": "x"})
				require.Equal(t, http.StatusTooManyRequests, r.code, c.path)
				require.Equal(t, tc.header, r.header.Get("Retry-After"))
				require.IsType(t, "", r.json(t)["detail"])
				require.NotEmpty(t, r.header.Get("x-fal-request-id"))
			}
			st := b.ts.Stats()
			require.Equal(t, int64(5), st.RateLimited)
			require.Zero(t, st.Submits, "a rejected submit is not a job")
			require.Zero(t, st.SyncRuns)
			require.Zero(t, st.Jobs)
			// Admin, keys and files are never faulted.
			for _, p := range []string{"/_sim/stats", "/_sim/faults", "/.well-known/jwks.json", "/files/a/b.mp4"} {
				require.Equal(t, http.StatusOK, b.do(http.MethodGet, p, nil).code, p)
			}
		})
	}
}

func TestServerErrorFault(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Seed: 7, Faults: falsim.Faults{ServerErrorRate: 1}})
	seen := map[string]bool{}
	for i := 0; i < 200 && len(seen) < 4; i++ {
		r := b.do(http.MethodPost, "/fal-ai/flux/dev", map[string]any{"prompt": "x"})
		require.GreaterOrEqual(t, r.code, 500)
		if strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
			require.Contains(t, string(r.body), "nginx")
			require.Empty(t, r.header.Get("x-fal-request-id"), "ingress errors carry no request id")
			seen["html "+http.StatusText(r.code)] = true
			continue
		}
		require.NotEmpty(t, r.header.Get("x-fal-request-id"))
		body := r.json(t)
		require.Equal(t, body["error_type"], r.header.Get("X-Fal-Error-Type"))
		seen["json "+http.StatusText(r.code)] = true
	}
	require.Equal(t, map[string]bool{
		"json Internal Server Error": true, "json Service Unavailable": true,
		"html Bad Gateway": true, "html Service Unavailable": true,
	}, seen)
	st := b.ts.Stats()
	require.Zero(t, st.Submits, "a rejected submit is not a job")
	require.Zero(t, st.Jobs)
	require.Positive(t, st.ServerErrors)
}

func TestHangFault(t *testing.T) {
	t.Parallel()
	t.Run("released when the client gives up", func(t *testing.T) {
		t.Parallel()
		b := setup(t, falsim.Config{Faults: falsim.Faults{HangRate: 1}})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := b.send(ctx, http.MethodPost, "/fal-ai/flux/dev", map[string]any{"prompt": "x"})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		st := b.ts.Stats()
		require.Equal(t, int64(1), st.Hung)
		require.Zero(t, st.Submits)
	})
	t.Run("released by Close", func(t *testing.T) {
		t.Parallel()
		b := setup(t, falsim.Config{Faults: falsim.Faults{HangRate: 1}})
		errc := make(chan error, 1)
		go func() {
			resp, err := b.send(context.Background(), http.MethodGet, "/fal-ai/flux/requests/x/status", nil)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		require.Eventually(t, func() bool { return b.ts.Stats().Hung == 1 }, 10*time.Second, 2*time.Millisecond)
		require.NoError(t, b.ts.Close())
		select {
		case err := <-errc:
			require.Error(t, err, "the connection is dropped")
		case <-time.After(10 * time.Second):
			t.Fatal("hung request not released by Close")
		}
	})
}

func TestAddedLatencyFault(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Faults: falsim.Faults{AddedLatency: 80 * time.Millisecond}})
	start := time.Now()
	r := b.do(http.MethodGet, "/fal-ai/flux/requests/x/status", nil)
	require.Equal(t, http.StatusNotFound, r.code)
	require.GreaterOrEqual(t, time.Since(start), 80*time.Millisecond)
}

func TestFaultsAdmin(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	r := b.do(http.MethodGet, "/_sim/faults", nil)
	require.Equal(t, http.StatusOK, r.code)
	require.JSONEq(t, `{"rate_limit_rate":0,"retry_after":"0s","server_error_rate":0,"added_latency":"0s",
		"webhook_drop_rate":0,"webhook_duplicate_rate":0,"webhook_delay":"0s","webhook_bad_signature_rate":0,"hang_rate":0,
		"bad_gateway_after_accept_rate":0,"jwks_down":""}`, string(r.body))

	r = b.do(http.MethodPut, "/_sim/faults", `{"rate_limit_rate":0.25,"retry_after":"2s","added_latency":"250ms","webhook_delay":1.5}`)
	require.Equal(t, http.StatusOK, r.code, "%s", r.body)
	want := falsim.Faults{RateLimitRate: 0.25, RetryAfter: 2 * time.Second, AddedLatency: 250 * time.Millisecond, WebhookDelay: 1500 * time.Millisecond}
	require.Equal(t, want, b.ts.Faults())
	var got falsim.Faults
	require.NoError(t, json.Unmarshal(b.do(http.MethodGet, "/_sim/faults", nil).body, &got))
	require.Equal(t, want, got)

	for _, bad := range []string{`{"hang_rate":2}`, `{"rate_limit_rte":0.1}`, `{"added_latency":"soon"}`, `{"retry_after":"-1s"}`, `[`} {
		r := b.do(http.MethodPut, "/_sim/faults", bad)
		require.Equal(t, http.StatusBadRequest, r.code, bad)
		require.Equal(t, want, b.ts.Faults(), "a bad PUT changes nothing")
	}

	b.ts.SetFaults(falsim.Faults{ServerErrorRate: 3, AddedLatency: -time.Second})
	require.Equal(t, falsim.Faults{ServerErrorRate: 1}, b.ts.Faults(), "SetFaults clamps")
	b.ts.SetFaults(falsim.Faults{})
	require.Equal(t, http.StatusOK, b.do(http.MethodPost, "/run/fal-ai/flux/schnell", map[string]any{"prompt": "x", "_sim": sim(0, "")}).code)
}

func TestStatsJSON(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	s := b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": sim(0, "")})
	b.waitState(s, "COMPLETED")
	b.do(http.MethodGet, s.ResponseURL, nil)
	b.do(http.MethodPut, s.CancelURL, nil)
	b.do(http.MethodPost, "/run/fal-ai/flux/schnell", map[string]any{"prompt": "x", "_sim": sim(0, "")})
	r := b.do(http.MethodGet, "/_sim/stats", nil)
	require.Equal(t, http.StatusOK, r.code)
	st := r.json(t)
	for _, k := range []string{"submits", "submits_by_model", "status_calls", "result_calls", "cancels", "sync_runs", "webhooks_sent", "webhooks_failed", "streams", "rate_limited", "server_errors", "hung"} {
		require.Contains(t, st, k)
	}
	require.Equal(t, json.Number("1"), st["submits"])
	require.Equal(t, map[string]any{"fal-ai/flux/dev": json.Number("1")}, st["submits_by_model"])
	require.Equal(t, json.Number("1"), st["result_calls"])
	require.Equal(t, json.Number("1"), st["cancels"])
	require.Equal(t, json.Number("1"), st["sync_runs"])
	require.NotEqual(t, json.Number("0"), st["status_calls"])
}
