package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/natstest"
	"github.com/falbridge/falbridge/publisher"
)

// cliResult is what one run of the falbridge binary produced.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs falbridge with args (against natsURL when not empty) and
// returns its output and exit code. It fails the test if the command does
// not end within a minute.
func runCLI(t *testing.T, natsURL string, args ...string) cliResult {
	t.Helper()
	return runCLIEnv(t, nil, natsURL, args...)
}

// runCLIEnv is runCLI with env added to the environment.
func runCLIEnv(t *testing.T, env []string, natsURL string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if natsURL != "" {
		args = append(args, "--server", natsURL)
	}
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(append(os.Environ(), "NATS_URL=", "NATS_CREDS="), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, ctx.Err(), "falbridge %v did not finish: %s", args, stderr.String())
	res := cliResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("falbridge %v: %v", args, err)
	}
	return res
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// TestCLIAgainstDev drives the client commands against one falbridge dev;
// each subtest uses its own trigger ids.
func TestCLIAgainstDev(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	url := d.natsURL

	t.Run("publish wait json and download", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		r := runCLI(t, url, "publish", "--model", "fal-ai/flux/schnell", "--prompt", "a red fox in snow",
			"--image-size", "landscape_4_3", "--num-images", "2", "--id", "cli-wait", "--metadata", `{"run":7}`,
			"--wait", "--json", "--download", dir)
		require.Equal(t, 0, r.code, r)
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		require.Len(t, lines, 1, "--json prints the result event only")
		var res publisher.Result
		require.NoError(t, json.Unmarshal([]byte(lines[0]), &res))
		require.Equal(t, "cli-wait", res.ID)
		require.Equal(t, "fal-ai/flux/schnell", res.ModelID)
		require.JSONEq(t, `{"run":7}`, string(res.Metadata))
		require.Len(t, findMedia(res.Output), 2)
		for n := range 2 {
			b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("cli-wait_%d.png", n)))
			require.NoError(t, err, r)
			require.True(t, bytes.HasPrefix(b, []byte("\x89PNG")), "a PNG file")
			cfg, err := png.DecodeConfig(bytes.NewReader(b))
			require.NoError(t, err)
			require.Equal(t, [2]int{1024, 768}, [2]int{cfg.Width, cfg.Height}, "the size the result states (landscape_4_3)")
		}
		require.Contains(t, r.stderr, "saved "+filepath.Join(dir, "cli-wait_0.png"))
	})

	t.Run("publish wait human", func(t *testing.T) {
		t.Parallel()
		r := runCLI(t, url, "publish", "-m", "fal-ai/flux/schnell", "-p", "a red fox", "-n", "2", "--id", "cli-human", "--wait")
		require.Equal(t, 0, r.code, r)
		require.Contains(t, r.stdout, "result  cli-human  fal-ai/flux/schnell")
		require.Equal(t, 2, strings.Count(r.stdout, "  image/png  "), r)
		require.NotContains(t, r.stderr, "falbridge:")
	})

	t.Run("publish wait shows live progress in webhook mode", func(t *testing.T) {
		t.Parallel()
		// dev gives fal a webhook URL, so no poll ever runs: IN_PROGRESS
		// and fal's logs can only come from the status stream that --wait
		// asks for.
		r := runCLI(t, url, "publish", "-m", "fal-ai/flux/schnell", "-i", `{"_sim":{"latency_ms":1500}}`, "-p", "a fox", "--id", "cli-live", "--wait")
		require.Equal(t, 0, r.code, r)
		require.Contains(t, r.stderr, "cli-live: IN_PROGRESS", r)
		require.Contains(t, r.stderr, "  fal: ", "fal's log lines: %s", r)
		require.Contains(t, r.stdout, "result  cli-live")

		r = runCLI(t, url, "status", "cli-live", "--json")
		require.Equal(t, 0, r.code, r)
		var st struct{ Job struct{ Webhook bool } }
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &st), r)
		require.True(t, st.Job.Webhook, "the job was in webhook mode")

		// --progress=false: nobody asked, so no status stream and no logs.
		r = runCLI(t, url, "publish", "-m", "fal-ai/flux/schnell", "-i", `{"_sim":{"latency_ms":700}}`, "-p", "a fox", "--id", "cli-quiet", "--wait", "--progress=false")
		require.Equal(t, 0, r.code, r)
		require.NotContains(t, r.stderr, "IN_PROGRESS", r)
		require.NotContains(t, r.stderr, "  fal: ", r)
	})

	t.Run("bad trigger exits 1 with the error event", func(t *testing.T) {
		t.Parallel()
		r := runCLI(t, url, "publish", "--model", "fal-ai//flux", "--prompt", "x", "--id", "cli-bad", "--wait", "--json")
		require.Equal(t, 1, r.code, r)
		var e publisher.Error
		require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &e), r)
		require.Equal(t, "cli-bad", e.ID)
		require.Equal(t, publisher.CodeInvalidModel, e.Code)
		require.JSONEq(t, `{"id":"cli-bad","model_id":"fal-ai//flux","input":{"prompt":"x"}}`, string(e.Trigger), "--wait --json off a terminal shows no progress, so asks for none")

		// The human form, and result for the same id.
		r = runCLI(t, url, "result", "cli-bad")
		require.Equal(t, 1, r.code, r)
		require.Contains(t, r.stdout, "error  cli-bad  invalid_model")
		require.NotContains(t, r.stderr, "falbridge:", "the error event is printed once, on stdout")
	})

	t.Run("publish without wait", func(t *testing.T) {
		t.Parallel()
		r := runCLI(t, url, "publish", "-m", "fal-ai/flux/schnell", "-p", "x", "--id", "cli-nowait", "--json")
		require.Equal(t, 0, r.code, r)
		var ack struct {
			ID        string `json:"id"`
			Stream    string `json:"stream"`
			Duplicate bool   `json:"duplicate"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &ack))
		require.Equal(t, "cli-nowait", ack.ID)
		require.Equal(t, publisher.RequestsStreamDefault, ack.Stream)
		require.False(t, ack.Duplicate)

		// The same id again is dropped by JetStream.
		r = runCLI(t, url, "publish", "-m", "fal-ai/flux/schnell", "-p", "x", "--id", "cli-nowait")
		require.Equal(t, 0, r.code, r)
		require.Contains(t, r.stdout, "duplicate")
	})

	t.Run("result of a finished job", func(t *testing.T) {
		t.Parallel()
		r := runCLI(t, url, "publish", "-m", "fal-ai/flux/schnell", "-p", "x", "--id", "cli-result", "--wait", "--json")
		require.Equal(t, 0, r.code, r)
		var first publisher.Result
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &first))

		r = runCLI(t, url, "result", "cli-result", "--json")
		require.Equal(t, 0, r.code, r)
		var again publisher.Result
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &again))
		require.Equal(t, first.RequestID, again.RequestID)
		require.Empty(t, r.stderr, "--json off a terminal prints no progress")

		// An id nobody published fails at once, not after --timeout.
		start := time.Now()
		r = runCLI(t, url, "result", "cli-never-published")
		require.Equal(t, 1, r.code, r)
		require.Contains(t, r.stderr, "nothing known of cli-never-published")
		require.Less(t, time.Since(start), 20*time.Second, "no wait for the 10m default --timeout")

		// A job published without --wait is found and awaited.
		r = runCLI(t, url, "publish", "-m", "fal-ai/flux/schnell", "-p", "x", "--id", "cli-result-later")
		require.Equal(t, 0, r.code, r)
		r = runCLI(t, url, "result", "cli-result-later", "--json")
		require.Equal(t, 0, r.code, r)
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &again))
		require.Equal(t, "cli-result-later", again.ID)
	})

	// #11: an event forged on a job's subject (by a client with too wide
	// NATS permissions) is not shown as the job's.
	t.Run("forged event refused", func(t *testing.T) {
		t.Parallel()
		nc, err := nats.Connect(url)
		require.NoError(t, err)
		defer nc.Close()
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		_, err = js.Publish(t.Context(), "fal.results.cli-forged", []byte(`{"id":"attacker","model_id":"fal-ai/flux/schnell","output":{"images":[]}}`))
		require.NoError(t, err)

		r := runCLI(t, url, "status", "cli-forged")
		require.Equal(t, 1, r.code, r)
		require.Contains(t, r.stderr, `carries id "attacker"`)

		// result skips it, as Await does: with nothing else known of the
		// id, result fails at once.
		r = runCLI(t, url, "result", "cli-forged", "--timeout", "500ms")
		require.Equal(t, 1, r.code, r)
		require.Contains(t, r.stderr, "nothing known of cli-forged")
		require.NotContains(t, r.stdout, "attacker")

		r = runCLI(t, url, "watch", "--id", "cli-forged", "--all", "--count", "1")
		require.Equal(t, 0, r.code, r)
		require.Contains(t, r.stdout, "fal.results.cli-forged  forged")
	})

	t.Run("status after completion", func(t *testing.T) {
		t.Parallel()
		// --progress asks for live progress (--wait --json off a terminal
		// does not), so the job has status events of its own (a job nobody
		// watches may have none); the run is long enough for fal's status
		// stream to report it.
		r := runCLI(t, url, "publish", "-m", "fal-ai/flux/schnell", "-i", `{"_sim":{"latency_ms":700}}`, "-p", "x", "--id", "cli-status", "--wait", "--json", "--progress")
		require.Equal(t, 0, r.code, r)

		r = runCLI(t, url, "status", "cli-status")
		require.Equal(t, 0, r.code, r)
		require.Contains(t, r.stdout, "state     done (result)")
		require.Contains(t, r.stdout, "result  cli-status")

		r = runCLI(t, url, "status", "cli-status", "--json")
		require.Equal(t, 0, r.code, r)
		var st struct {
			Job struct {
				State     string `json:"state"`
				Outcome   string `json:"outcome"`
				RequestID string `json:"request_id"`
			} `json:"job"`
			Result     *publisher.Result `json:"result"`
			LastStatus *publisher.Status `json:"last_status"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &st), r)
		require.Equal(t, "done", st.Job.State)
		require.Equal(t, "result", st.Job.Outcome)
		require.NotNil(t, st.Result)
		require.Equal(t, st.Job.RequestID, st.Result.RequestID)
		require.NotNil(t, st.LastStatus)

		r = runCLI(t, url, "status", "cli-nobody")
		require.Equal(t, 1, r.code, r)
		require.Contains(t, r.stderr, "nothing known of cli-nobody")
	})

	t.Run("cancel unknown id", func(t *testing.T) {
		t.Parallel()
		r := runCLI(t, url, "cancel", "cli-unknown")
		require.Equal(t, 1, r.code, r)
		require.Contains(t, r.stdout, "unknown  cli-unknown")

		r = runCLI(t, url, "cancel", "cli-unknown", "--json")
		require.Equal(t, 1, r.code, r)
		require.JSONEq(t, `{"id":"cli-unknown","status":"unknown","message":"no job with this id"}`, r.stdout)
	})

	t.Run("batch", func(t *testing.T) {
		t.Parallel()
		var lines []string
		for n := 1; n <= 9; n++ {
			switch n % 3 {
			case 0: // the flat workflow shape
				lines = append(lines, fmt.Sprintf(`{"model_id":"fal-ai/flux/schnell","prompt":"fox %d","num_images":1}`, n))
			case 1: // canonical
				lines = append(lines, fmt.Sprintf(`{"model_id":"fal-ai/flux/schnell","input":{"prompt":"fox %d"}}`, n))
			default: // the tool shape
				lines = append(lines, `{"model":"fal-ai/florence-2-large/caption","input_params":{},"image_input":"https://example.com/fox.png"}`)
			}
		}
		lines = append(lines, `{"id":"batch-bad","model_id":"fal-ai//flux","input":{}}`)
		dir := t.TempDir()
		in, out := filepath.Join(dir, "in.jsonl"), filepath.Join(dir, "out.jsonl")
		require.NoError(t, os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n\n"), 0o644))

		r := runCLI(t, url, "publish", "--batch", in, "--out", out, "--id-prefix", "b1", "--concurrency", "4")
		require.Equal(t, 1, r.code, "one trigger failed: %s", r)
		require.Contains(t, r.stderr, "batch: 10 triggers in")
		require.Contains(t, r.stderr, "9 done, 1 failed")
		require.Contains(t, r.stderr, "failed batch-bad  invalid_model")

		data, err := os.ReadFile(out)
		require.NoError(t, err)
		got := strings.Split(strings.TrimSpace(string(data)), "\n")
		require.Len(t, got, 10)
		ids := map[string]string{}
		for _, l := range got {
			var ev struct{ ID, Code string }
			require.NoError(t, json.Unmarshal([]byte(l), &ev), l)
			ids[ev.ID] = ev.Code
		}
		for n := 1; n <= 9; n++ {
			code, ok := ids[fmt.Sprintf("b1-%d", n)]
			require.True(t, ok, "an event for line %d: %v", n, ids)
			require.Empty(t, code, "line %d succeeded", n)
		}
		require.Equal(t, "invalid_model", ids["batch-bad"])

		// Stdin, --json, a line that is not JSON, and the resumed b1 batch:
		// its events are found again, nothing is run twice.
		cmd := exec.Command(binPath, "publish", "--batch", "-", "--json", "--id-prefix", "b1", "--server", url)
		cmd.Stdin = strings.NewReader(lines[0] + "\nnot json\n")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err = cmd.Run()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		require.Equal(t, 1, ee.ExitCode(), stderr.String())
		var sum struct{ Total, Done, Failed int }
		require.NoError(t, json.Unmarshal(stderr.Bytes(), &sum), stderr.String())
		require.Equal(t, 2, sum.Total)
		require.Equal(t, 1, sum.Done)
		require.Equal(t, 1, sum.Failed)
		outLines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		require.Len(t, outLines, 2)
		require.Contains(t, stdout.String(), `"id":"b1-2","code":"invalid_trigger"`)
		var again publisher.Result
		for _, l := range outLines {
			if strings.Contains(l, `"id":"b1-1"`) {
				require.NoError(t, json.Unmarshal([]byte(l), &again))
			}
		}
		require.Equal(t, "b1-1", again.ID, stdout.String())
	})

	t.Run("batch repeated id", func(t *testing.T) {
		t.Parallel()
		in := filepath.Join(t.TempDir(), "in.jsonl")
		require.NoError(t, os.WriteFile(in, []byte(strings.Join([]string{
			`{"id":"rep-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"a"}}`,
			`{"model_id":"fal-ai/flux/schnell","input":{"prompt":"b"}}`,
			`{"id":"rep-1","model_id":"fal-ai/flux/schnell","input":{"prompt":"c"}}`,
		}, "\n")+"\n"), 0o644))
		r := runCLI(t, url, "publish", "--batch", in, "--id-prefix", "rep")
		require.Equal(t, 1, r.code, r)
		require.Contains(t, r.stderr, "2 done, 1 failed", "the repeat is not merged into line 1's result")
		require.Contains(t, r.stderr, `line 3: invalid trigger: id "rep-1" is already line 1's`)
	})

	t.Run("watch", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		// --since replays the last minute and then follows new events, so
		// nothing published after the start can be missed.
		cmd := exec.CommandContext(ctx, binPath, "watch", "--json", "--since", "1m", "--kind", "result,error", "--server", url)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var stderr lockedBuffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		lines := make(chan string)
		go func() {
			sc := bufio.NewScanner(stdout)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			for range lines {
			}
			_ = cmd.Wait()
		})

		r := runCLI(t, url, "publish", "-m", "fal-ai/flux/schnell", "-p", "x", "--id", "cli-watch-ok")
		require.Equal(t, 0, r.code, r)
		r = runCLI(t, url, "publish", "-m", "fal-ai//flux", "-p", "x", "--id", "cli-watch-bad")
		require.Equal(t, 0, r.code, r)

		seen := map[string]string{}
		for seen["cli-watch-ok"] == "" || seen["cli-watch-bad"] == "" {
			select {
			case l, ok := <-lines:
				require.True(t, ok, "watch ended early: %s", stderr.String())
				var ev struct{ ID, Code string }
				require.NoError(t, json.Unmarshal([]byte(l), &ev), l)
				seen[ev.ID] = "result"
				if ev.Code != "" {
					seen[ev.ID] = ev.Code
				}
			case <-ctx.Done():
				t.Fatalf("watch saw %v; stderr: %s", seen, stderr.String())
			}
		}
		require.Equal(t, "result", seen["cli-watch-ok"])
		require.Equal(t, "invalid_model", seen["cli-watch-bad"])

		// The human form, from the start of the stream, ending after --count.
		r = runCLI(t, url, "watch", "--all", "--id", "cli-watch-bad", "--count", "1")
		require.Equal(t, 0, r.code, r)
		require.Regexp(t, `^\d\d:\d\d:\d\d error   cli-watch-bad  invalid_model: `, r.stdout)
	})
}

