package falclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors. Every error returned by this package wraps at most a few of
// these, so callers branch with errors.Is. Errors that come from an HTTP answer
// are *APIError values whose Is method maps the status code and fal's error
// type onto the sentinels; see [APIError.Is].
var (
	// ErrInvalidOption is wrapped by every error caused by a bad [Option],
	// a bad [RetryPolicy], bad [VerifierOptions] or a bad field of
	// [SubmitOptions]/[RunOptions]. The message names the option.
	ErrInvalidOption = errors.New("falclient: invalid option")

	// ErrInvalidModelID is wrapped by [ParseModelID] errors and by every call
	// given a malformed model id. No request is sent.
	ErrInvalidModelID = errors.New("falclient: invalid model id")

	// ErrInvalidRequestID is wrapped when a request id is empty, too long, or
	// contains characters that cannot appear in one URL path segment
	// (slash, '?', '#', '%', whitespace, control characters). No request is sent.
	ErrInvalidRequestID = errors.New("falclient: invalid request id")

	// ErrUnauthorized: fal answered 401 (missing or bad key) or 403 (account
	// locked, no access to the app). Not retryable.
	ErrUnauthorized = errors.New("falclient: unauthorized")

	// ErrNotFound: fal answered 404 (unknown model, path or request id).
	ErrNotFound = errors.New("falclient: not found")

	// ErrValidation: fal answered 422 (input validation or content error,
	// body format A). [APIError.Details] holds the per-field details.
	ErrValidation = errors.New("falclient: validation error")

	// ErrRateLimited: fal answered 429. [RetryAfter] reports the server's
	// Retry-After, if any.
	ErrRateLimited = errors.New("falclient: rate limited")

	// ErrUpstream: fal answered 5xx, except a timeout that [ErrTimeout]
	// covers (a 504 from the caller's start timeout, or error type
	// request_timeout, startup_timeout or generation_timeout).
	ErrUpstream = errors.New("falclient: upstream error")

	// ErrTimeout: the request timed out. Either fal answered 504 with
	// X-Fal-Request-Timeout-Type: user or error type request_timeout,
	// startup_timeout or generation_timeout, or the client gave up: the
	// caller's context deadline passed (the error then also wraps
	// context.DeadlineExceeded) or one attempt exceeded [WithRequestTimeout].
	ErrTimeout = errors.New("falclient: timeout")

	// ErrCanceled: fal answered 499 or error type client_cancelled (the
	// request was cancelled while running).
	ErrCanceled = errors.New("falclient: canceled")

	// ErrAmbiguousSubmit: a submit may have reached fal and been accepted, but
	// its answer was lost (timeout, reset or EOF after the request was
	// written, a 504, or an unreadable 2xx body). It is never retried, since a
	// second submit would be a second bill. The error also wraps the cause.
	ErrAmbiguousSubmit = errors.New("falclient: submit may have been accepted by fal")

	// ErrStreamingUnsupported: the model has no /stream endpoint (fal answered
	// 404 or 405 to [Client.Stream]).
	ErrStreamingUnsupported = errors.New("falclient: model does not support streaming")

	// ErrAlreadyCompleted: [Client.Cancel] of a request that has already
	// completed (fal answered 400 {"status":"ALREADY_COMPLETED"}).
	ErrAlreadyCompleted = errors.New("falclient: request already completed")

	// ErrBadRequest: any other 4xx answer (400, 405, 408, 409, 413, …).
	ErrBadRequest = errors.New("falclient: bad request")

	// ErrResponseTooLarge: a success body (or one SSE event) exceeded
	// [WithMaxResponseBytes]. Not retryable.
	ErrResponseTooLarge = errors.New("falclient: response too large")

	// ErrMalformedResponse: a 2xx answer whose body is not what the protocol
	// promises (not JSON, missing request_id, an SSE stream that ends early).
	ErrMalformedResponse = errors.New("falclient: malformed response")

	// ErrWebhookSignature is wrapped by every [Verifier.Verify] failure; the
	// message says why (missing header, stale timestamp, bad hex, no key
	// verifies, JWKS fetch failed).
	ErrWebhookSignature = errors.New("falclient: webhook signature verification failed")

	// ErrJWKS is wrapped, together with [ErrWebhookSignature], when the JWKS
	// could not be fetched or parsed and no cached key could be used. Unlike a
	// bad signature this is usually transient: answer the webhook with a 5xx
	// so that fal retries it.
	ErrJWKS = errors.New("falclient: cannot fetch webhook keys")

	// ErrWebhookPayload is wrapped by [ParseWebhook] when the body is not a
	// JSON object with a request_id and a status.
	ErrWebhookPayload = errors.New("falclient: malformed webhook payload")
)

