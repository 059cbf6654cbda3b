package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/publisher"
)

// LimitsInfo is the public, read-only view of the admission record: the
// caps on pending jobs with their use, the waiting jobs, the budgets with
// their spend. Tools (falbridge limits) read it with LookupLimits.
type LimitsInfo struct {
	// On is false when no admission record exists: the caps are off (or
	// no job was admitted yet).
	On bool `json:"on"`
	// WrittenAt is when a replica last wrote the record; the caps and
	// budgets shown are that replica's configuration.
	WrittenAt    time.Time     `json:"written_at,omitzero"`
	Caps         []CapUse      `json:"caps,omitempty"`
	Waiting      []WaitingJobs `json:"waiting,omitempty"`
	Budgets      []BudgetUse   `json:"budgets,omitempty"`
	BudgetPolicy string        `json:"budget_policy,omitempty"`
	Currency     string        `json:"currency,omitempty"`
	// Revision is the KV revision of the record.
	Revision uint64 `json:"revision,omitempty"`

	rec admissionRecord
	at  time.Time
}

// CapUse is one cap and its use: Scope "global", "model" or "tenant", Name
// the model id or tenant.
type CapUse struct {
	Scope string `json:"scope"`
	Name  string `json:"name,omitempty"`
	// Cap is 0 when the record does not say (written by an older
	// falbridge).
	Cap     int    `json:"cap"`
	Pending int    `json:"pending"`
	Waiting uint64 `json:"waiting"`
}

// WaitingJobs counts the jobs waiting in one lane (tenant, model, priority).
type WaitingJobs struct {
	Tenant   string `json:"tenant"`
	Model    string `json:"model"`
	Priority string `json:"priority"`
	Jobs     uint64 `json:"jobs"`
}

// BudgetUse is one budget in its current window: Spent is the estimated
// spend of the results so far, Pending one unit of every pending job it
// covers (what admission counts on top).
type BudgetUse struct {
	Scope       string    `json:"scope"`
	Amount      float64   `json:"amount"`
	Window      string    `json:"window"`
	Spent       float64   `json:"spent"`
	Pending     float64   `json:"pending"`
	WindowStart time.Time `json:"window_start"`
	ResetsAt    time.Time `json:"resets_at"`
}

