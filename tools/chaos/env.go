package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// env is one scenario's world, built from clean state: NATS (one server or
// a 3-node cluster), the simulator behind the fal proxy, the webhook
// ingress and three falbridge replicas.
type env struct {
	dir        string // this scenario's output: configs, data, logs
	bins       string
	procs      *procs
	flags      map[string]bool // falbridge serve flags the built binary knows
	sc         scenario
	logLevel   string
	nodes      []*natsNode
	nc         *nats.Conn
	js         jetstream.JetStream
	sim        *proc
	simURL     string
	led        *ledger
	fal        *falProxy
	falAddr    string
	servers    []*http.Server
	ingressURL string
	reps       []*replica
	parts      []*tcpProxy // replica 0's links to each NATS node
}

func (e *env) bin(name string) string { return filepath.Join(e.bins, name) }

// replica is one falbridge serve process slot; restarts reuse its ports.
type replica struct {
	idx         int
	hook, admin int
	log         string
	natsURL     string
	mu          sync.Mutex
	proc        *proc
	starts      int
}

func (r *replica) current() *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.proc
}

func (e *env) setup(ctx context.Context) error {
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return err
	}
	nodes, err := newNATS(e, e.sc.natsNodes)
	if err != nil {
		return err
	}
	e.nodes = nodes
	for _, n := range nodes {
		if err := n.start(); err != nil {
			return err
		}
	}
	if e.nc, err = connect(nodes); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if e.js, err = jetstream.New(e.nc); err != nil {
		return err
	}
	if err := jsReady(ctx, e.js, len(nodes), 60*time.Second); err != nil {
		return err
	}

	ports, err := freePorts(3 + 2*replicas + len(nodes))
	if err != nil {
		return err
	}
	simAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	e.simURL = "http://" + simAddr
	if e.sim, err = e.procs.start("falsim", filepath.Join(e.dir, "falsim.log"), nil, e.bin("falsim"),
		"--addr", simAddr, "--concurrency", "256", "--jitter", "0", "--seed", "1",
		"--webhook-retries", "10", "--webhook-retry-delay", "500ms", "--verbose"); err != nil {
		return err
	}
	if err := waitHTTP(ctx, e.simURL+"/_sim/stats", 20*time.Second, e.sim); err != nil {
		return err
	}
	e.led = newLedger()
	e.fal = newFalProxy(simAddr, e.led)
	e.falAddr = fmt.Sprintf("127.0.0.1:%d", ports[1])
	if err := e.serveHTTP(e.falAddr, e.fal); err != nil {
		return err
	}
	hookAddrs := make([]string, replicas)
	for i := range replicas {
		hookAddrs[i] = fmt.Sprintf("127.0.0.1:%d", ports[3+2*i])
	}
	ingressAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])
	e.ingressURL = "http://" + ingressAddr
	if err := e.serveHTTP(ingressAddr, newIngress(hookAddrs)); err != nil {
		return err
	}
	// Replica 0 reaches NATS through one partitionable link per node.
	var partURLs []string
	for i, n := range nodes {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[3+2*replicas+i])
		tp, err := newTCPProxy(addr, fmt.Sprintf("127.0.0.1:%d", n.port))
		if err != nil {
			return err
		}
		e.parts = append(e.parts, tp)
		partURLs = append(partURLs, "nats://"+addr)
	}
	var direct []string
	for _, n := range nodes {
		direct = append(direct, n.url())
	}
	for i := range replicas {
		r := &replica{idx: i, hook: ports[3+2*i], admin: ports[4+2*i], log: filepath.Join(e.dir, fmt.Sprintf("falbridge-%d.log", i)),
			natsURL: strings.Join(direct, ",")}
		if i == 0 {
			r.natsURL = strings.Join(partURLs, ",")
		}
		e.reps = append(e.reps, r)
		if err := e.ensureReplica(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) serveHTTP(addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	e.servers = append(e.servers, srv)
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// replicaArgs are the serve flags of one replica: short timers so that a
// scenario drains in seconds, not the production minutes.
func (e *env) replicaArgs(r *replica) []string {
	args := []string{"serve",
		"--nats.url", r.natsURL,
		"--nats.name", fmt.Sprintf("falbridge-%d", r.idx),
		"--streams.replicas", strconv.Itoa(len(e.nodes)),
		"--fal.queue_url", e.falURL(),
		"--fal.run_url", e.falURL() + "/run",
		"--fal.jwks_url", e.simURL + "/.well-known/jwks.json",
		"--fal.request_timeout", "5s",
		"--fal.retry_initial", "200ms",
		"--fal.retry_max", "2s",
		"--webhook.listen", fmt.Sprintf("127.0.0.1:%d", r.hook),
		"--admin.listen", fmt.Sprintf("127.0.0.1:%d", r.admin),
		"--polling.webhook_grace", "5s",
		"--polling.min_interval", "500ms",
		"--polling.max_interval", "3s",
		"--consumer.ack_wait", "10s",
		"--shutdown.grace_period", "5s",
		"--log.level", e.logLevel,
	}
	if e.sc.webhooks {
		args = append(args, "--webhook.public_url", e.ingressURL)
	}
	// Keys newer than some commits the harness is pointed at.
	for _, kv := range [][2]string{
		{"polling.safety_interval", "10s"},
		{"polling.sweep_interval", "10s"},
		{"consumer.ambiguous_wait", "20s"},
	} {
		if e.flags[kv[0]] {
			args = append(args, "--"+kv[0], kv[1])
		}
	}
	return args
}

func (e *env) falURL() string { return "http://" + e.falAddr }

func (e *env) startReplica(ctx context.Context, r *replica) error {
	p, err := e.procs.start(fmt.Sprintf("falbridge-%d", r.idx), r.log, []string{"FAL_KEY=chaos:secret"}, e.bin("falbridge"), e.replicaArgs(r)...)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.proc = p
	r.starts++
	r.mu.Unlock()
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", r.admin)
	if err := waitHTTP(ctx, url, 60*time.Second, p); err != nil {
		if p.exited() {
			return fmt.Errorf("falbridge-%d exited at start (see %s)", r.idx, r.log)
		}
		return fmt.Errorf("falbridge-%d not ready: %w", r.idx, err)
	}
	return nil
}

// ensureReplica restarts r if it is not running (after a fault). A
// replica that exits at start (NATS still electing leaders) is started
// again, as a Deployment would, at most 8 times with a growing pause.
func (e *env) ensureReplica(ctx context.Context, r *replica) error {
	var err error
	for attempt := range 8 {
		if p := r.current(); p != nil && !p.exited() {
			return nil
		}
		if err = e.startReplica(ctx, r); err == nil {
			return nil
		}
		sleepCtx(ctx, time.Duration(attempt+1)*500*time.Millisecond)
	}
	return err
}

func (e *env) killReplica(r *replica, sig syscall.Signal) {
	p := r.current()
	if p == nil {
		return
	}
	if sig == syscall.SIGKILL {
		p.kill()
		return
	}
	p.stop(15 * time.Second)
}

// heal ends every fault: links up, fal faults off, every process running.
func (e *env) heal(ctx context.Context) error {
	for _, tp := range e.parts {
		tp.heal()
	}
	e.fal.faults.Store(&proxyFaults{})
	if err := e.setSimFaults(ctx, map[string]any{}); err != nil {
		return err
	}
	var errs []error
	for _, n := range e.nodes {
		if !n.up() {
			errs = append(errs, n.start())
		}
	}
	for _, r := range e.reps {
		errs = append(errs, e.ensureReplica(ctx, r))
	}
	return errors.Join(errs...)
}

func (e *env) setSimFaults(ctx context.Context, f map[string]any) error {
	b, _ := json.Marshal(f)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, e.simURL+"/_sim/faults", bytes.NewReader(b))
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("sim faults: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("sim faults: %s: %s", resp.Status, msg)
	}
	return nil
}

// teardown stops everything this scenario started, by PID.
func (e *env) teardown() {
	if e.fal != nil {
		close(e.fal.stop)
	}
	for _, tp := range e.parts {
		tp.close()
	}
	if e.nc != nil {
		e.nc.Close()
	}
	e.procs.stopAll(8 * time.Second)
	for _, s := range e.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = s.Shutdown(ctx)
		cancel()
		_ = s.Close()
	}
}
