package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// pendingTimer is the body of a job's message on the pending stream. The
// message is the job's timer: the poller holds it back with NakWithDelay
// until it is due, so a pending job costs one stored message, not a
// goroutine, and any replica can pick it up after a crash.
type pendingTimer struct {
	ID  string    `json:"id"`
	Due time.Time `json:"due"`
}

// schedulePoll puts the job's timer on the pending stream. With a webhook the
// first poll waits polling.webhook_grace for the webhook; without, it comes
// after polling.min_interval. Never later than the job's deadline.
func (p *Pool) schedulePoll(ctx context.Context, j *job) error {
	wait := p.cfg.Polling.MinInterval
	if j.Webhook {
		wait = p.cfg.Polling.WebhookGrace
	}
	due := j.SubmittedAt.Add(wait)
	if j.Deadline.Before(due) {
		due = j.Deadline
	}
	b, err := json.Marshal(pendingTimer{ID: j.ID, Due: due})
	if err != nil {
		return err
	}
	if _, err := p.js.Publish(ctx, p.pendingPrefix+"."+j.ID, b); err != nil {
		return fmt.Errorf("schedule poll of %s: %w", j.ID, err)
	}
	return nil
}

// handlePending runs when a job's timer message is delivered.
func (p *Pool) handlePending(ctx context.Context, msg jetstream.Msg) {
	var tm pendingTimer
	if err := json.Unmarshal(msg.Data(), &tm); err != nil || !publisher.ValidID(tm.ID) {
		p.log.Error("malformed pending timer", "subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason("malformed pending timer")
		return
	}
	now := p.now()
	if now.Before(tm.Due) {
		_ = msg.NakWithDelay(tm.Due.Sub(now))
		return
	}
	md, err := msg.Metadata()
	if err != nil {
		_ = msg.TermWithReason("no jetstream metadata")
		return
	}
	j, rev, err := p.store.get(ctx, tm.ID)
	if errors.Is(err, errJobNotFound) {
		_ = msg.Ack()
		return
	}
	if err != nil {
		p.log.Warn("poller: load job failed", "trigger_id", tm.ID, "err", err)
		_ = msg.NakWithDelay(p.natsRetryDelay(md.NumDelivered))
		return
	}
	if j.State != stateSubmitted {
		_ = msg.Ack() // done (the webhook won), or never got to fal
		return
	}
	pctx, cancel := context.WithTimeout(ctx, p.submitBudget())
	defer cancel()
	if !now.Before(j.Deadline) {
		p.expire(pctx, msg, j, rev, md.NumDelivered)
		return
	}
	st, err := p.fal.Status(pctx, j.ModelID, j.RequestID, true)
	if err != nil {
		p.metrics.poll("error")
		f := classify(err, j.ModelID)
		if f.Retryable {
			p.log.Info("poll failed; will poll again", "trigger_id", j.ID, "request_id", j.RequestID, "err", err)
			_ = msg.NakWithDelay(max(p.nextPoll(md.NumDelivered, j), f.RetryAfter))
			return
		}
		if errors.Is(err, falclient.ErrNotFound) {
			f = failure{Code: publisher.CodeFalError, Message: fmt.Sprintf("fal does not know request %s any more", j.RequestID)}
		}
		p.finishTimer(ctx, msg, j, rev, nil, &f, md.NumDelivered)
		return
	}
	if !st.Done() {
		p.metrics.poll("running")
		p.emit.publishStatus(statusEvent(j, st, p.now()))
		_ = msg.NakWithDelay(p.nextPoll(md.NumDelivered, j))
		return
	}
	p.metrics.poll("completed")
	if st.Metrics != nil && st.Metrics.InferenceTime != nil {
		run := p.now().Sub(j.SubmittedAt)
		p.metrics.queueTime(j.ModelID, run-time.Duration(*st.Metrics.InferenceTime*float64(time.Second)))
	}
	p.fetchResult(pctx, msg, j, rev, md.NumDelivered)
}

// fetchResult gets a completed job's outcome from fal and ends the job.
func (p *Pool) fetchResult(ctx context.Context, msg jetstream.Msg, j *job, rev uint64, delivered uint64) {
	out, err := p.fal.Result(ctx, j.ModelID, j.RequestID)
	if err != nil {
		f := classify(err, j.ModelID)
		if f.Retryable {
			_ = msg.NakWithDelay(max(p.nextPoll(delivered, j), f.RetryAfter))
			return
		}
		p.finishTimer(ctx, msg, j, rev, nil, &f, delivered)
		return
	}
	p.finishTimer(ctx, msg, j, rev, p.newResult(j, out), nil, delivered)
}

// expire ends a job past its deadline: cancel at fal, then a timeout error —
// unless fal says the job has just completed, in which case its result wins.
func (p *Pool) expire(ctx context.Context, msg jetstream.Msg, j *job, rev uint64, delivered uint64) {
	err := p.fal.Cancel(ctx, j.ModelID, j.RequestID)
	if errors.Is(err, falclient.ErrAlreadyCompleted) {
		p.fetchResult(ctx, msg, j, rev, delivered)
		return
	}
	if err != nil {
		p.log.Warn("cancel at fal after deadline failed", "trigger_id", j.ID, "request_id", j.RequestID, "err", err)
	}
	f := failure{Code: publisher.CodeTimeout, Message: fmt.Sprintf(
		"no result within the job's timeout (%s); canceled at fal", j.Deadline.Sub(j.ReceivedAt))}
	p.finishTimer(ctx, msg, j, rev, nil, &f, delivered)
}

func (p *Pool) finishTimer(ctx context.Context, msg jetstream.Msg, j *job, rev uint64, res *publisher.Result, f *failure, delivered uint64) {
	via := viaPoll
	if f != nil && f.Code == publisher.CodeTimeout {
		via = viaTimeout
	}
	if _, err := p.finish(ctx, j, rev, res, f, via); err != nil {
		p.log.Warn("poller: finish failed; will retry", "trigger_id", j.ID, "err", err)
		_ = msg.NakWithDelay(p.natsRetryDelay(delivered))
		return
	}
	_ = msg.Ack()
}

// nextPoll is the wait before the next status poll: exponential from
// polling.min_interval to polling.max_interval in the number of polls made,
// and never past the job's deadline.
func (p *Pool) nextPoll(delivered uint64, j *job) time.Duration {
	polls := max(int(delivered)-2, 0) // the first delivery only waited for the due time
	d := float64(p.cfg.Polling.MinInterval) * math.Pow(2, float64(min(polls, 30)))
	next := time.Duration(math.Min(d, float64(p.cfg.Polling.MaxInterval)))
	if left := j.Deadline.Sub(p.now()); left < next {
		next = max(left, 10*time.Millisecond)
	}
	return next
}

func statusEvent(j *job, st *falclient.Status, now time.Time) *publisher.Status {
	ev := &publisher.Status{ID: j.ID, RequestID: j.RequestID, State: string(st.State), QueuePosition: st.QueuePosition, At: now.UTC()}
	if len(st.Logs) > 0 {
		if b, err := json.Marshal(st.Logs); err == nil {
			ev.Logs = b
		}
	}
	return ev
}
