package consumer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
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
	b, af, simMax := capsAt8x2x3(t, "cap", 300, 10*time.Second)
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
	require.LessOrEqual(t, simMax(), int64(8), "the simulator's own count of queued + running requests")
	b.requireSettled()
}

// capsAt8x2x3 starts three replicas with global cap 8, model cap 2 and
// tenant cap 3, and publishes 40 jobs <prefix>-00…39 of latencyMs over 4
// models and 4 tenants. It returns the bundle, the outside count of jobs at
// fal, and the simulator's own peak.
func capsAt8x2x3(t *testing.T, prefix string, latencyMs int, grace time.Duration) (*testBundle, *atFal, func() int64) {
	var af *atFal
	b := setup(t, func(o *setupOpts) {
		o.onWebhook = func(body []byte) { af.webhook(body) }
		o.cfg = func(c *config.Config) {
			c.Limits.MaxPending = 8
			c.Limits.MaxPendingPerModel = 2
			c.Limits.MaxPendingPerTenant = 3
			c.Polling.WebhookGrace = grace
			c.Polling.SafetyInterval = max(c.Polling.SafetyInterval, grace)
		}
	})
	af = newAtFal(b.fal)
	for range 3 {
		b.start(b.newPool(af))
	}
	simMax := b.sampleSim(t)
	models := []string{"fal-ai/flux/schnell", "fal-ai/flux/dev", "fal-ai/fast-sdxl", "fal-ai/flux-pro/v1.1"}
	tenants := []string{"a", "b", "c", "d"}
	for i := range 40 {
		tenant := tenants[i%4]
		b.publish("c", fmt.Sprintf(`{"id":"%s-%02d","model_id":%q,"tenant":%q,"input":{"prompt":"p","t":%q,"_sim":{"latency_ms":%d,"cancel":"honour"}}}`,
			prefix, i, models[(i/4)%4], tenant, tenant, latencyMs))
	}
	return b, af, simMax
}

