package falclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// retrier runs the attempts of one operation.
type retrier struct {
	c       *Client
	op      string
	model   string
	attempt int
	max     int // per-call cap below the policy's MaxAttempts; 0 = none
	bo      *backoff.ExponentialBackOff
}

func (c *Client) newRetrier(op, model string) *retrier {
	return &retrier{c: c, op: op, model: model}
}

// reset starts the attempt count and the backoff over (after progress).
func (r *retrier) reset() {
	r.attempt = 0
	r.bo = nil
}

// again decides, after attempt r.attempt failed with err, whether to try
// once more. It waits the backoff (Retry-After as a floor) and returns
// (true, nil), or returns (false, final error). It never sleeps past ctx's
// deadline: if the wait would end after it, err is returned at once. A
// Retry-After longer than MaxInterval also ends the retries, leaving the
// wait to the caller (see [RetryAfter]).
func (r *retrier) again(ctx context.Context, err error, retryable bool) (bool, error) {
	r.attempt++
	p := r.c.retry
	limit := p.MaxAttempts
	if r.max > 0 {
		limit = min(limit, r.max)
	}
	if !retryable || r.attempt >= limit || ctx.Err() != nil {
		return false, err
	}
	if r.bo == nil {
		r.bo = backoff.NewExponentialBackOff(
			backoff.WithInitialInterval(p.InitialInterval),
			backoff.WithMaxInterval(p.MaxInterval),
			backoff.WithMultiplier(p.Multiplier),
			backoff.WithRandomizationFactor(p.RandomizationFactor),
			backoff.WithMaxElapsedTime(0),
		)
	}
	wait := min(r.bo.NextBackOff(), p.MaxInterval)
	if ra := RetryAfter(err); ra > 0 {
		if ra > p.MaxInterval {
			return false, err
		}
		wait = max(wait, ra)
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
		return false, err
	}
	r.c.log.LogAttrs(ctx, slog.LevelDebug, "retrying fal call",
		slog.String("op", r.op),
		slog.String("model_id", r.model),
		slog.Int("attempt", r.attempt),
		slog.String("err", err.Error()),
		slog.Duration("wait", wait),
	)
	if serr := r.c.sleep(ctx, wait); serr != nil {
		return false, &callerDoneError{op: r.op, model: r.model, last: err, ctx: context.Cause(ctx), attempts: r.attempt}
	}
	return true, nil
}

// callerDoneError: the caller's context ended, before a call's first
// attempt (last is nil) or while waiting to retry it (last is the error of
// the attempt that would have been retried). A passed deadline also
// satisfies errors.Is(err, ErrTimeout).
type callerDoneError struct {
	op, model string
	last      error
	ctx       error
	attempts  int
}

func (e *callerDoneError) Error() string {
	if e.last == nil {
		return fmt.Sprintf("falclient: %s %s: %v", e.op, e.model, e.ctx)
	}
	return fmt.Sprintf("%v (gave up after %d attempts: %v)", e.last, e.attempts, e.ctx)
}

func (e *callerDoneError) Unwrap() []error {
	if e.last == nil {
		return []error{e.ctx}
	}
	return []error{e.last, e.ctx}
}

func (e *callerDoneError) Is(target error) bool {
	return target == ErrTimeout && errors.Is(e.ctx, context.DeadlineExceeded)
}

// retryIdempotent is the rule of status, result and cancel: network errors
// (unless the caller's context ended) and retryable status codes.
func retryIdempotent(err error) bool {
	var ne *netError
	if errors.As(err, &ne) {
		return !ne.callerDone && !ne.permanent
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.retryable()
	}
	return false
}

// retrySubmit is the rule of submit: only when fal certainly did not accept
// the request — it was never written in full, or fal answered 429, or 503
// without an x-fal-request-id (fal-protocol §11.4: the ingress refused it).
// A 502 can follow a request that reached fal (nginx answers it when the
// upstream failed mid-request), and a 503 carrying a request id came from
// behind the ingress: both leave it unknown whether the job exists.
func retrySubmit(err error) bool {
	var ae *APIError
	if errors.As(err, &ae) && !submitRefused(ae) {
		return false
	}
	return retryUnsent(err, http.StatusTooManyRequests, http.StatusServiceUnavailable)
}

// submitRefused reports whether a submit's error answer certainly created
// no job: any 4xx, and a 503 without an x-fal-request-id.
func submitRefused(ae *APIError) bool {
	switch {
	case ae.StatusCode < 500:
		return true
	case ae.StatusCode == http.StatusServiceUnavailable:
		return ae.RequestID == ""
	}
	return false
}

// retryRun is the rule of run and stream: a second run is a second bill, so
// only when the request was never written in full, or fal answered 429 or
// 503.
func retryRun(err error) bool {
	return retryUnsent(err, http.StatusTooManyRequests, http.StatusServiceUnavailable)
}

// retryUnsent is the rule of calls that must not reach fal twice: retry a
// transport error only if the request was never written in full, and an
// answer only if its status is one of refused (unless X-Fal-Retryable: false).
func retryUnsent(err error, refused ...int) bool {
	var ne *netError
	if errors.As(err, &ne) {
		return !ne.callerDone && !ne.permanent && !ne.written
	}
	var ae *APIError
	if errors.As(err, &ae) {
		if ae.Retryable != nil && !*ae.Retryable {
			return false
		}
		return slices.Contains(refused, ae.StatusCode)
	}
	return false
}

// ambiguousSubmit reports whether a final submit error leaves it unknown
// whether fal accepted the request.
func ambiguousSubmit(err error) bool {
	var ne *netError
	if errors.As(err, &ne) {
		return ne.written
	}
	var ae *APIError
	if errors.As(err, &ae) {
		// A 5xx after the request was written, unless it is one fal
		// certainly answered without creating a job (submitRefused) or
		// the caller's own start timeout.
		return !submitRefused(ae) && !ae.timeout()
	}
	return false
}
