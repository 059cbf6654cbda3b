package main

import (
	"context"
	"fmt"
	"time"
)

// pendingResult is what the pending-jobs mode measured: jobs held at fal at
// once, falbridge's footprint as they pile up.
type pendingResult struct {
	jobs          int
	fifthRate     [5]float64 // intake (accepted submits) per second in each fifth
	goroutines    []float64  // falbridge's go_goroutines: ready, after each fifth, settled
	sutRSS        []int64    // falbridge RSS KiB at the same points
	natsRSS       []int64    // nats-server RSS KiB at the same points
	sutPeak       int64
	natsPeak      int64
	polls         int64 // status calls at fal during the mode
	submits       int64 // accepted submits (must equal jobs)
	held          int64 // the simulator's running jobs at the end
	intakeSeconds float64
	timers        int64   // messages in FAL_PENDING at the last sample
	timersAfter   float64 // seconds from the end of intake to the last sample
	peakAt        float64 // seconds from the first trigger to falbridge's peak RSS
}

// timersArmedWithin bounds the wait for the held timers to be written:
// falbridge holds them for at most half of (call budget + ack_wait), 41 s
// with the defaults.
const timersArmedWithin = 75 * time.Second

// pendingTimers is the number of messages in FAL_PENDING.
func pendingTimers(ctx context.Context, st *stack) (int64, error) {
	stream, err := st.js.Stream(ctx, "FAL_PENDING")
	if err != nil {
		return 0, fmt.Errorf("timer stream: %w", err)
	}
	si, err := stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("timer stream: %w", err)
	}
	return int64(si.State.Msgs), nil
}

// pendingMode publishes jobs triggers for a model that runs for an hour, so
// that every job stays pending at fal, and samples falbridge as they pile up.
func pendingMode(ctx context.Context, st *stack, jobs int) (*pendingResult, error) {
	r := &pendingResult{jobs: jobs}
	sample := func() error {
		g, err := st.gauge(ctx, "go_goroutines")
		if err != nil {
			return err
		}
		srss, _, err := memKiB(st.sut.pid())
		if err != nil {
			return err
		}
		nrss, _, err := memKiB(st.nats.pid())
		if err != nil {
			return err
		}
		r.goroutines, r.sutRSS, r.natsRSS = append(r.goroutines, g), append(r.sutRSS, srss), append(r.natsRSS, nrss)
		return nil
	}
	if err := sample(); err != nil {
		return nil, err
	}
	var before simStats
	if err := st.getJSON(ctx, st.simURL+"/_sim/stats", &before); err != nil {
		return nil, err
	}
	col, err := newCollector(st.nc)
	if err != nil {
		return nil, err
	}
	defer col.close()
	col.expect(jobs)

	// Publish from a goroutine of ours so that intake is sampled while the
	// triggers go out; it ends before this function returns.
	pubErr := make(chan error, 1)
	go func() {
		for i := range jobs {
			if err := publish(st.js, col, fmt.Sprintf("p-%06d", i)); err != nil {
				pubErr <- err
				return
			}
		}
		pubErr <- awaitPublishes(ctx, st.js)
	}()
	start := time.Now()
	// When falbridge's RSS reached its peak: during intake, or while the
	// held timers were written.
	watchPeak := func() {
		if _, hwm, err := memKiB(st.sut.pid()); err == nil && hwm > r.sutPeak {
			r.sutPeak, r.peakAt = hwm, time.Since(start).Seconds()
		}
	}
	prev, fifth := start, 1
	deadline := time.After(2*time.Minute + time.Duration(jobs)*10*time.Millisecond)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var stats simStats
	published := false
	for fifth <= 5 {
		select {
		case err := <-pubErr:
			if err != nil {
				return nil, fmt.Errorf("pending publish: %w", err)
			}
			published = true
		case <-deadline:
			return nil, fmt.Errorf("pending: %d of %d jobs submitted in time", stats.Submits-before.Submits, jobs)
		case <-st.sut.done:
			return nil, fmt.Errorf("falbridge exited (%v):\n%s", st.sut.err, st.sut.logTail(20))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		watchPeak()
		if err := st.getJSON(ctx, st.simURL+"/_sim/stats", &stats); err != nil {
			return nil, err
		}
		for fifth <= 5 && stats.Submits-before.Submits >= int64(fifth*jobs/5) {
			now := time.Now()
			r.fifthRate[fifth-1] = float64(jobs/5) / now.Sub(prev).Seconds()
			prev = now
			fifth++
			if err := sample(); err != nil {
				return nil, err
			}
		}
	}
	r.intakeSeconds = time.Since(start).Seconds()
	if !published {
		if err := <-pubErr; err != nil {
			return nil, fmt.Errorf("pending publish: %w", err)
		}
	}
	// Let the last submits' follow-up work (records, timers) settle, then
	// count: nothing must have been submitted twice or polled.
	time.Sleep(3 * time.Second)
	if err := sample(); err != nil {
		return nil, err
	}
	if err := st.getJSON(ctx, st.simURL+"/_sim/stats", &stats); err != nil {
		return nil, err
	}
	r.submits = stats.Submits - before.Submits

	// A webhook job's timer is held in memory for a while after its
	// submit (consumer/deferred.go), then written: wait until every
	// pending job has its timer in FAL_PENDING, and sample once more, so
	// that the footprint is measured with the timers stored too.
	armStart := time.Now()
	for {
		n, err := pendingTimers(ctx, st)
		if err != nil {
			return nil, err
		}
		r.timers = n
		if n >= int64(jobs) || time.Since(armStart) > timersArmedWithin {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-st.sut.done:
			return nil, fmt.Errorf("falbridge exited (%v):\n%s", st.sut.err, st.sut.logTail(20))
		case <-time.After(500 * time.Millisecond):
		}
		watchPeak()
	}
	r.timersAfter = time.Since(armStart).Seconds() + 3
	if err := sample(); err != nil {
		return nil, err
	}
	if err := st.getJSON(ctx, st.simURL+"/_sim/stats", &stats); err != nil {
		return nil, err
	}
	r.polls = stats.StatusCalls - before.StatusCalls
	r.held = stats.Running
	watchPeak()
	var err2 error
	if _, r.natsPeak, err2 = memKiB(st.nats.pid()); err2 != nil {
		return nil, err2
	}
	return r, nil
}
