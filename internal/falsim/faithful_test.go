package falsim_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/falsim"
)

// hookBody is a decoded webhook body.
type hookBody struct {
	RequestID        string          `json:"request_id"`
	GatewayRequestID string          `json:"gateway_request_id"`
	Status           string          `json:"status"`
	Payload          json.RawMessage `json:"payload"`
	Error            *string         `json:"error"`
}

func decodeHook(t *testing.T, d delivered) hookBody {
	t.Helper()
	var h hookBody
	require.NoError(t, json.Unmarshal(d.body, &h), "%s", d.body)
	return h
}

// submitHook submits with a webhook and returns the request id.
func (b *testBundle) submitHook(model, hook string, input any, headers ...string) string {
	b.t.Helper()
	r := b.do(http.MethodPost, webhookPath(model, hook), input, headers...)
	require.Equal(b.t, http.StatusOK, r.code, "%s", r.body)
	return r.json(b.t)["request_id"].(string)
}

func (b *testBundle) result(model, rid string) reply {
	b.t.Helper()
	app := strings.Join(strings.Split(model, "/")[:2], "/")
	return b.do(http.MethodGet, "/"+app+"/requests/"+rid, nil)
}

func (b *testBundle) info(rid string) falsim.RequestInfo {
	b.t.Helper()
	info, ok := b.ts.Request(rid)
	require.True(b.t, ok, "no request %s", rid)
	return info
}

func (b *testBundle) waitCompleted(rid string) falsim.RequestInfo {
	b.t.Helper()
	var info falsim.RequestInfo
	require.Eventually(b.t, func() bool {
		info = b.info(rid)
		return info.State == "COMPLETED"
	}, 10*time.Second, 2*time.Millisecond, "request %s never completed", rid)
	return info
}

func TestAsyncValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	rc := newReceiver(t, nil)
	rid := b.submitHook("fal-ai/flux/dev", rc.url, map[string]any{"num_images": 2})
	d := rc.next(t)
	require.NoError(t, verifyWebhook(t, b.ts.JWKSURL, d.header, d.body))
	h := decodeHook(t, d)
	require.Equal(t, rid, h.RequestID)
	require.Equal(t, "ERROR", h.Status)
	require.Equal(t, "Invalid status code: 422", *h.Error)
	var payload struct {
		Detail []struct {
			Loc  []string `json:"loc"`
			Type string   `json:"type"`
		} `json:"detail"`
	}
	require.NoError(t, json.Unmarshal(h.Payload, &payload))
	require.Len(t, payload.Detail, 1)
	require.Equal(t, []string{"body", "prompt"}, payload.Detail[0].Loc)
	require.Equal(t, "missing", payload.Detail[0].Type)

	// The same 422 is the stored result, for a poller.
	r := b.result("fal-ai/flux/dev", rid)
	require.Equal(t, http.StatusUnprocessableEntity, r.code)
	require.JSONEq(t, string(r.body), string(h.Payload))
	info := b.info(rid)
	require.Equal(t, 1, info.Attempts)
	require.Zero(t, info.Billed)
	st := b.ts.Stats()
	require.Equal(t, int64(1), st.Submits, "an invalid input is an accepted submit")
	require.Equal(t, int64(1), st.ValidationErrors)
	require.Zero(t, st.Billed)

	// Sync runs validate at once.
	r = b.do(http.MethodPost, "/run/fal-ai/flux/dev", map[string]any{})
	require.Equal(t, http.StatusUnprocessableEntity, r.code)
}

func TestServerRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cfg       falsim.Config
		ctl       map[string]any
		headers   []string
		attempts  int
		code      int
		errorType string
	}{
		{"runner disconnected, retries spent", falsim.Config{}, map[string]any{"fail": falsim.FailRunnerDisconnected}, nil, 10, 503, "runner_disconnected"},
		{"startup timeout, retries spent", falsim.Config{ServerRetries: 3}, map[string]any{"fail": falsim.FailStartupTimeout}, nil, 3, 504, "startup_timeout"},
		{"generation timeout is a 504 too", falsim.Config{ServerRetries: 2}, map[string]any{"fail": falsim.FailGenerationTimeout}, nil, 2, 504, "generation_timeout"},
		{"retried then OK", falsim.Config{}, map[string]any{"fail": falsim.FailRunnerDisconnected, "fail_attempts": 2}, nil, 3, 200, ""},
		{"500 is not retried", falsim.Config{}, map[string]any{"fail": falsim.FailInternalError}, nil, 1, 500, "internal_server_error"},
		{"422 is not retried", falsim.Config{}, map[string]any{"fail": falsim.FailContentPolicy}, nil, 1, 422, "content_policy_violation"},
		{"X-Fal-No-Retry", falsim.Config{}, map[string]any{"fail": falsim.FailRunnerDisconnected}, []string{"X-Fal-No-Retry", "1"}, 1, 503, "runner_disconnected"},
		{"lenient: no retries", falsim.Config{Lenient: true}, map[string]any{"fail": falsim.FailRunnerDisconnected}, nil, 1, 503, "runner_disconnected"},
		{"negative ServerRetries: one attempt", falsim.Config{ServerRetries: -1}, map[string]any{"fail": falsim.FailRunnerDisconnected}, nil, 1, 503, "runner_disconnected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.ServerRetryDelay = time.Millisecond
			b := setup(t, tc.cfg)
			rc := newReceiver(t, nil)
			tc.ctl["latency_ms"] = 1
			rid := b.submitHook("fal-ai/flux/schnell", rc.url, map[string]any{"prompt": "x", "_sim": tc.ctl}, tc.headers...)
			h := decodeHook(t, rc.next(t))
			info := b.waitCompleted(rid)
			require.Equal(t, tc.attempts, info.Attempts)
			require.Len(t, info.GatewayRequestIDs, tc.attempts)
			require.Equal(t, rid, info.GatewayRequestIDs[0], "the first attempt's gateway id is the request id")
			seen := map[string]bool{}
			for _, g := range info.GatewayRequestIDs {
				require.False(t, seen[g], "each attempt has its own gateway id")
				seen[g] = true
			}
			require.Equal(t, rid, h.RequestID)
			require.Equal(t, info.GatewayRequestIDs[tc.attempts-1], h.GatewayRequestID, "the webhook names the last attempt")
			require.Equal(t, tc.code, info.StatusCode)

			r := b.result("fal-ai/flux/schnell", rid)
			require.Equal(t, tc.code, r.code, "%s", r.body)
			require.Equal(t, tc.errorType, r.header.Get("X-Fal-Error-Type"))
			st := b.ts.Stats()
			require.Equal(t, int64(tc.attempts-1), st.ServerRetries)
			if tc.code == 200 {
				require.Equal(t, "OK", h.Status)
				require.Equal(t, 1, info.Billed)
				require.Equal(t, int64(1), st.Billed)
			} else {
				require.Equal(t, "ERROR", h.Status)
				require.Zero(t, info.Billed, "fal does not bill errors")
				require.Zero(t, st.Billed)
			}
		})
	}
	t.Run("sync runs are never retried", func(t *testing.T) {
		t.Parallel()
		b := setup(t, falsim.Config{ServerRetryDelay: time.Millisecond})
		r := b.do(http.MethodPost, "/run/fal-ai/flux/schnell", map[string]any{"prompt": "x", "_sim": map[string]any{"latency_ms": 0, "fail": falsim.FailRunnerDisconnected, "fail_attempts": 1}})
		require.Equal(t, http.StatusServiceUnavailable, r.code)
		require.Zero(t, b.ts.Stats().ServerRetries)
	})
	t.Run("the start deadline covers failed retries", func(t *testing.T) {
		t.Parallel()
		b := setup(t, falsim.Config{ServerRetryDelay: 30 * time.Millisecond})
		s := b.submit("fal-ai/flux/schnell", map[string]any{"prompt": "x", "_sim": sim(0, falsim.FailRunnerDisconnected)}, "X-Fal-Request-Timeout", "0.1")
		b.waitState(s, "COMPLETED")
		r := b.do(http.MethodGet, s.ResponseURL, nil)
		require.Equal(t, http.StatusGatewayTimeout, r.code)
		require.Equal(t, "user", r.header.Get("X-Fal-Request-Timeout-Type"))
		info := b.info(s.RequestID)
		require.Less(t, info.Attempts, 10)
		require.Greater(t, info.Attempts, 1)
		require.Equal(t, int64(1), b.ts.Stats().TimedOut)
	})
}

func TestAccountConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{AccountConcurrency: 2})
	long := map[string]any{"prompt": "x", "_sim": sim(60000, "")}
	first := b.submit("fal-ai/flux/dev", long)
	second := b.submit("fal-ai/fast-sdxl", map[string]any{"prompt": "x", "_sim": map[string]any{"latency_ms": 60000, "cancel": "honour"}})
	third := b.submit("fal-ai/flux/schnell", long) // another model, free runners: waits for the account
	fourth := b.submit("fal-ai/flux/dev", long)
	require.Equal(t, "IN_PROGRESS", b.status(first).Status)
	require.Equal(t, "IN_PROGRESS", b.status(second).Status)
	require.Equal(t, "IN_QUEUE", b.status(third).Status)
	require.Equal(t, "IN_QUEUE", b.status(fourth).Status)
	st := b.ts.Stats()
	require.Equal(t, int64(2), st.Running)
	require.Equal(t, int64(2), st.Queued)

	for _, path := range []string{"/run/fal-ai/flux/schnell", "/run/fal-ai/flux/schnell/stream"} {
		r := b.do(http.MethodPost, path, map[string]any{"prompt": "x"})
		require.Equal(t, http.StatusTooManyRequests, r.code, path)
		require.Equal(t, "concurrent_requests_limit", r.json(t)["error_type"])
		require.Equal(t, "concurrent_requests_limit", r.header.Get("X-Fal-Error-Type"))
	}
	require.Equal(t, int64(2), b.ts.Stats().ConcurrencyLimited)
	require.Zero(t, b.ts.Stats().SyncRuns+b.ts.Stats().Streams)

	// A freed slot goes to the oldest waiting request, whatever its model.
	require.Equal(t, http.StatusAccepted, b.do(http.MethodPut, second.CancelURL, nil).code)
	b.waitState(second, "COMPLETED")
	b.waitState(third, "IN_PROGRESS")
	require.Equal(t, "IN_QUEUE", b.status(fourth).Status)
}

func TestCancelRunning(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		cfg    falsim.Config
		model  string // flux/dev honours cancels, fast-sdxl ignores them
		cancel string // "_sim.cancel"
		honour bool
	}{
		{"model honours", falsim.Config{}, "fal-ai/flux/dev", "", true},
		{"model ignores", falsim.Config{}, "fal-ai/fast-sdxl", "", false},
		{"request honours", falsim.Config{}, "fal-ai/fast-sdxl", falsim.CancelHonour, true},
		{"request ignores", falsim.Config{}, "fal-ai/flux/dev", falsim.CancelIgnore, false},
		{"lenient always honours", falsim.Config{Lenient: true}, "fal-ai/fast-sdxl", falsim.CancelIgnore, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tc.cfg)
			rc := newReceiver(t, nil)
			ctl := sim(300, "")
			if tc.cancel != "" {
				ctl["cancel"] = tc.cancel
			}
			rid := b.submitHook(tc.model, rc.url, map[string]any{"prompt": "x", "_sim": ctl})
			app := strings.Join(strings.Split(tc.model, "/")[:2], "/")
			s := submitted{RequestID: rid, StatusURL: b.ts.URL + "/" + app + "/requests/" + rid + "/status", CancelURL: b.ts.URL + "/" + app + "/requests/" + rid + "/cancel"}
			b.waitState(s, "IN_PROGRESS")
			r := b.do(http.MethodPut, s.CancelURL, nil)
			require.Equal(t, http.StatusAccepted, r.code)
			require.JSONEq(t, `{"status":"CANCELLATION_REQUESTED"}`, string(r.body))
			h := decodeHook(t, rc.next(t))
			info := b.waitCompleted(rid)
			require.True(t, info.CancelRequested)
			res := b.result(tc.model, rid)
			if tc.honour {
				require.Equal(t, 499, res.code)
				require.Equal(t, "ERROR", h.Status)
				require.Equal(t, "Invalid status code: 499", *h.Error)
				require.Zero(t, b.ts.Billed(rid))
				require.Equal(t, int64(1), b.ts.Stats().Cancelled)
			} else {
				require.Equal(t, http.StatusOK, res.code, "the app finished: its output is the result")
				require.Contains(t, string(res.body), `"images"`)
				require.Equal(t, "OK", h.Status)
				require.Equal(t, 1, b.ts.Billed(rid), "and it is billed")
				require.Zero(t, b.ts.Stats().Cancelled)
			}
			require.Equal(t, http.StatusBadRequest, b.do(http.MethodPut, s.CancelURL, nil).code, "completed: ALREADY_COMPLETED")
		})
	}
}

