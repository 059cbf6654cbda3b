package consumer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/publisher"
)

// requireFalOutput checks that a result carries exactly what fal returned.
func (b *testBundle) requireFalOutput(res *publisher.Result) {
	b.t.Helper()
	require.NotEmpty(b.t, res.RequestID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := b.fal.Result(ctx, res.ModelID, res.RequestID)
	require.NoError(b.t, err)
	require.JSONEq(b.t, string(out), string(res.Output))
}

func TestHappyPathTriggerForms(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		cases := []struct {
			name    string
			body    string
			model   string
			inInput map[string]any
		}{
			{
				name:  "canonical",
				body:  `{"id":"canon-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"a red fox","num_images":2},"metadata":{"user":"u1","n":[1,2]}}`,
				model: "fal-ai/flux/schnell",
			},
			{
				name:  "flat workflow form",
				body:  `{"id":"flat-1","model_id":"fal-ai/flux/dev","prompt":"a blue fox","image_size":"square","num_images":1,"metadata":{"user":"u1","n":[1,2]}}`,
				model: "fal-ai/flux/dev",
			},
			{
				name:  "model/input_params/image_input form",
				body:  `{"id":"tool-1","model":"fal-ai/florence-2-large/caption","input_params":{},"image_input":"https://example.com/cat.png","use_streaming":false,"metadata":{"user":"u1","n":[1,2]}}`,
				model: "fal-ai/florence-2-large/caption",
			},
		}
		b := setup(t, mode)
		b.startPool()
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				var probe struct {
					ID string `json:"id"`
				}
				require.NoError(t, json.Unmarshal([]byte(tc.body), &probe))
				b.publish("demo", tc.body)
				res, ev := b.terminal(probe.ID)
				require.Nil(t, ev, "unexpected error event: %+v", ev)
				require.Equal(t, probe.ID, res.ID)
				require.Equal(t, tc.model, res.ModelID)
				require.JSONEq(t, `{"user":"u1","n":[1,2]}`, string(res.Metadata))
				require.False(t, res.ReceivedAt.IsZero())
				require.False(t, res.SubmittedAt.IsZero())
				require.False(t, res.CompletedAt.Before(res.SubmittedAt))
				require.Equal(t, 1, res.Attempts)
				b.requireFalOutput(res)
				require.Equal(t, 1, b.terminalCount(probe.ID))
			})
		}
		b.requireSettled()
		require.EqualValues(t, 3, b.stats().Submits)
		if !b.polling {
			require.Zero(t, b.stats().StatusCalls, "webhook mode should make no status calls")
		}
	})
}

func TestSyncAndStreamModes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startPool()

	b.publish("sync", `{"id":"sync-1","model_id":"fal-ai/flux/schnell","mode":"sync","input":{"prompt":"fast"}}`)
	res, ev := b.terminal("sync-1")
	require.Nil(t, ev)
	require.Contains(t, string(res.Output), `"images"`)

	// Watch the status subject before the stream job starts.
	sub, err := b.nc.SubscribeSync(b.cfg.Subjects.Status + ".stream-1")
	require.NoError(t, err)
	b.publish("stream", `{"id":"stream-1","model_id":"fal-ai/llavav15-13b","mode":"stream","input":{"image_url":"https://example.com/a.png","prompt":"describe"}}`)
	res, ev = b.terminal("stream-1")
	require.Nil(t, ev)
	require.Contains(t, string(res.Output), `"partial":false`)
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	var st publisher.Status
	require.NoError(t, json.Unmarshal(m.Data, &st))
	require.Equal(t, "PARTIAL", st.State)
	require.NotEmpty(t, st.Partial)

	// A model without /stream ends in streaming_unsupported.
	b.publish("stream", `{"id":"stream-2","model_id":"fal-ai/fast-sdxl","mode":"stream","input":{"prompt":"x"}}`)
	_, ev = b.terminal("stream-2")
	require.NotNil(t, ev)
	require.Equal(t, publisher.CodeStreamingUnsupported, ev.Code)
	require.Contains(t, ev.Message, "fal-ai/fast-sdxl")

	stats := b.stats()
	require.EqualValues(t, 1, stats.SyncRuns)
	require.Zero(t, stats.Submits)
	b.requireSettled()
}

