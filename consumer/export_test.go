package consumer

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Test-only access to the crash points of the intake pipeline.

func SetHookAfterSubmit(p *Pool, h func(id string)) { p.hooks.afterSubmit = h }
func SetHookBeforeAck(p *Pool, h func(id string))   { p.hooks.beforeAck = h }

// SetModelSlotTimes shortens the wait for a per-model slot and the Nak delay
// after it, so that tests can make a trigger wait through many deliveries.
func SetModelSlotTimes(p *Pool, wait, retry time.Duration) { p.slotWait, p.slotRetry = wait, retry }

// WrapJetStream replaces the JetStream context the job store and the timers
// use (not the emitter's), so that tests can inject NATS faults. Call it
// before Start.
func WrapJetStream(p *Pool, wrap func(jetstream.JetStream) jetstream.JetStream) { p.js = wrap(p.js) }

// Sweep runs one sweep now and reports whether this pool swept and how many
// timers it re-armed.
func Sweep(ctx context.Context, p *Pool) (swept bool, pending, rearmed int, err error) {
	rep, err := p.sweep(ctx)
	return rep.swept, rep.pending, rep.rearmed, err
}

// JobsPending is the value of falbridge_jobs_pending for this pool.
func JobsPending(p *Pool) int64 { return p.pendingJobs.Load() }

// WebhookBodiesInFlight is the number of webhook bodies being read.
func WebhookBodiesInFlight(p *Pool) int { return len(p.webhookBodies) }

// AdmissionOps counts this pool's reads, writes and write conflicts of the
// admission record, and the jobs it admitted.
func AdmissionOps(p *Pool) (gets, writes, conflicts int64) {
	if p.adm == nil {
		return 0, 0, 0
	}
	return p.adm.ops.gets.Load(), p.adm.ops.writes.Load(), p.adm.ops.conflicts.Load()
}

// AdmissionCounts is AdmissionOps plus the batches of changes and the
// changes they carried.
func AdmissionCounts(p *Pool) (gets, writes, conflicts, batches, changes int64) {
	if p.adm == nil {
		return
	}
	o := &p.adm.ops
	return o.gets.Load(), o.writes.Load(), o.conflicts.Load(), o.batches.Load(), o.changes.Load()
}

// SetWebhookSlotWait shortens the wait of a webhook delivery for a body slot.
func SetWebhookSlotWait(p *Pool, d time.Duration) { p.webhookSlotWait = d }
