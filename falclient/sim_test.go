package falclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/internal/falsim/falsimtest"
)

// simBundle is one simulator and a client pointed at it.
type simBundle struct {
	sim *falsimtest.Server
	c   *falclient.Client
}

func setupSim(t *testing.T, cfg falsim.Config, opts ...falclient.Option) simBundle {
	t.Helper()
	if cfg.Latency == 0 {
		cfg.Latency = 20 * time.Millisecond
	}
	sim := falsimtest.New(t, cfg)
	all := append([]falclient.Option{
		falclient.WithKey(testKey),
		falclient.WithQueueURL(sim.QueueURL),
		falclient.WithRunURL(sim.RunURL),
		falclient.WithJWKSURL(sim.JWKSURL),
		falclient.WithRetry(fastRetry),
	}, opts...)
	c, err := falclient.New(all...)
	require.NoError(t, err)
	t.Cleanup(c.CloseIdleConnections)
	return simBundle{sim: sim, c: c}
}

// stats reads the simulator's counters over HTTP, as outside scripts do.
func (b simBundle) stats(t *testing.T) falsim.Stats {
	t.Helper()
	resp, err := http.Get(b.sim.URL + "/_sim/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var st falsim.Stats
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st
}

func (b simBundle) setFaults(t *testing.T, f string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, b.sim.URL+"/_sim/faults", strings.NewReader(f))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// wait blocks until the request is COMPLETED (via the status stream).
func (b simBundle) wait(t *testing.T, model, rid string) *falclient.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.c.StatusStream(ctx, model, rid, false, nil)
	require.NoError(t, err)
	require.True(t, st.Done())
	return st
}

const bigSeed = "196619188014358660" // > 2^53

func TestSimQueueHappyPath(t *testing.T) {
	t.Parallel()
	b := setupSim(t, falsim.Config{})
	ctx := context.Background()
	const model = "fal-ai/flux/dev"
	input := json.RawMessage(`{"prompt":"a red fox in snow","seed":` + bigSeed + `,"image_size":{"width":64,"height":48},"_sim":{"latency_ms":300}}`)

	sub, err := b.c.Submit(ctx, model, input, falclient.SubmitOptions{Priority: falclient.PriorityNormal, StartTimeout: 30 * time.Second})
	require.NoError(t, err)
	require.NotEmpty(t, sub.RequestID)
	require.Equal(t, "IN_QUEUE", sub.Status)
	prefix := b.sim.URL + "/fal-ai/flux/requests/" + sub.RequestID
	require.Equal(t, prefix, sub.ResponseURL)
	require.Equal(t, prefix+"/status", sub.StatusURL)
	require.Equal(t, prefix+"/cancel", sub.CancelURL)

	// While it runs, the status carries logs so far.
	require.Eventually(t, func() bool {
		st, err := b.c.Status(ctx, model, sub.RequestID, true)
		require.NoError(t, err)
		return st.State == falclient.StateInProgress && len(st.Logs) > 0
	}, 5*time.Second, 10*time.Millisecond)

	b.wait(t, model, sub.RequestID)
	st, err := b.c.Status(ctx, model, sub.RequestID, true)
	require.NoError(t, err)
	require.True(t, st.Done())
	require.NotEmpty(t, st.Logs)
	require.Equal(t, "USER", st.Logs[0].Source)
	require.NotNil(t, st.Metrics)
	require.NotNil(t, st.Metrics.InferenceTime)
	require.Empty(t, st.Error)
	st, err = b.c.Status(ctx, model, sub.RequestID, false)
	require.NoError(t, err)
	require.Empty(t, st.Logs)

	out, err := b.c.Result(ctx, model, sub.RequestID)
	require.NoError(t, err)
	require.Contains(t, string(out), `"seed":`+bigSeed, "seeds above 2^53 survive byte for byte")
	var res struct {
		Images []struct {
			URL    string `json:"url"`
			Width  int    `json:"width"`
			Height int    `json:"height"`
		} `json:"images"`
	}
	require.NoError(t, json.Unmarshal(out, &res))
	require.Len(t, res.Images, 1)
	require.Equal(t, 64, res.Images[0].Width)

	// The image URL serves a real PNG.
	resp, err := http.Get(res.Images[0].URL)
	require.NoError(t, err)
	png, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.HasPrefix(string(png), "\x89PNG"))

	s := b.stats(t)
	require.EqualValues(t, 1, s.Submits)
	require.EqualValues(t, 1, s.SubmitsByModel[model])
	require.EqualValues(t, 1, s.ResultCalls)
}