func TestWebhookDroppedPollerCompletes(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) { o.sim.Faults.WebhookDropRate = 1 })
	b.startPool()
	for i := range 5 {
		b.publish("drop", fmt.Sprintf(`{"id":"drop-%d","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`, i))
	}
	for i := range 5 {
		res, ev := b.terminal(fmt.Sprintf("drop-%d", i))
		require.Nil(t, ev)
		b.requireFalOutput(res)
	}
	st := b.stats()
	require.EqualValues(t, 5, st.Submits)
	require.Positive(t, st.StatusCalls)
	require.Zero(t, st.WebhooksSent)
}

func TestWebhookBadSignatureIsRejectedAndPollerCompletes(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.sim.Faults.WebhookBadSignatureRate = 1
		o.sim.WebhookRetries = 1
	})
	b.startPool()
	b.publish("sig", `{"id":"sig-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	res, ev := b.terminal("sig-1")
	require.Nil(t, ev)
	b.requireFalOutput(res)
	require.Positive(t, b.stats().WebhooksFailed, "bad signatures must be refused")
	require.Equal(t, 1, b.terminalCount("sig-1"))
}

func TestWebhookDuplicatedAndRacingPollerPublishOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.sim.Faults.WebhookDuplicateRate = 1
		o.cfg = func(c *config.Config) { c.Polling.WebhookGrace = time.Millisecond } // poller races the webhook
	})
	b.startPool()
	const n = 20
	for i := range n {
		b.publish("dup", fmt.Sprintf(`{"id":"dup-%d","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`, i))
	}
	for i := range n {
		_, ev := b.terminal(fmt.Sprintf("dup-%d", i))
		require.Nil(t, ev)
	}
	waitFor(t, "duplicate webhooks delivered", func() bool { return b.stats().WebhooksSent >= 2*n })
	for i := range n {
		require.Equal(t, 1, b.terminalCount(fmt.Sprintf("dup-%d", i)))
	}
	require.EqualValues(t, n, b.stats().Submits)
}

func TestPollingOnlyWithoutWebhookURL(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) { o.noWebhook = true })
	b.startPool()
	sub, err := b.nc.SubscribeSync(b.cfg.Subjects.Status + ".poll-1")
	require.NoError(t, err)
	b.publish("poll", `{"id":"poll-1","model_id":"fal-ai/flux/dev","input":{"prompt":"p","_sim":{"latency_ms":300}}}`)
	res, ev := b.terminal("poll-1")
	require.Nil(t, ev)
	b.requireFalOutput(res)
	st := b.stats()
	require.Zero(t, st.WebhooksSent)
	require.Positive(t, st.StatusCalls)
	require.EqualValues(t, 1, st.ResultCalls-1) // one by the poller, one by requireFalOutput
	// Progress reached the status subject: a poll that found the job running.
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	var ps publisher.Status
	require.NoError(t, json.Unmarshal(m.Data, &ps))
	require.Equal(t, "poll-1", ps.ID)
	require.NotEmpty(t, ps.State)
}

func TestSameTriggerTwiceSubmitsOnce(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		b := setup(t, mode)
		b.startPool()
		body := `{"id":"twice-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"latency_ms":200}}}`
		b.publish("a", body)
		b.publish("b", body) // a second stream message with the same id (no Nats-Msg-Id)
		_, ev := b.terminal("twice-1")
		require.Nil(t, ev)
		b.publish("c", body) // and once more after it is done
		b.requireSettled()
		require.EqualValues(t, 1, b.stats().Submits)
		require.Equal(t, 1, b.terminalCount("twice-1"))
	})
}

