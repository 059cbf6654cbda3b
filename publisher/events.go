package publisher

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Mode says how the consumer runs a trigger at fal.
type Mode string

// Modes of a trigger. The empty Mode means [ModeQueue].
const (
	// ModeQueue submits to fal's queue and waits for a webhook or polls.
	ModeQueue Mode = "queue"
	// ModeSync calls fal's synchronous run endpoint.
	ModeSync Mode = "sync"
	// ModeStream calls fal's streaming endpoint; partial outputs are published
	// as status events with state [StatePartial].
	ModeStream Mode = "stream"
)

// Priorities of a trigger. The empty priority means [PriorityNormal]. They
// order admission among one tenant's jobs waiting under the bridge's caps
// (high first, low last); [PriorityLow] also asks fal for its low queue
// priority, the others submit at fal's normal priority.
const (
	PriorityHigh   = "high"
	PriorityNormal = "normal"
	PriorityLow    = "low"
)

// Duration is a time.Duration with a JSON form people can write: it
// unmarshals from a Go duration string ("90s", "1m30s") or a JSON number of
// seconds (90, 1.5), and marshals as a Go duration string. Negative values
// are rejected.
type Duration time.Duration

// String returns the Go duration string, e.g. "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalJSON encodes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a Go duration string or a number of seconds; null
// leaves d unchanged. Negative or out-of-range values are errors.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		return nil
	}
	var v time.Duration
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		pd, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("invalid duration %q (want e.g. \"30s\" or a number of seconds)", s)
		}
		v = pd
	} else {
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil {
			return fmt.Errorf("invalid duration %s (want e.g. \"30s\" or a number of seconds)", b)
		}
		ns := f * float64(time.Second)
		if math.IsNaN(ns) || ns >= math.MaxInt64 || ns <= math.MinInt64 {
			return fmt.Errorf("duration %s seconds out of range", b)
		}
		v = time.Duration(ns)
	}
	if v < 0 {
		return fmt.Errorf("duration %s is negative", b)
	}
	*d = Duration(v)
	return nil
}

// Trigger is the canonical trigger event, as published on the requests
// subject. [DecodeTrigger] also accepts the two workflow-tool shapes and
// returns this form.
type Trigger struct {
	// ID identifies the job; see [ValidID] and [ResolveID]. Optional.
	ID string `json:"id,omitempty"`
	// ModelID is fal's endpoint id, e.g. "fal-ai/flux/dev". Required.
	ModelID string `json:"model_id"`
	// Input is the model input, sent to fal untouched; always a JSON object
	// after decoding.
	Input json.RawMessage `json:"input"`
	// Mode is how to run the job; "" means [ModeQueue].
	Mode Mode `json:"mode,omitempty"`
	// ResultSubject overrides the subject of the result event. Optional.
	ResultSubject string `json:"result_subject,omitempty"`
	// Metadata is any JSON, echoed back on the result and error events.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// Priority is [PriorityHigh], [PriorityNormal] or [PriorityLow]; ""
	// means normal.
	Priority string `json:"priority,omitempty"`
	// Timeout bounds the whole job; 0 means the consumer's default.
	Timeout Duration `json:"timeout,omitempty"`
	// Progress asks falbridge to follow fal's status stream for this job
	// while it runs and publish what it reports (IN_QUEUE with the queue
	// position, IN_PROGRESS, fal's log lines) as status events on
	// "<status prefix>.<id>", also when fal completes the job by webhook.
	// The cost: one extra streaming fal call (the status stream) per job,
	// held open while the job runs, on top of the one submit; falbridge caps
	// how many such streams it holds at once, and a job over the cap gets
	// no live progress (its result is unaffected). false (the default) keeps
	// a job to the one submit call, with status events only from the submit
	// and from polls. `falbridge publish --wait` sets it.
	Progress bool `json:"progress,omitempty"`
	// Tenant names who the job is for, for the bridge's per-tenant cap on
	// jobs pending at fal (limits.max_pending_per_tenant): the same syntax
	// as an id ([ValidID], at most [MaxTenantLen] characters). Optional; ""
	// is a tenant of its own.
	Tenant string `json:"tenant,omitempty"`
	// StartTimeout is fal's start deadline for a queued job (sent as
	// X-Fal-Request-Timeout): if no runner has started it by then, fal
	// ends it with a stored 504 and the job ends with error "timeout".
	// More than [MinStartTimeout]; 0 sends nothing (fal's default).
	// Queue mode only; sync and stream runs send it too.
	StartTimeout Duration `json:"start_timeout,omitempty"`
	// MediaExpiresIn is how long fal keeps the job's output media on its
	// CDN (sent as X-Fal-Object-Lifecycle-Preference): whole seconds, at
	// least 1s; 0 sends nothing (fal's default retention). Copy outputs
	// you need for longer.
	MediaExpiresIn Duration `json:"media_expires_in,omitempty"`
}

