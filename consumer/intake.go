package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// poisonDeliveries multiplies consumer.max_deliver into the delivery count
// past which a trigger that never gets as far as a submit (panics, NATS
// trouble) is ended with an error event, once it is also past its timeout,
// rather than redelivered forever.
const poisonDeliveries = 20

// delivery is one delivered trigger message and what we know of it.
type delivery struct {
	msg        jetstream.Msg
	body       []byte
	seq        uint64
	delivered  uint64
	receivedAt time.Time
}

// handleTrigger runs the intake pipeline for one trigger message:
// decode + validate → claim → submit → store → arm the timer → ack.
func (p *Pool) handleTrigger(ctx context.Context, msg jetstream.Msg) verdict {
	md, err := msg.Metadata()
	if err != nil {
		p.log.Error("trigger without JetStream metadata", "subject", msg.Subject(), "err", err)
		return term("no jetstream metadata")
	}
	p.metrics.received()
	d := &delivery{msg: msg, body: msg.Data(), seq: md.Sequence.Stream, delivered: md.NumDelivered, receivedAt: md.Timestamp.UTC()}

	if limit := p.cfg.Streams.MaxTriggerBytes; len(d.body) > limit {
		id := publisher.ResolveID(&publisher.Trigger{ID: bestEffortID(d.body)}, msg.Headers().Get(jetstream.MsgIDHeader), d.seq)
		return p.reject(ctx, d, id, nil, publisher.CodeInvalidTrigger,
			fmt.Sprintf("trigger is %d bytes; the limit is %d (streams.max_trigger_bytes)", len(d.body), limit))
	}
	t, err := publisher.DecodeTrigger(d.body)
	if err != nil {
		id := publisher.ResolveID(&publisher.Trigger{ID: bestEffortID(d.body)}, msg.Headers().Get(jetstream.MsgIDHeader), d.seq)
		return p.reject(ctx, d, id, nil, publisher.CodeInvalidTrigger, err.Error())
	}
	id := publisher.ResolveID(t, msg.Headers().Get(jetstream.MsgIDHeader), d.seq)
	if err := p.resultSubjectAllowed(t.ResultSubject); err != nil {
		// Outside input never chooses where falbridge writes: no copy of
		// this rejection goes there either.
		t.ResultSubject = ""
		return p.reject(ctx, d, id, t, publisher.CodeInvalidTrigger, err.Error())
	}
	if _, err := falclient.ParseModelID(t.ModelID); err != nil {
		return p.reject(ctx, d, id, t, publisher.CodeInvalidModel, err.Error())
	}
	if f := checkImageURLs(t.Input); f != nil {
		return p.reject(ctx, d, id, t, f.Code, f.Message)
	}
	timeout := time.Duration(t.Timeout)
	if timeout > p.cfg.Limits.MaxTimeout {
		return p.reject(ctx, d, id, t, publisher.CodeInvalidTrigger, fmt.Sprintf(
			"trigger field \"timeout\": %s is over the largest allowed, %s (limits.max_timeout)", timeout, p.cfg.Limits.MaxTimeout))
	}
	if timeout <= 0 {
		timeout = p.cfg.Polling.JobDeadline
	}
	// A message redelivered over and over (a handler that keeps failing
	// before fal) is ended once it is also past its deadline. Waiting for a
	// per-model slot Naks too, so the count alone would end good triggers
	// queued behind a slow model.
	if d.delivered > uint64(poisonDeliveries*p.cfg.Consumer.MaxDeliver) && !p.now().Before(d.receivedAt.Add(timeout)) {
		return p.reject(ctx, d, id, t, publisher.CodeTimeout, fmt.Sprintf(
			"trigger passed its timeout (%s) after %d deliveries without reaching fal", timeout, d.delivered))
	}

	release := p.limiter.acquire(ctx, t.ModelID, p.slotWait)
	if release == nil {
		// The model is at its in-flight limit: the trigger waits in the
		// stream. Deliveries are uncapped, so this costs nothing but time.
		return nakAfter(p.slotRetry)
	}
	defer release()

	mode := t.Mode
	if mode == "" {
		mode = publisher.ModeQueue
	}
	if mode == publisher.ModeSync || mode == publisher.ModeStream {
		// A sync or stream run holds this worker for its whole run: at
		// most limits.max_sync_runs of them, so that queue-mode work
		// always finds workers.
		select {
		case p.syncRuns <- struct{}{}:
			defer func() { <-p.syncRuns }()
		default:
			return nakAfter(p.slotRetry)
		}
	}
	now := p.now()
	j := &job{
		V:             jobRecordVersion,
		ID:            id,
		State:         stateClaimed,
		ModelID:       t.ModelID,
		Tenant:        t.Tenant,
		Mode:          mode,
		ResultSubject: t.ResultSubject,
		Metadata:      t.Metadata,
		Trigger:       json.RawMessage(d.body), // DecodeTrigger has parsed it: valid JSON
		TriggerSeq:    d.seq,
		Attempts:      1,
		ReceivedAt:    d.receivedAt,
		Deadline:      d.receivedAt.Add(timeout),
	}
	if p.adm != nil {
		no, err := p.adm.admit(ctx, j, t.Priority, 0)
		if err != nil {
			p.log.Warn("admission failed; will retry", "trigger_id", id, "err", err)
			return nakAfter(natsDelays.after(int(d.delivered), 0))
		}
		if no != nil {
			return p.wait(ctx, d, t, j, no)
		}
	}
	p.lease(j, now)
	rev, err := p.store.create(ctx, j)
	switch {
	case errors.Is(err, errJobExists):
		return p.handleClaimed(ctx, d, t, id)
	case err != nil:
		p.log.Warn("claim failed; will retry", "trigger_id", id, "err", err)
		return nakAfter(natsDelays.after(int(d.delivered), 0))
	}
	return p.submit(ctx, d, t, j, rev)
}

