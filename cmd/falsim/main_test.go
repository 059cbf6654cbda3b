package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lockedBuffer is a goroutine-safe buffer for stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRunServesAndShutsDown(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--latency", "5ms", "--key", "id:secret", "--rate-limit-rate", "0", "--seed", "1", "--lenient", "--account-concurrency", "5", "--webhook-time-scale", "0.01"}, pw, &stderr)
		pw.Close()
	}()

	urls := map[string]string{}
	sc := bufio.NewScanner(pr)
	require.True(t, sc.Scan())
	require.Equal(t, "falsim listening", sc.Text())
	for len(urls) < 6 && sc.Scan() {
		name, u, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		require.True(t, ok, sc.Text())
		urls[name] = strings.TrimSpace(u)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	base := urls["queue"]
	require.True(t, strings.HasPrefix(base, "http://127.0.0.1:"), base)
	require.Equal(t, base+"/run", urls["run"])
	require.Equal(t, base+"/.well-known/jwks.json", urls["jwks"])
	require.Equal(t, base+"/alpha/.well-known/jwks.json", urls["alpha-jwks"])
	require.Equal(t, base+"/v1", urls["platform"])
	resp, err := http.Get(urls["alpha-jwks"])
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp.Body.Close()

	// --lenient: invalid input is answered 422 at submit.
	req, _ := http.NewRequest(http.MethodPost, base+"/fal-ai/flux/schnell", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Key id:secret")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)

	resp, err = http.Get(urls["stats"])
	require.NoError(t, err)
	var stats map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&stats))
	resp.Body.Close()
	require.Contains(t, stats, "submits")

	// --key restricts the accepted keys.
	for key, want := range map[string]int{"Key id:secret": http.StatusOK, "Key other:secret": http.StatusUnauthorized} {
		req, _ := http.NewRequest(http.MethodPost, urls["run"]+"/fal-ai/flux/schnell", strings.NewReader(`{"prompt":"x"}`))
		req.Header.Set("Authorization", key)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, key)
	}

	cancel()
	select {
	case code := <-done:
		require.Equal(t, 0, code, stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	require.Contains(t, stderr.String(), "shutting down")
}

func TestRunFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"help", []string{"--help"}, 0, "--webhook-bad-signature-rate", ""},
		{"unknown flag", []string{"--nope"}, 2, "", "flag provided but not defined"},
		{"bad key", []string{"--key", "nocolon"}, 2, "", "want id:secret"},
		{"bad fault rate", []string{"--hang-rate", "2"}, 2, "", "hang_rate"},
		{"stray argument", []string{"serve"}, 2, "", "unexpected arguments"},
		{"help lists the sender pool", []string{"--help"}, 0, "--webhook-senders", ""},
		{"no webhook senders", []string{"--webhook-senders", "0"}, 2, "", "--webhook-senders: must be ≥ 1"},
		{"bad address", []string{"--addr", "256.0.0.1:1"}, 1, "", "listen"},
		{"help lists --lenient", []string{"--help"}, 0, "--lenient", ""},
		{"help lists the fal faults", []string{"--help"}, 0, "--bad-gateway-after-accept-rate", ""},
		{"help lists the time scale", []string{"--help"}, 0, "--webhook-time-scale", ""},
		{"negative account slots", []string{"--account-concurrency", "-1"}, 2, "", "--account-concurrency: must be ≥ 0"},
		{"no attempts", []string{"--server-retries", "0"}, 2, "", "--server-retries: must be ≥ 1"},
		{"bad time scale", []string{"--webhook-time-scale", "0"}, 2, "", "--webhook-time-scale: must be > 0"},
		{"bad jwks fault", []string{"--jwks-down", "both"}, 2, "", "jwks_down"},
		{"bad accept fault", []string{"--bad-gateway-after-accept-rate", "-1"}, 2, "", "bad_gateway_after_accept_rate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr lockedBuffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			require.Equal(t, tc.code, code, stderr.String())
			require.Contains(t, stdout.String(), tc.stdout)
			require.Contains(t, stderr.String(), tc.stderr)
		})
	}
}
