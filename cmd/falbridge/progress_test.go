package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// simStats reads the counters of dev's simulator (GET /_sim/stats).
func simStats(t *testing.T, simURL string) map[string]any {
	t.Helper()
	resp, err := http.Get(simURL + "/_sim/stats")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var st map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st
}

// TestLiveProgressCost is #16's live progress in webhook mode, as a
// newcomer sees it with `falbridge dev`: publish --wait shows the queue
// position counting down, IN_PROGRESS and fal's logs; a job nobody watches
// costs one fal call (its submit), a watched one one status stream more;
// over limits.max_progress_streams a watched job still runs, without live
// progress. fal's side is counted by the simulator.
func TestLiveProgressCost(t *testing.T) {
	t.Parallel()
	// One runner: jobs queue at fal. One progress stream at most.
	d := startDev(t, "--sim.latency", "1s", "--sim.concurrency", "1", "--limits.max_progress_streams", "1")
	m := simLine.FindStringSubmatch(d.banner)
	require.NotNil(t, m, d.banner)
	simURL := m[1]

	// Two jobs nobody watches: one runs (long enough for the rest to be
	// published behind it), one waits at fal.
	for _, q := range []struct {
		id string
		ms int
	}{{"quiet-1", 6000}, {"quiet-2", 1000}} {
		r := runCLI(t, d.natsURL, "publish", "-m", "fal-ai/flux/schnell", "-p", "a fox", "--id", q.id, "-i", fmt.Sprintf(`{"_sim":{"latency_ms":%d}}`, q.ms))
		require.Equal(t, 0, r.code, r)
		require.Contains(t, r.stdout, "live progress: publish with --progress", "the hint says watch alone shows no live progress")
	}

	// A watched job, queued behind them.
	watched := &lockedBuffer{}
	cmd := exec.Command(binPath, "publish", "-m", "fal-ai/flux/schnell", "-p", "a fox", "--id", "watched-1", "--wait", "--server", d.natsURL)
	cmd.Env = append(os.Environ(), "NATS_URL=", "NATS_CREDS=")
	var watchedOut strings.Builder
	cmd.Stdout, cmd.Stderr = &watchedOut, watched
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	})
	// Its first status event comes with its submit, just before its
	// status stream takes the one slot.
	require.Eventually(t, func() bool { return strings.Contains(watched.String(), "watched-1: IN_QUEUE") }, 30*time.Second, 50*time.Millisecond, watched.String())

	// A second watched job while the slot is taken: it runs all the same.
	r := runCLI(t, d.natsURL, "publish", "-m", "fal-ai/flux/schnell", "-p", "a fox", "--id", "over-cap", "--wait")
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "result  over-cap")
	require.NotContains(t, r.stderr, "IN_PROGRESS", "over the cap: no live progress")

	select {
	case err := <-done:
		require.NoError(t, err, "publish --wait: %s\n%s", watchedOut.String(), watched.String())
	case <-time.After(time.Minute):
		t.Fatalf("publish --wait did not end: %s", watched.String())
	}
	progress := watched.String()
	require.Contains(t, progress, "watched-1: IN_QUEUE (position 1)", "behind quiet-2 at fal: %s", progress)
	require.Contains(t, progress, "watched-1: IN_QUEUE (position 0)", progress)
	require.Contains(t, progress, "watched-1: IN_PROGRESS", progress)
	require.Contains(t, progress, "  fal: ", "fal's log lines: %s", progress)
	require.Contains(t, watchedOut.String(), "result  watched-1")

	// Quiet jobs end too; then count what fal was asked.
	for _, id := range []string{"quiet-1", "quiet-2"} {
		r := runCLI(t, d.natsURL, "result", id, "--json")
		require.Equal(t, 0, r.code, r)
	}
	st := simStats(t, simURL)
	require.EqualValues(t, 4, st["submits"], "one submit per job: %v", st)
	require.EqualValues(t, 1, st["status_streams"], "one status stream: the watched job's within the cap: %v", st)
	require.EqualValues(t, 0, st["status_calls"], "no polls with webhooks: %v", st)
	require.EqualValues(t, 0, st["result_calls"], "results come in the webhooks: %v", st)
	require.EqualValues(t, 4, st["webhooks_sent"], st)
}