// LookupLimits reads the admission record from the job bucket. now is the
// time the current budget windows are taken at.
func LookupLimits(ctx context.Context, js jetstream.JetStream, bucket string, now time.Time) (*LimitsInfo, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("job bucket %q: %w", bucket, err)
	}
	rec, rev, err := loadAdmission(ctx, kv)
	if err != nil {
		return nil, err
	}
	info := &LimitsInfo{rec: rec, at: now, Revision: rev}
	if rev == 0 {
		return info, nil
	}
	if rec.Limits == nil {
		// Written by a falbridge older than this one (during an upgrade):
		// the caps are not in the record; the pending jobs are.
		info.On = true
		info.Caps = []CapUse{{Scope: "global", Pending: len(rec.Jobs)}}
		return info, nil
	}
	info.On = true
	l := rec.Limits
	info.WrittenAt, info.BudgetPolicy, info.Currency = l.At, l.BudgetPolicy, l.Currency
	a := info.admission()
	u := a.usage(&rec, now)

	waitingBy := map[[2]string]uint64{} // scope, name
	for k, ln := range rec.Lanes {
		if !ln.live(now) {
			continue
		}
		prio, tenant, model := splitLaneKey(k)
		info.Waiting = append(info.Waiting, WaitingJobs{Tenant: tenant, Model: model, Priority: prio, Jobs: ln.waiting()})
		waitingBy[[2]string{"global", ""}] += ln.waiting()
		waitingBy[[2]string{"model", model}] += ln.waiting()
		waitingBy[[2]string{"tenant", tenant}] += ln.waiting()
	}
	sort.Slice(info.Waiting, func(i, j int) bool {
		x, y := info.Waiting[i], info.Waiting[j]
		if x.Tenant != y.Tenant {
			return x.Tenant < y.Tenant
		}
		if x.Model != y.Model {
			return x.Model < y.Model
		}
		return priorityRank(x.Priority) < priorityRank(y.Priority)
	})
	info.Caps = append(info.Caps, CapUse{Scope: "global", Cap: l.MaxPending, Pending: u.total, Waiting: waitingBy[[2]string{"global", ""}]})
	models := map[string]bool{}
	for m := range l.Models {
		models[m] = true
	}
	tenants := map[string]bool{}
	for _, e := range rec.Jobs {
		models[e.Model], tenants[e.Tenant] = true, true
	}
	for _, w := range info.Waiting {
		models[w.Model], tenants[w.Tenant] = true, true
	}
	for _, m := range sortedKeys(models) {
		if c := a.limits.PendingModelLimit(m); c > 0 {
			info.Caps = append(info.Caps, CapUse{Scope: "model", Name: m, Cap: c, Pending: u.model[m], Waiting: waitingBy[[2]string{"model", m}]})
		}
	}
	if l.PerTenant > 0 {
		for _, t := range sortedKeys(tenants) {
			info.Caps = append(info.Caps, CapUse{Scope: "tenant", Name: t, Cap: l.PerTenant, Pending: u.tenant[t], Waiting: waitingBy[[2]string{"tenant", t}]})
		}
	}
	for i, b := range a.budgets {
		start := b.WindowStart(now)
		end := start.Add(time.Hour)
		if b.Window == "day" {
			end = start.AddDate(0, 0, 1)
		}
		spent := rec.Spend[spendKey(b, now)]
		info.Budgets = append(info.Budgets, BudgetUse{Scope: b.Key(), Amount: b.Amount, Window: b.Window,
			Spent: spent, Pending: u.budgetEstimate[i] - spent, WindowStart: start, ResetsAt: end})
	}
	return info, nil
}

// admission rebuilds the writer's admission rules from the record.
func (li *LimitsInfo) admission() *admission {
	l := li.rec.Limits
	a := &admission{
		limits:   config.Limits{MaxPending: l.MaxPending, MaxPendingPerModel: l.PerModel, PendingModelLimits: l.Models, MaxPendingPerTenant: l.PerTenant},
		spendCfg: config.Spend{Budgets: l.Budgets, BudgetPolicy: l.BudgetPolicy, Currency: l.Currency},
		prices:   newPriceTable(nil),
		now:      func() time.Time { return li.at },
	}
	a.budgets, _ = a.spendCfg.BudgetList()
	prices := map[string]config.Price{}
	for m, p := range l.UnitPrices {
		prices[m] = config.Price{Amount: p}
	}
	a.prices.setFetched(prices)
	return a
}

// WaitReason says what a waiting job waits for: the cap or budget that is
// full, or whose turn it is; "" when job is not waiting or the caps are off.
func (li *LimitsInfo) WaitReason(info *publisher.JobInfo) string {
	if !li.On || li.rec.Limits == nil || info == nil || info.State != string(stateWaiting) {
		return ""
	}
	// decide changes the record: work on a copy.
	b, err := json.Marshal(li.rec)
	if err != nil {
		return ""
	}
	var rec admissionRecord
	if json.Unmarshal(b, &rec) != nil {
		return ""
	}
	rec.init()
	j := &job{ID: info.ID, ModelID: info.ModelID, Tenant: info.Tenant, Priority: normPriority(info.Priority)}
	if l := rec.Lanes[laneKey(j.Priority, j.Tenant, j.ModelID)]; l != nil {
		j.Ticket = &ticket{Epoch: l.Epoch, N: l.Done} // one of the lane's
	}
	no, _ := li.admission().decide(&rec, j, li.at)
	if no == nil {
		return "nothing: a slot is free for it; it is admitted at its next ask (within seconds)"
	}
	return no.reason
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
