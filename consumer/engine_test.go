package consumer_test

// Regression tests of the engine issue: each reproduces a loss or a wrong
// outcome that was measured from outside, against embedded NATS and the
// simulator.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// kvFault makes the job store's write of one state fail once with a NATS
// timeout, either before the write reaches the server or after it applied
// (the reply lost).
type kvFault struct {
	state     string
	lostReply bool
	left      atomic.Int32
}

// faultyJS injects kvFaults into the job store's writes and can swallow the
// timers' publishes.
type faultyJS struct {
	jetstream.JetStream
	faults     []*kvFault
	dropTimers atomic.Int32 // timer publishes to acknowledge without sending
	failTimers atomic.Int32 // timer publishes to fail with a NATS timeout
}

func (f *faultyJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	if strings.HasPrefix(m.Subject, "$KV.") {
		for _, ft := range f.faults {
			if m.Header.Get(publisher.StateHeader) == ft.state && ft.left.Add(-1) >= 0 {
				if ft.lostReply {
					if _, err := f.JetStream.PublishMsg(ctx, m, opts...); err != nil {
						return nil, err
					}
				}
				return nil, nats.ErrTimeout
			}
		}
	}
	if strings.HasPrefix(m.Subject, "falbridge.") && f.failTimers.Add(-1) >= 0 {
		return nil, nats.ErrTimeout
	}
	if strings.HasPrefix(m.Subject, "falbridge.") && f.dropTimers.Add(-1) >= 0 {
		return &jetstream.PubAck{Stream: "FAL_PENDING"}, nil
	}
	return f.JetStream.PublishMsg(ctx, m, opts...)
}

func withFaults(p *consumer.Pool, f *faultyJS) {
	consumer.WrapJetStream(p, func(js jetstream.JetStream) jetstream.JetStream {
		f.JetStream = js
		return f
	})
}

func newKVFault(state string, lostReply bool) *kvFault {
	f := &kvFault{state: state, lostReply: lostReply}
	f.left.Store(1)
	return f
}

// jobState reads the job record's state; "" while there is no record yet
// (waitFor polls it from the moment the trigger is published).
func (b *testBundle) jobState(id string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := publisher.LookupJob(ctx, b.js, b.cfg.Streams.JobsBucket, id)
	if errors.Is(err, publisher.ErrJobNotFound) {
		return ""
	}
	require.NoError(b.t, err)
	return info.State
}

// Point 3: the write that marks a job done failed once with a NATS timeout.
// The finish loop used to set the state in memory first and then believe
// it, leaving the record "submitted" for ever.
func TestDoneWriteFailsOnceRecordEndsDone(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name      string
		noWebhook bool
	}{{"webhook", false}, {"polling", true}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *setupOpts) { o.noWebhook = mode.noWebhook })
			p := b.newPool(nil)
			withFaults(p, &faultyJS{faults: []*kvFault{newKVFault("done", false)}})
			b.start(p)
			b.publish("d", `{"id":"done-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
			res, ev := b.terminal("done-1")
			require.Nil(t, ev)
			b.requireFalOutput(res)
			waitFor(t, "record done", func() bool { return b.jobState("done-1") == "done" })
			require.Equal(t, 1, b.terminalCount("done-1"))
		})
	}
}

// Point 4: the write that records fal's request id applied, but its reply
// was lost. The retry's revision mismatch used to be read as "a cancel moved
// the job": the healthy job was canceled at fal and never completed.
func TestSubmittedWriteReplyLostIsRecognised(t *testing.T) {
	t.Parallel()
	for _, mode := range []struct {
		name      string
		noWebhook bool
	}{{"webhook", false}, {"polling", true}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *setupOpts) { o.noWebhook = mode.noWebhook })
			p := b.newPool(nil)
			withFaults(p, &faultyJS{faults: []*kvFault{newKVFault("submitted", true)}})
			b.start(p)
			b.publish("s", `{"id":"lost-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
			res, ev := b.terminal("lost-1")
			require.Nil(t, ev, "the job must complete, not be canceled")
			b.requireFalOutput(res)
			b.requireSettled()
			st := b.stats()
			require.Zero(t, st.Cancels)
			require.EqualValues(t, 1, st.Submits)
		})
	}
}

// hangingFal makes the first n status and result calls hang until the
// caller's deadline passes, then answer as the real client does with a
// spent context.
type hangingFal struct {
	consumer.Fal
	hangs atomic.Int32
}

