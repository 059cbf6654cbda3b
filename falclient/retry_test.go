package falclient_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/falclient"
)

// failThenOK answers code (with headers) for the first n calls, then ok.
func failThenOK(n, code int, hdr map[string]string, body, ok string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, r *http.Request, call int) {
		if call <= n {
			for k, v := range hdr {
				w.Header().Set(k, v)
			}
			if strings.HasPrefix(body, "<") {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(code)
				_, _ = w.Write([]byte(body))
				return
			}
			writeJSON(w, code, body)
			return
		}
		writeJSON(w, 200, ok)
	}
}

func TestRetryByOperation(t *testing.T) {
	t.Parallel()
	const (
		nginx  = "<html><body><center>nginx</center></body></html>"
		detail = `{"detail":"boom"}`
	)
	user := map[string]string{"X-Fal-Request-Timeout-Type": "user"}
	noRetry := map[string]string{"X-Fal-Retryable": "false"}
	withRID := map[string]string{"X-Fal-Request-Id": "rid-1"}
	type op string
	const (
		opSubmit op = "submit"
		opStatus op = "status"
		opResult op = "result"
		opCancel op = "cancel"
		opRun    op = "run"
	)
	tests := []struct {
		op    op
		code  int
		hdr   map[string]string
		body  string
		calls int64 // calls made when every answer fails (MaxAttempts 4)
		is    error
		ambig bool
	}{
		// status / result / cancel: network errors and retryable codes.
		{opStatus, 500, nil, detail, 4, falclient.ErrUpstream, false},
		{opStatus, 500, noRetry, detail, 1, falclient.ErrUpstream, false},
		{opStatus, 502, nil, nginx, 4, falclient.ErrUpstream, false},
		{opStatus, 503, nil, detail, 4, falclient.ErrUpstream, false},
		{opStatus, 504, nil, nginx, 4, falclient.ErrUpstream, false},
		{opStatus, 504, user, `{"detail":"Request timed out","error_type":"request_timeout"}`, 1, falclient.ErrTimeout, false},
		{opStatus, 429, nil, detail, 4, falclient.ErrRateLimited, false},
		{opStatus, 408, nil, detail, 4, falclient.ErrBadRequest, false},
		{opStatus, 409, nil, detail, 4, falclient.ErrBadRequest, false},
		{opStatus, 400, nil, detail, 1, falclient.ErrBadRequest, false},
		{opStatus, 401, nil, detail, 1, falclient.ErrUnauthorized, false},
		{opStatus, 403, nil, detail, 1, falclient.ErrUnauthorized, false},
		{opStatus, 404, nil, detail, 1, falclient.ErrNotFound, false},
		{opStatus, 422, nil, detail, 1, falclient.ErrValidation, false},
		{opResult, 500, nil, `{"detail":[{"loc":["body"],"msg":"Internal server error","type":"internal_server_error"}]}`, 1, falclient.ErrUpstream, false},
		{opResult, 500, nil, nginx, 4, falclient.ErrUpstream, false},
		{opResult, 500, nil, `{"detail":"Internal server error","error_type":"internal_error"}`, 4, falclient.ErrUpstream, false},
		{opResult, 503, nil, detail, 4, falclient.ErrUpstream, false},
		// fal's stored 5xx (its JSON, its request id) is final: not retried.
		{opResult, 503, withRID, `{"detail":"Runner disconnected","error_type":"runner_disconnected"}`, 1, falclient.ErrUpstream, false},
		{opResult, 504, withRID, `{"detail":"Generation timed out","error_type":"generation_timeout"}`, 1, falclient.ErrTimeout, false},
		{opResult, 502, withRID, nginx, 4, falclient.ErrUpstream, false},
		{opResult, 499, nil, `{"detail":"cancelled","error_type":"client_cancelled"}`, 1, falclient.ErrCanceled, false},
		{opCancel, 503, nil, nginx, 4, falclient.ErrUpstream, false},
		// submit: only 429 and 503 without x-fal-request-id (fal-protocol
		// §11.4); any other 5xx may follow an accepted request: ambiguous.
		{opSubmit, 429, nil, detail, 4, falclient.ErrRateLimited, false},
		{opSubmit, 502, nil, nginx, 1, falclient.ErrUpstream, true},
		{opSubmit, 503, nil, nginx, 4, falclient.ErrUpstream, false},
		{opSubmit, 503, nil, detail, 4, falclient.ErrUpstream, false},
		{opSubmit, 503, withRID, detail, 1, falclient.ErrUpstream, true},
		{opSubmit, 503, noRetry, detail, 1, falclient.ErrUpstream, false},
		{opSubmit, 500, nil, detail, 1, falclient.ErrUpstream, true},
		{opSubmit, 500, withRID, detail, 1, falclient.ErrUpstream, true},
		{opSubmit, 504, nil, nginx, 1, falclient.ErrUpstream, true},
		{opSubmit, 504, user, `{"detail":"Request timed out","error_type":"request_timeout"}`, 1, falclient.ErrTimeout, false},
		{opSubmit, 408, nil, detail, 1, falclient.ErrBadRequest, false},
		{opSubmit, 422, nil, `{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"missing"}]}`, 1, falclient.ErrValidation, false},
		// run: only 429 and 503.
		{opRun, 429, nil, detail, 4, falclient.ErrRateLimited, false},
		{opRun, 503, nil, detail, 4, falclient.ErrUpstream, false},
		{opRun, 502, nil, nginx, 1, falclient.ErrUpstream, false},
		{opRun, 500, nil, detail, 1, falclient.ErrUpstream, false},
		{opRun, 504, nil, nginx, 1, falclient.ErrUpstream, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %d %v", tt.op, tt.code, tt.hdr), func(t *testing.T) {
			t.Parallel()
			call := func(c *falclient.Client) error {
				ctx := context.Background()
				var err error
				switch tt.op {
				case opSubmit:
					_, err = c.Submit(ctx, "fal-ai/flux/dev", nil, falclient.SubmitOptions{})
				case opStatus:
					_, err = c.Status(ctx, "fal-ai/flux/dev", "rid", false)
				case opResult:
					_, err = c.Result(ctx, "fal-ai/flux/dev", "rid")
				case opCancel:
					err = c.Cancel(ctx, "fal-ai/flux/dev", "rid")
				case opRun:
					_, err = c.Run(ctx, "fal-ai/flux/dev", nil, falclient.RunOptions{})
				}
				return err
			}
			okBody := submitOK
			if tt.op == opStatus {
				okBody = `{"status":"COMPLETED"}`
			}

			// Always failing: the number of attempts and the final error.
			f := serve(t, failThenOK(1000, tt.code, tt.hdr, tt.body, okBody))
			c := newTestClient(t, f.URL)
			err := call(c)
			require.Error(t, err)
			require.Equal(t, tt.calls, f.calls.Load())
			require.ErrorIs(t, err, tt.is)
			require.Equal(t, tt.ambig, errors.Is(err, falclient.ErrAmbiguousSubmit))
			var ae *falclient.APIError
			require.ErrorAs(t, err, &ae)
			require.Equal(t, tt.code, ae.StatusCode)
			if tt.ambig {
				require.False(t, falclient.IsRetryable(err))
			}

			// Failing twice: retried operations then succeed.
			if tt.calls > 1 {
				f := serve(t, failThenOK(2, tt.code, tt.hdr, tt.body, okBody))
				c := newTestClient(t, f.URL)
				require.NoError(t, call(c))
				require.EqualValues(t, 3, f.calls.Load())
			}
		})
	}
}

