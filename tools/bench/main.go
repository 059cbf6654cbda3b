package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "naive":
		err = runNaive(ctx, os.Args[2:])
	case len(os.Args) > 1 && os.Args[1] == "serve-profiled":
		err = runProfServe(ctx, os.Args[2:])
	default:
		err = runBench(ctx, os.Stdout)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// envInt reads a positive integer from the environment, or def.
func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// loadSettings reads BENCH_* variables; BENCH_QUICK=1 picks the short run.
func loadSettings() settings {
	s := settings{
		quick: os.Getenv("BENCH_QUICK") == "1",
		bin:   cmpOr(os.Getenv("BENCH_BIN"), "bin"),
		kinds: []string{kindWebhook, kindPoll, kindNaive},
	}
	jobs, naive, rounds, pending, lat, tail := 20000, 4000, 3, 100000, 15*time.Second, 40*time.Second
	if s.quick {
		jobs, naive, rounds, pending, lat, tail = 4000, 800, 1, 10000, 5*time.Second, 15*time.Second
	}
	s.jobs = envInt("BENCH_JOBS", jobs)
	s.naiveJobs = envInt("BENCH_NAIVE_JOBS", naive)
	s.rounds = envInt("BENCH_ROUNDS", rounds)
	s.pending = envInt("BENCH_PENDING", pending)
	if os.Getenv("BENCH_PENDING") == "0" {
		s.pending = 0 // no pending-jobs mode
	}
	s.latencyFor = envDuration("BENCH_LATENCY_PHASE", lat)
	s.tailMax = envDuration("BENCH_TAIL_MAX", tail)
	s.tailMin = envDuration("BENCH_TAIL_MIN", 0)
	s.tailMax = max(s.tailMax, s.tailMin)
	s.grace = envDuration("BENCH_WEBHOOK_GRACE", 5*time.Second)
	s.pendingGrace = 10 * time.Minute
	s.modelLatency = envDuration("BENCH_MODEL_LATENCY", 200*time.Millisecond)
	s.profileDir = os.Getenv("BENCH_PROFILE")
	s.subjects = os.Getenv("BENCH_SUBJECTS") == "1"
	if k := os.Getenv("BENCH_KINDS"); k != "" {
		s.kinds = strings.Split(k, ",")
	}
	return s
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// build compiles falbridge, the simulator and nats-server (at the version
// in go.mod) into s.bin.
func build(ctx context.Context, s settings, out io.Writer) error {
	for _, args := range [][]string{
		{"build", "-trimpath", "-o", s.bin + "/", "./cmd/falbridge", "./cmd/falsim"},
		{"build", "-trimpath", "-o", filepath.Join(s.bin, "nats-server"), "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.CommandContext(ctx, cmpOr(os.Getenv("GO"), "go"), args...)
		cmd.Stdout, cmd.Stderr = out, os.Stderr
		fmt.Fprintln(out, "$ go", strings.Join(args, " "))
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go %s: %w", strings.Join(args, " "), err)
		}
	}
	return nil
}

func runBench(ctx context.Context, out io.Writer) (err error) {
	s := loadSettings()
	if err := build(ctx, s, out); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "falbridge-bench-")
	if err != nil {
		return err
	}
	ps := &procs{}
	// Every process started is stopped by PID on every way out, a panic
	// included; the scratch directory goes with them unless the run failed.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
		ps.stopAll()
		switch {
		case err == nil && os.Getenv("BENCH_KEEP") == "1":
			fmt.Fprintln(out, "bench: logs kept in", work)
		case err == nil:
			os.RemoveAll(work)
		default:
			fmt.Fprintln(os.Stderr, "bench: logs kept in", work)
		}
	}()
	host, _ := os.Hostname()
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Fprintf(out, "\nmachine: %s, %d CPUs (shared with everything else on it; load average at start %s); model run time %s; %d round(s)\n",
		host, runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:min(3, len(strings.Fields(string(load))))], " "), s.modelLatency, s.rounds)
	fmt.Fprintf(out, "jobs per throughput phase: %d (naive: %d); polling.webhook_grace %s\n\n", s.jobs, s.naiveJobs, s.grace)

	all := map[string][]*result{}
	n := 0
	for round := range s.rounds {
		// Interleaved, and the order rotated each round, so that a slow
		// spell of the machine does not land on one kind only.
		for i := range s.kinds {
			kind := s.kinds[(i+round)%len(s.kinds)]
			n++
			dir := filepath.Join(work, fmt.Sprintf("%02d-%s", n, kind))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			r, err := runOne(ctx, ps, s, kind, dir, "", "", 0)
			if err != nil {
				return fmt.Errorf("round %d %s: %w", round+1, kind, err)
			}
			fmt.Fprintf(out, "round %d %-18s %6.0f jobs/s e2e, %6.0f steady, %.2f CPU-s/1k, lost %d dup %d errors %d; results at %s\n",
				round+1, kind, r.e2eRate, r.steadyRate, sum(r.cpu), r.lost, r.duplicated, r.errors, r.curve)
			if r.timers != "" {
				fmt.Fprintln(out, "  "+r.timers)
			}
			if r.subjects != nil {
				printTap(out, kind, r.subjects, r.jobs)
			}
			all[kind] = append(all[kind], r)
		}
	}
	printTable(out, s, all)

	var bad []string
	for kind, rs := range all {
		for _, r := range rs {
			if r.lost != 0 || r.duplicated != 0 || r.errors != 0 {
				bad = append(bad, fmt.Sprintf("%s: lost %d, duplicated %d, error events %d", kind, r.lost, r.duplicated, r.errors))
			}
		}
	}

	if s.pending > 0 {
		dir := filepath.Join(work, "pending")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		st, err := startStack(ctx, ps, s.bin, stackOptions{kind: kindWebhook, dir: dir, modelLatency: time.Hour, grace: s.pendingGrace})
		if err != nil {
			return fmt.Errorf("pending: %w", err)
		}
		pr, err := pendingMode(ctx, st, s.pending)
		st.stop()
		if err != nil {
			return fmt.Errorf("pending: %w", err)
		}
		printPending(out, pr)
		if pr.submits != int64(pr.jobs) {
			bad = append(bad, fmt.Sprintf("pending: %d submits for %d triggers", pr.submits, pr.jobs))
		}
		if pr.timers < int64(pr.jobs) {
			bad = append(bad, fmt.Sprintf("pending: %d timers for %d pending jobs after %.0f s", pr.timers, pr.jobs, pr.timersAfter))
		}
	}

	if s.profileDir != "" {
		if err := profileRun(ctx, ps, s, work, all, out); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	if len(bad) > 0 {
		return errors.New("wrong counts:\n  " + strings.Join(bad, "\n  "))
	}
	return nil
}

