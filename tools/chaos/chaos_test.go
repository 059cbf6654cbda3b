package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/internal/falsim/falsimtest"
)

func TestWrongOutcome(t *testing.T) {
	t.Parallel()
	ok := &spec{ID: "a"}
	failing := &spec{ID: "b", Fail: "content_policy_violation"}
	result := func(chaosID, rid string) event {
		out, _ := json.Marshal(map[string]any{"output": map[string]any{"chaos_id": chaosID}})
		return event{Kind: "result", RequestID: rid, Output: out}
	}
	for _, tc := range []struct {
		name     string
		s        *spec
		ev       event
		accepted []string
		wrong    string // substring; "" = not wrong
	}{
		{"result of a completed run", ok, result("a", "r1"), []string{"r1"}, ""},
		{"result for a designed failure", failing, result("b", "r1"), []string{"r1"}, "designed failure"},
		{"result with another trigger's output", ok, result("z", "r1"), []string{"r1"}, "another trigger"},
		{"result with an unknown request id", ok, result("a", "r9"), []string{"r1"}, "never gave"},
		{"error for a run fal completed", ok, event{Kind: "error", Code: "upstream_error"}, []string{"r1"}, "fal completed"},
		{"ambiguous_submit is counted apart", ok, event{Kind: "error", Code: "ambiguous_submit"}, []string{"r1"}, ""},
		{"error for a run fal never accepted", ok, event{Kind: "error", Code: "rate_limited"}, nil, ""},
		{"error for a designed failure", failing, event{Kind: "error", Code: "fal_error"}, []string{"r1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := wrongOutcome(tc.s, tc.ev, tc.accepted)
			if tc.wrong == "" {
				require.Empty(t, got)
			} else {
				require.Contains(t, got, tc.wrong)
			}
		})
	}
}

func TestLogTime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, line, want string }{
		{"json", `{"time":"2026-12-02T07:14:29.205880954Z","level":"INFO"}`, "2026-12-02T07:14:29.205880954Z"},
		{"text", `time=2026-12-02T08:14:29.1+01:00 level=DEBUG msg=submit`, "2026-12-02T07:14:29.1Z"},
		{"other", `[123] 2026/12/02 07:17:40 [ERR] route`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, logTime(tc.line))
		})
	}
}

// proxied starts the simulator behind a falProxy and returns the proxy's
// URL and ledger.
func proxied(t *testing.T, f proxyFaults) (string, *falProxy) {
	t.Helper()
	sim := falsimtest.New(t, falsim.Config{Latency: 10 * time.Millisecond})
	p := newFalProxy(strings.TrimPrefix(sim.URL, "http://"), newLedger())
	p.faults.Store(&f)
	srv := httptest.NewServer(p)
	t.Cleanup(func() { close(p.stop); srv.Close() })
	return srv.URL, p
}

func submit(url, id string) (*http.Response, error) {
	req, _ := http.NewRequest(http.MethodPost, url+"/"+echoModel, strings.NewReader(`{"chaos_id":"`+id+`"}`))
	req.Header.Set("Authorization", "Key chaos:secret")
	req.Header.Set("Content-Type", "application/json")
	return http.DefaultClient.Do(req)
}

func TestFalProxyCountsWhatFalAccepted(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		faults       proxyFaults
		wantAnswer   bool
		wantAccepted int
	}{
		{"no fault", proxyFaults{}, true, 1},
		{"reset before: fal never sees it", proxyFaults{ResetBefore: 1}, false, 0},
		{"reset after: fal accepted, the client cannot know", proxyFaults{ResetAfter: 1}, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url, p := proxied(t, tc.faults)
			resp, err := submit(url, "t1")
			if tc.wantAnswer {
				require.NoError(t, err)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
			} else {
				require.Error(t, err)
			}
			accepted, seen := p.led.snapshot("t1")
			require.Equal(t, 1, seen)
			require.Len(t, accepted, tc.wantAccepted)
		})
	}
}

func TestTCPProxyPartitionHoldsBytesUntilHealed(t *testing.T) {
	t.Parallel()
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	tp, err := newTCPProxy("127.0.0.1:0", echo.Addr().String())
	require.NoError(t, err)
	t.Cleanup(tp.close)
	c, err := net.Dial("tcp", tp.ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	buf := make([]byte, 4)

	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf))

	tp.partition()
	_, err = c.Write([]byte("pong"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = io.ReadFull(c, buf)
	var ne net.Error
	require.ErrorAs(t, err, &ne, "a partitioned link forwards nothing")
	require.True(t, ne.Timeout())

	tp.heal()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, "pong", string(buf), "the held bytes arrive once healed")
}
