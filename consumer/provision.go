package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/config"
)

// statusPerSubject keeps the newest progress events of each job only.
const statusPerSubject = 100

// Provision creates or updates the streams and the KV bucket falbridge uses,
// as cfg names them. It is idempotent: running it at every start-up is safe,
// and several replicas may run it at once.
func Provision(ctx context.Context, js jetstream.JetStream, cfg config.Config) error {
	storage := jetstream.FileStorage
	if cfg.Streams.Storage == "memory" {
		storage = jetstream.MemoryStorage
	}
	s := cfg.Streams
	streams := []jetstream.StreamConfig{
		{
			Name:        s.Requests,
			Description: "falbridge triggers (work queue)",
			Subjects:    []string{cfg.Subjects.Requests},
			Retention:   jetstream.WorkQueuePolicy,
			Duplicates:  s.DuplicateWindow,
		},
		{
			Name:        s.Results,
			Description: "falbridge results and error events",
			Subjects:    []string{cfg.Subjects.Results + ".>", cfg.Subjects.Errors + ".>"},
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      s.ResultsMaxAge,
			Duplicates:  s.DuplicateWindow,
		},
		{
			Name:              s.Status,
			Description:       "falbridge progress events",
			Subjects:          []string{cfg.Subjects.Status + ".>"},
			Retention:         jetstream.LimitsPolicy,
			MaxAge:            s.StatusMaxAge,
			MaxMsgsPerSubject: statusPerSubject,
			Duplicates:        minDuration(s.DuplicateWindow, s.StatusMaxAge),
		},
		pendingStreamConfig(cfg),
	}
	for _, sc := range streams {
		sc.Storage = storage
		sc.Replicas = s.Replicas
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("consumer: provision stream %q (subjects %v): %w", sc.Name, sc.Subjects, err)
		}
	}
	kvc := jetstream.KeyValueConfig{
		Bucket:      s.JobsBucket,
		Description: "falbridge job records, keyed by trigger id",
		History:     1,
		TTL:         s.JobsTTL,
		Storage:     storage,
		Replicas:    s.Replicas,
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, kvc); err != nil {
		return fmt.Errorf("consumer: provision KV bucket %q: %w", s.JobsBucket, err)
	}
	return nil
}

func triggerConsumerConfig(cfg config.Config) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:     cfg.Consumer.Durable,
		Description: "falbridge trigger intake",
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     cfg.Consumer.AckWait,
		// Deliveries are not capped by the server: a capped message would
		// sit in the work queue forever, unseen. The pool counts real submit
		// attempts itself and ends the job with an error event instead.
		MaxDeliver: -1,
		// The global in-flight limit: the server hands out no more unacked
		// triggers than this, across all replicas.
		MaxAckPending: cfg.Limits.MaxInFlight,
	}
}

func minDuration(a, b time.Duration) time.Duration {
	if a <= 0 {
		return b
	}
	if b > 0 && b < a {
		return b
	}
	return a
}
