package consumer

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/publisher"
)

// sim drives decide without NATS: one record, waiters asking in random
// order, slots freed one at a time.
type admissionSim struct {
	t       *testing.T
	a       *admission
	rec     admissionRecord
	now     time.Time
	waiting []*job
	order   []string // tenants in admission order
}

func newAdmissionSim(t *testing.T, l config.Limits) *admissionSim {
	s := &admissionSim{t: t, now: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
	s.a = &admission{limits: l, prices: newPriceTable(nil), now: func() time.Time { return s.now }}
	s.rec.init()
	return s
}

// arrive offers a new job; admitted or queued.
func (s *admissionSim) arrive(id, tenant, model, priority string) {
	j := &job{ID: id, Tenant: tenant, ModelID: model, Priority: normPriority(priority)}
	if no, _ := s.a.decide(&s.rec, j, s.now); no == nil {
		s.order = append(s.order, tenant)
		return
	}
	require.NotNil(s.t, j.Ticket, "%s queued without a ticket", id)
	s.waiting = append(s.waiting, j)
}

// free releases one admitted job of tenant (any, when "").
func (s *admissionSim) free(rnd *rand.Rand) {
	ids := make([]string, 0, len(s.rec.Jobs))
	for id := range s.rec.Jobs {
		ids = append(ids, id)
	}
	require.NotEmpty(s.t, ids)
	delete(s.rec.Jobs, ids[rnd.IntN(len(ids))])
}

// askUntilAdmitted lets random waiters ask until one is admitted, and
// returns it. Each ask moves the clock 1 s / waiters: every waiter asks
// about once a second, as parked jobs do.
func (s *admissionSim) askUntilAdmitted(rnd *rand.Rand) *job {
	for range 100_000 {
		i := rnd.IntN(len(s.waiting))
		j := s.waiting[i]
		s.now = s.now.Add(time.Second / time.Duration(len(s.waiting)))
		if no, _ := s.a.decide(&s.rec, j, s.now); no == nil {
			s.waiting = append(s.waiting[:i], s.waiting[i+1:]...)
			s.order = append(s.order, j.Tenant)
			return j
		}
	}
	s.t.Fatal("nobody admitted")
	return nil
}

// A tenant with 2,000 waiting jobs does not starve one with 10: with the
// waiters asking in random order (tenant A asks 200 times as often), B's 10
// jobs are admitted within the first 2×10 slots that free.
func TestRoundRobinBetweenTenants(t *testing.T) {
	t.Parallel()
	s := newAdmissionSim(t, config.Limits{MaxPending: 4})
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		s.arrive(fmt.Sprintf("a-%d", i), "A", "fal-ai/flux/dev", "")
	}
	for i := range 10 {
		s.arrive(fmt.Sprintf("b-%d", i), "B", "fal-ai/flux/dev", "")
	}
	require.Len(t, s.rec.Jobs, 4)
	require.Len(t, s.rec.Lanes, 2, "one lane per tenant, model and priority: no ids")
	require.EqualValues(t, 1996, s.rec.Lanes[laneKey("", "A", "fal-ai/flux/dev")].waiting())
	require.EqualValues(t, 10, s.rec.Lanes[laneKey("", "B", "fal-ai/flux/dev")].waiting())
	bDone := 0
	for n := 1; bDone < 10; n++ {
		s.free(rnd)
		if s.askUntilAdmitted(rnd).Tenant == "B" {
			bDone++
		}
		require.LessOrEqual(t, n, 20, "B's 10 jobs need at most 20 freed slots")
	}
	require.NotContains(t, s.rec.Lanes, laneKey("", "B", "fal-ai/flux/dev"), "an empty lane is dropped")
	// B's turns alternate with A's, B first (A was served last).
	got := s.order[4:]
	require.Len(t, got, 19, "%v", got)
	for i, tenant := range got {
		require.Equal(t, []string{"B", "A"}[i%2], tenant, "slot %d: %v", i, got)
	}
}

// Within a tenant, high goes before normal before low; across tenants the
// round-robin still holds.
func TestPriorityWithinTenant(t *testing.T) {
	t.Parallel()
	s := newAdmissionSim(t, config.Limits{MaxPending: 1})
	rnd := rand.New(rand.NewPCG(3, 4))
	s.arrive("first", "A", "m/x", "")
	for i := range 5 {
		s.arrive(fmt.Sprintf("low-%d", i), "A", "m/x", "low")
		s.arrive(fmt.Sprintf("normal-%d", i), "A", "m/x", "normal")
		s.arrive(fmt.Sprintf("high-%d", i), "A", "m/x", "high")
	}
	var got []string
	for range 15 {
		s.free(rnd)
		got = append(got, s.askUntilAdmitted(rnd).Priority)
	}
	want := []string{"high", "high", "high", "high", "high", "normal", "normal", "normal", "normal", "normal", "low", "low", "low", "low", "low"}
	require.Equal(t, want, got)
}

