package consumer_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/internal/falsim"
)

func TestWebhookHandlerEdges(t *testing.T) {
	t.Parallel()
	okBody := `{"request_id":"r-1","gateway_request_id":"r-1","status":"OK","payload":{"x":1},"error":null}`
	cases := []struct {
		name     string
		verify   bool
		method   string
		target   string
		body     string
		header   http.Header
		wantCode int
		wantBody string
	}{
		{name: "wrong method", method: http.MethodGet, target: "/fal/webhook?job=a", wantCode: http.StatusMethodNotAllowed},
		{name: "unsigned with verification on", verify: true, method: http.MethodPost, target: "/fal/webhook?job=a", body: okBody, wantCode: http.StatusUnauthorized, wantBody: "bad_signature"},
		{name: "forged signature", verify: true, method: http.MethodPost, target: "/fal/webhook?job=a", body: okBody,
			header:   http.Header{"X-Fal-Webhook-Request-Id": {"r-1"}, "X-Fal-Webhook-User-Id": {"u"}, "X-Fal-Webhook-Timestamp": {"1"}, "X-Fal-Webhook-Signature": {strings.Repeat("ab", 64)}},
			wantCode: http.StatusUnauthorized},
		{name: "too large", method: http.MethodPost, target: "/fal/webhook?job=a", body: `{"request_id":"` + strings.Repeat("x", 2048) + `"}`, wantCode: http.StatusRequestEntityTooLarge},
		{name: "not JSON", method: http.MethodPost, target: "/fal/webhook?job=a", body: `nope`, wantCode: http.StatusBadRequest, wantBody: "bad_payload"},
		{name: "no job key", method: http.MethodPost, target: "/fal/webhook", body: okBody, wantCode: http.StatusBadRequest, wantBody: "bad_job"},
		{name: "bad job key", method: http.MethodPost, target: "/fal/webhook?job=a.b", body: okBody, wantCode: http.StatusBadRequest, wantBody: "bad_job"},
		{name: "non-terminal status", method: http.MethodPost, target: "/fal/webhook?job=a", body: `{"request_id":"r-1","status":"IN_QUEUE"}`, wantCode: http.StatusOK, wantBody: "ignored"},
		// An unknown job is answered 200 so that fal does not retry it ten times.
		{name: "unknown job", method: http.MethodPost, target: "/fal/webhook?job=never-seen", body: okBody, wantCode: http.StatusOK, wantBody: "unknown_job"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(o *setupOpts) {
				o.cfg = func(c *config.Config) {
					c.Webhook.Verify = tc.verify
					c.Webhook.MaxBodyBytes = 1024
				}
			})
			p := b.startPool()
			req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			for k, v := range tc.header {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			p.WebhookHandler().ServeHTTP(rec, req)
			require.Equal(t, tc.wantCode, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), tc.wantBody)
		})
	}
}

func TestGlobalInFlightLimitHolds(t *testing.T) {
	t.Parallel()
	b := setup(t, func(o *setupOpts) {
		o.sim.Concurrency = 16
		o.cfg = func(c *config.Config) {
			c.Limits.Workers = 8
			c.Limits.MaxInFlight = 8
			c.Consumer.FetchBatch = 1
		}
	})
	cf := &countingFal{Fal: b.fal}
	b.start(b.newPool(cf))
	const n = 24
	for i := range n {
		b.publish("glob", `{"id":"`+triggerID(i)+`","model_id":"fal-ai/flux/schnell","mode":"sync","input":{"prompt":"p","_sim":{"latency_ms":80}}}`)
	}
	for i := range n {
		_, ev := b.terminal(triggerID(i))
		require.Nil(t, ev)
	}
	require.LessOrEqual(t, cf.max(), 8)
	require.Greater(t, cf.max(), 1, "work ran in parallel")
}

func TestProvisionIsIdempotentAndCanBeLeftToTheOperator(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		require.NoError(t, consumer.Provision(ctx, b.js, b.cfg))
	}
	// With provisioning off, a pool starts on the existing assets...
	b.cfg.Streams.Provision = false
	b.startPool()
	b.publish("prov", `{"id":"prov-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	_, ev := b.terminal("prov-1")
	require.Nil(t, ev)

	// ...and fails clearly, naming the bucket, where they are missing.
	empty := setup(t)
	empty.cfg.Streams.Provision = false
	p := empty.newPool(nil)
	err := p.Start(ctx)
	require.ErrorContains(t, err, empty.cfg.Streams.JobsBucket)
}

func TestWebhookBeforeJobIsStoredAsksForRetry(t *testing.T) {
	t.Parallel()
	// Webhooks arrive after a delay; the sim's queue is fast. This checks
	// the normal ordering works with a zero-latency model.
	b := setup(t, func(o *setupOpts) {
		o.sim = falsim.Config{Latency: time.Millisecond, Seed: 2, WebhookRetryDelay: 20 * time.Millisecond}
	})
	b.startPool()
	for i := range 10 {
		b.publish("fast", `{"id":"`+triggerID(i)+`","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`)
	}
	for i := range 10 {
		_, ev := b.terminal(triggerID(i))
		require.Nil(t, ev)
		require.Equal(t, 1, b.terminalCount(triggerID(i)))
	}
}

