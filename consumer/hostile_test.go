package consumer_test

// Tests of hostile and oversized input (the hostile-input issue): nobody can
// take another's id, and nothing a publisher or fal sends can make a record
// or an event too large to store, which used to loop for ever.

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
	"github.com/falbridge/falbridge/publisher"
)

// Point 3: a rejected trigger made no job record, so a later valid trigger
// with the same id was submitted (billed) and its result dropped by the
// terminal guard. Now the rejection claims the id.
func TestRejectedTriggerClaimsItsID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startPool()
	b.publish("squat", `{"id":"squat-1","model_id":"fal-ai//nope","input":{"prompt":"p"}}`)
	_, ev := b.terminal("squat-1")
	require.NotNil(t, ev)
	require.Equal(t, publisher.CodeInvalidModel, ev.Code)

	b.publish("squat", `{"id":"squat-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	b.requireSettled()
	require.Zero(t, b.stats().Submits, "a claimed id is never submitted")
	require.Equal(t, 1, b.terminalCount("squat-1"))
	require.Equal(t, "done", b.jobState("squat-1"))
}

// A bad trigger carrying the id of a job in flight must not end that job
// with its error: the victim gets its own result.
func TestRejectedTriggerCannotEndAnotherJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startPool()
	b.publish("v", `{"id":"victim-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"latency_ms":500}}}`)
	waitFor(t, "victim submitted", func() bool { return b.stats().Submits == 1 })
	b.publish("a", `{"id":"victim-1","model_id":"not a model","input":{}}`)
	res, ev := b.terminal("victim-1")
	require.Nil(t, ev, "the attacker's error must not be the victim's terminal event")
	b.requireFalOutput(res)
	b.requireSettled()
	require.Equal(t, 1, b.terminalCount("victim-1"))
}

// Point 2: a valid prompt of markup made a record six times its size (HTML
// escaping) and the trigger twice over; over max_payload, the claim failed
// and the trigger was Nak'ed for ever, holding an in-flight slot.
func TestMarkupPromptFitsInItsRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startPool()
	prompt := strings.Repeat("<b>&</b>", 300<<10/8) // 300 KB, 1.8 MB once HTML-escaped
	b.publish("big", fmt.Sprintf(`{"id":"markup-1","model_id":"fal-ai/flux/schnell","input":{"prompt":%q}}`, prompt))
	res, ev := b.terminal("markup-1")
	require.Nil(t, ev)
	require.NotEmpty(t, res.RequestID)
	b.requireSettled()
	waitFor(t, "record done", func() bool { return b.jobState("markup-1") == "done" })
}

// bigOutputFal returns an output of n bytes for every result fetched.
type bigOutputFal struct {
	consumer.Fal
	n       int
	results atomic.Int32
}

func (f *bigOutputFal) Result(ctx context.Context, model, id string) (json.RawMessage, error) {
	f.results.Add(1)
	if _, err := f.Fal.Result(ctx, model, id); err != nil {
		return nil, err
	}
	return json.RawMessage(`{"data":"` + strings.Repeat("x", f.n) + `"}`), nil
}

// Point 2: an output over max_payload (an inline sync_mode image, say) used
// to be retried for ever, the poller fetching the 1.5 MB output again each
// time. Now the job ends with one small result_too_large error that names
// fal's request id, and the error event's large metadata is cut to fit.
func TestOutputTooLargeEndsWithResultTooLarge(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) { o.noWebhook = true })
	bf := &bigOutputFal{Fal: b.fal, n: 1500 << 10}
	b.start(b.newPool(bf))
	body := fmt.Sprintf(`{"id":"huge-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","sync_mode":true},"metadata":{"blob":%q}}`, strings.Repeat("m", 900<<10))
	b.publish("huge", body)
	_, ev := b.terminal("huge-1")
	require.NotNil(t, ev)
	require.Equal(t, publisher.CodeResultTooLarge, ev.Code, ev.Message)
	require.NotEmpty(t, ev.RequestID)
	require.Contains(t, ev.Message, ev.RequestID)
	require.True(t, ev.Truncated, "the trigger and metadata echoed in the event are cut to fit")
	b.requireSettled()
	waitFor(t, "record done", func() bool { return b.jobState("huge-1") == "done" })
	require.Equal(t, 1, b.terminalCount("huge-1"))
	time.Sleep(300 * time.Millisecond)
	require.EqualValues(t, 1, bf.results.Load(), "the output is fetched once, never again")
}

