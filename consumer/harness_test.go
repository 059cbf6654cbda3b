package consumer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/internal/falsim/falsimtest"
	"github.com/falbridge/falbridge/internal/natstest"
	"github.com/falbridge/falbridge/publisher"
)

// testBundle is one hermetic falbridge: embedded NATS, the fal simulator, a
// webhook listener and pools built on demand.
type testBundle struct {
	t       testing.TB
	srv     *natstest.Server
	nc      *nats.Conn
	js      jetstream.JetStream
	sim     *falsimtest.Server
	fal     *falclient.Client
	cfg     config.Config
	webhook *httptest.Server
	quiet   bool
	// polling: no webhook URL, jobs complete by polling only.
	polling bool
	// current is the pool the webhook listener routes to (nil: 503).
	current atomic.Pointer[consumer.Pool]
}

type setupOpts struct {
	sim       falsim.Config
	noWebhook bool
	quiet     bool // discard the pool's logs (benchmarks)
	cfg       func(*config.Config)
	// onWebhook sees every webhook body before the pool does.
	onWebhook func(body []byte)
}

func setup(t testing.TB, mods ...func(*setupOpts)) *testBundle {
	t.Helper()
	o := &setupOpts{sim: falsim.Config{Latency: 30 * time.Millisecond, Jitter: 0.1, Seed: 1, WebhookRetryDelay: 50 * time.Millisecond}}
	for _, m := range mods {
		m(o)
	}
	b := &testBundle{t: t, quiet: o.quiet, polling: o.noWebhook}
	b.srv = natstest.Run(t)
	b.nc = b.srv.Connect(t)
	var err error
	b.js, err = jetstream.New(b.nc)
	require.NoError(t, err)
	b.sim = falsimtest.New(t, o.sim)
	b.webhook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := b.current.Load()
		if p == nil {
			http.Error(w, "no pool", http.StatusServiceUnavailable)
			return
		}
		if o.onWebhook != nil {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			o.onWebhook(body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		p.WebhookHandler().ServeHTTP(w, r)
	}))
	t.Cleanup(b.webhook.Close)

	cfg := config.Default()
	cfg.NATS.URL = b.srv.ClientURL()
	cfg.Fal.Key = "test-id:test-secret"
	cfg.Fal.QueueURL = b.sim.QueueURL
	cfg.Fal.RunURL = b.sim.RunURL
	cfg.Fal.JWKSURLs = []string{b.sim.JWKSURL}
	cfg.Fal.MaxAttempts = 2
	cfg.Fal.RetryInitial = 10 * time.Millisecond
	cfg.Fal.RetryMax = 50 * time.Millisecond
	cfg.Fal.RequestTimeout = 5 * time.Second
	cfg.Webhook.PublicURL = b.webhook.URL
	cfg.Webhook.JWKSURLs = []string{b.sim.JWKSURL}
	if o.noWebhook {
		cfg.Webhook.PublicURL = ""
	}
	cfg.Streams.Storage = "memory"
	cfg.Limits.Workers = 8
	cfg.Polling.WebhookGrace = 400 * time.Millisecond
	cfg.Polling.MinInterval = 20 * time.Millisecond
	cfg.Polling.MaxInterval = 200 * time.Millisecond
	cfg.Consumer.AckWait = 4 * time.Second
	cfg.Consumer.MaxDeliver = 5
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	require.NoError(t, cfg.Validate())
	b.cfg = cfg

	b.fal, err = falclient.New(
		falclient.WithKey(falclient.Key(cfg.Fal.Key.Reveal())),
		falclient.WithQueueURL(cfg.Fal.QueueURL),
		falclient.WithRunURL(cfg.Fal.RunURL),
		falclient.WithJWKSURL(cfg.Fal.JWKSURLs...),
		falclient.WithRequestTimeout(cfg.Fal.RequestTimeout),
		falclient.WithRetry(falclient.RetryPolicy{MaxAttempts: cfg.Fal.MaxAttempts, InitialInterval: cfg.Fal.RetryInitial, MaxInterval: cfg.Fal.RetryMax}),
	)
	require.NoError(t, err)
	return b
}

// forModes runs fn as two parallel subtests: webhook mode (the default) and
// polling-only mode (no webhook URL), so that every scenario it holds is
// proven on both completion paths. Pass mode to setup first.
func forModes(t *testing.T, fn func(t *testing.T, mode func(*setupOpts))) {
	t.Helper()
	for _, m := range []struct {
		name      string
		noWebhook bool
	}{{"webhook", false}, {"polling", true}} {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			fn(t, func(o *setupOpts) { o.noWebhook = m.noWebhook })
		})
	}
}

