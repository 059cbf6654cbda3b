package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrJobNotFound is returned by [LookupJob] for an id with no job record.
var ErrJobNotFound = errors.New("no job with this id")

// JobInfo is the read-only view of a job record in falbridge's job bucket
// (streams.jobs_bucket, default [JobsBucketDefault]): the part of the record
// that is a contract for tools such as `falbridge status`. The engine writes
// more fields; these keep their names and meaning.
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
	// Revision is the KV revision of the record (not stored in it).
	Revision uint64 `json:"revision"`
}

// LookupJob reads the job record of trigger id from the job bucket. It
// returns an error wrapping [ErrJobNotFound] when there is none.
func LookupJob(ctx context.Context, js jetstream.JetStream, bucket, id string) (*JobInfo, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("job bucket %q: %w", bucket, err)
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, fmt.Errorf("%w: %s", ErrJobNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	var info JobInfo
	if err := json.Unmarshal(e.Value(), &info); err != nil {
		return nil, fmt.Errorf("decode job %s: %w", id, err)
	}
	info.Revision = e.Revision()
	return &info, nil
}
