package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"time"

	"github.com/falbridge/falbridge/publisher"
)

// finish publishes the job's one terminal event (a result when res is set,
// else the error f) and then marks the job done by compare-and-set. It returns
// published=false when another path had already ended the job; that is not an
// error. On an error nothing is lost: the caller retries later and the
// terminal-event guard makes the retry publish nothing twice.
//
// finish runs on a context of its own (finishContext): the caller's may be
// spent on a fal call that hung, and a result fal has billed must not be
// dropped for that.
func (p *Pool) finish(_ context.Context, j *job, rev uint64, res *publisher.Result, f *failure, via string) (bool, error) {
	ctx, cancel := p.finishContext()
	defer cancel()
	var (
		published bool
		err       error
	)
	var cost float64
	if res != nil {
		if res.Cost = p.costOf(j, res.Output); res.Cost != nil {
			cost = res.Cost.Amount
		}
		b, tooBig, eerr := p.emit.encodeResult(res)
		switch {
		case eerr != nil:
			return false, eerr
		case tooBig:
			// Final: the output will never fit. The caller can fetch it
			// from fal with the request id while fal keeps it.
			f = &failure{Code: publisher.CodeResultTooLarge, Message: fmt.Sprintf(
				"fal's output is %d bytes, more than one NATS message holds (max_payload %d); fetch it from fal: request %s of %s",
				len(res.Output), p.nc.MaxPayload(), j.RequestID, j.ModelID)}
			res = nil
		default:
			published, err = p.emit.publishResult(ctx, res, b, j.ResultSubject)
			if errors.Is(err, nats.ErrMaxPayload) {
				// The server's limit is smaller than the connection
				// knew: still final, never a retry loop.
				f = &failure{Code: publisher.CodeResultTooLarge, Message: fmt.Sprintf(
					"fal's output does not fit in one NATS message; fetch it from fal: request %s of %s", j.RequestID, j.ModelID)}
				res, err = nil, nil
			}
		}
	}
	if res == nil {
		published, err = p.emit.publishError(ctx, p.newError(j, f), j.ResultSubject)
	}
	if err != nil {
		return false, err
	}
	outcome := "result"
	var code publisher.Code
	if f != nil {
		outcome = string(f.Code)
		code = f.Code
	}
	if !published {
		// Another path ended the job first; record what it published, not
		// what we would have (a cancel can lose to a result, say).
		outcome = p.emit.existingOutcome(ctx, j.ID)
	} else {
		p.metrics.finished(j, code, via, p.now())
		if res != nil {
			p.metrics.spent(j, cost)
		}
	}
	if err := p.store.markDone(ctx, j, rev, outcome, p.now().UTC()); err != nil {
		return published, err
	}
	p.recent.put(j, 0)
	if !published || res == nil {
		cost = 0 // another path ended it, or no result to pay for
	}
	p.releaseJob(j, cost)
	if published {
		p.log.Debug("job done", "trigger_id", j.ID, "request_id", j.RequestID, "model_id", j.ModelID, "outcome", outcome, "via", via)
	}
	return published, nil
}

// finishTimeout bounds the NATS work of ending a job.
const finishTimeout = 10 * time.Second

// finishContext is the context of the writes that end a job: fresh, and
// bounded by finishTimeout and by what is left of a Stop in progress.
func (p *Pool) finishContext() (context.Context, context.CancelFunc) {
	d := finishTimeout
	if by := p.stopBy.Load(); by != 0 {
		d = min(d, max(time.Until(time.Unix(0, by)), 100*time.Millisecond))
	}
	return context.WithTimeout(context.Background(), d)
}

// The paths that end a job, for metrics (falbridge_completions_total{via}).
const (
	viaWebhook = "webhook"
	viaPoll    = "poll"
	viaCancel  = "cancel"
	viaTimeout = "timeout"
	viaIntake  = "intake"
)

func (p *Pool) newResult(j *job, output json.RawMessage) *publisher.Result {
	r := &publisher.Result{
		ID:          j.ID,
		ModelID:     j.ModelID,
		RequestID:   j.RequestID,
		Output:      output,
		Metadata:    j.Metadata,
		ReceivedAt:  j.ReceivedAt,
		SubmittedAt: j.SubmittedAt,
		CompletedAt: p.now().UTC(),
		Attempts:    j.Attempts,
	}
	if !j.CancelRequestedAt.IsZero() {
		r.Note = "a cancel was requested at " + j.CancelRequestedAt.Format(time.RFC3339) + ", but fal finished the run first (it is billed)"
	}
	return r
}

func (p *Pool) newError(j *job, f *failure) *publisher.Error {
	return &publisher.Error{
		ID:        j.ID,
		ModelID:   j.ModelID,
		RequestID: j.RequestID,
		Code:      f.Code,
		Message:   f.Message,
		Detail:    f.Detail,
		Attempts:  j.Attempts,
		Trigger:   j.Trigger,
		Metadata:  j.Metadata,
		At:        p.now().UTC(),
		Truncated: j.Truncated,
	}
}
