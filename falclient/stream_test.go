package falclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/falclient"
)

// sseHandler writes events (raw strings after "data: ") and flushes each.
func sseHandler(events ...string) func(http.ResponseWriter, *http.Request, int) {
	return func(w http.ResponseWriter, r *http.Request, n int) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for _, e := range events {
			_, _ = w.Write([]byte(e))
			http.NewResponseController(w).Flush()
		}
	}
}

func TestStatusStream(t *testing.T) {
	t.Parallel()
	f := serve(t, sseHandler(
		": keep-alive\n\n",
		"data: {\"status\":\"IN_QUEUE\",\"queue_position\":1,\"logs\":null}\n\n",
		"event: status\r\ndata: {\"status\":\"IN_PROGRESS\",\"logs\":[{\"message\":\"step 1\",\"level\":\"INFO\",\"source\":\"USER\",\"timestamp\":\"t\"}]}\r\n\r\n",
		"data: {\"status\":\"IN_PROGRESS\",\"logs\":[{\"message\":\"step 2\"}]}\n\n",
		"data: {\"status\":\"COMPLETED\",\"metrics\":{\"inference_time\":0.5}}\n\n",
		"data: {\"status\":\"IGNORED_AFTER_COMPLETED\"}\n\n",
	))
	c := newTestClient(t, f.URL)
	var seen []falclient.State
	var logs []string
	st, err := c.StatusStream(context.Background(), "fal-ai/flux/dev", "rid", true, func(s *falclient.Status) error {
		seen = append(seen, s.State)
		for _, l := range s.Logs {
			logs = append(logs, l.Message)
		}
		return nil
	})
	require.NoError(t, err)
	require.True(t, st.Done())
	require.InDelta(t, 0.5, *st.Metrics.InferenceTime, 1e-9)
	require.Equal(t, []falclient.State{falclient.StateInQueue, falclient.StateInProgress, falclient.StateInProgress, falclient.StateCompleted}, seen)
	require.Equal(t, []string{"step 1", "step 2"}, logs)
}

func TestStatusStreamReconnects(t *testing.T) {
	t.Parallel()
	// Each connection sends one event and then drops, before COMPLETED.
	f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) {
		switch n {
		case 1:
			sseHandler("data: {\"status\":\"IN_QUEUE\",\"queue_position\":0}\n\n")(w, r, n)
		case 2:
			writeJSON(w, 503, `{"detail":"busy"}`)
		case 3:
			sseHandler("data: {\"status\":\"IN_PROGRESS\"}\n\ndata: {\"status\":\"IN_PRO")(w, r, n) // cut mid-event
		default:
			sseHandler("data: {\"status\":\"COMPLETED\"}\n\n")(w, r, n)
		}
	})
	c := newTestClient(t, f.URL)
	var seen []falclient.State
	st, err := c.StatusStream(context.Background(), "fal-ai/flux/dev", "rid", false, func(s *falclient.Status) error {
		seen = append(seen, s.State)
		return nil
	})
	require.NoError(t, err)
	require.True(t, st.Done())
	require.EqualValues(t, 4, f.calls.Load())
	require.Equal(t, falclient.StateCompleted, seen[len(seen)-1])
}

func TestStatusStreamErrors(t *testing.T) {
	t.Parallel()
	t.Run("never completes", func(t *testing.T) {
		t.Parallel()
		f := serve(t, sseHandler()) // empty stream every time
		c := newTestClient(t, f.URL)
		_, err := c.StatusStream(context.Background(), "fal-ai/flux/dev", "rid", false, nil)
		require.ErrorIs(t, err, falclient.ErrMalformedResponse)
		require.EqualValues(t, fastRetry.MaxAttempts, f.calls.Load())
	})
	t.Run("not found", func(t *testing.T) {
		t.Parallel()
		f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) {
			writeJSON(w, 404, `{"detail":"Request not found"}`)
		})
		c := newTestClient(t, f.URL)
		_, err := c.StatusStream(context.Background(), "fal-ai/flux/dev", "rid", false, nil)
		require.ErrorIs(t, err, falclient.ErrNotFound)
		require.EqualValues(t, 1, f.calls.Load())
	})
	t.Run("callback error returned unchanged", func(t *testing.T) {
		t.Parallel()
		// The stream stays open: stopping must not wait for more events.
		f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) {
			sseHandler("data: {\"status\":\"IN_QUEUE\"}\n\n")(w, r, n)
			<-r.Context().Done()
		})
		c := newTestClient(t, f.URL)
		stop := errors.New("stop")
		_, err := c.StatusStream(context.Background(), "fal-ai/flux/dev", "rid", false, func(*falclient.Status) error { return stop })
		require.Same(t, stop, err)
		require.EqualValues(t, 1, f.calls.Load())
	})
}

