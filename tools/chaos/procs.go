package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// procs is the registry of every process the harness starts. Stop ends
// them by PID only (never by name), so a run cannot touch anything it did
// not start; Pdeathsig also kills them if the harness itself dies.
type procs struct {
	mu   sync.Mutex
	live map[int]*proc
}

// proc is one started process and the channel closed when it has exited.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done
}

func newProcs() *procs { return &procs{live: map[int]*proc{}} }

// start runs bin with args, stdout and stderr appended to logPath.
func (ps *procs) start(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	lf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	ps.mu.Lock()
	ps.live[cmd.Process.Pid] = p
	ps.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		ps.mu.Lock()
		delete(ps.live, cmd.Process.Pid)
		ps.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// signal sends sig to the process by its PID; a process that already
// exited is not an error.
func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL and waits for exit.
func (p *proc) stop(grace time.Duration) {
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.kill()
}

// kill sends SIGKILL and waits (bounded) for the exit.
func (p *proc) kill() {
	p.signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stopAll ends every process still running, SIGTERM first, in parallel.
func (ps *procs) stopAll(grace time.Duration) {
	ps.mu.Lock()
	all := make([]*proc, 0, len(ps.live))
	for _, p := range ps.live {
		all = append(all, p)
	}
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Go(func() { p.stop(grace) })
	}
	wg.Wait()
}

// build compiles the three binaries into dir: falbridge from fbSrc (a
// checkout of this repository, possibly an older commit), falsim from
// this repository, and nats-server at the version this module requires.
func build(ctx context.Context, repo, fbSrc, dir string) error {
	steps := []struct {
		wd, out, pkg string
	}{
		{fbSrc, "falbridge", "./cmd/falbridge"},
		{repo, "falsim", "./cmd/falsim"},
		{repo, "nats-server", "github.com/nats-io/nats-server/v2"},
	}
	for _, s := range steps {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, s.out), s.pkg)
		cmd.Dir = s.wd
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s in %s: %w\n%s", s.pkg, s.wd, err, out)
		}
	}
	return nil
}

// freePorts reserves n distinct loopback ports. They are released before
// use, so a race with another program is possible but unlikely.
func freePorts(n int) ([]int, error) {
	var (
		ls    []net.Listener
		ports []int
	)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitHTTP polls url until it answers 200, for at most d; it gives up
// early when p (if not nil) exits.
func waitHTTP(ctx context.Context, url string, d time.Duration, p *proc) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var exited <-chan struct{}
	if p != nil {
		exited = p.done
	}
	for {
		if code, err := httpGetCode(ctx, url); err == nil && code == 200 {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("wait for %s: %s exited", url, p.name)
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", url, errors.Join(ctx.Err(), context.Cause(ctx)))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
