package falsim

import (
	"container/heap"
	"sort"
	"time"
)

// jobState is a request's queue state (fal-protocol §3.2). There is no
// failed or cancelled state: everything ends in COMPLETED.
type jobState uint8

const (
	stateQueued jobState = iota
	stateRunning
	stateCompleted
)

func (s jobState) String() string {
	switch s {
	case stateQueued:
		return "IN_QUEUE"
	case stateRunning:
		return "IN_PROGRESS"
	}
	return "COMPLETED"
}

// Priority lanes of a model queue: low-priority requests wait behind every
// normal one (X-Fal-Queue-Priority can only lower a request).
const (
	laneNormal = 0
	laneLow    = 1
)

// job is one request: queued, sync run or stream. All fields after the
// immutable ones are guarded by Sim.mu.
type job struct {
	// Immutable after creation.
	id         string
	seq        uint64 // submission order; lanes are sorted by it
	epoch      uint64 // Reset generation; events of older epochs are stale
	ms         *modelState
	base       string // "http://host", for the URLs in status bodies
	lane       int
	sync       bool // run or stream: not in the jobs map, no webhook, no expiry
	runTime    time.Duration
	planned    *outcome // what the run produces if it finishes
	webhookURL string   // cleared (under Sim.mu) when a Reset forgets the job
	userID     string   // X-Fal-Webhook-User-Id
	nImages    int      // for the log lines

	state     jobState
	submitted time.Time
	started   time.Time
	completed time.Time
	result    *outcome
	// notify is closed (and dropped) on the job's next state change. It is
	// made only when someone waits, so unwatched jobs cost no channel.
	notify chan struct{}
}

// lane is a FIFO of queued jobs in seq order. Positions are found by binary
// search, so a status poll costs O(log n) even with deep queues.
type lane struct {
	items []*job
	head  int
}

func (l *lane) len() int { return len(l.items) - l.head }

func (l *lane) push(j *job) { l.items = append(l.items, j) }

func (l *lane) pop() *job {
	if l.len() == 0 {
		return nil
	}
	j := l.items[l.head]
	l.items[l.head] = nil
	l.head++
	if l.head > 64 && l.head*2 > len(l.items) {
		n := copy(l.items, l.items[l.head:])
		clear(l.items[n:])
		l.items = l.items[:n]
		l.head = 0
	}
	return j
}

// index is j's position in the lane, or -1.
func (l *lane) index(j *job) int {
	live := l.items[l.head:]
	i := sort.Search(len(live), func(i int) bool { return live[i].seq >= j.seq })
	if i < len(live) && live[i] == j {
		return i
	}
	return -1
}

func (l *lane) remove(j *job) bool {
	i := l.index(j)
	if i < 0 {
		return false
	}
	i += l.head
	copy(l.items[i:], l.items[i+1:])
	l.items[len(l.items)-1] = nil
	l.items = l.items[:len(l.items)-1]
	return true
}

// modelState is one endpoint's runners and queue.
type modelState struct {
	m           *model
	concurrency int
	running     int
	lanes       [2]lane
	// qnotify is closed (and dropped) whenever the queue moves, which is
	// when queued jobs' positions or states change.
	qnotify chan struct{}
}

func (ms *modelState) queueChanged() {
	if ms.qnotify != nil {
		close(ms.qnotify)
		ms.qnotify = nil
	}
}

// position is the number of requests ahead of a queued job.
func (ms *modelState) position(j *job) int {
	i := ms.lanes[j.lane].index(j)
	if i < 0 {
		return 0
	}
	if j.lane == laneLow {
		i += ms.lanes[laneNormal].len()
	}
	return i
}

// evKind is what a timer-heap event does when due.
type evKind uint8

const (
	evFinish       evKind = iota // a running job completes
	evStartTimeout               // a queued job's start deadline passes
	evExpire                     // a completed job is forgotten
	evWebhook                    // a delayed or retried webhook is due
)

// event is a timer-heap entry. Events are never removed early: a handler
// checks whether the event still applies (job state, epoch) when it is due.
type event struct {
	when  time.Time
	seq   uint64
	kind  evKind
	epoch uint64
	job   *job
	del   *delivery
}

type eventHeap []*event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, k int) bool {
	if h[i].when.Equal(h[k].when) {
		return h[i].seq < h[k].seq
	}
	return h[i].when.Before(h[k].when)
}
func (h eventHeap) Swap(i, k int) { h[i], h[k] = h[k], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(*event)) }
func (h *eventHeap) Pop() any {
	old := *h
	ev := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return ev
}