func TestCLICancel(t *testing.T) {
	t.Parallel()
	// One runner per model: the second long job waits in the simulator's
	// queue.
	d := startDev(t, "--sim.concurrency", "1")
	url := d.natsURL
	long := `{"_sim":{"latency_ms":30000}}`
	for _, id := range []string{"cancel-running", "cancel-queued"} {
		r := runCLI(t, url, "publish", "-m", "fal-ai/flux/schnell", "-p", "x", "--input", long, "--id", id)
		require.Equal(t, 0, r.code, r)
	}
	submitted := func(id string) func() bool {
		return func() bool {
			r := runCLI(t, url, "status", id, "--json")
			return r.code == 0 && strings.Contains(r.stdout, `"state":"submitted"`)
		}
	}
	require.Eventually(t, submitted("cancel-running"), 20*time.Second, 50*time.Millisecond)
	require.Eventually(t, submitted("cancel-queued"), 20*time.Second, 50*time.Millisecond)

	r := runCLI(t, url, "cancel", "cancel-queued")
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "canceled  cancel-queued")

	r = runCLI(t, url, "result", "cancel-queued", "--json")
	require.Equal(t, 1, r.code, r)
	var e publisher.Error
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &e), r)
	require.Equal(t, publisher.CodeCanceled, e.Code)

	r = runCLI(t, url, "cancel", "cancel-queued", "--json")
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, `"status":"already_done"`)

	r = runCLI(t, url, "cancel", "cancel-running")
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "canceled  cancel-running")
	r = runCLI(t, url, "status", "cancel-running")
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "state     done (canceled)")
}

func TestClientUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{name: "publish without model", args: []string{"publish", "--prompt", "x"}, want: "--model is required"},
		{name: "unknown flag", args: []string{"publish", "--no-such-flag"}, want: "unknown flag: --no-such-flag"},
		{name: "input not an object", args: []string{"publish", "-m", "m", "--input", "[1]"}, want: "--input must be a JSON object"},
		{name: "input file missing", args: []string{"publish", "-m", "m", "--input", "@/nonexistent.json"}, want: "--input"},
		{name: "bad mode", args: []string{"publish", "-m", "m", "--mode", "later"}, want: "mode"},
		{name: "bad id", args: []string{"publish", "-m", "m", "--id", "a.b"}, want: "id"},
		{name: "bad metadata", args: []string{"publish", "-m", "m", "--metadata", "{"}, want: "--metadata"},
		{name: "batch with single flags", args: []string{"publish", "--batch", "-", "-m", "m"}, want: "cannot be used with --batch"},
		{name: "out without batch", args: []string{"publish", "-m", "m", "--out", "x"}, want: "--out needs --batch"},
		{name: "batch file missing", args: []string{"publish", "--batch", "/nonexistent.jsonl"}, want: "--batch"},
		{name: "status without id", args: []string{"status"}, want: "missing trigger ID"},
		{name: "cancel two ids", args: []string{"cancel", "a", "b"}, want: `unexpected argument "b"`},
		{name: "result bad id", args: []string{"result", "a.b"}, want: "not a trigger id"},
		{name: "watch bad kind", args: []string{"watch", "--kind", "results"}, want: `--kind "results"`},
		{name: "watch two starts", args: []string{"watch", "--all", "--since", "1m"}, want: "one of --since"},
		{name: "watch subject and id", args: []string{"watch", "--subject", "fal.>", "--id", "x"}, want: "--subject cannot be combined"},
		{name: "image not http", args: []string{"publish", "-m", "m", "--image", "ftp://example.com/cat.png"}, want: `--image "ftp://example.com/cat.png": an http(s) URL`},
		{name: "image size half", args: []string{"publish", "-m", "m", "--image-size", "10x"}, want: `--image-size "10x": a preset (square_hd`},
		{name: "image size unknown preset", args: []string{"publish", "-m", "m", "--image-size", "huge"}, want: `--image-size "huge"`},
		{name: "num images negative", args: []string{"publish", "-m", "m", "-n", "-1"}, want: "--num-images must be ≥ 1 (got -1)"},
		{name: "num images zero", args: []string{"publish", "-m", "m", "-n", "0"}, want: "--num-images must be ≥ 1 (got 0)"},
		{name: "download into a file", args: []string{"publish", "-m", "m", "--download", "/etc/hostname"}, want: "--download /etc/hostname: not a directory"},
		{name: "result download into a file", args: []string{"result", "x", "--download", "/etc/hostname"}, want: "not a directory"},
		{name: "watch subject outside the streams", args: []string{"watch", "--subject", "foo.>"}, want: `--subject "foo.>" matches no event subject (fal.results.>`},
		{name: "creds file missing", args: []string{"status", "x", "--creds", "/nonexistent.creds"}, want: "--creds"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// An unreachable server: usage errors are found before connecting.
			r := runCLI(t, "nats://127.0.0.1:1", tc.args...)
			require.Equal(t, 2, r.code, r)
			require.Contains(t, r.stderr, tc.want)
		})
	}
}