// newPool builds and starts a pool; it is stopped when the test ends.
func (b *testBundle) newPool(fal consumer.Fal) *consumer.Pool {
	b.t.Helper()
	if fal == nil {
		fal = b.fal
	}
	log := testLogger(b.t)
	if b.quiet {
		log = nil
	}
	p, err := consumer.New(b.nc, fal, b.cfg, consumer.WithVerifier(b.fal.Verifier()), consumer.WithLogger(log))
	require.NoError(b.t, err)
	return p
}

func (b *testBundle) start(p *consumer.Pool) *consumer.Pool {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(b.t, p.Start(ctx))
	b.current.Store(p)
	b.t.Cleanup(func() { b.stop(p) })
	return p
}

func (b *testBundle) startPool() *consumer.Pool { return b.start(b.newPool(nil)) }

func (b *testBundle) stop(p *consumer.Pool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(b.t, p.Stop(ctx))
	b.current.CompareAndSwap(p, nil)
}

// publish puts a raw trigger body on fal.requests.<suffix> through JetStream,
// with no headers, as `nats pub` would (through a stream).
func (b *testBundle) publish(suffix string, body string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := b.js.Publish(ctx, "fal.requests."+suffix, []byte(body))
	require.NoError(b.t, err)
}

// terminal waits for the one terminal event of id and returns it.
func (b *testBundle) terminal(id string) (*publisher.Result, *publisher.Error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pub, err := publisher.New(b.js)
	require.NoError(b.t, err)
	res, err := pub.Await(ctx, id)
	if err != nil {
		ev, ok := err.(*publisher.Error)
		require.Truef(b.t, ok, "await %s: %v", id, err)
		return nil, ev
	}
	return res, nil
}

// terminalCount counts the events in the results stream for id (results and
// errors together); invariant 2 says it is exactly one.
func (b *testBundle) terminalCount(id string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := b.js.Stream(ctx, b.cfg.Streams.Results)
	require.NoError(b.t, err)
	n := 0
	for _, subj := range []string{b.cfg.Subjects.Results + "." + id, b.cfg.Subjects.Errors + "." + id} {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
		require.NoError(b.t, err)
		for _, c := range info.State.Subjects {
			n += int(c)
		}
	}
	return n
}

// requireSettled checks that the trigger stream and the trigger consumer hold
// nothing: every trigger was acked or terminated, none waits for redelivery.
func (b *testBundle) requireSettled() {
	b.t.Helper()
	require.Eventually(b.t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := b.js.Stream(ctx, b.cfg.Streams.Requests)
		if err != nil {
			return false
		}
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	}, 10*time.Second, 20*time.Millisecond, "trigger stream not empty")
}

func (b *testBundle) stats() falsim.Stats { return b.sim.Stats() }

// waitFor polls cond until it holds (10 s at most).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 15*time.Second, 10*time.Millisecond, what)
}

// countingFal wraps a Fal and counts concurrent sync runs, for limit tests.
type countingFal struct {
	consumer.Fal
	mu      sync.Mutex
	cur     int
	maxSeen int
}

func (c *countingFal) Run(ctx context.Context, model string, input any, opts falclient.RunOptions) (json.RawMessage, error) {
	c.mu.Lock()
	c.cur++
	c.maxSeen = max(c.maxSeen, c.cur)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cur--
		c.mu.Unlock()
	}()
	return c.Fal.Run(ctx, model, input, opts)
}

func (c *countingFal) max() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.maxSeen
}

func triggerID(i int) string { return fmt.Sprintf("job-%03d", i) }

// frontedClient is a fal client whose queue calls pass through a server in
// front of the simulator: front answers a call itself when it returns true
// (a proxy or ingress answering in fal's stead), else the call reaches the
// simulator. retry is the client's policy.
func (b *testBundle) frontedClient(front func(w http.ResponseWriter, r *http.Request) bool, retry falclient.RetryPolicy) *falclient.Client {
	b.t.Helper()
	target, err := url.Parse(b.sim.QueueURL)
	require.NoError(b.t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !front(w, r) {
			proxy.ServeHTTP(w, r)
		}
	}))
	b.t.Cleanup(srv.Close)
	c, err := falclient.New(
		falclient.WithKey(falclient.Key(b.cfg.Fal.Key.Reveal())),
		falclient.WithQueueURL(srv.URL),
		falclient.WithRunURL(b.cfg.Fal.RunURL),
		falclient.WithJWKSURL(b.cfg.Fal.JWKSURLs...),
		falclient.WithRetry(retry),
	)
	require.NoError(b.t, err)
	return c
}
