package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/falbridge/falbridge/publisher"
)

const publishUsage = `
Usage: falbridge publish --model MODEL [input flags] [--wait] [flags]
       falbridge publish --batch FILE.jsonl [--out FILE] [flags]

Publish a trigger on fal.requests.<id> (with Nats-Msg-Id: <id>, so a
republish of the same id is dropped), and with --wait show its progress and
print its result. The input is --input with the shortcut flags applied on
top; --id defaults to a random id.

With --batch, every line of FILE (- for stdin) is a trigger in any accepted
shape; see "publish --batch" in the README.

Examples:
  falbridge publish -m fal-ai/flux/schnell --prompt "a red fox in snow" --num-images 2 --wait
  falbridge publish -m fal-ai/flux/dev --input @input.json --id fox-1 --wait --download out/
  falbridge publish --batch prompts.jsonl --out results.jsonl
`

// publishTimeoutDefault is --timeout of publish and result.
const publishTimeoutDefault = 10 * time.Minute

// publishFlags are publish's own flags.
type publishFlags struct {
	model, input, prompt, imageSize, image string
	numImages                              int
	numImagesSet                           bool
	id, metadata, mode, priority, tenant   string
	resultSubject                          string
	jobTimeout                             time.Duration
	wait, progress                         bool
	download                               string

	batch, out, idPrefix string
	concurrency          int
}

func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cc := newClientCommand("publish", publishUsage, publishTimeoutDefault,
		"how long to wait for the result (with --batch: for the whole batch, and no limit unless given)", stderr)
	fs := cc.fs
	var f publishFlags
	fs.StringVarP(&f.model, "model", "m", "", "fal model (endpoint) `ID`, e.g. fal-ai/flux/schnell (required)")
	fs.StringVarP(&f.input, "input", "i", "", "model input: a `JSON` object, @FILE.json, or @- for stdin")
	fs.StringVarP(&f.prompt, "prompt", "p", "", "set input.prompt to `TEXT`")
	fs.StringVar(&f.imageSize, "image-size", "", "set input.image_size: a `SIZE` preset (square_hd, landscape_4_3, …) or WIDTHxHEIGHT")
	fs.IntVarP(&f.numImages, "num-images", "n", 0, "set input.num_images to `N`")
	fs.StringVar(&f.image, "image", "", "set input.image_url to `URL`")
	fs.StringVar(&f.id, "id", "", "trigger `ID`: letters, digits, - and _ (default: random)")
	fs.StringVar(&f.metadata, "metadata", "", "`JSON` (or @FILE) echoed back on the result or error event")
	fs.StringVar(&f.mode, "mode", "", "queue (default), sync or stream")
	fs.StringVar(&f.priority, "priority", "", "high, normal (default) or low: admission order among a tenant's jobs waiting under the bridge's caps; low is also fal's low queue priority")
	fs.StringVar(&f.tenant, "tenant", "", "the trigger's tenant, for the bridge's per-tenant cap and fair turns (letters, digits, - and _)")
	fs.DurationVar(&f.jobTimeout, "job-timeout", 0, "the job's deadline (the trigger's timeout), counted from when falbridge receives it (default: the bridge's polling.job_deadline, 1h)")
	fs.StringVar(&f.resultSubject, "result-subject", "", "also send the result or error event to `SUBJECT` (core NATS, at most once)")
	fs.BoolVarP(&f.wait, "wait", "w", false, "wait for the result: show progress, print the result; exit 1 if the job fails")
	fs.BoolVar(&f.progress, "progress", false, "ask falbridge for live progress (the trigger's \"progress\": true: one more fal call, a status stream held while the job runs); on with --wait when progress is shown (not --json off a terminal), --progress=false turns it off")
	fs.StringVar(&f.download, "download", "", "save the output's files (images, videos) into `DIR` as <id>_<n>.<ext> (implies --wait)")
	fs.StringVar(&f.batch, "batch", "", "publish every line of `FILE` (- for stdin) as a trigger and wait for all of them")
	fs.IntVar(&f.concurrency, "concurrency", 16, "with --batch: how many triggers may wait for their result at once")
	fs.StringVarP(&f.out, "out", "o", "-", "with --batch: write the result and error events as JSON lines to `FILE` (- for stdout)")
	fs.StringVar(&f.idPrefix, "id-prefix", "", "with --batch: lines without an id get <`PREFIX`>-<line number> (default: random; fix it to make a batch resumable)")

	argNames(fs, "mode", "MODE", "priority", "PRIORITY", "tenant", "TENANT", "job-timeout", "DURATION", "concurrency", "N")
	if err := cc.parse(args, stdout, 0, ""); err != nil {
		return ignoreHelp(err)
	}
	o := cc.opts
	if f.batch != "" {
		return runBatch(ctx, cc, &f, stdout, stderr)
	}
	for _, name := range []string{"concurrency", "out", "id-prefix"} {
		if fs.Changed(name) {
			return usagef("--%s needs --batch", name)
		}
	}
	f.numImagesSet = fs.Changed("num-images")
	if f.download != "" {
		if err := checkDownloadDir(f.download); err != nil {
			return err
		}
		f.wait = true
	}
	if f.wait && !fs.Changed("progress") {
		// Someone is watching: ask for fal's status stream, which in webhook
		// mode is the only source of IN_PROGRESS and fal's logs. Not for
		// --json off a terminal, which shows no progress: a script's job
		// keeps its one fal call.
		f.progress = !o.json || isTerminal(stderr)
	}
	t, err := f.trigger()
	if err != nil {
		return err
	}

	c, err := o.connect()
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()

	id, ack, err := c.pub.Publish(ctx, t)
	if errors.Is(err, publisher.ErrInvalidTrigger) {
		return usageError{err}
	}
	if err != nil {
		return explain(err)
	}
	if !f.wait {
		if o.json {
			return printJSON(stdout, map[string]any{"id": id, "stream": ack.Stream, "seq": ack.Sequence, "duplicate": ack.Duplicate})
		}
		fmt.Fprintf(stdout, "published %s  (stream %s, sequence %d)\n", id, ack.Stream, ack.Sequence)
		if ack.Duplicate {
			fmt.Fprintf(stdout, "  duplicate: a trigger with this id was already published; nothing new was sent\n")
		}
		fmt.Fprintf(stdout, "  result: falbridge result %s    events: falbridge watch --id %s\n", id, id)
		if !f.progress {
			// Only the trigger asks for live progress: a watch cannot.
			fmt.Fprintf(stdout, "  (live progress: publish with --progress; without it a job reports its queue position at submit only)\n")
		}
		return nil
	}
	if ack.Duplicate && !o.json {
		fmt.Fprintf(stderr, "%s was already published; waiting for its result\n", id)
	}
	return awaitAndShow(ctx, c, id, "published, waiting for falbridge", o.json, f.download, stdout, stderr)
}