func TestSimStatusStream(t *testing.T) {
	t.Parallel()
	b := setupSim(t, falsim.Config{Concurrency: 1})
	ctx := context.Background()
	const model = "fal-ai/flux/schnell"
	// A first job holds the only runner, so the second starts IN_QUEUE.
	first, err := b.c.Submit(ctx, model, map[string]any{"prompt": "one", "_sim": map[string]any{"latency_ms": 150}}, falclient.SubmitOptions{})
	require.NoError(t, err)
	second, err := b.c.Submit(ctx, model, map[string]any{"prompt": "two", "num_images": 2, "_sim": map[string]any{"latency_ms": 200}}, falclient.SubmitOptions{})
	require.NoError(t, err)
	require.Equal(t, 0, second.QueuePosition, "nothing ahead of it in the queue")
	_ = first

	var states []falclient.State
	var logs []string
	final, err := b.c.StatusStream(ctx, model, second.RequestID, true, func(s *falclient.Status) error {
		if len(states) == 0 || states[len(states)-1] != s.State {
			states = append(states, s.State)
		}
		for _, l := range s.Logs {
			logs = append(logs, l.Message)
		}
		return nil
	})
	require.NoError(t, err)
	require.True(t, final.Done())
	require.Equal(t, []falclient.State{falclient.StateInQueue, falclient.StateInProgress, falclient.StateCompleted}, states)
	require.NotEmpty(t, logs)
	require.Len(t, logs, len(uniq(logs)), "streamed logs are incremental")
	require.Contains(t, logs, "Generating output 2/2")
}

func uniq(s []string) map[string]bool {
	m := map[string]bool{}
	for _, v := range s {
		m[v] = true
	}
	return m
}

func TestSimErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("401 bad key", func(t *testing.T) {
		t.Parallel()
		b := setupSim(t, falsim.Config{Keys: []string{"good-id-123:good-secret"}})
		_, err := b.c.Submit(ctx, "fal-ai/flux/dev", map[string]any{"prompt": "x"}, falclient.SubmitOptions{})
		require.ErrorIs(t, err, falclient.ErrUnauthorized)
		require.NotContains(t, err.Error(), testKeySecret)
		var ae *falclient.APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, "No user found for Key ID and Secret", ae.Message)
		require.NotEmpty(t, ae.RequestID)
		_, err = b.c.Status(ctx, "fal-ai/flux/dev", "rid", false)
		require.ErrorIs(t, err, falclient.ErrUnauthorized)
		s := b.stats(t)
		require.EqualValues(t, 2, s.Unauthorized, "401 is not retried")
		require.Zero(t, s.Submits)
	})
	t.Run("404 unknown model", func(t *testing.T) {
		t.Parallel()
		b := setupSim(t, falsim.Config{})
		_, err := b.c.Submit(ctx, "fal-ai/no-such-model", map[string]any{"prompt": "x"}, falclient.SubmitOptions{})
		require.ErrorIs(t, err, falclient.ErrNotFound)
		require.Contains(t, err.Error(), "fal-ai/no-such-model")
		_, err = b.c.Run(ctx, "fal-ai/no-such-model", nil, falclient.RunOptions{})
		require.ErrorIs(t, err, falclient.ErrNotFound)
		require.EqualValues(t, 2, b.stats(t).NotFound)
	})
	t.Run("404 unknown request", func(t *testing.T) {
		t.Parallel()
		b := setupSim(t, falsim.Config{})
		const rid = "00000000-0000-4000-8000-000000000000"
		_, err := b.c.Status(ctx, "fal-ai/flux/dev", rid, false)
		require.ErrorIs(t, err, falclient.ErrNotFound)
		_, err = b.c.Result(ctx, "fal-ai/flux/dev", rid)
		require.ErrorIs(t, err, falclient.ErrNotFound)
		require.ErrorIs(t, b.c.Cancel(ctx, "fal-ai/flux/dev", rid), falclient.ErrNotFound)
		_, err = b.c.StatusStream(ctx, "fal-ai/flux/dev", rid, false, nil)
		require.ErrorIs(t, err, falclient.ErrNotFound)
		require.EqualValues(t, 4, b.stats(t).NotFound)
	})
	// fal's queue validates asynchronously (fal-protocol §11.1): the submit
	// is accepted and the 422 is the request's stored result.
	t.Run("422 validation details", func(t *testing.T) {
		t.Parallel()
		b := setupSim(t, falsim.Config{})
		tests := []struct {
			model, input, field, typ string
		}{
			{"fal-ai/flux/dev", `{}`, "prompt", "missing"},
			{"fal-ai/flux/dev", `{"prompt":"x","image_size":{"width":20000,"height":64}}`, "image_size.width", ""},
			{"fal-ai/flux/dev", `{"prompt":"x","num_images":9}`, "num_images", ""},
			{"fal-ai/florence-2-large/caption", `{"image_url":"ftp://nope"}`, "image_url", ""},
		}
		for _, tt := range tests {
			sub, err := b.c.Submit(ctx, tt.model, json.RawMessage(tt.input), falclient.SubmitOptions{})
			require.NoError(t, err, tt.input)
			require.True(t, b.wait(t, tt.model, sub.RequestID).Done())
			_, err = b.c.Result(ctx, tt.model, sub.RequestID)
			require.ErrorIs(t, err, falclient.ErrValidation, tt.input)
			require.False(t, falclient.IsRetryable(err))
			var ae *falclient.APIError
			require.ErrorAs(t, err, &ae)
			require.Equal(t, 422, ae.StatusCode)
			require.NotEmpty(t, ae.Details)
			require.Equal(t, tt.field, ae.Details[0].Field(), tt.input)
			if tt.typ != "" {
				require.Equal(t, tt.typ, ae.Details[0].Type)
			}
			require.NotEmpty(t, ae.Details[0].Msg)
			require.Equal(t, ae.Details[0].Msg, ae.Message)
			require.Contains(t, err.Error(), tt.field+": ")
		}
		s := b.stats(t)
		require.EqualValues(t, len(tests), s.ValidationErrors)
		require.EqualValues(t, len(tests), s.Submits, "accepted, then failed")
	})
	t.Run("failed runs", func(t *testing.T) {
		t.Parallel()
		b := setupSim(t, falsim.Config{})
		tests := []struct {
			fail      string
			code      int
			is        error
			not       error
			retryable bool
		}{
			{"content_policy_violation", 422, falclient.ErrValidation, falclient.ErrUpstream, false},
			{"no_media_generated", 422, falclient.ErrValidation, falclient.ErrUpstream, false},
			{"internal_server_error", 500, falclient.ErrUpstream, falclient.ErrTimeout, false},
			{"request_timeout", 504, falclient.ErrTimeout, falclient.ErrUpstream, false},
			// fal retried these itself before storing them: final too.
			{"startup_timeout", 504, falclient.ErrTimeout, falclient.ErrUpstream, false},
			{"runner_disconnected", 503, falclient.ErrUpstream, falclient.ErrTimeout, false},
		}
		for _, tt := range tests {
			t.Run(tt.fail, func(t *testing.T) {
				model := "fal-ai/flux/schnell"
				sub, err := b.c.Submit(ctx, model, map[string]any{"prompt": "x", "_sim": map[string]any{"fail": tt.fail}}, falclient.SubmitOptions{})
				require.NoError(t, err)
				st := b.wait(t, model, sub.RequestID)
				require.NotEmpty(t, st.Error, "a failed run is COMPLETED with an error")
				before := b.stats(t).ResultCalls
				_, err = b.c.Result(ctx, model, sub.RequestID)
				require.ErrorIs(t, err, tt.is)
				require.NotErrorIs(t, err, tt.not)
				require.Equal(t, tt.retryable, falclient.IsRetryable(err))
				var ae *falclient.APIError
				require.ErrorAs(t, err, &ae)
				require.Equal(t, tt.code, ae.StatusCode)
				calls := b.stats(t).ResultCalls - before
				if tt.retryable {
					require.EqualValues(t, fastRetry.MaxAttempts, calls)
				} else {
					require.EqualValues(t, 1, calls, "not retried")
				}
			})
		}
	})
	t.Run("504 user start timeout on run", func(t *testing.T) {
		t.Parallel()
		b := setupSim(t, falsim.Config{})
		_, err := b.c.Run(ctx, "fal-ai/flux/schnell", map[string]any{"prompt": "x", "_sim": map[string]any{"fail": "request_timeout"}}, falclient.RunOptions{})
		require.ErrorIs(t, err, falclient.ErrTimeout)
		require.NotErrorIs(t, err, falclient.ErrUpstream)
		var ae *falclient.APIError
		require.ErrorAs(t, err, &ae)
		require.Equal(t, "user", ae.TimeoutType)
		require.EqualValues(t, 1, b.stats(t).SyncRuns, "not retried")
	})
	t.Run("5xx JSON and HTML", func(t *testing.T) {
		t.Parallel()
		b := setupSim(t, falsim.Config{Seed: 7}, falclient.WithRetry(falclient.RetryPolicy{MaxAttempts: 1}))
		b.setFaults(t, `{"server_error_rate":1}`)
		seen := map[string]bool{}
		for range 40 {
			_, err := b.c.Status(ctx, "fal-ai/flux/dev", "rid", false)
			require.ErrorIs(t, err, falclient.ErrUpstream)
			require.True(t, falclient.IsRetryable(err))
			var ae *falclient.APIError
			require.ErrorAs(t, err, &ae)
			if ae.Body == nil {
				seen[fmt.Sprintf("html %d", ae.StatusCode)] = true
				require.Equal(t, http.StatusText(ae.StatusCode), ae.Message)
				require.Empty(t, ae.RequestID)
			} else {
				seen[fmt.Sprintf("json %d", ae.StatusCode)] = true
				require.NotEmpty(t, ae.ErrorType)
				require.NotEmpty(t, ae.RequestID)
			}
		}
		require.Equal(t, map[string]bool{"html 502": true, "html 503": true, "json 500": true, "json 503": true}, seen)
		require.EqualValues(t, 40, b.stats(t).ServerErrors)
	})
}