// When fal's signing keys cannot be fetched, the webhook is answered 503 so
// that fal retries it, rather than refused as forged.
func TestWebhookJWKSUnavailableAsksForRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	v, err := falclient.NewVerifier(falclient.VerifierOptions{JWKSURL: "http://127.0.0.1:1/.well-known/jwks.json"})
	require.NoError(t, err)
	p, err := consumer.New(b.nc, b.fal, b.cfg, consumer.WithVerifier(v))
	require.NoError(t, err)
	b.start(p)
	req := httptest.NewRequest(http.MethodPost, "/fal/webhook?job=a", strings.NewReader(`{"request_id":"r-1","status":"OK","payload":{}}`))
	req.Header.Set("X-Fal-Webhook-Request-Id", "r-1")
	req.Header.Set("X-Fal-Webhook-User-Id", "u")
	req.Header.Set("X-Fal-Webhook-Timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	req.Header.Set("X-Fal-Webhook-Signature", strings.Repeat("ab", 64))
	rec := httptest.NewRecorder()
	p.WebhookHandler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// plausibleHeaders are signature headers of the right shape that do not
// verify.
func plausibleHeaders() http.Header {
	return http.Header{"X-Fal-Webhook-Request-Id": {"r-1"}, "X-Fal-Webhook-User-Id": {"u"},
		"X-Fal-Webhook-Timestamp": {strconv.FormatInt(time.Now().Unix(), 10)}, "X-Fal-Webhook-Signature": {strings.Repeat("ab", 64)}}
}

// Weak spot: the webhook buffered up to 10 MiB of an unauthenticated body
// before it looked for a signature, with no cap on bodies at once, and it
// logged one WARN line per bogus delivery.
func TestWebhookRejectsBeforeReadingAndLogsSampled(t *testing.T) {
	t.Parallel()
	var logs logCounter
	b := setup(t)
	p, err := consumer.New(b.nc, b.fal, b.cfg, consumer.WithVerifier(b.fal.Verifier()), consumer.WithLogger(logs.logger()))
	require.NoError(t, err)
	b.start(p)

	cases := []struct {
		name   string
		header http.Header
	}{
		{"no headers", nil},
		{"stale timestamp", http.Header{"X-Fal-Webhook-Request-Id": {"r"}, "X-Fal-Webhook-User-Id": {"u"}, "X-Fal-Webhook-Timestamp": {"1"}, "X-Fal-Webhook-Signature": {strings.Repeat("ab", 64)}}},
		{"short signature", http.Header{"X-Fal-Webhook-Request-Id": {"r"}, "X-Fal-Webhook-User-Id": {"u"}, "X-Fal-Webhook-Timestamp": {strconv.FormatInt(time.Now().Unix(), 10)}, "X-Fal-Webhook-Signature": {"abcd"}}},
	}
	for _, tc := range cases {
		body := &countingReader{r: strings.NewReader(strings.Repeat("x", 1<<20))}
		req := httptest.NewRequest(http.MethodPost, "/fal/webhook?job=a", body)
		for k, v := range tc.header {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		p.WebhookHandler().ServeHTTP(rec, req)
		require.Equal(t, http.StatusUnauthorized, rec.Code, tc.name)
		require.Zero(t, body.n.Load(), "%s: no byte of the body is read", tc.name)
	}

	// A flood of plausible but forged deliveries: every one rejected,
	// only the first logged within the sampling period.
	for range 200 {
		req := httptest.NewRequest(http.MethodPost, "/fal/webhook?job=a", strings.NewReader(`{"request_id":"r-1","status":"OK"}`))
		req.Header = plausibleHeaders()
		rec := httptest.NewRecorder()
		p.WebhookHandler().ServeHTTP(rec, req)
		require.Equal(t, http.StatusUnauthorized, rec.Code)
	}
	require.LessOrEqual(t, logs.count("webhook rejected"), 2, "rejected deliveries are logged sampled")
}

// Weak spot: 32 concurrent bodies added 376 MiB. At most 64 bodies are read
// at once; the next delivery waits a moment for a slot, then is told to come
// back (fal retries a 503).
func TestWebhookBodiesInFlightAreCapped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.newPool(nil)
	consumer.SetWebhookSlotWait(p, 300*time.Millisecond)
	b.start(p)
	var (
		wg      sync.WaitGroup
		writers []*io.PipeWriter
	)
	for range 64 {
		pr, pw := io.Pipe()
		writers = append(writers, pw)
		req := httptest.NewRequest(http.MethodPost, "/fal/webhook?job=a", pr)
		req.Header = plausibleHeaders()
		wg.Go(func() { p.WebhookHandler().ServeHTTP(httptest.NewRecorder(), req) })
	}
	// Each of the 64 is blocked reading its body; the 65th waits, and is
	// refused when no slot frees.
	waitFor(t, "64 bodies in flight", func() bool { return consumer.WebhookBodiesInFlight(p) == 64 })
	req := httptest.NewRequest(http.MethodPost, "/fal/webhook?job=a", strings.NewReader(`{}`))
	req.Header = plausibleHeaders()
	rec := httptest.NewRecorder()
	p.WebhookHandler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code, rec.Body.String())
	require.Equal(t, 64, consumer.WebhookBodiesInFlight(p), "the refused delivery held no slot")

	// A slot that frees while a delivery waits is taken: not a 503.
	got := make(chan int, 1)
	go func() {
		req := httptest.NewRequest(http.MethodPost, "/fal/webhook?job=a", strings.NewReader(`{}`))
		req.Header = plausibleHeaders()
		rec := httptest.NewRecorder()
		p.WebhookHandler().ServeHTTP(rec, req)
		got <- rec.Code
	}()
	_ = writers[0].CloseWithError(io.ErrUnexpectedEOF)
	require.NotEqual(t, http.StatusServiceUnavailable, <-got, "a delivery that found a slot within the wait is handled")
	for _, w := range writers[1:] {
		_ = w.CloseWithError(io.ErrUnexpectedEOF)
	}
	wg.Wait()
}

// logCounter captures log lines for counting.
type logCounter struct {
	mu    sync.Mutex
	lines []string
}

func (l *logCounter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	return len(p), nil
}

func (l *logCounter) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

func (l *logCounter) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}