// wait records a new job that is over a cap on pending jobs as waiting (so
// that status shows it and a cancel ends it without fal).
//
// A queue-mode job whose trigger fits its record whole is parked: its
// timer asks for a slot (refusal.retry: sooner for a lane near its turn) and the trigger is acked,
// so that waiting work never fills the trigger consumer's MaxAckPending and
// the triggers behind it (another tenant's, say) are still read. Other jobs
// hand their trigger back to the stream until a slot may be free.
func (p *Pool) wait(ctx context.Context, d *delivery, t *publisher.Trigger, j *job, no *refusal) verdict {
	fail := no.budget && p.cfg.Spend.BudgetPolicy == config.BudgetFail
	j.State = stateWaiting
	j.Parked = !fail && j.Mode == publisher.ModeQueue && p.parkable(d.body)
	rev, err := p.store.create(ctx, j)
	switch {
	case errors.Is(err, errJobExists):
		return p.handleClaimed(ctx, d, t, j.ID)
	case err != nil:
		p.log.Warn("recording a waiting job failed; will retry", "trigger_id", j.ID, "err", err)
		return nakAfter(natsDelays.after(int(d.delivered), 0))
	}
	if fail {
		return p.finishIntake(ctx, d, j, rev, nil, budgetFailure(no))
	}
	p.log.Debug("job waits: a cap or budget is full", "trigger_id", j.ID, "model_id", j.ModelID, "tenant", j.Tenant, "full", no.reason, "parked", j.Parked)
	if j.Parked && !j.Truncated {
		// The timer first, then the ack: a crash in between redelivers
		// the trigger, which finds the job waiting.
		if err := p.arm(ctx, j.ID, p.now().Add(no.retry())); err == nil {
			return ack()
		}
		next := *j
		next.Parked = false
		if _, err := p.store.put(ctx, &next, rev); err != nil {
			return nakAfter(natsDelays.after(int(d.delivered), 0))
		}
	}
	return nakAfter(no.retry())
}

