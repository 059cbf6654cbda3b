package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The README's runnable examples are its fenced blocks whose info string is
// "sh run" (the block is a script) or "console run" (the lines after "$ ",
// with their "\" continuations, are the script; the rest is output shown to
// the reader). TestREADME runs them in order against one falbridge dev.

// readmeBlock is one runnable block of the README.
type readmeBlock struct {
	line   int // of the opening fence, from 1
	script string
}

// readmeBlocks returns the runnable blocks of a Markdown text, and the
// bodies of its go blocks.
func readmeBlocks(md string) (run []readmeBlock, goBlocks []string) {
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		info, ok := strings.CutPrefix(lines[i], "```")
		if !ok {
			continue
		}
		start := i
		var body []string
		for i++; i < len(lines) && lines[i] != "```"; i++ {
			body = append(body, lines[i])
		}
		text := strings.Join(body, "\n") + "\n"
		switch strings.Join(strings.Fields(info), " ") {
		case "sh run":
			run = append(run, readmeBlock{line: start + 1, script: text})
		case "console run":
			run = append(run, readmeBlock{line: start + 1, script: consoleScript(text)})
		case "go":
			goBlocks = append(goBlocks, text)
		}
	}
	return run, goBlocks
}

// consoleScript keeps the commands of a console block: lines starting with
// "$ ", and the lines that continue them after a trailing backslash.
func consoleScript(block string) string {
	var b strings.Builder
	cont := false
	for l := range strings.Lines(block) {
		l = strings.TrimRight(l, "\n")
		switch {
		case cont:
			b.WriteString(l + "\n")
		case strings.HasPrefix(l, "$ "):
			b.WriteString(strings.TrimPrefix(l, "$ ") + "\n")
		default:
			continue
		}
		cont = strings.HasSuffix(l, "\\")
	}
	return b.String()
}

func TestConsoleScript(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, block, want string
	}{
		{name: "commands and output", block: "$ a\nout 1\n$ b c\nout 2\n", want: "a\nb c\n"},
		{name: "continuation", block: "$ curl x \\\n    -d y\n{\"ok\":1}\n", want: "curl x \\\n    -d y\n"},
		{name: "output that looks like a continuation", block: "$ a\nout \\\n$ b\n", want: "a\nb\n"},
		{name: "no commands", block: "just output\n", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, consoleScript(tt.block))
		})
	}
}

func TestReadmeBlocks(t *testing.T) {
	t.Parallel()
	md := "text\n```sh run\necho 1\n```\n```sh\nnot run\n```\n```console run\n$ echo 2\n2\n```\n```go\npackage main\n```\n"
	run, goBlocks := readmeBlocks(md)
	require.Equal(t, []readmeBlock{{line: 2, script: "echo 1\n"}, {line: 8, script: "echo 2\n"}}, run)
	require.Equal(t, []string{"package main\n"}, goBlocks)
}

var (
	simLine  = regexp.MustCompile(`(?m)^\s+fal sim:\s+(http://\S+)`)
	tryBlock = regexp.MustCompile(`(?s)Try it, in another terminal:\n(.*?)\nor with the nats CLI:`)
)