func TestCrashAfterStoreBeforeAckSubmitsOnce(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		b := setup(t, mode, func(o *setupOpts) {
			o.cfg = func(c *config.Config) { c.Consumer.AckWait = time.Second }
		})
		p := b.newPool(nil)
		var crashed atomic.Bool
		consumer.SetHookBeforeAck(p, func(string) {
			if crashed.CompareAndSwap(false, true) {
				runtime.Goexit() // the worker dies: no ack, the trigger is redelivered
			}
		})
		b.start(p)
		b.publish("crash", `{"id":"crash-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
		res, ev := b.terminal("crash-1")
		require.Nil(t, ev)
		b.requireFalOutput(res)
		require.True(t, crashed.Load())
		b.requireSettled()
		require.EqualValues(t, 1, b.stats().Submits)
	})
}

// TestCrashBetweenSubmitAndStoreFollowsPolicy stops a worker right after fal
// accepted a submit and before the job was recorded. With a webhook URL,
// fal's signed webhook names the job and settles the ambiguity: the real
// result, billed once, whatever the policy. Polling only, the policy decides.
func TestCrashBetweenSubmitAndStoreFollowsPolicy(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name         string
		policy       string
		noWebhook    bool
		wantCode     publisher.Code // "" = a result
		wantAttempts int
		wantSubmits  int64
	}{
		{name: "webhook/fail", policy: "fail", wantAttempts: 1, wantSubmits: 1},
		{name: "webhook/resubmit", policy: "resubmit", wantAttempts: 1, wantSubmits: 1},
		{name: "polling/fail", policy: "fail", noWebhook: true, wantCode: publisher.CodeAmbiguousSubmit, wantSubmits: 1},
		{name: "polling/resubmit", policy: "resubmit", noWebhook: true, wantAttempts: 2, wantSubmits: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *setupOpts) {
				o.noWebhook = tc.noWebhook
				o.cfg = func(c *config.Config) {
					c.Consumer.AckWait = time.Second
					c.Consumer.AmbiguousSubmitPolicy = tc.policy
				}
			})
			p := b.newPool(nil)
			var crashed atomic.Bool
			consumer.SetHookAfterSubmit(p, func(string) {
				if crashed.CompareAndSwap(false, true) {
					runtime.Goexit()
				}
			})
			b.start(p)
			b.publish("amb", `{"id":"amb-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
			res, ev := b.terminal("amb-1")
			if tc.wantCode == "" {
				require.Nil(t, ev)
				require.Equal(t, tc.wantAttempts, res.Attempts)
				b.requireFalOutput(res)
				require.Equal(t, 1, b.sim.Billed(res.RequestID), "billed once")
			} else {
				require.NotNil(t, ev)
				require.Equal(t, tc.wantCode, ev.Code)
				require.JSONEq(t, `{"id":"amb-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`, string(ev.Trigger))
			}
			b.requireSettled()
			require.Equal(t, tc.wantSubmits, b.stats().Submits)
			require.Equal(t, 1, b.terminalCount("amb-1"))
		})
	}
}

func TestRestartAfterSubmitCompletes(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		b := setup(t, mode, func(o *setupOpts) { o.sim.Faults.WebhookDelay = 500 * time.Millisecond })
		a := b.startPool()
		b.publish("restart", `{"id":"restart-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
		waitFor(t, "submitted", func() bool { return b.stats().Submits == 1 })
		b.requireSettled() // the trigger is acked: the job now lives in KV
		b.stop(a)

		b.startPool() // a new replica picks the job up
		res, ev := b.terminal("restart-1")
		require.Nil(t, ev)
		b.requireFalOutput(res)
		require.EqualValues(t, 1, b.stats().Submits)
		require.Equal(t, 1, b.terminalCount("restart-1"))
	})
}

func TestTwoConsumersShareWork(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		b := setup(t, mode, func(o *setupOpts) {
			o.sim.Concurrency = 16
			o.cfg = func(c *config.Config) { c.Polling.WebhookGrace = 50 * time.Millisecond }
		})
		b.startPool()
		b.startPool()
		const n = 40
		for i := range n {
			b.publish("two", fmt.Sprintf(`{"id":"%s","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`, triggerID(i)))
		}
		for i := range n {
			_, ev := b.terminal(triggerID(i))
			require.Nil(t, ev)
		}
		for i := range n {
			require.Equal(t, 1, b.terminalCount(triggerID(i)))
		}
		require.EqualValues(t, n, b.stats().Submits)
		b.requireSettled()
	})
}