func TestRetryAfterIsAFloor(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		retryAfter string
		want       time.Duration
	}{
		{"seconds", "2", 2 * time.Second},
		{"http date", now.Add(3 * time.Second).Format(http.TimeFormat), 3 * time.Second},
		{"absent", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			hdr := map[string]string{}
			if tt.retryAfter != "" {
				hdr["Retry-After"] = tt.retryAfter
			}
			f := serve(t, failThenOK(2, 429, hdr, `{"detail":"Rate limit exceeded"}`, submitOK))
			c := newTestClient(t, f.URL, falclient.WithClock(func() time.Time { return now }),
				falclient.WithRetry(falclient.RetryPolicy{MaxAttempts: 5, InitialInterval: 10 * time.Millisecond, MaxInterval: time.Minute}))
			waits := recordSleeps(c)
			_, err := c.Submit(context.Background(), "fal-ai/flux/dev", nil, falclient.SubmitOptions{})
			require.NoError(t, err)
			require.EqualValues(t, 3, f.calls.Load())
			ws := waits()
			require.Len(t, ws, 2)
			for _, w := range ws {
				require.GreaterOrEqual(t, w, tt.want)
				require.Greater(t, w, time.Duration(0))
			}
		})
	}
}

func TestRetryAfterRealWait(t *testing.T) {
	t.Parallel()
	f := serve(t, failThenOK(1, 429, map[string]string{"Retry-After": "1"}, `{"detail":"slow down"}`, `{"status":"COMPLETED"}`))
	c := newTestClient(t, f.URL, falclient.WithRetry(falclient.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Second}))
	start := time.Now()
	_, err := c.Status(context.Background(), "fal-ai/flux/dev", "rid", false)
	require.NoError(t, err)
	require.GreaterOrEqual(t, time.Since(start), time.Second, "Retry-After: 1 must be honoured")
	require.EqualValues(t, 2, f.calls.Load())
}