// sampleSim samples the simulator's own count of requests it holds (queued
// + running) every 2 ms until the test ends; the returned func gives the
// largest seen.
func (b *testBundle) sampleSim(t *testing.T) func() int64 {
	var peak atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(2 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
				st := b.stats()
				if n := st.Queued + st.Running; n > peak.Load() {
					peak.Store(n)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return peak.Load
}

// #15 with ten-minute jobs, as the issue measured them (all 40 were at fal
// within 2 s before the caps): global cap 8, model cap 2, tenant cap 3,
// three replicas. fal holds exactly 8 for as long as we look, by its own
// count, never more, within every model's and tenant's cap; the other 32
// wait without a fal call. Canceled, the waiting ones end without one; the
// 8 at fal are canceled there.
func TestTenMinuteJobsHeldAtTheCaps(t *testing.T) {
	t.Parallel()
	b, af, simMax := capsAt8x2x3(t, "long", 600_000, time.Minute)
	waitFor(t, "8 at fal, 32 waiting", func() bool {
		waiting := 0
		for i := range 40 {
			if b.jobStateOrEmpty(fmt.Sprintf("long-%02d", i)) == "waiting" {
				waiting++
			}
		}
		st := b.stats()
		return st.Queued+st.Running == 8 && waiting == 32
	})
	time.Sleep(3 * time.Second) // the waiting jobs keep asking meanwhile
	st := b.stats()
	require.EqualValues(t, 8, st.Submits, "no job past the caps reached fal")
	require.EqualValues(t, 8, st.Queued+st.Running)
	require.LessOrEqual(t, simMax(), int64(8))
	for m, n := range st.SubmitsByModel {
		require.LessOrEqual(t, n, int64(2), "model %s", m)
	}
	af.mu.Lock()
	for tn, n := range af.maxTenan {
		require.LessOrEqual(t, n, 3, "tenant %s", tn)
	}
	af.mu.Unlock()

	// Cancel the waiting jobs first (free), then those at fal.
	var atFal []string
	for i := range 40 {
		id := fmt.Sprintf("long-%02d", i)
		if b.jobStateOrEmpty(id) != "waiting" {
			atFal = append(atFal, id)
			continue
		}
		b.cancel(id)
	}
	require.Len(t, atFal, 8)
	for _, id := range atFal {
		// Running at fal: the cancel is passed on to the app, which
		// honours it (_sim.cancel) now or a moment later.
		b.cancel(id, "canceled", "cancel_requested")
	}
	for i := range 40 {
		_, ev := b.terminal(fmt.Sprintf("long-%02d", i))
		require.NotNil(t, ev)
		require.Equal(t, publisher.CodeCanceled, ev.Code)
	}
	require.EqualValues(t, 8, b.stats().Submits)
	require.EqualValues(t, 8, b.stats().Cancels, "only the jobs at fal were canceled there")
	b.requireSettled()
}

// cancel asks falbridge to cancel id and requires one of want (default
// "canceled").
func (b *testBundle) cancel(id string, want ...string) {
	b.t.Helper()
	if len(want) == 0 {
		want = []string{"canceled"}
	}
	reply, err := b.nc.Request("fal.cancel."+id, nil, 10*time.Second)
	require.NoError(b.t, err)
	var cr publisher.CancelReply
	require.NoError(b.t, json.Unmarshal(reply.Data, &cr))
	require.Contains(b.t, want, cr.Status, "%s: %s", id, reply.Data)
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
	var cr publisher.CancelReply
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
	info, err := publisher.LookupJob(ctx, b.js, b.cfg.Streams.JobsBucket, id)
	if err != nil {
		return ""
	}
	return info.State
}

// #15 fairness through a small trigger window: tenant A publishes 150
// triggers, then tenant B 10, with a window (limits.max_in_flight) of 16.
// A's waiting triggers are parked (acked, driven by their timers) instead of
// filling the window, so B's are read at all; then the turns and the tenant
// cap admit them beside A's: B's 10 finish before A's 100th.
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
// replica about to die with jobs at fal and slots in hand. Once dead is
// set, it is a killed process: every fal call fails at once and is counted
// in afterDeath (there must be none).
type hangAfterSubmit struct {
	consumer.Fal
	dead, afterDeath *atomic.Int64
}

var errKilled = errors.New("killed")

func (h hangAfterSubmit) killed() bool {
	if h.dead.Load() == 0 {
		return false
	}
	h.afterDeath.Add(1)
	return true
}

func (h hangAfterSubmit) Submit(ctx context.Context, model string, input any, opts falclient.SubmitOptions) (*falclient.SubmitResponse, error) {
	if h.killed() {
		return nil, errKilled
	}
	if _, err := h.Fal.Submit(ctx, model, input, opts); err != nil {
		return nil, err
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (h hangAfterSubmit) Status(ctx context.Context, model, requestID string, withLogs bool) (*falclient.Status, error) {
	if h.killed() {
		return nil, errKilled
	}
	return h.Fal.Status(ctx, model, requestID, withLogs)
}

func (h hangAfterSubmit) Result(ctx context.Context, model, requestID string) (json.RawMessage, error) {
	if h.killed() {
		return nil, errKilled
	}
	return h.Fal.Result(ctx, model, requestID)
}

func (h hangAfterSubmit) Cancel(ctx context.Context, model, requestID string) error {
	if h.killed() {
		return errKilled
	}
	return h.Fal.Cancel(ctx, model, requestID)
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
	var dead, afterDeath atomic.Int64
	dying, err := consumer.New(nc, hangAfterSubmit{Fal: af, dead: &dead, afterDeath: &afterDeath}, b.cfg,
		consumer.WithVerifier(b.fal.Verifier()), consumer.WithLogger(testLogger(t)))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	require.NoError(t, dying.Start(ctx))
	for i := range 7 {
		b.publish("k", fmt.Sprintf(`{"id":"kill-%d","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","_sim":{"latency_ms":1500}}}`, i))
	}
	waitFor(t, "four jobs at fal", func() bool { return b.stats().Submits == 4 })
	// kill -9: no more NATS and no more fal for it, no cleanup (its slots
	// stay taken in the admission record); its goroutines end on their own.
	dead.Store(1)
	nc.Close()
	killedAt := time.Now()
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
	// Bound: the dead replica's jobs end by fal's webhooks (1.5 s runs),
	// the 3 waiting ones are admitted as those slots come back and run
	// 1.5 s more; with margin for a loaded machine.
	took := time.Since(killedAt)
	t.Logf("all 7 jobs done %s after the kill", took.Round(time.Millisecond))
	require.Less(t, took, 15*time.Second, "slots of the dead replica came back late")
	require.EqualValues(t, 7, b.stats().Submits, "each job submitted once")
	require.Zero(t, afterDeath.Load(), "the dead replica called fal after its death")
	af.mu.Lock()
	defer af.mu.Unlock()
	require.LessOrEqual(t, af.maxTotal, 4)
}

// #15 budgets: a global budget of 0.05 a day at 0.01 per image, one image a
// job, one job pending at a time: exactly 5 jobs run; the rest end
// budget_exceeded (policy fail) or wait for the next window (policy wait),
// never reaching fal. The spend metric is the sum of the results' costs.
func TestBudgetStopsAdmission(t *testing.T) {
	t.Parallel()
	for _, policy := range []string{config.BudgetFail, config.BudgetWait} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *setupOpts) {
				o.cfg = func(c *config.Config) {
					c.Limits.MaxPending = 1
					c.Spend.Prices = []string{"fal-ai/flux/schnell=0.01/image"}
					c.Spend.Budgets = []string{"global=0.05/day"}
					c.Spend.BudgetPolicy = policy
				}
			})
			reg := prometheus.NewRegistry()
			p, err := consumer.New(b.nc, b.fal, b.cfg, consumer.WithVerifier(b.fal.Verifier()),
				consumer.WithLogger(testLogger(t)), consumer.WithMetrics(consumer.NewMetrics(reg)))
			require.NoError(t, err)
			b.start(p)
			for i := range 8 {
				b.publish("b", fmt.Sprintf(`{"id":"budget-%d","model_id":"fal-ai/flux/schnell","input":{"prompt":"p","num_images":1}}`, i))
			}
			var costs float64
			results, waiting := 0, 0
			if policy == config.BudgetWait {
				// Which 5 run is up to the race for the slot: wait until 3
				// are left waiting with 5 done.
				waitFor(t, "5 done, 3 waiting", func() bool {
					done, w := 0, 0
					for i := range 8 {
						switch b.jobStateOrEmpty(fmt.Sprintf("budget-%d", i)) {
						case "done":
							done++
						case "waiting":
							w++
						}
					}
					return done == 5 && w == 3
				})
			}
			for i := range 8 {
				id := fmt.Sprintf("budget-%d", i)
				if policy == config.BudgetWait && b.jobStateOrEmpty(id) == "waiting" {
					waiting++
					continue
				}
				res, ev := b.terminal(id)
				if ev != nil {
					require.Equal(t, publisher.CodeBudgetExceeded, ev.Code, id)
					require.Contains(t, ev.Message, "budget global")
					continue
				}
				require.NotNil(t, res.Cost, id)
				require.Equal(t, publisher.Cost{Amount: 0.01, Currency: "USD", Unit: "image", Quantity: 1, Estimated: true}, *res.Cost)
				costs += res.Cost.Amount
				results++
			}
			if policy == config.BudgetWait {
				require.Equal(t, 3, waiting)
			}
			require.Equal(t, 5, results, "exactly the budget's worth of jobs ran")
			require.EqualValues(t, 5, b.stats().Submits, "no job over the budget reached fal")
			require.InDelta(t, 0.05, costs, 1e-9)
			mfs, err := reg.Gather()
			require.NoError(t, err)
			var spent float64
			for _, mf := range mfs {
				if mf.GetName() == "falbridge_spend_total" {
					for _, m := range mf.GetMetric() {
						spent += m.GetCounter().GetValue()
					}
				}
			}
			require.InDelta(t, costs, spent, 1e-9, "falbridge_spend_total is the sum of the results' costs")
		})
	}
}