// Weak spot: a sync trigger's timeout had no ceiling ("2562047h" was
// accepted), so a few sync runs could hold every worker for ever.
func TestTriggerTimeoutHasACeiling(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startPool()
	b.publish("t", `{"id":"forever-1","model_id":"fal-ai/flux/schnell","mode":"sync","timeout":"2562047h","input":{"prompt":"p"}}`)
	_, ev := b.terminal("forever-1")
	require.NotNil(t, ev)
	require.Equal(t, publisher.CodeInvalidTrigger, ev.Code)
	require.Contains(t, ev.Message, `"timeout"`)
	require.Contains(t, ev.Message, "limits.max_timeout")
	require.Zero(t, b.stats().SyncRuns)
}

// Sync runs hold a worker each for their whole run: at most
// limits.max_sync_runs of them, and queue-mode work still gets workers.
func TestSyncRunsLeaveWorkersForQueueWork(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.cfg = func(c *config.Config) {
			c.Limits.Workers = 4
			c.Limits.MaxSyncRuns = 2
		}
	})
	cf := &countingFal{Fal: b.fal}
	p := b.newPool(cf)
	consumer.SetModelSlotTimes(p, 10*time.Millisecond, 20*time.Millisecond)
	b.start(p)
	for i := range 6 {
		b.publish("s", fmt.Sprintf(`{"id":"slow-sync-%d","model_id":"fal-ai/flux/schnell","mode":"sync","input":{"prompt":"p","_sim":{"latency_ms":1500}}}`, i))
	}
	waitFor(t, "sync runs started", func() bool { return cf.max() == 2 })
	b.publish("q", `{"id":"queue-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	res, ev := b.terminal("queue-1")
	require.Nil(t, ev)
	require.NotEmpty(t, res.RequestID)
	for i := range 6 {
		_, ev := b.terminal(fmt.Sprintf("slow-sync-%d", i))
		require.Nil(t, ev)
	}
	require.Equal(t, 2, cf.max(), "never more sync runs than limits.max_sync_runs")
}

// Point 1: result_subject was an unrestricted publish with falbridge's own
// identity: a trigger could forge another job's result, overwrite its record
// or cancel it. Now it must lie under subjects.result_subject_allow (app.>)
// and never on falbridge's or the server's subjects; the victim gets its own
// result and the attacker an error naming the field.
func TestResultSubjectCannotTouchAnotherJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.startPool()
	b.publish("v", `{"id":"victim-2","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"latency_ms":300}}}`)
	waitFor(t, "victim submitted", func() bool { return b.stats().Submits == 1 })
	attacks := map[string]string{
		"forge-result": "fal.results.victim-2",
		"overwrite-kv": "$KV.fal_jobs.victim-2",
		"cancel":       "fal.cancel.victim-2",
		"purge":        "$JS.API.STREAM.PURGE.FAL_RESULTS",
		"timers":       "falbridge.fal_pending.due.victim-2",
		"inbox":        "_INBOX.x",
	}
	for name, subj := range attacks {
		b.publish("a", fmt.Sprintf(`{"id":"attack-%s","model_id":"fal-ai/flux/schnell","result_subject":%q,"input":{"prompt":"p"}}`, name, subj))
	}
	for name := range attacks {
		_, ev := b.terminal("attack-" + name)
		require.NotNil(t, ev, name)
		require.Equal(t, publisher.CodeInvalidTrigger, ev.Code, name)
		require.Contains(t, ev.Message, "result_subject", name)
	}
	res, ev := b.terminal("victim-2")
	require.Nil(t, ev)
	b.requireFalOutput(res)
	require.Equal(t, 1, b.terminalCount("victim-2"))
	require.EqualValues(t, 1, b.stats().Submits, "no attack reached fal")

	// An allowed subject gets its copy.
	sub, err := b.nc.SubscribeSync("app.mine.results")
	require.NoError(t, err)
	b.publish("ok", `{"id":"copy-1","model_id":"fal-ai/flux/schnell","result_subject":"app.mine.results","input":{"prompt":"p"}}`)
	_, ev = b.terminal("copy-1")
	require.Nil(t, ev)
	m, err := sub.NextMsg(5 * time.Second)
	require.NoError(t, err)
	require.Contains(t, string(m.Data), `"copy-1"`)
}