func TestRetryAfterBeyondMaxIntervalReturns(t *testing.T) {
	t.Parallel()
	f := serve(t, failThenOK(1000, 429, map[string]string{"Retry-After": "120"}, `{"detail":"slow down"}`, ""))
	c := newTestClient(t, f.URL)
	waits := recordSleeps(c)
	_, err := c.Status(context.Background(), "fal-ai/flux/dev", "rid", false)
	require.ErrorIs(t, err, falclient.ErrRateLimited)
	require.True(t, falclient.IsRetryable(err))
	require.Equal(t, 2*time.Minute, falclient.RetryAfter(err))
	require.EqualValues(t, 1, f.calls.Load())
	require.Empty(t, waits())
}

func TestRetryNeverSleepsPastDeadline(t *testing.T) {
	t.Parallel()
	f := serve(t, failThenOK(1000, 503, map[string]string{"Retry-After": "10"}, `{"detail":"busy"}`, ""))
	c := newTestClient(t, f.URL, falclient.WithRetry(falclient.RetryPolicy{MaxAttempts: 5, MaxInterval: time.Minute}))
	waits := recordSleeps(c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Status(ctx, "fal-ai/flux/dev", "rid", false)
	require.ErrorIs(t, err, falclient.ErrUpstream)
	require.Equal(t, 10*time.Second, falclient.RetryAfter(err))
	require.EqualValues(t, 1, f.calls.Load())
	require.Empty(t, waits())
}

func TestContextEndsDuringBackoff(t *testing.T) {
	t.Parallel()
	f := serve(t, failThenOK(1000, 503, nil, `{"detail":"busy"}`, ""))
	c := newTestClient(t, f.URL)
	ctx, cancel := context.WithCancel(context.Background())
	falclient.SetSleep(c, func(context.Context, time.Duration) error {
		cancel()
		return context.Canceled
	})
	_, err := c.Status(ctx, "fal-ai/flux/dev", "rid", false)
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, falclient.ErrUpstream)
	require.False(t, falclient.IsRetryable(err))
	require.EqualValues(t, 1, f.calls.Load())
}