// #15 fairness across replicas: tenant A publishes 2,000 triggers, then
// tenant B 10, with no tenant cap, so nothing but the round-robin keeps A
// from taking every slot. Three replicas share the admission record; B's 10
// jobs must finish before A's 100th (the bound asserted), and the record's
// cost per admitted job is measured.
//
// Not parallel: the round-robin hands a lane's turn on when its waiters do
// not ask within 2 s, so a process starved of CPU by the rest of the suite
// under -race (B's waiters asking late) moves the figure — in one make test
// run B's 10 were done at A's 116th, against 13–61 when the test has the
// process to itself. The bound is the issue's; the starvation case is noted.
func TestFairnessAcrossReplicas(t *testing.T) {
	const nA, nB = 2000, 10
	b := setup(t, func(o *setupOpts) {
		o.quiet = true
		o.cfg = func(c *config.Config) {
			c.Limits.MaxPending = 4
			c.Polling.WebhookGrace = 20 * time.Second
			c.Streams.MaxTriggerBytes = 4096
		}
	})
	order := make(chan string, nA+nB)
	sub, err := b.nc.Subscribe("fal.results.>", func(m *nats.Msg) { order <- m.Subject[len("fal.results."):] })
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	var pools []*consumer.Pool
	for range 3 {
		pools = append(pools, b.start(b.newPool(nil)))
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	b.publishMany(ctx, nA, `{"id":"a-%04d","model_id":"fal-ai/flux/schnell","tenant":"A","input":{"prompt":"p","_sim":{"latency_ms":100}}}`)
	t.Logf("A's %d triggers published in %s", nA, time.Since(start).Round(time.Millisecond))
	for i := range nB {
		b.publish("b", fmt.Sprintf(`{"id":"b-%02d","model_id":"fal-ai/flux/schnell","tenant":"B","input":{"prompt":"p","_sim":{"latency_ms":100}}}`, i))
	}
	var aDone, bDone int
	for bDone < nB {
		select {
		case id := <-order:
			if id[0] == 'a' {
				aDone++
			} else {
				bDone++
			}
			if os.Getenv("FAIRNESS_TRACE") != "" {
				t.Logf("%s %s a=%d b=%d", time.Since(start).Round(time.Millisecond), id, aDone, bDone)
			}
		case <-ctx.Done():
			t.Fatalf("after %s only %d of A's and %d of B's jobs finished", time.Since(start), aDone, bDone)
		}
	}
	elapsed := time.Since(start)
	var gets, writes, conflicts int64
	for _, p := range pools {
		g, w, c := consumer.AdmissionOps(p)
		gets, writes, conflicts = gets+g, writes+w, conflicts+c
	}
	admitted := aDone + bDone
	t.Logf("B's %d jobs were done when A had %d done (%s after the first publish); admission record: %d gets, %d writes (%d conflicts) for %d jobs taken in, %d ended",
		nB, aDone, elapsed.Round(time.Millisecond), gets, writes, conflicts, nA+nB, admitted)
	require.Less(t, aDone, 100, "B's 10 jobs finished after A's 100th")
}

// The admission record's cost, measured: three replicas, caps 8, 300 jobs
// of two tenants (most of them waiting), to the end. It reports the record's
// KV reads and writes per job and bounds them.
func TestAdmissionCost(t *testing.T) {
	t.Parallel()
	const n = 300
	b := setup(t, func(o *setupOpts) {
		o.quiet = true
		o.cfg = func(c *config.Config) {
			c.Limits.MaxPending = 8
			c.Polling.WebhookGrace = 20 * time.Second
		}
	})
	var pools []*consumer.Pool
	for range 3 {
		pools = append(pools, b.start(b.newPool(nil)))
	}
	start := time.Now()
	for i := range n {
		tenant := "A"
		if i%3 == 2 {
			tenant = "B"
		}
		b.publish("c", fmt.Sprintf(`{"id":"cost-%03d","model_id":"fal-ai/flux/schnell","tenant":%q,"input":{"prompt":"p","_sim":{"latency_ms":50}}}`, i, tenant))
	}
	for i := range n {
		res, ev := b.terminal(fmt.Sprintf("cost-%03d", i))
		require.Nil(t, ev)
		require.NotNil(t, res)
	}
	took := time.Since(start)
	var gets, writes, conflicts, batches, changes int64
	for _, p := range pools {
		g, w, c, bt, ch := consumer.AdmissionCounts(p)
		gets, writes, conflicts, batches, changes = gets+g, writes+w, conflicts+c, batches+bt, changes+ch
	}
	t.Logf("%d jobs in %s (%.0f/s): admission record %d gets, %d writes (%d conflicts) = %.2f round trips per job; %d batches carried %d changes",
		n, took.Round(time.Millisecond), float64(n)/took.Seconds(), gets, writes, conflicts, float64(gets+writes)/n, batches, changes)
	require.Less(t, float64(gets+writes)/n, 40.0, "round trips per job")
}

// submitOrder records the order of submits and the queue priority each
// asked fal for.
type submitOrder struct {
	consumer.Fal
	mu    sync.Mutex
	order []string // input "n"
	prio  map[string]falclient.Priority
}

func (s *submitOrder) Submit(ctx context.Context, model string, input any, opts falclient.SubmitOptions) (*falclient.SubmitResponse, error) {
	var in struct {
		N string `json:"n"`
	}
	raw, _ := input.(json.RawMessage)
	_ = json.Unmarshal(raw, &in)
	s.mu.Lock()
	s.order = append(s.order, in.N)
	s.prio[in.N] = opts.Priority
	s.mu.Unlock()
	return s.Fal.Submit(ctx, model, input, opts)
}

// #15 priority: a tenant's waiting jobs are admitted high first, then
// normal, then low, whatever their arrival order, across three replicas;
// fal is asked for its low priority for low only (high and normal run at
// fal's normal priority).
func TestPriorityOrdersATenantsWaitingJobs(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.cfg = func(c *config.Config) {
			c.Limits.MaxPending = 1
			c.Polling.WebhookGrace = 10 * time.Second
		}
	})
	so := &submitOrder{Fal: b.fal, prio: map[string]falclient.Priority{}}
	for range 3 {
		b.start(b.newPool(so))
	}
	b.publish("p", `{"id":"prio-hold","model_id":"fal-ai/flux/schnell","tenant":"T","input":{"prompt":"p","n":"hold","_sim":{"latency_ms":1500}}}`)
	waitFor(t, "holder at fal", func() bool { return b.stats().Submits == 1 })
	var ids []string
	for i := range 4 {
		for _, p := range []string{"low", "normal", "high"} {
			id := fmt.Sprintf("prio-%s-%d", p, i)
			ids = append(ids, id)
			b.publish("p", fmt.Sprintf(`{"id":%q,"model_id":"fal-ai/flux/schnell","tenant":"T","priority":%q,"input":{"prompt":"p","n":%q,"_sim":{"latency_ms":50}}}`, id, p, p))
		}
	}
	waitFor(t, "12 waiting", func() bool {
		n := 0
		for _, id := range ids {
			if b.jobStateOrEmpty(id) == "waiting" {
				n++
			}
		}
		return n == 12
	})
	for _, id := range append(ids, "prio-hold") {
		res, ev := b.terminal(id)
		require.Nil(t, ev, id)
		require.NotNil(t, res)
	}
	so.mu.Lock()
	defer so.mu.Unlock()
	require.Equal(t, []string{"hold", "high", "high", "high", "high", "normal", "normal", "normal", "normal", "low", "low", "low", "low"}, so.order)
	require.Equal(t, falclient.PriorityNormal, so.prio["high"], "high runs at fal's normal priority")
	require.Equal(t, falclient.PriorityNormal, so.prio["normal"])
	require.Equal(t, falclient.PriorityLow, so.prio["low"])
}

