package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/falbridge/falbridge/publisher"
)

// maxBatchLine is the longest line publish --batch reads.
const maxBatchLine = 16 << 20

// batchLine is one trigger of a batch file.
type batchLine struct {
	n    int // line number, from 1
	body []byte
	// repeats is the number of an earlier line with the same trigger id, or
	// 0. One id is one job, so such a line would only get the earlier
	// line's event back.
	repeats int
}

// markRepeats sets repeats on every line whose trigger id (its own, else
// <prefix>-<line number>) an earlier line already has.
func markRepeats(lines []batchLine, prefix string) {
	first := map[string]int{}
	for i := range lines {
		t, err := publisher.DecodeTrigger(lines[i].body)
		if err != nil || t.ID == "" {
			continue // an invalid line, or an id of its own line number
		}
		if n, ok := first[t.ID]; ok {
			lines[i].repeats = n
		} else {
			first[t.ID] = lines[i].n
		}
	}
}

// batch is a running publish --batch: its counters, its output and its
// progress line.
type batch struct {
	c     *client
	line  *statusLine
	start time.Time

	mu       sync.Mutex
	out      io.Writer
	outErr   error
	counts   batchCounts
	failures []string // "<id> <code>: <message>" of failed jobs, in order
}

// singleFlags are the publish flags that describe one trigger; a batch
// line is a whole trigger, so they do not mix with --batch.
var singleFlags = []string{"model", "input", "prompt", "image-size", "num-images", "image", "id",
	"metadata", "mode", "priority", "tenant", "job-timeout", "result-subject", "wait", "download"}

func runBatch(ctx context.Context, cc *clientCommand, f *publishFlags, stdout, stderr io.Writer) error {
	o := cc.opts
	for _, name := range singleFlags {
		if cc.fs.Changed(name) {
			return usagef("--%s cannot be used with --batch: each line of the file is a whole trigger", name)
		}
	}
	if f.concurrency < 1 {
		return usagef("--concurrency must be at least 1")
	}
	prefix := f.idPrefix
	if prefix == "" {
		prefix = strings.ToLower(publisher.NewID()[:10])
	} else if !publisher.ValidID(prefix + "-1") {
		return usagef("--id-prefix %q: ids are letters, digits, - and _ (at most %d characters)", prefix, publisher.MaxIDLen)
	}
	lines, err := readBatch(f.batch)
	if err != nil {
		return usagef("--batch: %v", err)
	}
	if len(lines) == 0 {
		return usagef("--batch %s: no triggers (one JSON object per line)", f.batch)
	}
	markRepeats(lines, prefix)
	timeout := o.timeout
	if !cc.fs.Changed("timeout") {
		timeout = 0
	}

	c, err := o.connect()
	if err != nil {
		return err
	}
	defer c.close()

	out, closeOut, err := openOut(f.out, stdout)
	if err != nil {
		return err
	}
	tty := isTerminal(stderr)
	b := &batch{c: c, line: newStatusLine(stderr, tty), start: time.Now(), out: out,
		counts: batchCounts{total: len(lines)}}

	if timeout > 0 {
		var cancelT context.CancelFunc
		ctx, cancelT = context.WithTimeoutCause(ctx, timeout, errors.New("--timeout reached"))
		defer cancelT()
	}
	// A publish that fails for another reason than its trigger (NATS, no
	// stream) stops the batch.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		fatalOnce sync.Once
		fatal     error
	)

	showProgress := tty || !o.json
	pctx, stopProgress := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	if showProgress {
		every := 2 * time.Second
		if tty {
			every = 100 * time.Millisecond
		}
		pwg.Go(func() {
			tick(pctx, every, func(n int) {
				if n == 0 && !tty {
					return
				}
				b.progress(tty)
			})
		})
	}

	next := make(chan batchLine)
	var wg sync.WaitGroup
	for range min(f.concurrency, len(lines)) {
		wg.Go(func() {
			for l := range next {
				if err := b.run(ctx, prefix, l); err != nil {
					fatalOnce.Do(func() { fatal = err; cancel() })
				}
			}
		})
	}