func TestBadGatewayAfterAccept(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Faults: falsim.Faults{BadGatewayAfterAcceptRate: 1}})
	rc := newReceiver(t, nil)
	r := b.do(http.MethodPost, webhookPath("fal-ai/flux/schnell", rc.url), map[string]any{"prompt": "x", "_sim": sim(1, "")})
	require.Equal(t, http.StatusBadGateway, r.code)
	require.Contains(t, r.header.Get("Content-Type"), "text/html")
	require.Contains(t, string(r.body), "nginx")
	require.Empty(t, r.header.Get("x-fal-request-id"), "no request id: a client cannot tell it was accepted")

	h := decodeHook(t, rc.next(t))
	require.Equal(t, "OK", h.Status, "the job ran")
	info := b.waitCompleted(h.RequestID)
	require.Equal(t, 1, info.Billed)
	st := b.ts.Stats()
	require.Equal(t, int64(1), st.Submits)
	require.Equal(t, int64(1), st.BadGatewayAfterAccept)
	require.Equal(t, int64(1), st.Billed)
	require.Equal(t, map[string]int64{"fal-ai/flux/schnell": 1}, st.BilledByModel)
}

func TestJWKSPaths(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	keyX := func(url string) string {
		r := b.do(http.MethodGet, url, nil, "Authorization", "")
		require.Equal(t, http.StatusOK, r.code, url)
		var set struct {
			Keys []struct{ Kty, Crv, X, Kid string } `json:"keys"`
		}
		require.NoError(t, json.Unmarshal(r.body, &set))
		require.Len(t, set.Keys, 1)
		require.Equal(t, b.ts.KeyID(), set.Keys[0].Kid)
		return set.Keys[0].X
	}
	current, alpha := keyX(b.ts.JWKSURL), keyX(b.ts.AlphaJWKSURL)
	require.NotContains(t, current, "=")
	require.True(t, strings.HasSuffix(alpha, "="), "the old host pads x: %s", alpha)
	pub, err := base64.URLEncoding.DecodeString(alpha)
	require.NoError(t, err)
	require.Equal(t, []byte(b.ts.PublicKey()), pub)
	require.Equal(t, strings.TrimRight(alpha, "="), current, "the same key")

	tests := []struct {
		down          string
		current, alph int
	}{
		{falsim.JWKSDownCurrent, http.StatusServiceUnavailable, http.StatusOK},
		{falsim.JWKSDownAlpha, http.StatusOK, http.StatusServiceUnavailable},
		{"", http.StatusOK, http.StatusOK},
	}
	for _, tc := range tests {
		r := b.do(http.MethodPut, "/_sim/faults", `{"jwks_down":"`+tc.down+`"}`)
		require.Equal(t, http.StatusOK, r.code, "%s", r.body)
		require.Equal(t, tc.current, b.do(http.MethodGet, b.ts.JWKSURL, nil).code, tc.down)
		require.Equal(t, tc.alph, b.do(http.MethodGet, b.ts.AlphaJWKSURL, nil).code, tc.down)
	}
	require.Equal(t, http.StatusBadRequest, b.do(http.MethodPut, "/_sim/faults", `{"jwks_down":"both"}`).code)
}