// A long lane drains although its back asks only every few seconds: 600
// jobs of one tenant under a cap of 50 all complete, and fast.
func TestLongLaneDrains(t *testing.T) {
	t.Parallel()
	const n = 600
	b := setup(t, func(o *setupOpts) {
		o.quiet = true
		o.cfg = func(c *config.Config) {
			c.Limits.MaxPending = 50
			c.Polling.WebhookGrace = 30 * time.Second
			c.Streams.MaxTriggerBytes = 4096
		}
	})
	for range 3 {
		b.start(b.newPool(nil))
	}
	start := time.Now()
	b.publishMany(t.Context(), n, `{"id":"long-lane-%04d","model_id":"fal-ai/flux/schnell","tenant":"A","input":{"prompt":"p","_sim":{"latency_ms":50}}}`)
	for i := range n {
		res, ev := b.terminal(fmt.Sprintf("long-lane-%04d", i))
		require.Nil(t, ev)
		require.NotNil(t, res)
	}
	took := time.Since(start)
	t.Logf("%d jobs under a cap of 50 in %s (%.0f/s)", n, took.Round(time.Millisecond), n/took.Seconds())
	require.Less(t, took, 90*time.Second)
	require.EqualValues(t, n, b.stats().Submits)
}

// publishMany publishes n triggers, format filled with 0…n-1, at once
// (asynchronously), and waits for the stream's acks.
func (b *testBundle) publishMany(ctx context.Context, n int, format string) {
	b.t.Helper()
	acks := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		f, err := b.js.PublishAsync("fal.requests.many", fmt.Appendf(nil, format, i))
		require.NoError(b.t, err)
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.t.Fatal(err)
		case <-ctx.Done():
			b.t.Fatal("publish: ", ctx.Err())
		}
	}
}