// Operation names used in [APIError.Op] and in the "op" key of log lines.
const (
	OpSubmit       = "submit"
	OpStatus       = "status"
	OpStatusStream = "status_stream"
	OpResult       = "result"
	OpCancel       = "cancel"
	OpRun          = "run"
	OpStream       = "stream"
	OpWebhook      = "webhook"
)

// ValidationDetail is one entry of a FastAPI-style error body (fal's format
// A): {"detail":[{"loc":["body","prompt"],"msg":"field required","type":"missing"}]}.
type ValidationDetail struct {
	Loc   []any           `json:"loc"`             // path to the field, e.g. ["body","image_size","width"]; see Field
	Msg   string          `json:"msg"`             // human-readable text; do not parse it
	Type  string          `json:"type"`            // machine code, e.g. "missing", "image_too_large", "content_policy_violation"
	URL   string          `json:"url,omitempty"`   // link to the error's documentation
	Ctx   json.RawMessage `json:"ctx,omitempty"`   // structured limits, e.g. {"max_width":1024}
	Input json.RawMessage `json:"input,omitempty"` // the offending value (Pydantic v2)
}

// Field returns the dotted path of the offending input field without the
// leading "body" element: "image_size.width" for loc
// ["body","image_size","width"], "loras.0.path" for ["body","loras",0,"path"].
// It returns "" for an error about the whole body (loc ["body"] or empty).
func (d ValidationDetail) Field() string {
	loc := d.Loc
	if len(loc) > 0 {
		if s, ok := loc[0].(string); ok && s == "body" {
			loc = loc[1:]
		}
	}
	parts := make([]string, 0, len(loc))
	for _, p := range loc {
		switch v := p.(type) {
		case string:
			parts = append(parts, v)
		case float64:
			parts = append(parts, strconv.FormatFloat(v, 'f', -1, 64))
		case json.Number:
			parts = append(parts, v.String())
		default:
			parts = append(parts, fmt.Sprint(v))
		}
	}
	return strings.Join(parts, ".")
}

// APIError is an error answer from fal (any non-2xx status), or a failed
// webhook delivery ([Webhook.Err]). Use errors.Is with the sentinels (see
// [APIError.Is]) rather than comparing StatusCode, and errors.As to read the
// details. It never contains the API key.
type APIError struct {
	Op          string             // "submit", "status", "status_stream", "result", "cancel", "run", "stream" or "webhook"
	Model       string             // model id as given by the caller ("" for webhooks)
	StatusCode  int                // HTTP status; for webhooks the one in "Invalid status code: N" (0 if absent)
	Message     string             // detail string, first validation msg, or the status text for HTML bodies
	Details     []ValidationDetail // format A details (also one synthetic entry when detail is a plain string)
	ErrorType   string             // body error_type, else X-Fal-Error-Type
	TimeoutType string             // X-Fal-Request-Timeout-Type ("user" for the caller's start timeout)
	RequestID   string             // x-fal-request-id (for webhooks: the webhook's request_id)
	RetryAfter  time.Duration      // parsed Retry-After (seconds or HTTP-date), 0 if none
	Retryable   *bool              // X-Fal-Retryable, nil if absent
	Body        json.RawMessage    // raw body when it is JSON (nil for HTML or other text)
}

