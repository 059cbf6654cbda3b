package falclient_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/falclient"
)

func TestNewInvalidOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opt  falclient.Option
	}{
		{"WithKey", falclient.WithKey("")},
		{"WithKey", falclient.WithKey("id:super secret")},
		{"WithKey", falclient.WithKey("id:supersecret\n")},
		{"WithQueueURL", falclient.WithQueueURL("ftp://queue.fal.run")},
		{"WithQueueURL", falclient.WithQueueURL("/relative")},
		{"WithQueueURL", falclient.WithQueueURL("http://user:pw@host")},
		{"WithQueueURL", falclient.WithQueueURL("http://host/?x=1")},
		{"WithRunURL", falclient.WithRunURL("::bad")},
		{"WithRunURL", falclient.WithRunURL("")},
		{"WithJWKSURL", falclient.WithJWKSURL("jwks.json")},
		{"WithJWKSURL", falclient.WithJWKSURL()},
		{"WithJWKSURL", falclient.WithJWKSURL("https://keys.example.com/jwks.json", "ftp://x/jwks.json")},
		{"WithHTTPClient", falclient.WithHTTPClient(nil)},
		{"WithMaxConnsPerHost", falclient.WithMaxConnsPerHost(0)},
		{"WithRetry", falclient.WithRetry(falclient.RetryPolicy{MaxAttempts: -1})},
		{"WithRetry", falclient.WithRetry(falclient.RetryPolicy{Multiplier: 0.5})},
		{"WithRetry", falclient.WithRetry(falclient.RetryPolicy{RandomizationFactor: 1.5})},
		{"WithRetry", falclient.WithRetry(falclient.RetryPolicy{InitialInterval: time.Minute, MaxInterval: time.Second})},
		{"WithRetry", falclient.WithRetry(falclient.RetryPolicy{InitialInterval: -time.Second})},
		{"WithRequestTimeout", falclient.WithRequestTimeout(-time.Second)},
		{"WithClock", falclient.WithClock(nil)},
		{"WithUserAgent", falclient.WithUserAgent("")},
		{"WithUserAgent", falclient.WithUserAgent("a\nb")},
		{"WithMaxResponseBytes", falclient.WithMaxResponseBytes(10)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := falclient.New(tt.opt)
			require.Nil(t, c)
			require.ErrorIs(t, err, falclient.ErrInvalidOption)
			require.Contains(t, err.Error(), tt.name)
			require.NotContains(t, err.Error(), "secret")
		})
	}
}

func TestNewDefaults(t *testing.T) {
	t.Parallel()
	c, err := falclient.New(falclient.WithKey(testKey), nil, falclient.WithLogger(nil), falclient.WithRequestTimeout(0))
	require.NoError(t, err)
	require.NotNil(t, c.Verifier())
	require.Same(t, c.Verifier(), c.Verifier())
	require.Equal(t, falclient.RetryPolicy{MaxAttempts: 5, InitialInterval: 500 * time.Millisecond, MaxInterval: 30 * time.Second, Multiplier: 2, RandomizationFactor: 0.25}, falclient.DefaultRetryPolicy())
}