func TestSimRetries(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("server errors retried then succeed", func(t *testing.T) {
		t.Parallel()
		b := setupSim(t, falsim.Config{})
		sub, err := b.c.Submit(ctx, "fal-ai/flux/dev", map[string]any{"prompt": "x"}, falclient.SubmitOptions{})
		require.NoError(t, err)
		b.wait(t, "fal-ai/flux/dev", sub.RequestID)

		b.setFaults(t, `{"server_error_rate":1}`)
		var sleeps atomic.Int64
		falclient.SetSleep(b.c, func(ctx context.Context, d time.Duration) error {
			if sleeps.Add(1) == 2 {
				b.sim.SetFaults(falsim.Faults{})
			}
			return nil
		})
		// A status read: a result read's JSON 5xx with fal's request id is
		// the request's stored outcome, never retried (TestRetryByOperation).
		before := b.stats(t)
		st, err := b.c.Status(ctx, "fal-ai/flux/dev", sub.RequestID, false)
		require.NoError(t, err)
		require.True(t, st.Done())
		after := b.stats(t)
		require.EqualValues(t, 2, after.ServerErrors-before.ServerErrors)
		require.EqualValues(t, 1, after.StatusCalls-before.StatusCalls)
		require.EqualValues(t, 2, sleeps.Load())
	})
	t.Run("429 Retry-After honoured on submit", func(t *testing.T) {
		t.Parallel()
		b := setupSim(t, falsim.Config{}, falclient.WithRetry(falclient.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: time.Minute}))
		b.setFaults(t, `{"rate_limit_rate":1,"retry_after":"2s"}`)
		var waits []time.Duration
		falclient.SetSleep(b.c, func(ctx context.Context, d time.Duration) error {
			waits = append(waits, d)
			b.sim.SetFaults(falsim.Faults{})
			return nil
		})
		sub, err := b.c.Submit(ctx, "fal-ai/flux/dev", map[string]any{"prompt": "x"}, falclient.SubmitOptions{})
		require.NoError(t, err)
		require.NotEmpty(t, sub.RequestID)
		require.Len(t, waits, 1)
		require.GreaterOrEqual(t, waits[0], 2*time.Second, "Retry-After is a floor")
		s := b.stats(t)
		require.EqualValues(t, 1, s.RateLimited)
		require.EqualValues(t, 1, s.Submits)
	})
	t.Run("429 exhausted", func(t *testing.T) {
		t.Parallel()
		b := setupSim(t, falsim.Config{})
		b.setFaults(t, `{"rate_limit_rate":1,"retry_after":"1s"}`)
		_, err := b.c.Submit(ctx, "fal-ai/flux/dev", map[string]any{"prompt": "x"}, falclient.SubmitOptions{})
		require.ErrorIs(t, err, falclient.ErrRateLimited)
		require.True(t, falclient.IsRetryable(err))
		require.Equal(t, time.Second, falclient.RetryAfter(err))
		s := b.stats(t)
		require.EqualValues(t, 1, s.RateLimited, "Retry-After beyond MaxInterval returns at once")
		require.Zero(t, s.Submits)
	})
	t.Run("hung submit is ambiguous and not retried", func(t *testing.T) {
		t.Parallel()
		b := setupSim(t, falsim.Config{}, falclient.WithRequestTimeout(100*time.Millisecond))
		b.setFaults(t, `{"hang_rate":1}`)
		_, err := b.c.Submit(ctx, "fal-ai/flux/dev", map[string]any{"prompt": "x"}, falclient.SubmitOptions{})
		require.ErrorIs(t, err, falclient.ErrAmbiguousSubmit)
		require.ErrorIs(t, err, falclient.ErrTimeout)
		require.False(t, falclient.IsRetryable(err))
		s := b.stats(t)
		require.EqualValues(t, 1, s.Hung, "exactly one submit attempt")
		require.Zero(t, s.Submits)
	})
	t.Run("hung status is retried", func(t *testing.T) {
		t.Parallel()
		b := setupSim(t, falsim.Config{}, falclient.WithRequestTimeout(50*time.Millisecond))
		b.setFaults(t, `{"hang_rate":1}`)
		_, err := b.c.Status(ctx, "fal-ai/flux/dev", "rid", false)
		require.ErrorIs(t, err, falclient.ErrTimeout)
		require.True(t, falclient.IsRetryable(err))
		require.EqualValues(t, fastRetry.MaxAttempts, b.stats(t).Hung)
	})
}