func TestSignGatewayID(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{ServerRetryDelay: time.Millisecond})
	rc := newReceiver(t, nil)
	tests := []struct {
		name   string
		signGW bool
	}{{"queue request id", false}, {"last gateway id", true}}
	for _, tc := range tests {
		ctl := map[string]any{"latency_ms": 0, "fail": falsim.FailRunnerDisconnected, "fail_attempts": 1, "sign_gateway_id": tc.signGW}
		rid := b.submitHook("fal-ai/flux/schnell", rc.url, map[string]any{"prompt": "x", "_sim": ctl})
		d := rc.next(t)
		h := decodeHook(t, d)
		require.Equal(t, rid, h.RequestID, tc.name)
		require.NotEqual(t, rid, h.GatewayRequestID, "retried once: a new gateway id")
		want := rid
		if tc.signGW {
			want = h.GatewayRequestID
		}
		require.Equal(t, want, d.header.Get("X-Fal-Webhook-Request-Id"), tc.name)
		require.NoError(t, verifyWebhook(t, b.ts.AlphaJWKSURL, d.header, d.body), tc.name)
	}
}

func TestStatusStreamPings(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{StatusPingInterval: 10 * time.Millisecond})
	s := b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": sim(150, "")})
	resp, err := b.send(context.Background(), http.MethodGet, s.StatusURL+"/stream", nil, "Accept", "text/event-stream")
	require.NoError(t, err)
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	pings, inProgress := 0, 0
	var last string
	for sc.Scan() {
		line := sc.Text()
		if line == ": ping" {
			pings++
		}
		if data, ok := strings.CutPrefix(line, "data: "); ok {
			last = data
			if strings.Contains(data, `"status":"IN_PROGRESS"`) {
				inProgress++
				require.Contains(t, data, `"metrics":{}`, "metrics is {} while IN_PROGRESS")
			}
		}
	}
	require.NoError(t, sc.Err())
	require.Greater(t, pings, 3)
	require.Greater(t, inProgress, 3, "IN_PROGRESS is repeated")
	require.Contains(t, last, `"status":"COMPLETED"`)

	r := b.do(http.MethodGet, s.StatusURL, nil)
	require.Contains(t, string(r.body), `"metrics":{"inference_time":`)
}

func TestSeedsAbove2To63(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Latency: time.Millisecond, Seed: 11})
	limit := new(big.Int).Lsh(big.NewInt(1), 63)
	seen := false
	for i := 0; i < 40 && !seen; i++ {
		r := b.do(http.MethodPost, "/run/fal-ai/flux/schnell", map[string]any{"prompt": "x"})
		require.Equal(t, http.StatusOK, r.code)
		seed, ok := new(big.Int).SetString(r.json(t)["seed"].(json.Number).String(), 10)
		require.True(t, ok, "the seed is a JSON number")
		seen = seed.Cmp(limit) >= 0
	}
	require.True(t, seen, "no seed ≥ 2^63 in 40 runs")
}

func TestWebhookSchedule(t *testing.T) {
	t.Parallel()
	// 1/1000 of fal's schedule: the first attempt may take 15ms, retries
	// 120ms, and the first retry waits 15ms.
	b := setup(t, falsim.Config{WebhookTimeScale: 0.001})
	rc := newReceiver(t, func(_ int64, w http.ResponseWriter) {
		time.Sleep(50 * time.Millisecond)
		w.WriteHeader(http.StatusOK)
	})
	b.submitHook("fal-ai/flux/schnell", rc.url, map[string]any{"prompt": "x", "_sim": sim(0, "")})
	first, second := rc.next(t), rc.next(t)
	require.GreaterOrEqual(t, second.at.Sub(first.at), 15*time.Millisecond+15*time.Millisecond, "timeout, then the retry delay")
	require.Eventually(t, func() bool {
		st := b.ts.Stats()
		return st.WebhooksFailed == 1 && st.WebhooksSent == 1
	}, 10*time.Second, 2*time.Millisecond, "the first attempt timed out at 15ms, the retry had 120ms")
}

