package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/publisher"
)

// binPath is the falbridge binary built once for the subprocess tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "falbridge-bin-")
	if err != nil {
		panic(err)
	}
	binPath = filepath.Join(dir, "falbridge")
	var out []byte
	if raceEnabled {
		out, err = exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput()
	}
	if !raceEnabled || err != nil {
		// Not under -race, or -race cannot build here (it needs cgo).
		if out2, err2 := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err2 != nil {
			panic("build falbridge: " + string(out) + string(out2))
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// devProcess is a running `falbridge dev` on loopback with random ports.
type devProcess struct {
	cmd     *exec.Cmd
	natsURL string
	banner  string // what dev printed on stdout up to "Press Ctrl-C"
	stderr  *lockedBuffer
	done    chan error
}

var natsLine = regexp.MustCompile(`(?m)^\s+nats:\s+(nats://\S+)`)

func startDev(t *testing.T, extra ...string) *devProcess {
	t.Helper()
	args := append([]string{"dev",
		"--nats.embedded.listen", "127.0.0.1:0",
		"--webhook.listen", "127.0.0.1:0",
		"--admin.listen", "127.0.0.1:0",
		"--sim.addr", "127.0.0.1:0",
		"--sim.latency", "50ms",
		"--shutdown.grace_period", "10s",
	}, extra...)
	cmd := exec.Command(binPath, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	d := &devProcess{cmd: cmd, stderr: &lockedBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = d.stderr
	require.NoError(t, cmd.Start())
	go func() { d.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			t.Logf("falbridge dev stderr:\n%s", d.stderr.String())
		}
	})
	ready := make(chan string, 1)
	go func() {
		var seen strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			seen.WriteString(sc.Text() + "\n")
			if natsLine.MatchString(seen.String()) && strings.Contains(sc.Text(), "Ctrl-C") {
				ready <- seen.String()
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case d.banner = <-ready:
		d.natsURL = natsLine.FindStringSubmatch(d.banner)[1]
	case err := <-d.done:
		t.Fatalf("falbridge dev exited early: %v\n%s", err, d.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("falbridge dev not ready in 30s\n%s", d.stderr.String())
	}
	return d
}

// stop sends SIGTERM and returns the exit code.
func (d *devProcess) stop(t *testing.T) int {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-d.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		}
		require.NoError(t, err)
		return 0
	case <-time.After(20 * time.Second):
		t.Fatal("falbridge did not exit within 20s of SIGTERM")
		return -1
	}
}

func TestDevWithPlainNATSPublish(t *testing.T) {
	t.Parallel()
	d := startDev(t)
	nc, err := nats.Connect(d.natsURL)
	require.NoError(t, err)
	defer nc.Close()

	results := make(chan *nats.Msg, 16)
	sub, err := nc.ChanSubscribe("fal.results.>", results)
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	errs := make(chan *nats.Msg, 16)
	esub, err := nc.ChanSubscribe("fal.errors.>", errs)
	require.NoError(t, err)
	defer func() { _ = esub.Unsubscribe() }()

	// Exactly what `nats pub fal.requests.demo '<json>'` sends: a core NATS
	// message, no headers.
	triggers := map[string]string{
		"cli-canonical": `{"id":"cli-canonical","model_id":"fal-ai/flux/schnell","input":{"prompt":"a red fox in snow","image_size":"landscape_4_3","num_images":2}}`,
		"cli-flat":      `{"id":"cli-flat","model_id":"fal-ai/flux/schnell","prompt":"a red fox in snow","image_size":"square_hd","num_images":2}`,
		"cli-tool":      `{"id":"cli-tool","model":"fal-ai/florence-2-large/caption","input_params":{},"image_input":"https://example.com/fox.png"}`,
	}
	for _, body := range triggers {
		require.NoError(t, nc.Publish("fal.requests.demo", []byte(body)))
	}
	require.NoError(t, nc.Publish("fal.requests.demo", []byte(`{"id":"cli-bad","input":{}}`)))

	got := map[string]publisher.Result{}
	deadline := time.After(30 * time.Second)
	for len(got) < len(triggers) {
		select {
		case m := <-results:
			var r publisher.Result
			require.NoError(t, json.Unmarshal(m.Data, &r))
			got[r.ID] = r
		case <-deadline:
			t.Fatalf("results so far: %v", got)
		}
	}
	for id := range triggers {
		require.Contains(t, got, id)
		require.NotEmpty(t, got[id].Output)
	}
	require.Contains(t, string(got["cli-canonical"].Output), `"images"`)
	select {
	case m := <-errs:
		var e publisher.Error
		require.NoError(t, json.Unmarshal(m.Data, &e))
		require.Equal(t, "cli-bad", e.ID)
		require.Equal(t, publisher.CodeInvalidTrigger, e.Code)
		require.Contains(t, e.Message, "model_id")
	case <-time.After(10 * time.Second):
		t.Fatal("no error event for the bad trigger")
	}
	require.Equal(t, 0, d.stop(t), "SIGTERM is a clean exit")
}

func TestUsageErrorsExit2(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{name: "no command", args: nil, want: "Usage"},
		{name: "unknown command", args: []string{"frobnicate"}, want: `unknown command "frobnicate"`},
		{name: "unknown flag", args: []string{"serve", "--no-such-flag"}, want: "no-such-flag"},
		{name: "bad value", args: []string{"serve", "--limits.workers", "0"}, want: "limits.workers"},
		{name: "config without verb", args: []string{"config"}, want: "validate|print"},
		// No fal key: named, before NATS is tried (the URL is unreachable).
		{name: "serve without FAL_KEY", args: []string{"serve", "--nats.url", "nats://127.0.0.1:1"}, want: `fal.key: no fal key: set FAL_KEY="<key id>:<key secret>"`},
		{name: "config validate without FAL_KEY", args: []string{"config", "validate"}, want: "fal.key: no fal key: set FAL_KEY="},
		{name: "serve with a key without colon", env: []string{"FAL_KEY=nocolon"}, args: []string{"serve", "--nats.url", "nats://127.0.0.1:1"}, want: "fal.key: has no ':'"},
		{name: "config validate with a key without colon", env: []string{"FAL_KEY=nocolon"}, args: []string{"config", "validate"}, want: "fal.key: has no ':'"},
		{name: "dev with a fal URL", args: []string{"dev", "--fal.queue_url", "https://queue.example.com"}, want: "--fal.queue_url: dev points fal at its simulator"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			cmd := exec.Command(binPath, tc.args...)
			cmd.Env = append(envWithoutFalKey(), tc.env...)
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee)
			require.Equal(t, 2, ee.ExitCode(), out.String())
			require.Contains(t, out.String(), tc.want)
		})
	}
}

