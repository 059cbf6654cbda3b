package consumer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// atFal counts the jobs fal holds, per model and per tenant, from outside
// falbridge: from the moment a submit is sent until fal's webhook for it
// arrives. That window holds fal's own (accepted → completed), so a count
// within the caps here means fal never held more.
type atFal struct {
	consumer.Fal
	mu                 sync.Mutex
	total              int
	model, tenant      map[string]int
	maxTotal           int
	maxModel, maxTenan map[string]int
	byRequest          map[string][2]string // request id → model, tenant
	early              map[string]bool      // webhooks seen before their submit returned
}

func newAtFal(f consumer.Fal) *atFal {
	return &atFal{Fal: f, model: map[string]int{}, tenant: map[string]int{}, maxModel: map[string]int{},
		maxTenan: map[string]int{}, byRequest: map[string][2]string{}, early: map[string]bool{}}
}

func (a *atFal) add(model, tenant string, n int) {
	a.total += n
	a.model[model] += n
	a.tenant[tenant] += n
	a.maxTotal = max(a.maxTotal, a.total)
	a.maxModel[model] = max(a.maxModel[model], a.model[model])
	a.maxTenan[tenant] = max(a.maxTenan[tenant], a.tenant[tenant])
}

func (a *atFal) Submit(ctx context.Context, model string, input any, opts falclient.SubmitOptions) (*falclient.SubmitResponse, error) {
	var in struct {
		Tenant string `json:"t"`
	}
	raw, _ := input.(json.RawMessage)
	_ = json.Unmarshal(raw, &in)
	a.mu.Lock()
	a.add(model, in.Tenant, 1)
	a.mu.Unlock()
	resp, err := a.Fal.Submit(ctx, model, input, opts)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case err != nil:
		a.add(model, in.Tenant, -1)
	case a.early[resp.RequestID]:
		a.add(model, in.Tenant, -1)
	default:
		a.byRequest[resp.RequestID] = [2]string{model, in.Tenant}
	}
	return resp, err
}

func (a *atFal) webhook(body []byte) {
	var wh struct {
		RequestID string `json:"request_id"`
	}
	if json.Unmarshal(body, &wh) != nil || wh.RequestID == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	mt, ok := a.byRequest[wh.RequestID]
	if !ok {
		a.early[wh.RequestID] = true
		return
	}
	delete(a.byRequest, wh.RequestID)
	a.add(mt[0], mt[1], -1)
}

// #15: caps on jobs pending at fal hold across replicas. Three replicas,
// 40 jobs over 4 models and 4 tenants, global cap 8, model cap 2, tenant
// cap 3: fal never holds more, and every job completes.
func TestPendingCapsHoldAcrossReplicas(t *testing.T) {
	t.Parallel()
	var af *atFal
	b := setup(t, func(o *setupOpts) {
		o.onWebhook = func(body []byte) { af.webhook(body) }
		o.cfg = func(c *config.Config) {
			c.Limits.MaxPending = 8
			c.Limits.MaxPendingPerModel = 2
			c.Limits.MaxPendingPerTenant = 3
			c.Polling.WebhookGrace = 10 * time.Second
		}
	})
	af = newAtFal(b.fal)
	for range 3 {
		b.start(b.newPool(af))
	}
	models := []string{"fal-ai/flux/schnell", "fal-ai/flux/dev", "fal-ai/fast-sdxl", "fal-ai/flux-pro/v1.1"}
	tenants := []string{"a", "b", "c", "d"}
	for i := range 40 {
		tenant := tenants[i%4]
		b.publish("c", fmt.Sprintf(`{"id":"cap-%02d","model_id":%q,"tenant":%q,"input":{"prompt":"p","t":%q,"_sim":{"latency_ms":300}}}`,
			i, models[(i/4)%4], tenant, tenant))
	}
	for i := range 40 {
		res, ev := b.terminal(fmt.Sprintf("cap-%02d", i))
		require.Nil(t, ev, "cap-%02d", i)
		require.NotNil(t, res)
	}
	af.mu.Lock()
	defer af.mu.Unlock()
	require.LessOrEqual(t, af.maxTotal, 8, "global cap")
	for m, n := range af.maxModel {
		require.LessOrEqual(t, n, 2, "model %s", m)
	}
	for tn, n := range af.maxTenan {
		require.LessOrEqual(t, n, 3, "tenant %s", tn)
	}
	require.Equal(t, 8, af.maxTotal, "the caps are used, not only respected")
	require.EqualValues(t, 40, b.stats().Submits)
	b.requireSettled()
}