func TestClientHelpExit0(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"publish", "watch", "status", "cancel", "result"} {
		r := runCLI(t, "", c, "--help")
		require.Equal(t, 0, r.code, r)
		require.Contains(t, r.stdout, "Usage: falbridge "+c)
		require.Contains(t, r.stdout, "--server")
		require.Contains(t, r.stdout, "Exit codes")
	}
}

func TestClientUnreachableNATSExit3(t *testing.T) {
	t.Parallel()
	batch := filepath.Join(t.TempDir(), "b.jsonl")
	require.NoError(t, os.WriteFile(batch, []byte(`{"model_id":"m","input":{}}`+"\n"), 0o644))
	for _, args := range [][]string{
		{"publish", "-m", "fal-ai/flux/schnell", "-p", "x"},
		{"publish", "--batch", batch},
		{"watch"},
		{"status", "x"},
		{"cancel", "x"},
		{"result", "x"},
	} {
		r := runCLI(t, "nats://127.0.0.1:1", args...)
		require.Equal(t, 3, r.code, "%v: %s", args, r)
		require.Contains(t, r.stderr, "connect to NATS at nats://127.0.0.1:1")
	}
}

// TestClientAgainstNATSWithoutJetStream: the message names JetStream, not
// a missing falbridge.
func TestClientAgainstNATSWithoutJetStream(t *testing.T) {
	t.Parallel()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	ns.Start()
	t.Cleanup(ns.Shutdown)
	require.True(t, ns.ReadyForConnections(10*time.Second))
	for _, args := range [][]string{
		{"publish", "-m", "fal-ai/flux/schnell", "-p", "x"},
		{"status", "x"},
		{"result", "x"},
		{"watch", "--count", "1"},
	} {
		r := runCLI(t, ns.ClientURL(), args...)
		require.Equal(t, 1, r.code, "%v: %s", args, r)
		require.Contains(t, r.stderr, "has no JetStream, which falbridge needs (nats-server -js", "%v", args)
		require.NotContains(t, r.stderr, "is falbridge serve or dev running", "%v", args)
	}
}

