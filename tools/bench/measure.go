package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// result is what one instance measured.
type result struct {
	kind                     string
	jobs                     int
	e2eRate, steadyRate      float64 // jobs/s
	cpu, tailCPU             map[string]float64
	tailFor                  time.Duration    // last result → idle (or BENCH_TAIL_MAX)
	falCalls, webhooks       float64          // per job
	webhookRefusals          float64          // failed webhook attempts per job (non-2xx, e.g. 503 at falbridge's cap), each retried by fal
	msgsSent, msgsRecv       float64          // per job, by/to the system under test
	serverMsgs               float64          // per job, all of nats-server's in+out
	latP50, latP99           float64          // ms added to the model's run time, at half load
	latRate                  float64          // jobs/s of the latency phase
	rss                      map[string]int64 // peak, KiB
	readyIn                  time.Duration
	subjects                 map[string]int // BENCH_SUBJECTS=1: messages by subject class
	timers                   string         // falbridge's poller consumer and FAL_PENDING at the tail's end
	curve                    string         // when the first, 10th … 100th percentile of results arrived
	lost, duplicated, errors int
}

// collector records the first terminal event of every trigger id, by a
// core subscription on the result and error subjects. The stream, read at
// the end, is the authority on counts; this is for timing.
type collector struct {
	mu       sync.Mutex
	sent     map[string]time.Time
	got      map[string]time.Time
	arrivals []time.Time
	want     int
	all      chan struct{} // closed when want ids have arrived
	subs     []*nats.Subscription
}

func newCollector(nc *nats.Conn) (*collector, error) {
	c := &collector{sent: map[string]time.Time{}, got: map[string]time.Time{}, all: make(chan struct{})}
	for _, subj := range []string{"fal.results.>", "fal.errors.>"} {
		sub, err := nc.Subscribe(subj, c.onMsg)
		if err != nil {
			return nil, fmt.Errorf("subscribe %s: %w", subj, err)
		}
		// Never drop an event for being slow: the harness must see all.
		_ = sub.SetPendingLimits(-1, -1)
		c.subs = append(c.subs, sub)
	}
	return c, nc.Flush()
}

func (c *collector) onMsg(m *nats.Msg) {
	now := time.Now()
	id := m.Subject[strings.LastIndexByte(m.Subject, '.')+1:]
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.got[id]; ok {
		return
	}
	if _, ok := c.sent[id]; !ok {
		return // another phase's
	}
	c.got[id] = now
	c.arrivals = append(c.arrivals, now)
	if len(c.arrivals) == c.want {
		close(c.all)
	}
}

// expect starts a phase of want ids.
func (c *collector) expect(want int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sent, c.got, c.arrivals, c.want, c.all = map[string]time.Time{}, map[string]time.Time{}, nil, want, make(chan struct{})
}

func (c *collector) markSent(id string, at time.Time) {
	c.mu.Lock()
	c.sent[id] = at
	c.mu.Unlock()
}

func (c *collector) close() {
	for _, s := range c.subs {
		_ = s.Unsubscribe()
	}
}

// trigger is the body the bench publishes: one falbridge accepts and the
// naive worker reads.
func trigger(id string) []byte {
	b, _ := json.Marshal(map[string]any{
		"id": id, "model_id": "fal-ai/flux/schnell",
		"input": map[string]any{"prompt": "a red fox in snow", "num_images": 1},
	})
	return b
}

// publish sends one trigger asynchronously; the stream's ack is awaited by
// PublishAsyncComplete.
func publish(js jetstream.JetStream, c *collector, id string) error {
	c.markSent(id, time.Now())
	// Wait while the async window is full rather than fail: the load is
	// bounded by count, not by the window.
	_, err := js.PublishAsync("fal.requests."+id, trigger(id), jetstream.WithMsgID(id), jetstream.WithStallWait(time.Minute))
	return err
}

func awaitPublishes(ctx context.Context, js jetstream.JetStream) error {
	select {
	case <-js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish acks: %w", ctx.Err())
	}
}

// settings are the knobs of a run.
type settings struct {
	quick        bool
	jobs         int // throughput phase, falbridge kinds
	naiveJobs    int // throughput phase, naive worker (it is ~10× slower)
	rounds       int
	pending      int
	latencyFor   time.Duration // length of the half-load phase
	tailMin      time.Duration // BENCH_TAIL_MIN: measure at least this long after the last result
	tailMax      time.Duration
	grace        time.Duration
	pendingGrace time.Duration
	modelLatency time.Duration
	profileDir   string
	subjects     bool // count messages by subject (adds load)
	bin          string
	kinds        []string
}