// budgetFailure is the error of a job refused by a budget under the fail
// policy.
func budgetFailure(no *refusal) *failure {
	return &failure{Code: publisher.CodeBudgetExceeded, Message: fmt.Sprintf(
		"admitting the job would pass %s (spend.budget_policy=fail); nothing was sent to fal", no.reason)}
}

// parkable reports whether a trigger body fits its job record whole (the
// record holds it and its metadata again), so the record can stand in for
// the trigger message.
func (p *Pool) parkable(body []byte) bool {
	return 2*len(body)+fitReserve < p.store.limit
}

// resumeParked is the timer of a parked job: the intake continues from the
// job record as if its trigger had been redelivered.
func (p *Pool) resumeParked(ctx context.Context, msg jetstream.Msg, md *jetstream.MsgMetadata, j *job) verdict {
	t, err := publisher.DecodeTrigger(j.Trigger)
	if err != nil {
		// Cannot happen: the trigger was decoded once and stored whole.
		p.log.Error("parked job's trigger does not decode", "trigger_id", j.ID, "err", err)
		return term("parked trigger does not decode")
	}
	d := &delivery{msg: msg, body: j.Trigger, seq: j.TriggerSeq, delivered: md.NumDelivered, receivedAt: j.ReceivedAt}
	return p.handleClaimed(ctx, d, t, j.ID)
}

// admitWaiting asks again for a slot for a waiting job; admitted, it is
// claimed and submitted.
func (p *Pool) admitWaiting(ctx context.Context, d *delivery, t *publisher.Trigger, j *job, rev uint64) verdict {
	if !p.now().Before(j.Deadline) {
		f := failure{Code: publisher.CodeTimeout, Message: fmt.Sprintf(
			"trigger waited %s for a slot under the caps on pending jobs, past its timeout; not submitted", p.now().Sub(j.ReceivedAt).Round(time.Millisecond))}
		return p.finishIntake(ctx, d, j, rev, nil, &f)
	}
	if p.adm != nil {
		no, err := p.adm.admit(ctx, j, j.Priority, rev)
		if err != nil {
			p.log.Warn("admission failed; will retry", "trigger_id", j.ID, "err", err)
			return nakAfter(natsDelays.after(int(d.delivered), 0))
		}
		if no != nil && no.budget && p.cfg.Spend.BudgetPolicy == config.BudgetFail {
			return p.finishIntake(ctx, d, j, rev, nil, budgetFailure(no))
		}
		if no != nil {
			return nakAfter(no.retry())
		}
	}
	j.State = stateClaimed
	p.lease(j, p.now())
	rev, err := p.store.put(ctx, j, rev)
	var conflict *conflictError
	if errors.As(err, &conflict) && conflict.cur.State == stateDone {
		p.releaseSlot(j.ID) // canceled while it waited
		return ack()
	}
	if err != nil {
		return nakAfter(natsDelays.after(int(d.delivered), 0))
	}
	return p.submit(ctx, d, t, j, rev)
}

// releaseSlot gives job id's slot under the caps back, best effort: if it
// fails, the sweep gives it back.
func (p *Pool) releaseSlot(id string) { p.releaseSlotSpent(id, 0) }

// releaseSlotSpent is releaseSlot that also counts the job's cost against
// its budgets.
func (p *Pool) releaseSlotSpent(id string, cost float64) {
	if p.adm == nil {
		return
	}
	ctx, cancel := p.finishContext()
	defer cancel()
	if err := p.adm.releaseSpent(ctx, cost, id); err != nil {
		p.log.Warn("releasing a slot failed; the sweep will", "trigger_id", id, "err", err)
	}
}

// resultSubjectAllowed applies subjects.result_subject_allow: a trigger's
// result_subject lies under an allowed pattern and never on falbridge's own
// subjects or the server's ($KV, $JS, $SYS, _INBOX).
func (p *Pool) resultSubjectAllowed(s string) error {
	return publisher.ResultSubjectAllowed(s, p.cfg.Subjects.ResultSubjectAllow, p.reserved)
}