func (h *hangingFal) Status(ctx context.Context, model, id string, logs bool) (*falclient.Status, error) {
	if h.hangs.Add(-1) >= 0 {
		<-ctx.Done()
	}
	return h.Fal.Status(ctx, model, id, logs)
}

func (h *hangingFal) Result(ctx context.Context, model, id string) (json.RawMessage, error) {
	if h.hangs.Add(-1) >= 0 {
		<-ctx.Done()
	}
	return h.Fal.Result(ctx, model, id)
}

// Point 2: a status or result call that hangs past its budget is no answer
// from fal. It used to become the job's terminal `timeout` while fal had
// completed (and billed) the run.
func TestHungPollIsRetriedNotTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.noWebhook = true
		o.cfg = func(c *config.Config) { c.Consumer.AckWait = time.Second } // a 750 ms call budget
	})
	hf := &hangingFal{Fal: b.fal}
	hf.hangs.Store(3)
	b.start(b.newPool(hf))
	b.publish("h", `{"id":"hang-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	res, ev := b.terminal("hang-1")
	require.Nil(t, ev, "a hung poll must not end the job")
	b.requireFalOutput(res)
	require.Equal(t, 1, b.terminalCount("hang-1"))
}

// hangingSubmitFal blocks submits until the caller's context ends.
type hangingSubmitFal struct {
	consumer.Fal
	started chan struct{}
	once    sync.Once
}

func (h *hangingSubmitFal) Submit(ctx context.Context, model string, input any, opts falclient.SubmitOptions) (*falclient.SubmitResponse, error) {
	h.once.Do(func() { close(h.started) })
	<-ctx.Done()
	return h.Fal.Submit(ctx, model, input, opts)
}

// Point 7: SIGTERM while a fal call hangs. The call's budget (three
// quarters of AckWait) used to outlive the shutdown grace period, so Stop
// gave up with an error after the whole grace period. Now the call is bounded
// by the grace period less the time to record its outcome, and nothing is
// lost: the next replica submits the job.
func TestStopWhileSubmitHangsEndsWithinGrace(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.cfg = func(c *config.Config) {
			c.Consumer.AckWait = 20 * time.Second
			c.Shutdown.GracePeriod = 5 * time.Second
		}
	})
	hf := &hangingSubmitFal{Fal: b.fal, started: make(chan struct{})}
	p := b.newPool(hf)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, p.Start(ctx))
	b.publish("g", `{"id":"grace-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	<-hf.started

	stopCtx, stopCancel := context.WithTimeout(context.Background(), b.cfg.Shutdown.GracePeriod)
	defer stopCancel()
	began := time.Now()
	require.NoError(t, p.Stop(stopCtx), "Stop must end within the grace period")
	require.Less(t, time.Since(began), b.cfg.Shutdown.GracePeriod)

	b.startPool()
	res, ev := b.terminal("grace-1")
	require.Nil(t, ev)
	b.requireFalOutput(res)
	require.EqualValues(t, 1, b.stats().Submits)
}

// Point 6: a submit that fal refused was retried inside falclient, whose
// back-off sleeps (up to 30 s) happened while the job was still claimed: a
// crash then looked like a crash after acceptance, and the redelivery
// published ambiguous_submit for a job fal never had. Now each delivery
// makes one attempt and records the refusal (state retry) before it waits.
func TestRefusedSubmitIsRecordedBeforeAnyBackoff(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// fal answers the first submit 429; the client's own policy would wait
	// 3 s before its next attempt.
	var refused atomic.Int32
	fal := b.frontedClient(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodPost || !refused.CompareAndSwap(0, 1) {
			return false
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"detail":"Rate limit exceeded"}`))
		return true
	}, falclient.RetryPolicy{MaxAttempts: 5, InitialInterval: 3 * time.Second, MaxInterval: 3 * time.Second})
	b.start(b.newPool(fal))

	b.publish("r", `{"id":"refused-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	waitFor(t, "fal's refusal", func() bool { return refused.Load() == 1 })
	refusedAt := time.Now()
	waitFor(t, "the job to leave claimed", func() bool {
		s := b.jobState("refused-1")
		return s != "claimed" && s != ""
	})
	require.Less(t, time.Since(refusedAt), time.Second,
		"the refusal must be recorded at once, not after the client's 3 s back-off")

	res, ev := b.terminal("refused-1")
	require.Nil(t, ev)
	b.requireFalOutput(res)
	require.EqualValues(t, 1, b.stats().Submits)
}

// slowCancelFal answers cancels after a delay.
type slowCancelFal struct {
	consumer.Fal
	delay time.Duration
}

func (s *slowCancelFal) Cancel(ctx context.Context, model, id string) error {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Fal.Cancel(ctx, model, id)
}

// Point 8: cancels were served one at a time on the subscription's callback,
// so five cancels with fal answering in 1 s took 1, 2, 3, 4 and 5 s, and an
// unknown id waited behind them.
func TestCancelsAreServedConcurrently(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) { o.sim.Latency = time.Minute })
	b.start(b.newPool(&slowCancelFal{Fal: b.fal, delay: time.Second}))
	ids := []string{"cc-0", "cc-1", "cc-2", "cc-3"}
	for _, id := range ids {
		b.publish("c", fmt.Sprintf(`{"id":%q,"model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`, id))
	}
	waitFor(t, "all submitted", func() bool { return b.stats().Submits == int64(len(ids)) })
	b.requireSettled()

	var wg sync.WaitGroup
	replies := make([]publisher.CancelReply, len(ids)+1)
	began := time.Now()
	for i, id := range append(ids, "cc-unknown") {
		wg.Go(func() {
			m, err := b.nc.Request(b.cfg.Subjects.Cancel+"."+id, nil, 10*time.Second)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(m.Data, &replies[i]))
		})
	}
	wg.Wait()
	took := time.Since(began)
	require.Less(t, took, 3*time.Second, "five 1 s cancels served one after another take 4 s or more")
	for i := range ids {
		require.Equal(t, "canceled", replies[i].Status, replies[i].Message)
	}
	require.Equal(t, "unknown", replies[len(ids)].Status)
}