func TestSimCancel(t *testing.T) {
	t.Parallel()
	b := setupSim(t, falsim.Config{Concurrency: 1})
	ctx := context.Background()
	const model = "fal-ai/flux/dev"
	running, err := b.c.Submit(ctx, model, map[string]any{"prompt": "long", "_sim": map[string]any{"latency_ms": 60000}}, falclient.SubmitOptions{})
	require.NoError(t, err)
	queued, err := b.c.Submit(ctx, model, map[string]any{"prompt": "waits"}, falclient.SubmitOptions{})
	require.NoError(t, err)

	st, err := b.c.Status(ctx, model, queued.RequestID, false)
	require.NoError(t, err)
	require.Equal(t, falclient.StateInQueue, st.State)
	require.NotNil(t, st.QueuePosition)
	require.Equal(t, 0, *st.QueuePosition)

	require.NoError(t, b.c.Cancel(ctx, model, queued.RequestID))
	st = b.wait(t, model, queued.RequestID)
	require.True(t, st.Done())
	_, err = b.c.Result(ctx, model, queued.RequestID)
	require.ErrorIs(t, err, falclient.ErrCanceled)
	require.False(t, falclient.IsRetryable(err))
	require.ErrorIs(t, b.c.Cancel(ctx, model, queued.RequestID), falclient.ErrAlreadyCompleted)

	require.Eventually(t, func() bool {
		st, err := b.c.Status(ctx, model, running.RequestID, false)
		require.NoError(t, err)
		return st.State == falclient.StateInProgress
	}, 5*time.Second, 5*time.Millisecond)
	require.NoError(t, b.c.Cancel(ctx, model, running.RequestID))
	b.wait(t, model, running.RequestID)
	_, err = b.c.Result(ctx, model, running.RequestID)
	require.ErrorIs(t, err, falclient.ErrCanceled)
	var ae *falclient.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 499, ae.StatusCode)
}

func TestSimRun(t *testing.T) {
	t.Parallel()
	b := setupSim(t, falsim.Config{})
	ctx := context.Background()
	out, err := b.c.Run(ctx, "fal-ai/flux/schnell", json.RawMessage(`{"prompt":"fox","seed":`+bigSeed+`}`), falclient.RunOptions{StartTimeout: 10 * time.Second})
	require.NoError(t, err)
	require.Contains(t, string(out), `"seed":`+bigSeed)
	require.Contains(t, string(out), `"images":`)

	_, err = b.c.Run(ctx, "fal-ai/florence-2-large/caption", map[string]any{"image_url": "not a url"}, falclient.RunOptions{})
	require.ErrorIs(t, err, falclient.ErrValidation)
	var ae *falclient.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, "image_url", ae.Details[0].Field())

	out, err = b.c.Run(ctx, "fal-ai/florence-2-large/caption", map[string]any{"image_url": "https://example.com/cat.png"}, falclient.RunOptions{})
	require.NoError(t, err)
	require.Contains(t, string(out), `"results"`)
	require.EqualValues(t, 2, b.stats(t).SyncRuns)
}

