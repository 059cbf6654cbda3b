package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// The pending stream is the timer wheel of jobs at fal. Each submitted job
// has one timer: a scheduled message (NATS message scheduling, "@at") on
// <prefix>.sched.<id> that the server turns into a message on
// <prefix>.due.<id> when it is due. Only then does the poller consumer see
// it: a timer costs no delivery before it is due, and nothing in falbridge
// ever purges or deletes a message on the subjects that consumer reads.
//
// That rule is a lesson: purging ended jobs' timers by subject while the
// consumer held other timers moved its ack floor past them (nats-server
// 2.15, nats-io/nats-server#5727), and they were never delivered again. The
// server's own bookkeeping of schedules (a subject rollup of sched.<id> when
// a timer is re-armed, a purge of sched.<id> when it fires) touches only
// subjects the consumer does not filter on, and a purge of a subject outside
// a consumer's filter leaves that consumer's state alone.
//
// Once delivered, a due timer is held by NakWithDelay between polls (the
// message stays in hand, nothing is re-published) and acked once when the
// job is over. The sweep (see sweep.go) re-arms the timer of any submitted
// job that has none, so a job never depends on one message alone.
//
// Why a schedule rather than a message held with NakWithDelay from the
// start: BenchmarkTimerMechanism measured both at about the same CPU per
// timer (≈185 vs ≈175 µs, client and server, within noise on 2 cores), but
// the schedule costs one delivery instead of two and keeps waiting timers
// out of the consumer's pending set, so MaxAckPending and a rolled-back
// consumer state cannot hold them back.

// pendingTimer is the body of a job's timer message.
type pendingTimer struct {
	ID  string    `json:"id"`
	Due time.Time `json:"due"`
}

// timerSubjects names the pending stream's subjects for one configuration.
type timerSubjects struct {
	prefix string // falbridge.<stream name lower-cased>
}

func newTimerSubjects(cfg config.Config) timerSubjects {
	return timerSubjects{prefix: "falbridge." + strings.ToLower(cfg.Streams.Pending)}
}

func (s timerSubjects) all() string            { return s.prefix + ".>" }
func (s timerSubjects) sched(id string) string { return s.prefix + ".sched." + id }
func (s timerSubjects) due(id string) string   { return s.prefix + ".due." + id }
func (s timerSubjects) dueFilter() string      { return s.prefix + ".due.*" }
func (s timerSubjects) legacyFilter() string   { return s.prefix + ".*" }

// idOf returns the job id of a timer subject (due, sched or legacy).
func (s timerSubjects) idOf(subject string) (string, bool) {
	rest, ok := strings.CutPrefix(subject, s.prefix+".")
	if !ok {
		return "", false
	}
	if id, ok := strings.CutPrefix(rest, "sched."); ok {
		return id, true
	}
	if id, ok := strings.CutPrefix(rest, "due."); ok {
		return id, true
	}
	return rest, !strings.Contains(rest, ".")
}

// pendingStreamConfig is the pending stream: a work queue (a timer leaves it
// when acked) that allows message schedules.
func pendingStreamConfig(cfg config.Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              cfg.Streams.Pending,
		Description:       "falbridge timers of jobs pending at fal (one per job)",
		Subjects:          []string{newTimerSubjects(cfg).all()},
		Retention:         jetstream.WorkQueuePolicy,
		Duplicates:        cfg.Streams.DuplicateWindow,
		AllowMsgSchedules: true,
		// Message schedules need roll-ups: re-arming a timer replaces the
		// schedule on its subject.
		AllowRollup: true,
	}
}

// pollerConsumerConfig reads due timers only (and timers of the previous
// layout, <prefix>.<id>, so jobs pending across an upgrade are not lost).
// It never reads the sched.* subjects the server purges.
func pollerConsumerConfig(cfg config.Config) jetstream.ConsumerConfig {
	ts := newTimerSubjects(cfg)
	return jetstream.ConsumerConfig{
		Durable:        cfg.Consumer.Durable + "-poller",
		Description:    "falbridge poller of jobs pending at fal",
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        cfg.Consumer.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  pollerMaxAckPending,
		FilterSubjects: []string{ts.dueFilter(), ts.legacyFilter()},
	}
}