func TestBadInputMatrix(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		b := setup(t, mode, func(o *setupOpts) {
			o.cfg = func(c *config.Config) { c.Streams.MaxTriggerBytes = 4096 }
		})
		b.startPool()
		cases := []struct {
			name        string
			body        string
			code        publisher.Code
			mention     string // the message must name the cause
			reachesFal  bool
			withTrigger bool
		}{
			{name: "not JSON", body: `this is not json`, code: publisher.CodeInvalidTrigger, mention: "JSON"},
			{name: "no model id", body: `{"input":{"prompt":"x"}}`, code: publisher.CodeInvalidTrigger, mention: "model_id", withTrigger: true},
			{name: "malformed model id", body: `{"model_id":"fal-ai//flux","input":{}}`, code: publisher.CodeInvalidModel, mention: `"fal-ai//flux"`, withTrigger: true},
			{name: "input not an object", body: `{"model_id":"fal-ai/flux/schnell","input":[1,2]}`, code: publisher.CodeInvalidTrigger, mention: "input", withTrigger: true},
			{name: "bad image URL", body: `{"model_id":"fal-ai/florence-2-large/caption","input":{"image_url":"ftp://host/cat.png"}}`, code: publisher.CodeInvalidImageURL, mention: `"ftp://host/cat.png"`, withTrigger: true},
			{name: "oversized", body: `{"model_id":"fal-ai/flux/schnell","input":{"prompt":"` + strings.Repeat("x", 5000) + `"}}`, code: publisher.CodeInvalidTrigger, mention: "4096"},
			{name: "unknown model", body: `{"model_id":"fal-ai/no-such-model","input":{"prompt":"x"}}`, code: publisher.CodeInvalidModel, mention: `"fal-ai/no-such-model"`, reachesFal: true, withTrigger: true},
			{name: "422 missing field", body: `{"model_id":"fal-ai/flux/schnell","input":{"num_images":1}}`, code: publisher.CodeValidationError, mention: `"prompt"`, reachesFal: true, withTrigger: true},
			{name: "422 bad image URL at fal", body: `{"model_id":"fal-ai/florence-2-large/caption","input":{"prompt":"no image"}}`, code: publisher.CodeValidationError, mention: `"image_url"`, reachesFal: true, withTrigger: true},
			{name: "bad mode", body: `{"model_id":"fal-ai/flux/schnell","mode":"batch","input":{"prompt":"x"}}`, code: publisher.CodeInvalidTrigger, mention: "mode", withTrigger: true},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				id := fmt.Sprintf("bad-%d", i)
				before := b.stats().Submits
				// Plain publish with only a Nats-Msg-Id, so that even a body that
				// is not JSON has a known id.
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: "fal.requests.bad", Data: []byte(tc.body), Header: nats.Header{jetstream.MsgIDHeader: []string{id}}})
				require.NoError(t, err)
				_, ev := b.terminal(id)
				require.NotNil(t, ev, "want an error event")
				require.Equal(t, tc.code, ev.Code, ev.Message)
				require.Contains(t, ev.Message, tc.mention)
				if tc.withTrigger {
					require.JSONEq(t, tc.body, string(ev.Trigger), "the error event carries the original trigger")
				} else {
					require.NotEmpty(t, ev.Trigger)
				}
				if tc.reachesFal {
					require.NotEmpty(t, ev.Detail, "fal's detail is passed on")
				} else {
					require.Equal(t, before, b.stats().Submits, "invalid input must not reach fal")
				}
				require.Equal(t, 1, b.terminalCount(id))
			})
		}
		b.requireSettled()
		// Never redelivered: every bad trigger was delivered exactly once.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := b.js.Consumer(ctx, b.cfg.Streams.Requests, b.cfg.Consumer.Durable)
		require.NoError(t, err)
		info, err := c.Info(ctx)
		require.NoError(t, err)
		require.Zero(t, info.NumRedelivered)
		require.Zero(t, info.NumAckPending)
	})
}

