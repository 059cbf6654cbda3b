package falclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Priority is the queue priority of a submit (X-Fal-Queue-Priority). It
// can only lower a request's priority.
type Priority string

// Priorities accepted by fal.
const (
	PriorityNormal Priority = "normal"
	PriorityLow    Priority = "low"
)

// SubmitOptions are the optional parameters of [Client.Submit]
// (fal-protocol §4). The zero value sends none of them.
type SubmitOptions struct {
	WebhookURL       string        // → ?fal_webhook=<url>; must be an absolute http(s) URL
	Priority         Priority      // X-Fal-Queue-Priority: "normal" or "low"; "" sends nothing
	StartTimeout     time.Duration // X-Fal-Request-Timeout in decimal seconds ("30", "2.5"); 0 sends nothing
	RunnerHint       string        // X-Fal-Runner-Hint (sticky routing)
	NoRetry          bool          // X-Fal-No-Retry: 1 (no server-side queue retries)
	ObjectExpiration time.Duration // X-Fal-Object-Lifecycle-Preference {"expiration_duration_seconds":N}; ≥ 1s, whole seconds (rounded down); 0 sends nothing
	StoreIO          *bool         // X-Fal-Store-IO: 1 or 0; nil sends nothing
	DisableFallbacks bool          // x-app-fal-disable-fallback: true (fal-protocol §11; the older x-fal-disable-fallbacks is no longer read)
	// MaxAttempts bounds the attempts of this call, the first included,
	// below the client's [RetryPolicy.MaxAttempts] (0 keeps the policy; 1
	// disables client-side retries). A caller that records each refusal
	// before waiting (as falbridge's engine does) sets 1, so that no back-off
	// sleep happens while it holds a claim.
	MaxAttempts int
	// Header holds extra headers. The client's own headers win, and
	// Authorization, Content-Type, Content-Length, Host, Idempotency-Key and
	// X-Idempotency-Key are dropped.
	Header http.Header
}

// build validates the options and returns the headers and query string.
func (o SubmitOptions) build() (http.Header, string, error) {
	h, err := copyHeader("SubmitOptions.Header", o.Header)
	if err != nil {
		return nil, "", err
	}
	query := ""
	if o.WebhookURL != "" {
		if _, err := checkAbsURL("SubmitOptions.WebhookURL", o.WebhookURL, true); err != nil {
			return nil, "", err
		}
		query = "?fal_webhook=" + url.QueryEscape(o.WebhookURL)
	}
	switch o.Priority {
	case "":
	case PriorityNormal, PriorityLow:
		h.Set("X-Fal-Queue-Priority", string(o.Priority))
	default:
		return nil, "", invalid("SubmitOptions.Priority", "must be %q or %q (got %q)", PriorityNormal, PriorityLow, o.Priority)
	}
	if err := setStartTimeout(h, "SubmitOptions.StartTimeout", o.StartTimeout); err != nil {
		return nil, "", err
	}
	if o.RunnerHint != "" {
		if !validHeader("X-Fal-Runner-Hint", o.RunnerHint) {
			return nil, "", invalid("SubmitOptions.RunnerHint", "contains control characters")
		}
		h.Set("X-Fal-Runner-Hint", o.RunnerHint)
	}
	if o.NoRetry {
		h.Set("X-Fal-No-Retry", "1")
	}
	if o.MaxAttempts < 0 {
		return nil, "", invalid("SubmitOptions.MaxAttempts", "must be ≥ 0 (got %d)", o.MaxAttempts)
	}
	if err := setObjectExpiration(h, "SubmitOptions.ObjectExpiration", o.ObjectExpiration); err != nil {
		return nil, "", err
	}
	if o.StoreIO != nil {
		h.Set("X-Fal-Store-IO", map[bool]string{true: "1", false: "0"}[*o.StoreIO])
	}
	if o.DisableFallbacks {
		h.Set("X-App-Fal-Disable-Fallback", "true")
	}
	return h, query, nil
}

// setObjectExpiration sets how long fal keeps the output media on its CDN.
func setObjectExpiration(h http.Header, name string, d time.Duration) error {
	switch {
	case d < 0 || (d > 0 && d < time.Second):
		return invalid(name, "must be 0 or ≥ 1s (got %s)", d)
	case d > 0:
		h.Set("X-Fal-Object-Lifecycle-Preference",
			`{"expiration_duration_seconds":`+strconv.FormatInt(int64(d/time.Second), 10)+`}`)
	}
	return nil
}