func TestSubmitRequest(t *testing.T) {
	t.Parallel()
	f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("X-Fal-Request-Id", "rid-1")
		writeJSON(w, http.StatusOK, submitOK)
	})
	c := newTestClient(t, f.URL+"/", falclient.WithUserAgent("test-agent/1"))
	storeIO := false
	resp, err := c.Submit(context.Background(), "fal-ai/flux/dev", json.RawMessage(`{"prompt":"a fox","seed":18446744073709551615}`), falclient.SubmitOptions{
		WebhookURL:       "https://hooks.example.com/fal/webhook?job=abc&x=1",
		Priority:         falclient.PriorityLow,
		StartTimeout:     2500 * time.Millisecond,
		RunnerHint:       "sticky-1",
		NoRetry:          true,
		ObjectExpiration: time.Hour,
		StoreIO:          &storeIO,
		DisableFallbacks: true,
		Header:           http.Header{"X-Custom": {"v"}, "Authorization": {"Bearer nope"}, "Idempotency-Key": {"k"}},
	})
	require.NoError(t, err)
	require.Equal(t, &falclient.SubmitResponse{
		RequestID: "rid-1", GatewayRequestID: "gw-1", Status: "IN_QUEUE", QueuePosition: 2,
		ResponseURL: "http://x/fal-ai/flux/requests/rid-1",
		StatusURL:   "http://x/fal-ai/flux/requests/rid-1/status",
		CancelURL:   "http://x/fal-ai/flux/requests/rid-1/cancel",
	}, resp)

	reqs := f.requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Equal(t, http.MethodPost, r.Method)
	require.Equal(t, "/fal-ai/flux/dev", r.Path)
	require.Equal(t, "fal_webhook=https%3A%2F%2Fhooks.example.com%2Ffal%2Fwebhook%3Fjob%3Dabc%26x%3D1", r.RawQuery)
	require.Equal(t, `{"prompt":"a fox","seed":18446744073709551615}`, string(r.Body))
	h := r.Header
	require.Equal(t, "Key "+string(testKey), h.Get("Authorization"))
	require.Equal(t, "application/json", h.Get("Content-Type"))
	require.Equal(t, "application/json", h.Get("Accept"))
	require.Equal(t, "test-agent/1", h.Get("User-Agent"))
	require.Equal(t, "low", h.Get("X-Fal-Queue-Priority"))
	require.Equal(t, "2.5", h.Get("X-Fal-Request-Timeout"))
	require.Equal(t, "sticky-1", h.Get("X-Fal-Runner-Hint"))
	require.Equal(t, "1", h.Get("X-Fal-No-Retry"))
	require.JSONEq(t, `{"expiration_duration_seconds":3600}`, h.Get("X-Fal-Object-Lifecycle-Preference"))
	require.Equal(t, "0", h.Get("X-Fal-Store-IO"))
	require.Equal(t, "true", h.Get("X-App-Fal-Disable-Fallback"))
	require.Equal(t, "v", h.Get("X-Custom"))
	require.Empty(t, h.Get("Idempotency-Key"))
}

func TestSubmitMinimalHeaders(t *testing.T) {
	t.Parallel()
	f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 200, submitOK) })
	c := newTestClient(t, f.URL)
	_, err := c.Submit(context.Background(), "12345-my-app", nil, falclient.SubmitOptions{StartTimeout: 30 * time.Second})
	require.NoError(t, err)
	r := f.requests()[0]
	require.Equal(t, "/12345/my-app", r.Path)
	require.Empty(t, r.RawQuery)
	require.Equal(t, "{}", string(r.Body))
	require.Equal(t, "30", r.Header.Get("X-Fal-Request-Timeout"))
	for _, k := range []string{"X-Fal-Queue-Priority", "X-Fal-Runner-Hint", "X-Fal-No-Retry", "X-Fal-Object-Lifecycle-Preference", "X-Fal-Store-Io", "X-App-Fal-Disable-Fallback", "X-Fal-Disable-Fallbacks"} {
		require.Empty(t, r.Header.Get(k), k)
	}
}

func TestSubmitInvalidArguments(t *testing.T) {
	t.Parallel()
	f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 200, submitOK) })
	c := newTestClient(t, f.URL)
	tests := []struct {
		name  string
		model string
		input any
		opts  falclient.SubmitOptions
		is    error
	}{
		{"bad model", "fal-ai//flux", nil, falclient.SubmitOptions{}, falclient.ErrInvalidModelID},
		{"priority", "fal-ai/flux/dev", nil, falclient.SubmitOptions{Priority: "high"}, falclient.ErrInvalidOption},
		{"start timeout", "fal-ai/flux/dev", nil, falclient.SubmitOptions{StartTimeout: -1}, falclient.ErrInvalidOption},
		{"start timeout too short", "fal-ai/flux/dev", nil, falclient.SubmitOptions{StartTimeout: 100 * time.Millisecond}, falclient.ErrInvalidOption},
		{"expiration", "fal-ai/flux/dev", nil, falclient.SubmitOptions{ObjectExpiration: 10 * time.Millisecond}, falclient.ErrInvalidOption},
		{"webhook", "fal-ai/flux/dev", nil, falclient.SubmitOptions{WebhookURL: "/relative"}, falclient.ErrInvalidOption},
		{"runner hint", "fal-ai/flux/dev", nil, falclient.SubmitOptions{RunnerHint: "a\r\nX-Evil: 1"}, falclient.ErrInvalidOption},
		{"header", "fal-ai/flux/dev", nil, falclient.SubmitOptions{Header: http.Header{"Bad Name": {"x"}}}, falclient.ErrInvalidOption},
		{"max attempts", "fal-ai/flux/dev", nil, falclient.SubmitOptions{MaxAttempts: -1}, falclient.ErrInvalidOption},
		{"header value", "fal-ai/flux/dev", nil, falclient.SubmitOptions{Header: http.Header{"X-A": {"x\ny"}}}, falclient.ErrInvalidOption},
		{"invalid JSON", "fal-ai/flux/dev", json.RawMessage(`{"prompt":`), falclient.SubmitOptions{}, falclient.ErrBadRequest},
		{"invalid bytes", "fal-ai/flux/dev", []byte(`nope`), falclient.SubmitOptions{}, falclient.ErrBadRequest},
		{"unmarshalable", "fal-ai/flux/dev", map[string]any{"c": make(chan int)}, falclient.SubmitOptions{}, falclient.ErrBadRequest},
	}
	t.Run("group", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				_, err := c.Submit(context.Background(), tt.model, tt.input, tt.opts)
				require.ErrorIs(t, err, tt.is)
				require.False(t, falclient.IsRetryable(err))
			})
		}
	})
	require.Zero(t, f.calls.Load(), "nothing may be sent")
}