// lease marks j as being worked on by this pool until the work in hand
// (one fal call and the writes after it) must be over.
func (p *Pool) lease(j *job, now time.Time) {
	j.Owner = p.owner
	until := now.Add(p.callBudget() + config.FinishReserve)
	if j.Mode == publisher.ModeSync || j.Mode == publisher.ModeStream {
		// A local run lasts up to the job's deadline.
		until = j.Deadline.Add(config.FinishReserve)
	}
	j.LeaseUntil = until.UTC()
}

// handleClaimed decides what a trigger whose id already has a job record
// means: a duplicate to drop, a retry to resume, a claim still in hand, or
// the ambiguous window. It decides from the stored record only.
func (p *Pool) handleClaimed(ctx context.Context, d *delivery, t *publisher.Trigger, id string) verdict {
	j, rev, err := p.store.get(ctx, id)
	if errors.Is(err, publisher.ErrJobNotFound) {
		// Deleted (TTL) between create and get: try again shortly.
		return nakAfter(natsDelays.after(1, 0))
	}
	if err != nil {
		p.log.Warn("load job failed; will retry", "trigger_id", id, "err", err)
		return nakAfter(natsDelays.after(int(d.delivered), 0))
	}
	sameMessage := j.TriggerSeq == d.seq
	now := p.now()
	switch {
	case j.State == stateDone:
		p.log.Debug("duplicate trigger; job already done", "trigger_id", id, "outcome", j.Outcome)
		// A job ended while its trigger waited (canceled, say) may still
		// hold the slot this delivery took for it.
		p.releaseSlot(id)
		return ack()
	case j.State == stateSubmitted:
		if sameMessage {
			// We stopped after storing the job and before acking: the
			// timer may be missing. A second timer is harmless.
			if err := p.arm(ctx, j.ID, p.firstCheck(j)); err != nil {
				return nakAfter(natsDelays.after(int(d.delivered), 0))
			}
		}
		p.log.Debug("duplicate trigger; job already submitted", "trigger_id", id, "request_id", j.RequestID)
		return ack()
	case !sameMessage:
		// A republished copy while the original message is still being
		// worked on (or waits for its retry): the original decides.
		p.log.Debug("duplicate trigger; original still in hand", "trigger_id", id, "state", j.State)
		return ack()
	case j.State == stateWaiting:
		return p.admitWaiting(ctx, d, t, j, rev)
	case j.leaseLive(now):
		// The first worker is still at it (a redelivery after a NATS
		// restart, say): wait for it rather than call it ambiguous.
		p.log.Debug("trigger redelivered while its claim is held; waiting", "trigger_id", id, "owner", j.Owner)
		return nakAfter(j.LeaseUntil.Sub(now) + natsDelays.min)
	case j.State == stateRetry:
		j.State = stateClaimed
		j.Attempts++
		p.lease(j, now)
		rev, err = p.store.put(ctx, j, rev)
		if err != nil {
			return nakAfter(natsDelays.after(int(d.delivered), 0))
		}
		return p.submit(ctx, d, t, j, rev)
	}
	// Claimed, lease expired: the worker stopped between sending the
	// submit and recording fal's answer. fal may have the job.
	return p.ambiguous(ctx, d, t, j, rev)
}