func setStartTimeout(h http.Header, name string, d time.Duration) error {
	switch {
	case d < 0:
		return invalid(name, "must be ≥ 0 (got %s)", d)
	case d > 0 && d <= 100*time.Millisecond:
		// fal refuses a start deadline of 0.1s or less.
		return invalid(name, "must be 0 or more than 100ms (got %s)", d)
	case d > 0:
		h.Set("X-Fal-Request-Timeout", strconv.FormatFloat(d.Seconds(), 'f', -1, 64))
	}
	return nil
}

// encodeInput returns the request body: json.RawMessage and []byte are sent
// verbatim (they must be valid JSON), nil and empty become {}, anything else
// is json.Marshal'ed.
func encodeInput(op, model string, input any) ([]byte, error) {
	var b []byte
	switch v := input.(type) {
	case nil:
	case json.RawMessage:
		b = v
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("falclient: %s %s: encode input: %w: %w", op, model, ErrBadRequest, err)
		}
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return []byte("{}"), nil
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("falclient: %s %s: %w: input is not valid JSON", op, model, ErrBadRequest)
	}
	return b, nil
}

// SubmitResponse is fal's answer to a submit (fal-protocol §3.1). The URLs
// use the base app id; store them if you like, but [Client.Status],
// [Client.Result] and [Client.Cancel] rebuild them from the model id.
type SubmitResponse struct {
	RequestID        string `json:"request_id"`                   // the queue request id (never empty)
	GatewayRequestID string `json:"gateway_request_id,omitempty"` // id of the latest attempt; often equal to RequestID
	StatusURL        string `json:"status_url,omitempty"`         // {queue}/{base app id}/requests/{id}/status
	ResponseURL      string `json:"response_url,omitempty"`       // {queue}/{base app id}/requests/{id}
	CancelURL        string `json:"cancel_url,omitempty"`         // {queue}/{base app id}/requests/{id}/cancel
	Status           string `json:"status,omitempty"`             // "IN_QUEUE"
	QueuePosition    int    `json:"queue_position"`               // requests ahead of this one
}

// Submit puts a request on fal's queue: POST {queue}/{model}[?fal_webhook=…].
// input is the model input: json.RawMessage or []byte are sent verbatim,
// nil sends {}, anything else is json.Marshal'ed; invalid JSON fails with
// [ErrBadRequest] before anything is sent.
//
// Submit never creates a job twice. It retries (see [RetryPolicy]) only when
// fal certainly did not accept the request: the request was never written in
// full (dial, DNS, TLS errors), or fal answered 429, or 503 without an
// x-fal-request-id (the ingress refused it). A timeout, reset or EOF after
// the request was written, any other 5xx (a 502 can follow a request that
// reached fal), or an unreadable 2xx body returns an error wrapping
// [ErrAmbiguousSubmit] and the cause. Other
// answers return an *APIError (see [APIError.Is]). A malformed model id wraps
// [ErrInvalidModelID], bad options [ErrInvalidOption].
func (c *Client) Submit(ctx context.Context, model string, input any, opts SubmitOptions) (*SubmitResponse, error) {
	m, err := parseModel(OpSubmit, model)
	if err != nil {
		return nil, err
	}
	h, query, err := opts.build()
	if err != nil {
		return nil, err
	}
	body, err := encodeInput(OpSubmit, model, input)
	if err != nil {
		return nil, err
	}
	cl := &call{
		op: OpSubmit, model: model, method: http.MethodPost,
		url:  c.queueURL + "/" + m.String() + query,
		body: body, accept: contentJSON, header: h, timeout: c.reqTimeout,
	}
	r := c.newRetrier(OpSubmit, model)
	r.max = opts.MaxAttempts
	for {
		rep, err := c.doOnce(ctx, cl)
		if err == nil {
			var out SubmitResponse
			if jerr := json.Unmarshal(rep.body, &out); jerr != nil || out.RequestID == "" {
				cause := fmt.Errorf("%w: submit answer without request_id (HTTP %d, %d bytes)", ErrMalformedResponse, rep.code, len(rep.body))
				return nil, &ambiguousError{model: model, cause: &netError{op: OpSubmit, model: model, err: cause, written: true, permanent: true}}
			}
			return &out, nil
		}
		again, ferr := r.again(ctx, err, retrySubmit(err))
		if !again {
			if ambiguousSubmit(ferr) {
				return nil, &ambiguousError{model: model, cause: ferr}
			}
			return nil, ferr
		}
	}
}