// Error names the operation, model, status, message and request id.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("falclient: ")
	b.WriteString(e.Op)
	if e.Model != "" {
		b.WriteByte(' ')
		b.WriteString(e.Model)
	}
	b.WriteString(": ")
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, "HTTP %d", e.StatusCode)
		if t := http.StatusText(e.StatusCode); t != "" && e.Message != t {
			b.WriteByte(' ')
			b.WriteString(t)
		}
	} else {
		b.WriteString("error")
	}
	if msg := e.describe(); msg != "" {
		b.WriteString(": ")
		b.WriteString(msg)
	}
	if e.ErrorType != "" {
		fmt.Fprintf(&b, " (error_type %s)", e.ErrorType)
	}
	if e.TimeoutType != "" {
		fmt.Fprintf(&b, " (timeout_type %s)", e.TimeoutType)
	}
	if e.RequestID != "" {
		fmt.Fprintf(&b, " (request_id %s)", e.RequestID)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

func (e *APIError) describe() string {
	if len(e.Details) == 0 {
		return truncate(e.Message, 512)
	}
	d := e.Details[0]
	msg := d.Msg
	if f := d.Field(); f != "" {
		msg = f + ": " + msg
	}
	if n := len(e.Details) - 1; n > 0 {
		msg += fmt.Sprintf(" (and %d more)", n)
	}
	return truncate(msg, 512)
}

// Is maps the error onto the sentinels:
//
//	401, 403                                   ErrUnauthorized
//	404                                        ErrNotFound (and ErrStreamingUnsupported for Op "stream")
//	405 for Op "stream"                        ErrStreamingUnsupported (and ErrBadRequest)
//	422                                        ErrValidation
//	429                                        ErrRateLimited
//	499, or error type client_cancelled        ErrCanceled
//	400 {"status":"ALREADY_COMPLETED"} cancel  ErrAlreadyCompleted (and ErrBadRequest)
//	504 with timeout type user, or error type
//	request_timeout/startup_timeout/
//	generation_timeout                         ErrTimeout (never ErrUpstream)
//	other 5xx                                  ErrUpstream
//	other 4xx                                  ErrBadRequest
func (e *APIError) Is(target error) bool {
	code := e.StatusCode
	switch target {
	case ErrUnauthorized:
		return code == http.StatusUnauthorized || code == http.StatusForbidden
	case ErrNotFound:
		return code == http.StatusNotFound
	case ErrValidation:
		return code == http.StatusUnprocessableEntity
	case ErrRateLimited:
		return code == http.StatusTooManyRequests
	case ErrCanceled:
		return e.canceled()
	case ErrTimeout:
		return e.timeout()
	case ErrUpstream:
		return code >= 500 && code <= 599 && !e.timeout() && !e.canceled()
	case ErrStreamingUnsupported:
		return e.Op == OpStream && (code == http.StatusNotFound || code == http.StatusMethodNotAllowed)
	case ErrAlreadyCompleted:
		return e.alreadyCompleted()
	case ErrBadRequest:
		switch code {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound,
			http.StatusUnprocessableEntity, http.StatusTooManyRequests, statusClientClosed:
			return false
		}
		return code >= 400 && code <= 499 && !e.timeout() && !e.canceled()
	}
	return false
}

const statusClientClosed = 499

func (e *APIError) canceled() bool {
	return e.StatusCode == statusClientClosed || e.ErrorType == "client_cancelled"
}

func (e *APIError) timeout() bool {
	if e.StatusCode == http.StatusGatewayTimeout && strings.EqualFold(e.TimeoutType, "user") {
		return true
	}
	switch e.ErrorType {
	case "request_timeout", "startup_timeout", "generation_timeout":
		return true
	}
	return false
}

func (e *APIError) alreadyCompleted() bool {
	if e.Op != OpCancel || e.StatusCode != http.StatusBadRequest {
		return false
	}
	return strings.EqualFold(e.Message, "ALREADY_COMPLETED") ||
		strings.Contains(strings.ToLower(e.Message), "already completed")
}

// retryable reports whether an idempotent call (status, result, cancel)
// should be retried after this answer: 408, 409, 429, 502, 503, 504 unless
// it is the caller's start timeout, and 500 unless X-Fal-Retryable: false
// or it is a result's format-A answer (the stored outcome of a failed run).
// A result call's 5xx in fal's JSON with its x-fal-request-id is the stored
// outcome too (fal retried the run itself, fal-protocol §11.2): not retried.
// X-Fal-Retryable: true makes any status retryable; false makes none.
func (e *APIError) retryable() bool {
	if e.Retryable != nil && !*e.Retryable {
		return false
	}
	if e.Op == OpWebhook {
		return false
	}
	if e.Op == OpResult && e.storedResult() {
		// fal has already retried the run itself (fal-protocol §11.2):
		// asking again gives the same answer.
		return e.Retryable != nil && *e.Retryable
	}
	switch e.StatusCode {
	case http.StatusInternalServerError:
		// A result's 500 with a format-A body is the stored outcome of a
		// failed model run: asking again gives the same answer.
		return e.Op != OpResult || !e.modelError() || (e.Retryable != nil && *e.Retryable)
	case http.StatusRequestTimeout, http.StatusConflict, http.StatusTooManyRequests,
		http.StatusBadGateway, http.StatusServiceUnavailable:
		return true
	case http.StatusGatewayTimeout:
		return !strings.EqualFold(e.TimeoutType, "user")
	}
	return e.Retryable != nil && *e.Retryable
}

// storedResult reports whether a result call's 5xx is the request's stored
// outcome rather than no answer: fal's own JSON body with its
// x-fal-request-id. A proxy's error page (HTML, no request id) is not.
func (e *APIError) storedResult() bool {
	return e.StatusCode >= 500 && e.RequestID != "" && e.Body != nil
}

// modelError reports whether the body is fal's format A (a "detail" list):
// a model or validation error rather than an infrastructure one.
func (e *APIError) modelError() bool {
	var v struct {
		Detail json.RawMessage `json:"detail"`
	}
	if len(e.Body) == 0 || json.Unmarshal(e.Body, &v) != nil {
		return false
	}
	d := bytes.TrimSpace(v.Detail)
	return len(d) > 0 && d[0] == '['
}

// IsRetryable reports whether err is worth retrying later with the same
// input: an *APIError with status 408, 409, 429, 500 (unless
// X-Fal-Retryable: false, or a result call's format-A {"detail":[…]} body:
// the stored outcome of a failed model run), 502, 503 or 504 (unless the
// caller's start timeout, or a result call's answer in fal's JSON with its
// x-fal-request-id: the stored outcome), any status with X-Fal-Retryable:
// true, or a network failure of a status, result or cancel call, or of a
// submit or run that certainly did not reach fal. It is false for
// [ErrAmbiguousSubmit], for the caller's own context being canceled or past
// its deadline, for invalid arguments, and for nil.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, ErrAmbiguousSubmit) {
		return false
	}
	var cd *callerDoneError
	if errors.As(err, &cd) {
		return false // the caller's context ended
	}
	var ne *netError
	if errors.As(err, &ne) {
		return ne.retryable()
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.retryable()
	}
	return false
}

