package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/falbridge/falbridge/publisher"
)

// finish publishes the job's one terminal event (a result when res is set,
// else the error f) and then marks the job done by compare-and-set. It returns
// published=false when another path had already ended the job; that is not an
// error. On an error nothing is lost: the caller retries later and the
// terminal-event guard makes the retry publish nothing twice.
func (p *Pool) finish(ctx context.Context, j *job, rev uint64, res *publisher.Result, f *failure, via string) (bool, error) {
	var (
		published bool
		err       error
	)
	if res != nil {
		published, err = p.emit.publishResult(ctx, res, j.ResultSubject)
	} else {
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
	}
	if published {
		p.metrics.finished(j, code, via, p.now())
		if via == viaWebhook || via == viaCancel {
			p.dropTimer(j.ID)
		}
	}
	for range 5 {
		if j.State == stateDone {
			return published, nil
		}
		j.State = stateDone
		j.Outcome = outcome
		j.CompletedAt = p.now().UTC()
		_, err = p.store.update(ctx, j, rev)
		if err == nil {
			if published {
				p.log.Info("job done", "trigger_id", j.ID, "request_id", j.RequestID, "model_id", j.ModelID, "outcome", outcome)
			}
			return published, nil
		}
		if !errors.Is(err, errRevisionMismatch) {
			continue // transient NATS trouble: try again
		}
		// Someone else moved the job; reload and look again.
		cur, crev, gerr := p.store.get(ctx, j.ID)
		if gerr != nil {
			err = gerr
			continue
		}
		*j, rev = *cur, crev
	}
	return published, fmt.Errorf("mark job %s done: %w", j.ID, err)
}

// The paths that end a job, for metrics (falbridge_completions_total{via}).
const (
	viaWebhook = "webhook"
	viaPoll    = "poll"
	viaCancel  = "cancel"
	viaTimeout = "timeout"
	viaIntake  = "intake"
)

// updateRetrying is store.update with a few quick retries on NATS errors
// (not on a revision mismatch, which is an answer, not a fault).
func (p *Pool) updateRetrying(ctx context.Context, j *job, rev uint64) (uint64, error) {
	var err error
	for attempt := range 4 {
		var nrev uint64
		nrev, err = p.store.update(ctx, j, rev)
		if err == nil || errors.Is(err, errRevisionMismatch) {
			return nrev, err
		}
		select {
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		case <-ctx.Done():
			return 0, err
		}
	}
	return 0, err
}

func (p *Pool) newResult(j *job, output json.RawMessage) *publisher.Result {
	return &publisher.Result{
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
	}
}
