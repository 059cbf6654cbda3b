package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// modelSlotWait is how long a worker waits for a per-model slot before it
// hands the trigger back to the stream for modelSlotRetry.
const (
	modelSlotWait  = 2 * time.Second
	modelSlotRetry = time.Second
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
// decode + validate → claim → submit → store → ack.
func (p *Pool) handleTrigger(ctx context.Context, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		p.log.Error("trigger without JetStream metadata", "subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason("no jetstream metadata")
		return
	}
	p.metrics.received()
	d := &delivery{msg: msg, body: msg.Data(), seq: md.Sequence.Stream, delivered: md.NumDelivered, receivedAt: md.Timestamp.UTC()}

	if limit := p.cfg.Streams.MaxTriggerBytes; len(d.body) > limit {
		id := publisher.ResolveID(&publisher.Trigger{ID: bestEffortID(d.body)}, msg.Headers().Get(jetstream.MsgIDHeader), d.seq)
		p.reject(ctx, d, id, nil, publisher.CodeInvalidTrigger,
			fmt.Sprintf("trigger is %d bytes; the limit is %d (streams.max_trigger_bytes)", len(d.body), limit))
		return
	}
	t, err := publisher.DecodeTrigger(d.body)
	if err != nil {
		id := publisher.ResolveID(&publisher.Trigger{ID: bestEffortID(d.body)}, msg.Headers().Get(jetstream.MsgIDHeader), d.seq)
		p.reject(ctx, d, id, nil, publisher.CodeInvalidTrigger, err.Error())
		return
	}
	id := publisher.ResolveID(t, msg.Headers().Get(jetstream.MsgIDHeader), d.seq)
	if _, err := falclient.ParseModelID(t.ModelID); err != nil {
		p.reject(ctx, d, id, t, publisher.CodeInvalidModel, err.Error())
		return
	}
	if f := checkImageURLs(t.Input); f != nil {
		p.reject(ctx, d, id, t, f.Code, f.Message)
		return
	}
	timeout := time.Duration(t.Timeout)
	if timeout <= 0 {
		timeout = p.cfg.Polling.JobDeadline
	}
	// A message redelivered over and over (a handler that keeps failing
	// before fal) is ended once it is also past its deadline. Waiting for a
	// per-model slot Naks too, so the count alone would end good triggers
	// queued behind a slow model.
	if d.delivered > uint64(poisonDeliveries*p.cfg.Consumer.MaxDeliver) && !p.now().Before(d.receivedAt.Add(timeout)) {
		p.reject(ctx, d, id, t, publisher.CodeTimeout, fmt.Sprintf(
			"trigger passed its timeout (%s) after %d deliveries without reaching fal", timeout, d.delivered))
		return
	}

	release := p.limiter.acquire(ctx, t.ModelID, p.slotWait)
	if release == nil {
		// The model is at its in-flight limit: the trigger waits in the
		// stream. Deliveries are uncapped, so this costs nothing but time.
		_ = msg.NakWithDelay(p.slotRetry)
		return
	}
	defer release()

	mode := t.Mode
	if mode == "" {
		mode = publisher.ModeQueue
	}
	j := &job{
		V:             jobRecordVersion,
		ID:            id,
		State:         stateClaimed,
		ModelID:       t.ModelID,
		Mode:          mode,
		ResultSubject: t.ResultSubject,
		Metadata:      t.Metadata,
		Trigger:       json.RawMessage(d.body), // DecodeTrigger has parsed it: valid JSON
		TriggerSeq:    d.seq,
		Attempts:      1,
		ReceivedAt:    d.receivedAt,
		Deadline:      d.receivedAt.Add(timeout),
	}
	rev, err := p.store.create(ctx, j)
	switch {
	case errors.Is(err, errJobExists):
		p.handleClaimed(ctx, d, t, id)
		return
	case err != nil:
		p.log.Warn("claim failed; will retry", "trigger_id", id, "err", err)
		_ = msg.NakWithDelay(p.natsRetryDelay(d.delivered))
		return
	}
	p.submit(ctx, d, t, j, rev)
}

// handleClaimed decides what a trigger whose id already has a job record
// means: a duplicate to drop, a retry to resume, or the ambiguous window.
func (p *Pool) handleClaimed(ctx context.Context, d *delivery, t *publisher.Trigger, id string) {
	j, rev, err := p.store.get(ctx, id)
	if errors.Is(err, errJobNotFound) {
		// Deleted (TTL) between create and get: try again shortly.
		_ = d.msg.NakWithDelay(100 * time.Millisecond)
		return
	}
	if err != nil {
		p.log.Warn("load job failed; will retry", "trigger_id", id, "err", err)
		_ = d.msg.NakWithDelay(p.natsRetryDelay(d.delivered))
		return
	}
	sameMessage := j.TriggerSeq == d.seq
	switch {
	case j.State == stateDone:
		p.log.Debug("duplicate trigger; job already done", "trigger_id", id, "outcome", j.Outcome)
		_ = d.msg.Ack()
	case j.State == stateSubmitted:
		if sameMessage {
			// We crashed after storing the job and before acking: the
			// poll timer may be missing. A duplicate timer is harmless.
			if err := p.schedulePoll(ctx, j); err != nil {
				_ = d.msg.NakWithDelay(p.natsRetryDelay(d.delivered))
				return
			}
		}
		p.log.Debug("duplicate trigger; job already submitted", "trigger_id", id, "request_id", j.RequestID)
		_ = d.msg.Ack()
	case !sameMessage:
		// A republished copy while the original message is still being
		// worked on (or waits for its retry): the original decides.
		p.log.Debug("duplicate trigger; original still in hand", "trigger_id", id, "state", j.State)
		_ = d.msg.Ack()
	case j.State == stateRetry:
		j.State = stateClaimed
		j.Attempts++
		rev, err = p.store.update(ctx, j, rev)
		if err != nil {
			_ = d.msg.NakWithDelay(p.natsRetryDelay(d.delivered))
			return
		}
		p.submit(ctx, d, t, j, rev)
	default: // stateClaimed, same message: a worker died around the submit.
		p.log.Warn("ambiguous submit: trigger redelivered while claimed", "trigger_id", id,
			"model_id", j.ModelID, "policy", p.cfg.Consumer.AmbiguousSubmitPolicy)
		if p.cfg.Consumer.AmbiguousSubmitPolicy == "resubmit" {
			j.Attempts++
			if rev, err = p.store.update(ctx, j, rev); err != nil {
				_ = d.msg.NakWithDelay(p.natsRetryDelay(d.delivered))
				return
			}
			p.submit(ctx, d, t, j, rev)
			return
		}
		f := failure{Code: publisher.CodeAmbiguousSubmit, Message: fmt.Sprintf(
			"falbridge stopped while submitting %q to fal; fal may or may not have accepted it, so it is not submitted again (consumer.ambiguous_submit_policy=fail)", j.ModelID)}
		p.finishAndSettle(ctx, d, j, rev, nil, &f)
	}
}

// submit sends the claimed job to fal in its mode and settles the trigger.
func (p *Pool) submit(ctx context.Context, d *delivery, t *publisher.Trigger, j *job, rev uint64) {
	if !p.now().Before(j.Deadline) {
		f := failure{Code: publisher.CodeTimeout, Message: fmt.Sprintf(
			"trigger waited %s in the stream, past its timeout; not submitted", p.now().Sub(j.ReceivedAt).Round(time.Millisecond))}
		p.finishAndSettle(ctx, d, j, rev, nil, &f)
		return
	}
	switch j.Mode {
	case publisher.ModeSync, publisher.ModeStream:
		p.runDirect(ctx, d, t, j, rev)
	default:
		p.submitQueue(ctx, d, t, j, rev)
	}
}

// submitBudget bounds one submission so that it ends well inside AckWait:
// a trigger must never be redelivered while its first worker is still at it.
func (p *Pool) submitBudget() time.Duration {
	return p.cfg.Consumer.AckWait * 3 / 4
}

func (p *Pool) submitQueue(ctx context.Context, d *delivery, t *publisher.Trigger, j *job, rev uint64) {
	opts := falclient.SubmitOptions{Priority: falclient.Priority(t.Priority)}
	if p.webhookBase != "" {
		opts.WebhookURL = p.webhookURL(j.ID)
		j.Webhook = true
	}
	// A submission in hand is finished even when the pool is stopping:
	// cutting it off would turn it into an ambiguous submit.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.submitBudget())
	resp, err := p.fal.Submit(sctx, j.ModelID, t.Input, opts)
	cancel()
	if err != nil {
		p.submitFailed(ctx, d, j, rev, err)
		return
	}
	if h := p.hooks.afterSubmit; h != nil {
		h(j.ID)
	}
	p.metrics.submit(j.ModelID, "accepted")
	j.State = stateSubmitted
	j.RequestID = resp.RequestID
	j.GatewayRequestID = resp.GatewayRequestID
	j.SubmittedAt = p.now().UTC()
	_, err = p.updateRetrying(ctx, j, rev)
	if errors.Is(err, errRevisionMismatch) {
		// Only a cancel moves a claimed job; it is done now. Take the
		// request back from fal so that it does not run for nothing.
		p.log.Info("job canceled during submit; canceling at fal", "trigger_id", j.ID, "request_id", resp.RequestID)
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := p.fal.Cancel(cctx, j.ModelID, resp.RequestID); err != nil {
			p.log.Warn("cancel at fal failed", "trigger_id", j.ID, "request_id", resp.RequestID, "err", err)
		}
		ccancel()
		_ = d.msg.Ack()
		return
	}
	if err != nil {
		// fal has the job but we could not record it: the redelivery will
		// find it claimed, the ambiguous window. Log what we know.
		p.log.Error("submitted but could not store the job", "trigger_id", j.ID, "request_id", resp.RequestID, "model_id", j.ModelID, "err", err)
		_ = d.msg.NakWithDelay(p.natsRetryDelay(d.delivered))
		return
	}
	if err := p.schedulePoll(ctx, j); err != nil {
		p.log.Warn("schedule poll failed; will retry", "trigger_id", j.ID, "err", err)
		_ = d.msg.NakWithDelay(p.natsRetryDelay(d.delivered))
		return
	}
	pos := resp.QueuePosition
	p.emit.publishStatus(&publisher.Status{ID: j.ID, RequestID: resp.RequestID, State: string(falclient.StateInQueue), QueuePosition: &pos, At: p.now().UTC()})
	p.log.Debug("submitted", "trigger_id", j.ID, "request_id", resp.RequestID, "model_id", j.ModelID)
	if h := p.hooks.beforeAck; h != nil {
		h(j.ID)
	}
	_ = d.msg.Ack()
}

// runDirect runs a sync or stream job on this worker and publishes its result.
func (p *Pool) runDirect(ctx context.Context, d *delivery, t *publisher.Trigger, j *job, rev uint64) {
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
	if j.Mode == publisher.ModeStream {
		out, err = p.fal.Stream(rctx, j.ModelID, t.Input, falclient.RunOptions{}, func(ev json.RawMessage) error {
			p.emit.publishStatus(&publisher.Status{ID: j.ID, State: "PARTIAL", Partial: ev, At: p.now().UTC()})
			return nil
		})
	} else {
		out, err = p.fal.Run(rctx, j.ModelID, t.Input, falclient.RunOptions{})
	}
	stopBeat()
	cancelRun(nil)
	if err != nil {
		if errors.Is(context.Cause(rctx), errCanceledByUser) {
			// The cancel handler has already ended the job.
			_ = d.msg.Ack()
			return
		}
		if rctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) && !p.now().Before(j.Deadline) {
			f := failure{Code: publisher.CodeTimeout, Message: fmt.Sprintf("no result within the job's timeout (%s)", j.Deadline.Sub(j.ReceivedAt))}
			p.finishAndSettle(ctx, d, j, rev, nil, &f)
			return
		}
		p.submitFailed(ctx, d, j, rev, err)
		return
	}
	p.metrics.submit(j.ModelID, "accepted")
	j.SubmittedAt = j.ReceivedAt
	res := p.newResult(j, out)
	p.finishAndSettle(ctx, d, j, rev, res, nil)
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

// submitFailed settles a trigger whose submit (or sync run) failed.
func (p *Pool) submitFailed(ctx context.Context, d *delivery, j *job, rev uint64, err error) {
	f := classify(err, j.ModelID)
	switch {
	case f.Code == publisher.CodeAmbiguousSubmit:
		p.metrics.submit(j.ModelID, "ambiguous")
		p.log.Warn("ambiguous submit", "trigger_id", j.ID, "model_id", j.ModelID, "err", err,
			"policy", p.cfg.Consumer.AmbiguousSubmitPolicy)
		if p.cfg.Consumer.AmbiguousSubmitPolicy == "resubmit" && j.Attempts < p.cfg.Consumer.MaxDeliver {
			// Leave the claim in place: the redelivery resubmits.
			_ = d.msg.NakWithDelay(p.retryDelay(j.Attempts, 0))
			return
		}
		p.finishAndSettle(ctx, d, j, rev, nil, &f)
	case f.Retryable && j.Attempts < p.cfg.Consumer.MaxDeliver:
		p.metrics.submit(j.ModelID, "retry")
		j.State = stateRetry
		_, uerr := p.store.update(ctx, j, rev)
		if errors.Is(uerr, errRevisionMismatch) {
			_ = d.msg.Ack() // canceled meanwhile
			return
		}
		delay := p.retryDelay(j.Attempts, f.RetryAfter)
		p.log.Info("fal refused for now; will retry", "trigger_id", j.ID, "model_id", j.ModelID, "attempt", j.Attempts,
			"code", f.Code, "delay", delay, "err", err)
		_ = d.msg.NakWithDelay(delay)
	default:
		p.metrics.submit(j.ModelID, "refused")
		if f.Retryable {
			f.Message = fmt.Sprintf("%s (gave up after %d attempts)", f.Message, j.Attempts)
		}
		p.finishAndSettle(ctx, d, j, rev, nil, &f)
	}
}

// finishAndSettle ends the job with its terminal event and settles the
// trigger message: Ack after a result, Term (with the reason) after an error.
func (p *Pool) finishAndSettle(ctx context.Context, d *delivery, j *job, rev uint64, res *publisher.Result, f *failure) {
	via := viaIntake
	if res != nil {
		via = string(j.Mode) // sync or stream
	}
	if _, err := p.finish(ctx, j, rev, res, f, via); err != nil {
		p.log.Warn("finish failed; will retry", "trigger_id", j.ID, "err", err)
		_ = d.msg.NakWithDelay(p.natsRetryDelay(d.delivered))
		return
	}
	if f != nil {
		_ = d.msg.TermWithReason(string(f.Code))
		return
	}
	_ = d.msg.Ack()
}

// reject ends a trigger that never became a job (it failed validation): one
// error event carrying the original body, then Term. No job record is made;
// the terminal-event guard in publishTerminal keeps the event unique.
func (p *Pool) reject(ctx context.Context, d *delivery, id string, t *publisher.Trigger, code publisher.Code, message string) {
	ev := &publisher.Error{
		ID:       id,
		Code:     code,
		Message:  message,
		Attempts: int(d.delivered),
		Trigger:  rawTrigger(d.body),
		At:       p.now().UTC(),
	}
	copyTo := ""
	if t != nil {
		ev.ModelID = t.ModelID
		ev.Metadata = t.Metadata
		copyTo = t.ResultSubject
	}
	published, err := p.emit.publishError(ctx, ev, copyTo)
	if err != nil {
		p.log.Warn("publish error event failed; will retry", "trigger_id", id, "err", err)
		_ = d.msg.NakWithDelay(p.natsRetryDelay(d.delivered))
		return
	}
	if published {
		p.metrics.rejected(code)
		model := ""
		if t != nil {
			model = t.ModelID
		}
		p.metrics.finished(&job{ID: id, ModelID: model, ReceivedAt: d.receivedAt}, code, viaIntake, p.now())
	}
	p.log.Info("trigger rejected", "trigger_id", id, "code", code, "reason", message)
	_ = d.msg.TermWithReason(string(code))
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

// retryDelay is the wait before the next submit attempt: exponential with
// jitter from polling.min_interval up to polling.max_interval, never less than
// fal's Retry-After.
func (p *Pool) retryDelay(attempt int, retryAfter time.Duration) time.Duration {
	base := float64(p.cfg.Polling.MinInterval) * math.Pow(2, float64(max(attempt-1, 0)))
	d := time.Duration(math.Min(base, float64(p.cfg.Polling.MaxInterval)))
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return max(d, retryAfter)
}

// natsRetryDelay is the wait before retrying after a NATS error.
func (p *Pool) natsRetryDelay(delivered uint64) time.Duration {
	return min(time.Duration(delivered)*500*time.Millisecond, 10*time.Second)
}