feed:
	for _, l := range lines {
		select {
		case next <- l:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	stopProgress()
	pwg.Wait()
	b.line.Done()
	if err := closeOut(); err != nil && b.outErr == nil {
		b.outErr = err
	}

	b.summary(stderr, o.json, f.out)
	switch {
	case b.outErr != nil:
		return fmt.Errorf("--out %s: %w", f.out, b.outErr)
	case fatal != nil:
		return explain(fatal)
	case ctx.Err() != nil:
		return fmt.Errorf("batch stopped before every trigger finished: %v", context.Cause(ctx))
	case b.counts.failed > 0:
		return jobFailedError{fmt.Sprintf("%d of %d triggers failed", b.counts.failed, b.counts.total)}
	}
	return nil
}

// run publishes one line and waits for its event. It returns an error only
// when the batch cannot go on (a publish failed for a reason other than the
// trigger itself).
func (b *batch) run(ctx context.Context, prefix string, l batchLine) error {
	t, err := publisher.DecodeTrigger(l.body)
	id := ""
	if t != nil {
		id = t.ID
		if id == "" {
			id = fmt.Sprintf("%s-%d", prefix, l.n)
			t.ID = id
		}
	}
	if err == nil && l.repeats > 0 {
		err = fmt.Errorf("%w: id %q is already line %d's; one id is one job, so this line would get line %d's event", publisher.ErrInvalidTrigger, id, l.repeats, l.repeats)
	}
	if err == nil {
		_, _, err = b.c.pub.Publish(ctx, t)
	}
	if errors.Is(err, publisher.ErrInvalidTrigger) {
		// Not sent: falbridge would answer the same. The error event is
		// made here, in the same schema.
		if id == "" {
			id = fmt.Sprintf("%s-%d", prefix, l.n)
		}
		b.finish(nil, publisher.RejectedError(id, publisher.CodeInvalidTrigger,
			fmt.Sprintf("line %d: %v (not published)", l.n, err), l.body, time.Now()), false)
		return nil
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("line %d: %w", l.n, err)
	}
	b.mu.Lock()
	b.counts.pending++
	b.mu.Unlock()
	res, err := b.c.pub.Await(ctx, id)
	var failed *publisher.Error
	switch {
	case errors.As(err, &failed):
		b.finish(nil, failed, true)
	case err != nil:
		// ctx done (interrupted, --timeout): the job stays pending.
		if ctx.Err() != nil {
			return nil
		}
		return err
	default:
		b.finish(res, nil, true)
	}
	return nil
}

// finish counts an event and writes it to the output.
func (b *batch) finish(res *publisher.Result, failed *publisher.Error, wasPending bool) {
	var v any = res
	if failed != nil {
		v = failed
	}
	line, err := json.Marshal(v)
	b.mu.Lock()
	defer b.mu.Unlock()
	if wasPending {
		b.counts.pending--
	}
	if failed != nil {
		b.counts.failed++
		b.failures = append(b.failures, fmt.Sprintf("%s  %s: %s", failed.ID, failed.Code, failed.Message))
	} else {
		b.counts.done++
	}
	if err == nil && b.outErr == nil {
		text := batchProgressText(b.counts, time.Since(b.start), b.line.tty, frameAt(time.Since(b.start)), b.line.width)
		b.line.Around(func() { _, err = b.out.Write(append(line, '\n')) }, text)
	}
	if err != nil && b.outErr == nil {
		b.outErr = err
	}
}

func (b *batch) progress(tty bool) {
	b.mu.Lock()
	c := b.counts
	b.mu.Unlock()
	text := batchProgressText(c, time.Since(b.start), tty, frameAt(time.Since(b.start)), b.line.width)
	if tty {
		b.line.Set(text)
	} else {
		b.line.Println(text)
	}
}

// maxListedFailures is how many failures the summary names.
const maxListedFailures = 10

func (b *batch) summary(w io.Writer, asJSON bool, out string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.counts
	elapsed := time.Since(b.start)
	unfinished := c.total - c.done - c.failed
	if asJSON {
		_ = printJSON(w, map[string]any{"total": c.total, "done": c.done, "failed": c.failed,
			"unfinished": unfinished, "elapsed_seconds": elapsed.Seconds()})
		return
	}
	rate := float64(c.done+c.failed) / max(elapsed.Seconds(), 1e-9)
	fmt.Fprintf(w, "batch: %d triggers in %s: %d done, %d failed", c.total, roundDuration(elapsed), c.done, c.failed)
	if unfinished > 0 {
		fmt.Fprintf(w, ", %d unfinished (%d of them published)", unfinished, c.pending)
	}
	fmt.Fprintf(w, " (%.1f/s)\n", rate)
	for i, f := range b.failures {
		if i == maxListedFailures {
			fmt.Fprintf(w, "  … and %d more failures\n", len(b.failures)-i)
			break
		}
		fmt.Fprintf(w, "  failed %s\n", shorten(f, 200))
	}
	if out != "-" {
		fmt.Fprintf(w, "events: %s\n", out)
	}
}

// readBatch reads the non-blank lines of name (- for stdin).
func readBatch(name string) ([]batchLine, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxBatchLine)
	var lines []batchLine
	for n := 1; sc.Scan(); n++ {
		body := []byte(strings.TrimSpace(sc.Text()))
		if len(body) > 0 {
			lines = append(lines, batchLine{n: n, body: body})
		}
	}
	return lines, sc.Err()
}

// openOut opens --out: - is stdout.
func openOut(name string, stdout io.Writer) (io.Writer, func() error, error) {
	if name == "-" || name == "" {
		return stdout, func() error { return nil }, nil
	}
	f, err := os.Create(name)
	if err != nil {
		return nil, nil, usagef("--out: %v", err)
	}
	// Unbuffered: each event is one write, so the file can be followed.
	return f, f.Close, nil
}