// RetryAfter returns the Retry-After of the first *APIError wrapped by err,
// or 0 when there is none.
func RetryAfter(err error) time.Duration {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.RetryAfter
	}
	return 0
}

// parseRetryAfter reads a Retry-After value: delay-seconds (decimals are
// tolerated) or an HTTP-date relative to now. Unparseable or past → 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 || secs != secs || secs > 1e9 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// newAPIError builds an *APIError from an error answer. body is at most
// maxErrorBody bytes of the response body, with the API key already scrubbed.
func newAPIError(op, model string, code int, h http.Header, body []byte, now time.Time) *APIError {
	e := &APIError{
		Op:          op,
		Model:       model,
		StatusCode:  code,
		ErrorType:   h.Get("X-Fal-Error-Type"),
		TimeoutType: h.Get("X-Fal-Request-Timeout-Type"),
		RequestID:   h.Get("X-Fal-Request-Id"),
		RetryAfter:  parseRetryAfter(h.Get("Retry-After"), now),
	}
	if v := h.Get("X-Fal-Retryable"); v != "" {
		if b, err := strconv.ParseBool(strings.TrimSpace(v)); err == nil {
			e.Retryable = &b
		}
	}
	fillFromBody(e, body)
	if e.Message == "" {
		e.Message = http.StatusText(code)
	}
	return e
}

