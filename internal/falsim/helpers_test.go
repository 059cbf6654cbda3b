package falsim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/internal/falsim/falsimtest"
)

const testKey = "Key test-id:test-secret"

// testBundle is one test's simulator and helpers to call it.
type testBundle struct {
	t  *testing.T
	ts *falsimtest.Server
}

func setup(t *testing.T, cfg falsim.Config) *testBundle {
	t.Helper()
	return &testBundle{t: t, ts: falsimtest.New(t, cfg)}
}

// reply is a buffered HTTP response.
type reply struct {
	code   int
	header http.Header
	body   []byte
}

func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&m), "body: %s", r.body)
	return m
}

// do calls the simulator. path is relative to the base URL unless it is an
// absolute URL; body is sent verbatim if it is a string, else as JSON.
// headers are name, value pairs; an "Authorization" pair replaces the
// default test key ("" removes it).
func (b *testBundle) do(method, path string, body any, headers ...string) reply {
	b.t.Helper()
	return b.doCtx(context.Background(), method, path, body, headers...)
}

func (b *testBundle) doCtx(ctx context.Context, method, path string, body any, headers ...string) reply {
	b.t.Helper()
	resp, err := b.send(ctx, method, path, body, headers...)
	require.NoError(b.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(b.t, err)
	return reply{code: resp.StatusCode, header: resp.Header, body: data}
}

func (b *testBundle) send(ctx context.Context, method, path string, body any, headers ...string) (*http.Response, error) {
	url := path
	if !strings.HasPrefix(path, "http") {
		url = b.ts.URL + path
	}
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		data, err := json.Marshal(v)
		require.NoError(b.t, err)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	require.NoError(b.t, err)
	req.Header.Set("Authorization", testKey)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	return http.DefaultClient.Do(req)
}

// submitted is a decoded submit response.
type submitted struct {
	Status           string `json:"status"`
	RequestID        string `json:"request_id"`
	GatewayRequestID string `json:"gateway_request_id"`
	ResponseURL      string `json:"response_url"`
	StatusURL        string `json:"status_url"`
	CancelURL        string `json:"cancel_url"`
	QueuePosition    *int   `json:"queue_position"`
}

func (b *testBundle) submit(model string, input any, headers ...string) submitted {
	b.t.Helper()
	r := b.do(http.MethodPost, "/"+model, input, headers...)
	require.Equal(b.t, http.StatusOK, r.code, "submit %s: %s", model, r.body)
	var s submitted
	require.NoError(b.t, json.Unmarshal(r.body, &s))
	require.Equal(b.t, s.RequestID, r.header.Get("x-fal-request-id"))
	return s
}

// statusOf is a decoded status body.
type statusOf struct {
	Status        string           `json:"status"`
	QueuePosition *int             `json:"queue_position"`
	Logs          []map[string]any `json:"logs"`
	Metrics       *struct {
		InferenceTime *float64 `json:"inference_time"`
	} `json:"metrics"`
	Error     string `json:"error"`
	ErrorType string `json:"error_type"`
}

func (b *testBundle) status(s submitted) statusOf {
	b.t.Helper()
	r := b.do(http.MethodGet, s.StatusURL+"?logs=1", nil)
	var st statusOf
	require.NoError(b.t, json.Unmarshal(r.body, &st), "status: %d %s", r.code, r.body)
	if st.Status == "COMPLETED" {
		require.Equal(b.t, http.StatusOK, r.code)
	} else {
		require.Equal(b.t, http.StatusAccepted, r.code)
	}
	return st
}

// waitState polls until the request reaches state.
func (b *testBundle) waitState(s submitted, state string) statusOf {
	b.t.Helper()
	var st statusOf
	require.Eventually(b.t, func() bool {
		st = b.status(s)
		return st.Status == state
	}, 10*time.Second, 2*time.Millisecond, "request %s never reached %s", s.RequestID, state)
	return st
}

func (b *testBundle) position(s submitted) int {
	b.t.Helper()
	st := b.status(s)
	require.Equal(b.t, "IN_QUEUE", st.Status)
	require.NotNil(b.t, st.QueuePosition)
	return *st.QueuePosition
}

// sim is a "_sim" control object.
func sim(latencyMS int, fail string) map[string]any {
	m := map[string]any{"latency_ms": latencyMS}
	if fail != "" {
		m["fail"] = fail
	}
	return m
}

// readSSE reads the data of every event until the stream ends.
func readSSE(t *testing.T, r io.Reader) []string {
	t.Helper()
	var events []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			events = append(events, data)
		}
	}
	require.NoError(t, sc.Err())
	return events
}
