package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/falbridge/falbridge/publisher"
)

// A webhook job's timer is the safety net for a webhook that never comes;
// most jobs end by their webhook long before it could fire. Such a job's
// timer is therefore not written at submit but held here, in memory, for
// deferFor after the submit: if the job has ended by then (this replica saw
// it end, or its record says done), no timer is ever written. Otherwise the
// timer is armed then, due at the job's first check as before. deferFor is
// polling.webhook_grace, at most 15 s.
//
// Nothing is lost with a replica: the deferred timers of a replica that
// stops are armed by Stop, and those of one that dies are re-armed by the
// sweep, which calls a submitted job without a timer lost once it is older
// than the call budget plus consumer.ack_wait. deferFor is at most half of
// that, so the sweep never takes a deferred timer for a lost one.
//
// make bench measured the timer at 2 of the 7 NATS messages falbridge sent
// per job (the schedule, the ack after it fired) and about a third of
// nats-server's CPU per job.

// deferredMax bounds the timers held in memory (32 bytes each and the id):
// 2 to 4 MiB; beyond it a timer is armed at submit, as without deferral.
const deferredMax = 1 << 16

// deferHoldMax bounds deferFor. Fast jobs (most image models) are over in
// seconds; a job still running after this long is one whose timer is
// worth writing. It also keeps the queue short: 4,000 jobs/s × 15 s is
// within deferredMax.
const deferHoldMax = 15 * time.Second

// deferredTick is how often due deferred timers are looked at.
const deferredTick = 250 * time.Millisecond

// deferredChecks is how many deferred timers are checked (a KV read, maybe
// a timer written) at once.
const deferredChecks = 8

// deferredTimer is one job's timer not written yet: 32 bytes and the id.
type deferredTimer struct {
	id    string
	check int64 // the timer's due time once armed (firstCheck), Unix ns
	at    int64 // when to decide: arm it, or drop it, Unix ns
}

// deferredTimers is a FIFO of deferred timers, in submit order (so in the
// order of their at, within the jitter of concurrent workers), kept in
// fixed blocks: it never copies itself to grow, and gives memory back as it
// drains. Safe for concurrent use.
type deferredTimers struct {
	mu     sync.Mutex
	blocks [][]deferredTimer
	head   int // next entry of blocks[0]
	n      int
}

// deferredBlock is the number of timers per block (128 KiB).
const deferredBlock = 4096

// push holds t; false when the queue is full.
func (d *deferredTimers) push(t deferredTimer) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n >= deferredMax {
		return false
	}
	if k := len(d.blocks); k == 0 || len(d.blocks[k-1]) == deferredBlock {
		d.blocks = append(d.blocks, make([]deferredTimer, 0, deferredBlock))
	}
	last := &d.blocks[len(d.blocks)-1]
	*last = append(*last, t)
	d.n++
	return true
}

// due takes the timers whose time to decide has come by now; all of them
// when now is zero.
func (d *deferredTimers) due(now time.Time) []deferredTimer {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []deferredTimer
	for len(d.blocks) > 0 {
		b := d.blocks[0]
		i := d.head
		for i < len(b) && (now.IsZero() || b[i].at <= now.UnixNano()) {
			i++
		}
		out = append(out, b[d.head:i]...)
		clear(b[d.head:i])
		d.n -= i - d.head
		d.head = i
		if i < len(b) || len(b) < deferredBlock {
			if i == len(b) && len(d.blocks) == 1 {
				// Drained: start the block afresh.
				d.blocks[0], d.head = b[:0], 0
			}
			break
		}
		// A full block, all taken: drop it.
		d.blocks[0] = nil
		d.blocks, d.head = d.blocks[1:], 0
	}
	return out
}

// len is the number of timers held.
func (d *deferredTimers) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// deferTimer holds the timer of webhook job j instead of writing it, when
// its first check is at least deferFor away; false when j's timer must be
// armed now.
func (p *Pool) deferTimer(j *job) bool {
	if !j.Webhook || p.deferFor <= 0 {
		return false
	}
	check := p.firstCheck(j)
	at := j.SubmittedAt.Add(p.deferFor)
	if check.Before(at) {
		return false // due sooner (a short deadline): the timer is needed
	}
	return p.deferred.push(deferredTimer{id: j.ID, check: check.UnixNano(), at: at.UnixNano()})
}

// deferWindow is deferFor for cfg: polling.webhook_grace, at most half of
// the age past which the sweep calls a submitted job without a timer lost,
// and at most deferHoldMax.
func (p *Pool) deferWindow() time.Duration {
	return min(p.cfg.Polling.WebhookGrace, (p.callBudget()+p.cfg.Consumer.AckWait)/2, deferHoldMax)
}

// deferLoop decides the deferred timers as they come due, until the pool
// stops; Stop arms what is left (armDeferred).
func (p *Pool) deferLoop() {
	defer p.workers.Done()
	t := time.NewTicker(deferredTick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			ctx, cancel := context.WithTimeout(p.quitCtx, finishTimeout)
			p.decideDeferred(ctx, p.deferred.due(p.now()))
			cancel()
		case <-p.quit:
			return
		}
	}
}

// decideDeferred arms the timers of the jobs in ts that have not ended. A
// timer that cannot be armed now is held again, or left to the sweep.
func (p *Pool) decideDeferred(ctx context.Context, ts []deferredTimer) (armed int) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		slots = make(chan struct{}, deferredChecks)
	)
	for _, t := range ts {
		if p.recent.isDone(t.id) {
			continue // ended here, by its webhook most often
		}
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			ok, err := p.decideOne(ctx, t)
			if err != nil {
				// Held again: the next tick, or Stop, tries once more.
				t.at = p.now().Add(time.Second).UnixNano()
				if !p.deferred.push(t) {
					p.log.Warn("deferred timer not armed; the sweep will", "trigger_id", t.id, "err", err)
				}
				return
			}
			if ok {
				mu.Lock()
				armed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return armed
}

// decideOne arms t unless its job's record says it has ended (a webhook on
// another replica, say). A record that cannot be read arms the timer: a
// timer too many costs one delivery, a timer too few a job.
func (p *Pool) decideOne(ctx context.Context, t deferredTimer) (bool, error) {
	j, _, err := p.store.get(ctx, t.id)
	switch {
	case errors.Is(err, publisher.ErrJobNotFound):
		return false, nil
	case err == nil && j.State != stateSubmitted:
		return false, nil
	}
	if err := p.arm(ctx, t.id, time.Unix(0, t.check)); err != nil {
		return false, err
	}
	return true, nil
}

// armDeferred arms every timer still held, at its due time, as the pool
// stops; what ctx leaves no time for, the sweep re-arms.
func (p *Pool) armDeferred(ctx context.Context) {
	ts := p.deferred.due(time.Time{})
	if len(ts) == 0 {
		return
	}
	armed := p.decideDeferred(ctx, ts)
	p.log.Info("stopping: deferred timers armed", "held", len(ts), "armed", armed, "left_to_sweep", p.deferred.len())
}