// ambiguous handles the ambiguous window of invariant 1: a claim whose
// worker stopped while fal may or may not have accepted the submit. With a
// webhook URL, fal settles it: the URL names the job, so if fal has the job
// its signed webhook ends it (see serveWebhook). The trigger waits for that
// up to consumer.ambiguous_wait; then the policy decides.
func (p *Pool) ambiguous(ctx context.Context, d *delivery, t *publisher.Trigger, j *job, rev uint64) verdict {
	policy := p.cfg.Consumer.AmbiguousSubmitPolicy
	if policy == config.AmbiguousSubmitResubmit {
		p.log.Warn("ambiguous submit: resubmitting", "trigger_id", j.ID, "model_id", j.ModelID, "policy", policy)
		p.metrics.submit(j.ModelID, "ambiguous")
		j.Attempts++
		p.lease(j, p.now())
		var err error
		if rev, err = p.store.put(ctx, j, rev); err != nil {
			return nakAfter(natsDelays.after(int(d.delivered), 0))
		}
		return p.submit(ctx, d, t, j, rev)
	}
	if j.Mode == publisher.ModeQueue && p.webhookBase != "" {
		waitUntil := j.LeaseUntil.Add(p.cfg.Consumer.AmbiguousWait)
		if now := p.now(); now.Before(waitUntil) {
			p.log.Info("ambiguous submit: waiting for fal's webhook", "trigger_id", j.ID, "until", waitUntil)
			return nakAfter(min(waitUntil.Sub(now), p.cfg.Consumer.AckWait))
		}
	}
	p.metrics.submit(j.ModelID, "ambiguous")
	p.log.Warn("ambiguous submit: trigger redelivered while claimed", "trigger_id", j.ID,
		"model_id", j.ModelID, "policy", policy)
	f := failure{Code: publisher.CodeAmbiguousSubmit, Message: fmt.Sprintf(
		"falbridge stopped while submitting %q to fal; fal may or may not have accepted it, so it is not submitted again (consumer.ambiguous_submit_policy=fail)", j.ModelID)}
	return p.finishIntake(ctx, d, j, rev, nil, &f)
}

// submit sends the claimed job to fal in its mode.
func (p *Pool) submit(ctx context.Context, d *delivery, t *publisher.Trigger, j *job, rev uint64) verdict {
	if !p.now().Before(j.Deadline) {
		f := failure{Code: publisher.CodeTimeout, Message: fmt.Sprintf(
			"trigger waited %s in the stream, past its timeout; not submitted", p.now().Sub(j.ReceivedAt).Round(time.Millisecond))}
		return p.finishIntake(ctx, d, j, rev, nil, &f)
	}
	switch j.Mode {
	case publisher.ModeSync, publisher.ModeStream:
		return p.runDirect(ctx, d, t, j, rev)
	default:
		return p.submitQueue(ctx, d, t, j, rev)
	}
}