// TestREADME runs every runnable block of the README, in order, as a
// newcomer would: in a copy of the source tree (what a clone holds), with
// the falbridge under test on PATH, against falbridge dev. dev listens on
// random ports, so the README's default addresses are replaced by dev's
// (NATS_URL is set too). make install goes to a GOBIN of the test's own.
// It also runs the commands dev's banner suggests, and checks that the
// README's Go example is examples/quickstart/main.go.
func TestREADME(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	md, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	blocks, goBlocks := readmeBlocks(string(md))
	require.GreaterOrEqual(t, len(blocks), 8, "the README's runnable blocks")

	example, err := os.ReadFile(filepath.Join(root, "examples/quickstart/main.go"))
	require.NoError(t, err)
	require.Contains(t, goBlocks, string(example), "the README's Go example is examples/quickstart/main.go, verbatim")

	work := t.TempDir()
	src := filepath.Join(work, "falbridge")
	copyTree(t, root, src)
	gobin := filepath.Join(work, "gobin")

	d := startDev(t, "--sim.latency", "300ms")
	m := simLine.FindStringSubmatch(d.banner)
	require.NotNil(t, m, "dev's banner names the simulator: %s", d.banner)
	simURL := m[1]
	replacer := strings.NewReplacer("http://127.0.0.1:8787", simURL, "nats://127.0.0.1:4222", d.natsURL)

	env := []string{
		"PATH=" + gobin + string(os.PathListSeparator) + filepath.Dir(binPath) + string(os.PathListSeparator) + os.Getenv("PATH"),
		"GOBIN=" + gobin,
		"NATS_URL=" + d.natsURL,
		"NATS_CREDS=",
	}
	for _, kv := range envWithoutFalKey() {
		name, _, _ := strings.Cut(kv, "=")
		if name != "PATH" && name != "GOBIN" && name != "NATS_URL" && name != "NATS_CREDS" {
			env = append(env, kv)
		}
	}
	run := func(what, script string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
		cmd.Dir, cmd.Env = src, env
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.Stdin = strings.NewReader("") // nothing waits for a keyboard
		err := cmd.Run()
		require.NoError(t, ctx.Err(), "%s did not finish in 3m:\n%s\n%s", what, script, out.String())
		require.NoError(t, err, "%s failed:\n%s\noutput:\n%s", what, script, out.String())
		t.Logf("%s:\n%s", what, out.String())
	}

	for _, b := range blocks {
		run("README.md:"+strconv.Itoa(b.line), replacer.Replace(b.script))
	}
	_, err = os.Stat(filepath.Join(gobin, "falbridge"))
	require.NoError(t, err, "make install put falbridge in GOBIN")

	// The banner's suggestions, as printed (they name this binary by its
	// path: it is not on dev's PATH).
	tm := tryBlock.FindStringSubmatch(d.banner)
	require.NotNil(t, tm, "dev's banner has commands to try: %s", d.banner)
	for l := range strings.Lines(tm[1]) {
		l = strings.TrimSpace(l)
		if strings.Contains(l, " watch") {
			l += " --timeout 1s" // it runs until Ctrl-C
		}
		run("dev banner: "+l, l)
	}
}

// copyTree copies the files git would put in a clone of root (tracked, and
// new ones not ignored, as they are in the working tree) to dst. Outside a
// git checkout (a source archive) it copies every file but build output.
func copyTree(t *testing.T, root, dst string) {
	t.Helper()
	var names []string
	if out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output(); err == nil {
		names = strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	} else {
		require.NoError(t, filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			if d.IsDir() && (rel == ".git" || rel == "bin") {
				return filepath.SkipDir
			}
			if !d.IsDir() {
				names = append(names, rel)
			}
			return nil
		}))
	}
	for _, name := range names {
		from := filepath.Join(root, name)
		fi, err := os.Lstat(from)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the working tree, or a link
		}
		to := filepath.Join(dst, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(to), 0o755))
		data, err := os.ReadFile(from)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(to, data, fi.Mode().Perm()))
	}
}

// TestMakeDevCtrlC: make dev, then Ctrl-C (SIGINT to the whole foreground
// process group, as a terminal sends it), ends quietly: no make error, no
// warning from a clean shutdown.
func TestMakeDevCtrlC(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatalf("make is needed to build falbridge as the README says: %v", err)
	}
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	src := filepath.Join(t.TempDir(), "falbridge")
	copyTree(t, root, src)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "dev", "DEV_FLAGS=--nats.embedded.listen 127.0.0.1:0 --webhook.listen 127.0.0.1:0 --admin.listen 127.0.0.1:0 --sim.addr 127.0.0.1:0")
	cmd.Dir = src
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "Press Ctrl-C to stop.") }, 90*time.Second, 100*time.Millisecond, out.String())

	require.NoError(t, syscall.Kill(-cmd.Process.Pid, syscall.SIGINT))
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("make dev did not end within 30s of Ctrl-C:\n%s", out.String())
	}
	require.Contains(t, out.String(), "shutting down")
	require.NotContains(t, out.String(), "make: ***", "make reports no error after a clean stop")
	require.NotContains(t, out.String(), "nats disconnected")
	require.NotContains(t, out.String(), "level=WARN")
}

func TestCopyTreeOutsideGit(t *testing.T) {
	t.Parallel()
	root, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	for _, name := range []string{"README.md", "cmd/x/main.go", "bin/falbridge", ".git/HEAD"} {
		require.NoError(t, os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, name), []byte(name), 0o644))
	}
	copyTree(t, root, dst)
	for name, want := range map[string]bool{"README.md": true, "cmd/x/main.go": true, "bin/falbridge": false, ".git/HEAD": false} {
		_, err := os.Stat(filepath.Join(dst, name))
		require.Equal(t, want, err == nil, name)
	}
}

// TestREADMEGoVersion: the Go version the README asks for is go.mod's.
func TestREADMEGoVersion(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	require.NoError(t, err)
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(mod)
	require.NotNil(t, m, "go.mod has a go line")
	md, err := os.ReadFile(filepath.Join(root, "README.md"))
	require.NoError(t, err)
	require.Contains(t, string(md), "You need **Go "+string(m[1])+" or newer**", "the quick start states go.mod's Go version")
}