// pollerMaxAckPending bounds the due timers one poller consumer holds at
// once (jobs being polled, not jobs waiting for their timer).
const pollerMaxAckPending = 1_000_000

// arm sets the job's timer to fire at due, replacing any earlier schedule of
// the same job. A due time that has passed is published straight onto the
// due subject.
func (p *Pool) arm(ctx context.Context, id string, due time.Time) error {
	b, err := json.Marshal(pendingTimer{ID: id, Due: due.UTC()})
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: p.timers.due(id), Data: b, Header: nats.Header{}}
	if due.After(p.now().Add(minScheduleAhead)) {
		m.Subject = p.timers.sched(id)
		// RFC 3339 with nanoseconds: the server parses the fraction too.
		m.Header.Set("Nats-Schedule", "@at "+due.UTC().Format(time.RFC3339Nano))
		m.Header.Set("Nats-Schedule-Target", p.timers.due(id))
	}
	if _, err := p.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("arm timer of %s: %w", id, err)
	}
	return nil
}

// minScheduleAhead: a timer due sooner than this is published as due at
// once (and held back with NakWithDelay); the server's scheduler fires at
// 250 ms granularity.
const minScheduleAhead = 500 * time.Millisecond

// firstCheck is when a freshly submitted job is first looked at: with a
// webhook, after polling.webhook_grace; without, after polling.min_interval.
// Never later than the job's deadline.
func (p *Pool) firstCheck(j *job) time.Time {
	wait := p.cfg.Polling.MinInterval
	if j.Webhook {
		wait = p.cfg.Polling.WebhookGrace
	}
	due := j.SubmittedAt.Add(wait)
	if j.Deadline.Before(due) {
		due = j.Deadline
	}
	return due
}

// handleTimer runs when a job's timer is due.
func (p *Pool) handleTimer(ctx context.Context, msg jetstream.Msg) verdict {
	var tm pendingTimer
	if err := json.Unmarshal(msg.Data(), &tm); err != nil || !publisher.ValidID(tm.ID) {
		p.log.Error("malformed pending timer", "subject", msg.Subject(), "err", err)
		return term("malformed pending timer")
	}
	now := p.now()
	md, err := msg.Metadata()
	if err != nil {
		return term("no jetstream metadata")
	}
	if now.Before(tm.Due) {
		return nakAfter(tm.Due.Sub(now))
	}
	if p.recent.isDone(tm.ID) {
		return ack() // ended here (by its webhook, most often): no KV read
	}
	j, rev, err := p.store.get(ctx, tm.ID)
	if errors.Is(err, publisher.ErrJobNotFound) {
		return ack()
	}
	if err != nil {
		p.log.Warn("timer: load job failed", "trigger_id", tm.ID, "err", err)
		return nakAfter(natsDelays.after(int(md.NumDelivered), 0))
	}
	if j.Parked && j.State != stateSubmitted && j.State != stateDone {
		// Waiting for a slot with its trigger acked: the timer drives it.
		return p.resumeParked(ctx, msg, md, j)
	}
	if j.State != stateSubmitted {
		return ack() // done (the webhook won), or never got to fal
	}
	if !now.Before(j.Deadline) {
		return p.expire(ctx, j, rev)
	}
	// With working webhooks the webhook will end the job: look again at the
	// slow safety cadence instead of asking fal (one fal call per job).
	if j.Webhook && p.webhooksHealthy(now) && now.Before(j.SubmittedAt.Add(p.cfg.Polling.SafetyInterval)) {
		return nakAfter(p.safetyCheck(j, now))
	}
	pctx, cancel := context.WithTimeout(ctx, p.callBudget())
	st, err := p.fal.Status(pctx, j.ModelID, j.RequestID, true)
	cancel()
	if err != nil {
		p.metrics.poll("error")
		return p.pollFailed(ctx, j, rev, err, "status")
	}
	if !st.Done() {
		p.metrics.poll("running")
		p.emit.publishStatus(statusEvent(j, st, p.now()))
		return nakAfter(p.nextCheck(j, int(md.NumDelivered)))
	}
	p.metrics.poll("completed")
	if st.Metrics != nil && st.Metrics.InferenceTime != nil {
		run := p.now().Sub(j.SubmittedAt)
		p.metrics.queueTime(j.ModelID, run-time.Duration(*st.Metrics.InferenceTime*float64(time.Second)))
	}
	return p.fetchResult(ctx, j, rev, viaPoll, st)
}

