package consumer_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/internal/falsim"
)

// Invariant 3: a job pending at fal costs a KV record and a timer message,
// not a goroutine.
//
// Not parallel: runtime.NumGoroutine counts the whole process, and Go runs
// sequential tests before it releases the parallel ones.
func TestPendingJobsHoldNoGoroutines(t *testing.T) {
	const n = 400
	b := setup(t, func(o *setupOpts) {
		o.sim = falsim.Config{Latency: time.Minute, Concurrency: 4, Seed: 3}
		o.noWebhook = true
		o.cfg = func(c *config.Config) {
			c.Polling.MinInterval = 30 * time.Second
			c.Polling.MaxInterval = time.Minute
		}
	})
	b.startPool()
	before := runtime.NumGoroutine()
	for i := range n {
		b.publish("pend", fmt.Sprintf(`{"id":"pend-%d","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`, i))
	}
	waitFor(t, "all submitted", func() bool { return b.stats().Submits == n })
	b.requireSettled()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := b.js.KeyValue(ctx, b.cfg.Streams.JobsBucket)
	require.NoError(t, err)
	st, err := kv.Status(ctx)
	require.NoError(t, err)
	require.EqualValues(t, n, st.Values(), "one record per pending job")
	pend, err := b.js.Stream(ctx, b.cfg.Streams.Pending)
	require.NoError(t, err)
	info, err := pend.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, n, info.State.Msgs, "one timer message per pending job")
	after := runtime.NumGoroutine()
	// HTTP keep-alive connections of the workers account for a few dozen;
	// a goroutine per job would be hundreds.
	require.Less(t, after-before, n/4, "goroutines grew from %d to %d for %d pending jobs", before, after, n)
}

// BenchmarkPipeline measures end-to-end jobs/s in webhook mode: trigger
// published → claimed → submitted → stored → acked → webhook → result
// published, with NATS, the simulator and the bridge sharing this machine.
//
//	go test -run '^$' -bench Pipeline -benchtime 3000x ./consumer/
func BenchmarkPipeline(bm *testing.B) {
	b := setup(bm, func(o *setupOpts) {
		o.sim = falsim.Config{Latency: time.Millisecond, Concurrency: 256, Seed: 4, WebhookSenders: 32}
		o.quiet = true
		o.cfg = func(c *config.Config) {
			c.Limits.Workers = 64
			c.Limits.MaxInFlight = 1024
			c.Consumer.FetchBatch = 128
			c.Polling.WebhookGrace = time.Minute
		}
	})
	b.startPool()
	sub, err := b.nc.SubscribeSync(b.cfg.Subjects.Results + ".>")
	require.NoError(bm, err)
	require.NoError(bm, sub.SetPendingLimits(-1, -1))
	bm.ResetTimer()
	start := time.Now()
	for i := range bm.N {
		_, err := b.js.PublishAsync("fal.requests.bench", fmt.Appendf(nil, `{"id":"b-%d","model_id":"fal-ai/flux/schnell","input":{"prompt":"p"}}`, i))
		require.NoError(bm, err)
	}
	<-b.js.PublishAsyncComplete()
	for range bm.N {
		if _, err := sub.NextMsg(time.Minute); err != nil {
			bm.Fatalf("waiting for results: %v", err)
		}
	}
	el := time.Since(start)
	bm.StopTimer()
	st := b.stats()
	bm.ReportMetric(float64(bm.N)/el.Seconds(), "jobs/s")
	bm.ReportMetric(float64(st.Submits)/float64(bm.N), "submits/job")
	bm.ReportMetric(float64(st.StatusCalls+st.ResultCalls)/float64(bm.N), "polls/job")
}