// The sweep re-arms the timer of a submitted job that has none: here the
// timer's publish was acknowledged but never stored, as a lost timer would
// be, and polling is the only way the job can end.
func TestSweepRearmsLostTimer(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.noWebhook = true
		o.cfg = func(c *config.Config) { c.Consumer.AckWait = time.Second }
	})
	p := b.newPool(nil)
	fj := &faultyJS{}
	fj.dropTimers.Store(1)
	withFaults(p, fj)
	b.start(p)
	b.publish("sw", `{"id":"sweep-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	waitFor(t, "submitted", func() bool { return b.stats().Submits == 1 })
	b.requireSettled()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Too young to be called lost: its timer may still be on its way.
	swept, pending, rearmed, err := consumer.Sweep(ctx, p)
	require.NoError(t, err)
	require.True(t, swept)
	require.Equal(t, 1, pending)
	require.Zero(t, rearmed)
	require.EqualValues(t, 1, consumer.JobsPending(p))

	// Past the young-job window (call budget + AckWait: under 2 s here).
	time.Sleep(2 * time.Second)
	_, _, rearmed, err = consumer.Sweep(ctx, p)
	require.NoError(t, err)
	require.Equal(t, 1, rearmed)
	res, ev := b.terminal("sweep-1")
	require.Nil(t, ev)
	b.requireFalOutput(res)
	waitFor(t, "record done", func() bool { return b.jobState("sweep-1") == "done" })
	_, pending, rearmed, err = consumer.Sweep(ctx, p)
	require.NoError(t, err)
	require.Zero(t, pending)
	require.Zero(t, rearmed)
}

// Point 9: a long job with working webhooks was polled from 1 s again once
// past the grace period. Now the check at the grace period is skipped while
// signed webhooks arrive, and later checks come at the safety cadence: the
// job costs its submit and nothing else.
func TestLongJobWithWorkingWebhooksIsNotPolled(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.cfg = func(c *config.Config) {
			c.Polling.WebhookGrace = 300 * time.Millisecond
			c.Polling.SafetyInterval = time.Minute
		}
	})
	b.startPool()
	// A quick job first: its webhook shows that fal reaches us.
	b.publish("w", `{"id":"warm-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	_, ev := b.terminal("warm-1")
	require.Nil(t, ev)
	// A job running ten grace periods.
	b.publish("l", `{"id":"long-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"latency_ms":3000}}}`)
	res, ev := b.terminal("long-1")
	require.Nil(t, ev)
	st := b.stats()
	require.EqualValues(t, 2, st.Submits)
	require.Zero(t, st.StatusCalls, "no poll while webhooks work")
	require.Zero(t, st.ResultCalls)
	b.requireFalOutput(res)
}

// Live progress with webhooks: a trigger with "progress": true gets
// IN_PROGRESS and fal's log lines while it runs, from one status stream; a
// trigger without it costs its submit alone.
func TestLiveProgressInWebhookMode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startPool()
	sub, err := b.nc.SubscribeSync(b.cfg.Subjects.Status + ".live-1")
	require.NoError(t, err)
	b.publish("p", `{"id":"live-1","model_id":"fal-ai/flux/schnell","progress":true,"input":{"prompt":"p","_sim":{"latency_ms":1500}}}`)
	res, ev := b.terminal("live-1")
	require.Nil(t, ev)
	require.NotEmpty(t, res.RequestID)
	states := map[string]int{}
	logs := 0
	for {
		m, err := sub.NextMsg(200 * time.Millisecond)
		if err != nil {
			break
		}
		var st publisher.Status
		require.NoError(t, json.Unmarshal(m.Data, &st))
		states[st.State]++
		if len(st.Logs) > 0 {
			logs++
		}
	}
	require.Positive(t, states[publisher.StateInProgress], "IN_PROGRESS while it runs: %v", states)
	require.Positive(t, logs, "fal's log lines")
	st := b.stats()
	require.EqualValues(t, 1, st.StatusStreams)

	b.publish("q", `{"id":"quiet-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	_, ev = b.terminal("quiet-1")
	require.Nil(t, ev)
	require.EqualValues(t, 1, b.stats().StatusStreams, "no stream for a job nobody watches")
}

// gatewayOnceFal answers the first result read with nginx's HTML 502.
type gatewayOnceFal struct {
	consumer.Fal
	done atomic.Bool
}

func (g *gatewayOnceFal) Result(ctx context.Context, model, id string) (json.RawMessage, error) {
	if g.done.CompareAndSwap(false, true) {
		return nil, &falclient.APIError{StatusCode: 502, Message: "Bad Gateway"}
	}
	return g.Fal.Result(ctx, model, id)
}

// Found by make chaos: a status poll said COMPLETED, the result read got a
// proxy's HTML 502, and the job ended upstream_error as if that were fal's
// stored result. A gateway 5xx is no answer from fal: the read is retried.
func TestGatewayErrorOnResultIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) { o.noWebhook = true })
	b.start(b.newPool(&gatewayOnceFal{Fal: b.fal}))
	b.publish("g", `{"id":"gw-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	res, ev := b.terminal("gw-1")
	require.Nil(t, ev, "%+v", ev)
	b.requireFalOutput(res)
}

// optionsFal records the options of each submit.
type optionsFal struct {
	consumer.Fal
	mu   sync.Mutex
	seen []falclient.SubmitOptions
}

func (o *optionsFal) Submit(ctx context.Context, model string, input any, opts falclient.SubmitOptions) (*falclient.SubmitResponse, error) {
	o.mu.Lock()
	o.seen = append(o.seen, opts)
	o.mu.Unlock()
	return o.Fal.Submit(ctx, model, input, opts)
}

// A trigger's fal request options reach fal as its headers, and a start
// deadline fal enforces (a stored 504 "user" timeout) ends the job with
// error timeout, at once and without a retry.
func TestTriggerRequestOptionsReachFal(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) { o.sim.Concurrency = 1 })
	of := &optionsFal{Fal: b.fal}
	b.start(b.newPool(of))
	b.publish("o", `{"id":"opt-blocker","model_id":"fal-ai/flux/dev","input":{"prompt":"p","_sim":{"latency_ms":3000}}}`)
	require.Eventually(t, func() bool { of.mu.Lock(); defer of.mu.Unlock(); return len(of.seen) == 1 }, 5*time.Second, 10*time.Millisecond)
	b.publish("o", `{"id":"opt-1","model_id":"fal-ai/flux/dev","start_timeout":"300ms","media_expires_in":"2h","input":{"prompt":"p"}}`)
	_, ev := b.terminal("opt-1")
	require.NotNil(t, ev)
	require.Equal(t, publisher.CodeTimeout, ev.Code, ev.Message)
	require.Equal(t, 1, b.terminalCount("opt-1"))
	of.mu.Lock()
	defer of.mu.Unlock()
	require.Len(t, of.seen, 2, "one submit per trigger: a stored timeout is final")
	require.Equal(t, 300*time.Millisecond, of.seen[1].StartTimeout)
	require.Equal(t, 2*time.Hour, of.seen[1].ObjectExpiration)
}