// State is a queue status ("IN_QUEUE", "IN_PROGRESS", "COMPLETED"). Other
// strings are kept verbatim and mean "still running".
type State string

// States of a queued request. There is no failed or cancelled state: a
// failed request is COMPLETED and its result call returns the error.
const (
	StateInQueue    State = "IN_QUEUE"
	StateInProgress State = "IN_PROGRESS"
	StateCompleted  State = "COMPLETED"
)

// LogEntry is one log line of a running request.
type LogEntry struct {
	Message   string `json:"message"`   // the log line
	Level     string `json:"level"`     // STDERR, STDOUT, ERROR, INFO, WARN, DEBUG
	Source    string `json:"source"`    // "USER"
	Timestamp string `json:"timestamp"` // ISO-8601 as fal sends it (a number is kept as its text)
}

// Metrics are a completed request's metrics.
type Metrics struct {
	InferenceTime *float64 `json:"inference_time"` // seconds; nil if fal sent none
}

// Status is a queued request's status (fal-protocol §3.2).
type Status struct {
	State         State      `json:"status"`                   // IN_QUEUE, IN_PROGRESS, COMPLETED, or an unknown string kept verbatim
	QueuePosition *int       `json:"queue_position,omitempty"` // requests ahead (IN_QUEUE)
	Logs          []LogEntry `json:"logs,omitempty"`           // with logs requested; nil otherwise
	Metrics       *Metrics   `json:"metrics,omitempty"`        // COMPLETED only, when fal sends them
	Error         string     `json:"error,omitempty"`          // set on a COMPLETED request that failed
	ErrorType     string     `json:"error_type,omitempty"`     // likewise
	RequestID     string     `json:"request_id,omitempty"`     // as echoed by fal
	ResponseURL   string     `json:"response_url,omitempty"`   // where the result is read
	StatusURL     string     `json:"status_url,omitempty"`     // where the status is read
	CancelURL     string     `json:"cancel_url,omitempty"`     // where the request is cancelled
}

// Done reports whether the request is COMPLETED (successfully or not; fetch
// the outcome with [Client.Result]). It is false for unknown states.
func (s *Status) Done() bool { return s != nil && s.State == StateCompleted }

// decodeStatus reads a status body leniently: unknown fields are ignored,
// fields of an unexpected type are kept as text or dropped. Without a status
// field, HTTP 200 means COMPLETED and 202 IN_PROGRESS (as the old fal SDK
// decided).
func decodeStatus(code int, body []byte) (*Status, error) {
	var w struct {
		Status        json.RawMessage `json:"status"`
		QueuePosition json.RawMessage `json:"queue_position"`
		Logs          json.RawMessage `json:"logs"`
		Metrics       json.RawMessage `json:"metrics"`
		Error         json.RawMessage `json:"error"`
		ErrorType     json.RawMessage `json:"error_type"`
		RequestID     json.RawMessage `json:"request_id"`
		ResponseURL   json.RawMessage `json:"response_url"`
		StatusURL     json.RawMessage `json:"status_url"`
		CancelURL     json.RawMessage `json:"cancel_url"`
	}
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &w) != nil {
		return nil, fmt.Errorf("%w: status is not a JSON object (%d bytes)", ErrMalformedResponse, len(body))
	}
	s := &Status{
		State:       State(looseString(w.Status)),
		Error:       looseString(w.Error),
		ErrorType:   looseString(w.ErrorType),
		RequestID:   looseString(w.RequestID),
		ResponseURL: looseString(w.ResponseURL),
		StatusURL:   looseString(w.StatusURL),
		CancelURL:   looseString(w.CancelURL),
	}
	if s.State == "" {
		switch code {
		case http.StatusOK:
			s.State = StateCompleted
		case http.StatusAccepted:
			s.State = StateInProgress
		}
	}
	var qp json.Number
	if json.Unmarshal(w.QueuePosition, &qp) == nil && qp != "" {
		if n, err := qp.Int64(); err == nil {
			p := int(n)
			s.QueuePosition = &p
		} else if f, err := qp.Float64(); err == nil {
			p := int(f)
			s.QueuePosition = &p
		}
	}
	var logs []map[string]json.RawMessage
	if json.Unmarshal(w.Logs, &logs) == nil {
		for _, l := range logs {
			if l == nil {
				continue
			}
			s.Logs = append(s.Logs, LogEntry{
				Message:   looseString(l["message"]),
				Level:     looseString(l["level"]),
				Source:    looseString(l["source"]),
				Timestamp: looseString(l["timestamp"]),
			})
		}
	}
	var mt struct {
		InferenceTime json.RawMessage `json:"inference_time"`
	}
	if len(w.Metrics) > 0 && json.Unmarshal(w.Metrics, &mt) == nil {
		s.Metrics = &Metrics{}
		var f float64
		if json.Unmarshal(mt.InferenceTime, &f) == nil && !bytes.Equal(bytes.TrimSpace(mt.InferenceTime), []byte("null")) {
			s.Metrics.InferenceTime = &f
		}
	}
	return s, nil
}