// pollFailed decides after a status or result call that did not give an
// answer to act on. fal's own answer (an API error) is final; no answer at
// all (a transport error, a hung call) is retried until the job's deadline.
func (p *Pool) pollFailed(ctx context.Context, j *job, rev uint64, err error, call string) verdict {
	var apiErr *falclient.APIError
	if !errors.As(err, &apiErr) || errors.Is(err, falclient.ErrRateLimited) || apiErr.StatusCode >= 500 && call == "status" || gatewayError(apiErr) {
		f := classify(err, j.ModelID)
		p.log.Info("poll got no answer; will poll again", "trigger_id", j.ID, "request_id", j.RequestID, "call", call, "err", err)
		return nakAfter(min(max(p.pollDelays().after(2, f.RetryAfter), 0), max(j.Deadline.Sub(p.now()), 10*time.Millisecond)))
	}
	f := classify(err, j.ModelID)
	if errors.Is(err, falclient.ErrNotFound) {
		f = failure{Code: publisher.CodeFalError, Message: fmt.Sprintf("fal does not know request %s any more", j.RequestID)}
	}
	return p.finishTimer(ctx, j, rev, nil, &f, viaPoll)
}

// fetchResult gets a completed job's stored result from fal and ends the
// job with it. A stored result is final, an error included: fal has already
// retried the run itself (fal-protocol §11.2). st is the status that said
// COMPLETED, nil when completion is known otherwise (a cancel answered
// ALREADY_COMPLETED).
//
// A 5xx in fal's own JSON is the stored outcome when the status announced a
// failure (its error fields). When it did not, the answer may as well be
// fal's result API failing for a while, so it is taken only when
// confirmReads reads in a row, spaced by the poll back-off (so that they
// span more than a burst of errors), give the same status code: a stored
// result does not change. A status that says COMPLETED without error
// fields makes a stored failure unlikely (only legacy apps omit them), so
// the reads are patient: five, over about 30 s with the default back-off.
// That costs up to eight more fal calls (status and result), and only for
// such jobs. Found by make chaos: with one re-read 0.5 s later, both reads
// fell into one 1.5 s burst of 5xx for 5 of 10,000 completed runs; with
// three over 3 s, 1.
func (p *Pool) fetchResult(ctx context.Context, j *job, rev uint64, via string, st *falclient.Status) verdict {
	rctx, cancel := context.WithTimeout(ctx, p.callBudget())
	out, err := p.fal.Result(rctx, j.ModelID, j.RequestID)
	cancel()
	if err != nil {
		var apiErr *falclient.APIError
		if !errors.As(err, &apiErr) || errors.Is(err, falclient.ErrRateLimited) || gatewayError(apiErr) {
			return p.pollFailed(ctx, j, rev, err, "result")
		}
		announced := st != nil && (st.Error != "" || st.ErrorType != "")
		// Past its deadline the job ends now, with what fal answers.
		if apiErr.StatusCode >= 500 && !announced && p.now().Before(j.Deadline) {
			if reads := p.unannounced.seen(j.ID, apiErr.StatusCode); reads < confirmReads {
				p.log.Info("result read gave a server error the status did not announce; reading it again", "trigger_id", j.ID, "request_id", j.RequestID, "reads", reads, "err", err)
				return nakAfter(min(max(p.pollDelays().after(reads+1, 0), 10*time.Millisecond), j.Deadline.Sub(p.now())+10*time.Millisecond))
			}
		}
		p.unannounced.forget(j.ID)
		f := classify(err, j.ModelID)
		f.Retryable = false
		return p.finishTimer(ctx, j, rev, nil, &f, via)
	}
	p.unannounced.forget(j.ID)
	return p.finishTimer(ctx, j, rev, p.newResult(j, out), nil, via)
}

// confirmReads is how many identical result reads make an unannounced 5xx
// the stored outcome.
const confirmReads = 5

