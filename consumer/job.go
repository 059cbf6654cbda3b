package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/publisher"
)

// jobState is where a job is in its life. Transitions happen by compare-and-set
// on the KV revision, so two replicas can never both move the same job:
//
//	claimed ──submit ok──▶ submitted ──webhook|poll|cancel|timeout──▶ done
//	   │  ▲                                                            ▲
//	   │  └── retry (fal said no for now; safe to submit again)        │
//	   └──────────── terminal error (invalid, 4xx, attempts spent) ────┘
type jobState string

const (
	// stateClaimed: a worker owns the trigger and may be talking to fal.
	// Found on a redelivery of the same message, it is the ambiguous window
	// of invariant 1 (fal may or may not have accepted the submit).
	stateClaimed jobState = "claimed"
	// stateRetry: fal definitely did not accept the last submit (429, 5xx);
	// the next delivery may submit again.
	stateRetry jobState = "retry"
	// stateSubmitted: fal accepted the job; it completes by webhook or poll.
	stateSubmitted jobState = "submitted"
	// stateDone: the terminal event is published. Nothing happens any more.
	stateDone jobState = "done"
)

// jobRecordVersion is bumped when the record's meaning changes.
const jobRecordVersion = 1

// job is the KV record of one trigger id. It is both the claim (created with
// kv.Create, so exactly one worker proceeds) and everything a webhook or a
// poller on any replica needs to finish the job.
type job struct {
	V                int             `json:"v"`
	ID               string          `json:"id"`
	State            jobState        `json:"state"`
	ModelID          string          `json:"model_id"`
	Mode             publisher.Mode  `json:"mode"`
	RequestID        string          `json:"request_id,omitempty"`
	GatewayRequestID string          `json:"gateway_request_id,omitempty"`
	ResultSubject    string          `json:"result_subject,omitempty"`
	Metadata         json.RawMessage `json:"metadata,omitempty"`
	// Trigger is the original trigger body, echoed in error events so that
	// nothing the user sent is lost.
	Trigger json.RawMessage `json:"trigger,omitempty"`
	// TriggerSeq is the stream sequence of the trigger message that claimed
	// the job: a redelivery carries the same sequence, a republished copy of
	// the trigger does not.
	TriggerSeq  uint64    `json:"trigger_seq"`
	Attempts    int       `json:"attempts"`
	Webhook     bool      `json:"webhook,omitempty"`
	ReceivedAt  time.Time `json:"received_at"`
	SubmittedAt time.Time `json:"submitted_at,omitzero"`
	Deadline    time.Time `json:"deadline"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	// Outcome is "result" or an error code once the job is done.
	Outcome string `json:"outcome,omitempty"`
}

// jobStore keeps job records in a JetStream KV bucket.
type jobStore struct {
	kv jetstream.KeyValue
}

func (s *jobStore) create(ctx context.Context, j *job) (uint64, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return 0, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	rev, err := s.kv.Create(ctx, j.ID, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, errJobExists
	}
	if err != nil {
		return 0, fmt.Errorf("create job %s: %w", j.ID, err)
	}
	return rev, nil
}

func (s *jobStore) get(ctx context.Context, id string) (*job, uint64, error) {
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, errJobNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get job %s: %w", id, err)
	}
	var j job
	if err := json.Unmarshal(e.Value(), &j); err != nil {
		return nil, 0, fmt.Errorf("decode job %s: %w", id, err)
	}
	return &j, e.Revision(), nil
}

// update writes j if the record is still at rev (compare-and-set).
func (s *jobStore) update(ctx context.Context, j *job, rev uint64) (uint64, error) {
	b, err := json.Marshal(j)
	if err != nil {
		return 0, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	nrev, err := s.kv.Update(ctx, j.ID, b, rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyExists) {
		return 0, errRevisionMismatch
	}
	if err != nil {
		return 0, fmt.Errorf("update job %s: %w", j.ID, err)
	}
	return nrev, nil
}