func TestClientTimeouts(t *testing.T) {
	t.Parallel()
	hang := func(w http.ResponseWriter, r *http.Request, n int) { <-r.Context().Done() }

	t.Run("caller deadline", func(t *testing.T) {
		t.Parallel()
		f := serve(t, hang)
		c := newTestClient(t, f.URL)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Status(ctx, "fal-ai/flux/dev", "rid", false)
		require.ErrorIs(t, err, falclient.ErrTimeout)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.False(t, falclient.IsRetryable(err))
		require.EqualValues(t, 1, f.calls.Load())
	})
	t.Run("caller deadline already passed", func(t *testing.T) {
		t.Parallel()
		f := serve(t, hang)
		c := newTestClient(t, f.URL)
		ctx, cancel := context.WithTimeout(context.Background(), -time.Second)
		defer cancel()
		_, err := c.Result(ctx, "fal-ai/flux/dev", "rid")
		require.ErrorIs(t, err, falclient.ErrTimeout)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Zero(t, f.calls.Load())
	})
	t.Run("caller cancel", func(t *testing.T) {
		t.Parallel()
		f := serve(t, hang)
		c := newTestClient(t, f.URL)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			for f.calls.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			cancel()
		}()
		_, err := c.Status(ctx, "fal-ai/flux/dev", "rid", false)
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, falclient.ErrTimeout)
		require.False(t, falclient.IsRetryable(err))
	})
	t.Run("per attempt", func(t *testing.T) {
		t.Parallel()
		f := serve(t, hang)
		c := newTestClient(t, f.URL, falclient.WithRequestTimeout(30*time.Millisecond),
			falclient.WithRetry(falclient.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}))
		_, err := c.Status(context.Background(), "fal-ai/flux/dev", "rid", false)
		require.ErrorIs(t, err, falclient.ErrTimeout)
		require.True(t, falclient.IsRetryable(err))
		require.EqualValues(t, 2, f.calls.Load())
	})
}

func TestSubmitAmbiguous(t *testing.T) {
	t.Parallel()
	t.Run("timeout after the request was written", func(t *testing.T) {
		t.Parallel()
		f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { <-r.Context().Done() })
		c := newTestClient(t, f.URL, falclient.WithRequestTimeout(50*time.Millisecond))
		_, err := c.Submit(context.Background(), "fal-ai/flux/dev", nil, falclient.SubmitOptions{})
		require.ErrorIs(t, err, falclient.ErrAmbiguousSubmit)
		require.ErrorIs(t, err, falclient.ErrTimeout)
		require.False(t, falclient.IsRetryable(err))
		require.EqualValues(t, 1, f.calls.Load())
	})
	t.Run("connection closed after the body was read", func(t *testing.T) {
		t.Parallel()
		f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		})
		c := newTestClient(t, f.URL)
		_, err := c.Submit(context.Background(), "fal-ai/flux/dev", []byte(`{"prompt":"x"}`), falclient.SubmitOptions{})
		require.ErrorIs(t, err, falclient.ErrAmbiguousSubmit)
		require.ErrorIs(t, err, io.EOF)
		require.False(t, falclient.IsRetryable(err))
		require.EqualValues(t, 1, f.calls.Load(), "an ambiguous submit must not be retried")
	})
	t.Run("garbage 2xx", func(t *testing.T) {
		t.Parallel()
		f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 200, `{"status":"IN_QUEUE"}`) })
		c := newTestClient(t, f.URL)
		_, err := c.Submit(context.Background(), "fal-ai/flux/dev", nil, falclient.SubmitOptions{})
		require.ErrorIs(t, err, falclient.ErrAmbiguousSubmit)
		require.ErrorIs(t, err, falclient.ErrMalformedResponse)
		require.EqualValues(t, 1, f.calls.Load())
	})
	t.Run("caller cancel after written", func(t *testing.T) {
		t.Parallel()
		f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { <-r.Context().Done() })
		c := newTestClient(t, f.URL)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Submit(ctx, "fal-ai/flux/dev", nil, falclient.SubmitOptions{})
		require.ErrorIs(t, err, falclient.ErrAmbiguousSubmit)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, err, falclient.ErrTimeout)
	})
	t.Run("run is not retried after written", func(t *testing.T) {
		t.Parallel()
		f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		})
		c := newTestClient(t, f.URL)
		_, err := c.Run(context.Background(), "fal-ai/flux/dev", nil, falclient.RunOptions{})
		require.ErrorIs(t, err, io.EOF)
		require.NotErrorIs(t, err, falclient.ErrAmbiguousSubmit)
		require.False(t, falclient.IsRetryable(err))
		require.EqualValues(t, 1, f.calls.Load())
	})
}