// unannouncedErrors counts, per job, the result reads in a row that gave
// the same 5xx while fal's status had not announced a failure. Bounded:
// past maxUnannounced entries it starts afresh (a job forgotten so costs
// more reads, never a wrong outcome).
type unannouncedErrors struct {
	mu    sync.Mutex
	reads map[string]unannounced
}

type unannounced struct{ code, n int }

const maxUnannounced = 10_000

// seen records one more read of id that gave code and returns how many
// reads in a row gave it.
func (u *unannouncedErrors) seen(id string, code int) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.reads == nil || len(u.reads) >= maxUnannounced {
		u.reads = make(map[string]unannounced)
	}
	r := u.reads[id]
	if r.code != code {
		r = unannounced{code: code}
	}
	r.n++
	u.reads[id] = r
	return r.n
}

func (u *unannouncedErrors) forget(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.reads, id)
}

// gatewayError reports a 5xx answered by a proxy in front of fal (an HTML
// or other non-JSON body, no x-fal-request-id): not the request's stored
// result (fal-protocol §11.4), so the result read is retried. Found by make
// chaos: such a 502 ended a completed job with upstream_error.
func gatewayError(e *falclient.APIError) bool {
	return e.StatusCode >= 500 && e.Body == nil && e.RequestID == ""
}

// expire ends a job past its deadline: cancel at fal, then a timeout error,
// unless fal says the job has just completed, in which case its result wins.
func (p *Pool) expire(ctx context.Context, j *job, rev uint64) verdict {
	cctx, cancel := context.WithTimeout(ctx, p.callBudget())
	err := p.fal.Cancel(cctx, j.ModelID, j.RequestID)
	cancel()
	if errors.Is(err, falclient.ErrAlreadyCompleted) {
		return p.fetchResult(ctx, j, rev, viaPoll, nil)
	}
	if err != nil {
		p.log.Warn("cancel at fal after deadline failed", "trigger_id", j.ID, "request_id", j.RequestID, "err", err)
	}
	f := failure{Code: publisher.CodeTimeout, Message: fmt.Sprintf(
		"no result within the job's timeout (%s); canceled at fal", j.Deadline.Sub(j.ReceivedAt))}
	return p.finishTimer(ctx, j, rev, nil, &f, viaTimeout)
}

func (p *Pool) finishTimer(ctx context.Context, j *job, rev uint64, res *publisher.Result, f *failure, via string) verdict {
	if _, err := p.finish(ctx, j, rev, res, f, via); err != nil {
		p.log.Warn("timer: finish failed; will retry", "trigger_id", j.ID, "err", err)
		return nakAfter(natsDelays.after(2, 0))
	}
	return ack()
}

// pollDelays is the poll back-off of polling-only jobs.
func (p *Pool) pollDelays() delays {
	return delays{min: p.cfg.Polling.MinInterval, max: p.cfg.Polling.MaxInterval}
}

// nextCheck is the wait before the next look at a running job: the poll
// back-off in polling-only mode; the slow safety cadence once a webhook job
// is past its grace period. Never past the job's deadline.
func (p *Pool) nextCheck(j *job, delivered int) time.Duration {
	now := p.now()
	if j.Webhook {
		return p.safetyCheck(j, now)
	}
	next := p.pollDelays().after(delivered, 0)
	if left := j.Deadline.Sub(now); left < next {
		next = max(left, 10*time.Millisecond)
	}
	return next
}

// safetyCheck is the wait before the next look at a webhook job that is
// still running: polling.safety_interval with jitter, bounded by the deadline.
func (p *Pool) safetyCheck(j *job, now time.Time) time.Duration {
	next := jittered(p.cfg.Polling.SafetyInterval)
	if left := j.Deadline.Sub(now); left < next {
		next = max(left, 10*time.Millisecond)
	}
	return next
}

// webhooksHealthy reports whether a correctly signed webhook reached this
// replica within the last safety interval: the sign that fal can reach
// falbridge and that a job's own webhook is on its way. If webhooks break,
// a job is checked at most one safety interval later than it would have been.
func (p *Pool) webhooksHealthy(now time.Time) bool {
	last := p.lastWebhook.Load()
	return last != 0 && now.Sub(time.Unix(0, last)) < p.cfg.Polling.SafetyInterval
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