func TestInputEncoding(t *testing.T) {
	t.Parallel()
	f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 200, `{"ok":true}`) })
	c := newTestClient(t, f.URL)
	tests := []struct {
		name  string
		input any
		want  string
	}{
		{"raw verbatim", json.RawMessage(` {"seed": 196619188014358660 , "x":1.0}`), ` {"seed": 196619188014358660 , "x":1.0}`},
		{"bytes verbatim", []byte(`{"a":"b"}`), `{"a":"b"}`},
		{"struct", struct {
			Prompt string `json:"prompt"`
		}{"fox"}, `{"prompt":"fox"}`},
		{"map", map[string]int{"n": 1}, `{"n":1}`},
		{"nil", nil, `{}`},
		{"empty raw", json.RawMessage(nil), `{}`},
	}
	t.Run("group", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				out, err := c.Run(context.Background(), "fal-ai/flux/dev", tt.input, falclient.RunOptions{})
				require.NoError(t, err)
				require.JSONEq(t, `{"ok":true}`, string(out))
			})
		}
	})
	got := map[string]bool{}
	for _, r := range f.requests() {
		require.Equal(t, "/run/fal-ai/flux/dev", r.Path)
		got[string(r.Body)] = true
	}
	for _, tt := range tests {
		require.True(t, got[tt.want], "body %q not sent", tt.want)
	}
}

