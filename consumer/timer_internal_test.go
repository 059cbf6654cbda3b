package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/internal/natstest"
	"github.com/falbridge/falbridge/publisher"
)

// TestTimersSurviveOutOfOrderSettles is the bare-NATS scenario that lost
// jobs (point 1 of the engine issue), run against the timer mechanism:
// timers a, b, c, d are delivered; a is Nak'ed with a delay, b is held, c
// and d are acked, while the server does its own bookkeeping of schedules
// (one fires, which purges its schedule subject; one is re-armed, a roll-up).
// Under the old mechanism, a subject purge on the consumer's stream at this
// point moved the ack floor past a and b and they were never delivered again.
// Here every timer comes back.
func TestTimersSurviveOutOfOrderSettles(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cfg := config.Default()
	cfg.Streams.Pending = "T_PENDING"
	cfg.Consumer.Durable = "t"
	cfg.Consumer.AckWait = 2 * time.Second
	sc := pendingStreamConfig(cfg)
	sc.Storage = jetstream.MemoryStorage
	_, err = js.CreateStream(ctx, sc)
	require.NoError(t, err)
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Streams.Pending, pollerConsumerConfig(cfg))
	require.NoError(t, err)
	p := &Pool{js: js, timers: newTimerSubjects(cfg), now: time.Now}

	now := time.Now()
	for _, id := range []string{"a", "b", "c", "d"} {
		require.NoError(t, p.arm(ctx, id, now))
	}
	require.NoError(t, p.arm(ctx, "e", now.Add(time.Second))) // fires: the server purges sched.e
	require.NoError(t, p.arm(ctx, "f", now.Add(time.Hour)))   // re-armed below: a roll-up of sched.f
	require.NoError(t, p.arm(ctx, "f", now.Add(1500*time.Millisecond)))

	got := map[string]jetstream.Msg{}
	batch, err := cons.Fetch(4, jetstream.FetchMaxWait(5*time.Second))
	require.NoError(t, err)
	for m := range batch.Messages() {
		id, ok := p.timers.idOf(m.Subject())
		require.True(t, ok)
		got[id] = m
	}
	require.Len(t, got, 4)
	require.NoError(t, got["a"].NakWithDelay(time.Second))
	// b is held: it comes back after AckWait.
	require.NoError(t, got["c"].Ack())
	require.NoError(t, got["d"].Ack())

	seen := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && (seen["a"] == 0 || seen["b"] == 0 || seen["e"] == 0 || seen["f"] == 0) {
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(500*time.Millisecond))
		require.NoError(t, err)
		for m := range batch.Messages() {
			id, _ := p.timers.idOf(m.Subject())
			seen[id]++
			require.NoError(t, m.Ack())
		}
	}
	for _, id := range []string{"a", "b", "e", "f"} {
		require.Positivef(t, seen[id], "timer %s was never delivered again (seen %v)", id, seen)
	}
	require.Equal(t, 1, seen["f"], "a re-armed timer fires once")
	require.Zero(t, seen["c"]+seen["d"], "acked timers do not come back")

	// Nothing is left behind: every timer was acked, every schedule fired.
	info, err := js.Stream(ctx, cfg.Streams.Pending)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		si, err := info.Info(ctx)
		return err == nil && si.State.Msgs == 0
	}, 5*time.Second, 50*time.Millisecond)
}

// TestRedeliveryUnderLiveLeaseWaits: a trigger redelivered while its claim's
// lease is live (its first worker is still submitting: a NATS restart rolled
// the consumer state back) waits for the lease; it used to be declared the
// ambiguous window at once (point 5), ending a job fal had accepted. Only an
// expired lease is ambiguous.
func TestRedeliveryUnderLiveLeaseWaits(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	cfg := config.Default()
	cfg.NATS.URL = srv.ClientURL()
	cfg.Fal.Key = "id:secret"
	cfg.Streams.Storage = "memory"
	cfg.Webhook.PublicURL = "" // polling only: no webhook to wait for
	fal, err := falclient.New(falclient.WithKey("id:secret"), falclient.WithQueueURL("http://127.0.0.1:9"))
	require.NoError(t, err)
	p, err := New(nc, fal, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, p.Start(ctx))
	t.Cleanup(func() { _ = p.Stop(context.Background()) })

	now := time.Now()
	j := &job{V: jobRecordVersion, ID: "lease-1", State: stateClaimed, ModelID: "fal-ai/flux/schnell", Mode: publisher.ModeQueue,
		TriggerSeq: 42, Attempts: 1, Owner: "another-replica", LeaseUntil: now.Add(10 * time.Second),
		ReceivedAt: now, Deadline: now.Add(time.Hour)}
	rev, err := p.store.create(ctx, j)
	require.NoError(t, err)
	d := &delivery{seq: 42, delivered: 2, receivedAt: now}
	tr := &publisher.Trigger{ID: j.ID, ModelID: j.ModelID}

	v := p.handleClaimed(ctx, d, tr, j.ID)
	require.Equal(t, verdictNak, v.kind, "a live claim must wait, got %s", v)
	require.InDelta(t, 10*time.Second, v.delay, float64(time.Second))
	cur, _, err := p.store.get(ctx, j.ID)
	require.NoError(t, err)
	require.Equal(t, stateClaimed, cur.State, "nothing ended")

	// The lease ran out: now it is the ambiguous window, and with no
	// webhook to settle it the fail policy ends the job.
	j.LeaseUntil = now.Add(-time.Second)
	_, err = p.store.put(ctx, j, rev)
	require.NoError(t, err)
	v = p.handleClaimed(ctx, d, tr, j.ID)
	require.Equal(t, verdictTerm, v.kind)
	require.Equal(t, string(publisher.CodeAmbiguousSubmit), v.reason)
}

func TestDelaysGrowAndRespectTheirBounds(t *testing.T) {
	t.Parallel()
	d := delays{min: 100 * time.Millisecond, max: time.Second}
	cases := []struct {
		attempt  int
		floor    time.Duration
		min, max time.Duration
	}{
		{attempt: 1, min: 80 * time.Millisecond, max: 120 * time.Millisecond},
		{attempt: 2, min: 160 * time.Millisecond, max: 240 * time.Millisecond},
		{attempt: 3, min: 320 * time.Millisecond, max: 480 * time.Millisecond},
		{attempt: 30, min: 800 * time.Millisecond, max: 1200 * time.Millisecond},
		{attempt: 1, floor: 5 * time.Second, min: 5 * time.Second, max: 5 * time.Second},
		{attempt: 0, min: 80 * time.Millisecond, max: 120 * time.Millisecond},
	}
	for _, tc := range cases {
		for range 20 {
			got := d.after(tc.attempt, tc.floor)
			require.GreaterOrEqualf(t, got, tc.min, "attempt %d", tc.attempt)
			require.LessOrEqualf(t, got, tc.max, "attempt %d", tc.attempt)
		}
	}
}