// TestClientTriggerNotTakenYet: with falbridge's streams but no falbridge
// running, a published trigger is known (it waits in the trigger stream),
// so status says so and result waits for it instead of failing.
func TestClientTriggerNotTakenYet(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for _, cfg := range []jetstream.StreamConfig{
		{Name: publisher.RequestsStreamDefault, Subjects: []string{publisher.RequestsSubjectDefault}, Retention: jetstream.WorkQueuePolicy},
		{Name: publisher.ResultsStreamDefault, Subjects: []string{publisher.ResultsPrefixDefault + ".>", publisher.ErrorsPrefixDefault + ".>"}},
		{Name: publisher.StatusStreamDefault, Subjects: []string{publisher.StatusPrefixDefault + ".>"}},
	} {
		_, err := js.CreateStream(ctx, cfg)
		require.NoError(t, err)
	}
	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: publisher.JobsBucketDefault})
	require.NoError(t, err)
	url := srv.ClientURL()

	r := runCLI(t, url, "publish", "-m", "fal-ai/flux/schnell", "-p", "x", "--id", "not-taken")
	require.Equal(t, 0, r.code, r)

	r = runCLI(t, url, "status", "not-taken")
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "state     waiting in FAL_REQUESTS: published, not taken by falbridge yet")
	r = runCLI(t, url, "status", "not-taken", "--json")
	require.Equal(t, 0, r.code, r)
	require.JSONEq(t, `{"waiting":true}`, r.stdout)

	r = runCLI(t, url, "result", "not-taken", "--timeout", "1s")
	require.Equal(t, 1, r.code, r)
	require.Contains(t, r.stderr, "no result for not-taken within --timeout", "it waited: the trigger is known")

	r = runCLI(t, url, "result", "never-published", "--timeout", "1m")
	require.Equal(t, 1, r.code, r)
	require.Contains(t, r.stderr, "nothing known of never-published")
}