// looseString returns a JSON string's value, "" for null or absent, and the
// compact JSON text of any other value.
func looseString(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		return buf.String()
	}
	return ""
}

// requestURL is {queue}/{base app id}/requests/{rid}.
func (c *Client) requestURL(m ModelID, rid string) string {
	return c.queueURL + "/" + m.BaseAppID() + "/requests/" + rid
}

func logsParam(withLogs bool) string {
	if withLogs {
		return "logs=1"
	}
	return "logs=0"
}

// Status fetches a request's status: GET
// {queue}/{base app id}/requests/{requestID}/status?logs=1|0. With withLogs
// the status carries the logs so far. It retries network errors and
// retryable answers (408, 409, 429, 500 unless X-Fal-Retryable: false, 502,
// 503, 504 unless the caller's start timeout). An unknown request or model
// returns an error wrapping [ErrNotFound]; see [APIError.Is] for the rest.
func (c *Client) Status(ctx context.Context, model, requestID string, withLogs bool) (*Status, error) {
	m, err := parseModel(OpStatus, model)
	if err != nil {
		return nil, err
	}
	if err := checkRequestID(OpStatus, requestID); err != nil {
		return nil, err
	}
	cl := &call{
		op: OpStatus, model: model, method: http.MethodGet,
		url:    c.requestURL(m, requestID) + "/status?" + logsParam(withLogs),
		accept: contentJSON, timeout: c.reqTimeout,
	}
	r := c.newRetrier(OpStatus, model)
	for {
		rep, err := c.doOnce(ctx, cl)
		if err == nil {
			st, derr := decodeStatus(rep.code, rep.body)
			if derr != nil {
				err = &netError{op: OpStatus, model: model, err: derr, written: true}
			} else {
				return st, nil
			}
		}
		if again, ferr := r.again(ctx, err, retryIdempotent(err)); !again {
			return nil, ferr
		}
	}
}

// StatusStream follows a request's status over SSE: GET
// {queue}/{base app id}/requests/{requestID}/status/stream?logs=1|0. It
// calls onStatus (if not nil) for every status event, in order, and returns
// the COMPLETED status. Streamed logs are as fal sends them: only the new
// entries of each event. If onStatus returns an error, StatusStream stops
// and returns that error unchanged.
//
// A stream that fails or ends before COMPLETED is reopened with backoff; the
// attempt count restarts whenever an event arrived. Error answers are
// retried as in [Client.Status]. [WithRequestTimeout] bounds only the wait
// for the response headers; ctx bounds the whole stream.
func (c *Client) StatusStream(ctx context.Context, model, requestID string, withLogs bool, onStatus func(*Status) error) (*Status, error) {
	m, err := parseModel(OpStatusStream, model)
	if err != nil {
		return nil, err
	}
	if err := checkRequestID(OpStatusStream, requestID); err != nil {
		return nil, err
	}
	cl := &call{
		op: OpStatusStream, model: model, method: http.MethodGet,
		url:    c.requestURL(m, requestID) + "/status/stream?" + logsParam(withLogs),
		accept: contentSSE, timeout: c.reqTimeout, stream: true,
	}
	r := c.newRetrier(OpStatusStream, model)
	for {
		st, progressed, err := c.statusStreamOnce(ctx, cl, onStatus)
		if err == nil {
			return st, nil
		}
		var ce *callbackError
		if errors.As(err, &ce) {
			return nil, ce.err
		}
		if progressed {
			r.reset()
		}
		if again, ferr := r.again(ctx, err, retryIdempotent(err)); !again {
			return nil, ferr
		}
	}
}