func TestServeUnreachableNATSExit3(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, binPath, "serve", "--nats.url", "nats://127.0.0.1:1", "--nats.connect_timeout", "500ms",
		"--webhook.listen", "127.0.0.1:0", "--admin.listen", "127.0.0.1:0")
	cmd.Env = append(envWithoutFalKey(), "FAL_KEY=test-id:test-secret")
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 3, ee.ExitCode(), out.String())
}

func TestConfigPrintRedactsSecrets(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	cmd := exec.Command(binPath, "config", "print", "--fal.key", "id:supersecret")
	cmd.Env = append(os.Environ(), "FAL_KEY=")
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Run(), out.String())
	require.NotContains(t, out.String(), "supersecret")
	require.Contains(t, out.String(), "queue_url")
}

// envWithoutFalKey is the environment without any variable that sets the
// fal key.
func envWithoutFalKey() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "FALBRIDGE_FAL_KEY":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func TestConfigValidateWithKey(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	cmd := exec.Command(binPath, "config", "validate")
	cmd.Env = append(envWithoutFalKey(), "FAL_KEY=some-id:some-secret")
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Run(), out.String())
	require.Contains(t, out.String(), "config ok")
}

func TestHelpAndVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		args  []string
		want  []string
		avoid []string
	}{
		{name: "help publish", args: []string{"help", "publish"}, want: []string{"Usage: falbridge publish", "--model"}},
		{name: "help serve", args: []string{"help", "serve"}, want: []string{"Usage: falbridge serve", "FAL_KEY", "falbridge-data", "--nats.url"}},
		{name: "config help lists flags", args: []string{"config", "--help"}, want: []string{"Usage: falbridge config validate|print", "--config", "--limits.workers"}},
		{name: "dev help hides the fal URLs dev replaces", args: []string{"dev", "--help"}, want: []string{"Usage: falbridge dev", "--sim.addr"},
			avoid: []string{"--fal.queue_url", "https://queue.fal.run"}},
		{name: "max_deliver counts submit attempts", args: []string{"serve", "--help"}, want: []string{"--consumer.max_deliver", "submit attempts"}},
		{name: "--version", args: []string{"--version"}, want: []string{"falbridge "}},
		{name: "-v", args: []string{"-v"}, want: []string{"falbridge "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(binPath, tt.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			require.NoError(t, cmd.Run(), stderr.String())
			for _, w := range tt.want {
				require.Contains(t, stdout.String(), w)
			}
			for _, a := range tt.avoid {
				require.NotContains(t, stdout.String(), a)
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
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

// TestBinaryLinksNoTestCode: the falbridge binary does not link the testing
// package (the simulator's test server once put it there, with httptest).
func TestBinaryLinksNoTestCode(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, pkg := range strings.Fields(string(out)) {
		require.NotContains(t, []string{"testing", "net/http/httptest", "github.com/stretchr/testify/require"}, pkg)
	}
}

// TestImportsPointOneWay: the wire contracts (publisher) and the fal client
// know nothing of the engine or its configuration; config knows nothing of
// the engine; the simulator stands alone.
func TestImportsPointOneWay(t *testing.T) {
	t.Parallel()
	const mod = "github.com/falbridge/falbridge/"
	forbidden := map[string][]string{
		"publisher":       {"config", "consumer", "falclient", "internal/service", "internal/console", "internal/falsim"},
		"falclient":       {"config", "consumer", "publisher", "internal/service", "internal/console", "internal/falsim"},
		"config":          {"consumer", "internal/service", "internal/console"},
		"consumer":        {"internal/service", "internal/console", "internal/falsim"},
		"internal/falsim": {"config", "consumer", "publisher", "falclient", "internal/service"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", mod+pkg).CombinedOutput()
		require.NoError(t, err, "%s", out)
		deps := strings.Fields(string(out))
		for _, b := range bad {
			require.NotContains(t, deps, mod+b, "%s must not depend on %s", pkg, b)
		}
	}
}
