package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/publisher"
)

// Admission control: caps on the jobs pending at fal that hold across every
// replica (limits.max_pending, max_pending_per_model, pending_model_limits,
// max_pending_per_tenant), budgets (spend.budgets), and a fair order among
// the jobs that wait.
//
// The mechanism is one record in the job bucket, admissionKey, read and
// written by compare-and-set only. It holds
//
//   - the admitted jobs (id → model, tenant, when): admitting a job adds its
//     id only if every cap still has room, so the caps are never exceeded,
//     not even by one (two replicas admitting at once conflict on the
//     revision and one decides again); releasing removes it. Both are
//     idempotent, so a lost reply is harmless;
//   - the spend of each budget's current window;
//   - the waiting jobs, as lanes: one per tenant, model and priority, each a
//     few counters (tickets issued, tickets resolved, the turn it was last
//     served, until when it is alive), never the waiting ids. The record's
//     size is bounded by limits.max_pending entries plus maxLanes lanes,
//     however many triggers wait;
//   - the round-robin clock: the turn at which each tenant was last
//     admitted.
//
// Whose turn it is: among the lanes that could use a free slot (their
// model's and tenant's caps and budgets have room), the tenant admitted
// longest ago goes first (round-robin between tenants: a tenant with 2,000
// waiting jobs gets every other slot against one with 10, not 2,000 of
// 2,010); within it, the highest priority (high, normal, low); within that,
// the model served longest ago; within a lane, any of its waiters, which ask
// more often the earlier their ticket (so roughly in arrival order). A job
// arriving while its lane has waiters queues behind them. With several
// slots free, each lane that goes before a job keeps one of them and the job
// may take another (see turn). Every waiter decides for itself from the
// record whether it is its turn: no leader, no list of ids.
//
// A lane lives while its waiters ask: each ask that finds less than
// laneTTL-laneRefresh left pushes its life on (one write per lane per few
// seconds, not per ask). A lane whose waiters all vanished (a crash between
// registering a ticket and storing the job) is dropped after laneTTL, so a
// turn held by nobody blocks the others for at most that long.
//
// A job is admitted before it is claimed and released after its done record
// is written, on every way a job ends. A replica that dies between the two
// leaves an id whose record is done or missing; the sweep removes such ids
// (a missing record only when the entry is older than a claim can take), so
// slots come back within one polling.sweep_interval.
//
// Cost in JetStream round trips, with caps on: a job admitted at once, 1 KV
// get + 1 KV update of the record at admission and the same at release. A
// job that waits, 1 more update when it first queues (its ticket), then 1
// get per ask (shared by the asks a replica has in flight at once; a parked
// job's ask is also its timer's delivery, Nak, and a read of its job
// record): 0.1 s to maxAskInterval apart, see refusal.retry. Each conflict
// on the record costs one more get + update. With caps off
// (limits.max_pending 0) none of this runs.

// admissionKey is the admission record in the job bucket. It has a dot, so
// no trigger id can collide with it.
const admissionKey = "falbridge.admission"

// Asks of waiting jobs (see refusal.retry): a lane asks about laneAskRate
// times a second in all, each of its waiters every minAskInterval to
// maxAskInterval.
const (
	laneAskRate    = 25
	minAskInterval = 100 * time.Millisecond
	maxAskInterval = 3 * time.Second
)

// laneFront is the part of a lane that asks at the full rate; a waiter
// further back asks every maxAskInterval × position/laneFront, at most
// every backAskInterval.
const (
	laneFront       = 200
	backAskInterval = 10 * time.Second
)

// laneNext is how many of the front of the lane that has the next turn ask
// every minAskInterval while every slot is taken.
const laneNext = 4

// laneTTL is how long a lane lives without an ask; laneRefresh is how much
// of it may pass before an ask writes the record to push it on.
const (
	laneTTL     = 10 * time.Second
	laneRefresh = 4 * time.Second
)

// laneStall is how long a lane may have the turn without one of its
// waiters asking before the turn passes on (see lane.Owed). A live lane
// asks about laneAskRate times a second.
const laneStall = 2 * time.Second

// maxLanes bounds the lanes in the record. A job whose lane would be one too
// many waits unqueued: it takes a slot only when its lane would have won the
// turn (it competes as if its lane were empty), without a ticket.
const maxLanes = 512