func TestSimStream(t *testing.T) {
	t.Parallel()
	b := setupSim(t, falsim.Config{})
	ctx := context.Background()

	t.Run("flux partials and final", func(t *testing.T) {
		t.Parallel()
		var events []json.RawMessage
		final, err := b.c.Stream(ctx, "fal-ai/flux/schnell", map[string]any{"prompt": "fox", "_sim": map[string]any{"latency_ms": 200}}, falclient.RunOptions{}, func(ev json.RawMessage) error {
			events = append(events, ev)
			return nil
		})
		require.NoError(t, err)
		require.Greater(t, len(events), 1)
		require.Equal(t, final, events[len(events)-1])
		require.Contains(t, string(events[0]), `"progress"`)
		require.Contains(t, string(final), `"images"`)
	})
	t.Run("llava partial outputs", func(t *testing.T) {
		t.Parallel()
		var partial []bool
		final, err := b.c.Stream(ctx, "fal-ai/llavav15-13b", map[string]any{"image_url": "https://example.com/cat.png", "prompt": "Describe"}, falclient.RunOptions{}, func(ev json.RawMessage) error {
			var v struct {
				Partial bool `json:"partial"`
			}
			require.NoError(t, json.Unmarshal(ev, &v))
			partial = append(partial, v.Partial)
			return nil
		})
		require.NoError(t, err)
		require.Contains(t, string(final), `"output"`)
		require.False(t, partial[len(partial)-1])
		require.True(t, partial[0])
	})
	t.Run("unsupported", func(t *testing.T) {
		t.Parallel()
		_, err := b.c.Stream(ctx, "fal-ai/fast-sdxl", map[string]any{"prompt": "x"}, falclient.RunOptions{}, nil)
		require.ErrorIs(t, err, falclient.ErrStreamingUnsupported)
		require.False(t, falclient.IsRetryable(err))
	})
	t.Run("validation before the stream", func(t *testing.T) {
		t.Parallel()
		_, err := b.c.Stream(ctx, "fal-ai/llavav15-13b", map[string]any{"prompt": "x"}, falclient.RunOptions{}, nil)
		require.ErrorIs(t, err, falclient.ErrValidation)
	})
}

// captured is a webhook as received: raw body and headers.
type captured struct {
	header http.Header
	body   []byte
}