// measure runs the throughput phase, its tail and the half-load latency
// phase on a running instance.
func measure(ctx context.Context, st *stack, s settings, jobs int, profile func(start bool)) (*result, error) {
	r := &result{kind: st.opts.kind, jobs: jobs, readyIn: st.readyIn}
	col, err := newCollector(st.nc)
	if err != nil {
		return nil, err
	}
	defer col.close()

	// Throughput: every trigger published at once; the system drains them.
	col.expect(jobs)
	var tp *tap
	if s.subjects {
		if tp, err = startTap(st.natsURL); err != nil {
			return nil, err
		}
	}
	before, err := st.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	if profile != nil {
		profile(true)
	}
	start := time.Now()
	for i := range jobs {
		if err := publish(st.js, col, fmt.Sprintf("t-%06d", i)); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
	}
	waitFor := time.Minute + time.Duration(jobs)*50*time.Millisecond
	wctx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	if err := awaitPublishes(wctx, st.js); err != nil {
		return nil, err
	}
	select {
	case <-col.all:
	case <-wctx.Done():
	case <-st.sut.done:
		return nil, fmt.Errorf("%s exited during the run (%v):\n%s", st.sut.name, st.sut.err, st.sut.logTail(20))
	}
	col.mu.Lock()
	arrivals := append([]time.Time(nil), col.arrivals...)
	col.mu.Unlock()
	if len(arrivals) == 0 {
		return nil, fmt.Errorf("%s: no result within %s:\n%s", st.sut.name, waitFor, st.sut.logTail(20))
	}
	last := arrivals[len(arrivals)-1]
	r.e2eRate = float64(len(arrivals)) / last.Sub(start).Seconds()
	r.steadyRate = steadyRate(arrivals, 0.2, 0.8)
	r.curve = arrivalCurve(start, arrivals)
	atLast, err := st.snapshot(ctx)
	if err != nil {
		return nil, err
	}

	// The tail: work the system does after the last result (timers that
	// fire later, sweeps, compaction) counts against the jobs. It ends
	// once every timer could have fired and the three processes have been
	// idle for a second, or at tailMax.
	minTail := 2 * time.Second
	if st.opts.kind == kindWebhook {
		minTail += st.opts.grace
	}
	minTail = max(minTail, s.tailMin)
	end, err := waitIdle(ctx, st, last, minTail, s.tailMax)
	if err != nil {
		return nil, err
	}
	if profile != nil {
		profile(false)
	}
	if tp != nil {
		r.subjects = tp.stop()
	}
	r.tailFor = end.at.Sub(last)
	r.timers = timerState(ctx, st)
	r.cpu, r.tailCPU = map[string]float64{}, map[string]float64{}
	for name, c := range end.cpu {
		r.cpu[name] = (c - before.cpu[name]) / float64(jobs) * 1000
		r.tailCPU[name] = (c - atLast.cpu[name]) / float64(jobs) * 1000
	}
	n := float64(jobs)
	r.falCalls = float64(falCalls(end.sim)-falCalls(before.sim)) / n
	r.webhooks = float64(end.sim.WebhooksSent-before.sim.WebhooksSent) / n
	r.webhookRefusals = float64(end.sim.WebhooksFailed-before.sim.WebhooksFailed) / n
	r.msgsSent = float64(end.sut.sent-before.sut.sent) / n
	r.msgsRecv = float64(end.sut.received-before.sut.received) / n
	r.serverMsgs = float64(end.varz.InMsgs+end.varz.OutMsgs-before.varz.InMsgs-before.varz.OutMsgs) / n
	lost, dup, errs, err := countEvents(ctx, st.js, "t-", jobs)
	if err != nil {
		return nil, err
	}
	r.lost, r.duplicated, r.errors = lost, dup, errs

	// Added latency at half the steady rate this instance just reached.
	rate := math.Max(5, r.steadyRate/2)
	if math.IsNaN(rate) {
		rate = 5
	}
	lat, lost2, dup2, errs2, err := latencyPhase(ctx, st, col, rate, s)
	if err != nil {
		return nil, err
	}
	r.latRate = rate
	r.latP50, r.latP99 = percentile(lat, 50), percentile(lat, 99)
	r.lost += lost2
	r.duplicated += dup2
	r.errors += errs2

	r.rss = map[string]int64{}
	for _, p := range []*proc{st.sut, st.nats, st.sim} {
		_, hwm, err := memKiB(p.pid())
		if err != nil {
			return nil, err
		}
		r.rss[p.name] = hwm
	}
	return r, nil
}

// waitIdle samples CPU until at least minTail has passed since last and the
// processes used under 2 % of a core over the last second, or until tailMax.
func waitIdle(ctx context.Context, st *stack, last time.Time, minTail, tailMax time.Duration) (snapshot, error) {
	var window []snapshot
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		s, err := st.snapshot(ctx)
		if err != nil {
			return s, err
		}
		window = append(window, s)
		for len(window) > 1 && s.at.Sub(window[0].at) > time.Second {
			window = window[1:]
		}
		since := s.at.Sub(last)
		idle := len(window) > 1 && s.at.Sub(window[0].at) >= 900*time.Millisecond &&
			s.totalCPU()-window[0].totalCPU() < 0.02
		if since >= tailMax || (since >= minTail && idle) {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-t.C:
		}
	}
}

