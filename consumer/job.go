package consumer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/publisher"
)

// jobState is where a job is in its life. Every move is a compare-and-set on
// the record's KV revision, so two replicas can never both move the same job:
//
//	  over a cap: waiting ──slot free──┐   (admission.go; caps on only)
//	                                   ▼
//	         claim (kv.Create, with a lease)
//	             │
//	             ▼
//	┌──────── claimed ──fal accepted──▶ submitted ──webhook│poll│cancel│timeout──▶ done
//	│          │   ▲                                                              ▲
//	│  fal said│   │next delivery                                                 │
//	│  no (429,│   │claims again                                                  │
//	│   503…)  ▼   │                                                              │
//	│         retry ──────────────── attempts spent / deadline ───────────────────┤
//	└────────── rejected, refused (4xx), ambiguous and policy fail ───────────────┘
//
// A redelivered trigger that finds the job claimed under a live lease waits
// (its first worker is still at it); only an expired lease is the ambiguous
// window of invariant 1, where fal may or may not have accepted the submit.
type jobState string

const (
	// stateWaiting: over a cap on pending jobs (admission.go); the trigger
	// waits in JetStream and nothing has been sent to fal.
	stateWaiting jobState = publisher.JobWaiting
	// stateClaimed: a worker owns the trigger and may be talking to fal.
	stateClaimed jobState = publisher.JobClaimed
	// stateRetry: fal certainly did not accept the last submit (429, 503
	// without a request id); the next delivery may submit again.
	stateRetry jobState = publisher.JobRetry
	// stateSubmitted: fal accepted the job; it completes by webhook or poll.
	stateSubmitted jobState = publisher.JobSubmitted
	// stateDone: the terminal event is published. Nothing happens any more.
	stateDone jobState = publisher.JobDone
)

// jobRecordVersion is bumped when the record's meaning changes. Version 2
// added the lease and the write token.
const jobRecordVersion = 2