// webhookReceiver is an httptest server that captures webhooks.
func webhookReceiver(t *testing.T) (string, <-chan captured) {
	t.Helper()
	ch := make(chan captured, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		select {
		case ch <- captured{header: r.Header.Clone(), body: body}:
		default:
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/fal/webhook?job=trigger-1", ch
}

func receive(t *testing.T, ch <-chan captured) captured {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook received")
		return captured{}
	}
}

func TestSimWebhookVerification(t *testing.T) {
	t.Parallel()
	b := setupSim(t, falsim.Config{})
	other := falsimtest.New(t, falsim.Config{}) // a second key pair
	ctx := context.Background()
	hookURL, hooks := webhookReceiver(t)

	sub, err := b.c.Submit(ctx, "fal-ai/flux/dev", json.RawMessage(`{"prompt":"fox","seed":`+bigSeed+`}`), falclient.SubmitOptions{WebhookURL: hookURL})
	require.NoError(t, err)
	wh := receive(t, hooks)

	rid, err := b.c.Verifier().Verify(ctx, wh.header, wh.body)
	require.NoError(t, err)
	require.Equal(t, sub.RequestID, rid)
	w, err := falclient.ParseWebhook(wh.body)
	require.NoError(t, err)
	require.Equal(t, sub.RequestID, w.RequestID)
	require.Equal(t, falclient.WebhookOK, w.Status)
	require.NoError(t, w.Err())
	require.Contains(t, string(w.Payload), `"seed": `+bigSeed, "payload kept raw, Python spacing and all")

	now := time.Now()
	shifted := func(d time.Duration) *falclient.Verifier {
		v, err := falclient.NewVerifier(falclient.VerifierOptions{JWKSURL: b.sim.JWKSURL, Now: func() time.Time { return now.Add(d) }})
		require.NoError(t, err)
		return v
	}
	wrongKey, err := falclient.NewVerifier(falclient.VerifierOptions{JWKSURL: other.JWKSURL})
	require.NoError(t, err)
	mod := func(f func(h http.Header)) http.Header {
		h := wh.header.Clone()
		f(h)
		return h
	}
	sig := wh.header.Get("X-Fal-Webhook-Signature")
	tests := []struct {
		name   string
		v      *falclient.Verifier
		h      http.Header
		body   []byte
		reason string
	}{
		{"tampered body", b.c.Verifier(), wh.header, []byte(strings.Replace(string(wh.body), bigSeed, "196619188014358661", 1)), "no key"},
		{"re-encoded body", b.c.Verifier(), wh.header, compact(t, wh.body), "no key"},
		{"wrong key", wrongKey, wh.header, wh.body, "no key"},
		{"stale timestamp", shifted(6 * time.Minute), wh.header, wh.body, "beyond"},
		{"future timestamp", shifted(-6 * time.Minute), wh.header, wh.body, "beyond"},
		{"missing request id", b.c.Verifier(), mod(func(h http.Header) { h.Del("X-Fal-Webhook-Request-Id") }), wh.body, "missing header"},
		{"missing user id", b.c.Verifier(), mod(func(h http.Header) { h.Del("X-Fal-Webhook-User-Id") }), wh.body, "missing header"},
		{"missing timestamp", b.c.Verifier(), mod(func(h http.Header) { h.Del("X-Fal-Webhook-Timestamp") }), wh.body, "missing header"},
		{"missing signature", b.c.Verifier(), mod(func(h http.Header) { h.Del("X-Fal-Webhook-Signature") }), wh.body, "missing header"},
		{"bad hex", b.c.Verifier(), mod(func(h http.Header) { h.Set("X-Fal-Webhook-Signature", "g"+sig[1:]) }), wh.body, "not hex"},
		{"wrong length", b.c.Verifier(), mod(func(h http.Header) { h.Set("X-Fal-Webhook-Signature", sig[:64]) }), wh.body, "32 bytes"},
		{"other request id", b.c.Verifier(), mod(func(h http.Header) { h.Set("X-Fal-Webhook-Request-Id", "someone-else") }), wh.body, "no key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.v.Verify(ctx, tt.h, tt.body)
			require.ErrorIs(t, err, falclient.ErrWebhookSignature)
			require.Contains(t, err.Error(), tt.reason)
		})
	}

	// A failed run's webhook carries the error.
	sub, err = b.c.Submit(ctx, "fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": map[string]any{"fail": "content_policy_violation"}}, falclient.SubmitOptions{WebhookURL: hookURL})
	require.NoError(t, err)
	wh = receive(t, hooks)
	_, err = b.c.Verifier().Verify(ctx, wh.header, wh.body)
	require.NoError(t, err)
	w, err = falclient.ParseWebhook(wh.body)
	require.NoError(t, err)
	require.Equal(t, sub.RequestID, w.RequestID)
	require.Equal(t, falclient.WebhookError, w.Status)
	werr := w.Err()
	require.ErrorIs(t, werr, falclient.ErrValidation)
	var ae *falclient.APIError
	require.ErrorAs(t, werr, &ae)
	require.Equal(t, 422, ae.StatusCode)
	require.Equal(t, "content_policy_violation", ae.Details[0].Type)
	require.Equal(t, "prompt", ae.Details[0].Field())

	// A bad-signature fault is caught.
	b.setFaults(t, `{"webhook_bad_signature_rate":1}`)
	_, err = b.c.Submit(ctx, "fal-ai/flux/dev", map[string]any{"prompt": "x"}, falclient.SubmitOptions{WebhookURL: hookURL})
	require.NoError(t, err)
	wh = receive(t, hooks)
	_, err = b.c.Verifier().Verify(ctx, wh.header, wh.body)
	require.ErrorIs(t, err, falclient.ErrWebhookSignature)
	require.NotErrorIs(t, err, falclient.ErrJWKS)
}

func compact(t *testing.T, b []byte) []byte {
	var v any
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	require.NoError(t, d.Decode(&v))
	out, err := json.Marshal(v)
	require.NoError(t, err)
	return out
}

