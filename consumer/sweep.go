package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/publisher"
)

// The sweep is the safety net under the timers: it does not trust consumer
// bookkeeping. Every polling.sweep_interval one replica (the holder of a
// short lease in the job bucket) reads the state of every job record from a
// headers-only scan of the bucket and the list of subjects on the pending
// stream, and re-arms, due at once, the timer of any submitted job that has
// none. The timer then polls fal, or ends the job if it is past its
// deadline. The count of submitted jobs becomes falbridge_jobs_pending.

// sweepKey is the lease record of the sweep in the job bucket. It has a dot,
// so no trigger id can collide with it.
const sweepKey = "falbridge.sweep"

// firstSweep is the longest wait for a pool's first sweep, so that the
// pending gauge has a value soon after a start.
const firstSweep = 5 * time.Second

// sweepLease is the body of sweepKey.
type sweepLease struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
	// Pending is the number of submitted jobs the last sweep counted.
	Pending int       `json:"pending"`
	At      time.Time `json:"at"`
}

// sweepReport is what one sweep did.
type sweepReport struct {
	swept    bool // false when another replica holds the lease
	records  int
	pending  int
	rearmed  int
	timerIDs int
	released int // slots under the caps given back
}

// sweepLoop runs the sweep until the pool stops.
func (p *Pool) sweepLoop() {
	defer p.workers.Done()
	t := time.NewTimer(min(jittered(p.cfg.Polling.SweepInterval), firstSweep))
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(p.quitCtx, max(p.cfg.Polling.SweepInterval, 10*time.Second))
			rep, err := p.sweep(ctx)
			cancel()
			switch {
			case err != nil && !errors.Is(err, context.Canceled):
				p.log.Warn("sweep failed", "err", err)
			case rep.rearmed > 0:
				p.log.Warn("sweep re-armed lost timers", "rearmed", rep.rearmed, "pending", rep.pending)
			case rep.swept:
				p.log.Debug("sweep", "records", rep.records, "pending", rep.pending, "timers", rep.timerIDs)
			}
			t.Reset(jittered(p.cfg.Polling.SweepInterval))
		case <-p.quit:
			return
		}
	}
}

// sweep runs one sweep if this pool holds (or can take) the lease; otherwise
// it only refreshes the pending count from the lease record.
func (p *Pool) sweep(ctx context.Context) (sweepReport, error) {
	var rep sweepReport
	lease, rev, held, err := p.takeSweepLease(ctx)
	if err != nil {
		return rep, err
	}
	if !held {
		p.pendingJobs.Store(int64(lease.Pending))
		return rep, nil
	}
	rep.swept = true
	timers, err := p.timerIDs(ctx)
	if err != nil {
		return rep, err
	}
	rep.timerIDs = len(timers)
	states, err := p.jobStates(ctx)
	if err != nil {
		return rep, err
	}
	rep.records = len(states)
	now := p.now()
	// A job whose record says submitted a moment ago may be about to arm
	// its timer: leave it to the next sweep.
	young := now.Add(-p.callBudget() - p.cfg.Consumer.AckWait)
	for id, st := range states {
		switch st.state {
		case stateSubmitted:
			rep.pending++
		case stateWaiting:
			// A parked job's timer is all that drives it. (A job whose
			// trigger still holds it ignores the extra timer.)
		default:
			continue
		}
		if timers[id] || st.at.After(young) {
			continue
		}
		p.log.Debug("sweep: re-arming", "trigger_id", id, "written_at", st.at)
		if err := p.arm(ctx, id, now); err != nil {
			return rep, err
		}
		rep.rearmed++
	}
	if p.adm != nil {
		// Slots of jobs that ended without giving theirs back (their
		// replica stopped in between), or that were never claimed.
		orphans, err := p.adm.orphans(ctx, states, young)
		if err != nil {
			return rep, err
		}
		if len(orphans) > 0 {
			if err := p.adm.release(ctx, orphans...); err != nil {
				return rep, err
			}
			p.log.Info("sweep released slots of ended jobs", "slots", len(orphans))
		}
		rep.released = len(orphans)
	}
	p.pendingJobs.Store(int64(rep.pending))
	lease.Pending, lease.At = rep.pending, now.UTC()
	if b, err := json.Marshal(lease); err == nil {
		_, _ = p.store.kv.Update(ctx, sweepKey, b, rev)
	}
	return rep, nil
}