func TestPrintStatusRetryReason(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	printStatus(&b, "r-1", &jobStatus{Job: &publisher.Job{Record: &publisher.JobInfo{ID: "r-1", State: "retry", ModelID: "fal-ai/flux/schnell", Mode: "queue",
		Attempts: 2, RetryReason: "fal answered 429 (rate limited)", ReceivedAt: time.Now()}}})
	require.Contains(t, b.String(), "state     retry\nretrying  fal answered 429 (rate limited)\n")
}

// #11 weak spot: secrets given as flags are in ps for everyone; serve warns
// at start, naming the flags, never their values.
func TestServeWarnsOfSecretFlags(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "", "serve", "--fal.key=key-id:very-secret-value", "--nats.url", "nats://u:nats-pw@127.0.0.1:1")
	require.Equal(t, 3, r.code, r)
	require.Contains(t, r.stderr, "secrets given as command-line flags")
	require.Contains(t, r.stderr, "--fal.key")
	require.Contains(t, r.stderr, "--nats.url")
	require.NotContains(t, r.stderr, "very-secret-value")
	require.NotContains(t, r.stderr, "nats-pw")

	// The key from the environment (serve needs one before it connects).
	r = runCLIEnv(t, []string{"FAL_KEY=key-id:from-env"}, "", "serve", "--nats.url", "nats://127.0.0.1:1")
	require.Equal(t, 3, r.code, r)
	require.NotContains(t, r.stderr, "secrets given as command-line flags")
}
