package falsim_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/falsim"
)

func TestSubmitEveryModel(t *testing.T) {
	t.Parallel()
	img := "https://example.com/cat.png"
	tests := []struct {
		model  string
		app    string
		input  map[string]any
		output string // a key of the output
	}{
		{"fal-ai/flux/schnell", "fal-ai/flux", map[string]any{"prompt": "a fox"}, "images"},
		{"fal-ai/flux/dev", "fal-ai/flux", map[string]any{"prompt": "a fox"}, "images"},
		{"fal-ai/fast-sdxl", "fal-ai/fast-sdxl", map[string]any{"prompt": "a fox"}, "images"},
		{"fal-ai/flux-pro/v1.1", "fal-ai/flux-pro", map[string]any{"prompt": "a fox"}, "images"},
		{"fal-ai/kling-video/v1.6/standard/text-to-video", "fal-ai/kling-video", map[string]any{"prompt": "waves", "duration": "10"}, "video"},
		{"fal-ai/florence-2-large/caption", "fal-ai/florence-2-large", map[string]any{"image_url": img}, "results"},
		{"fal-ai/florence-2-large/detailed-caption", "fal-ai/florence-2-large", map[string]any{"image_url": img}, "results"},
		{"fal-ai/florence-2-large/more-detailed-caption", "fal-ai/florence-2-large", map[string]any{"image_url": "data:image/png;base64,iVBORw0KGgo="}, "results"},
		{"fal-ai/llavav15-13b", "fal-ai/llavav15-13b", map[string]any{"image_url": img, "prompt": "Describe"}, "output"},
		{"workflows/falsim/echo", "workflows/falsim/echo", map[string]any{"x": 1}, "output"},
	}
	b := setup(t, falsim.Config{})
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			t.Parallel()
			tc.input["_sim"] = sim(5, "")
			s := b.submit(tc.model, tc.input)
			require.Equal(t, "IN_QUEUE", s.Status)
			require.Equal(t, s.RequestID, s.GatewayRequestID)
			require.NotNil(t, s.QueuePosition)
			base := b.ts.URL + "/" + tc.app + "/requests/" + s.RequestID
			require.Equal(t, base, s.ResponseURL, "URLs use the base app id")
			require.Equal(t, base+"/status", s.StatusURL)
			require.Equal(t, base+"/cancel", s.CancelURL)

			st := b.waitState(s, "COMPLETED")
			require.Empty(t, st.ErrorType)
			require.NotNil(t, st.Metrics)
			require.NotNil(t, st.Metrics.InferenceTime)
			r := b.do(http.MethodGet, s.ResponseURL, nil)
			require.Equal(t, http.StatusOK, r.code, "%s", r.body)
			require.Equal(t, s.RequestID, r.header.Get("x-fal-request-id"))
			out := r.json(t)
			require.Contains(t, out, tc.output)
			require.NotContains(t, string(r.body), "_sim", "the control object is never echoed")
		})
	}
}