func (p *Pool) submitQueue(ctx context.Context, d *delivery, t *publisher.Trigger, j *job, rev uint64) verdict {
	// One attempt per delivery: a refused submit is recorded as retry
	// before any back-off (submitFailed), so that a crash while waiting
	// is not taken for a crash after fal accepted it.
	opts := falclient.SubmitOptions{
		Priority:         falPriority(t.Priority),
		StartTimeout:     time.Duration(t.StartTimeout),
		ObjectExpiration: time.Duration(t.MediaExpiresIn),
		MaxAttempts:      1,
	}
	if p.webhookBase != "" {
		opts.WebhookURL = p.webhookURL(j.ID)
		j.Webhook = true
	}
	// A submission in hand is finished even when the pool is stopping:
	// cutting it off would turn it into an ambiguous submit. callBudget
	// keeps it inside the shutdown grace period.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.callBudget())
	resp, err := p.fal.Submit(sctx, j.ModelID, t.Input, opts)
	cancel()
	if err != nil {
		return p.submitFailed(ctx, d, j, rev, err)
	}
	if h := p.hooks.afterSubmit; h != nil {
		h(j.ID)
	}
	p.metrics.submit(j.ModelID, "accepted")
	wctx, wcancel := p.finishContext()
	defer wcancel()
	next := *j
	next.State = stateSubmitted
	next.RequestID = resp.RequestID
	next.GatewayRequestID = resp.GatewayRequestID
	next.SubmittedAt = p.now().UTC()
	next.Owner, next.LeaseUntil, next.RetryReason = "", time.Time{}, ""
	nrev, err := p.store.put(wctx, &next, rev)
	var conflict *conflictError
	if errors.As(err, &conflict) {
		cur := conflict.cur
		if cur.State == stateDone && cur.RequestID == resp.RequestID {
			// fal's webhook for this very submit ended the job first.
			return ack()
		}
		if cur.State == stateDone {
			// A cancel ended the job while we were submitting. Take the
			// request back from fal so that it does not run for nothing.
			p.log.Info("job ended during submit; canceling at fal", "trigger_id", j.ID, "request_id", resp.RequestID, "outcome", cur.Outcome)
			cctx, ccancel := context.WithTimeout(wctx, p.callBudget())
			if err := p.fal.Cancel(cctx, j.ModelID, resp.RequestID); err != nil {
				p.log.Warn("cancel at fal failed", "trigger_id", j.ID, "request_id", resp.RequestID, "err", err)
			}
			ccancel()
			return ack()
		}
		err = conflict
	}
	if err != nil {
		// fal has the job but we could not record it: the redelivery will
		// find it claimed, the ambiguous window, and fal's webhook settles it.
		p.log.Error("submitted but could not store the job", "trigger_id", j.ID, "request_id", resp.RequestID, "model_id", j.ModelID, "err", err)
		return nakAfter(natsDelays.after(int(d.delivered), 0))
	}
	*j = next
	p.recent.put(j, nrev)
	// A webhook job's timer waits in memory until it may be needed
	// (deferred.go); any other is armed before the ack.
	if !p.deferTimer(j) {
		if err := p.arm(wctx, j.ID, p.firstCheck(j)); err != nil {
			p.log.Warn("arm timer failed; will retry", "trigger_id", j.ID, "err", err)
			return nakAfter(natsDelays.after(int(d.delivered), 0))
		}
	}
	if t.Progress {
		// Someone watches this job: tell them at once where it stands.
		// A job nobody asked progress for gets no status event here (a
		// write to the status stream per job, for nobody); its polls,
		// when any, still publish what they see.
		pos := resp.QueuePosition
		p.emit.publishStatus(&publisher.Status{ID: j.ID, RequestID: resp.RequestID, State: string(falclient.StateInQueue), QueuePosition: &pos, At: p.now().UTC()})
		p.followProgress(j)
	}
	p.log.Debug("submitted", "trigger_id", j.ID, "request_id", resp.RequestID, "model_id", j.ModelID)
	if h := p.hooks.beforeAck; h != nil {
		h(j.ID)
	}
	return ack()
}

// runDirect runs a sync or stream job on this worker and publishes its result.
func (p *Pool) runDirect(ctx context.Context, d *delivery, t *publisher.Trigger, j *job, rev uint64) verdict {
	rctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), j.Deadline)
	rctx, cancelRun := context.WithCancelCause(rctx)
	defer cancel()
	p.running.Store(j.ID, cancelRun)
	defer p.running.Delete(j.ID)
	stopBeat := p.heartbeat(d.msg)
	var (
		out json.RawMessage
		err error
	)
	// One attempt per delivery, as for submits: a refusal goes through
	// submitFailed and is recorded before the back-off.
	runOnce := falclient.RunOptions{
		StartTimeout:     time.Duration(t.StartTimeout),
		ObjectExpiration: time.Duration(t.MediaExpiresIn),
		MaxAttempts:      1,
	}
	if j.Mode == publisher.ModeStream {
		out, err = p.fal.Stream(rctx, j.ModelID, t.Input, runOnce, func(ev json.RawMessage) error {
			p.emit.publishStatus(&publisher.Status{ID: j.ID, State: publisher.StatePartial, Partial: ev, At: p.now().UTC()})
			return nil
		})
	} else {
		out, err = p.fal.Run(rctx, j.ModelID, t.Input, runOnce)
	}
	stopBeat()
	cancelRun(nil)
	if err != nil {
		if errors.Is(context.Cause(rctx), errCanceledByUser) {
			// The cancel handler has already ended the job.
			return ack()
		}
		if rctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) && !p.now().Before(j.Deadline) {
			f := failure{Code: publisher.CodeTimeout, Message: fmt.Sprintf("no result within the job's timeout (%s)", j.Deadline.Sub(j.ReceivedAt))}
			return p.finishIntake(ctx, d, j, rev, nil, &f)
		}
		return p.submitFailed(ctx, d, j, rev, err)
	}
	p.metrics.submit(j.ModelID, "accepted")
	j.SubmittedAt = j.ReceivedAt
	res := p.newResult(j, out)
	return p.finishIntake(ctx, d, j, rev, res, nil)
}

