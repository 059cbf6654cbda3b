package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Kinds of system under test.
const (
	kindWebhook = "falbridge-webhook"
	kindPoll    = "falbridge-poll"
	kindNaive   = "naive"
)

// benchKey is the fal key every client uses; the simulator accepts any
// well-formed key.
const benchKey = "bench-id:bench-secret"

// falbridgeName is the NATS connection name falbridge uses by default
// (nats.name): the harness counts its messages by it.
const falbridgeName = "falbridge"

// stackOptions say how one instance is set up.
type stackOptions struct {
	kind         string
	dir          string        // scratch directory of this instance
	modelLatency time.Duration // the simulator's run time of every model
	grace        time.Duration // polling.webhook_grace
	cpuProfile   string        // run falbridge as `bench serve-profiled` writing here
	natsProfile  bool          // nats-server with its pprof listener
}

// stack is one running instance: nats-server, the simulator and the system
// under test, each its own process.
type stack struct {
	opts                  stackOptions
	nats, sim, sut        *proc
	natsURL, monURL       string
	natsProfileURL        string
	simURL, adminURL      string
	sutName               string        // NATS connection name of the system under test
	readyIn               time.Duration // start of the system under test → ready
	nc                    *nats.Conn    // the harness's own connection (load, collection)
	js                    jetstream.JetStream
	http                  *http.Client
	ps                    *procs
	startedSUTAt, readyAt time.Time
	lineSeen              chan struct{} // closed when the naive worker says it is ready
	lineSeenOnce          sync.Once
}

