package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/internal/falsim/falsimtest"
	"github.com/falbridge/falbridge/internal/natstest"
	"github.com/falbridge/falbridge/publisher"
)

const falKey = "svc-key-id:svc-very-secret-value"

type running struct {
	addrs Addrs
	logs  *syncBuffer
	done  chan error
	stop  context.CancelFunc
}

// runService starts Run in the background against srv and a simulator and
// returns once it is ready.
func runService(t *testing.T, srv *natstest.Server, sim *falsimtest.Server, webhook bool, mod func(*config.Config)) *running {
	t.Helper()
	cfg := config.Default()
	cfg.NATS.URL = srv.ClientURL()
	cfg.Fal.Key = falKey
	cfg.Fal.QueueURL, cfg.Fal.RunURL, cfg.Fal.JWKSURLs = sim.QueueURL, sim.RunURL, []string{sim.JWKSURL}
	cfg.Fal.MaxAttempts = 2
	cfg.Fal.RetryInitial = 10 * time.Millisecond
	cfg.Fal.RetryMax = 20 * time.Millisecond
	cfg.Webhook.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Streams.Storage = "memory"
	cfg.Polling.MinInterval = 20 * time.Millisecond
	cfg.Polling.MaxInterval = 100 * time.Millisecond
	cfg.Polling.WebhookGrace = 300 * time.Millisecond
	cfg.Log.Level = "debug"
	cfg.Shutdown.GracePeriod = 5 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	r := &running{logs: &syncBuffer{}, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	ready := make(chan Addrs, 1)
	log := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	go func() {
		r.done <- Run(ctx, cfg, Options{Logger: log, WebhookFromListener: webhook, Ready: func(a Addrs) { ready <- a }})
	}()
	select {
	case r.addrs = <-ready:
	case err := <-r.done:
		t.Fatalf("Run ended early: %v\n%s", err, r.logs.String())
	case <-time.After(20 * time.Second):
		t.Fatal("not ready in 20s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Logf("logs:\n%s", r.logs.String())
			}
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestMetricsHealthAndNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	sim := falsimtest.New(t, falsim.Config{Latency: 20 * time.Millisecond, Seed: 5, WebhookRetryDelay: 20 * time.Millisecond})
	// File storage: the streams must survive the NATS restart below.
	r := runService(t, srv, sim, true, func(c *config.Config) { c.Streams.Storage = "file" })

	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	pub, err := publisher.New(js)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A small run: webhook results, a sync run, an invalid trigger, a 422
	// (fal accepts the submit and fails it later, by webhook) and a model
	// fal does not know (refused at submit).
	bodies := map[string]string{
		"m-1":   `{"id":"m-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`,
		"m-2":   `{"id":"m-2","model_id":"fal-ai/flux/dev","input":{"prompt":"p"}}`,
		"m-3":   `{"id":"m-3","model_id":"fal-ai/flux/schnell","mode":"sync","input":{"prompt":"p"}}`,
		"m-bad": `{"id":"m-bad","input":{}}`,
		"m-422": `{"id":"m-422","model_id":"fal-ai/flux/schnell","input":{"num_images":1}}`,
		"m-404": `{"id":"m-404","model_id":"fal-ai/no-such-model","input":{"prompt":"p"}}`,
	}
	for _, b := range bodies {
		_, err := js.Publish(ctx, "fal.requests.metrics", []byte(b))
		require.NoError(t, err)
	}
	for id := range bodies {
		_, err := pub.Await(ctx, id)
		if strings.HasPrefix(id, "m-bad") || id == "m-422" || id == "m-404" {
			require.Error(t, err, id)
		} else {
			require.NoError(t, err, id)
		}
	}

	code, body := get(t, "http://"+r.addrs.Admin+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	code, _ = get(t, "http://"+r.addrs.Admin+"/readyz")
	require.Equal(t, http.StatusOK, code)

	var metrics string
	require.Eventually(t, func() bool {
		_, metrics = get(t, "http://"+r.addrs.Admin+"/metrics")
		return value(metrics, `falbridge_completions_total{via="webhook"}`) >= 3 &&
			value(metrics, `falbridge_completions_total{via="intake"}`) >= 2 &&
			value(metrics, `falbridge_completions_total{via="sync"}`) >= 1
	}, 10*time.Second, 20*time.Millisecond)
	checks := []struct {
		series string
		min    float64
	}{
		{`falbridge_triggers_received_total`, 6},
		{`falbridge_triggers_rejected_total{code="invalid_trigger"}`, 1},
		{`falbridge_submits_total{model="fal-ai/flux/schnell",outcome="accepted"}`, 2},
		{`falbridge_fal_requests_total{endpoint="submit",status="200"}`, 3},
		{`falbridge_fal_requests_total{endpoint="submit",status="404"}`, 1},
		{`falbridge_fal_requests_total{endpoint="run",status="200"}`, 1},
		{`falbridge_webhooks_total{outcome="received"}`, 3},
		{`falbridge_webhooks_total{outcome="verified"}`, 3},
		{`falbridge_webhooks_total{outcome="published"}`, 3},
		{`falbridge_events_published_total{code="",kind="result"}`, 3},
		{`falbridge_events_published_total{code="invalid_trigger",kind="error"}`, 1},
		{`falbridge_events_published_total{code="validation_error",kind="error"}`, 1},
		{`falbridge_completions_total{via="webhook"}`, 3},
		{`falbridge_completions_total{via="sync"}`, 1},
		{`falbridge_completions_total{via="intake"}`, 2}, // m-bad, m-404
		{`falbridge_end_to_end_seconds_count{model="fal-ai/flux/schnell"}`, 2},
		{`falbridge_fal_run_seconds_count{model="fal-ai/flux/dev"}`, 1},
		{`falbridge_webhook_to_publish_seconds_count`, 2},
		{`go_goroutines`, 1},
	}
	for _, c := range checks {
		require.GreaterOrEqual(t, value(metrics, c.series), c.min, "%s\n%s", c.series, grepMetrics(metrics))
	}
	// A model takes a label of its own once fal accepted a job of it: one
	// fal does not know counts under "other".
	require.GreaterOrEqual(t, value(metrics, `falbridge_submits_total{model="other",outcome="refused"}`), 1.0, grepMetrics(metrics))
	for _, name := range []string{"falbridge_jobs_pending", "falbridge_ambiguous_submits_total", "falbridge_polls_total",
		"falbridge_fal_retries_total"} {
		require.Contains(t, metrics, "# TYPE "+name, name)
	}
	// Sane: end-to-end latency is positive and under a minute.
	sum, count := value(metrics, `falbridge_end_to_end_seconds_sum{model="fal-ai/flux/schnell"}`), value(metrics, `falbridge_end_to_end_seconds_count{model="fal-ai/flux/schnell"}`)
	require.Greater(t, sum, 0.0)
	require.Less(t, sum/count, 60.0)
	// Webhook completions dropped their timers: nothing is pending.
	require.Eventually(t, func() bool {
		_, m := get(t, "http://"+r.addrs.Admin+"/metrics")
		return value(m, "falbridge_jobs_pending") == 0
	}, 10*time.Second, 20*time.Millisecond)

	// /readyz follows NATS: down while it is down, back when it is back.
	srv.Shutdown()
	srv.WaitForShutdown()
	require.Eventually(t, func() bool {
		code, _ := get(t, "http://"+r.addrs.Admin+"/readyz")
		return code == http.StatusServiceUnavailable
	}, 10*time.Second, 20*time.Millisecond)
	code, _ = get(t, "http://"+r.addrs.Admin+"/healthz")
	require.Equal(t, http.StatusOK, code, "alive even when NATS is not")
	srv.Restart()
	require.Eventually(t, func() bool {
		code, _ := get(t, "http://"+r.addrs.Admin+"/readyz")
		return code == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond)

	// A missing stream, not only the trigger stream, is not ready, by name.
	nc2 := srv.Connect(t)
	js2, err := jetstream.New(nc2)
	require.NoError(t, err)
	dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer dcancel()
	require.NoError(t, js2.DeleteStream(dctx, "FAL_STATUS"))
	// Within a second of the last check (readiness is cached).
	require.Eventually(t, func() bool {
		code, body = get(t, "http://"+r.addrs.Admin+"/readyz")
		return code == http.StatusServiceUnavailable
	}, 5*time.Second, 50*time.Millisecond)
	require.Contains(t, body, "FAL_STATUS")

	// The key never reaches the logs, though they were at debug level.
	logs := r.logs.String()
	require.NotEmpty(t, logs)
	require.NotContains(t, logs, "svc-very-secret-value")
	require.NotContains(t, logs, falKey)
}

// Without a webhook URL every job is polled: the poll series and fal's
// queue time fill in.
func TestPollingMetrics(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	sim := falsimtest.New(t, falsim.Config{Latency: 150 * time.Millisecond, Seed: 6})
	r := runService(t, srv, sim, false, nil)
	js, err := jetstream.New(srv.Connect(t))
	require.NoError(t, err)
	pub, err := publisher.New(js)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i := range 3 {
		id := fmt.Sprintf("p-%d", i)
		_, err := js.Publish(ctx, "fal.requests.poll", []byte(`{"id":"`+id+`","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`))
		require.NoError(t, err)
	}
	for i := range 3 {
		_, err := pub.Await(ctx, fmt.Sprintf("p-%d", i))
		require.NoError(t, err)
	}
	// The counters move just after the event is published: wait for them.
	var metrics string
	require.Eventually(t, func() bool {
		_, metrics = get(t, "http://"+r.addrs.Admin+"/metrics")
		return value(metrics, `falbridge_completions_total{via="poll"}`) >= 3
	}, 10*time.Second, 20*time.Millisecond)
	require.GreaterOrEqual(t, value(metrics, `falbridge_polls_total{outcome="running"}`), 1.0)
	require.GreaterOrEqual(t, value(metrics, `falbridge_polls_total{outcome="completed"}`), 3.0)
	require.GreaterOrEqual(t, value(metrics, `falbridge_completions_total{via="poll"}`), 3.0)
	require.GreaterOrEqual(t, value(metrics, `falbridge_fal_requests_total{endpoint="status",status="202"}`), 1.0)
	require.GreaterOrEqual(t, value(metrics, `falbridge_fal_requests_total{endpoint="result",status="200"}`), 3.0)
	require.EqualValues(t, 3, value(metrics, `falbridge_fal_queue_seconds_count{model="fal-ai/flux/schnell"}`))
	q := value(metrics, `falbridge_fal_queue_seconds_sum{model="fal-ai/flux/schnell"}`) / 3
	require.GreaterOrEqual(t, q, 0.0)
	require.Less(t, q, 10.0)
	// The poller acks a job's timer just after publishing its result.
	require.Eventually(t, func() bool {
		_, m := get(t, "http://"+r.addrs.Admin+"/metrics")
		return value(m, "falbridge_jobs_pending") == 0
	}, 10*time.Second, 20*time.Millisecond)
}

func TestUnauthorizedKeyIsNotLogged(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	// The simulator accepts another key: every call is a 401.
	sim := falsimtest.New(t, falsim.Config{Latency: 10 * time.Millisecond, Keys: []string{"other:key"}})
	r := runService(t, srv, sim, true, nil)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	pub, err := publisher.New(js)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = js.Publish(ctx, "fal.requests.x", []byte(`{"id":"u-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`))
	require.NoError(t, err)
	_, err = pub.Await(ctx, "u-1")
	var ev *publisher.Error
	require.ErrorAs(t, err, &ev)
	require.Equal(t, publisher.CodeUnauthorized, ev.Code)
	require.NotContains(t, ev.Message+string(ev.Detail), "svc-very-secret-value")
	require.NotContains(t, r.logs.String(), "svc-very-secret-value")
}

var sampleLine = regexp.MustCompile(`^(\S+) (\S+)$`)

// value returns the sample value of the series (name plus labels exactly as
// exposed), or -1 when absent.
func value(metrics, series string) float64 {
	for _, line := range strings.Split(metrics, "\n") {
		m := sampleLine.FindStringSubmatch(line)
		if m == nil || m[1] != series {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return -1
		}
		return v
	}
	return -1
}

func grepMetrics(metrics string) string {
	var b strings.Builder
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "falbridge_") {
			fmt.Fprintln(&b, line)
		}
	}
	return b.String()
}

// syncBuffer is a bytes.Buffer safe for concurrent writers and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// #11 point 4: rejected triggers' model ids became label values with no
// length cap (5 ids of 200 KB made /metrics 17 MB) and 100 made-up ids used
// up the label cap, so a real model became "other".
func TestMadeUpModelsDoNotPolluteMetrics(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	sim := falsimtest.New(t, falsim.Config{Latency: 10 * time.Millisecond, Seed: 7, WebhookRetryDelay: 20 * time.Millisecond})
	r := runService(t, srv, sim, true, nil)
	js, err := jetstream.New(srv.Connect(t))
	require.NoError(t, err)
	pub, err := publisher.New(js)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	var ids []string
	publish := func(id, model string) {
		body := fmt.Sprintf(`{"id":%q,"model_id":%q,"input":{"prompt":"p"}}`, id, model)
		_, err := js.Publish(ctx, "fal.requests.x", []byte(body))
		require.NoError(t, err)
		ids = append(ids, id)
	}
	for i := range 5 {
		publish(fmt.Sprintf("huge-%d", i), "fal-ai/"+strings.Repeat("x", 200_000)+strconv.Itoa(i))
	}
	for i := range 120 {
		publish(fmt.Sprintf("madeup-%d", i), fmt.Sprintf("nobody/made-up-%d", i))
	}
	for _, id := range ids {
		_, err := pub.Await(ctx, id)
		require.Error(t, err, id)
	}
	_, _, err = pub.Publish(ctx, &publisher.Trigger{ID: "real", ModelID: "fal-ai/flux/schnell", Input: json.RawMessage(`{"prompt":"p"}`)})
	require.NoError(t, err)
	_, err = pub.Await(ctx, "real")
	require.NoError(t, err)

	code, metrics := get(t, "http://"+r.addrs.Admin+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Less(t, len(metrics), 256<<10, "/metrics stays small")
	require.NotContains(t, metrics, "made-up-")
	require.NotContains(t, metrics, "xxxxxxxxxx")
	require.GreaterOrEqual(t, value(metrics, `falbridge_submits_total{model="fal-ai/flux/schnell",outcome="accepted"}`), 1.0, grepMetrics(metrics))
}