// TestSimJWKSRotation: the JWKS URL first serves sim A's keys, then sim
// B's; B's first webhook triggers exactly one refetch.
func TestSimJWKSRotation(t *testing.T) {
	t.Parallel()
	a := setupSim(t, falsim.Config{})
	bb := setupSim(t, falsim.Config{})
	ctx := context.Background()
	var target atomic.Pointer[url.URL]
	ua, _ := url.Parse(a.sim.URL)
	target.Store(ua)
	var fetches atomic.Int64
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		fetches.Add(1)
		r.SetURL(target.Load())
	}})
	t.Cleanup(proxy.Close)
	v, err := falclient.NewVerifier(falclient.VerifierOptions{JWKSURL: proxy.URL + "/.well-known/jwks.json"})
	require.NoError(t, err)

	hookURL, hooks := webhookReceiver(t)
	_, err = a.c.Submit(ctx, "fal-ai/flux/dev", map[string]any{"prompt": "a"}, falclient.SubmitOptions{WebhookURL: hookURL})
	require.NoError(t, err)
	wh := receive(t, hooks)
	_, err = v.Verify(ctx, wh.header, wh.body)
	require.NoError(t, err)
	require.EqualValues(t, 1, fetches.Load())

	ub, _ := url.Parse(bb.sim.URL)
	target.Store(ub) // rotation
	_, err = bb.c.Submit(ctx, "fal-ai/flux/dev", map[string]any{"prompt": "b"}, falclient.SubmitOptions{WebhookURL: hookURL})
	require.NoError(t, err)
	wh = receive(t, hooks)
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = v.Verify(ctx, wh.header, wh.body)
		}()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	require.EqualValues(t, 2, fetches.Load(), "one refetch, shared")
}

func TestSimStartTimeout(t *testing.T) {
	t.Parallel()
	b := setupSim(t, falsim.Config{Concurrency: 1})
	ctx := context.Background()
	const model = "fal-ai/flux/dev"
	blocker, err := b.c.Submit(ctx, model, map[string]any{"prompt": "long", "_sim": map[string]any{"latency_ms": 60000}}, falclient.SubmitOptions{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.c.Cancel(context.Background(), model, blocker.RequestID) })

	sub, err := b.c.Submit(ctx, model, map[string]any{"prompt": "waits"}, falclient.SubmitOptions{StartTimeout: 200 * time.Millisecond})
	require.NoError(t, err)
	st := b.wait(t, model, sub.RequestID)
	require.True(t, st.Done())
	before := b.stats(t).ResultCalls
	_, err = b.c.Result(ctx, model, sub.RequestID)
	require.ErrorIs(t, err, falclient.ErrTimeout)
	require.NotErrorIs(t, err, falclient.ErrUpstream)
	require.False(t, falclient.IsRetryable(err))
	var ae *falclient.APIError
	require.ErrorAs(t, err, &ae)
	require.Equal(t, 504, ae.StatusCode)
	require.Equal(t, "user", ae.TimeoutType)
	require.EqualValues(t, 1, b.stats(t).ResultCalls-before, "a user start timeout is never retried")
}

func TestObserverSeesEveryAttempt(t *testing.T) {
	t.Parallel()
	sim := falsimtest.New(t, falsim.Config{Latency: 10 * time.Millisecond, Faults: falsim.Faults{RateLimitRate: 1}})
	var (
		mu       sync.Mutex
		attempts []falclient.Attempt
	)
	c, err := falclient.New(
		falclient.WithKey("a:b"),
		falclient.WithQueueURL(sim.QueueURL),
		falclient.WithRetry(falclient.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond}),
		falclient.WithObserver(func(a falclient.Attempt) {
			mu.Lock()
			attempts = append(attempts, a)
			mu.Unlock()
		}),
	)
	require.NoError(t, err)
	_, err = c.Submit(context.Background(), "fal-ai/flux/schnell", map[string]any{"prompt": "p"}, falclient.SubmitOptions{})
	require.ErrorIs(t, err, falclient.ErrRateLimited)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, attempts, 3)
	for i, a := range attempts {
		require.Equal(t, falclient.OpSubmit, a.Op)
		require.Equal(t, i+1, a.Number)
		require.Equal(t, 429, a.StatusCode)
	}
}

// Pricing against the simulator's Platform API: every catalog model asked
// for has a price, an unknown endpoint is left out.
func TestSimPricing(t *testing.T) {
	t.Parallel()
	sim := falsimtest.New(t, falsim.Config{})
	c, err := falclient.New(falclient.WithKey(testKey), falclient.WithPlatformURL(sim.PlatformURL), falclient.WithRetry(fastRetry))
	require.NoError(t, err)
	ids := []string{"fal-ai/flux/schnell", "fal-ai/flux/dev", "fal-ai/no-such-model"}
	prices, err := c.Pricing(context.Background(), ids...)
	require.NoError(t, err)
	got := map[string]falclient.Price{}
	for _, p := range prices {
		got[p.EndpointID] = p
	}
	require.Len(t, got, 2, "%+v", prices)
	for _, id := range ids[:2] {
		p, ok := got[id]
		require.True(t, ok, id)
		require.Positive(t, p.UnitPrice, id)
		require.NotEmpty(t, p.Unit, id)
		require.Equal(t, "USD", p.Currency, id)
	}
}