// MinStartTimeout is fal's floor for [Trigger.StartTimeout]: the start
// deadline must be more than this.
const MinStartTimeout = 100 * time.Millisecond

// Result is the result event, published on "<results prefix>.<id>".
type Result struct {
	ID        string `json:"id"`
	ModelID   string `json:"model_id"`
	RequestID string `json:"request_id,omitempty"`
	// Output is fal's payload, untouched.
	Output      json.RawMessage `json:"output"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	ReceivedAt  time.Time       `json:"received_at"`
	SubmittedAt time.Time       `json:"submitted_at,omitzero"`
	CompletedAt time.Time       `json:"completed_at"`
	// Attempts counts the deliveries of the trigger it took.
	Attempts int `json:"attempts"`
	// Note explains something unusual about the result, e.g. that a cancel
	// was requested but fal finished (and billed) the run first.
	Note string `json:"note,omitempty"`
	// Cost is the run's estimated cost, when the bridge has a price for
	// the model (spend.prices).
	Cost *Cost `json:"cost,omitempty"`
}

// Cost is an estimate from the bridge's price table, not fal's invoice:
// Quantity units (read from the output: images, megapixels, seconds of
// video, or one request) at the table's price.
type Cost struct {
	Amount    float64 `json:"amount"`
	Currency  string  `json:"currency"`
	Unit      string  `json:"unit"` // image, megapixel, second or request
	Quantity  float64 `json:"quantity"`
	Estimated bool    `json:"estimated"` // always true: see Cost
}

// Code classifies an error event.
type Code string

// Error codes of error events.
const (
	// CodeInvalidTrigger: the trigger body did not decode or validate
	// ([DecodeTrigger]); never retried.
	CodeInvalidTrigger Code = "invalid_trigger"
	// CodeInvalidModel: model_id is not a valid fal model id, or fal does not
	// know the model (404).
	CodeInvalidModel Code = "invalid_model"
	// CodeValidationError: fal rejected the input (422); Detail carries fal's
	// validation details.
	CodeValidationError Code = "validation_error"
	// CodeInvalidImageURL: an image URL in the input is malformed or could
	// not be fetched by fal.
	CodeInvalidImageURL Code = "invalid_image_url"
	// CodeStreamingUnsupported: mode "stream" for a model without a streaming
	// endpoint.
	CodeStreamingUnsupported Code = "streaming_unsupported"
	// CodeUnauthorized: fal rejected the API key (401/403).
	CodeUnauthorized Code = "unauthorized"
	// CodeRateLimited: fal kept answering 429 until the retries ran out.
	CodeRateLimited Code = "rate_limited"
	// CodeUpstreamError: fal kept failing (5xx, network errors, unreadable
	// replies) until the retries ran out.
	CodeUpstreamError Code = "upstream_error"
	// CodeTimeout: the job did not finish within its timeout (the trigger's,
	// or the consumer's job deadline), or fal reported a timeout; the request
	// is cancelled at fal.
	CodeTimeout Code = "timeout"
	// CodeCanceled: the job was cancelled on the cancel subject, or by fal.
	CodeCanceled Code = "canceled"
	// CodeAmbiguousSubmit: a submit may or may not have reached fal (lost
	// response, or a crash between submit and recording it) and the policy
	// is to fail rather than risk running the job twice.
	CodeAmbiguousSubmit Code = "ambiguous_submit"
	// CodeFalError: any other failure reported by fal (a request that
	// completed with an error, another 4xx, ...).
	CodeFalError Code = "fal_error"
	// CodeResultTooLarge: fal completed the job but its output does not fit
	// in one NATS message (the server's max_payload). RequestID names the
	// request, whose result can be fetched from fal directly while fal keeps
	// it.
	CodeResultTooLarge Code = "result_too_large"
	// CodeBudgetExceeded: admitting the job would pass a budget
	// (spend.budgets) and the policy is fail; nothing was sent to fal.
	CodeBudgetExceeded Code = "budget_exceeded"
)

// Error is the error event, published on "<errors prefix>.<id>". It
// implements error so that [Publisher.Await] can return it: use errors.As to
// get the event, or errors.Is(err, &Error{Code: CodeTimeout}) to test its
// code (see [Error.Is]).
type Error struct {
	ID        string `json:"id"`
	ModelID   string `json:"model_id,omitempty"`
	RequestID string `json:"request_id,omitempty"`
	Code      Code   `json:"code"`
	Message   string `json:"message"`
	// Detail is fal's error detail, when there is one.
	Detail   json.RawMessage `json:"detail,omitempty"`
	Attempts int             `json:"attempts"`
	// Trigger is the original trigger body: JSON if it was JSON, else a JSON
	// string.
	Trigger  json.RawMessage `json:"trigger,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	At       time.Time       `json:"at"`
	// Truncated is true when Detail, Trigger or Metadata were cut so that the
	// event fits in one NATS message; a cut field holds a JSON string with
	// the start of the original.
	Truncated bool `json:"truncated,omitempty"`
}

