package consumer_test

// Tests of falbridge against the simulator's faithful default (issue 10):
// fal validates asynchronously, retries runner failures itself and stores
// the last one as the result, only signals a cancel to a running app, can
// answer 502 after it accepted a submit, publishes its keys on two hosts
// and may sign a webhook with the last attempt's gateway id.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/publisher"
)

// Bad input is accepted by fal's queue and fails later, as the stored 422
// and an ERROR webhook: one validation_error event naming the field,
// whichever way the outcome arrives.
func TestFaithfulValidationErrorEndsOnce(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		b := setup(t, mode)
		b.startPool()
		b.publish("v", `{"id":"bad-input","model_id":"fal-ai/flux/dev","input":{"image_size":"square_hd"}}`)
		_, ev := b.terminal("bad-input")
		require.NotNil(t, ev)
		require.Equal(t, publisher.CodeValidationError, ev.Code)
		require.Contains(t, ev.Message, `"prompt"`)
		require.EqualValues(t, 1, b.stats().Submits, "fal accepted the submit: validation is asynchronous")
		b.requireSettled()
		require.Equal(t, 1, b.terminalCount("bad-input"))
	})
}

// fal retries a runner failure itself, then completes the request with the
// stored 5xx. That result is final: one error event at once, no cancel,
// and at most two fal calls after fal completed the request (the status
// poll that saw COMPLETED and the result read). Before the fix, a polled
// job looped cancel → result → Nak past its deadline and never ended.
func TestFaithfulStoredServerErrorIsFinal(t *testing.T) {
	t.Parallel()
	forModes(t, func(t *testing.T, mode func(*setupOpts)) {
		b := setup(t, mode)
		b.startPool()
		b.publish("s", `{"id":"stored-5xx","model_id":"fal-ai/flux/schnell","timeout":"3s","input":{"prompt":"p","_sim":{"fail":"runner_disconnected"}}}`)
		_, ev := b.terminal("stored-5xx")
		require.NotNil(t, ev)
		require.Equal(t, publisher.CodeUpstreamError, ev.Code, ev.Message)
		st := b.stats()
		require.Positive(t, st.ServerRetries, "fal retried the runner failure itself")
		require.Zero(t, st.Cancels, "a completed request is never canceled")
		// After completion: the status poll that saw COMPLETED (with fal's
		// error fields) and this one result read; by webhook, none.
		require.LessOrEqual(t, st.ResultCalls, int64(1), "one result read")
		require.Zero(t, st.Billed, "fal bills no server error")
		b.requireSettled()
		time.Sleep(300 * time.Millisecond) // a looping poller would show here
		require.Equal(t, st.ResultCalls, b.stats().ResultCalls)
		require.Equal(t, 1, b.terminalCount("stored-5xx"))
	})
}

// cancelWhenRunning waits until fal runs the job, then asks falbridge to
// cancel it and returns the reply.
func cancelWhenRunning(t *testing.T, b *testBundle, id string) publisher.CancelReply {
	t.Helper()
	var rid string
	waitFor(t, "submitted", func() bool {
		rid = b.requestID(id)
		return rid != ""
	})
	waitFor(t, "running at fal", func() bool {
		info, ok := b.sim.Request(rid)
		return ok && info.State == "IN_PROGRESS"
	})
	m, err := b.nc.Request(b.cfg.Subjects.Cancel+"."+id, nil, 10*time.Second)
	require.NoError(t, err)
	var reply publisher.CancelReply
	require.NoError(t, json.Unmarshal(m.Data, &reply))
	return reply
}

// A cancel of a running job only signals the app. An app that honours it
// ends with 499: the job ends canceled, unbilled. One that ignores it
// finishes and is billed: its result is published, with a note.
func TestFaithfulCancelOfRunningJob(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{"honour", "ignore"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			forModes(t, func(t *testing.T, mode func(*setupOpts)) {
				b := setup(t, mode)
				b.startPool()
				id := "cancel-" + policy
				b.publish("c", fmt.Sprintf(`{"id":%q,"model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"latency_ms":1500,"cancel":%q}}}`, id, policy))
				reply := cancelWhenRunning(t, b, id)
				if policy == "honour" {
					// The app stops at once: falbridge's look right after
					// the cancel may already see fal's 499.
					require.Contains(t, []string{"canceled", "cancel_requested"}, reply.Status, reply.Message)
				} else {
					require.Equal(t, "cancel_requested", reply.Status, reply.Message)
				}
				res, ev := b.terminal(id)
				rid := b.requestID(id)
				if policy == "honour" {
					require.NotNil(t, ev)
					require.Equal(t, publisher.CodeCanceled, ev.Code)
					require.Zero(t, b.sim.Billed(rid))
				} else {
					require.Nil(t, ev, "%+v", ev)
					require.Contains(t, res.Note, "cancel")
					b.requireFalOutput(res)
					require.Equal(t, 1, b.sim.Billed(rid))
				}
				b.requireSettled()
				require.Equal(t, 1, b.terminalCount(id))
			})
		})
	}
}