// A lane blocked by its model's cap does not hold the turn: the tenant's
// other model, and other tenants, use the free slots.
func TestBlockedLaneDoesNotHoldTheTurn(t *testing.T) {
	t.Parallel()
	s := newAdmissionSim(t, config.Limits{MaxPending: 4, MaxPendingPerModel: 1})
	rnd := rand.New(rand.NewPCG(5, 6))
	s.arrive("x0", "A", "m/x", "")
	s.arrive("x1", "A", "m/x", "") // waits: model x at its cap
	s.arrive("y0", "A", "m/y", "") // admitted: y has room
	s.arrive("z0", "B", "m/z", "") // admitted
	require.Len(t, s.rec.Jobs, 3)
	require.Len(t, s.waiting, 1)
	s.arrive("w0", "C", "m/w", "") // a slot is free and x is blocked: C takes it
	require.Len(t, s.rec.Jobs, 4)
	delete(s.rec.Jobs, "x0")
	require.Equal(t, "x1", s.askUntilAdmitted(rnd).ID)
}

// A lane whose waiters stopped asking is dropped after laneTTL: its turn
// blocks nobody for longer.
func TestDeadLaneIsDropped(t *testing.T) {
	t.Parallel()
	s := newAdmissionSim(t, config.Limits{MaxPending: 1})
	s.arrive("a0", "A", "m/x", "")
	s.arrive("ghost", "A", "m/x", "") // queued, then never asks again
	delete(s.rec.Jobs, "a0")
	s.rec.Served["A"] = 0 // A's turn comes first
	s.rec.Served["B"] = 5
	b := &job{ID: "b0", Tenant: "B", ModelID: "m/x", Priority: "normal"}
	no, _ := s.a.decide(&s.rec, b, s.now)
	require.NotNil(t, no, "A's lane has the turn")
	require.Equal(t, waitTurn, no.kind)
	s.now = s.now.Add(laneTTL + time.Second)
	b.Ticket = nil
	no, _ = s.a.decide(&s.rec, b, s.now)
	require.Nil(t, no, "A's lane is dead: B is admitted")
}

// A lane that has the turn but whose waiters do not come (a ticket taken
// by a job that then vanished) loses it after laneStall; the turn comes
// back as soon as one of its waiters asks.
func TestStalledLaneLosesItsTurn(t *testing.T) {
	t.Parallel()
	s := newAdmissionSim(t, config.Limits{MaxPending: 1})
	s.arrive("a0", "A", "m/x", "")
	s.arrive("a1", "A", "m/x", "")    // a real waiter of A
	s.arrive("ghost", "A", "m/x", "") // a ticket nobody will use
	s.arrive("b0", "B", "m/x", "")
	delete(s.rec.Jobs, "a0")
	s.rec.Served["A"], s.rec.Served["B"] = 0, 5 // A's turn
	b := s.waiting[2]
	require.Equal(t, "b0", b.ID)
	no, write := s.a.decide(&s.rec, b, s.now)
	require.NotNil(t, no)
	require.True(t, write, "the owed turn is recorded")
	s.now = s.now.Add(laneStall / 2)
	no, _ = s.a.decide(&s.rec, b, s.now)
	require.NotNil(t, no, "A still has its turn")
	// a1 asks: refused? No: it is A's turn, so a1 is admitted.
	a1 := s.waiting[0]
	require.Nil(t, mustDecide(t, s, a1))
	delete(s.rec.Jobs, "a1")
	s.rec.Served["A"], s.rec.Served["B"] = 0, 5 // A's turn again, but only the ghost is left
	no, _ = s.a.decide(&s.rec, b, s.now)
	require.NotNil(t, no)
	s.now = s.now.Add(laneStall + time.Millisecond)
	require.Nil(t, mustDecide(t, s, b), "A's lane stalled: B takes the slot")
}

func mustDecide(t *testing.T, s *admissionSim, j *job) *refusal {
	t.Helper()
	no, _ := s.a.decide(&s.rec, j, s.now)
	return no
}