func TestQueueURLs(t *testing.T) {
	t.Parallel()
	f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/status/stream"):
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = w.Write([]byte("data: {\"status\":\"COMPLETED\"}\n\n"))
		case strings.HasSuffix(r.URL.Path, "/status"):
			writeJSON(w, 200, `{"status":"COMPLETED"}`)
		case strings.HasSuffix(r.URL.Path, "/stream"):
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = w.Write([]byte("data: {}\n\n"))
		case strings.HasSuffix(r.URL.Path, "/cancel"):
			writeJSON(w, 202, `{"status":"CANCELLATION_REQUESTED"}`)
		default:
			writeJSON(w, 200, `{}`)
		}
	})
	c := newTestClient(t, f.URL)
	ctx := context.Background()
	const rid = "0b5c4a4e-2f1d-4f7e-9b3c-1a2b3c4d5e6f"
	for _, model := range []string{"fal-ai/kling-video/v1.6/standard/text-to-video", "workflows/alice/my-flow/step"} {
		_, err := c.Status(ctx, model, rid, true)
		require.NoError(t, err)
		_, err = c.Status(ctx, model, rid, false)
		require.NoError(t, err)
		_, err = c.StatusStream(ctx, model, rid, true, nil)
		require.NoError(t, err)
		_, err = c.Result(ctx, model, rid)
		require.NoError(t, err)
		require.NoError(t, c.Cancel(ctx, model, rid))
		_, err = c.Run(ctx, model, nil, falclient.RunOptions{StartTimeout: time.Second})
		require.NoError(t, err)
		_, err = c.Stream(ctx, model, nil, falclient.RunOptions{}, nil)
		require.NoError(t, err)
	}
	_, err := c.Stream(ctx, "fal-ai/llavav15-13b/stream", nil, falclient.RunOptions{}, nil)
	require.NoError(t, err)

	var got []string
	for _, r := range f.requests() {
		s := r.Method + " " + r.Path
		if r.RawQuery != "" {
			s += "?" + r.RawQuery
		}
		got = append(got, s)
	}
	require.Equal(t, []string{
		"GET /fal-ai/kling-video/requests/" + rid + "/status?logs=1",
		"GET /fal-ai/kling-video/requests/" + rid + "/status?logs=0",
		"GET /fal-ai/kling-video/requests/" + rid + "/status/stream?logs=1",
		"GET /fal-ai/kling-video/requests/" + rid,
		"PUT /fal-ai/kling-video/requests/" + rid + "/cancel",
		"POST /run/fal-ai/kling-video/v1.6/standard/text-to-video",
		"POST /run/fal-ai/kling-video/v1.6/standard/text-to-video/stream",
		"GET /workflows/alice/my-flow/requests/" + rid + "/status?logs=1",
		"GET /workflows/alice/my-flow/requests/" + rid + "/status?logs=0",
		"GET /workflows/alice/my-flow/requests/" + rid + "/status/stream?logs=1",
		"GET /workflows/alice/my-flow/requests/" + rid,
		"PUT /workflows/alice/my-flow/requests/" + rid + "/cancel",
		"POST /run/workflows/alice/my-flow/step",
		"POST /run/workflows/alice/my-flow/step/stream",
		"POST /run/fal-ai/llavav15-13b/stream",
	}, got)
	for _, r := range f.requests() {
		require.Equal(t, "Key "+string(testKey), r.Header.Get("Authorization"))
		switch {
		case strings.HasSuffix(r.Path, "stream"):
			require.Equal(t, "text/event-stream", r.Header.Get("Accept"))
		default:
			require.Equal(t, "application/json", r.Header.Get("Accept"))
		}
		if r.Method == http.MethodPost {
			require.Equal(t, "application/json", r.Header.Get("Content-Type"))
		}
		if r.Method == http.MethodPut {
			require.Empty(t, r.Body)
		}
	}
}

func TestInvalidRequestID(t *testing.T) {
	t.Parallel()
	f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 200, `{}`) })
	c := newTestClient(t, f.URL)
	ctx := context.Background()
	for _, rid := range []string{"", "a/b", "a b", "..", "x?y", "x#y", "x%2F", strings.Repeat("a", 300), "a\nb"} {
		_, err := c.Status(ctx, "fal-ai/flux/dev", rid, false)
		require.ErrorIs(t, err, falclient.ErrInvalidRequestID, rid)
		_, err = c.Result(ctx, "fal-ai/flux/dev", rid)
		require.ErrorIs(t, err, falclient.ErrInvalidRequestID, rid)
		require.ErrorIs(t, c.Cancel(ctx, "fal-ai/flux/dev", rid), falclient.ErrInvalidRequestID, rid)
		_, err = c.StatusStream(ctx, "fal-ai/flux/dev", rid, false, nil)
		require.ErrorIs(t, err, falclient.ErrInvalidRequestID, rid)
	}
	_, err := c.Status(ctx, "fal-ai/flux dev", "rid", false)
	require.ErrorIs(t, err, falclient.ErrInvalidModelID)
	require.Zero(t, f.calls.Load())
}

