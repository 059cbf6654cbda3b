package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrJobNotFound is returned by LookupJob for an id with no job record.
var ErrJobNotFound = errors.New("consumer: no job with this id")

// JobInfo is the public, read-only view of a job record, for tools such as
// `falbridge status`.
type JobInfo struct {
	ID string `json:"id"`
	// State is "waiting" (for a slot under the caps on pending jobs),
	// "claimed", "retry", "submitted" or "done".
	State   string `json:"state"`
	ModelID string `json:"model_id"`
	// Tenant and Priority are the trigger's.
	Tenant    string `json:"tenant,omitempty"`
	Priority  string `json:"priority,omitempty"`
	Mode      string `json:"mode"`
	RequestID string `json:"request_id,omitempty"`
	// Outcome is "result" or the error code, once State is "done".
	Outcome  string `json:"outcome,omitempty"`
	Attempts int    `json:"attempts"`
	Webhook  bool   `json:"webhook"`
	// RetryReason says why fal refused the last submit (State "retry").
	RetryReason string    `json:"retry_reason,omitempty"`
	ReceivedAt  time.Time `json:"received_at"`
	SubmittedAt time.Time `json:"submitted_at,omitzero"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	Deadline    time.Time `json:"deadline"`
	// Revision is the KV revision of the record.
	Revision uint64 `json:"revision"`
}

// LookupJob reads the job record of trigger id from the KV bucket.
// It returns ErrJobNotFound when there is none.
func LookupJob(ctx context.Context, js jetstream.JetStream, bucket, id string) (*JobInfo, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("job bucket %q: %w", bucket, err)
	}
	j, rev, err := (&jobStore{kv: kv}).get(ctx, id)
	if errors.Is(err, ErrJobNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrJobNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	return &JobInfo{
		ID: j.ID, State: string(j.State), ModelID: j.ModelID, Tenant: j.Tenant, Priority: j.Priority, Mode: string(j.Mode),
		RequestID: j.RequestID, Outcome: j.Outcome, Attempts: j.Attempts, Webhook: j.Webhook,
		RetryReason: j.RetryReason,
		ReceivedAt:  j.ReceivedAt, SubmittedAt: j.SubmittedAt, CompletedAt: j.CompletedAt,
		Deadline: j.Deadline, Revision: rev,
	}, nil
}