// admissionConflicts bounds the compare-and-set attempts of one admit or
// release; past it the caller retries later.
const admissionConflicts = 64

// admissionRecord is the body of admissionKey.
type admissionRecord struct {
	Jobs map[string]admitted `json:"jobs"`
	// Spend is the estimated spend per budget and window (spendKey), for
	// spend.budgets; windows over two days old are dropped.
	Spend map[string]float64 `json:"spend,omitempty"`
	// Lanes are the waiting jobs by laneKey.
	Lanes map[string]*lane `json:"lanes,omitempty"`
	// Served is the turn of each tenant's last admission, for tenants
	// with jobs admitted or waiting.
	Served map[string]uint64 `json:"served,omitempty"`
	// Turn counts admissions; Seq numbers lanes.
	Turn uint64 `json:"turn,omitempty"`
	Seq  uint64 `json:"seq,omitempty"`
	// Limits are the caps and budgets of the replica that wrote last, for
	// tools (falbridge limits).
	Limits *recordLimits `json:"limits,omitempty"`
}

// admitted is one admitted job.
type admitted struct {
	Model  string    `json:"m"`
	Tenant string    `json:"t,omitempty"`
	At     time.Time `json:"at"`
}

// lane is the waiting jobs of one tenant, model and priority: tickets
// Done..Next-1 are waiting (approximately: see ticket).
type lane struct {
	// Epoch numbers this lane instance: a ticket of a dropped lane is
	// not one of a new lane with the same key.
	Epoch uint64 `json:"e"`
	// Next is the next ticket; Done counts the tickets resolved (admitted,
	// or ended while waiting). Next-Done jobs wait.
	Next uint64 `json:"n"`
	Done uint64 `json:"d"`
	// Served is the turn of the lane's last admission.
	Served uint64 `json:"s,omitempty"`
	// Rate is the lane's admissions a second, measured over windows of at
	// least rateWindow: RateN admissions since RateAt.
	Rate   float64   `json:"r,omitempty"`
	RateAt time.Time `json:"ra,omitzero"`
	RateN  int       `json:"rn,omitempty"`
	// Until is when the lane is dropped unless a waiter asks; Born is when
	// it was created.
	Until time.Time `json:"u"`
	Born  time.Time `json:"b"`
	// Owed is when the lane was first found to have the turn without one
	// of its waiters taking it; an ask of one of its waiters clears it.
	// Owed longer than laneStall, the lane has lost its turn (its waiters
	// are gone, or too slow to ask) until one of them asks again.
	Owed time.Time `json:"o,omitzero"`
}

func (l *lane) waiting() uint64 {
	if l.Next <= l.Done {
		return 0
	}
	return l.Next - l.Done
}

// live reports whether the lane has waiters that asked recently.
func (l *lane) live(now time.Time) bool { return l.waiting() > 0 && now.Before(l.Until) }

// rateWindow is the least time over which a lane's pace is measured.
const rateWindow = 2 * time.Second

// admitted counts one admission into the lane's pace.
func (l *lane) countAdmission(now time.Time) {
	if l.RateAt.IsZero() {
		l.RateAt = now
	}
	l.RateN++
	if el := now.Sub(l.RateAt); el >= rateWindow {
		l.Rate = float64(l.RateN) / el.Seconds()
		l.RateAt, l.RateN = now, 0
	}
}

// pace is the lane's admissions a second as last measured, 0 when it has
// not moved for a while, and -1 while it is too young to tell.
func (l *lane) pace(now time.Time) float64 {
	switch {
	case l.RateAt.IsZero() && now.Sub(l.Born) < youngLane:
		return -1
	case l.RateAt.IsZero() || now.Sub(l.RateAt) > 3*rateWindow:
		return 0
	}
	return l.Rate
}

// youngLane is how long a new lane's waiters all ask as its front does,
// before its pace is known.
const youngLane = 30 * time.Second

// stalled reports whether the lane has owed a claim for over laneStall.
func (l *lane) stalled(now time.Time) bool { return !l.Owed.IsZero() && now.Sub(l.Owed) > laneStall }

// owe marks the lane as having the turn; true when that is news.
func (l *lane) owe(now time.Time) bool {
	if !l.Owed.IsZero() {
		return false
	}
	l.Owed = now
	return true
}

