package service

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/internal/natstest"
)

// countingJS counts the JetStream API lookups readiness makes.
type countingJS struct {
	jetstream.JetStream
	calls atomic.Int64
}

func (c *countingJS) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	c.calls.Add(1)
	return c.JetStream.Stream(ctx, name)
}

func (c *countingJS) KeyValue(ctx context.Context, bucket string) (jetstream.KeyValue, error) {
	c.calls.Add(1)
	return c.JetStream.KeyValue(ctx, bucket)
}

// #11 weak spot: every /readyz cost five JetStream API calls, and the probe
// is unauthenticated. Now a check answers the probes of one second.
func TestReadinessIsCached(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	cfg := config.Default()
	ctx := t.Context()
	for _, name := range []string{cfg.Streams.Requests, cfg.Streams.Results, cfg.Streams.Status, cfg.Streams.Pending} {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"t." + name}, Storage: jetstream.MemoryStorage})
		require.NoError(t, err)
	}
	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cfg.Streams.JobsBucket, Storage: jetstream.MemoryStorage})
	require.NoError(t, err)

	cjs := &countingJS{JetStream: js}
	rd := newReadiness(nc, cjs, nil, cfg)
	var mu sync.Mutex
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rd.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	probe := func() int {
		w := httptest.NewRecorder()
		rd.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		return w.Code
	}

	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if code := probe(); code != http.StatusOK {
				t.Errorf("probe: %d", code)
			}
		})
	}
	wg.Wait()
	require.EqualValues(t, 5, cjs.calls.Load(), "200 probes within a second make one check")

	mu.Lock()
	now = now.Add(readyCheckEvery)
	mu.Unlock()
	require.Equal(t, http.StatusOK, probe())
	require.EqualValues(t, 10, cjs.calls.Load(), "a second later, one check more")

	// A failing check is cached too, and says why.
	require.NoError(t, js.DeleteStream(ctx, cfg.Streams.Pending))
	mu.Lock()
	now = now.Add(readyCheckEvery)
	mu.Unlock()
	for range 20 {
		require.Equal(t, http.StatusServiceUnavailable, probe())
	}
	require.EqualValues(t, 14, cjs.calls.Load())

	// The connection is read on every probe, not from the cache.
	nc.Close()
	w := httptest.NewRecorder()
	rd.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	require.Equal(t, http.StatusServiceUnavailable, w.Code)
	require.Contains(t, w.Body.String(), "nats not connected")
}
