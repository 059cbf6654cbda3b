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
	id      string
	seq     uint64 // submission order; lanes are sorted by it
	epoch   uint64 // Reset generation; events of older epochs are stale
	ms      *modelState
	base    string // "http://host", for the URLs in status bodies
	lane    int
	sync    bool // run or stream: not in the jobs map, no webhook, no expiry
	runTime time.Duration
	planned *outcome // what a successful attempt produces (or the async 422)
	fail    *outcome // what a failing attempt produces ("_sim.fail"), or nil
	// failAttempts > 0 fails only the first failAttempts attempts.
	failAttempts  int
	webhookURL    string        // cleared (under Sim.mu) when a Reset forgets the job
	userID        string        // X-Fal-Webhook-User-Id
	nImages       int           // for the log lines
	honours       bool          // the app stops on a cancel signal
	noRetry       bool          // X-Fal-No-Retry: one attempt only
	storeIO       bool          // payload storage on (X-Fal-Store-IO absent or not "0")
	signGatewayID bool          // "_sim.sign_gateway_id": sign the last gateway id
	mediaTTL      time.Duration // X-Fal-Object-Lifecycle-Preference; 0 = media never expire
	headers       map[string]string

	state     jobState
	attempts  int      // attempts started, from 1 once running
	gateways  []string // gateway_request_id of each retried attempt (the first attempt's is id)
	inRetry   bool     // a failed attempt is being retried
	cancelReq bool     // a cancel was asked for
	billed    int
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
	when    time.Time
	seq     uint64
	kind    evKind
	epoch   uint64
	attempt int // evFinish: the attempt it ends
	job     *job
	del     *delivery
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
		j := ev.job
		if j.state != stateRunning || ev.attempt != j.attempts {
			return
		}
		o := j.attemptOutcome()
		if o.retried && !j.sync && !j.noRetry && j.attempts < s.cfg.ServerRetries {
			// fal's queue retries the request on another runner: a new
			// gateway id, the same queue request id.
			j.attempts++
			j.gateways = append(j.gateways, newRequestID())
			j.inRetry = true
			s.count(cServerRetries)
			s.schedule(&event{when: now.Add(s.cfg.ServerRetryDelay), kind: evFinish, job: j, attempt: j.attempts})
			return
		}
		s.complete(j, o, now)
	case evStartTimeout:
		j := ev.job
		switch {
		case j.state == stateQueued && j.ms.lanes[j.lane].remove(j):
			j.ms.queueChanged()
		case j.state == stateRunning && j.inRetry && j.attemptOutcome() != j.planned:
			// The start deadline covers failed retries: no runner has
			// started processing the request yet.
		default:
			return
		}
		s.count(cTimedOut)
		s.complete(j, timeoutOutcome, now)
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

// attemptOutcome is what the current attempt produces.
func (j *job) attemptOutcome() *outcome {
	if j.fail != nil && (j.failAttempts == 0 || j.attempts <= j.failAttempts) {
		return j.fail
	}
	return j.planned
}

// dispatch starts queued jobs while the model has free runners and the
// account is under its concurrency limit. Callers hold s.mu.
func (s *Sim) dispatch(ms *modelState, now time.Time) {
	moved := false
	for ms.running < ms.concurrency && s.running < int64(s.cfg.AccountConcurrency) {
		j := ms.head()
		if j == nil {
			break
		}
		moved = true
		s.start(ms, now)
	}
	if moved {
		ms.queueChanged()
	}
}

// dispatchAll starts queued jobs of every model, oldest (normal lane first)
// first, while runners and the account limit allow: a runner freed by one
// model may be the account slot another model's queue waits for. Callers
// hold s.mu.
func (s *Sim) dispatchAll(now time.Time) {
	for s.running < int64(s.cfg.AccountConcurrency) {
		var best *modelState
		var bj *job
		for _, ms := range s.models {
			if ms.running >= ms.concurrency {
				continue
			}
			j := ms.head()
			if j != nil && (bj == nil || j.lane < bj.lane || (j.lane == bj.lane && j.seq < bj.seq)) {
				best, bj = ms, j
			}
		}
		if best == nil {
			return
		}
		s.start(best, now)
		best.queueChanged()
	}
}

// head is the job a free runner of ms takes next, or nil.
func (ms *modelState) head() *job {
	for l := range ms.lanes {
		if ln := &ms.lanes[l]; ln.len() > 0 {
			return ln.items[ln.head]
		}
	}
	return nil
}

// start takes ms's head job out of its queue and runs its first attempt.
// Callers hold s.mu and have checked that ms has a job and a free runner.
func (s *Sim) start(ms *modelState, now time.Time) {
	j := ms.lanes[laneNormal].pop()
	if j == nil {
		j = ms.lanes[laneLow].pop()
	}
	s.queued--
	s.running++
	ms.running++
	j.state = stateRunning
	j.started = now
	j.attempts = 1
	j.wakeWatchers()
	s.schedule(&event{when: now.Add(j.runTime), kind: evFinish, job: j, attempt: 1})
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
		defer s.dispatchAll(now)
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
	} else {
		// fal bills an app run that produced a result; never server
		// errors, cancels (499) or validation errors.
		j.billed++
		s.billed++
		s.billedByModel[j.ms.m.id]++
		s.billedByID[j.id]++
		if j.mediaTTL > 0 {
			s.mediaUntil[j.id] = now.Add(j.mediaTTL)
		}
	}
	if j.sync {
		return
	}
	s.schedule(&event{when: now.Add(s.retention(j, o)), kind: evExpire, job: j})
	if j.webhookURL != "" {
		s.webhookFor(j, now)
	}
}

// retention is how long a completed queue request stays readable
// (fal-protocol §11): 30 days with payload storage, else 1 hour, or 6
// minutes for a result of 10 KB or more.
func (s *Sim) retention(j *job, o *outcome) time.Duration {
	switch {
	case j.storeIO:
		return s.cfg.StoredRetention
	case len(o.body) >= LargeResultBytes:
		return s.cfg.LargeResultRetention
	}
	return s.cfg.Retention
}

// requestCancel is a cancel asked for through the queue API: a queued job
// leaves the queue with a 499; a running one only has its app signalled,
// and ends with a 499 if the app honours the signal (always in Lenient
// mode), else runs on. It reports false if the job was already completed.
// Callers hold s.mu.
func (s *Sim) requestCancel(j *job, now time.Time) bool {
	if j.state == stateCompleted {
		return false
	}
	j.cancelReq = true
	if j.state == stateRunning && !s.cfg.Lenient && !j.honours {
		s.log.Debug("cancel ignored by the app", "request_id", j.id)
		return true
	}
	return s.cancel(j, now)
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

// lastGateway is the gateway_request_id of the latest attempt.
func (j *job) lastGateway() string {
	if n := len(j.gateways); n > 0 {
		return j.gateways[n-1]
	}
	return j.id
}