// ticket is a waiting job's place in its lane, stored in its job record.
// The counts it feeds are exact when every waiter ends once through finish
// (admitted, canceled, timed out); a crash between taking a ticket and
// storing the job leaves one too many until the lane empties or is dropped.
type ticket struct {
	Epoch uint64 `json:"e"`
	N     uint64 `json:"n"`
}

// recordLimits is what the writer of the record had configured.
type recordLimits struct {
	MaxPending   int            `json:"max_pending"`
	PerModel     int            `json:"max_pending_per_model,omitempty"`
	Models       map[string]int `json:"pending_model_limits,omitempty"`
	PerTenant    int            `json:"max_pending_per_tenant,omitempty"`
	Budgets      []string       `json:"budgets,omitempty"`
	BudgetPolicy string         `json:"budget_policy,omitempty"`
	Currency     string         `json:"currency,omitempty"`
	// UnitPrices are the prices of the models admitted or waiting, for
	// the budget estimates tools show.
	UnitPrices map[string]float64 `json:"unit_prices,omitempty"`
	At         time.Time          `json:"at"`
}

// Priorities as ranks: lower goes first.
func priorityRank(p string) int {
	switch p {
	case publisher.PriorityHigh:
		return 0
	case publisher.PriorityLow:
		return 2
	}
	return 1
}

// normPriority maps "" to normal.
func normPriority(p string) string {
	if p == "" {
		return publisher.PriorityNormal
	}
	return p
}

// laneKey names the lane of a priority, tenant and model. Neither a
// priority nor a tenant holds '|'; the model comes last.
func laneKey(priority, tenant, model string) string {
	return normPriority(priority) + "|" + tenant + "|" + model
}

// splitLaneKey is laneKey's inverse.
func splitLaneKey(k string) (priority, tenant, model string) {
	priority, rest, _ := strings.Cut(k, "|")
	tenant, model, _ = strings.Cut(rest, "|")
	return priority, tenant, model
}

// admission applies the caps and budgets through the admission record.
type admission struct {
	kv       jetstream.KeyValue
	jobs     *jobStore // to store a waiting job's new ticket
	limits   config.Limits
	spendCfg config.Spend
	budgets  []config.Budget
	prices   *priceTable
	now      func() time.Time
	metrics  *Metrics
	// ops counts the record's reads, writes and write conflicts, and the
	// batches and the changes they carried.
	ops struct{ gets, writes, conflicts, batches, changes atomic.Int64 }

	mu      sync.Mutex
	queued  []*admissionOp
	running bool
}

// unitPrice is the estimate a pending job of model counts against its
// budgets: one unit at its price (its real cost is known only at the end).
func (a *admission) unitPrice(model string) float64 {
	p, _ := a.prices.get(model)
	return p.Amount
}

// errAdmissionBusy: too many concurrent writers; try again later.
var errAdmissionBusy = errors.New("admission record busy")