// runOne measures one kind on a fresh instance. With cpuProfile set,
// falbridge runs as `bench serve-profiled` and is profiled over the
// throughput phase and its tail; nats-server is profiled too, over
// natsProfileFor from the phase's start, into natsProfile.
func runOne(ctx context.Context, ps *procs, s settings, kind, dir, cpuProfile, natsProfile string, natsProfileFor time.Duration) (*result, error) {
	st, err := startStack(ctx, ps, s.bin, stackOptions{kind: kind, dir: dir, modelLatency: s.modelLatency, grace: s.grace,
		cpuProfile: cpuProfile, natsProfile: natsProfile != ""})
	if err != nil {
		return nil, err
	}
	defer st.stop()
	jobs := s.jobs
	if kind == kindNaive {
		jobs = s.naiveJobs
	}
	var prof func(bool)
	natsDone := make(chan error, 1)
	fetching := false
	if cpuProfile != "" {
		sig := signalProfile(st.sut)
		prof = func(start bool) {
			sig(start)
			switch {
			case start && natsProfile != "":
				fetching = true
				go func() {
					natsDone <- st.fetchTo(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", st.natsProfileURL, int(natsProfileFor.Seconds())), natsProfile)
				}()
			case !start && fetching:
				// nats-server's profile has a fixed length; the half-load
				// phase waits for its end so as not to be in it.
				fetching = false
				if err := <-natsDone; err != nil {
					fmt.Fprintln(os.Stderr, "bench: nats-server profile:", err)
				}
			}
		}
	}
	r, err := measure(ctx, st, s, jobs, prof)
	if fetching {
		// measure failed between start and end: the fetch ends by itself
		// after natsProfileFor; wait so that no goroutine outlives the
		// instance.
		<-natsDone
	}
	return r, err
}

// profileRun measures falbridge-webhook once more, as `bench serve-profiled`,
// with a CPU profile of its throughput phase and tail, and prints its top.
func profileRun(ctx context.Context, ps *procs, s settings, work string, all map[string][]*result, out io.Writer) error {
	if err := os.MkdirAll(s.profileDir, 0o755); err != nil {
		return err
	}
	dir := filepath.Join(work, "profile")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	file, err := filepath.Abs(filepath.Join(s.profileDir, "falbridge-webhook.cpu.pprof"))
	if err != nil {
		return err
	}
	natsFile := filepath.Join(filepath.Dir(file), "nats-server.cpu.pprof")
	// nats-server's profile has a fixed length: the throughput phase as
	// long as the rounds measured it, and the longest tail.
	natsFor := 10*time.Second + s.tailMax
	var rates []float64
	for _, r := range all[kindWebhook] {
		rates = append(rates, r.e2eRate)
	}
	if m := median(rates); m > 0 {
		natsFor = time.Duration(float64(s.jobs)/m*float64(time.Second)) + s.tailMax
	}
	r, err := runOne(ctx, ps, s, kindWebhook, dir, file, natsFile, natsFor)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nCPU profile of falbridge (webhook, %d jobs, %.0f jobs/s e2e, %.2f CPU-s/1k in falbridge): %s\n",
		r.jobs, r.e2eRate, r.cpu[kindWebhook], file)
	fmt.Fprintf(out, "nats-server's, over the first %s of the same phase and its tail: %s\n", natsFor.Round(time.Second), natsFile)
	for _, f := range []string{file, natsFile} {
		fmt.Fprintf(out, "\n$ go tool pprof -top -nodecount=35 %s\n", f)
		cmd := exec.CommandContext(ctx, cmpOr(os.Getenv("GO"), "go"), "tool", "pprof", "-top", "-nodecount=35", f)
		cmd.Stdout, cmd.Stderr = out, os.Stderr
		if err := cmd.Run(); err != nil {
			return err
		}
	}
	return nil
}

