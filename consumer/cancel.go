package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// errCanceledByUser is the cause given to a local sync/stream run when a
// cancel request ends its job.
var errCanceledByUser = errors.New("canceled by request")

const cancelTimeout = 15 * time.Second

// cancelConcurrency bounds the cancel requests served at once; past it the
// subscription's own buffer holds the rest.
const cancelConcurrency = 16

// handleCancel serves fal.cancel.<trigger id> (core NATS; a request gets a
// publisher.CancelReply, a plain publish works too).
// Each request is served on its own goroutine, at most cancelConcurrency at
// once: a cancel waits on fal, and one slow answer must not hold up the rest.
func (p *Pool) handleCancel(m *nats.Msg) {
	select {
	case p.cancels <- struct{}{}:
	case <-p.quit:
		return
	}
	p.cancelsInHand.Add(1)
	go func() {
		defer p.cancelsInHand.Done()
		defer func() { <-p.cancels }()
		id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
		reply := p.cancelJob(p.runCtx, id)
		p.log.Info("cancel request", "trigger_id", id, "status", reply.Status, "message", reply.Message)
		if m.Reply != "" {
			b, _ := json.Marshal(reply)
			_ = m.Respond(b)
		}
	}()
}

func (p *Pool) cancelJob(ctx context.Context, id string) publisher.CancelReply {
	if !publisher.ValidID(id) {
		return publisher.CancelReply{ID: id, Status: publisher.CancelError, Message: "invalid trigger id"}
	}
	ctx, cancel := context.WithTimeout(ctx, cancelTimeout)
	defer cancel()
	j, rev, err := p.store.get(ctx, id)
	if errors.Is(err, publisher.ErrJobNotFound) {
		return publisher.CancelReply{ID: id, Status: publisher.CancelUnknown, Message: "no job with this id"}
	}
	if err != nil {
		return publisher.CancelReply{ID: id, Status: publisher.CancelError, Message: err.Error()}
	}
	if j.State == stateDone {
		return publisher.CancelReply{ID: id, Status: publisher.CancelAlreadyDone, Message: "job already ended: " + j.Outcome}
	}
	if j.State == stateSubmitted {
		err := p.fal.Cancel(ctx, j.ModelID, j.RequestID)
		switch {
		case errors.Is(err, falclient.ErrAlreadyCompleted):
			return publisher.CancelReply{ID: id, Status: publisher.CancelAlreadyCompleted, Message: "fal finished the job first; its result follows"}
		case err == nil:
			return p.awaitCancel(ctx, j, rev)
		case !errors.Is(err, falclient.ErrNotFound):
			return publisher.CancelReply{ID: id, Status: publisher.CancelError, Message: fmt.Sprintf("cancel at fal: %v", err)}
		}
		// fal does not know the request (any more): nothing runs there.
	}
	f := failure{Code: publisher.CodeCanceled, Message: "canceled by request on " + p.subjects.Cancel(id)}
	published, err := p.finish(ctx, j, rev, nil, &f, viaCancel)
	if err != nil {
		return publisher.CancelReply{ID: id, Status: publisher.CancelError, Message: err.Error()}
	}
	if v, ok := p.running.Load(id); ok {
		v.(context.CancelCauseFunc)(errCanceledByUser)
	}
	if !published {
		// Canceling a running request makes fal send its webhook (a 499)
		// at once, and that webhook may end the job first: with our cancel
		// as the cause. finish has reloaded the record, so its outcome says.
		if j.Outcome == string(publisher.CodeCanceled) {
			return publisher.CancelReply{ID: id, Status: publisher.CancelCanceled}
		}
		return publisher.CancelReply{ID: id, Status: publisher.CancelAlreadyDone, Message: "job had already ended: " + j.Outcome}
	}
	return publisher.CancelReply{ID: id, Status: publisher.CancelCanceled}
}

// awaitCancel decides after fal accepted a cancel of a submitted job. A
// cancel only signals a running app: it may stop (fal's outcome is then a
// 499, and the job ends canceled) or finish regardless (billed, and its
// output is the result). So falbridge records the request and looks once:
// if fal has an outcome already, the job ends with it; if not, fal's webhook
// or the job's timer, brought forward, ends it with whatever fal says.
func (p *Pool) awaitCancel(ctx context.Context, j *job, rev uint64) publisher.CancelReply {
	next := *j
	next.CancelRequestedAt = p.now().UTC()
	nrev, err := p.store.put(ctx, &next, rev)
	var conflict *conflictError
	switch {
	case errors.As(err, &conflict) && conflict.cur.State == stateDone:
		return p.cancelOutcome(conflict.cur)
	case err != nil:
		return publisher.CancelReply{ID: j.ID, Status: publisher.CancelError, Message: fmt.Sprintf("record the cancel: %v", err)}
	}
	*j, rev = next, nrev
	// The webhook handler reads this cache first: it must see the cancel
	// request, for the note on a result that comes regardless.
	p.recent.put(j, rev)
	sctx, scancel := context.WithTimeout(ctx, p.callBudget())
	st, err := p.fal.Status(sctx, j.ModelID, j.RequestID, false)
	scancel()
	if err == nil && st.Done() {
		if v := p.fetchResult(ctx, j, rev, viaCancel, st); v.kind == verdictAck {
			if cur, _, gerr := p.store.get(ctx, j.ID); gerr == nil && cur.State == stateDone {
				return p.cancelOutcome(cur)
			}
		}
	}
	// Still running (or fal did not answer): fal's outcome decides. The
	// timer looks again soon in case its webhook does not come.
	actx, acancel := p.finishContext()
	defer acancel()
	if aerr := p.arm(actx, j.ID, p.now().Add(p.cfg.Polling.MinInterval)); aerr != nil {
		p.log.Warn("cancel: bring timer forward failed", "trigger_id", j.ID, "err", aerr)
	}
	return publisher.CancelReply{ID: j.ID, Status: publisher.CancelRequested, Message: "fal was asked to cancel the running job; " +
		"its outcome follows: canceled if the app stops, else its result (billed)"}
}

// cancelOutcome is the reply for a job that ended after a cancel request.
func (p *Pool) cancelOutcome(j *job) publisher.CancelReply {
	if j.Outcome == string(publisher.CodeCanceled) {
		return publisher.CancelReply{ID: j.ID, Status: publisher.CancelCanceled}
	}
	if j.Outcome == "result" {
		return publisher.CancelReply{ID: j.ID, Status: publisher.CancelAlreadyCompleted, Message: "fal finished the job before the cancel took effect; its result is published"}
	}
	return publisher.CancelReply{ID: j.ID, Status: publisher.CancelAlreadyDone, Message: "job ended: " + j.Outcome}
}
