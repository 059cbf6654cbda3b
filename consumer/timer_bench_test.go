package consumer_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/natstest"
)

// BenchmarkTimerMechanism compares the two ways JetStream can hold a job's
// timer until it is due (the engine issue asked which is cheaper):
//
//   - schedule: a scheduled message ("@at", NATS ≥ 2.12) that the server
//     turns into a message on the consumer's subject when due: one publish,
//     one delivery, one ack.
//   - nak_delay: a message delivered at once and held with NakWithDelay
//     until due: one publish, two deliveries, one Nak, one ack, and the
//     timer sits in the consumer's pending set (bounded by MaxAckPending)
//     the whole time.
//
// Each op is one timer due 1 s after it is armed, acked when it fires, as
// for a job that ended by webhook. It reports CPU per timer of the whole
// process (client and embedded server). Run with
//
//	go test -run '^$' -bench TimerMechanism -benchtime 5000x ./consumer/
func BenchmarkTimerMechanism(b *testing.B) {
	for _, mech := range []string{"schedule", "nak_delay"} {
		b.Run(mech, func(b *testing.B) {
			srv := natstest.Run(b)
			nc := srv.Connect(b)
			js, err := jetstream.New(nc)
			require.NoError(b, err)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			_, err = js.CreateStream(ctx, jetstream.StreamConfig{
				Name: "T", Subjects: []string{"t.>"}, Retention: jetstream.WorkQueuePolicy,
				AllowMsgSchedules: true, AllowRollup: true, Storage: jetstream.MemoryStorage,
			})
			require.NoError(b, err)
			cons, err := js.CreateConsumer(ctx, "T", jetstream.ConsumerConfig{
				Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
				MaxAckPending: 1_000_000, FilterSubject: "t.due.*",
			})
			require.NoError(b, err)
			const ahead = time.Second
			var fired, deliveries atomic.Int64
			done := make(chan struct{})
			cc, err := cons.Consume(func(m jetstream.Msg) {
				deliveries.Add(1)
				md, _ := m.Metadata()
				if mech == "nak_delay" && md != nil && md.NumDelivered == 1 {
					_ = m.NakWithDelay(ahead)
					return
				}
				_ = m.Ack()
				if fired.Add(1) == int64(b.N) {
					close(done)
				}
			})
			require.NoError(b, err)
			defer cc.Stop()

			cpu0 := cpuTime()
			b.ResetTimer()
			for i := range b.N {
				m := &nats.Msg{Subject: fmt.Sprintf("t.due.%d", i), Header: nats.Header{}}
				if mech == "schedule" {
					m.Subject = fmt.Sprintf("t.sched.%d", i)
					m.Header.Set("Nats-Schedule", "@at "+time.Now().Add(ahead).UTC().Format(time.RFC3339Nano))
					m.Header.Set("Nats-Schedule-Target", fmt.Sprintf("t.due.%d", i))
				}
				if _, err := js.PublishMsg(ctx, m); err != nil {
					b.Fatal(err)
				}
			}
			select {
			case <-done:
			case <-ctx.Done():
				b.Fatalf("%d of %d timers fired", fired.Load(), b.N)
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/timer")
			b.ReportMetric(float64(deliveries.Load())/float64(b.N), "deliveries/timer")
		})
	}
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