// trigger builds the trigger from the flags.
func (f *publishFlags) trigger() (*publisher.Trigger, error) {
	if strings.TrimSpace(f.model) == "" {
		return nil, usagef("--model is required (e.g. --model fal-ai/flux/schnell)")
	}
	input := map[string]json.RawMessage{}
	if f.input != "" {
		raw, err := readArg(f.input)
		if err != nil {
			return nil, usagef("--input: %v", err)
		}
		if err := json.Unmarshal(raw, &input); err != nil || input == nil {
			return nil, usagef("--input must be a JSON object (or @FILE holding one)")
		}
	}
	set := func(key string, v any) {
		b, _ := json.Marshal(v)
		input[key] = b
	}
	if f.prompt != "" {
		set("prompt", f.prompt)
	}
	if f.imageSize != "" {
		switch w, h, ok := parseSize(f.imageSize); {
		case ok:
			set("image_size", map[string]int{"width": w, "height": h})
		case slices.Contains(imageSizePresets, f.imageSize):
			set("image_size", f.imageSize)
		default:
			return nil, usagef("--image-size %q: a preset (%s) or WIDTHxHEIGHT, e.g. 1024x768", f.imageSize, strings.Join(imageSizePresets, ", "))
		}
	}
	if f.numImagesSet {
		if f.numImages < 1 {
			return nil, usagef("--num-images must be ≥ 1 (got %d)", f.numImages)
		}
		set("num_images", f.numImages)
	}
	if f.image != "" {
		if err := checkImageURL(f.image); err != nil {
			return nil, err
		}
		set("image_url", f.image)
	}
	in, err := json.Marshal(input)
	if err != nil {
		return nil, usagef("--input: %v", err)
	}
	t := &publisher.Trigger{
		ID: f.id, ModelID: f.model, Input: in, Mode: publisher.Mode(f.mode), Priority: f.priority, Tenant: f.tenant,
		Timeout: publisher.Duration(f.jobTimeout), ResultSubject: f.resultSubject, Progress: f.progress,
	}
	if f.jobTimeout < 0 {
		return nil, usagef("--job-timeout must not be negative")
	}
	if f.metadata != "" {
		raw, err := readArg(f.metadata)
		if err != nil {
			return nil, usagef("--metadata: %v", err)
		}
		if !json.Valid(raw) {
			return nil, usagef("--metadata must be JSON (quote a string: '\"text\"')")
		}
		t.Metadata = raw
	}
	// Check it before connecting, so that a bad flag is a usage error even
	// when NATS is out of reach. Publish checks it again.
	body, err := json.Marshal(t)
	if err != nil {
		return nil, usagef("trigger: %v", err)
	}
	if _, err := publisher.DecodeTrigger(body); err != nil {
		return nil, usageError{err}
	}
	return t, nil
}

