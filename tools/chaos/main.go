// Command chaos drives falbridge through faults as separate processes and
// counts, from outside, what its guarantees promise: no trigger without a
// terminal event, never two, no run billed twice, no wrong outcome.
//
// It builds falbridge, falsim and nats-server (the version go.mod
// requires), then per scenario, from clean state: a NATS cluster (3 nodes
// by default, streams at 3 replicas) or one server, the simulator behind
// the harness's fault proxy (which also counts what fal saw per trigger),
// one webhook ingress reaching any replica, and three falbridge replicas.
// It publishes N triggers with distinct ids and a spread of latencies, some
// designed to fail, injects the scenario's faults, heals, waits for the
// drain, then reads the results stream, the job bucket and the work-queue
// streams and prints a table. Every process is stopped by PID at the end.
//
//	go run ./tools/chaos                         # full: 5000 triggers, every scenario
//	CHAOS_QUICK=1 go run ./tools/chaos           # a few hundred, the telling scenarios
//	go run ./tools/chaos -scenarios kill9,fal -n 1000 -nats 1
//	go run ./tools/chaos -falbridge-src /tmp/old # falbridge built from another checkout
//
// Exit status 1 on any lost, duplicated, twice-billed or wrong job, or a
// scenario that did not drain; 2 on a setup failure.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// replicas is the number of falbridge serve processes per scenario.
const replicas = 3

type options struct {
	n           int
	nodes       int
	window      time.Duration
	drain       time.Duration
	out         string
	logLevel    string
	repo, fbSrc string
}

func main() {
	os.Exit(run())
}