func TestStream(t *testing.T) {
	t.Parallel()
	f := serve(t, sseHandler(
		"data: {\"progress\":0.25,\"message\":\"Generating...\"}\n\n",
		": ping\n\n",
		"data: {\"progress\":0.75}\r\n\r\n",
		"data: {\"images\":[{\"url\":\"https://x/y.png\"}],\n",
		"data: \"seed\":196619188014358660}\n\n",
	))
	c := newTestClient(t, f.URL)
	var events []string
	final, err := c.Stream(context.Background(), "fal-ai/flux/schnell", map[string]string{"prompt": "fox"}, falclient.RunOptions{}, func(ev json.RawMessage) error {
		events = append(events, string(ev))
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, "{\"images\":[{\"url\":\"https://x/y.png\"}],\n\"seed\":196619188014358660}", string(final))
	require.Equal(t, []string{`{"progress":0.25,"message":"Generating..."}`, `{"progress":0.75}`, string(final)}, events)
	require.Equal(t, "/run/fal-ai/flux/schnell/stream", f.requests()[0].Path)
}

func TestStreamErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		h     func(http.ResponseWriter, *http.Request, int)
		is    error
		calls int64
	}{
		{"404 unsupported", func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 404, `{"detail":"Not Found"}`) }, falclient.ErrStreamingUnsupported, 1},
		{"405 unsupported", func(w http.ResponseWriter, r *http.Request, n int) {
			writeJSON(w, 405, `{"detail":"Method Not Allowed"}`)
		}, falclient.ErrStreamingUnsupported, 1},
		{"422", func(w http.ResponseWriter, r *http.Request, n int) {
			writeJSON(w, 422, `{"detail":[{"loc":["body","image_url"],"msg":"field required","type":"missing"}]}`)
		}, falclient.ErrValidation, 1},
		{"503 retried", func(w http.ResponseWriter, r *http.Request, n int) { writeJSON(w, 503, `{"detail":"busy"}`) }, falclient.ErrUpstream, int64(fastRetry.MaxAttempts)},
		{"no events", sseHandler(": only comments\n\n"), falclient.ErrMalformedResponse, 1},
		{"event not JSON", sseHandler("data: hello\n\n"), falclient.ErrMalformedResponse, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := serve(t, tt.h)
			c := newTestClient(t, f.URL)
			_, err := c.Stream(context.Background(), "fal-ai/flux/dev", nil, falclient.RunOptions{}, nil)
			require.ErrorIs(t, err, tt.is)
			require.Equal(t, tt.calls, f.calls.Load())
		})
	}
	t.Run("json answer is one event", func(t *testing.T) {
		t.Parallel()
		f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) {
			writeJSON(w, 200, `{"output":"done","partial":false}`)
		})
		c := newTestClient(t, f.URL)
		n := 0
		out, err := c.Stream(context.Background(), "fal-ai/llavav15-13b", nil, falclient.RunOptions{}, func(json.RawMessage) error { n++; return nil })
		require.NoError(t, err)
		require.Equal(t, `{"output":"done","partial":false}`, string(out))
		require.Equal(t, 1, n)
	})
	t.Run("callback error", func(t *testing.T) {
		t.Parallel()
		f := serve(t, func(w http.ResponseWriter, r *http.Request, n int) {
			sseHandler("data: {}\n\n")(w, r, n)
			<-r.Context().Done()
		})
		c := newTestClient(t, f.URL)
		stop := errors.New("stop")
		_, err := c.Stream(context.Background(), "fal-ai/flux/dev", nil, falclient.RunOptions{}, func(json.RawMessage) error { return stop })
		require.Same(t, stop, err)
	})
}