// latencyPhase publishes at a fixed rate for s.latencyFor and returns each
// job's latency minus the model's run time, in ms.
func latencyPhase(ctx context.Context, st *stack, col *collector, rate float64, s settings) (lat []float64, lost, dup, errs int, err error) {
	total := max(20, int(rate*s.latencyFor.Seconds()))
	col.expect(total)
	start := time.Now()
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for sent := 0; sent < total; {
		due := min(total, int(time.Since(start).Seconds()*rate)+1)
		for ; sent < due; sent++ {
			if err := publish(st.js, col, fmt.Sprintf("l-%06d", sent)); err != nil {
				return nil, 0, 0, 0, err
			}
		}
		select {
		case <-ctx.Done():
			return nil, 0, 0, 0, ctx.Err()
		case <-t.C:
		}
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute+s.latencyFor)
	defer cancel()
	if err := awaitPublishes(wctx, st.js); err != nil {
		return nil, 0, 0, 0, err
	}
	select {
	case <-col.all:
	case <-wctx.Done():
	}
	col.mu.Lock()
	for id, got := range col.got {
		lat = append(lat, float64(got.Sub(col.sent[id])-st.opts.modelLatency)/float64(time.Millisecond))
	}
	col.mu.Unlock()
	lost, dup, errs, err = countEvents(ctx, st.js, "l-", total)
	return lat, lost, dup, errs, err
}

// countEvents reads FAL_RESULTS's per-subject counts for the ids with
// prefix (want of them): ids without a result or error (lost), terminal
// events beyond the first (duplicated), and error events.
func countEvents(ctx context.Context, js jetstream.JetStream, prefix string, want int) (lost, dup, errs int, err error) {
	stream, err := js.Stream(ctx, "FAL_RESULTS")
	if err != nil {
		return 0, 0, 0, fmt.Errorf("results stream: %w", err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter("fal.>"))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("results stream info: %w", err)
	}
	perID := map[string]uint64{}
	for subj, n := range info.State.Subjects {
		id := subj[strings.LastIndexByte(subj, '.')+1:]
		if !strings.HasPrefix(id, prefix) {
			continue
		}
		perID[id] += n
		if strings.HasPrefix(subj, "fal.errors.") {
			errs += int(n)
		}
	}
	for _, n := range perID {
		dup += int(n - 1)
	}
	return want - len(perID), dup, errs, nil
}

// signalProfile starts (SIGUSR1) or stops (SIGUSR2) the CPU profile of a
// `bench serve-profiled` process.
func signalProfile(p *proc) func(bool) {
	return func(start bool) {
		sig := syscall.SIGUSR2
		if start {
			sig = syscall.SIGUSR1
		}
		_ = p.cmd.Process.Signal(sig)
	}
}

// arrivalCurve says when the first result and the 10th, 50th, 90th, 99th
// and last percentile of them arrived, from the first publish: where the
// end-to-end rate is lost to the ramp-up or the drain.
func arrivalCurve(start time.Time, arrivals []time.Time) string {
	var parts []string
	for _, q := range []struct {
		name string
		f    float64
	}{{"first", 0}, {"10%", 0.1}, {"50%", 0.5}, {"90%", 0.9}, {"99%", 0.99}, {"last", 1}} {
		i := min(len(arrivals)-1, int(q.f*float64(len(arrivals))))
		parts = append(parts, fmt.Sprintf("%s %.2fs", q.name, arrivals[i].Sub(start).Seconds()))
	}
	return strings.Join(parts, ", ")
}

// timerState describes falbridge's timers at the end of the tail: timers
// still held by the poller (delivered, Nak'ed until later) and messages
// left in the timer stream. Empty for the naive worker.
func timerState(ctx context.Context, st *stack) string {
	if st.opts.kind == kindNaive {
		return ""
	}
	cons, err := st.js.Consumer(ctx, "FAL_PENDING", falbridgeName+"-poller")
	if err != nil {
		return "poller consumer: " + err.Error()
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return "poller consumer: " + err.Error()
	}
	stream, err := st.js.Stream(ctx, "FAL_PENDING")
	if err != nil {
		return "timer stream: " + err.Error()
	}
	si, err := stream.Info(ctx)
	if err != nil {
		return "timer stream: " + err.Error()
	}
	return fmt.Sprintf("timers at the tail's end: %d held by the poller (redelivered %d), %d messages in FAL_PENDING",
		ci.NumAckPending, ci.NumRedelivered, si.State.Msgs)
}
