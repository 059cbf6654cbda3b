package consumer

import "sync"

// recentJobs remembers the records this pool wrote last, so that the webhook
// of a job this replica submitted, and the timer of a job it has already
// ended, need no KV read. A cached record may be stale (another replica may
// have moved the job since): every write still goes through compare-and-set,
// which reloads on a mismatch, and a done job stays done, so a stale entry
// costs a retry, never a wrong outcome.
type recentJobs struct {
	mu sync.Mutex
	// jobs holds whole records, the newest recordsKept.
	jobs  map[string]cachedJob
	order []string
	next  int
	// done holds the ids of jobs this pool saw end, the newest doneKept:
	// enough to answer a timer that fires one grace period later.
	done     map[string]struct{}
	doneRing []string
	doneNext int
}

type cachedJob struct {
	j   job
	rev uint64
}

const (
	recordsKept = 4096
	doneKept    = 1 << 16
)

func newRecentJobs() *recentJobs {
	return &recentJobs{
		jobs: make(map[string]cachedJob, recordsKept), order: make([]string, recordsKept),
		done: make(map[string]struct{}, doneKept), doneRing: make([]string, doneKept),
	}
}

// put remembers j at rev; a done record goes to the done set.
func (c *recentJobs) put(j *job, rev uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if j.State == stateDone {
		delete(c.jobs, j.ID)
		if _, ok := c.done[j.ID]; !ok {
			if old := c.doneRing[c.doneNext]; old != "" {
				delete(c.done, old)
			}
			c.doneRing[c.doneNext] = j.ID
			c.doneNext = (c.doneNext + 1) % len(c.doneRing)
			c.done[j.ID] = struct{}{}
		}
		return
	}
	if _, ok := c.jobs[j.ID]; !ok {
		if old := c.order[c.next]; old != "" {
			delete(c.jobs, old)
		}
		c.order[c.next] = j.ID
		c.next = (c.next + 1) % len(c.order)
	}
	// Trigger and metadata are shared with the caller's copy, never
	// written in place by anyone: a shallow copy is enough.
	c.jobs[j.ID] = cachedJob{j: *j, rev: rev}
}

// get returns a copy of the cached record of id.
func (c *recentJobs) get(id string) (*job, uint64, bool) {
	if c == nil {
		return nil, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cj, ok := c.jobs[id]
	if !ok {
		return nil, 0, false
	}
	j := cj.j
	return &j, cj.rev, true
}

// isDone reports whether this pool saw the job of id end.
func (c *recentJobs) isDone(id string) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.done[id]
	return ok
}