// imageSizePresets are fal's named image sizes (input.image_size).
var imageSizePresets = []string{"square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"}

// checkImageURL checks --image as falbridge will (http(s) with a host, or a
// data: URL), so that a bad one is a usage error now rather than an
// invalid_image_url error event later.
func checkImageURL(s string) error {
	if strings.HasPrefix(s, "data:") {
		return nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usagef("--image %q: an http(s) URL or a data: URL", shorten(s, 80))
	}
	return nil
}

// checkDownloadDir fails when --download names something that exists and
// is not a directory: better now than after the job has run.
func checkDownloadDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return usagef("--download %s: not a directory", dir)
	}
	return nil
}

// readArg returns s, or the contents of file s[1:] when s starts with @
// (@- reads stdin).
func readArg(s string) ([]byte, error) {
	name, ok := strings.CutPrefix(s, "@")
	switch {
	case !ok:
		return []byte(s), nil
	case name == "-":
		return io.ReadAll(os.Stdin)
	}
	return os.ReadFile(name)
}

// parseSize parses "WIDTHxHEIGHT".
func parseSize(s string) (w, h int, ok bool) {
	a, b, found := strings.Cut(strings.ToLower(s), "x")
	if !found {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(a)
	h, err2 := strconv.Atoi(b)
	return w, h, err1 == nil && err2 == nil && w > 0 && h > 0
}

// awaitAndShow waits for the terminal event of id, showing progress on
// stderr (on a terminal always, elsewhere unless asJSON; initial is the
// state shown until a status event comes), and prints the
// event: for people, or as one JSON line with asJSON. With dir set, it saves
// the output's files there. An error event gives a jobFailedError.
func awaitAndShow(ctx context.Context, c *client, id, initial string, asJSON bool, dir string, stdout, stderr io.Writer) error {
	tty := isTerminal(stderr)
	var prog *jobProgress
	if tty || !asJSON {
		prog = newJobProgress(stderr, tty, id, initial)
	}
	pctx, stopProgress := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if prog != nil {
		wg.Go(func() {
			for ev, err := range c.pub.Watch(pctx, c.pub.Subjects().Status(id), publisher.FromStart()) {
				if err == nil && ev.Status != nil {
					prog.update(ev.Status.State, ev.Status.QueuePosition, decodeLogs(ev.Status.Logs))
				}
			}
		})
		every := time.Second
		if tty {
			every = 100 * time.Millisecond
		}
		wg.Go(func() { tick(pctx, every, prog.draw) })
	}
	res, err := c.pub.Await(ctx, id)
	stopProgress()
	wg.Wait()
	if prog != nil {
		prog.line.Done()
	}

	var failed *publisher.Error
	switch {
	case errors.As(err, &failed):
		if asJSON {
			if err := printJSON(stdout, failed); err != nil {
				return err
			}
		} else {
			printError(stdout, failed)
		}
		return jobFailedError{failed.Error()}
	case err != nil:
		return waitError(ctx, id, err)
	}
	if asJSON {
		if err := printJSON(stdout, res); err != nil {
			return err
		}
	} else {
		printResult(stdout, res)
	}
	if dir == "" {
		return nil
	}
	paths, err := downloadMedia(ctx, dir, id, findMedia(res.Output))
	info := stdout
	if asJSON {
		info = stderr
	}
	for _, p := range paths {
		fmt.Fprintf(info, "saved %s\n", p)
	}
	if err == nil && len(paths) == 0 {
		fmt.Fprintf(info, "nothing to download: the output has no url fields\n")
	}
	return err
}