func TestRateLimitStormWithRetryAfter(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		const retryAfter = time.Second
		b := setup(t, mode, func(o *setupOpts) {
			o.sim.Faults.RateLimitRate = 1
			o.sim.Faults.RetryAfter = retryAfter
		})
		b.startPool()
		start := time.Now()
		for i := range 5 {
			b.publish("storm", fmt.Sprintf(`{"id":"storm-%d","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`, i))
		}
		waitFor(t, "rate limited", func() bool { return b.stats().RateLimited >= 5 })
		b.sim.SetFaults(falsim.Faults{})
		for i := range 5 {
			res, ev := b.terminal(fmt.Sprintf("storm-%d", i))
			require.Nil(t, ev)
			require.GreaterOrEqual(t, res.Attempts, 1)
		}
		// Every job was refused at least once with Retry-After: 1s, so none can
		// have completed before that delay passed.
		require.GreaterOrEqual(t, time.Since(start), retryAfter)
		require.EqualValues(t, 5, b.stats().Submits)
		b.requireSettled()
	})
}

// gatewayClient is a fal client whose first n submits are answered by a
// proxy in front of the simulator with a 5xx of the given kind, never
// reaching fal: what an ingress does when it refuses a request, or when its
// upstream failed before fal saw it. Other calls pass through.
func gatewayClient(t *testing.T, b *testBundle, n int64, code int, rid string) (*falclient.Client, *atomic.Int64) {
	t.Helper()
	left := &atomic.Int64{}
	left.Store(n)
	c := b.frontedClient(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost || strings.Contains(r.URL.Path, "/requests/") || left.Add(-1) < 0 {
			return false
		}
		if rid != "" {
			w.Header().Set("X-Fal-Request-Id", rid)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = fmt.Fprintf(w, `{"detail":%q}`, http.StatusText(code))
			return true
		}
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(code)
		_, _ = fmt.Fprintf(w, "<html><body><center><h1>%d %s</h1></center><hr><center>nginx</center></body></html>", code, http.StatusText(code))
		return true
	}, falclient.RetryPolicy{MaxAttempts: 2, InitialInterval: 10 * time.Millisecond, MaxInterval: 50 * time.Millisecond})
	return c, left
}

// A 503 from the ingress (no x-fal-request-id) is fal's "not accepted":
// the submit is retried, and every job completes with one submit each.
func TestServerErrorBurst(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		b := setup(t, mode)
		gf, left := gatewayClient(t, b, 10, http.StatusServiceUnavailable, "")
		b.start(b.newPool(gf))
		for i := range 5 {
			b.publish("burst", fmt.Sprintf(`{"id":"burst-%d","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`, i))
		}
		for i := range 5 {
			_, ev := b.terminal(fmt.Sprintf("burst-%d", i))
			require.Nil(t, ev)
		}
		require.LessOrEqual(t, left.Load(), int64(0), "every refusal was used")
		require.EqualValues(t, 5, b.stats().Submits)
		b.requireSettled()
	})
}