// The record stays small however many jobs wait: lanes are counters.
func TestAdmissionRecordSizeIsBounded(t *testing.T) {
	t.Parallel()
	s := newAdmissionSim(t, config.Limits{MaxPending: 10})
	for i := range 20_000 {
		s.arrive(fmt.Sprintf("j-%d", i), fmt.Sprintf("t%d", i%4), "fal-ai/flux/dev", "")
	}
	b, err := jsonSize(s.rec)
	require.NoError(t, err)
	require.Less(t, b, 4096, "20,000 waiting jobs in 4 lanes")
	for i := range maxLanes + 10 {
		j := &job{ID: fmt.Sprintf("k-%d", i), Tenant: fmt.Sprintf("u%d", i), ModelID: "fal-ai/flux/dev", Priority: "normal"}
		no, _ := s.a.decide(&s.rec, j, s.now)
		require.NotNil(t, no)
	}
	require.Len(t, s.rec.Lanes, maxLanes, "lanes are bounded")
}

func jsonSize(v any) (int, error) {
	b, err := json.Marshal(v)
	return len(b), err
}

// falbridge_waiting: one series per model and tenant label, from the last
// record seen, dead lanes left out, labels capped as every model and tenant
// label is (a malformed model id is "invalid", a tenant past the cap
// "other"); a lane that empties leaves no stale series.
func TestWaitingGauge(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	now := time.Now()
	live := func(n uint64) *lane { return &lane{Next: n, Until: now.Add(time.Minute)} }
	rec := admissionRecord{Lanes: map[string]*lane{
		laneKey("high", "A", "fal-ai/flux/dev"):   live(2),
		laneKey("normal", "A", "fal-ai/flux/dev"): live(3),
		laneKey("normal", "B", "fal-ai//bad"):     live(1),
		laneKey("normal", "C", "fal-ai/flux/dev"): {Next: 9, Until: now.Add(-time.Second)}, // dead
	}}
	m.models.label("fal-ai/flux/dev", true) // fal accepted a job of it
	for i := range maxModelLabels {
		m.tenants.label(fmt.Sprintf("filler-%d", i))
	}
	m.tenants.mu.Lock()
	delete(m.tenants.seen, "filler-0")
	m.tenants.seen["A"] = struct{}{}
	m.tenants.mu.Unlock()
	m.observeAdmission(&rec, now)
	got := waitingSeries(t, reg)
	require.Equal(t, map[string]float64{"fal-ai/flux/dev|A": 5, "invalid|other": 1}, got)

	delete(rec.Lanes, laneKey("normal", "B", "fal-ai//bad"))
	m.observeAdmission(&rec, now)
	require.Equal(t, map[string]float64{"fal-ai/flux/dev|A": 5}, waitingSeries(t, reg))

	m.admittedJob()
	m.admittedJob()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var admitted float64
	for _, mf := range mfs {
		if mf.GetName() == "falbridge_admitted_total" {
			admitted = mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	require.InDelta(t, 2, admitted, 0)
}

func waitingSeries(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "falbridge_waiting" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range mt.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			out[labels["model"]+"|"+labels["tenant"]] = mt.GetGauge().GetValue()
		}
	}
	return out
}

// LimitsInfo explains a waiting job from the record alone, and reads a
// record written by an older falbridge (no caps in it) without failing.
func TestLimitsInfoWaitReason(t *testing.T) {
	t.Parallel()
	s := newAdmissionSim(t, config.Limits{MaxPending: 1})
	s.arrive("a0", "A", "m/x", "")
	s.arrive("a1", "A", "m/x", "")
	s.arrive("b0", "B", "m/x", "high")
	s.rec.Limits = &recordLimits{MaxPending: 1, At: s.now}
	li := &LimitsInfo{On: true, rec: s.rec, at: s.now}
	require.Equal(t, "limits.max_pending (1)", li.WaitReason(&publisher.JobInfo{ID: "a1", State: "waiting", ModelID: "m/x", Tenant: "A"}))
	delete(li.rec.Jobs, "a0")
	require.Equal(t, `its turn: tenant "B" was admitted longer ago (round-robin between tenants)`,
		li.WaitReason(&publisher.JobInfo{ID: "a1", State: "waiting", ModelID: "m/x", Tenant: "A"}))
	require.Contains(t, li.WaitReason(&publisher.JobInfo{ID: "b0", State: "waiting", ModelID: "m/x", Tenant: "B", Priority: "high"}), "a slot is free for it")
	require.Empty(t, li.WaitReason(&publisher.JobInfo{ID: "x", State: "submitted"}))
	_, ok := li.rec.Jobs["b0"]
	require.False(t, ok, "explaining changes nothing")

	li.rec.Limits = nil
	require.Empty(t, li.WaitReason(&publisher.JobInfo{ID: "a1", State: "waiting", ModelID: "m/x", Tenant: "A"}))
}

