package main

import (
	"context"
	"math/rand/v2"
	"sync"
	"syscall"
	"time"
)

// scenario is one run from clean state: its faults act during the fault
// window, then everything is healed and the harness waits for the drain.
type scenario struct {
	name      string
	about     string
	webhooks  bool // false: polling-only mode (no webhook.public_url)
	natsNodes int
	inject    func(ctx context.Context, f *faulter)
}

// faulter runs a scenario's faults; background restarts it starts are
// waited for before the heal.
type faulter struct {
	e   *env
	rng *rand.Rand
	wg  sync.WaitGroup
	log func(format string, args ...any)
}

// every calls fn every period (±25 % jitter) until ctx ends.
func (f *faulter) every(ctx context.Context, period time.Duration, fn func()) {
	for {
		d := time.Duration(float64(period) * (0.75 + 0.5*f.rng.Float64()))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		fn()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func killReplicas(ctx context.Context, f *faulter) {
	f.every(ctx, 2*time.Second, func() {
		r := f.e.reps[f.rng.IntN(len(f.e.reps))]
		if p := r.current(); p == nil || p.exited() {
			return
		}
		f.log("kill -9 falbridge-%d", r.idx)
		f.e.killReplica(r, syscall.SIGKILL)
		f.wg.Go(func() {
			time.Sleep(time.Second)
			if err := f.e.ensureReplica(context.Background(), r); err != nil {
				f.log("restart falbridge-%d: %v", r.idx, err)
			}
		})
	})
}

func rollingRestart(ctx context.Context, f *faulter) {
	for i := 0; ctx.Err() == nil; i++ {
		r := f.e.reps[i%len(f.e.reps)]
		f.log("SIGTERM falbridge-%d", r.idx)
		f.e.killReplica(r, syscall.SIGTERM)
		if err := f.e.ensureReplica(context.Background(), r); err != nil {
			f.log("restart falbridge-%d: %v", r.idx, err)
		}
		sleepCtx(ctx, time.Second)
	}
}

// bounceNode kill -9s one NATS node and restarts it after down.
func (f *faulter) bounceNode(n *natsNode, down time.Duration) {
	if !n.up() {
		return
	}
	f.log("kill -9 %s", n.name)
	n.proc.kill()
	time.Sleep(down)
	if err := n.start(); err != nil {
		f.log("restart %s: %v", n.name, err)
	}
}

func killNATSNode(ctx context.Context, f *faulter) {
	f.every(ctx, 4*time.Second, func() {
		f.bounceNode(f.e.nodes[f.rng.IntN(len(f.e.nodes))], 3*time.Second)
	})
}

// killLeader kills the node leading FAL_PENDING (the timers), else the
// trigger stream's leader.
func killLeader(ctx context.Context, f *faulter) {
	f.every(ctx, 4*time.Second, func() {
		name := streamLeader(ctx, f.e.js, "FAL_PENDING")
		if name == "" {
			name = streamLeader(ctx, f.e.js, "FAL_REQUESTS")
		}
		for _, n := range f.e.nodes {
			if n.name == name || (name == "" && len(f.e.nodes) == 1) {
				f.bounceNode(n, 3*time.Second)
				return
			}
		}
	})
}

func killCluster(ctx context.Context, f *faulter) {
	f.every(ctx, 8*time.Second, func() {
		f.log("kill -9 every NATS node")
		for _, n := range f.e.nodes {
			if n.up() {
				n.proc.kill()
			}
		}
		time.Sleep(2 * time.Second)
		for _, n := range f.e.nodes {
			if err := n.start(); err != nil {
				f.log("restart %s: %v", n.name, err)
			}
		}
	})
}

// partitionReplica cuts falbridge-0 from every NATS node for a while, then
// heals, repeatedly.
func partitionReplica(ctx context.Context, f *faulter) {
	for ctx.Err() == nil {
		sleepCtx(ctx, 2*time.Second)
		f.log("partition falbridge-0 from NATS")
		for _, tp := range f.e.parts {
			tp.partition()
		}
		sleepCtx(ctx, 8*time.Second)
		f.log("heal falbridge-0")
		for _, tp := range f.e.parts {
			tp.heal()
		}
	}
}

// falFaults: dropped, duplicated and delayed webhooks, 429 with
// Retry-After, bursts of 5xx, and at the proxy resets before and after the
// request reached fal, delays and hung calls.
func falFaults(ctx context.Context, f *faulter) {
	base := map[string]any{
		"rate_limit_rate": 0.05, "retry_after": "1s", "server_error_rate": 0.03,
		"webhook_drop_rate": 0.2, "webhook_duplicate_rate": 0.2, "webhook_delay": "300ms",
	}
	if err := f.e.setSimFaults(ctx, base); err != nil {
		f.log("sim faults: %v", err)
	}
	f.e.fal.faults.Store(&proxyFaults{ResetBefore: 0.03, ResetAfter: 0.03, Delay: 0.05, DelayFor: 2 * time.Second, Blackhole: 0.01})
	f.every(ctx, 6*time.Second, func() {
		burst := map[string]any{}
		for k, v := range base {
			burst[k] = v
		}
		burst["server_error_rate"] = 0.6
		f.log("5xx burst")
		_ = f.e.setSimFaults(ctx, burst)
		sleepCtx(ctx, 1500*time.Millisecond)
		_ = f.e.setSimFaults(context.Background(), base)
	})
}

func allAtOnce(ctx context.Context, f *faulter) {
	var wg sync.WaitGroup
	for _, fn := range []func(context.Context, *faulter){killReplicas, killNATSNode, partitionReplica, falFaults} {
		wg.Go(func() { fn(ctx, f) })
	}
	wg.Wait()
}

func noFaults(ctx context.Context, _ *faulter) { <-ctx.Done() }

func allScenarios(nodes int) []scenario {
	return []scenario{
		{name: "none", about: "no faults, webhooks", webhooks: true, inject: noFaults},
		{name: "none-poll", about: "no faults, polling only", inject: noFaults},
		{name: "kill9", about: "kill -9 of a random replica every ~2 s", webhooks: true, inject: killReplicas},
		{name: "kill9-poll", about: "kill -9 of a random replica every ~2 s, polling only", inject: killReplicas},
		{name: "sigterm", about: "SIGTERM rolling restart", webhooks: true, inject: rollingRestart},
		{name: "nats-node", about: "kill -9 + restart of a random NATS node", webhooks: true, inject: killNATSNode},
		{name: "nats-leader", about: "kill -9 + restart of the FAL_PENDING leader", webhooks: true, inject: killLeader},
		{name: "nats-all", about: "kill -9 + restart of every NATS node", webhooks: true, inject: killCluster},
		{name: "partition", about: "falbridge-0 cut from NATS 8 s at a time", webhooks: true, inject: partitionReplica},
		{name: "fal", about: "fal faults: webhooks dropped/duplicated/delayed, 429, 5xx bursts, resets, hung calls", webhooks: true, inject: falFaults},
		{name: "fal-poll", about: "fal faults, polling only", inject: falFaults},
		{name: "all", about: "all of the above at once", webhooks: true, inject: allAtOnce},
	}
}

// quickScenarios are the most telling: replica crashes, the timer
// stream's leader dying, fal misbehaving, and everything at once.
var quickScenarios = []string{"kill9", "nats-leader", "fal-poll", "all"}