// job is the KV record of one trigger id. It is both the claim (created with
// kv.Create, so exactly one worker proceeds) and everything a webhook or a
// poller on any replica needs to finish the job.
type job struct {
	V                int             `json:"v"`
	ID               string          `json:"id"`
	State            jobState        `json:"state"`
	ModelID          string          `json:"model_id"`
	Tenant           string          `json:"tenant,omitempty"`
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
	TriggerSeq uint64 `json:"trigger_seq"`
	Attempts   int    `json:"attempts"`
	Webhook    bool   `json:"webhook,omitempty"`
	// Owner and LeaseUntil are the claim's lease: the pool instance working
	// on the submit, and until when a redelivery must leave it alone.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// CancelRequestedAt is when fal was asked to cancel the running job.
	CancelRequestedAt time.Time `json:"cancel_requested_at,omitzero"`
	// Parked is true when the job waits for a slot under the caps with its
	// trigger acked: its timer, not the trigger message, drives its
	// admission and submit (from Trigger, which is then never cut).
	Parked bool `json:"parked,omitempty"`
	// Priority is the trigger's priority (admission order within a
	// tenant) and Ticket the waiting job's place in its lane of the
	// admission record (admission.go); both only under caps.
	Priority string  `json:"priority,omitempty"`
	Ticket   *ticket `json:"ticket,omitempty"`
	// RetryReason says why the last submit was refused (state retry).
	RetryReason string    `json:"retry_reason,omitempty"`
	ReceivedAt  time.Time `json:"received_at"`
	SubmittedAt time.Time `json:"submitted_at,omitzero"`
	Deadline    time.Time `json:"deadline"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
	// Outcome is "result" or an error code once the job is done.
	Outcome string `json:"outcome,omitempty"`
	// Truncated is true when Trigger or Metadata were cut to fit the
	// record in one message (see fit.go).
	Truncated bool `json:"truncated,omitempty"`
	// Write is a token unique to the write that stored this version. After
	// a lost reply or a revision mismatch, the writer reloads the record and
	// finds its own token if its write applied.
	Write string `json:"w,omitempty"`
}

// leaseLive reports whether another delivery must keep its hands off a
// claimed job at now.
func (j *job) leaseLive(now time.Time) bool {
	return j.State == stateClaimed && now.Before(j.LeaseUntil)
}

// jobStore keeps job records in a JetStream KV bucket and owns their
// compare-and-set transitions.
//
// Writes are the KV bucket's own wire format (a publish on $KV.<bucket>.<id>
// expecting the subject's last sequence, exactly what kv.Create and
// kv.Update send) plus one header, publisher.StateHeader, so that the sweep can read
// every job's state from a headers-only scan instead of every record.
type jobStore struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
	// prefix is "$KV.<bucket>.".
	prefix string
	// retry paces the re-attempts of a write after a NATS error.
	retry delays
	// limit is the largest record body that fits in one message.
	limit int
}

func newJobStore(js jetstream.JetStream, kv jetstream.KeyValue, bucket string, maxPayload int64) *jobStore {
	return &jobStore{kv: kv, js: js, prefix: "$KV." + bucket + ".", retry: natsDelays, limit: bodyLimit(maxPayload)}
}

// write stores b as the record of j if the key's last revision is rev (0:
// the key has no record). errRevisionMismatch when it is not.
func (s *jobStore) write(ctx context.Context, j *job, b []byte, rev uint64) (uint64, error) {
	m := &nats.Msg{Subject: s.prefix + j.ID, Data: b, Header: nats.Header{publisher.StateHeader: []string{string(j.State)}}}
	ack, err := s.js.PublishMsg(ctx, m, jetstream.WithExpectLastSequencePerSubject(rev))
	if isWrongLastSequence(err) {
		return 0, errRevisionMismatch
	}
	if err != nil {
		return 0, err
	}
	return ack.Sequence, nil
}

func newWriteToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *jobStore) encode(j *job) ([]byte, error) {
	b, err := encodeJobFit(j, s.limit)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", j.ID, err)
	}
	return b, nil
}

// create claims the id: it stores j only if the id has no record yet, and
// returns errJobExists otherwise. A create whose reply was lost is recognised
// on the retry by its write token.
func (s *jobStore) create(ctx context.Context, j *job) (uint64, error) {
	j.Write = newWriteToken()
	b, err := s.encode(j)
	if err != nil {
		return 0, err
	}
	var lastErr error
	for attempt := range writeAttempts {
		rev, err := s.write(ctx, j, b, 0)
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, errRevisionMismatch) {
			lastErr = err
			if !s.pause(ctx, attempt) {
				break
			}
			continue
		}
		if attempt == 0 {
			return 0, errJobExists
		}
		// Our first attempt may have applied with its reply lost.
		cur, crev, gerr := s.get(ctx, j.ID)
		if gerr == nil && cur.Write == j.Write {
			return crev, nil
		}
		if gerr == nil || errors.Is(gerr, publisher.ErrJobNotFound) {
			return 0, errJobExists
		}
		lastErr = gerr
	}
	return 0, fmt.Errorf("create job %s: %w", j.ID, lastErr)
}

func (s *jobStore) get(ctx context.Context, id string) (*job, uint64, error) {
	e, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, publisher.ErrJobNotFound
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

// writeAttempts bounds how often one transition is tried through NATS
// errors before the caller is told to come back later.
const writeAttempts = 4

// conflictError is returned by put when another writer moved the record: it
// carries what is stored now, so the caller decides from that and not from
// what it remembers.
type conflictError struct {
	cur *job
	rev uint64
}

func (e *conflictError) Error() string {
	return fmt.Sprintf("job %s was moved to %s by another writer", e.cur.ID, e.cur.State)
}

func (e *conflictError) Is(target error) bool { return target == errRevisionMismatch }

// put writes next over the record at rev (compare-and-set) and returns the
// new revision. When the write's reply is lost or the revision no longer
// matches, it reloads the record: if the stored version carries next's write
// token, the write applied and put succeeds; if another writer moved the
// record, put returns a *conflictError with the stored record. Other NATS
// errors are retried a few times, then returned.
func (s *jobStore) put(ctx context.Context, next *job, rev uint64) (uint64, error) {
	next.Write = newWriteToken()
	b, err := s.encode(next)
	if err != nil {
		return 0, err
	}
	var lastErr error
	for attempt := range writeAttempts {
		nrev, err := s.write(ctx, next, b, rev)
		if err == nil {
			return nrev, nil
		}
		lastErr = err
		mismatch := errors.Is(err, errRevisionMismatch)
		if !mismatch && !s.pause(ctx, attempt) {
			break
		}
		cur, crev, gerr := s.get(ctx, next.ID)
		switch {
		case gerr == nil && cur.Write == next.Write:
			return crev, nil // ours: the reply was lost, the write applied
		case gerr == nil && crev != rev:
			return 0, &conflictError{cur: cur, rev: crev}
		case errors.Is(gerr, publisher.ErrJobNotFound):
			return 0, fmt.Errorf("update job %s: %w", next.ID, publisher.ErrJobNotFound)
		case gerr != nil:
			lastErr = gerr
		}
		if mismatch && gerr == nil {
			// The server said mismatch but the revision is ours: a
			// stale read somewhere; try the write again.
			continue
		}
	}
	return 0, fmt.Errorf("update job %s: %w", next.ID, lastErr)
}

// pause waits before the next write attempt; false when ctx ended or the
// attempts are spent.
func (s *jobStore) pause(ctx context.Context, attempt int) bool {
	if attempt+1 >= writeAttempts {
		return false
	}
	t := time.NewTimer(s.retry.after(attempt+1, 0))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// markDone moves the job to done with its outcome. If another writer got
// there first it returns nil, and j holds what is stored; a conflict with a
// record that is not done (a concurrent retry bookkeeping write, say) is
// resolved by trying again on the stored record.
func (s *jobStore) markDone(ctx context.Context, j *job, rev uint64, outcome string, at time.Time) error {
	for range writeAttempts {
		next := *j
		next.State = stateDone
		next.Outcome = outcome
		next.CompletedAt = at
		_, err := s.put(ctx, &next, rev)
		var conflict *conflictError
		switch {
		case err == nil:
			*j = next
			return nil
		case errors.As(err, &conflict):
			*j, rev = *conflict.cur, conflict.rev
			if j.State == stateDone {
				return nil
			}
		default:
			return err
		}
	}
	return fmt.Errorf("mark job %s done: still contended", j.ID)
}
