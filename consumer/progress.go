package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// Live progress. A job costs one fal call (its submit) when nobody watches
// it. A trigger with "progress": true asks for more: the replica that
// submitted it follows fal's status stream for the job while it runs and
// publishes what fal reports (queue position, IN_PROGRESS, new log lines)
// as status events. That is one streaming fal call per such job, held open
// while the job runs; at most limits.max_progress_streams per replica, and a
// job over the cap simply gets no live progress. The stream never ends a
// job: the webhook or the timer does. When the stream sees the job complete
// without a webhook URL, it brings the job's timer forward so that its
// result comes at once.

// errProgressDone stops a status stream whose job has ended.
var errProgressDone = errors.New("job ended")

// followProgress starts following job j's status stream, if a slot is free.
func (p *Pool) followProgress(j *job) {
	select {
	case p.progressSlots <- struct{}{}:
	default:
		p.log.Debug("live progress: at limits.max_progress_streams; not followed", "trigger_id", j.ID)
		return
	}
	p.progressInHand.Add(1)
	go func() {
		defer p.progressInHand.Done()
		defer func() { <-p.progressSlots }()
		p.streamProgress(j)
	}()
}

func (p *Pool) streamProgress(j *job) {
	ctx, cancel := context.WithDeadline(p.progressCtx, j.Deadline)
	defer cancel()
	logs := 0
	last := ""
	st, err := p.fal.StatusStream(ctx, j.ModelID, j.RequestID, true, func(st *falclient.Status) error {
		if p.recent.isDone(j.ID) {
			return errProgressDone
		}
		fresh := st.Logs
		if len(fresh) >= logs {
			fresh = fresh[logs:]
		}
		logs = len(st.Logs)
		key := string(st.State)
		if st.QueuePosition != nil {
			key += "@" + strconv.Itoa(*st.QueuePosition)
		}
		if len(fresh) == 0 && key == last {
			return nil // a repeated event: nothing new to tell
		}
		last = key
		ev := &publisher.Status{ID: j.ID, RequestID: j.RequestID, State: string(st.State), QueuePosition: st.QueuePosition, At: p.now().UTC()}
		if len(fresh) > 0 {
			if b, err := json.Marshal(fresh); err == nil {
				ev.Logs = b
			}
		}
		p.emit.publishStatus(ev)
		return nil
	})
	switch {
	case err == nil && st != nil && st.Done() && !j.Webhook:
		// Polling only: do not wait for the next poll.
		actx, acancel := p.finishContext()
		defer acancel()
		if aerr := p.arm(actx, j.ID, p.now()); aerr != nil {
			p.log.Debug("live progress: bring timer forward failed", "trigger_id", j.ID, "err", aerr)
		}
	case err != nil && !errors.Is(err, errProgressDone) && ctx.Err() == nil:
		p.log.Debug("live progress: status stream ended", "trigger_id", j.ID, "err", err)
	}
}