// Error returns "fal job <id>: <code>: <message>".
func (e *Error) Error() string {
	return "fal job " + e.ID + ": " + string(e.Code) + ": " + e.Message
}

// Is reports whether target is an *Error with a non-empty Code equal to
// e's, so errors.Is(err, &Error{Code: CodeTimeout}) tests the code of an
// error event anywhere in err's chain. Other fields of target are ignored.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code != "" && t.Code == e.Code
}

// ErrorCode returns the Code of the first *Error in err's chain, or "" if
// there is none.
func ErrorCode(err error) Code {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return ""
}

// States of a status event.
const (
	StateInQueue    = "IN_QUEUE"
	StateInProgress = "IN_PROGRESS"
	// StatePartial carries a partial output (mode "stream") in Partial.
	StatePartial = "PARTIAL"
)

// Status is a progress event, published on "<status prefix>.<id>".
type Status struct {
	ID        string `json:"id"`
	RequestID string `json:"request_id,omitempty"`
	// State is [StateInQueue], [StateInProgress] or [StatePartial].
	State         string          `json:"state"`
	QueuePosition *int            `json:"queue_position,omitempty"`
	Logs          json.RawMessage `json:"logs,omitempty"`
	Partial       json.RawMessage `json:"partial,omitempty"`
	At            time.Time       `json:"at"`
}

// RejectedError is the error event of a trigger refused before any fal
// call (code [CodeInvalidTrigger], [CodeInvalidModel], …): the one
// constructor for the engine and for clients that check triggers before
// publishing them (falbridge publish --batch), so both answer alike. body is
// the trigger as received: echoed as JSON when it is valid JSON, else as a
// JSON string.
func RejectedError(id string, code Code, message string, body []byte, at time.Time) *Error {
	return &Error{ID: id, Code: code, Message: message, Trigger: TriggerJSON(body), At: at.UTC()}
}

// TriggerJSON is body as the JSON value events echo: the body itself when it
// is valid JSON, a JSON string of it when not, nil when empty.
func TriggerJSON(body []byte) json.RawMessage {
	if len(body) == 0 {
		return nil
	}
	if json.Valid(body) {
		return json.RawMessage(body)
	}
	b, _ := json.Marshal(string(body))
	return b
}