func TestRequestInfo(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	s := b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": sim(0, "")},
		"X-Fal-Request-Timeout", "30",
		"X-Fal-Queue-Priority", "low",
		"X-Fal-Object-Lifecycle-Preference", `{"expiration_duration_seconds":3600}`,
		"x-app-fal-disable-fallback", "true",
		"X-Fal-Store-IO", "1",
		"X-Fal-Runner-Hint", "r1",
		"X-Unrelated", "y")
	b.waitState(s, "COMPLETED")
	r := b.do(http.MethodGet, "/_sim/requests/"+s.RequestID, nil, "Authorization", "")
	require.Equal(t, http.StatusOK, r.code)
	var info falsim.RequestInfo
	require.NoError(t, json.Unmarshal(r.body, &info))
	require.Equal(t, falsim.RequestInfo{
		RequestID: s.RequestID, Model: "fal-ai/flux/dev", State: "COMPLETED", Attempts: 1,
		GatewayRequestIDs: []string{s.RequestID}, Billed: 1, StatusCode: 200,
		Headers: map[string]string{
			"x-fal-request-timeout":             "30",
			"x-fal-queue-priority":              "low",
			"x-fal-object-lifecycle-preference": `{"expiration_duration_seconds":3600}`,
			"x-app-fal-disable-fallback":        "true",
			"x-fal-store-io":                    "1",
			"x-fal-runner-hint":                 "r1",
		},
	}, info)
	require.Equal(t, http.StatusNotFound, b.do(http.MethodGet, "/_sim/requests/nope", nil).code)
	_, ok := b.ts.Request("nope")
	require.False(t, ok)

	// Sync runs are billed too, by their x-fal-request-id.
	r = b.do(http.MethodPost, "/run/fal-ai/flux/schnell", map[string]any{"prompt": "x", "_sim": sim(0, "")})
	require.Equal(t, 1, b.ts.Billed(r.header.Get("x-fal-request-id")))
	st := b.ts.Stats()
	require.Equal(t, int64(2), st.Billed)
	require.Equal(t, map[string]int64{"fal-ai/flux/dev": 1, "fal-ai/flux/schnell": 1}, st.BilledByModel)
	raw := b.do(http.MethodGet, "/_sim/stats", nil).json(t)
	require.Equal(t, json.Number("2"), raw["billed"])
	require.Contains(t, raw, "billed_by_model")
}

func TestMaxQueueLength(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Concurrency: 1})
	long := map[string]any{"prompt": "x", "_sim": sim(60000, "")}
	b.submit("fal-ai/flux/dev", long) // runs
	b.submit("fal-ai/flux/dev", long) // queued: the queue holds 1
	r := b.do(http.MethodPost, "/fal-ai/flux/dev?fal_max_queue_length=1", long)
	require.Equal(t, http.StatusTooManyRequests, r.code, "%s", r.body)
	r = b.do(http.MethodPost, "/fal-ai/flux/dev?fal_max_queue_length=2", long)
	require.Equal(t, http.StatusOK, r.code, "%s", r.body)
	require.Equal(t, http.StatusBadRequest, b.do(http.MethodPost, "/fal-ai/flux/dev?fal_max_queue_length=x", long).code)
	require.Equal(t, int64(3), b.ts.Stats().Submits)
}

