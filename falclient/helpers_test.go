package falclient_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/falclient"
)

// fastRetry keeps retry tests quick.
var fastRetry = falclient.RetryPolicy{MaxAttempts: 4, InitialInterval: time.Millisecond, MaxInterval: 5 * time.Millisecond}

// newTestClient returns a client for base (queue at base, run at base/run).
func newTestClient(tb testing.TB, base string, opts ...falclient.Option) *falclient.Client {
	tb.Helper()
	all := append([]falclient.Option{
		falclient.WithKey(testKey),
		falclient.WithQueueURL(base),
		falclient.WithRunURL(base + "/run"),
		falclient.WithJWKSURL(base + "/.well-known/jwks.json"),
		falclient.WithRetry(fastRetry),
	}, opts...)
	c, err := falclient.New(all...)
	require.NoError(tb, err)
	tb.Cleanup(c.CloseIdleConnections)
	return c
}

// fake is an httptest server that counts calls and records requests.
type fake struct {
	*httptest.Server
	calls atomic.Int64
	mu    sync.Mutex
	reqs  []recorded
}

type recorded struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   []byte
}

// serve starts a fake whose handler gets the 1-based call number.
func serve(tb testing.TB, h func(w http.ResponseWriter, r *http.Request, n int)) *fake {
	tb.Helper()
	f := &fake{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(f.calls.Add(1))
		body := readAll(r)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
		f.mu.Unlock()
		h(w, r, n)
	}))
	tb.Cleanup(f.Close)
	return f
}

func (f *fake) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func readAll(r *http.Request) []byte {
	var b []byte
	buf := make([]byte, 4096)
	for {
		n, err := r.Body.Read(buf)
		b = append(b, buf[:n]...)
		if err != nil {
			return b
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// recordSleeps replaces c's backoff sleep with one that records the waits
// and returns at once.
func recordSleeps(c *falclient.Client) func() []time.Duration {
	var mu sync.Mutex
	var waits []time.Duration
	falclient.SetSleep(c, func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return ctx.Err()
	})
	return func() []time.Duration {
		mu.Lock()
		defer mu.Unlock()
		return append([]time.Duration(nil), waits...)
	}
}

const submitOK = `{"status":"IN_QUEUE","request_id":"rid-1","gateway_request_id":"gw-1","response_url":"http://x/fal-ai/flux/requests/rid-1","status_url":"http://x/fal-ai/flux/requests/rid-1/status","cancel_url":"http://x/fal-ai/flux/requests/rid-1/cancel","queue_position":2}`