// A trigger canceled while it waits for a slot never reaches fal and ends
// canceled; its slot-holding neighbours are unaffected.
func TestCancelWhileWaitingIsFree(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.cfg = func(c *config.Config) { c.Limits.MaxPending = 1 }
	})
	b.startPool()
	b.publish("w", `{"id":"holder","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"latency_ms":1500}}}`)
	waitFor(t, "holder at fal", func() bool { return b.stats().Submits == 1 })
	b.publish("w", `{"id":"waiter","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	waitFor(t, "waiter recorded as waiting", func() bool { return b.jobStateOrEmpty("waiter") == "waiting" })

	reply, err := b.nc.Request("fal.cancel.waiter", nil, 10*time.Second)
	require.NoError(t, err)
	var cr consumer.CancelReply
	require.NoError(t, json.Unmarshal(reply.Data, &cr))
	require.Equal(t, "canceled", cr.Status, string(reply.Data))
	_, ev := b.terminal("waiter")
	require.NotNil(t, ev)
	require.Equal(t, publisher.CodeCanceled, ev.Code)

	res, ev := b.terminal("holder")
	require.Nil(t, ev)
	require.NotNil(t, res)
	b.requireSettled()
	require.EqualValues(t, 1, b.stats().Submits, "the canceled waiter never reached fal")

	// Both slots are free again: a new job is admitted at once.
	b.publish("w", `{"id":"after","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	res, ev = b.terminal("after")
	require.Nil(t, ev)
	require.NotNil(t, res)
}

// A replica that dies between a job's done record and giving its slot back
// leaves the slot taken: the sweep gives it back.
func TestSweepReleasesSlotsOfEndedJobs(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.cfg = func(c *config.Config) {
			c.Limits.MaxPending = 1
			c.Polling.SweepInterval = 200 * time.Millisecond
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b.startPool()
	// A crashed replica's leftovers: the only slot, held by a job that has
	// no record (it never got past its claim, long ago).
	kv, err := b.js.KeyValue(ctx, b.cfg.Streams.JobsBucket)
	require.NoError(t, err)
	_, err = kv.Create(ctx, "falbridge.admission", []byte(`{"jobs":{"ghost":{"m":"fal-ai/flux/schnell","at":"2026-01-01T00:00:00Z"}}}`))
	require.NoError(t, err)
	b.publish("s", `{"id":"next","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	res, ev := b.terminal("next")
	require.Nil(t, ev)
	require.NotNil(t, res)
}

// jobStateOrEmpty is jobState, "" while there is no record.
func (b *testBundle) jobStateOrEmpty(id string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := consumer.LookupJob(ctx, b.js, b.cfg.Streams.JobsBucket, id)
	if err != nil {
		return ""
	}
	return info.State
}

// #15 fairness: tenant A publishes 150 triggers, then tenant B 10. Over
// their tenant caps, A's triggers wait parked (acked, driven by their
// timers) instead of filling the trigger consumer's window, so B's are read
// and admitted beside A's: B's 10 finish before A's 100th.
func TestWaitingTenantDoesNotStarveAnother(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.cfg = func(c *config.Config) {
			c.Limits.MaxPending = 8
			c.Limits.MaxPendingPerTenant = 3
			c.Limits.MaxInFlight = 16 // a small window makes starvation visible
			c.Polling.WebhookGrace = 10 * time.Second
		}
	})
	order := make(chan string, 256)
	sub, err := b.nc.Subscribe("fal.results.>", func(m *nats.Msg) { order <- m.Subject[len("fal.results."):] })
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	b.startPool()
	for i := range 150 {
		b.publish("a", fmt.Sprintf(`{"id":"a-%03d","model_id":"fal-ai/flux/schnell","tenant":"A","input":{"prompt":"p","_sim":{"latency_ms":100}}}`, i))
	}
	for i := range 10 {
		b.publish("b", fmt.Sprintf(`{"id":"b-%02d","model_id":"fal-ai/flux/schnell","tenant":"B","input":{"prompt":"p","_sim":{"latency_ms":100}}}`, i))
	}
	var aDone, bDone int
	bDoneAtA := -1
	deadline := time.After(2 * time.Minute)
	for aDone+bDone < 160 {
		select {
		case id := <-order:
			if id[0] == 'a' {
				aDone++
			} else {
				bDone++
				if bDone == 10 {
					bDoneAtA = aDone
				}
			}
		case <-deadline:
			t.Fatalf("only %d of A's and %d of B's jobs finished", aDone, bDone)
		}
	}
	require.Less(t, bDoneAtA, 100, "B's 10 jobs finished after A's %dth", bDoneAtA)
	t.Logf("B's 10 jobs were done when A had %d of 150", bDoneAtA)
	b.requireSettled()
}

// hangAfterSubmit submits to fal, then hangs until its context ends: a
// replica about to die with jobs at fal and slots in hand.
type hangAfterSubmit struct {
	consumer.Fal
}

func (h hangAfterSubmit) Submit(ctx context.Context, model string, input any, opts falclient.SubmitOptions) (*falclient.SubmitResponse, error) {
	if _, err := h.Fal.Submit(ctx, model, input, opts); err != nil {
		return nil, err
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// #15: a replica dies holding slots (its jobs at fal, their records still
// claimed, other jobs parked on its timers). Its slots come back: fal's
// webhooks end its jobs on the replica that is left, the waiting jobs are
// admitted, every job completes once, and the cap holds throughout.
func TestSlotsOfADeadReplicaComeBack(t *testing.T) {
	t.Parallel()
	var af *atFal
	b := setup(t, func(o *setupOpts) {
		o.onWebhook = func(body []byte) { af.webhook(body) }
		o.cfg = func(c *config.Config) {
			c.Limits.MaxPending = 4
			c.Consumer.AckWait = 2 * time.Second
			c.Polling.WebhookGrace = 10 * time.Second
		}
	})
	af = newAtFal(b.fal)

	// The replica that dies has a connection of its own.
	nc := b.srv.Connect(t)
	dying, err := consumer.New(nc, hangAfterSubmit{af}, b.cfg, consumer.WithVerifier(b.fal.Verifier()), consumer.WithLogger(testLogger(t)))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, dying.Start(ctx))
	for i := range 7 {
		b.publish("k", fmt.Sprintf(`{"id":"kill-%d","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"latency_ms":1500}}}`, i))
	}
	waitFor(t, "four jobs at fal", func() bool { return b.stats().Submits == 4 })
	nc.Close() // kill -9: no more NATS for it; its goroutines end on their own
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = dying.Stop(sctx)
	})

	b.start(b.newPool(af))
	for i := range 7 {
		res, ev := b.terminal(fmt.Sprintf("kill-%d", i))
		require.Nil(t, ev, "kill-%d: %+v", i, ev)
		require.NotNil(t, res)
		require.Equal(t, 1, b.terminalCount(fmt.Sprintf("kill-%d", i)))
	}
	require.EqualValues(t, 7, b.stats().Submits, "each job submitted once")
	af.mu.Lock()
	defer af.mu.Unlock()
	require.LessOrEqual(t, af.maxTotal, 4)
}