func TestStatusDecoding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		code int
		body string
		want falclient.Status
		done bool
	}{
		{"in queue", 202, `{"status":"IN_QUEUE","queue_position":3,"request_id":"r","response_url":"u","status_url":"s","cancel_url":"c","logs":null}`,
			falclient.Status{State: falclient.StateInQueue, QueuePosition: intPtr(3), RequestID: "r", ResponseURL: "u", StatusURL: "s", CancelURL: "c"}, false},
		{"in progress with logs", 202, `{"status":"IN_PROGRESS","logs":[{"message":"Generating 1/1","level":"INFO","source":"USER","timestamp":"2025-01-10T12:00:01.123456"},{"message":"x","level":"DEBUG","source":"USER","timestamp":1736510401}]}`,
			falclient.Status{State: falclient.StateInProgress, Logs: []falclient.LogEntry{{Message: "Generating 1/1", Level: "INFO", Source: "USER", Timestamp: "2025-01-10T12:00:01.123456"}, {Message: "x", Level: "DEBUG", Source: "USER", Timestamp: "1736510401"}}}, false},
		{"completed", 200, `{"status":"COMPLETED","logs":[],"metrics":{"inference_time":1.84}}`,
			falclient.Status{State: falclient.StateCompleted, Metrics: &falclient.Metrics{InferenceTime: floatPtr(1.84)}}, true},
		{"completed null metrics", 200, `{"status":"COMPLETED","metrics":{"inference_time":null}}`,
			falclient.Status{State: falclient.StateCompleted, Metrics: &falclient.Metrics{}}, true},
		{"completed with error", 200, `{"status":"COMPLETED","logs":null,"error":"Invalid status code: 422","error_type":"content_policy_violation","extra":{"a":1}}`,
			falclient.Status{State: falclient.StateCompleted, Error: "Invalid status code: 422", ErrorType: "content_policy_violation"}, true},
		{"unknown state kept", 202, `{"status":"FAILED"}`, falclient.Status{State: "FAILED"}, false},
		{"no status field 200", 200, `{}`, falclient.Status{State: falclient.StateCompleted}, true},
		{"no status field 202", 202, `{}`, falclient.Status{State: falclient.StateInProgress}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, tt.code, tt.body) })
			c := newTestClient(t, f.URL)
			st, err := c.Status(context.Background(), "fal-ai/flux/dev", "rid", true)
			require.NoError(t, err)
			require.Equal(t, &tt.want, st)
			require.Equal(t, tt.done, st.Done())
		})
	}
}

func TestResultPassthrough(t *testing.T) {
	t.Parallel()
	const body = "{\"images\": [{\"url\": \"https://v3.fal.media/files/penguin/x.png\"}],\n \"seed\": 196619188014358660, \"big\": 123456789012345678901234567890, \"f\": 1.10}"
	f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 200, body) })
	c := newTestClient(t, f.URL)
	out, err := c.Result(context.Background(), "fal-ai/flux/dev", "rid")
	require.NoError(t, err)
	require.Equal(t, body, string(out))
	out, err = c.Run(context.Background(), "fal-ai/flux/dev", nil, falclient.RunOptions{})
	require.NoError(t, err)
	require.Equal(t, body, string(out))
}

func TestResponseLimits(t *testing.T) {
	t.Parallel()
	big := `{"x":"` + strings.Repeat("a", 4096) + `"}`
	f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) {
		if strings.HasSuffix(r.URL.Path, "/stream") {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = w.Write([]byte("data: " + big + "\n\n"))
			return
		}
		writeJSON(w, 200, big)
	})
	c := newTestClient(t, f.URL, falclient.WithMaxResponseBytes(2048))
	_, err := c.Result(context.Background(), "fal-ai/flux/dev", "rid")
	require.ErrorIs(t, err, falclient.ErrResponseTooLarge)
	require.False(t, falclient.IsRetryable(err))
	_, err = c.Stream(context.Background(), "fal-ai/flux/dev", nil, falclient.RunOptions{}, nil)
	require.ErrorIs(t, err, falclient.ErrResponseTooLarge)
	require.EqualValues(t, 2, f.calls.Load())

	f2 := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 200, "not json") })
	c2 := newTestClient(t, f2.URL)
	_, err = c2.Result(context.Background(), "fal-ai/flux/dev", "rid")
	require.ErrorIs(t, err, falclient.ErrMalformedResponse)
	_, err = c2.Run(context.Background(), "fal-ai/flux/dev", nil, falclient.RunOptions{})
	require.ErrorIs(t, err, falclient.ErrMalformedResponse)
	require.EqualValues(t, 2, f2.calls.Load())
}

func TestCancelAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		code int
		body string
		is   error
	}{
		{"accepted", 202, `{"status":"CANCELLATION_REQUESTED"}`, nil},
		{"already completed", 400, `{"status":"ALREADY_COMPLETED"}`, falclient.ErrAlreadyCompleted},
		{"not found", 404, `{"status":"NOT_FOUND"}`, falclient.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, tt.code, tt.body) })
			c := newTestClient(t, f.URL)
			err := c.Cancel(context.Background(), "fal-ai/flux/dev", "rid")
			if tt.is == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.is)
			require.EqualValues(t, 1, f.calls.Load())
		})
	}
}

func intPtr(i int) *int           { return &i }
func floatPtr(f float64) *float64 { return &f }