func run() int {
	quick := os.Getenv("CHAOS_QUICK") == "1"
	o := options{n: 5000, nodes: 3, window: 60 * time.Second, drain: 5 * time.Minute}
	if quick {
		o.n, o.window, o.drain = 300, 20*time.Second, 2*time.Minute
	}
	var scen string
	flag.IntVar(&o.n, "n", o.n, "triggers per scenario (CHAOS_N)")
	flag.StringVar(&scen, "scenarios", "", "comma-separated scenarios (default: all; quick: "+strings.Join(quickScenarios, ",")+")")
	flag.IntVar(&o.nodes, "nats", o.nodes, "NATS nodes: 3 (cluster, streams at 3 replicas) or 1 (single server)")
	flag.DurationVar(&o.window, "window", o.window, "how long faults act")
	flag.DurationVar(&o.drain, "drain", o.drain, "how long to wait, after healing, for every terminal event")
	flag.StringVar(&o.out, "out", "", "output directory (default: a new temporary directory)")
	flag.StringVar(&o.logLevel, "log-level", "info", "falbridge log level (debug names every job in the investigation files)")
	flag.StringVar(&o.fbSrc, "falbridge-src", os.Getenv("CHAOS_FALBRIDGE_SRC"), "checkout to build falbridge from (default: this repository)")
	flag.Parse()
	if v, err := strconv.Atoi(os.Getenv("CHAOS_N")); err == nil && v > 0 {
		o.n = v
	}
	if o.nodes != 1 && o.nodes != 3 {
		fmt.Fprintln(os.Stderr, "chaos: -nats must be 1 or 3")
		return 2
	}
	all := allScenarios(o.nodes)
	names := quickScenarios
	if !quick {
		names = nil
		for _, s := range all {
			names = append(names, s.name)
		}
	}
	if scen != "" {
		names = strings.Split(scen, ",")
	}
	var chosen []scenario
	for _, name := range names {
		found := false
		for _, s := range all {
			if s.name == name {
				s.natsNodes = o.nodes
				chosen = append(chosen, s)
				found = true
			}
		}
		if !found {
			fmt.Fprintf(os.Stderr, "chaos: unknown scenario %q\n", name)
			return 2
		}
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	repo, err := repoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	o.repo = repo
	if o.fbSrc == "" {
		o.fbSrc = repo
	}
	if o.out == "" {
		if o.out, err = os.MkdirTemp("", "falbridge-chaos-"); err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 2
		}
	}
	bins := filepath.Join(o.out, "bin")
	logf("building falbridge (%s), falsim and nats-server into %s", o.fbSrc, bins)
	if err := build(ctx, repo, o.fbSrc, bins); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}
	flags, err := serveFlags(filepath.Join(bins, "falbridge"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		return 2
	}

	var rows []row
	status := 0
	for i, sc := range chosen {
		if ctx.Err() != nil {
			break
		}
		r := runScenario(ctx, o, sc, bins, flags, uint64(i+1))
		rows = append(rows, r)
		printTable(os.Stdout, rows[len(rows)-1:])
		if r.setupErr != "" {
			status = max(status, 2)
		} else if r.failed() {
			status = max(status, 1)
		}
	}
	fmt.Printf("\nchaos: N=%d per scenario, NATS nodes=%d, fault window %s, output %s\n", o.n, o.nodes, o.window, o.out)
	printTable(os.Stdout, rows)
	if ctx.Err() != nil {
		fmt.Println("chaos: interrupted")
		return 130
	}
	return status
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s chaos: %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func repoRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		return "", fmt.Errorf("find the repository root: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// serveFlags lists the config keys `falbridge serve --help` knows, so the
// harness can run against older commits lacking some of them.
func serveFlags(bin string) (map[string]bool, error) {
	out, _ := exec.Command(bin, "serve", "--help").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`--([a-z_]+\.[a-z_.]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if !flags["nats.url"] {
		return nil, fmt.Errorf("falbridge serve --help lists no --nats.url:\n%s", out)
	}
	return flags, nil
}

// row is one scenario's counts.
type row struct {
	name, about                string
	nodes                      int
	webhooks                   bool
	n, published               int
	lost, dup, billed2x, wrong int
	ambigSeen, ambigNot        int
	orphanReq, orphanPend      uint64
	notDone                    int
	drain                      time.Duration
	drained                    bool
	panics                     int
	goroutines                 []int
	restarts                   int
	submits, resets            int64
	setupErr                   string
	problems                   []string
}

func (r row) failed() bool {
	return r.lost+r.dup+r.billed2x+r.wrong > 0 || !r.drained
}

func runScenario(ctx context.Context, o options, sc scenario, bins string, flags map[string]bool, seed uint64) (res row) {
	res = row{name: sc.name, about: sc.about, nodes: sc.natsNodes, webhooks: sc.webhooks, n: o.n}
	e := &env{dir: filepath.Join(o.out, sc.name), bins: bins, procs: newProcs(), flags: flags, sc: sc, logLevel: o.logLevel}
	defer e.teardown()
	logf("[%s] setup: %d NATS node(s), %d replicas, %s", sc.name, sc.natsNodes, replicas, map[bool]string{true: "webhooks", false: "polling only"}[sc.webhooks])
	if err := e.setup(ctx); err != nil {
		res.setupErr = err.Error()
		logf("[%s] setup failed: %v", sc.name, err)
		return res
	}
	specs := makeSpecs("c"+strings.ReplaceAll(sc.name, "-", ""), o.n, seed)

	// Faults and publishing start together: triggers arrive all through the
	// window, so faults hit every stage of a job's life.
	fctx, fcancel := context.WithTimeout(ctx, o.window)
	f := &faulter{e: e, rng: rand.New(rand.NewPCG(seed, 42)), log: func(format string, args ...any) {
		logf("[%s] %s", sc.name, fmt.Sprintf(format, args...))
	}}
	faultsDone := make(chan struct{})
	go func() { sc.inject(fctx, f); close(faultsDone) }()
	publish(ctx, e.js, specs, o.window*7/10)
	<-fctx.Done()
	<-faultsDone
	fcancel()
	f.wg.Wait()
	logf("[%s] healing", sc.name)
	if err := e.heal(ctx); err != nil {
		logf("[%s] heal: %v", sc.name, err)
	}
	healed := time.Now()
	for _, s := range specs {
		if s.Published {
			res.published++
		}
	}

	// Drain: every published trigger has a terminal event and the trigger
	// stream is empty. Bounded by o.drain.
	deadline := healed.Add(o.drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		got, err1 := streamMsgs(ctx, e.js, "FAL_RESULTS")
		req, err2 := streamMsgs(ctx, e.js, "FAL_REQUESTS")
		if err1 == nil && err2 == nil && got >= uint64(res.published) && req == 0 {
			res.drained = true
			break
		}
		sleepCtx(ctx, time.Second)
	}
	res.drain = time.Since(healed).Round(100 * time.Millisecond)
	// Timers of finished jobs fire and are acked: give them a bounded while.
	for range 40 {
		if p, err := streamMsgs(ctx, e.js, "FAL_PENDING"); err == nil && p == 0 {
			break
		}
		sleepCtx(ctx, time.Second)
	}
	res.orphanReq, _ = streamMsgs(ctx, e.js, "FAL_REQUESTS")
	res.orphanPend, _ = streamMsgs(ctx, e.js, "FAL_PENDING")
	logf("[%s] drained=%v in %s; reading results", sc.name, res.drained, res.drain)

	events, _, err := readResults(ctx, e.js, "FAL_RESULTS")
	if err != nil {
		logf("[%s] %v", sc.name, err)
	}
	records, err := readRecords(ctx, e.js, "fal_jobs")
	if err != nil {
		logf("[%s] %v", sc.name, err)
	}
	for _, rp := range e.reps {
		res.restarts += rp.starts - 1
		res.goroutines = append(res.goroutines, goroutines(ctx, rp.admin))
	}
	res.submits = int64(len(e.led.byRequest))
	res.resets = e.fal.stats.resetBefore.Load() + e.fal.stats.resetAfter.Load()

	for _, s := range specs {
		evs := events[s.ID]
		accepted, _ := e.led.snapshot(s.ID)
		var why []string
		if s.Published && len(evs) == 0 {
			res.lost++
			why = append(why, "lost")
		}
		if len(evs) > 1 {
			res.dup++
			why = append(why, "duplicate")
		}
		if len(accepted) > 1 {
			res.billed2x++
			why = append(why, "billed twice")
		}
		if len(evs) > 0 {
			if w := wrongOutcome(s, evs[0], accepted); w != "" {
				res.wrong++
				why = append(why, "wrong: "+w)
			}
			if evs[0].Kind == "error" && evs[0].Code == "ambiguous_submit" {
				if len(accepted) > 0 {
					res.ambigSeen++
					// Not a failure (policy fail: billed once, reported), but
					// worth its file: why did no webhook settle it?
					investigate(e, s, "ambiguous", []string{"ambiguous_submit although fal accepted the submit"}, evs, records[s.ID], accepted)
				} else {
					res.ambigNot++
				}
			}
		}
		if len(evs) > 0 && !recordDone(records[s.ID]) {
			res.notDone++
			why = append(why, "record not done")
		}
		if len(why) > 0 {
			res.problems = append(res.problems, s.ID)
			investigate(e, s, "problems", why, evs, records[s.ID], accepted)
		}
	}
	res.panics = countPanics(e)
	return res
}

// wrongOutcome compares a job's terminal event with what the simulator was
// told to do and what it accepted.
func wrongOutcome(s *spec, ev event, accepted []string) string {
	switch {
	case ev.Kind == "result" && s.Fail != "":
		return "a result for a designed failure (" + s.Fail + ")"
	case ev.Kind == "result":
		var out struct {
			Output struct {
				ChaosID string `json:"chaos_id"`
			} `json:"output"`
		}
		if json.Unmarshal(ev.Output, &out) != nil || out.Output.ChaosID != s.ID {
			return "a result with another trigger's output (" + out.Output.ChaosID + ")"
		}
		for _, rid := range accepted {
			if rid == ev.RequestID {
				return ""
			}
		}
		return "a result with a request id fal never gave this trigger (" + ev.RequestID + ")"
	case s.Fail == "" && len(accepted) > 0 && ev.Code != "ambiguous_submit":
		return "error " + ev.Code + " for a run fal completed: " + ev.Message
	}
	return ""
}

func recordDone(rec json.RawMessage) bool {
	var r struct {
		State string `json:"state"`
	}
	return json.Unmarshal(rec, &r) == nil && r.State == "done"
}

func goroutines(ctx context.Context, adminPort int) int {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := httpNewGet(ctx, fmt.Sprintf("http://127.0.0.1:%d/metrics", adminPort))
	resp, err := httpClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			n, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(n)
		}
	}
	return -1
}

func countPanics(e *env) int {
	n := 0
	for _, r := range e.reps {
		f, err := os.Open(r.log)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			if strings.Contains(strings.ToLower(sc.Text()), "panic") {
				n++
			}
		}
		f.Close()
	}
	return n
}

// investigate writes one file per problem id: the trigger, its events and
// record, what fal saw, and every log line naming it or its request ids,
// from every process, sorted by time.
func investigate(e *env, s *spec, kind string, why []string, evs []event, rec json.RawMessage, accepted []string) {
	dir := filepath.Join(e.dir, kind)
	_ = os.MkdirAll(dir, 0o755)
	var b strings.Builder
	_, seen := e.led.snapshot(s.ID)
	fmt.Fprintf(&b, "problem: %s\ntrigger: %s\ndesigned: latency %d ms, fail %q\nfal saw: %d submit attempts at the proxy, %d accepted: %v\n\nevents (%d):\n",
		strings.Join(why, "; "), s.Body, s.LatencyMS, s.Fail, seen, len(accepted), accepted, len(evs))
	for _, ev := range evs {
		fmt.Fprintf(&b, "  seq %d %s %s\n", ev.Seq, ev.Subject, ev.Raw)
	}
	fmt.Fprintf(&b, "\nrecord: %s\n\nlog lines:\n", rec)
	needles := append([]string{s.ID}, accepted...)
	logs, _ := filepath.Glob(filepath.Join(e.dir, "*.log"))
	type line struct{ at, src, text string }
	var lines []line
	for _, lp := range logs {
		f, err := os.Open(lp)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			t := sc.Text()
			for _, nd := range needles {
				if strings.Contains(t, nd) {
					lines = append(lines, line{at: logTime(t), src: filepath.Base(lp), text: t})
					break
				}
			}
		}
		f.Close()
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at < lines[j].at })
	for _, l := range lines {
		fmt.Fprintf(&b, "%s %s\n", l.src, l.text)
	}
	_ = os.WriteFile(filepath.Join(dir, s.ID+".txt"), []byte(b.String()), 0o644)
}

var textTime = regexp.MustCompile(`time=(\S+)`)

// logTime extracts a sortable UTC timestamp from a JSON or text slog line.
func logTime(l string) string {
	var j struct {
		Time time.Time `json:"time"`
	}
	if json.Unmarshal([]byte(l), &j) == nil && !j.Time.IsZero() {
		return j.Time.UTC().Format(time.RFC3339Nano)
	}
	if m := textTime.FindStringSubmatch(l); m != nil {
		if t, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
			return t.UTC().Format(time.RFC3339Nano)
		}
	}
	return ""
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintf(w, "%-12s %-5s %-5s %5s %5s %4s %4s %6s %5s %-9s %-9s %5s %-8s %6s %-12s %4s\n",
		"scenario", "nats", "mode", "N", "lost", "dup", "2xb", "wrong", "ambig", "(fal saw)", "orphans", "!done", "drain", "panics", "goroutines", "rst")
	for _, r := range rows {
		if r.setupErr != "" {
			fmt.Fprintf(w, "%-12s setup failed: %s\n", r.name, r.setupErr)
			continue
		}
		mode := map[bool]string{true: "hook", false: "poll"}[r.webhooks]
		drain := r.drain.String()
		if !r.drained {
			drain = "NO:" + drain
		}
		gs := make([]string, len(r.goroutines))
		for i, g := range r.goroutines {
			gs[i] = strconv.Itoa(g)
		}
		fmt.Fprintf(w, "%-12s %-5d %-5s %5d %5d %4d %4d %6d %5d %-9s %-9s %5d %-8s %6d %-12s %4d %7d %6d\n",
			r.name, r.nodes, mode, r.published, r.lost, r.dup, r.billed2x, r.wrong, r.ambigSeen+r.ambigNot,
			fmt.Sprintf("%d/%d", r.ambigSeen, r.ambigNot), fmt.Sprintf("%d/%d", r.orphanReq, r.orphanPend),
			r.notDone, drain, r.panics, strings.Join(gs, ","), r.restarts, r.submits, r.resets)
	}
}
