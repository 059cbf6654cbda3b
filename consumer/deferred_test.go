package consumer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/falsim"
)

// A webhook job that ends by its webhook within the deferral window never
// writes a timer: not one message reaches the pending stream.
func TestWebhookJobEndedInTimeWritesNoTimer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startPool()
	b.publish("quick", `{"id":"quick-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"latency_ms":20}}}`)
	res, ev := b.terminal("quick-1")
	require.Nil(t, ev)
	b.requireFalOutput(res)
	// Past the job's first check (webhook_grace 400 ms here) and a few
	// ticks of the deferral loop.
	time.Sleep(time.Second)
	info := b.pendingInfo()
	require.Zero(t, info.State.LastSeq, "no timer was ever written")
	require.EqualValues(t, 1, b.stats().Submits)
	require.Zero(t, b.stats().StatusCalls, "no poll")
}

// A webhook job still running when the pool stops gets its timer from Stop,
// so that it does not wait for the sweep.
func TestStopArmsDeferredTimers(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) { o.sim = falsim.Config{Latency: time.Minute, Seed: 5} })
	p := b.startPool()
	b.publish("long", `{"id":"long-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	waitFor(t, "submitted", func() bool { return b.jobState("long-1") == "submitted" })
	b.requireSettled()
	require.Zero(t, b.pendingInfo().State.Msgs, "the timer waits in memory")
	b.stop(p)
	require.EqualValues(t, 1, b.pendingInfo().State.Msgs, "Stop armed the timer")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := b.js.Stream(ctx, b.cfg.Streams.Pending)
	require.NoError(t, err)
	// Scheduled for its first check, or due at once when that is less
	// than the scheduler's lead time away (webhook_grace is 400 ms here).
	_, err = st.GetLastMsgForSubject(ctx, "falbridge."+strings.ToLower(b.cfg.Streams.Pending)+".*.long-1")
	require.NoError(t, err, "the job's timer")
}

// A held timer that cannot be written when it comes due (NATS trouble) is
// held again and written on a later tick: with its webhook lost, the job
// still ends by poll, without waiting for the sweep (a minute here).
func TestDeferredTimerArmRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) { o.sim.Faults.WebhookDropRate = 1 })
	p := b.newPool(nil)
	fj := &faultyJS{}
	fj.failTimers.Store(2)
	withFaults(p, fj)
	b.start(p)
	b.publish("retry", `{"id":"retry-arm","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"latency_ms":20}}}`)
	res, ev := b.terminal("retry-arm")
	require.Nil(t, ev)
	b.requireFalOutput(res)
	require.Less(t, fj.failTimers.Load(), int32(1), "the timer's writes failed twice first")
	require.EqualValues(t, 1, b.stats().Submits)
}

// pendingInfo is the state of the pending (timer) stream.
func (b *testBundle) pendingInfo() *jetstream.StreamInfo {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := b.js.Stream(ctx, b.cfg.Streams.Pending)
	require.NoError(b.t, err)
	info, err := st.Info(ctx)
	require.NoError(b.t, err)
	return info
}