func TestImageOutput(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Latency: time.Millisecond})
	r := b.do(http.MethodPost, "/run/fal-ai/flux/dev", map[string]any{
		"prompt": "a red fox in snow", "num_images": 2, "seed": json.Number("196619188014358660"),
		"image_size": map[string]any{"width": 640, "height": 480},
	})
	require.Equal(t, http.StatusOK, r.code, "%s", r.body)
	require.NotEmpty(t, r.header.Get("x-fal-request-id"))
	require.Contains(t, string(r.body), `"seed":196619188014358660`, "seed echoed as an exact integer")
	var out struct {
		Images []struct {
			URL         string `json:"url"`
			Width       int    `json:"width"`
			Height      int    `json:"height"`
			ContentType string `json:"content_type"`
		} `json:"images"`
		Timings map[string]float64 `json:"timings"`
		NSFW    []bool             `json:"has_nsfw_concepts"`
		Prompt  string             `json:"prompt"`
	}
	require.NoError(t, json.Unmarshal(r.body, &out))
	require.Len(t, out.Images, 2)
	require.Len(t, out.NSFW, 2)
	require.Equal(t, "a red fox in snow", out.Prompt)
	require.Contains(t, out.Timings, "inference")
	for _, img := range out.Images {
		require.Equal(t, 640, img.Width)
		require.Equal(t, 480, img.Height)
		require.Equal(t, "image/png", img.ContentType)
		require.True(t, strings.HasPrefix(img.URL, b.ts.URL+"/files/"), img.URL)
	}

	// Without a seed the model picks one; clients must cope with seeds above 2^53.
	big53 := new(big.Int).Lsh(big.NewInt(1), 53)
	seenBig := false
	for range 10 {
		r := b.do(http.MethodPost, "/run/fal-ai/fast-sdxl", map[string]any{"prompt": "x", "format": "jpeg"})
		require.Equal(t, http.StatusOK, r.code)
		out := r.json(t)
		seed, ok := new(big.Int).SetString(out["seed"].(json.Number).String(), 10)
		require.True(t, ok, "seed %v is an integer", out["seed"])
		seenBig = seenBig || seed.Cmp(big53) > 0
		require.Contains(t, string(r.body), `"content_type":"image/jpeg"`)
	}
	require.True(t, seenBig)

	r = b.do(http.MethodPost, "/run/fal-ai/flux/schnell", map[string]any{"prompt": "x", "sync_mode": true})
	require.Contains(t, string(r.body), `"url":"data:image/png;base64,`)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	open := setup(t, falsim.Config{})
	restricted := setup(t, falsim.Config{Keys: []string{"good:secret"}})
	tests := []struct {
		name string
		b    *testBundle
		auth string
		want int
	}{
		{"no header", open, "", http.StatusUnauthorized},
		{"bearer", open, "Bearer a:b", http.StatusUnauthorized},
		{"no colon", open, "Key abc", http.StatusUnauthorized},
		{"empty id", open, "Key :secret", http.StatusUnauthorized},
		{"empty secret", open, "Key id:", http.StatusUnauthorized},
		{"any key", open, "Key a:b", http.StatusOK},
		{"lower-case scheme", open, "key a:b", http.StatusOK},
		{"unknown key", restricted, "Key a:b", http.StatusUnauthorized},
		{"known key", restricted, "Key good:secret", http.StatusOK},
	}
	t.Run("keys", func(t *testing.T) {
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				r := tc.b.do(http.MethodPost, "/fal-ai/flux/schnell", map[string]any{"prompt": "x"}, "Authorization", tc.auth)
				require.Equal(t, tc.want, r.code, "%s", r.body)
				require.NotEmpty(t, r.header.Get("x-fal-request-id"))
				if tc.want == http.StatusUnauthorized {
					require.JSONEq(t, `{"detail":"No user found for Key ID and Secret"}`, string(r.body))
				}
			})
		}
	})
	// Keys are checked on every API call, not on the public endpoints.
	r := open.do(http.MethodGet, "/fal-ai/flux/requests/x/status", nil, "Authorization", "")
	require.Equal(t, http.StatusUnauthorized, r.code)
	for _, p := range []string{"/.well-known/jwks.json", "/_sim/stats", "/files/a/b.png"} {
		require.Equal(t, http.StatusOK, open.do(http.MethodGet, p, nil, "Authorization", "").code, p)
	}
	require.Equal(t, int64(6), open.ts.Stats().Unauthorized)
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Latency: time.Millisecond})
	s := b.submit("fal-ai/flux/schnell", map[string]any{"prompt": "x"})
	tests := []struct {
		name   string
		method string
		path   string
		want   string // JSON body, or a substring when prefixed with "~"
	}{
		{"unknown model", "POST", "/fal-ai/no-such-model", "~fal-ai/no-such-model"},
		{"unknown endpoint of a known app", "POST", "/fal-ai/flux/turbo", "~fal-ai/flux/turbo"},
		{"unknown model run", "POST", "/run/fal-ai/nope", "~fal-ai/nope"},
		{"stream on a model without one", "POST", "/run/fal-ai/flux/dev/stream", `{"detail":"Not Found"}`},
		{"unknown request status", "GET", "/fal-ai/flux/requests/nope/status", `{"detail":"Request not found"}`},
		{"unknown request result", "GET", "/fal-ai/flux/requests/nope", `{"detail":"Request not found"}`},
		{"unknown request cancel", "PUT", "/fal-ai/flux/requests/nope/cancel", `{"status":"NOT_FOUND"}`},
		{"request under another app", "GET", "/fal-ai/fast-sdxl/requests/" + s.RequestID + "/status", `{"detail":"Request not found"}`},
		{"unknown path", "GET", "/", `{"detail":"Not Found"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := b.do(tc.method, tc.path, map[string]any{"prompt": "x"})
			require.Equal(t, http.StatusNotFound, r.code, "%s", r.body)
			if sub, ok := strings.CutPrefix(tc.want, "~"); ok {
				require.Contains(t, r.json(t)["detail"], sub)
			} else {
				require.JSONEq(t, tc.want, string(r.body))
			}
		})
	}
	r := b.do(http.MethodGet, "/fal-ai/flux/dev", nil)
	require.Equal(t, http.StatusMethodNotAllowed, r.code)
	require.Equal(t, "POST", r.header.Get("Allow"))
}

func TestValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Latency: time.Millisecond})
	img := "https://example.com/cat.png"
	tests := []struct {
		name  string
		model string
		input any
		loc   []any
		typ   string
		msg   string
	}{
		{"missing prompt", "fal-ai/flux/dev", map[string]any{}, []any{"body", "prompt"}, "missing", "field required"},
		{"empty body", "fal-ai/flux/dev", "", []any{"body", "prompt"}, "missing", "field required"},
		{"prompt not a string", "fal-ai/flux/schnell", map[string]any{"prompt": 3}, []any{"body", "prompt"}, "string_type", ""},
		{"bad preset", "fal-ai/flux/dev", map[string]any{"prompt": "x", "image_size": "huge"}, []any{"body", "image_size"}, "literal_error", ""},
		{"width too large", "fal-ai/flux/dev", map[string]any{"prompt": "x", "image_size": map[string]any{"width": 20000, "height": 512}}, []any{"body", "image_size", "width"}, "less_than_equal", ""},
		{"height zero", "fal-ai/fast-sdxl", map[string]any{"prompt": "x", "image_size": map[string]any{"width": 512, "height": 0}}, []any{"body", "image_size", "height"}, "greater_than", ""},
		{"height missing", "fal-ai/fast-sdxl", map[string]any{"prompt": "x", "image_size": map[string]any{"width": 512}}, []any{"body", "image_size", "height"}, "missing", "field required"},
		{"zero images", "fal-ai/flux/dev", map[string]any{"prompt": "x", "num_images": 0}, []any{"body", "num_images"}, "greater_than_equal", ""},
		{"five images", "fal-ai/flux-pro/v1.1", map[string]any{"prompt": "x", "num_images": 5}, []any{"body", "num_images"}, "less_than_equal", ""},
		{"fractional seed", "fal-ai/flux/dev", map[string]any{"prompt": "x", "seed": 1.5}, []any{"body", "seed"}, "int_type", ""},
		{"bad format", "fal-ai/fast-sdxl", map[string]any{"prompt": "x", "format": "gif"}, []any{"body", "format"}, "literal_error", ""},
		{"kling duration", "fal-ai/kling-video/v1.6/standard/text-to-video", map[string]any{"prompt": "x", "duration": "7"}, []any{"body", "duration"}, "literal_error", ""},
		{"missing image_url", "fal-ai/florence-2-large/caption", map[string]any{}, []any{"body", "image_url"}, "missing", "field required"},
		{"ftp image_url", "fal-ai/florence-2-large/caption", map[string]any{"image_url": "ftp://example.com/x.png"}, []any{"body", "image_url"}, "url_scheme", ""},
		{"relative image_url", "fal-ai/llavav15-13b", map[string]any{"image_url": "cat.png", "prompt": "x"}, []any{"body", "image_url"}, "url_parsing", ""},
		{"llava missing prompt", "fal-ai/llavav15-13b", map[string]any{"image_url": img}, []any{"body", "prompt"}, "missing", "field required"},
		{"not an object", "fal-ai/flux/dev", []any{1, 2}, []any{"body"}, "model_attributes_type", ""},
		{"bad json", "fal-ai/flux/dev", "{", []any{"body", json.Number("0")}, "json_invalid", ""},
		{"unknown _sim.fail", "fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": map[string]any{"fail": "boom"}}, []any{"body", "_sim", "fail"}, "literal_error", ""},
	}
	for _, tc := range tests {
		for _, path := range []string{"/" + tc.model, "/run/" + tc.model} {
			t.Run(tc.name+" "+path, func(t *testing.T) {
				t.Parallel()
				r := b.do(http.MethodPost, path, tc.input)
				if !strings.HasPrefix(path, "/run/") {
					// The queue validates asynchronously: the submit is
					// accepted and the 422 is the stored result.
					require.Equal(t, http.StatusOK, r.code, "%s", r.body)
					var s submitted
					require.NoError(t, json.Unmarshal(r.body, &s))
					require.Equal(t, "IN_QUEUE", s.Status)
					b.waitState(s, "COMPLETED")
					r = b.do(http.MethodGet, s.ResponseURL, nil)
					info, ok := b.ts.Request(s.RequestID)
					require.True(t, ok)
					require.Equal(t, http.StatusUnprocessableEntity, info.StatusCode)
					require.Zero(t, info.Billed, "validation errors are not billed")
				}
				require.Equal(t, http.StatusUnprocessableEntity, r.code, "%s", r.body)
				details, ok := r.json(t)["detail"].([]any)
				require.True(t, ok, "format A: %s", r.body)
				var found bool
				for _, d := range details {
					d := d.(map[string]any)
					require.Contains(t, d, "msg")
					require.Contains(t, d, "url")
					if fmt.Sprint(d["loc"]) == fmt.Sprint(tc.loc) {
						found = true
						require.Equal(t, tc.typ, d["type"], "%s", r.body)
						if tc.msg != "" {
							require.Equal(t, tc.msg, d["msg"])
						}
					}
				}
				require.True(t, found, "no detail at %v in %s", tc.loc, r.body)
			})
		}
	}
	t.Run("lenient rejections create no job", func(t *testing.T) {
		t.Parallel()
		b := setup(t, falsim.Config{Lenient: true})
		r := b.do(http.MethodPost, "/fal-ai/flux/dev", map[string]any{})
		require.Equal(t, http.StatusUnprocessableEntity, r.code)
		st := b.ts.Stats()
		require.Zero(t, st.Submits)
		require.Zero(t, st.Jobs)
		require.Equal(t, int64(1), st.ValidationErrors)
	})
}

func TestSimFail(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	tests := []struct {
		fail        string
		code        int
		timeoutType string
		formatA     bool
	}{
		{falsim.FailContentPolicy, 422, "", true},
		{falsim.FailNoMediaGenerated, 422, "", true},
		{falsim.FailInternalError, 500, "", true},
		{falsim.FailRequestTimeout, 504, "user", false},
		{falsim.FailStartupTimeout, 504, "", false},
		{falsim.FailRunnerDisconnected, 503, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.fail, func(t *testing.T) {
			t.Parallel()
			input := map[string]any{"prompt": "x", "_sim": sim(5, tc.fail)}
			check := func(r reply) {
				t.Helper()
				require.Equal(t, tc.code, r.code, "%s", r.body)
				require.Equal(t, tc.fail, r.header.Get("X-Fal-Error-Type"))
				require.Equal(t, tc.timeoutType, r.header.Get("X-Fal-Request-Timeout-Type"))
				body := r.json(t)
				if tc.formatA {
					require.Equal(t, "false", r.header.Get("X-Fal-Retryable"))
					details := body["detail"].([]any)
					require.Equal(t, tc.fail, details[0].(map[string]any)["type"])
				} else {
					require.Equal(t, tc.fail, body["error_type"])
					require.IsType(t, "", body["detail"])
				}
			}
			s := b.submit("fal-ai/flux/schnell", input)
			st := b.waitState(s, "COMPLETED")
			require.Equal(t, tc.fail, st.ErrorType, "failures still end in COMPLETED, with error_type")
			require.NotEmpty(t, st.Error)
			check(b.do(http.MethodGet, s.ResponseURL, nil))
			check(b.do(http.MethodPost, "/run/fal-ai/flux/schnell", input))
		})
	}
}

func TestStartTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Concurrency: 1})
	blocker := b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": sim(60000, "")})
	b.waitState(blocker, "IN_PROGRESS")
	for _, header := range []string{"X-Fal-Request-Timeout", "X-Fal-Request-Start-Timeout"} {
		t.Run(header, func(t *testing.T) {
			t.Parallel()
			s := b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x"}, header, "0.05")
			st := b.waitState(s, "COMPLETED")
			require.Equal(t, "request_timeout", st.ErrorType)
			r := b.do(http.MethodGet, s.ResponseURL, nil)
			require.Equal(t, http.StatusGatewayTimeout, r.code)
			require.Equal(t, "user", r.header.Get("X-Fal-Request-Timeout-Type"))
			require.Equal(t, "request_timeout", r.header.Get("X-Fal-Error-Type"))
			require.JSONEq(t, `{"detail":"Request timed out","error_type":"request_timeout"}`, string(r.body))
		})
	}
	t.Run("sync run", func(t *testing.T) {
		t.Parallel()
		r := b.do(http.MethodPost, "/run/fal-ai/flux/dev", map[string]any{"prompt": "x"}, "X-Fal-Request-Timeout", "0.05")
		require.Equal(t, http.StatusGatewayTimeout, r.code)
		require.Equal(t, "user", r.header.Get("X-Fal-Request-Timeout-Type"))
	})
	t.Run("started in time", func(t *testing.T) {
		t.Parallel()
		b := setup(t, falsim.Config{})
		s := b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": sim(100, "")}, "X-Fal-Request-Timeout", "0.02")
		st := b.waitState(s, "COMPLETED")
		require.Empty(t, st.ErrorType, "the deadline stops once the request runs")
	})
	t.Run("bad header", func(t *testing.T) {
		t.Parallel()
		r := b.do(http.MethodPost, "/fal-ai/flux/dev", map[string]any{"prompt": "x"}, "X-Fal-Request-Timeout", "soon")
		require.Equal(t, http.StatusBadRequest, r.code)
		require.Equal(t, "bad_request", r.json(t)["error_type"])
	})
}

func TestQueuePositionsMove(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Concurrency: 1})
	long := map[string]any{"prompt": "x", "_sim": sim(60000, "")}
	running := b.submit("fal-ai/flux/dev", long)
	require.Equal(t, 0, *running.QueuePosition)
	q := make([]submitted, 3)
	for i := range q {
		q[i] = b.submit("fal-ai/flux/dev", long)
		require.Equal(t, i, *q[i].QueuePosition, "requests ahead, from 0")
	}
	require.Equal(t, "IN_PROGRESS", b.status(running).Status)
	for i := range q {
		require.Equal(t, i, b.position(q[i]))
	}
	// Another model has its own runners and queue.
	other := b.submit("fal-ai/flux/schnell", long)
	require.Equal(t, "IN_PROGRESS", b.status(other).Status)

	require.Equal(t, http.StatusAccepted, b.do(http.MethodPut, running.CancelURL, nil).code)
	b.waitState(q[0], "IN_PROGRESS")
	require.Equal(t, 0, b.position(q[1]))
	require.Equal(t, 1, b.position(q[2]))

	require.Equal(t, http.StatusAccepted, b.do(http.MethodPut, q[1].CancelURL, nil).code)
	require.Equal(t, 0, b.position(q[2]))

	// Low priority waits behind every normal request, even later ones.
	low := b.submit("fal-ai/flux/dev", long, "X-Fal-Queue-Priority", "low")
	require.Equal(t, 1, *low.QueuePosition)
	normal := b.submit("fal-ai/flux/dev", long, "X-Fal-Queue-Priority", "normal")
	require.Equal(t, 1, *normal.QueuePosition)
	require.Equal(t, 2, b.position(low))
	odd := b.submit("fal-ai/flux/dev", long, "X-Fal-Queue-Priority", "urgent")
	require.Equal(t, 2, *odd.QueuePosition, "unknown priorities are ignored")

	st := b.ts.Stats()
	require.Equal(t, int64(2), st.Running, "one runner per model")
	require.Equal(t, int64(4), st.Queued)
}

func TestLogs(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	s := b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x", "num_images": 2, "_sim": sim(1000, "")})
	require.Eventually(t, func() bool {
		st := b.status(s)
		return st.Status == "IN_PROGRESS" && len(st.Logs) >= 2
	}, 10*time.Second, 2*time.Millisecond, "log lines appear while the request runs")

	tests := []struct {
		query   string
		logs    bool
		trailer string
	}{
		{"?logs=1", true, ""},
		{"?logs=true", true, ""},
		{"?logs=0", false, ""},
		{"?logs=false", false, ""},
		{"", false, ""},
		{"?logs=1", true, "/"},
	}
	for _, tc := range tests {
		r := b.do(http.MethodGet, s.StatusURL+tc.trailer+tc.query, nil)
		require.Contains(t, []int{http.StatusAccepted, http.StatusOK}, r.code, "%s%s", tc.trailer, tc.query)
		body := r.json(t)
		require.Contains(t, body, "logs", "the logs key is always present")
		if !tc.logs {
			require.Nil(t, body["logs"], tc.query)
			continue
		}
		logs := body["logs"].([]any)
		require.NotEmpty(t, logs)
		for _, l := range logs {
			l := l.(map[string]any)
			require.Equal(t, "INFO", l["level"])
			require.Equal(t, "USER", l["source"])
			_, err := time.Parse("2006-01-02T15:04:05.000000", l["timestamp"].(string))
			require.NoError(t, err)
		}
	}
	st := b.waitState(s, "COMPLETED")
	require.Len(t, st.Logs, 5, "load, start, 2 outputs, done")
	r := b.do(http.MethodGet, s.StatusURL+"?logs=0", nil)
	require.Equal(t, http.StatusOK, r.code)
	body := r.json(t)
	require.Contains(t, body, "logs")
	require.Nil(t, body["logs"])
	require.Contains(t, body, "metrics")
	require.Equal(t, http.StatusOK, b.do(http.MethodGet, s.ResponseURL+"/", nil).code, "trailing slash on result")
}

func TestCancel(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Concurrency: 1})
	long := map[string]any{"prompt": "x", "_sim": sim(60000, "")}
	running := b.submit("fal-ai/flux/dev", long)
	queued := b.submit("fal-ai/flux/dev", long)
	done := b.submit("fal-ai/flux/schnell", map[string]any{"prompt": "x", "_sim": sim(0, "")})
	b.waitState(running, "IN_PROGRESS")
	b.waitState(done, "COMPLETED")

	tests := []struct {
		name string
		s    submitted
		code int
		body string
	}{
		{"in queue", queued, http.StatusAccepted, `{"status":"CANCELLATION_REQUESTED"}`},
		{"in progress", running, http.StatusAccepted, `{"status":"CANCELLATION_REQUESTED"}`},
		{"completed", done, http.StatusBadRequest, `{"status":"ALREADY_COMPLETED"}`},
	}
	for _, tc := range tests {
		r := b.do(http.MethodPut, tc.s.CancelURL, nil)
		require.Equal(t, tc.code, r.code, tc.name)
		require.JSONEq(t, tc.body, string(r.body), tc.name)
	}
	for _, s := range []submitted{queued, running} {
		st := b.status(s)
		require.Equal(t, "COMPLETED", st.Status)
		require.Equal(t, "client_cancelled", st.ErrorType)
		r := b.do(http.MethodGet, s.ResponseURL, nil)
		require.Equal(t, 499, r.code)
		require.JSONEq(t, `{"detail":"Request cancelled","error_type":"client_cancelled"}`, string(r.body))
		require.Equal(t, "client_cancelled", r.header.Get("X-Fal-Error-Type"))
	}
	require.Empty(t, b.status(queued).Logs, "a request cancelled in the queue never ran")
	require.Nil(t, b.status(queued).Metrics.InferenceTime)
	r := b.do(http.MethodPut, queued.CancelURL, nil)
	require.Equal(t, http.StatusBadRequest, r.code, "second cancel")
	st := b.ts.Stats()
	require.Equal(t, int64(4), st.Cancels)
	require.Equal(t, int64(2), st.Cancelled)
	require.Zero(t, st.Running+st.Queued)
}

func TestResultBeforeCompletion(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	s := b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": sim(60000, "")})
	r := b.do(http.MethodGet, s.ResponseURL, nil)
	require.Equal(t, http.StatusBadRequest, r.code)
	require.JSONEq(t, `{"detail":"Request is still in progress"}`, string(r.body))
}

func TestStatusStream(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Concurrency: 1})
	blocker := b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": sim(60000, "")})
	s := b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": sim(50, "")})

	resp, err := b.send(context.Background(), http.MethodGet, s.StatusURL+"/stream?logs=1", nil, "Accept", "text/event-stream")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	rd := bufio.NewReader(resp.Body)
	first, err := rd.ReadString('\n')
	require.NoError(t, err)
	var st statusOf
	require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(strings.TrimSpace(first), "data: ")), &st))
	require.Equal(t, "IN_QUEUE", st.Status)
	require.Equal(t, 0, *st.QueuePosition)

	require.Equal(t, http.StatusAccepted, b.do(http.MethodPut, blocker.CancelURL, nil).code)
	events := readSSE(t, rd) // returns when the server closes the stream
	require.NotEmpty(t, events)
	var states []string
	var logs int
	for _, e := range events {
		var st statusOf
		require.NoError(t, json.Unmarshal([]byte(e), &st))
		states = append(states, st.Status)
		logs += len(st.Logs)
	}
	require.Equal(t, "COMPLETED", states[len(states)-1], "COMPLETED is last")
	require.Contains(t, states, "IN_PROGRESS")
	require.Equal(t, 4, logs, "streamed logs are incremental: each line once")

	// A completed request streams one event and closes.
	resp2, err := b.send(context.Background(), http.MethodGet, s.StatusURL+"/stream", nil)
	require.NoError(t, err)
	defer resp2.Body.Close()
	events = readSSE(t, resp2.Body)
	require.Len(t, events, 1)
	require.Contains(t, events[0], `"status":"COMPLETED"`)
	require.Contains(t, events[0], `"logs":null`)
}

func TestRunStream(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Latency: 40 * time.Millisecond})
	t.Run("group", func(t *testing.T) { testRunStream(t, b) })
	require.Equal(t, int64(3), b.ts.Stats().Streams)
}

func testRunStream(t *testing.T, b *testBundle) {
	t.Run("llava partials", func(t *testing.T) {
		t.Parallel()
		resp, err := b.send(context.Background(), http.MethodPost, "/run/fal-ai/llavav15-13b/stream", map[string]any{"image_url": "https://example.com/cat.png", "prompt": "Describe"})
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
		events := readSSE(t, resp.Body)
		require.Greater(t, len(events), 2)
		prev := ""
		for i, e := range events {
			var ev struct {
				Output  string `json:"output"`
				Partial bool   `json:"partial"`
			}
			require.NoError(t, json.Unmarshal([]byte(e), &ev))
			require.Equal(t, i < len(events)-1, ev.Partial, "only the last event is final")
			require.True(t, strings.HasPrefix(ev.Output, prev), "partials grow")
			prev = ev.Output
		}
	})
	t.Run("flux schnell progress", func(t *testing.T) {
		t.Parallel()
		resp, err := b.send(context.Background(), http.MethodPost, "/run/fal-ai/flux/schnell/stream", map[string]any{"prompt": "x", "_sim": sim(0, "")})
		require.NoError(t, err)
		defer resp.Body.Close()
		events := readSSE(t, resp.Body)
		require.Len(t, events, 4)
		require.Contains(t, events[0], `"progress":0.25`)
		require.Contains(t, events[3], `"images"`)
	})
	t.Run("failure before the stream", func(t *testing.T) {
		t.Parallel()
		r := b.do(http.MethodPost, "/run/fal-ai/flux/schnell/stream", map[string]any{"prompt": "x", "_sim": sim(0, falsim.FailContentPolicy)})
		require.Equal(t, http.StatusUnprocessableEntity, r.code)
		require.Equal(t, "application/json", r.header.Get("Content-Type"))
	})
}

func TestSyncRunClientLeaves(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		resp, err := b.send(ctx, http.MethodPost, "/run/fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": sim(60000, "")})
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	require.Eventually(t, func() bool { return b.ts.Stats().Running == 1 }, 10*time.Second, 2*time.Millisecond)
	cancel()
	require.Error(t, <-errc)
	require.Eventually(t, func() bool {
		st := b.ts.Stats()
		return st.Running == 0 && st.Cancelled == 1
	}, 10*time.Second, 2*time.Millisecond, "a client that leaves frees its runner")
}

func TestRequestIDHeader(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	for _, c := range []struct{ method, path string }{
		{"GET", "/_sim/stats"}, {"GET", "/.well-known/jwks.json"}, {"GET", "/files/x/y.png"},
		{"POST", "/fal-ai/nope/x"}, {"POST", "/fal-ai/flux/dev"}, {"GET", "/nowhere"},
	} {
		r := b.do(c.method, c.path, nil)
		require.Regexp(t, `^[0-9a-f-]{36}$`, r.header.Get("x-fal-request-id"), "%s %s", c.method, c.path)
	}
}

func TestResetForgetsJobs(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Concurrency: 1})
	s := b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": sim(60000, "")})
	queued := b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": sim(60000, "")})
	require.Equal(t, int64(2), b.ts.Stats().Submits)
	r := b.do(http.MethodPost, "/_sim/reset", nil)
	require.Equal(t, http.StatusOK, r.code)
	st := b.ts.Stats()
	require.Zero(t, st.Submits)
	require.Empty(t, st.SubmitsByModel)
	require.Zero(t, st.Jobs+st.Queued+st.Running)
	require.Equal(t, http.StatusNotFound, b.do(http.MethodGet, s.StatusURL, nil).code)
	require.Equal(t, http.StatusNotFound, b.do(http.MethodGet, queued.StatusURL, nil).code)
	// The engine still works after a reset.
	s = b.submit("fal-ai/flux/dev", map[string]any{"prompt": "x", "_sim": sim(0, "")})
	b.waitState(s, "COMPLETED")
}

func TestRetention(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", falsim.LargeResultBytes) // the echo's output is ≥ 10 KB
	tests := []struct {
		name    string
		storeIO string // X-Fal-Store-IO, "" = absent
		input   map[string]any
		expires bool
	}{
		{"payload storage on by default", "", map[string]any{"big": big}, false},
		{"payload storage on", "1", map[string]any{"big": big}, false},
		{"storage off, small result: Retention", "0", map[string]any{"x": 1}, true},
		{"storage off, large result: LargeResultRetention", "0", map[string]any{"big": big}, true},
	}
	// Retention is long enough that only LargeResultRetention can expire
	// the large result of the last case; StoredRetention never expires in
	// the test.
	b := setup(t, falsim.Config{Retention: 300 * time.Millisecond, LargeResultRetention: 30 * time.Millisecond})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.input["_sim"] = sim(0, "")
			start := time.Now()
			s := b.submit("workflows/falsim/echo", tc.input, "X-Fal-Store-IO", tc.storeIO)
			b.waitState(s, "COMPLETED")
			if !tc.expires {
				time.Sleep(400 * time.Millisecond)
				require.Equal(t, http.StatusOK, b.do(http.MethodGet, s.ResponseURL, nil).code)
				return
			}
			require.Eventually(t, func() bool {
				return b.do(http.MethodGet, s.ResponseURL, nil).code == http.StatusNotFound
			}, 10*time.Second, 5*time.Millisecond)
			took := time.Since(start)
			if _, large := tc.input["big"]; large {
				require.Less(t, took, 300*time.Millisecond, "a large result goes after LargeResultRetention")
			} else {
				require.GreaterOrEqual(t, took, 300*time.Millisecond, "a small one after Retention")
			}
		})
	}
}

func TestConcurrentLoad(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{Latency: 2 * time.Millisecond, Concurrency: 3})
	models := []string{"fal-ai/flux/schnell", "fal-ai/flux/dev", "fal-ai/fast-sdxl"}
	const n = 150
	type result struct {
		s   submitted
		err error
	}
	results := make(chan result, n)
	for i := range n {
		go func() {
			body := fmt.Sprintf(`{"prompt":"p%d"}`, i)
			resp, err := b.send(context.Background(), http.MethodPost, "/"+models[i%3], body)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			var s submitted
			err = json.NewDecoder(resp.Body).Decode(&s)
			results <- result{s, err}
		}()
	}
	subs := make([]submitted, 0, n)
	for range n {
		r := <-results
		require.NoError(t, r.err)
		subs = append(subs, r.s)
	}
	require.Eventually(t, func() bool { return b.ts.Stats().Completed == n }, 20*time.Second, 5*time.Millisecond)
	for _, s := range subs {
		require.Equal(t, http.StatusOK, b.do(http.MethodGet, s.ResponseURL, nil).code)
	}
	st := b.ts.Stats()
	require.Equal(t, int64(n), st.Submits)
	for _, m := range models {
		require.Equal(t, int64(n/3), st.SubmitsByModel[m])
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  falsim.Config
		want string
	}{
		{"negative latency", falsim.Config{Latency: -1}, "Latency"},
		{"jitter above one", falsim.Config{Jitter: 2}, "Jitter"},
		{"malformed key", falsim.Config{Keys: []string{"nocolon"}}, "Keys"},
		{"fault rate", falsim.Config{Faults: falsim.Faults{HangRate: 1.5}}, "hang_rate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := falsim.New(tc.cfg)
			require.ErrorContains(t, err, tc.want)
		})
	}
	s, err := falsim.New(falsim.Config{})
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")
}