// flakyDialer fails the first n dials, then dials for real.
func flakyDialer(n int64, dials *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) <= n {
			return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused (simulated)")}
		}
		return d.DialContext(ctx, network, addr)
	}
}

func TestDialErrorsAreRetried(t *testing.T) {
	t.Parallel()
	for _, op := range []string{"submit", "run"} {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 200, submitOK) })
			var dials atomic.Int64
			hc := &http.Client{Transport: &http.Transport{DialContext: flakyDialer(2, &dials)}}
			c := newTestClient(t, f.URL, falclient.WithHTTPClient(hc))
			var err error
			if op == "submit" {
				_, err = c.Submit(context.Background(), "fal-ai/flux/dev", nil, falclient.SubmitOptions{})
			} else {
				_, err = c.Run(context.Background(), "fal-ai/flux/dev", nil, falclient.RunOptions{})
			}
			require.NoError(t, err)
			require.EqualValues(t, 3, dials.Load())
			require.EqualValues(t, 1, f.calls.Load())
		})
	}
	t.Run("refused for good", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		c := newTestClient(t, "http://"+addr)
		_, err = c.Submit(context.Background(), "fal-ai/flux/dev", nil, falclient.SubmitOptions{})
		require.Error(t, err)
		require.NotErrorIs(t, err, falclient.ErrAmbiguousSubmit)
		require.True(t, falclient.IsRetryable(err))
		var opErr *net.OpError
		require.ErrorAs(t, err, &opErr)
	})
}

func TestRetryLogsAndKeyNeverLeaks(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var mu syncWriter
	mu.w = &logs
	logger := slog.New(slog.NewJSONHandler(&mu, &slog.HandlerOptions{Level: slog.LevelDebug}))
	echo := func(w http.ResponseWriter, r *http.Request, n int) {
		auth := r.Header.Get("Authorization")
		w.Header().Set("X-Echo", auth)
		switch {
		case n%3 == 1:
			writeJSON(w, 503, fmt.Sprintf(`{"detail":"overloaded for %s"}`, auth))
		case n%3 == 2:
			writeJSON(w, 401, fmt.Sprintf(`{"detail":"No user found for %s (secret %s)"}`, auth, testKeySecret))
		default:
			writeJSON(w, 422, fmt.Sprintf(`{"detail":[{"loc":["body","prompt"],"msg":"bad %s","type":"x","input":%q}]}`, auth, auth))
		}
	}
	f := serve(t, echo)
	c := newTestClient(t, f.URL, falclient.WithLogger(logger), falclient.WithRetry(falclient.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: time.Millisecond}))

	ctx := context.Background()
	var errs []error
	for range 3 {
		_, err := c.Status(ctx, "fal-ai/flux/dev", "rid", true)
		errs = append(errs, err)
		_, err = c.Submit(ctx, "fal-ai/flux/dev", nil, falclient.SubmitOptions{})
		errs = append(errs, err)
		_, err = c.Result(ctx, "fal-ai/flux/dev", "rid")
		errs = append(errs, err)
		errs = append(errs, c.Cancel(ctx, "fal-ai/flux/dev", "rid"))
		_, err = c.Run(ctx, "fal-ai/flux/dev", nil, falclient.RunOptions{})
		errs = append(errs, err)
		_, err = c.Stream(ctx, "fal-ai/flux/dev", nil, falclient.RunOptions{}, nil)
		errs = append(errs, err)
		_, err = c.StatusStream(ctx, "fal-ai/flux/dev", "rid", true, nil)
		errs = append(errs, err)
	}
	// Transport failures and timeouts too.
	cDead := newTestClient(t, "http://127.0.0.1:1", falclient.WithLogger(logger), falclient.WithKey(testKey))
	_, err := cDead.Submit(ctx, "fal-ai/flux/dev", nil, falclient.SubmitOptions{})
	errs = append(errs, err)
	hang := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { <-r.Context().Done() })
	cHang := newTestClient(t, hang.URL, falclient.WithLogger(logger), falclient.WithRequestTimeout(20*time.Millisecond))
	_, err = cHang.Submit(ctx, "fal-ai/flux/dev", nil, falclient.SubmitOptions{})
	errs = append(errs, err)
	_, err = cHang.Status(ctx, "fal-ai/flux/dev", "rid", false)
	errs = append(errs, err)

	for _, err := range errs {
		require.Error(t, err)
		for _, s := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
			require.NotContains(t, s, testKeySecret)
			require.NotContains(t, s, string(testKey))
		}
		var ae *falclient.APIError
		if errors.As(err, &ae) {
			require.NotContains(t, string(ae.Body), testKeySecret)
			require.NotContains(t, ae.Message, testKeySecret)
			for _, d := range ae.Details {
				require.NotContains(t, d.Msg+string(d.Input), testKeySecret)
			}
		}
	}
	out := mu.String()
	require.Contains(t, out, `"msg":"retrying fal call"`)
	require.Contains(t, out, `"op":"status"`)
	require.Contains(t, out, `"model_id":"fal-ai/flux/dev"`)
	require.Contains(t, out, `"attempt":1`)
	require.Contains(t, out, `"err":"falclient: status fal-ai/flux/dev: HTTP 503`)
	require.NotContains(t, out, testKeySecret)
}