// loadAdmission reads the admission record and its revision (0: none yet).
func loadAdmission(ctx context.Context, kv jetstream.KeyValue) (admissionRecord, uint64, error) {
	rec := admissionRecord{}
	e, err := kv.Get(ctx, admissionKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		rec.init()
		return rec, 0, nil
	case err != nil:
		return rec, 0, fmt.Errorf("admission record: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, 0, fmt.Errorf("admission record: %w", err)
	}
	rec.init()
	return rec, e.Revision(), nil
}

func (rec *admissionRecord) init() {
	if rec.Jobs == nil {
		rec.Jobs = map[string]admitted{}
	}
	if rec.Lanes == nil {
		rec.Lanes = map[string]*lane{}
	}
	if rec.Served == nil {
		rec.Served = map[string]uint64{}
	}
}

// load returns the admission record and its revision (0: none yet).
func (a *admission) load(ctx context.Context) (admissionRecord, uint64, error) {
	a.ops.gets.Add(1)
	rec, rev, err := loadAdmission(ctx, a.kv)
	if err == nil {
		a.metrics.observeAdmission(&rec, a.now())
	}
	return rec, rev, err
}

// store writes rec over revision rev (0: create it). A revision mismatch
// wraps jetstream.ErrKeyExists.
func (a *admission) store(ctx context.Context, rec admissionRecord, rev uint64) error {
	rec.Limits = &recordLimits{
		MaxPending: a.limits.MaxPending, PerModel: a.limits.MaxPendingPerModel, Models: a.limits.PendingModelLimits,
		PerTenant: a.limits.MaxPendingPerTenant, Budgets: a.spendCfg.Budgets, BudgetPolicy: a.spendCfg.BudgetPolicy,
		Currency: a.spendCfg.Currency, At: a.now().UTC(),
	}
	if len(a.budgets) > 0 {
		rec.Limits.UnitPrices = map[string]float64{}
		add := func(model string) {
			if p := a.unitPrice(model); p > 0 {
				rec.Limits.UnitPrices[model] = p
			}
		}
		for _, e := range rec.Jobs {
			add(e.Model)
		}
		for k := range rec.Lanes {
			_, _, model := splitLaneKey(k)
			add(model)
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	a.ops.writes.Add(1)
	if rev == 0 {
		_, err = a.kv.Create(ctx, admissionKey, b)
	} else {
		_, err = a.kv.Update(ctx, admissionKey, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		a.ops.conflicts.Add(1)
	}
	if err == nil {
		a.metrics.observeAdmission(&rec, a.now())
	}
	return err
}

// usage is what the admitted jobs take: counts per model and tenant, and
// the estimate of every budget's window.
type usage struct {
	total          int
	model, tenant  map[string]int
	budgetEstimate []float64 // by index into a.budgets
}

func (a *admission) usage(rec *admissionRecord, now time.Time) usage {
	u := usage{total: len(rec.Jobs), model: map[string]int{}, tenant: map[string]int{}}
	for _, e := range rec.Jobs {
		u.model[e.Model]++
		u.tenant[e.Tenant]++
	}
	if len(a.budgets) > 0 {
		u.budgetEstimate = make([]float64, len(a.budgets))
		for i, b := range a.budgets {
			est := rec.Spend[spendKey(b, now)]
			for _, e := range rec.Jobs {
				if applies(b, e.Model, e.Tenant) {
					est += a.unitPrice(e.Model)
				}
			}
			u.budgetEstimate[i] = est
		}
	}
	return u
}

// full returns which caps leave no room for one more job of model and
// tenant ("" when every cap has room).
func (a *admission) full(u usage, model, tenant string) string {
	l := a.limits
	modelCap, tenantCap := l.PendingModelLimit(model), l.MaxPendingPerTenant
	var caps []string
	if u.total >= l.MaxPending {
		caps = append(caps, fmt.Sprintf("limits.max_pending (%d)", l.MaxPending))
	}
	if modelCap > 0 && u.model[model] >= modelCap {
		caps = append(caps, fmt.Sprintf("model %s's cap (%d)", model, modelCap))
	}
	if tenantCap > 0 && u.tenant[tenant] >= tenantCap {
		caps = append(caps, fmt.Sprintf("tenant %q's cap (limits.max_pending_per_tenant %d)", tenant, tenantCap))
	}
	return strings.Join(caps, " and ")
}

// overBudget returns the budget one more job of model and tenant would
// pass ("" when none): its window's spend, plus one unit of every pending
// job it covers, plus one unit of this job.
func (a *admission) overBudget(u usage, model, tenant string) string {
	for i, b := range a.budgets {
		if !applies(b, model, tenant) {
			continue
		}
		if u.budgetEstimate[i]+a.unitPrice(model) > b.Amount+1e-9 {
			return fmt.Sprintf("budget %s (%g per %s)", b.Key(), b.Amount, b.Window)
		}
	}
	return ""
}

// Kinds of refusal.
const (
	waitCap    = "cap"
	waitBudget = "budget"
	waitTurn   = "turn"
)

// refusal says why a job was not admitted.
type refusal struct {
	reason string // the cap, budget or turn it waits for
	kind   string // waitCap, waitBudget or waitTurn
	budget bool   // a budget, not a cap
	// position is the number of jobs before it in its lane, waiting the
	// number of jobs in its lane, pace the lane's admissions a second (0:
	// unknown).
	position, waiting uint64
	pace              float64
	// next: only the global cap is full and its lane has the next turn.
	next bool
}

// retry is how long the refused job waits before it asks again. A lane as
// a whole asks about laneAskRate times a second, so that a slot granted to
// it is taken within about 1/laneAskRate however few jobs it holds; the
// front of a lane asks twice as often as its back (roughly arrival order);
// within its first laneFront tickets no waiter asks less often than every
// maxAskInterval. Past them a waiter asks less often the further back it
// is (maxAskInterval × position/laneFront, at most backAskInterval): a
// long lane costs fewer reads, and by the time the front has moved on, its
// position, and so its wait, has shrunk.
func (r *refusal) retry() time.Duration {
	if r.next && r.position < laneNext {
		// The next slot that frees is its lane's: be there.
		return jittered(minAskInterval)
	}
	if r.position >= laneFront && r.pace >= 0 {
		d := min(time.Duration(float64(maxAskInterval)*float64(r.position)/laneFront), backAskInterval)
		if r.pace > 0 {
			// A lane moving fast: ask about half way to the front.
			eta := float64(r.position-laneFront+1) / r.pace
			d = min(d, time.Duration(eta/2*float64(time.Second)))
		}
		return jittered(max(d, minAskInterval))
	}
	if r.kind == waitBudget {
		// Budgets change as jobs end or windows turn, not by the second.
		return jittered(maxAskInterval)
	}
	n := min(max(r.waiting, 1), laneFront)
	base := min(max(time.Duration(n)*time.Second/laneAskRate, minAskInterval), maxAskInterval)
	d := base/2 + time.Duration(float64(base)*float64(min(r.position, n))/float64(n))
	return jittered(min(max(d, minAskInterval), maxAskInterval))
}

// decide admits j into rec if it is its turn and every cap and budget has
// room, and otherwise queues it in its lane (j.Ticket is set when it takes a
// ticket). It returns nil when j is admitted, or why not; write says that
// rec changed and must be stored.
func (a *admission) decide(rec *admissionRecord, j *job, now time.Time) (no *refusal, write bool) {
	if _, ok := rec.Jobs[j.ID]; ok {
		return nil, false
	}
	u := a.usage(rec, now)
	key := laneKey(j.Priority, j.Tenant, j.ModelID)
	if full := a.full(u, j.ModelID, j.Tenant); full != "" {
		no := refusal{reason: full, kind: waitCap}
		if u.total >= a.limits.MaxPending && a.overBudget(u, j.ModelID, j.Tenant) == "" {
			// Only a slot anywhere missing? Then, if its lane would have
			// the next turn, it asks fast: a slot that frees is its own.
			u1 := u
			u1.total = a.limits.MaxPending - 1
			if a.full(u1, j.ModelID, j.Tenant) == "" {
				t := a.turn(rec, u1, j, key, now)
				no.next = t.reason == ""
			}
		}
		return a.queue(rec, j, key, now, no)
	}
	if over := a.overBudget(u, j.ModelID, j.Tenant); over != "" {
		no := refusal{reason: over, kind: waitBudget, budget: true}
		if a.spendCfg.BudgetPolicy == config.BudgetFail {
			return &no, false // it ends: no ticket
		}
		return a.queue(rec, j, key, now, no)
	}
	t := a.turn(rec, u, j, key, now)
	if t.reason != "" {
		owed := false
		for _, l := range t.owe {
			owed = l.owe(now) || owed
		}
		no, write := a.queue(rec, j, key, now, refusal{kind: waitTurn, reason: t.reason})
		return no, write || owed
	}
	mine := t.mine
	rec.Jobs[j.ID] = admitted{Model: j.ModelID, Tenant: j.Tenant, At: now.Truncate(time.Second)}
	rec.Turn++
	rec.Served[j.Tenant] = rec.Turn
	if mine != nil {
		mine.Served = rec.Turn
		mine.Owed = time.Time{}
		mine.countAdmission(now)
		// (An unqueued job standing in for a stalled lane resolves one
		// of its tickets: the lane's count was too high.)
		mine.Done++
		if mine.waiting() == 0 {
			delete(rec.Lanes, key)
		}
	}
	j.Ticket = nil
	rec.prune(now)
	return nil, true
}

// turnResult says whose turn it is for job j: reason is "" when it is j's,
// else which lane's; owe are the lanes whose turn it is.
type turnResult struct {
	reason string
	owe    []*lane
	mine   *lane // j's lane, when live
}

// turn decides whether j (whose caps and budgets have room under u) has the
// turn, changing nothing. Each lane that goes before j (of a tenant
// admitted longer ago; of j's tenant, a higher priority or a model served
// longer ago; j's own lane's waiters, when j is new in it) keeps one free
// slot for itself: j is admitted when more slots are free than lanes go
// before it. With one free slot that is strict round-robin; with more, free
// slots are not left idle waiting for one lane's ask.
func (a *admission) turn(rec *admissionRecord, u usage, j *job, key string, now time.Time) turnResult {
	var res turnResult
	mine := rec.Lanes[key]
	if mine != nil && !mine.live(now) {
		mine = nil
	}
	res.mine = mine
	myServed := rec.Served[j.Tenant]
	var myLaneServed uint64
	if mine != nil {
		myLaneServed = mine.Served
	}
	rank := priorityRank(normPriority(j.Priority))
	ahead := 0
	tenantsAhead := map[string]bool{}
	first, firstServed := "", uint64(0) // the tenant ahead admitted longest ago
	laneReason := ""
	for k, l := range rec.Lanes {
		if k == key || !l.live(now) || l.stalled(now) {
			continue
		}
		prio, tenant, model := splitLaneKey(k)
		if a.full(u, model, tenant) != "" || a.overBudget(u, model, tenant) != "" {
			continue // cannot use a slot now: holds no turn
		}
		if tenant != j.Tenant {
			// Round-robin between tenants: the one admitted longest ago first.
			if s := rec.Served[tenant]; s < myServed || s == myServed && tenant < j.Tenant {
				if !tenantsAhead[tenant] {
					tenantsAhead[tenant] = true
					ahead++
					if first == "" || s < firstServed || s == firstServed && tenant < first {
						first, firstServed = tenant, s
					}
				}
				res.owe = append(res.owe, l)
			}
			continue
		}
		// Within the tenant: priority first, then the model served longest ago.
		switch r := priorityRank(prio); {
		case r < rank:
			laneReason = fmt.Sprintf("its turn: tenant %q's %s-priority jobs go first", j.Tenant, prio)
		case r == rank && (l.Served < myLaneServed || l.Served == myLaneServed && model < j.ModelID):
			if laneReason == "" {
				laneReason = fmt.Sprintf("its turn: tenant %q's jobs of %s go first (round-robin between a tenant's models)", j.Tenant, model)
			}
		default:
			continue
		}
		ahead++
		res.owe = append(res.owe, l)
	}
	registered := mine != nil && j.Ticket != nil && j.Ticket.Epoch == mine.Epoch && j.Ticket.N < mine.Next
	if mine != nil && !registered && !mine.stalled(now) {
		// New in a lane with waiters: behind them.
		ahead++
		res.owe = append(res.owe, mine)
		if laneReason == "" {
			laneReason = fmt.Sprintf("its turn: %d earlier jobs of its tenant, model and priority wait", mine.waiting())
		}
	}
	if room := a.limits.MaxPending - u.total; room > ahead {
		return turnResult{mine: mine}
	}
	res.reason = laneReason
	if first != "" {
		res.reason = fmt.Sprintf("its turn: tenant %q was admitted longer ago (round-robin between tenants)", first)
	}
	return res
}

// queue refuses j with no, queueing it in its lane: a job without a ticket
// of the live lane takes one; one with a ticket pushes the lane's life on
// when it runs short.
func (a *admission) queue(rec *admissionRecord, j *job, key string, now time.Time, no refusal) (*refusal, bool) {
	l := rec.Lanes[key]
	write := false
	if l != nil && !now.Before(l.Until) {
		delete(rec.Lanes, key) // dropped: its waiters stopped asking
		l, write = nil, true
	}
	if l != nil && j.Ticket != nil && j.Ticket.Epoch == l.Epoch && j.Ticket.N < l.Next {
		no.position = j.Ticket.N - min(l.Done, j.Ticket.N)
		no.waiting, no.pace = l.waiting(), l.pace(now)
		if l.Until.Sub(now) < laneTTL-laneRefresh {
			l.Until = now.Add(laneTTL)
			write = true
		}
		if !l.Owed.IsZero() {
			l.Owed = time.Time{} // one of its waiters is alive
			write = true
		}
		return &no, write
	}
	if l == nil {
		if len(rec.Lanes) >= maxLanes {
			no.reason += fmt.Sprintf(" (not queued: %d lanes wait already)", len(rec.Lanes))
			no.waiting = 1 << 20 // asks as rarely as the back of a long lane
			return &no, write
		}
		rec.Seq++
		l = &lane{Epoch: rec.Seq, Born: now}
		rec.Lanes[key] = l
		if _, ok := rec.Served[j.Tenant]; !ok {
			rec.Served[j.Tenant] = 0
		}
	}
	j.Ticket = &ticket{Epoch: l.Epoch, N: l.Next}
	no.position = l.waiting()
	l.Next++
	no.waiting, no.pace = l.waiting(), l.pace(now)
	l.Until = now.Add(laneTTL)
	return &no, true
}

// prune drops dead lanes and the round-robin turns of tenants with nothing
// admitted or waiting.
func (rec *admissionRecord) prune(now time.Time) {
	keep := map[string]bool{}
	for k, l := range rec.Lanes {
		if !l.live(now) {
			delete(rec.Lanes, k)
			continue
		}
		_, tenant, _ := splitLaneKey(k)
		keep[tenant] = true
	}
	for _, e := range rec.Jobs {
		keep[e.Tenant] = true
	}
	for t := range rec.Served {
		if !keep[t] {
			delete(rec.Served, t)
		}
	}
}

// admit admits j if it is its turn and every cap and budget has room. It
// returns nil once the job is admitted (also when it already was), or why
// not. A refused job holds a ticket of its lane in j.Ticket; rev, when not
// 0, is the revision of j's stored record, which is then updated when the
// ticket is new (its old lane was dropped).
func (a *admission) admit(ctx context.Context, j *job, priority string, rev uint64) (*refusal, error) {
	j.Priority = normPriority(priority)
	a.prices.get(j.ModelID) // a model without a price yet: load it now (platform prices)
	before := j.Ticket
	var no *refusal
	err := a.do(func(rec *admissionRecord, now time.Time) bool {
		j.Ticket = before // applied again after a conflict: from the start
		var write bool
		no, write = a.decide(rec, j, now)
		return write
	})
	if err != nil {
		// The write may have applied (a lost reply): an admitted id is
		// found on the next attempt.
		j.Ticket = before
		return nil, fmt.Errorf("admit %s: %w", j.ID, err)
	}
	if no == nil {
		a.metrics.admittedJob()
		return nil, nil
	}
	if rev != 0 && j.Ticket != before && j.Ticket != nil {
		// A stored waiting job moved to a new lane: keep its ticket.
		_, _ = a.jobs.put(ctx, j, rev)
	}
	return no, nil
}

// admissionOp is one change to the admission record. apply changes rec and
// reports whether it did; it may be called again, on a fresh record, after
// a conflict.
type admissionOp struct {
	apply func(rec *admissionRecord, now time.Time) bool
	err   error
	done  chan struct{}
}

// admissionTimeout bounds one batch's NATS work.
const admissionTimeout = 10 * time.Second

// do applies one change to the admission record. The changes asked for
// on this replica while a batch is in flight are applied together in the
// next one (group commit): one read and at most one write for all of them,
// and write conflicts only between replicas, not between a replica's own
// workers.
func (a *admission) do(apply func(*admissionRecord, time.Time) bool) error {
	op := &admissionOp{apply: apply, done: make(chan struct{})}
	a.mu.Lock()
	a.queued = append(a.queued, op)
	lead := !a.running
	a.running = true
	a.mu.Unlock()
	if lead {
		a.combine()
	}
	<-op.done
	return op.err
}

// combine applies the queued changes as one batch; if more were queued
// meanwhile, another goroutine takes them on, so that no caller leads more
// than one batch.
func (a *admission) combine() {
	a.mu.Lock()
	ops := a.queued
	a.queued = nil
	a.mu.Unlock()
	err := a.applyAll(ops)
	for _, op := range ops {
		op.err = err
		close(op.done)
	}
	a.mu.Lock()
	if len(a.queued) > 0 {
		go a.combine()
	} else {
		a.running = false
	}
	a.mu.Unlock()
}

func (a *admission) applyAll(ops []*admissionOp) error {
	ctx, cancel := context.WithTimeout(context.Background(), admissionTimeout)
	defer cancel()
	a.ops.batches.Add(1)
	a.ops.changes.Add(int64(len(ops)))
	for range admissionConflicts {
		rec, rev, err := a.load(ctx)
		if err != nil {
			return err
		}
		now := a.now().UTC()
		write := false
		for _, op := range ops {
			if op.apply(&rec, now) {
				write = true
			}
		}
		if !write {
			return nil
		}
		err = a.store(ctx, rec, rev)
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // another replica first: decide again from its record
		}
		return err
	}
	return errAdmissionBusy
}

// release removes the ids that are admitted from the record.
func (a *admission) release(ctx context.Context, ids ...string) error {
	return a.releaseEnded(ctx, 0, nil, ids...)
}

// releaseSpent removes the ids that are admitted from the record and adds
// cost to the current window of every budget that covers them (cost is
// given for one job: ids is then that job's id).
func (a *admission) releaseSpent(ctx context.Context, cost float64, ids ...string) error {
	return a.releaseEnded(ctx, cost, nil, ids...)
}

// releaseEnded is releaseSpent; gone, when set, is a job that ended: if it
// was never admitted but waited with a ticket, its lane counts it resolved.
func (a *admission) releaseEnded(_ context.Context, cost float64, gone *job, ids ...string) error {
	return a.do(func(rec *admissionRecord, now time.Time) bool {
		changed := false
		if cost > 0 && len(ids) == 1 {
			if e, ok := rec.Jobs[ids[0]]; ok {
				a.spend(rec, e, cost)
			}
		}
		wasAdmitted := false
		if gone != nil {
			_, wasAdmitted = rec.Jobs[gone.ID]
		}
		for _, id := range ids {
			if _, ok := rec.Jobs[id]; ok {
				delete(rec.Jobs, id)
				changed = true
			}
		}
		if gone != nil && gone.Ticket != nil && !wasAdmitted {
			// It ended waiting (canceled, timed out, over a budget).
			key := laneKey(gone.Priority, gone.Tenant, gone.ModelID)
			if l := rec.Lanes[key]; l != nil && l.Epoch == gone.Ticket.Epoch && l.waiting() > 0 {
				l.Done++
				if l.waiting() == 0 {
					delete(rec.Lanes, key)
				}
				changed = true
			}
		}
		if changed {
			rec.prune(now)
		}
		return changed
	})
}

// spend adds cost to the current window of each budget covering e, and
// drops windows that ended over two days ago.
func (a *admission) spend(rec *admissionRecord, e admitted, cost float64) {
	now := a.now()
	if rec.Spend == nil {
		rec.Spend = map[string]float64{}
	}
	for _, b := range a.budgets {
		if applies(b, e.Model, e.Tenant) {
			rec.Spend[spendKey(b, now)] += cost
		}
	}
	old := now.Add(-48 * time.Hour)
	for k := range rec.Spend {
		if i := strings.LastIndexByte(k, '|'); i >= 0 {
			if t, err := time.Parse(time.RFC3339, k[i+1:]); err == nil && t.Before(old) {
				delete(rec.Spend, k)
			}
		}
	}
}

// orphans returns the admitted ids whose job is over or was never claimed:
// the record is done, or missing and the entry older than before.
func (a *admission) orphans(ctx context.Context, states map[string]recordState, before time.Time) ([]string, error) {
	rec, _, err := a.load(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for id, e := range rec.Jobs {
		st, ok := states[id]
		if (ok && st.state == stateDone) || (!ok && e.At.Before(before)) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

// releaseJob gives the slot of job j, which has ended, back (best effort:
// if it fails, the sweep gives it back), counts its cost against its
// budgets, and resolves its ticket if it ended while waiting.
func (p *Pool) releaseJob(j *job, cost float64) {
	if p.adm == nil {
		return
	}
	ctx, cancel := p.finishContext()
	defer cancel()
	if err := p.adm.releaseEnded(ctx, cost, j, j.ID); err != nil {
		p.log.Warn("releasing a slot failed; the sweep will", "trigger_id", j.ID, "err", err)
	}
}

// admittedEntryBytes is about what one admitted job takes in the record
// with a 26-character id and a short model id and tenant.
const admittedEntryBytes = 110

// warnIfTooBig logs when limits.max_pending admitted jobs may not fit the
// admission record in one NATS message: past that size, admissions fail
// (logged, the jobs wait) although the cap has room.
func (a *admission) warnIfTooBig(log *slog.Logger, maxPayload int64) {
	if need := int64(a.limits.MaxPending)*admittedEntryBytes + int64(maxLanes)*64; need > maxPayload {
		log.Warn("limits.max_pending may not fit the admission record in one NATS message: lower it or raise the server's max_payload",
			"max_pending", a.limits.MaxPending, "estimated_bytes", need, "max_payload", maxPayload)
	}
}