// callbackError carries an error returned by a caller's callback.
type callbackError struct{ err error }

func (e *callbackError) Error() string { return e.err.Error() }

func (c *Client) statusStreamOnce(ctx context.Context, cl *call, onStatus func(*Status) error) (*Status, bool, error) {
	x, err := c.send(ctx, cl)
	if err != nil {
		return nil, false, err
	}
	defer x.close()
	if !ok2xx(x.resp.StatusCode) {
		return nil, false, c.readAPIError(x)
	}
	sse := newSSEReader(x.resp.Body, int(min(c.maxBody, 1<<30)))
	progressed := false
	for {
		data, err := sse.next()
		if err == io.EOF {
			return nil, progressed, &netError{op: cl.op, model: cl.model, written: true,
				err: fmt.Errorf("%w: status stream ended before COMPLETED: %w", ErrMalformedResponse, io.ErrUnexpectedEOF)}
		}
		if err != nil {
			return nil, progressed, x.bodyError(ctx, c, err)
		}
		if len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		st, err := decodeStatus(http.StatusOK, data)
		if err != nil {
			// Most likely a stream cut inside an event: reconnect.
			return nil, progressed, &netError{op: cl.op, model: cl.model, err: err, written: true}
		}
		if st.State == "" {
			continue
		}
		progressed = true
		if onStatus != nil {
			if err := onStatus(st); err != nil {
				return nil, progressed, &callbackError{err: err}
			}
		}
		if st.Done() {
			return st, progressed, nil
		}
	}
}

// Result fetches a completed request's output: GET
// {queue}/{base app id}/requests/{requestID}. On 2xx it returns fal's bytes
// untouched (large integers such as seeds > 2^53 survive). A failed run
// returns its stored error as an *APIError (e.g. 422 [ErrValidation] with
// details, 499 [ErrCanceled], 504 [ErrTimeout]); a request that is not done
// yet returns a 4xx error. A body that is not JSON wraps
// [ErrMalformedResponse]; one larger than [WithMaxResponseBytes] wraps
// [ErrResponseTooLarge]. Retries as [Client.Status].
func (c *Client) Result(ctx context.Context, model, requestID string) (json.RawMessage, error) {
	m, err := parseModel(OpResult, model)
	if err != nil {
		return nil, err
	}
	if err := checkRequestID(OpResult, requestID); err != nil {
		return nil, err
	}
	cl := &call{
		op: OpResult, model: model, method: http.MethodGet,
		url: c.requestURL(m, requestID), accept: contentJSON, timeout: c.reqTimeout,
	}
	r := c.newRetrier(OpResult, model)
	for {
		rep, err := c.doOnce(ctx, cl)
		if err == nil {
			if !json.Valid(rep.body) {
				return nil, &netError{op: OpResult, model: model, written: true, permanent: true,
					err: fmt.Errorf("%w: result is not JSON (%d bytes)", ErrMalformedResponse, len(rep.body))}
			}
			return json.RawMessage(rep.body), nil
		}
		if again, ferr := r.again(ctx, err, retryIdempotent(err)); !again {
			return nil, ferr
		}
	}
}

// Cancel asks fal to cancel a request: PUT
// {queue}/{base app id}/requests/{requestID}/cancel. It returns nil when fal
// accepted (202): a queued request never runs; a running one is signalled
// and, if the app honours it, its result becomes 499 [ErrCanceled]. A
// completed request returns an error wrapping [ErrAlreadyCompleted], an
// unknown one [ErrNotFound]. Retries as [Client.Status].
func (c *Client) Cancel(ctx context.Context, model, requestID string) error {
	m, err := parseModel(OpCancel, model)
	if err != nil {
		return err
	}
	if err := checkRequestID(OpCancel, requestID); err != nil {
		return err
	}
	cl := &call{
		op: OpCancel, model: model, method: http.MethodPut,
		url: c.requestURL(m, requestID) + "/cancel", accept: contentJSON, timeout: c.reqTimeout,
	}
	r := c.newRetrier(OpCancel, model)
	for {
		_, err := c.doOnce(ctx, cl)
		if err == nil {
			return nil
		}
		if again, ferr := r.again(ctx, err, retryIdempotent(err)); !again {
			return ferr
		}
	}
}