// startStack starts the three processes of one instance and waits until
// the system under test is ready.
func startStack(ctx context.Context, ps *procs, bin string, o stackOptions) (*stack, error) {
	st := &stack{opts: o, ps: ps, http: &http.Client{Timeout: 10 * time.Second}, lineSeen: make(chan struct{})}
	natsAddr, err1 := freePort()
	monAddr, err2 := freePort()
	simAddr, err3 := freePort()
	hookAddr, err4 := freePort()
	adminAddr, err5 := freePort()
	profAddr, err6 := freePort()
	for _, err := range []error{err1, err2, err3, err4, err5, err6} {
		if err != nil {
			return nil, err
		}
	}
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	// nats-server: a file store, as in production.
	_, monPort, _ := strings.Cut(monAddr, ":")
	_, natsPort, _ := strings.Cut(natsAddr, ":")
	args := []string{"-a", "127.0.0.1", "-p", natsPort, "-m", monPort, "-js", "-sd", filepath.Join(o.dir, "js"), "-n", "bench"}
	if o.natsProfile {
		_, profPort, _ := strings.Cut(profAddr, ":")
		args = append(args, "--profile", profPort)
		st.natsProfileURL = "http://" + profAddr
	}
	if st.nats, err1 = ps.start("nats-server", filepath.Join(o.dir, "nats-server.log"), nil, nil, filepath.Join(bin, "nats-server"), args...); err1 != nil {
		return nil, err1
	}
	st.natsURL, st.monURL = "nats://"+natsAddr, "http://"+monAddr
	if err := waitHTTP(startCtx, st.nats, st.monURL+"/healthz?js-enabled-only=true"); err != nil {
		return nil, err
	}

	// The simulator: no jitter (added latency is measured against the
	// model's run time), runners enough that nothing queues, and a webhook
	// pool large enough that it is never the bottleneck.
	st.simURL = "http://" + simAddr
	if st.sim, err1 = ps.start("falsim", filepath.Join(o.dir, "falsim.log"), nil, nil, filepath.Join(bin, "falsim"),
		"--addr", simAddr, "--latency", o.modelLatency.String(), "--jitter", "0", "--concurrency", "1000000",
		"--webhook-senders", "256", "--seed", "1"); err1 != nil {
		return nil, err1
	}
	if err := waitHTTP(startCtx, st.sim, st.simURL+"/_sim/stats"); err != nil {
		return nil, err
	}

	if st.nc, err1 = nats.Connect(st.natsURL, nats.Name("bench-harness")); err1 != nil {
		return nil, fmt.Errorf("harness connect: %w", err1)
	}
	if st.js, err1 = jetstream.New(st.nc, jetstream.WithPublishAsyncMaxPending(1024)); err1 != nil {
		return nil, err1
	}

	sutLog := filepath.Join(o.dir, o.kind+".log")
	st.startedSUTAt = time.Now()
	switch o.kind {
	case kindWebhook, kindPoll:
		env := []string{
			"FALBRIDGE_CONFIG=",
			"FALBRIDGE_NATS_URL=" + st.natsURL,
			"FAL_KEY=" + benchKey,
			"FALBRIDGE_FAL_QUEUE_URL=" + st.simURL,
			"FALBRIDGE_FAL_RUN_URL=" + st.simURL + "/run",
			"FALBRIDGE_FAL_JWKS_URL=" + st.simURL + "/.well-known/jwks.json",
			"FALBRIDGE_WEBHOOK_LISTEN=" + hookAddr,
			"FALBRIDGE_ADMIN_LISTEN=" + adminAddr,
			"FALBRIDGE_POLLING_WEBHOOK_GRACE=" + o.grace.String(),
		}
		if o.kind == kindWebhook {
			env = append(env, "FALBRIDGE_WEBHOOK_PUBLIC_URL=http://"+hookAddr)
		} else {
			env = append(env, "FALBRIDGE_WEBHOOK_PUBLIC_URL=")
		}
		// BENCH_SUT_ENV: more of falbridge's environment, for experiments
		// (FALBRIDGE_LIMITS_WORKERS=128 GOMEMLIMIT=48MiB …); last wins.
		env = append(env, strings.Fields(os.Getenv("BENCH_SUT_ENV"))...)
		exe, args := filepath.Join(bin, "falbridge"), []string{"serve"}
		if o.cpuProfile != "" {
			self, err := os.Executable()
			if err != nil {
				return nil, err
			}
			exe, args = self, []string{"serve-profiled", "--cpuprofile", o.cpuProfile}
		}
		if st.sut, err1 = ps.start(o.kind, sutLog, env, nil, exe, args...); err1 != nil {
			return nil, err1
		}
		st.sutName, st.adminURL = falbridgeName, "http://"+adminAddr
		if err := waitHTTP(startCtx, st.sut, st.adminURL+"/readyz"); err != nil {
			return nil, err
		}
	case kindNaive:
		// A user's worker does not provision falbridge's streams; the
		// harness creates the two it uses, as an operator would.
		if err := createNaiveStreams(startCtx, st.js); err != nil {
			return nil, err
		}
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		st.startedSUTAt = time.Now()
		tap := &lineTap{want: "naive worker ready", seen: st.lineSeen, once: &st.lineSeenOnce}
		if st.sut, err1 = ps.start(o.kind, sutLog, []string{"FAL_KEY=" + benchKey}, tap, self, "naive", "--nats", st.natsURL, "--fal", st.simURL); err1 != nil {
			return nil, err1
		}
		st.sutName = naiveName
		select {
		case <-st.lineSeen:
		case <-st.sut.done:
			return nil, fmt.Errorf("naive worker exited (%v):\n%s", st.sut.err, st.sut.logTail(20))
		case <-startCtx.Done():
			return nil, fmt.Errorf("naive worker not ready: %w", startCtx.Err())
		}
	default:
		return nil, fmt.Errorf("unknown kind %q", o.kind)
	}
	st.readyAt = time.Now()
	st.readyIn = st.readyAt.Sub(st.startedSUTAt)
	return st, nil
}

func createNaiveStreams(ctx context.Context, js jetstream.JetStream) error {
	for _, c := range []jetstream.StreamConfig{
		{Name: "FAL_REQUESTS", Subjects: []string{"fal.requests.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute},
		{Name: "FAL_RESULTS", Subjects: []string{"fal.results.>", "fal.errors.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute},
	} {
		if _, err := js.CreateStream(ctx, c); err != nil {
			return fmt.Errorf("create %s: %w", c.Name, err)
		}
	}
	return nil
}

// stop ends the instance's processes, the system under test first.
func (st *stack) stop() {
	if st.nc != nil {
		st.nc.Close()
	}
	for _, p := range []*proc{st.sut, st.sim, st.nats} {
		if p != nil {
			p.stop()
		}
	}
}

// lineTap closes seen the first time a write contains want. A line split
// across two writes is missed; the worker prints its line in one write.
type lineTap struct {
	want string
	seen chan struct{}
	once *sync.Once
}

func (t *lineTap) Write(p []byte) (int, error) {
	if strings.Contains(string(p), t.want) {
		t.once.Do(func() { close(t.seen) })
	}
	return len(p), nil
}

// getJSON decodes the JSON answer of url into out.
func (st *stack) getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := st.http.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("get %s: %s: %s", url, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	return nil
}

// fetchTo writes the body of url into file.
func (st *stack) fetchTo(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	// A profile takes as long as it asks for: no client timeout here.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