// schedule puts an event on the heap and wakes the engine if it is now the
// earliest. Callers hold s.mu.
func (s *Sim) schedule(ev *event) {
	s.evSeq++
	ev.seq = s.evSeq
	ev.epoch = s.epoch
	heap.Push(&s.events, ev)
	if s.events[0] == ev {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// engine is the one goroutine that serves the timer heap: it sleeps until
// the earliest deadline (or a wake-up for an earlier one), then handles
// every due event under s.mu.
func (s *Sim) engine() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		for len(s.events) > 0 && !s.events[0].when.After(now) {
			ev := heap.Pop(&s.events).(*event)
			s.handleEvent(ev, now)
		}
		next := time.Duration(-1)
		if len(s.events) > 0 {
			next = s.events[0].when.Sub(now)
		}
		s.mu.Unlock()
		if next >= 0 {
			timer.Reset(next)
		} else {
			timer.Stop()
		}
		select {
		case <-timer.C:
		case <-s.wake:
		case <-s.closing:
			return
		}
	}
}

// handleEvent runs one due event. Callers hold s.mu.
func (s *Sim) handleEvent(ev *event, now time.Time) {
	if ev.epoch != s.epoch {
		return // from before a Reset
	}
	switch ev.kind {
	case evFinish:
		if ev.job.state == stateRunning {
			s.complete(ev.job, ev.job.planned, now)
		}
	case evStartTimeout:
		j := ev.job
		if j.state == stateQueued && j.ms.lanes[j.lane].remove(j) {
			j.ms.queueChanged()
			s.count(cTimedOut)
			s.complete(j, timeoutOutcome, now)
		}
	case evExpire:
		if s.jobs[ev.job.id] == ev.job {
			delete(s.jobs, ev.job.id)
		}
	case evWebhook:
		s.enqueueDelivery(ev.del)
	}
}

// enqueue adds a new job to its model's queue, arms its start deadline and
// starts what the runners allow. Callers hold s.mu.
func (s *Sim) enqueue(j *job, startTimeout time.Duration, now time.Time) {
	s.seq++
	j.seq = s.seq
	j.epoch = s.epoch
	j.submitted = now
	j.state = stateQueued
	j.ms = s.models[j.ms.m.id] // the current one, should a Reset have replaced it
	s.active[j] = struct{}{}
	j.ms.lanes[j.lane].push(j)
	s.queued++
	if startTimeout > 0 {
		s.schedule(&event{when: now.Add(startTimeout), kind: evStartTimeout, job: j})
	}
	s.dispatch(j.ms, now)
}

// dispatch starts queued jobs while the model has free runners. Callers hold s.mu.
func (s *Sim) dispatch(ms *modelState, now time.Time) {
	moved := false
	for ms.running < ms.concurrency {
		j := ms.lanes[laneNormal].pop()
		if j == nil {
			j = ms.lanes[laneLow].pop()
		}
		if j == nil {
			break
		}
		moved = true
		s.queued--
		s.running++
		ms.running++
		j.state = stateRunning
		j.started = now
		j.wakeWatchers()
		s.schedule(&event{when: now.Add(j.runTime), kind: evFinish, job: j})
	}
	if moved {
		ms.queueChanged()
	}
}

// complete moves a queued or running job to COMPLETED with outcome o,
// frees its runner, and hands a queue job's webhook to the senders.
// Callers hold s.mu and have already taken a queued job out of its lane.
func (s *Sim) complete(j *job, o *outcome, now time.Time) {
	switch j.state {
	case stateCompleted:
		return
	case stateRunning:
		s.running--
		j.ms.running--
		defer s.dispatch(j.ms, now)
	case stateQueued:
		s.queued--
	}
	delete(s.active, j)
	j.state = stateCompleted
	j.completed = now
	j.result = o
	j.wakeWatchers()
	s.count(cCompleted)
	if !o.ok() {
		s.count(cFailed)
	}
	if j.sync {
		return
	}
	s.schedule(&event{when: now.Add(s.cfg.Retention), kind: evExpire, job: j})
	if j.webhookURL != "" {
		s.webhookFor(j, now)
	}
}

// cancel ends a queued or running job with a 499, as an app that honours
// cancellation does. It reports false if the job was already completed.
// Callers hold s.mu.
func (s *Sim) cancel(j *job, now time.Time) bool {
	switch j.state {
	case stateCompleted:
		return false
	case stateQueued:
		if j.ms.lanes[j.lane].remove(j) {
			j.ms.queueChanged()
		}
	}
	s.count(cCancelled)
	s.complete(j, cancelledOutcome, now)
	return true
}

func (j *job) wakeWatchers() {
	if j.notify != nil {
		close(j.notify)
		j.notify = nil
	}
}

// changed returns a channel closed at the next change a watcher of j cares
// about: the queue moving while j waits in it, or j's own state changing.
// Callers hold s.mu.
func (j *job) changed() <-chan struct{} {
	if j.state == stateQueued {
		// Leaving the queue (start, cancel, timeout) moves the queue too.
		if j.ms.qnotify == nil {
			j.ms.qnotify = make(chan struct{})
		}
		return j.ms.qnotify
	}
	if j.notify == nil {
		j.notify = make(chan struct{})
	}
	return j.notify
}