func TestPricing(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	tests := []struct {
		name  string
		query string
		auth  string
		code  int
		want  string
	}{
		{"one", "?endpoint_id=fal-ai/flux/dev", testKey, 200,
			`{"prices":[{"endpoint_id":"fal-ai/flux/dev","unit_price":0.025,"unit":"image","currency":"USD"}],"next_cursor":null,"has_more":false}`},
		{"repeated, unknown left out", "?endpoint_id=fal-ai/flux/schnell&endpoint_id=fal-ai/nope&endpoint_id=fal-ai/kling-video/v1.6/standard/text-to-video", testKey, 200,
			`{"prices":[{"endpoint_id":"fal-ai/flux/schnell","unit_price":0.003,"unit":"megapixels","currency":"USD"},{"endpoint_id":"fal-ai/kling-video/v1.6/standard/text-to-video","unit_price":0.045,"unit":"second","currency":"USD"}],"next_cursor":null,"has_more":false}`},
		{"comma-separated", "?endpoint_id=fal-ai/florence-2-large/caption,fal-ai/flux/dev", testKey, 200,
			`{"prices":[{"endpoint_id":"fal-ai/florence-2-large/caption","unit_price":0.0005,"unit":"request","currency":"USD"},{"endpoint_id":"fal-ai/flux/dev","unit_price":0.025,"unit":"image","currency":"USD"}],"next_cursor":null,"has_more":false}`},
		{"all unknown", "?endpoint_id=a/b", testKey, 200, `{"prices":[],"next_cursor":null,"has_more":false}`},
		{"none", "", testKey, 400, ""},
		{"no key", "?endpoint_id=fal-ai/flux/dev", "", 401, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := b.do(http.MethodGet, b.ts.PlatformURL+"/models/pricing"+tc.query, nil, "Authorization", tc.auth)
			require.Equal(t, tc.code, r.code, "%s", r.body)
			if tc.want != "" {
				require.JSONEq(t, tc.want, string(r.body))
			}
		})
	}
	// Every catalog model has a price.
	r := b.do(http.MethodGet, b.ts.PlatformURL+"/models/pricing?endpoint_id="+strings.Join(falsim.ModelIDs(), ","), nil)
	var out struct {
		Prices []struct {
			UnitPrice float64 `json:"unit_price"`
			Unit      string  `json:"unit"`
		} `json:"prices"`
	}
	require.NoError(t, json.Unmarshal(r.body, &out))
	require.Len(t, out.Prices, len(falsim.ModelIDs()))
	for _, p := range out.Prices {
		require.Positive(t, p.UnitPrice)
		require.Contains(t, []string{falsim.UnitImage, falsim.UnitMegapixels, falsim.UnitSecond, falsim.UnitRequest}, p.Unit)
	}
}

func TestMediaLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	fileOf := func(headers ...string) string {
		s := b.submit("fal-ai/flux/schnell", map[string]any{"prompt": "x", "_sim": sim(0, "")}, headers...)
		b.waitState(s, "COMPLETED")
		var out struct {
			Images []struct{ URL string } `json:"images"`
		}
		require.NoError(t, json.Unmarshal(b.do(http.MethodGet, s.ResponseURL, nil).body, &out))
		require.Len(t, out.Images, 1)
		return out.Images[0].URL
	}
	short := fileOf("X-Fal-Object-Lifecycle-Preference", `{"expiration_duration_seconds":0.2,"initial_acl":{"default":"allow"}}`)
	kept := fileOf()
	bad := fileOf("X-Fal-Object-Lifecycle-Preference", `{"expiration_duration_seconds":"soon"}`)
	require.Equal(t, http.StatusOK, b.do(http.MethodGet, short, nil).code, "served until it expires")
	require.Eventually(t, func() bool {
		return b.do(http.MethodGet, short, nil).code == http.StatusNotFound
	}, 10*time.Second, 10*time.Millisecond, "output media expire as the lifecycle header asks")
	require.Equal(t, http.StatusOK, b.do(http.MethodGet, kept, nil).code, "without the header media stay")
	require.Equal(t, http.StatusOK, b.do(http.MethodGet, bad, nil).code, "an unreadable preference is ignored")
}