// fal's ingress can answer 502 to a submit fal accepted. falbridge never
// resubmits it; with webhooks, fal's signed webhook names the job and
// settles the question: the real result, billed once.
func TestFaithfulBadGatewayAfterAccept(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) { o.sim.Faults.BadGatewayAfterAcceptRate = 1 })
	b.startPool()
	b.publish("g", `{"id":"bga-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	res, ev := b.terminal("bga-1")
	require.Nil(t, ev, "%+v", ev)
	b.requireFalOutput(res)
	st := b.stats()
	require.EqualValues(t, 1, st.Submits, "never resubmitted")
	require.EqualValues(t, 1, st.BadGatewayAfterAccept)
	require.Equal(t, 1, b.sim.Billed(res.RequestID))
	b.requireSettled()
	require.Equal(t, 1, b.terminalCount("bga-1"))
}

// fal may sign a webhook after its own retries with the last attempt's
// gateway id (fal-protocol §11.6): a correctly signed delivery whose signed
// id is the body's gateway_request_id is accepted, not refused, so the job
// ends by webhook without a poll.
func TestFaithfulWebhookSignedWithGatewayID(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.cfg = func(c *config.Config) { c.Polling.WebhookGrace = time.Minute }
	})
	b.startPool()
	b.publish("w", `{"id":"gw-signed","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"sign_gateway_id":true,"fail":"runner_disconnected","fail_attempts":2}}}`)
	res, ev := b.terminal("gw-signed")
	require.Nil(t, ev, "%+v", ev)
	b.requireFalOutput(res)
	info, ok := b.sim.Request(res.RequestID)
	require.True(t, ok)
	require.Len(t, info.GatewayRequestIDs, 3, "two failed attempts and the one that ran")
	st := b.stats()
	require.Zero(t, st.StatusCalls, "ended by its webhook, never polled")
	require.Zero(t, st.WebhooksFailed, "no delivery refused")
}

// fal's webhook keys live on two hosts; with one of them down, webhooks
// still verify against the other.
func TestFaithfulOneJWKSHostDown(t *testing.T) {
	t.Parallel()
	for _, down := range []string{falsim.JWKSDownCurrent, falsim.JWKSDownAlpha} {
		t.Run(down, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *setupOpts) {
				o.sim.Faults.JWKSDown = down
				o.cfg = func(c *config.Config) {
					c.Polling.WebhookGrace = time.Minute
					// The pool's verifier is the fal client's (fal.jwks_url).
					current := c.Fal.JWKSURLs[0]
					c.Fal.JWKSURLs = []string{current, strings.Replace(current, "/.well-known/", "/alpha/.well-known/", 1)}
					c.Webhook.JWKSURLs = nil
				}
			})
			b.startPool()
			b.publish("j", `{"id":"jwks-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
			res, ev := b.terminal("jwks-1")
			require.Nil(t, ev, "%+v", ev)
			b.requireFalOutput(res)
			require.Zero(t, b.stats().StatusCalls, "ended by its webhook")
		})
	}
}

// requestID is fal's request id of job id ("" until it is recorded).
func (b *testBundle) requestID(id string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := publisher.LookupJob(ctx, b.js, b.cfg.Streams.JobsBucket, id)
	if err != nil || info == nil {
		return ""
	}
	return info.RequestID
}

// quietStatusFal hides fal's error fields from status answers, as legacy
// apps' statuses do, and can answer the first result read with a JSON 503
// carrying a request id: fal's result API failing for a moment.
type quietStatusFal struct {
	consumer.Fal
	failReads   int64 // the first reads answered with a JSON 503
	resultReads atomic.Int64
}

func (q *quietStatusFal) Status(ctx context.Context, model, id string, logs bool) (*falclient.Status, error) {
	st, err := q.Fal.Status(ctx, model, id, logs)
	if st != nil {
		st.Error, st.ErrorType = "", ""
	}
	return st, err
}

func (q *quietStatusFal) Result(ctx context.Context, model, id string) (json.RawMessage, error) {
	if q.resultReads.Add(1) <= q.failReads {
		return nil, &falclient.APIError{Op: falclient.OpResult, Model: model, StatusCode: 503, RequestID: id,
			Body: json.RawMessage(`{"detail":"Service temporarily unavailable"}`), Message: "Service temporarily unavailable"}
	}
	return q.Fal.Result(ctx, model, id)
}

// A result read's JSON 5xx that fal's status did not announce is read again
// before it is taken: a passing failure of fal's result API gives way to the
// result; a stored one is the same five times in a row and ends the job.
func TestUnannouncedServerErrorIsConfirmed(t *testing.T) {
	t.Parallel()
	t.Run("passing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(o *setupOpts) { o.noWebhook = true })
		// Four bad reads in a row: a burst, as make chaos found.
		q := &quietStatusFal{Fal: b.fal, failReads: 4}
		b.start(b.newPool(q))
		b.publish("u", `{"id":"unann-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
		res, ev := b.terminal("unann-1")
		require.Nil(t, ev, "%+v", ev)
		b.requireFalOutput(res)
		require.EqualValues(t, 5, q.resultReads.Load())
	})
	t.Run("stored", func(t *testing.T) {
		t.Parallel()
		b := setup(t, func(o *setupOpts) { o.noWebhook = true })
		q := &quietStatusFal{Fal: b.fal}
		b.start(b.newPool(q))
		b.publish("u", `{"id":"unann-2","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"fail":"runner_disconnected"}}}`)
		_, ev := b.terminal("unann-2")
		require.NotNil(t, ev)
		require.Equal(t, publisher.CodeUpstreamError, ev.Code)
		require.EqualValues(t, 5, q.resultReads.Load(), "read five times, then final")
		require.Zero(t, b.stats().Cancels)
		require.Equal(t, 1, b.terminalCount("unann-2"))
	})
}