func sum(m map[string]float64) float64 {
	var t float64
	for _, v := range m {
		t += v
	}
	return t
}

// cell formats the median of xs, with the range when there are several.
func cell(xs []float64, prec int) string {
	if len(xs) == 0 {
		return "—"
	}
	m := median(xs)
	if math.IsNaN(m) {
		return "—"
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', prec, 64) }
	if len(xs) == 1 {
		return f(m)
	}
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		lo, hi = math.Min(lo, x), math.Max(hi, x)
	}
	return f(m) + " (" + f(lo) + "–" + f(hi) + ")"
}

// row is one figure of the table: how to read it from a result, its
// precision, and the target for falbridge when there is one.
type row struct {
	name   string
	get    func(*result) float64
	prec   int
	target string
}

func printTable(out io.Writer, s settings, all map[string][]*result) {
	sutCPU := func(r *result) float64 { return r.cpu[r.kind] }
	rows := []row{
		{"jobs/s end to end", func(r *result) float64 { return r.e2eRate }, 0, "≥ 3,000"},
		{"jobs/s steady state (20–80 % of results)", func(r *result) float64 { return r.steadyRate }, 0, ""},
		{"CPU-s / 1,000 jobs: system under test", sutCPU, 2, ""},
		{"CPU-s / 1,000 jobs: nats-server", func(r *result) float64 { return r.cpu["nats-server"] }, 2, ""},
		{"CPU-s / 1,000 jobs: simulator", func(r *result) float64 { return r.cpu["falsim"] }, 2, ""},
		{"CPU-s / 1,000 jobs: all three, tail included", func(r *result) float64 { return sum(r.cpu) }, 2, "≤ 0.6"},
		{"  of it after the last result (tail)", func(r *result) float64 { return sum(r.tailCPU) }, 2, ""},
		{"    tail: system under test", func(r *result) float64 { return r.tailCPU[r.kind] }, 2, ""},
		{"    tail: nats-server", func(r *result) float64 { return r.tailCPU["nats-server"] }, 2, ""},
		{"    tail: seconds until idle", func(r *result) float64 { return r.tailFor.Seconds() }, 1, ""},
		{"fal HTTP calls / job", func(r *result) float64 { return r.falCalls }, 2, "1.00"},
		{"webhooks / job", func(r *result) float64 { return r.webhooks }, 2, ""},
		{"  webhook attempts refused / job (fal retries them)", func(r *result) float64 { return r.webhookRefusals }, 3, ""},
		{"NATS msgs / job sent by the system under test", func(r *result) float64 { return r.msgsSent }, 2, "≤ 6"},
		{"NATS msgs / job delivered to it", func(r *result) float64 { return r.msgsRecv }, 2, ""},
		{"NATS msgs / job, whole server (in + out)", func(r *result) float64 { return r.serverMsgs }, 2, ""},
		{"added latency p50 at half load, ms", func(r *result) float64 { return r.latP50 }, 1, ""},
		{"added latency p99 at half load, ms", func(r *result) float64 { return r.latP99 }, 1, ""},
		{"  (half load, jobs/s)", func(r *result) float64 { return r.latRate }, 0, ""},
		{"peak RSS system under test, MiB", func(r *result) float64 { return float64(r.rss[r.kind]) / 1024 }, 1, ""},
		{"peak RSS nats-server, MiB", func(r *result) float64 { return float64(r.rss["nats-server"]) / 1024 }, 1, ""},
		{"start → ready, ms", func(r *result) float64 { return float64(r.readyIn) / float64(time.Millisecond) }, 0, ""},
		{"lost / duplicated / error events", func(r *result) float64 { return float64(r.lost + r.duplicated + r.errors) }, 0, "0"},
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(out)
	header := "figure\t"
	for _, k := range s.kinds {
		header += k + "\t"
	}
	canRatio := len(all[kindWebhook]) > 0 && len(all[kindNaive]) > 0
	if canRatio {
		header += "webhook / naive\t"
	}
	fmt.Fprintln(tw, header+"target (falbridge)\t")
	for _, r := range rows {
		line := r.name + "\t"
		for _, k := range s.kinds {
			var xs []float64
			for _, res := range all[k] {
				xs = append(xs, r.get(res))
			}
			line += cell(xs, r.prec) + "\t"
		}
		if canRatio {
			var a, b []float64
			for _, res := range all[kindWebhook] {
				a = append(a, r.get(res))
			}
			for _, res := range all[kindNaive] {
				b = append(b, r.get(res))
			}
			ratio := median(a) / median(b)
			if math.IsNaN(ratio) || math.IsInf(ratio, 0) {
				line += "—\t"
			} else {
				line += strconv.FormatFloat(ratio, 'f', 2, 64) + "×\t"
			}
		}
		fmt.Fprintln(tw, line+r.target+"\t")
	}
	tw.Flush()
	fmt.Fprintln(out, "medians over rounds (range in brackets); ratios are of medians; targets are the issue's and printed, not asserted")
}

func printPending(out io.Writer, p *pendingResult) {
	mib := func(k int64) string { return strconv.FormatFloat(float64(k)/1024, 'f', 1, 64) }
	var g, srss, nrss []string
	for i := range p.goroutines {
		g = append(g, strconv.FormatFloat(p.goroutines[i], 'f', 0, 64))
		srss = append(srss, mib(p.sutRSS[i]))
		nrss = append(nrss, mib(p.natsRSS[i]))
	}
	fmt.Fprintf(out, "\npending jobs: %d triggers for a model that runs 1 h (all held at fal), polling.webhook_grace 10m\n", p.jobs)
	fmt.Fprintf(out, "  intake, jobs/s per fifth:      %.0f %.0f %.0f %.0f %.0f (first → last fifth %.2f×); all in %.1f s\n",
		p.fifthRate[0], p.fifthRate[1], p.fifthRate[2], p.fifthRate[3], p.fifthRate[4], p.fifthRate[4]/p.fifthRate[0], p.intakeSeconds)
	fmt.Fprintf(out, "  falbridge goroutines (ready, after each fifth, 3 s later, timers armed): %s\n", strings.Join(g, " "))
	fmt.Fprintf(out, "  falbridge RSS MiB (same points): %s; peak %s (target < 64), reached %.1f s after the first trigger (intake took %.1f s)\n",
		strings.Join(srss, " "), mib(p.sutPeak), p.peakAt, p.intakeSeconds)
	fmt.Fprintf(out, "  nats-server RSS MiB (same points): %s; peak %s\n", strings.Join(nrss, " "), mib(p.natsPeak))
	fmt.Fprintf(out, "  timers in FAL_PENDING %.0f s after the last submit: %d (one per pending job once written)\n", p.timersAfter, p.timers)
	fmt.Fprintf(out, "  submits %d (must equal the triggers), held at fal %d, status polls %d\n", p.submits, p.held, p.polls)
}