// fillFromBody parses the three error body formats: A {"detail":[…]} (detail
// may also be a string), B {"detail":"…","error_type":"…"}, the cancel shape
// {"status":"ALREADY_COMPLETED"}, and anything else (HTML from nginx: Body
// stays nil).
func fillFromBody(e *APIError, body []byte) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || !json.Valid(trimmed) {
		return
	}
	e.Body = json.RawMessage(trimmed)
	var obj struct {
		Detail    json.RawMessage `json:"detail"`
		ErrorType json.RawMessage `json:"error_type"`
		Status    json.RawMessage `json:"status"`
		Message   json.RawMessage `json:"message"`
		Error     json.RawMessage `json:"error"`
	}
	if trimmed[0] != '{' {
		var s string
		if json.Unmarshal(trimmed, &s) == nil {
			e.Message = s
		}
		return
	}
	if json.Unmarshal(trimmed, &obj) != nil {
		return
	}
	if et := jsonString(obj.ErrorType); et != "" {
		e.ErrorType = et
	}
	e.Details, e.Message = parseDetail(obj.Detail)
	for _, alt := range []json.RawMessage{obj.Message, obj.Error, obj.Status} {
		if e.Message != "" {
			break
		}
		e.Message = jsonString(alt)
	}
}

// parseDetail decodes a "detail" value: a list of validation details, a
// plain string (one synthetic detail with loc ["body"], type "value_error",
// as fal-js does), or anything else (its compact JSON as the message).
func parseDetail(raw json.RawMessage) ([]ValidationDetail, string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil, ""
		}
		return []ValidationDetail{{Loc: []any{"body"}, Msg: s, Type: "value_error"}}, s
	case '[':
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil, ""
		}
		details := make([]ValidationDetail, 0, len(items))
		for _, it := range items {
			var d ValidationDetail
			if json.Unmarshal(it, &d) != nil {
				// Not an object of the expected shape: keep its text.
				var s string
				if json.Unmarshal(it, &s) != nil {
					s = string(it)
				}
				d = ValidationDetail{Loc: []any{"body"}, Msg: s, Type: "value_error"}
			}
			details = append(details, d)
		}
		if len(details) == 0 {
			return nil, ""
		}
		return details, details[0].Msg
	default:
		var buf bytes.Buffer
		if json.Compact(&buf, raw) != nil {
			return nil, ""
		}
		return nil, truncate(buf.String(), 512)
	}
}

// jsonString returns the string value of raw if it is a JSON string, else "".
func jsonString(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// netError is a failed round trip: no usable HTTP answer (dial error, reset,
// EOF, timeout, body read error, malformed 2xx body).
type netError struct {
	op, model string
	err       error
	// written: the request may have reached the server in full.
	written bool
	// timeout: the per-attempt timeout or the caller's deadline expired.
	timeout bool
	// callerDone: the caller's context ended (no retry makes sense).
	callerDone bool
	// permanent: a 2xx answer that retrying would not fix.
	permanent bool
}

func (e *netError) Error() string {
	return fmt.Sprintf("falclient: %s %s: %v", e.op, e.model, e.err)
}

func (e *netError) Unwrap() error { return e.err }

func (e *netError) Is(target error) bool {
	return target == ErrTimeout && e.timeout
}

func (e *netError) retryable() bool {
	if e.callerDone || e.permanent {
		return false
	}
	switch e.op {
	case OpSubmit, OpRun, OpStream:
		return !e.written
	}
	return true
}

// ambiguousError wraps the cause of an ambiguous submit together with
// ErrAmbiguousSubmit.
type ambiguousError struct {
	model string
	cause error
}

func (e *ambiguousError) Error() string {
	return fmt.Sprintf("%v [ambiguous submit: fal may have accepted the request; not retried]", e.cause)
}

func (e *ambiguousError) Unwrap() []error { return []error{ErrAmbiguousSubmit, e.cause} }

// attemptTimeoutError is the cause set on the context of an attempt that
// exceeded the per-attempt timeout.
type attemptTimeoutError struct{ d time.Duration }

func (e *attemptTimeoutError) Error() string {
	return fmt.Sprintf("attempt timed out after %s", e.d)
}

func (e *attemptTimeoutError) Is(target error) bool {
	return target == ErrTimeout || target == context.DeadlineExceeded
}