// How often a waiter asks: about 25 times a second per lane at the front,
// 0.1-3 s per waiter; past the first 200, by position, at most every 10 s,
// sooner in a lane that moves fast, and as the front in a lane too young
// to have a pace.
func TestAskIntervals(t *testing.T) {
	t.Parallel()
	within := func(d, lo, hi time.Duration) {
		t.Helper()
		require.GreaterOrEqual(t, d, lo)
		require.LessOrEqual(t, d, hi)
	}
	one := refusal{kind: waitCap, waiting: 1}
	within(one.retry(), minAskInterval, 2*minAskInterval)
	front := refusal{kind: waitCap, waiting: 2000, position: 0}
	within(front.retry(), maxAskInterval/2, maxAskInterval*6/5)
	edge := refusal{kind: waitCap, waiting: 2000, position: laneFront - 1}
	within(edge.retry(), maxAskInterval, maxAskInterval*6/5)
	back := refusal{kind: waitCap, waiting: 2000, position: 400}
	within(back.retry(), 2*maxAskInterval, 2*maxAskInterval*6/5)
	far := refusal{kind: waitCap, waiting: 10_000, position: 9_000}
	within(far.retry(), backAskInterval, backAskInterval*6/5)
	young := refusal{kind: waitCap, waiting: 2000, position: 1500, pace: -1}
	within(young.retry(), maxAskInterval/2, maxAskInterval*6/5) // a new lane: all ask as its front
	fast := refusal{kind: waitCap, waiting: 2000, position: 1500, pace: 100}
	within(fast.retry(), 6505*time.Millisecond, 7806*time.Millisecond) // (1500-200+1)/100/2 s: half way to the front
	budget := refusal{kind: waitBudget, waiting: 3}
	within(budget.retry(), maxAskInterval, maxAskInterval*6/5)
	// The lane's total: a lane of 2,000 asks a few hundred times a second.
	var perSecond float64
	for pos := range 2000 {
		r := refusal{kind: waitCap, waiting: 2000, position: uint64(pos)} // pace 0: not moving
		perSecond += 1 / r.retry().Seconds()
	}
	within(time.Duration(perSecond), 150, 400)
	t.Logf("a lane of 2,000 waiters asks about %.0f times a second", perSecond)
}

// The start-up warning: limits.max_pending admitted jobs that may not fit
// one NATS message are said so.
func TestWarnIfRecordTooBig(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, nil))
	(&admission{limits: config.Limits{MaxPending: 10_000}}).warnIfTooBig(log, 1<<20)
	require.Contains(t, buf.String(), "may not fit the admission record")
	buf.Reset()
	(&admission{limits: config.Limits{MaxPending: 8_000}}).warnIfTooBig(log, 1<<20)
	require.Empty(t, buf.String())
	// And the estimate is not optimistic: 8,000 entries of 31-character
	// ids, a model and a tenant.
	s := newAdmissionSim(t, config.Limits{MaxPending: 8_000})
	for i := range 8_000 {
		s.arrive(fmt.Sprintf("aaaaaaaaaaaaaaaaaaaaaaaaaa%05d", i), "team-a", "fal-ai/flux/schnell", "")
	}
	n, err := jsonSize(s.rec)
	require.NoError(t, err)
	require.LessOrEqual(t, n, 8_000*admittedEntryBytes)
}

// With several slots free, a lane that goes first keeps one, not all:
// A (served last) takes the free slots but one while B, whose turn it is,
// has not asked yet; with one slot left, B's turn holds.
func TestLanesAheadKeepOneSlotEach(t *testing.T) {
	t.Parallel()
	s := newAdmissionSim(t, config.Limits{MaxPending: 4})
	for i := range 4 {
		s.arrive(fmt.Sprintf("a%d", i), "A", "m/x", "")
	}
	for i := range 6 {
		s.arrive(fmt.Sprintf("w%d", i), "A", "m/x", "") // A's waiters
	}
	s.arrive("b0", "B", "m/x", "") // B waits, and has the turn (never served)
	for i := range 3 {
		delete(s.rec.Jobs, fmt.Sprintf("a%d", i)) // three slots free
	}
	admitted := 0
	for _, j := range s.waiting[:6] {
		if mustDecide(t, s, j) == nil {
			admitted++
		}
	}
	require.Equal(t, 2, admitted, "A takes two of the three free slots; one stays B's")
	no := mustDecide(t, s, s.waiting[5])
	require.NotNil(t, no)
	require.Contains(t, no.reason, `tenant "B"`)
	require.Nil(t, mustDecide(t, s, s.waiting[6]), "B takes its slot")
}
