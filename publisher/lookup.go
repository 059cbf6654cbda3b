package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The states of a job record ([JobInfo.State]), in the order a job moves
// through them (retry goes back to claimed; any state may end in done).
const (
	// JobWaiting: over a cap on pending jobs; nothing has been sent to fal.
	JobWaiting = "waiting"
	// JobClaimed: a falbridge worker owns the trigger and may be talking to fal.
	JobClaimed = "claimed"
	// JobRetry: fal certainly did not accept the last submit; falbridge
	// submits again later.
	JobRetry = "retry"
	// JobSubmitted: fal accepted the job; it completes by webhook or poll.
	JobSubmitted = "submitted"
	// JobDone: the terminal event is published.
	JobDone = "done"
)

// StateHeader carries a job record's state on its KV message, so that a
// headers-only read of the bucket's stream sees every job's state without
// decoding the records.
const StateHeader = "Falbridge-State"

// ErrJobNotFound is returned by [LookupJob] for an id with no job record.
var ErrJobNotFound = errors.New("no job with this id")

// JobInfo is the read-only view of a job record in falbridge's job bucket
// (streams.jobs_bucket, default [JobsBucketDefault]): the part of the record
// that is a contract for tools such as `falbridge status` and the console.
// The engine writes more fields; these keep their names and meaning.
type JobInfo struct {
	ID string `json:"id"`
	// State is [JobWaiting], [JobClaimed], [JobRetry], [JobSubmitted] or
	// [JobDone].
	State   string `json:"state"`
	ModelID string `json:"model_id"`
	// Tenant and Priority are the trigger's.
	Tenant    string `json:"tenant,omitempty"`
	Priority  string `json:"priority,omitempty"`
	Mode      string `json:"mode"`
	RequestID string `json:"request_id,omitempty"`
	// Metadata is the trigger's metadata and Trigger the trigger body as
	// falbridge received it; Truncated is true when either was cut to fit
	// the record in one NATS message.
	Metadata  json.RawMessage `json:"metadata,omitempty"`
	Trigger   json.RawMessage `json:"trigger,omitempty"`
	Truncated bool            `json:"truncated,omitempty"`
	// Outcome is "result" or the error code, once State is "done".
	Outcome  string `json:"outcome,omitempty"`
	Attempts int    `json:"attempts"`
	Webhook  bool   `json:"webhook"`
	// RetryReason says why fal refused the last submit (State "retry").
	RetryReason string `json:"retry_reason,omitempty"`
	// CancelRequestedAt is when fal was asked to cancel the running job.
	CancelRequestedAt time.Time `json:"cancel_requested_at,omitzero"`
	ReceivedAt        time.Time `json:"received_at"`
	SubmittedAt       time.Time `json:"submitted_at,omitzero"`
	CompletedAt       time.Time `json:"completed_at,omitzero"`
	Deadline          time.Time `json:"deadline"`
	// Revision is the KV revision of the record (not stored in it).
	Revision uint64 `json:"revision"`
}

// LookupJob reads the job record of trigger id from the job bucket. It
// returns an error wrapping [ErrJobNotFound] when there is none. Most callers
// want [Publisher.Lookup], which also reads the job's events.
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

// Job is everything falbridge's streams and job bucket hold of one trigger,
// as [Publisher.Lookup] reads it. Its JSON form is what `falbridge status
// --json` prints.
type Job struct {
	// Waiting is true while the trigger sits in the requests stream, not
	// yet taken by falbridge (published on [Subjects.RequestSubject] of its
	// id, as [Publisher.Publish] does).
	Waiting bool `json:"waiting,omitempty"`
	// Record is the job record; nil before falbridge claimed the trigger, for
	// a trigger refused before it was claimed, or after the record expired.
	Record *JobInfo `json:"job,omitempty"`
	// Result or Error is the job's terminal event, once it has ended
	// (falbridge publishes at most one of them).
	Result *Result `json:"result,omitempty"`
	Error  *Error  `json:"error,omitempty"`
	// LastStatus is the newest progress event, if the status stream holds one.
	LastStatus *Status `json:"last_status,omitempty"`
}

// Known reports whether anything at all is known of the job.
func (j *Job) Known() bool {
	return j.Waiting || j.Record != nil || j.Result != nil || j.Error != nil || j.LastStatus != nil
}

// Lookup reads what NATS holds of trigger id: whether it still waits in the
// requests stream, its job record, its terminal event and its last status
// event. Nothing known is not an error: see [Job.Known]. An id that is not
// [ValidID] gives [ErrInvalidID]. A missing status stream counts as no
// status event (it is optional); a missing requests or results stream or
// job bucket is an error (falbridge has not provisioned them).
//
// An event whose id is not id (forged by a client allowed to publish on
// falbridge's subjects) is left out of the Job, and reported: Lookup then
// returns the Job and an error wrapping [ErrEventIDMismatch]. Every other
// error comes with a nil Job.
//
// The trigger stream is read before the job record: falbridge writes the
// record before it acks the trigger out of the work queue, so a trigger
// being taken at this very moment is seen in one place or the other, never
// in neither.
func (p *Publisher) Lookup(ctx context.Context, id string) (*Job, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("lookup %q: %w", id, ErrInvalidID)
	}
	j := &Job{}
	m, err := p.lastMsg(ctx, p.subjects.RequestsStream, p.subjects.RequestSubject(id))
	if err != nil {
		return nil, err
	}
	j.Waiting = m != nil
	switch rec, err := LookupJob(ctx, p.js, p.subjects.JobsBucket, id); {
	case errors.Is(err, ErrJobNotFound):
	case err != nil:
		return nil, err
	default:
		j.Record = rec
	}
	var forged []error
	j.Result, j.Error, err = p.Outcome(ctx, id)
	if errors.Is(err, ErrEventIDMismatch) {
		forged = append(forged, err)
	} else if err != nil {
		return nil, err
	}
	m, err = p.lastMsg(ctx, p.subjects.StatusStream, p.subjects.Status(id))
	if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, err
	}
	if m != nil {
		ev, err := p.decodeEvent(m.Subject, m.Data)
		switch {
		case errors.Is(err, ErrEventIDMismatch):
			forged = append(forged, err)
		case err != nil:
			return nil, err
		}
		j.LastStatus = ev.Status
	}
	return j, errors.Join(forged...)
}

// Outcome reads the terminal event of trigger id: its [*Result] or its
// [*Error], or neither while the job has not ended (or after the results
// stream dropped the event). One stream read when the two terminal subjects
// share a shape ([Subjects.TerminalPattern]), else two. An event whose id is
// not id is an error wrapping [ErrEventIDMismatch].
func (p *Publisher) Outcome(ctx context.Context, id string) (*Result, *Error, error) {
	subjects := []string{p.subjects.Result(id), p.subjects.Error(id)}
	if p.terminal != "" {
		subjects = []string{p.terminal + "." + id}
	}
	for _, subj := range subjects {
		m, err := p.lastMsg(ctx, p.subjects.ResultsStream, subj)
		if err != nil {
			return nil, nil, err
		}
		if m == nil {
			continue
		}
		ev, err := p.decodeEvent(m.Subject, m.Data)
		if err != nil {
			return nil, nil, err
		}
		if ev.Result != nil || ev.Error != nil {
			return ev.Result, ev.Error, nil
		}
	}
	return nil, nil, nil
}

// lastMsg returns the last message on subject in stream, or nil when there
// is none.
func (p *Publisher) lastMsg(ctx context.Context, stream, subject string) (*jetstream.RawStreamMsg, error) {
	s, err := p.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("last message on %s: %w", subject, err)
	}
	return m, nil
}