// takeSweepLease returns the lease record and whether this pool holds it
// now (taking it when it is free or expired).
func (p *Pool) takeSweepLease(ctx context.Context) (sweepLease, uint64, bool, error) {
	var cur sweepLease
	now := p.now()
	next := sweepLease{Owner: p.owner, Until: now.Add(2 * p.cfg.Polling.SweepInterval).UTC()}
	e, err := p.store.kv.Get(ctx, sweepKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		b, _ := json.Marshal(next)
		rev, err := p.store.kv.Create(ctx, sweepKey, b)
		if err != nil {
			return cur, 0, false, nil // another replica took it first
		}
		return next, rev, true, nil
	case err != nil:
		return cur, 0, false, fmt.Errorf("sweep lease: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &cur); err != nil {
		cur = sweepLease{}
	}
	if cur.Owner != p.owner && now.Before(cur.Until) {
		return cur, 0, false, nil
	}
	next.Pending, next.At = cur.Pending, cur.At
	b, _ := json.Marshal(next)
	rev, err := p.store.kv.Update(ctx, sweepKey, b, e.Revision())
	if err != nil {
		return cur, 0, false, nil // lost the race for it
	}
	return next, rev, true, nil
}

// timerIDs returns the ids of the jobs that have a timer on the pending
// stream (scheduled, due or held between polls): one stream-info call.
func (p *Pool) timerIDs(ctx context.Context) (map[string]bool, error) {
	info, err := p.pending.Info(ctx, jetstream.WithSubjectFilter(p.timers.all()))
	if err != nil {
		return nil, fmt.Errorf("sweep: pending stream: %w", err)
	}
	ids := make(map[string]bool, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		if id, ok := p.timers.idOf(subj); ok {
			ids[id] = true
		}
	}
	return ids, nil
}

// recordState is what the sweep learns of one record from its headers.
type recordState struct {
	state jobState
	at    time.Time // when the record was written
}

// jobStates reads the state of every job record from a headers-only scan of
// the bucket's last messages: no record body crosses the wire.
func (p *Pool) jobStates(ctx context.Context) (map[string]recordState, error) {
	stream := "KV_" + p.cfg.Streams.JobsBucket
	oc, err := p.js.CreateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Description:       "falbridge sweep (headers-only scan of job states)",
		FilterSubject:     p.store.prefix + ">",
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       true,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("sweep: scan %s: %w", stream, err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.js.DeleteConsumer(dctx, stream, oc.CachedInfo().Name)
	}()
	states := map[string]recordState{}
	info, err := oc.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("sweep: scan %s: %w", stream, err)
	}
	// The consumer was created just now: NumPending is the number of
	// records, and each Fetch asks for no more than are left, so that it
	// never waits out its max wait for messages that will not come.
	left := info.NumPending
	for left > 0 {
		batch, err := oc.Fetch(int(min(left, 512)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("sweep: scan %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			left--
			rs := recordState{state: jobState(m.Headers().Get(publisher.StateHeader))}
			if md, err := m.Metadata(); err == nil {
				rs.at = md.Timestamp
				left = min(left, md.NumPending)
			}
			if id := strings.TrimPrefix(m.Subject(), p.store.prefix); !strings.Contains(id, ".") {
				states[id] = rs // (a key with a dot is the sweep lease, not a job)
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("sweep: scan %s: %w", stream, err)
		}
		if n == 0 || ctx.Err() != nil {
			break
		}
	}
	return states, ctx.Err()
}