// heartbeat tells the server a long sync run is still being worked on, so the
// trigger is not redelivered under it. The returned func stops it.
func (p *Pool) heartbeat(msg jetstream.Msg) func() {
	every := p.cfg.Consumer.AckWait / 3
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				_ = msg.InProgress()
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// submitFailed decides about a trigger whose submit (or sync run) failed. A
// refusal is recorded (state retry, with its reason) before the trigger
// waits out its back-off, so that a crash during the wait is never taken for
// an ambiguous submit.
func (p *Pool) submitFailed(ctx context.Context, d *delivery, j *job, rev uint64, err error) verdict {
	f := classify(err, j.ModelID)
	switch {
	case f.Code == publisher.CodeAmbiguousSubmit:
		p.metrics.submit(j.ModelID, "ambiguous")
		p.log.Warn("ambiguous submit", "trigger_id", j.ID, "model_id", j.ModelID, "err", err,
			"policy", p.cfg.Consumer.AmbiguousSubmitPolicy)
		if p.cfg.Consumer.AmbiguousSubmitPolicy == config.AmbiguousSubmitResubmit && j.Attempts < p.cfg.Consumer.MaxDeliver {
			// Leave the claim in place: the redelivery resubmits.
			return nakAfter(p.submitDelays().after(j.Attempts, 0))
		}
		if j.Mode == publisher.ModeQueue && p.webhookBase != "" && p.cfg.Consumer.AmbiguousWait > 0 {
			// Leave the claim in place; its lease ends now. The
			// redelivery waits for fal's webhook (see ambiguous).
			next := *j
			next.LeaseUntil = p.now().UTC()
			if _, perr := p.store.put(ctx, &next, rev); perr != nil {
				return nakAfter(natsDelays.after(int(d.delivered), 0))
			}
			return nakAfter(min(p.cfg.Consumer.AmbiguousWait, p.cfg.Consumer.AckWait))
		}
		return p.finishIntake(ctx, d, j, rev, nil, &f)
	case f.Retryable && j.Attempts < p.cfg.Consumer.MaxDeliver:
		p.metrics.submit(j.ModelID, "retry")
		next := *j
		next.State = stateRetry
		next.RetryReason = f.Message
		next.Owner, next.LeaseUntil = "", time.Time{}
		_, uerr := p.store.put(ctx, &next, rev)
		var conflict *conflictError
		if errors.As(uerr, &conflict) && conflict.cur.State == stateDone {
			return ack() // canceled meanwhile
		}
		if uerr != nil {
			return nakAfter(natsDelays.after(int(d.delivered), 0))
		}
		delay := p.submitDelays().after(j.Attempts, f.RetryAfter)
		p.log.Info("fal refused for now; will retry", "trigger_id", j.ID, "model_id", j.ModelID, "attempt", j.Attempts,
			"code", f.Code, "delay", delay, "err", err)
		return nakAfter(delay)
	default:
		p.metrics.submit(j.ModelID, "refused")
		if f.Retryable {
			f.Message = fmt.Sprintf("%s (gave up after %d attempts)", f.Message, j.Attempts)
		}
		return p.finishIntake(ctx, d, j, rev, nil, &f)
	}
}

// submitDelays is the back-off between submit attempts.
func (p *Pool) submitDelays() delays {
	return delays{min: p.cfg.Polling.MinInterval, max: p.cfg.Polling.MaxInterval}
}

// finishIntake ends the job with its terminal event and decides about the
// trigger message: Ack after a result, Term (with the reason) after an error.
func (p *Pool) finishIntake(ctx context.Context, d *delivery, j *job, rev uint64, res *publisher.Result, f *failure) verdict {
	via := viaIntake
	if res != nil {
		via = string(j.Mode) // sync or stream
	}
	if _, err := p.finish(ctx, j, rev, res, f, via); err != nil {
		p.log.Warn("finish failed; will retry", "trigger_id", j.ID, "err", err)
		return nakAfter(natsDelays.after(int(d.delivered), 0))
	}
	if f != nil {
		return term(string(f.Code))
	}
	return ack()
}

// reject ends a trigger that never became a job (it failed validation):
// its id is claimed with a record that is done from the start, then one
// error event carrying the original body is published, then Term. The claim
// comes first, so that nobody can pre-poison an id others will use (a later
// valid trigger with that id is a duplicate, never submitted), and so that a
// rejected trigger can never publish an error in the name of a job that
// already exists.
func (p *Pool) reject(ctx context.Context, d *delivery, id string, t *publisher.Trigger, code publisher.Code, message string) verdict {
	now := p.now()
	rec := &job{
		V: jobRecordVersion, ID: id, State: stateDone, Mode: publisher.ModeQueue,
		Trigger: publisher.TriggerJSON(d.body), TriggerSeq: d.seq, Attempts: int(d.delivered),
		ReceivedAt: d.receivedAt, Deadline: d.receivedAt, CompletedAt: now.UTC(), Outcome: string(code),
	}
	if t != nil {
		rec.ModelID, rec.Metadata, rec.ResultSubject = t.ModelID, t.Metadata, t.ResultSubject
	}
	wctx, cancel := p.finishContext()
	defer cancel()
	if _, err := p.store.create(wctx, rec); errors.Is(err, errJobExists) {
		cur, rev, gerr := p.store.get(wctx, id)
		switch {
		case gerr != nil:
			return nakAfter(natsDelays.after(int(d.delivered), 0))
		case cur.TriggerSeq != d.seq:
			// The id belongs to another message's job: this one is
			// ended without a word in that job's name.
			p.log.Info("rejected trigger reuses a known id; dropped", "trigger_id", id, "code", code, "reason", message)
			p.metrics.rejected(code)
			return term(string(code))
		case cur.State != stateDone:
			// Our own job (the poison rule): end it properly.
			f := failure{Code: code, Message: message}
			return p.finishIntake(ctx, d, cur, rev, nil, &f)
		}
		// Our own claim from an earlier delivery whose publish failed:
		// publish again (the terminal-event guard keeps it unique).
	} else if err != nil {
		p.log.Warn("claim of rejected trigger failed; will retry", "trigger_id", id, "err", err)
		return nakAfter(natsDelays.after(int(d.delivered), 0))
	}
	ev := publisher.RejectedError(id, code, message, d.body, now)
	ev.ModelID, ev.Attempts, ev.Metadata = rec.ModelID, int(d.delivered), rec.Metadata
	published, err := p.emit.publishError(wctx, ev, rec.ResultSubject)
	if err != nil {
		p.log.Warn("publish error event failed; will retry", "trigger_id", id, "err", err)
		return nakAfter(natsDelays.after(int(d.delivered), 0))
	}
	if published {
		p.metrics.rejected(code)
		p.metrics.finished(&job{ID: id, ReceivedAt: d.receivedAt}, code, viaIntake, p.now())
	}
	p.log.Info("trigger rejected", "trigger_id", id, "code", code, "reason", message)
	return term(string(code))
}

// bestEffortID pulls a valid "id" out of a body that failed validation, so
// its error event still lands on the subject the publisher watches.
func bestEffortID(body []byte) string {
	var probe struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(body, &probe) == nil && publisher.ValidID(probe.ID) {
		return probe.ID
	}
	return ""
}

func (p *Pool) webhookURL(id string) string {
	sep := "?"
	if strings.Contains(p.webhookBase, "?") {
		sep = "&"
	}
	return p.webhookBase + sep + "job=" + url.QueryEscape(id)
}