// syncWriter serialises writes (the handler is shared by goroutines).
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.String()
}

// rtFunc is a RoundTripper that does not emit httptrace events.
type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestSubmitWrittenWithoutTrace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		readBody bool
		ambig    bool
		calls    int64
	}{
		{"body consumed then failure is ambiguous", true, true, 1},
		{"failure before the body is read is retried", false, false, int64(fastRetry.MaxAttempts)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int64
			hc := &http.Client{Transport: rtFunc(func(r *http.Request) (*http.Response, error) {
				calls.Add(1)
				if tt.readBody {
					_, _ = io.ReadAll(r.Body)
				}
				return nil, errors.New("connection reset (simulated)")
			})}
			c := newTestClient(t, "http://fal.invalid", falclient.WithHTTPClient(hc))
			_, err := c.Submit(context.Background(), "fal-ai/flux/dev", map[string]string{"prompt": "x"}, falclient.SubmitOptions{})
			require.Error(t, err)
			require.Equal(t, tt.ambig, errors.Is(err, falclient.ErrAmbiguousSubmit))
			require.Equal(t, tt.calls, calls.Load())
		})
	}
}

// A per-call MaxAttempts caps the client's policy: with 1, a refused
// submit returns at once, without a back-off sleep (falbridge records the
// refusal before it waits).
func TestSubmitMaxAttemptsPerCall(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		maxAttempts int
		calls       int64
		sleeps      int
	}{
		{"policy", 0, 3, 2},
		{"one", 1, 1, 0},
		{"two", 2, 2, 1},
		{"above policy", 9, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := serve(t, failThenOK(5, 429, nil, `{"detail":"Rate limit exceeded"}`, submitOK))
			c := newTestClient(t, f.URL, falclient.WithRetry(falclient.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: time.Second}))
			waits := recordSleeps(c)
			_, err := c.Submit(context.Background(), "fal-ai/flux/dev", nil, falclient.SubmitOptions{MaxAttempts: tt.maxAttempts})
			require.ErrorIs(t, err, falclient.ErrRateLimited)
			require.Equal(t, tt.calls, f.calls.Load())
			require.Len(t, waits(), tt.sleeps)
		})
	}
}