// Any other 5xx to a submit may follow a request fal accepted (fal-protocol
// §11.4: nginx answers 502 when its upstream failed mid-request; a 500 or a
// 503 with a request id came from behind the ingress): it is never
// resubmitted. Here fal never saw the submit, so after the ambiguous wait
// (webhook mode) or at once (polling) the job ends ambiguous_submit.
func TestAmbiguousServerErrorIsNotResubmitted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		code int
		rid  string
	}{{"502 from the ingress", 502, ""}, {"500 from fal", 500, "rid-x"}, {"503 from fal", 503, "rid-x"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			forModes(t, func(t *testing.T, mode func(*setupOpts)) {
				b := setup(t, mode, func(o *setupOpts) {
					o.cfg = func(c *config.Config) { c.Consumer.AmbiguousWait = 500 * time.Millisecond }
				})
				gf, _ := gatewayClient(t, b, 1, tc.code, tc.rid)
				b.start(b.newPool(gf))
				b.publish("amb", `{"id":"amb-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
				_, ev := b.terminal("amb-1")
				require.NotNil(t, ev)
				require.Equal(t, publisher.CodeAmbiguousSubmit, ev.Code, ev.Message)
				require.Zero(t, b.stats().Submits, "never resubmitted")
				require.Equal(t, 1, b.terminalCount("amb-1"))
			})
		})
	}
}

func TestRetriesExhaustedEndInError(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		b := setup(t, mode, func(o *setupOpts) {
			o.sim.Faults.RateLimitRate = 1
			o.cfg = func(c *config.Config) { c.Consumer.MaxDeliver = 2 }
		})
		b.startPool()
		b.publish("spent", `{"id":"spent-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
		_, ev := b.terminal("spent-1")
		require.NotNil(t, ev)
		require.Equal(t, publisher.CodeRateLimited, ev.Code)
		require.Equal(t, 2, ev.Attempts)
		require.Contains(t, ev.Message, "gave up after 2 attempts")
		require.Zero(t, b.stats().Submits)
		b.requireSettled()
	})
}

func TestCancelWhileQueued(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		b := setup(t, mode, func(o *setupOpts) { o.sim.Concurrency = 1 })
		b.startPool()
		// The first job holds the only runner; the second waits in fal's queue.
		b.publish("c", `{"id":"busy-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"latency_ms":1500}}}`)
		waitFor(t, "first submitted", func() bool { return b.stats().Submits == 1 })
		b.publish("c", `{"id":"cancel-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
		waitFor(t, "second submitted", func() bool { return b.stats().Submits == 2 })
		b.requireSettled()

		reply, err := b.nc.Request(b.cfg.Subjects.Cancel+".cancel-1", nil, 5*time.Second)
		require.NoError(t, err)
		var cr publisher.CancelReply
		require.NoError(t, json.Unmarshal(reply.Data, &cr))
		require.Equal(t, "canceled", cr.Status, cr.Message)

		_, ev := b.terminal("cancel-1")
		require.NotNil(t, ev)
		require.Equal(t, publisher.CodeCanceled, ev.Code)
		require.EqualValues(t, 1, b.stats().Cancels)

		// The webhook of the canceled request changes nothing.
		res, ev := b.terminal("busy-1")
		require.Nil(t, ev)
		require.NotNil(t, res)
		time.Sleep(200 * time.Millisecond) // let the canceled job's webhook arrive, if any
		require.Equal(t, 1, b.terminalCount("cancel-1"))

		// Cancel of an unknown or finished job answers plainly.
		for id, want := range map[string]string{"nope-1": "unknown", "busy-1": "already_done"} {
			reply, err = b.nc.Request(b.cfg.Subjects.Cancel+"."+id, nil, 5*time.Second)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(reply.Data, &cr))
			require.Equal(t, want, cr.Status, id)
		}
	})
}

func TestDeadlineExceededEndsInTimeout(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		b := setup(t, mode, func(o *setupOpts) { o.noWebhook = true })
		b.startPool()
		b.publish("slow", `{"id":"slow-1","model_id":"fal-ai/flux/schnell","timeout":"400ms","input":{"prompt":"p","_sim":{"latency_ms":5000}}}`)
		_, ev := b.terminal("slow-1")
		require.NotNil(t, ev)
		require.Equal(t, publisher.CodeTimeout, ev.Code)
		require.NotEmpty(t, ev.RequestID)
		require.EqualValues(t, 1, b.stats().Cancels, "the job is canceled at fal")
		require.Equal(t, 1, b.terminalCount("slow-1"))
	})
}

func TestPerModelInFlightLimitHolds(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.sim.Concurrency = 16
		o.cfg = func(c *config.Config) { c.Limits.MaxInFlightPerModel = 2 }
	})
	cf := &countingFal{Fal: b.fal}
	b.start(b.newPool(cf))
	const n = 12
	for i := range n {
		b.publish("lim", fmt.Sprintf(`{"id":"%s","model_id":"fal-ai/flux/schnell","mode":"sync","input":{"prompt":"p","_sim":{"latency_ms":100}}}`, triggerID(i)))
	}
	for i := range n {
		_, ev := b.terminal(triggerID(i))
		require.Nil(t, ev)
	}
	require.Equal(t, 2, cf.max(), "at most 2 runs of one model at once, and the limit was reached")
	b.requireSettled()
}

func TestStopIsGracefulAndIdempotent(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		b := setup(t, mode)
		p := b.newPool(nil)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, p.Stop(ctx), "stop without start")
		<-p.Stopped()

		p2 := b.startPool()
		require.ErrorIs(t, p2.Start(ctx), consumer.ErrAlreadyStarted)
		b.publish("g", `{"id":"grace-1","model_id":"fal-ai/flux/schnell","mode":"sync","input":{"prompt":"p","_sim":{"latency_ms":300}}}`)
		waitFor(t, "run started", func() bool { return b.stats().SyncRuns == 1 })
		require.NoError(t, p2.Stop(ctx))
		require.NoError(t, p2.Stop(ctx))
		// The run in hand was finished, not abandoned.
		res, ev := b.terminal("grace-1")
		require.Nil(t, ev)
		require.NotNil(t, res)
	})
}

func TestLookupJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startPool()
	b.publish("look", `{"id":"look-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	_, ev := b.terminal("look-1")
	require.Nil(t, ev)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	waitFor(t, "done", func() bool {
		ji, err := publisher.LookupJob(ctx, b.js, b.cfg.Streams.JobsBucket, "look-1")
		return err == nil && ji.State == "done"
	})
	ji, err := publisher.LookupJob(ctx, b.js, b.cfg.Streams.JobsBucket, "look-1")
	require.NoError(t, err)
	require.Equal(t, "result", ji.Outcome)
	require.Equal(t, "fal-ai/flux/schnell", ji.ModelID)
	require.NotEmpty(t, ji.RequestID)
	_, err = publisher.LookupJob(ctx, b.js, b.cfg.Streams.JobsBucket, "nope")
	require.ErrorIs(t, err, publisher.ErrJobNotFound)
}

// A trigger queued behind a model at its in-flight limit is Nak'ed again and
// again; that alone must never end it. One long run holds the model's only
// slot while the others are Nak'ed every few milliseconds, far past the
// poison threshold (20 × max_deliver = 20 deliveries); all still complete.
func TestLongWaitForModelSlotIsNotPoison(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.sim.Concurrency = 4
		o.cfg = func(c *config.Config) {
			c.Consumer.MaxDeliver = 1
			c.Limits.MaxInFlightPerModel = 1
			c.Limits.Workers = 4
		}
	})
	p := b.newPool(nil)
	consumer.SetModelSlotTimes(p, time.Millisecond, 5*time.Millisecond)
	b.start(p)
	b.publish("slot", `{"id":"slot-hold","model_id":"fal-ai/flux/schnell","mode":"sync","input":{"prompt":"p","_sim":{"latency_ms":1500}}}`)
	waitFor(t, "slot held", func() bool { return b.stats().Running == 1 })
	for i := range 3 {
		b.publish("slot", fmt.Sprintf(`{"id":"slot-%d","model_id":"fal-ai/flux/schnell","mode":"sync","input":{"prompt":"p"}}`, i))
	}
	for _, id := range []string{"slot-hold", "slot-0", "slot-1", "slot-2"} {
		_, ev := b.terminal(id)
		require.Nil(t, ev, "a trigger waiting for a model slot must not be ended: %+v", ev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := b.js.Consumer(ctx, b.cfg.Streams.Requests, b.cfg.Consumer.Durable)
	require.NoError(t, err)
	info, err := c.Info(ctx)
	require.NoError(t, err)
	// Delivered.Consumer counts every delivery, redeliveries included.
	require.Greater(t, info.Delivered.Consumer, uint64(4+20), "the waiting triggers went past the poison threshold")
}

// Canceling a running request makes fal send its 499 webhook at once; that
// webhook may end the job before the cancel handler does. Either way the
// caller is told "canceled" and exactly one canceled event exists.
func TestCancelWhileRunning(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) { o.sim.WebhookRetryDelay = time.Millisecond })
	b.startPool()
	const n = 5
	for i := range n {
		b.publish("run", fmt.Sprintf(`{"id":"running-%d","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"latency_ms":5000}}}`, i))
	}
	waitFor(t, "all running", func() bool { return b.stats().Running == n })
	b.requireSettled()
	for i := range n {
		id := fmt.Sprintf("running-%d", i)
		reply, err := b.nc.Request(b.cfg.Subjects.Cancel+"."+id, nil, 5*time.Second)
		require.NoError(t, err)
		var cr publisher.CancelReply
		require.NoError(t, json.Unmarshal(reply.Data, &cr))
		require.Equal(t, "canceled", cr.Status, "%s: %s", id, cr.Message)
		_, ev := b.terminal(id)
		require.NotNil(t, ev)
		require.Equal(t, publisher.CodeCanceled, ev.Code)
		require.Equal(t, 1, b.terminalCount(id))
	}
}
