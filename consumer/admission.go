package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/config"
)

// Admission control: caps on the jobs pending at fal that hold across every
// replica (limits.max_pending, max_pending_per_model, pending_model_limits,
// max_pending_per_tenant).
//
// The mechanism is one record in the job bucket, admissionKey, listing the
// admitted jobs (id → model, tenant, when). Admitting a job is a
// compare-and-set of that record that adds its id only if every cap still
// has room, so the caps are never exceeded, not even by one: two replicas
// admitting at once conflict on the revision and one reloads. Releasing is
// the compare-and-set that removes the id. Both are idempotent (an admitted
// id is admitted; an absent id is released), so a lost reply is harmless.
//
// A job is admitted before it is claimed and released after its done record
// is written, on every way a job ends. A replica that dies between the two
// leaves an id whose record is done or missing; the sweep removes such ids
// (a missing record only when the entry is older than a claim can take), so
// slots come back within one polling.sweep_interval.
//
// Cost, with caps on: two KV writes of the admission record per job (plus a
// reload per conflict) and, for a trigger over a cap, one KV read per
// redelivery. With caps off (limits.max_pending 0) none of this runs.

// admissionKey is the admission record in the job bucket. It has a dot, so
// no trigger id can collide with it.
const admissionKey = "falbridge.admission"

// admissionRetry is how long a trigger over a cap waits before it asks
// again (jittered). A slot that frees is taken within about this long.
const admissionRetry = time.Second

// admissionConflicts bounds the compare-and-set attempts of one admit or
// release; past it the caller retries later.
const admissionConflicts = 64

// admissionRecord is the body of admissionKey.
type admissionRecord struct {
	Jobs map[string]admitted `json:"jobs"`
}

// admitted is one admitted job.
type admitted struct {
	Model  string    `json:"m"`
	Tenant string    `json:"t,omitempty"`
	At     time.Time `json:"at"`
}

// admission applies the caps through the admission record.
type admission struct {
	kv     jetstream.KeyValue
	limits config.Limits
	now    func() time.Time
}

// errAdmissionBusy: too many concurrent writers; try again later.
var errAdmissionBusy = errors.New("admission record busy")

// load returns the admission record and its revision (0: none yet).
func (a *admission) load(ctx context.Context) (admissionRecord, uint64, error) {
	rec := admissionRecord{Jobs: map[string]admitted{}}
	e, err := a.kv.Get(ctx, admissionKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		return rec, 0, nil
	case err != nil:
		return rec, 0, fmt.Errorf("admission record: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, 0, fmt.Errorf("admission record: %w", err)
	}
	if rec.Jobs == nil {
		rec.Jobs = map[string]admitted{}
	}
	return rec, e.Revision(), nil
}

// store writes rec over revision rev (0: create it). A revision mismatch
// wraps jetstream.ErrKeyExists.
func (a *admission) store(ctx context.Context, rec admissionRecord, rev uint64) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = a.kv.Create(ctx, admissionKey, b)
	} else {
		_, err = a.kv.Update(ctx, admissionKey, b, rev)
	}
	return err
}

// full returns which cap leaves no room for one more job of model and
// tenant in rec ("" when every cap has room).
func (a *admission) full(rec admissionRecord, model, tenant string) string {
	l := a.limits
	if len(rec.Jobs) >= l.MaxPending {
		return fmt.Sprintf("limits.max_pending (%d)", l.MaxPending)
	}
	modelCap, tenantCap := l.PendingModelLimit(model), l.MaxPendingPerTenant
	if modelCap == 0 && tenantCap == 0 {
		return ""
	}
	var ofModel, ofTenant int
	for _, e := range rec.Jobs {
		if e.Model == model {
			ofModel++
		}
		if e.Tenant == tenant {
			ofTenant++
		}
	}
	switch {
	case modelCap > 0 && ofModel >= modelCap:
		return fmt.Sprintf("model %s's cap (%d)", model, modelCap)
	case tenantCap > 0 && ofTenant >= tenantCap:
		return fmt.Sprintf("tenant %q's cap (limits.max_pending_per_tenant %d)", tenant, tenantCap)
	}
	return ""
}

// admit admits job id if every cap has room. It returns "" once the job is
// admitted (also when it already was), or the cap that is full.
func (a *admission) admit(ctx context.Context, id, model, tenant string) (string, error) {
	for range admissionConflicts {
		rec, rev, err := a.load(ctx)
		if err != nil {
			return "", err
		}
		if _, ok := rec.Jobs[id]; ok {
			return "", nil
		}
		if full := a.full(rec, model, tenant); full != "" {
			return full, nil
		}
		rec.Jobs[id] = admitted{Model: model, Tenant: tenant, At: a.now().UTC()}
		err = a.store(ctx, rec, rev)
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue // another writer first: decide again from its record
		}
		if err != nil {
			// The write may have applied (a lost reply): the next
			// attempt finds the id, so the caller just tries again.
			return "", fmt.Errorf("admit %s: %w", id, err)
		}
		return "", nil
	}
	return "", errAdmissionBusy
}

// release removes the ids that are admitted from the record.
func (a *admission) release(ctx context.Context, ids ...string) error {
	for range admissionConflicts {
		rec, rev, err := a.load(ctx)
		if err != nil {
			return err
		}
		n := len(rec.Jobs)
		for _, id := range ids {
			delete(rec.Jobs, id)
		}
		if len(rec.Jobs) == n {
			return nil
		}
		err = a.store(ctx, rec, rev)
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		return err
	}
	return errAdmissionBusy
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
	return ids, nil
}
