package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/falbridge/falbridge/publisher"
)

const watchUsage = `
Usage: falbridge watch [--id ID] [--kind result,error,status | --subject SUBJECT]
                       [--since 10m | --from-seq N | --all] [--count N] [flags]

Tail result, error and status events, one line each (--json: the event's
JSON, one per line). Reads the streams FAL_RESULTS and FAL_STATUS, so with
--since, --from-seq or --all it replays what they still hold; by default it
shows new events only. Runs until Ctrl-C, --count events or --timeout.
It only reads: live progress (IN_PROGRESS, fal's logs) is published for
triggers sent with --progress or --wait; with webhooks, other jobs report
their queue position at submit only.

Examples:
  falbridge watch
  falbridge watch --id fox-1 --all
  falbridge watch --kind error --since 1h --json | jq .code
`

// watchKinds are the values of --kind.
var watchKinds = []string{"result", "error", "status"}

func runWatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cc := newClientCommand("watch", watchUsage, 0, "stop after this long, with exit code 0 (0 = run until Ctrl-C)", stderr)
	fs := cc.fs
	id := fs.String("id", "", "only events of this trigger id")
	kinds := fs.StringSlice("kind", nil, "only these kinds: result, error, status (comma-separated or repeated)")
	subject := fs.String("subject", "", "watch this raw subject instead (wildcards allowed), e.g. 'fal.errors.>'")
	since := fs.Duration("since", 0, "start with the events of the last `DURATION`, e.g. 10m")
	fromSeq := fs.Uint64("from-seq", 0, "start at this stream sequence (per stream: most useful with one --kind)")
	all := fs.Bool("all", false, "start with the oldest event the streams hold")
	count := fs.Int("count", 0, "exit after this many events (0 = no limit)")
	argNames(fs, "id", "ID", "kind", "KINDS", "subject", "SUBJECT", "from-seq", "SEQ", "count", "N")
	if err := cc.parse(args, stdout, 0, ""); err != nil {
		return ignoreHelp(err)
	}
	o := cc.opts

	filter, keep, err := watchFilter(*id, *kinds, *subject)
	if err != nil {
		return err
	}
	var opts []publisher.WatchOption
	starts := 0
	if fs.Changed("since") {
		if *since <= 0 {
			return usagef("--since must be positive")
		}
		starts++
		opts = append(opts, publisher.FromTime(time.Now().Add(-*since)))
	}
	if fs.Changed("from-seq") {
		starts++
		opts = append(opts, publisher.FromSequence(*fromSeq))
	}
	if *all {
		starts++
		opts = append(opts, publisher.FromStart())
	}
	if starts > 1 {
		return usagef("use one of --since, --from-seq and --all")
	}
	if *count < 0 {
		return usagef("--count must not be negative")
	}

	c, err := o.connect()
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := o.withTimeout(ctx)
	defer cancel()

	n := 0
	for ev, err := range c.pub.Watch(ctx, filter, opts...) {
		if err != nil && ev.Data == nil {
			return explain(err)
		}
		if !keep(ev) {
			continue
		}
		if o.json {
			if _, err := stdout.Write(append(ev.Data, '\n')); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(stdout, watchLine(ev, err))
		}
		n++
		if *count > 0 && n >= *count {
			return nil
		}
	}
	// The iterator ends without an error when ctx is done: Ctrl-C or
	// --timeout, both a normal end of a watch.
	return nil
}

// watchFilter turns --id, --kind and --subject into one subject filter for
// publisher.Watch, and a predicate for the events it lets through that the
// user did not ask for (several kinds share no single subject).
func watchFilter(id string, kinds []string, subj string) (string, func(publisher.Event) bool, error) {
	keepAll := func(publisher.Event) bool { return true }
	if subj != "" {
		if id != "" || len(kinds) > 0 {
			return "", nil, usagef("--subject cannot be combined with --id or --kind")
		}
		if !publisher.ValidSubject(subj, true) {
			return "", nil, usagef("--subject %q is not a NATS subject", subj)
		}
		// The streams watch reads hold the default event subjects only; a
		// filter outside them would fail as "no stream", which reads like
		// falbridge not running.
		s := publisher.DefaultSubjects()
		if s.MatchesEvents(subj) {
			return subj, keepAll, nil
		}
		return "", nil, usagef("--subject %q matches no event subject (%s.>, %s.>, %s.>)", subj, s.ResultsPrefix, s.ErrorsPrefix, s.StatusPrefix)
	}
	if id != "" && !publisher.ValidID(id) {
		return "", nil, usagef("--id %q: ids are letters, digits, - and _", id)
	}
	want := map[string]bool{}
	for _, k := range kinds {
		k = strings.TrimSpace(k)
		if !slices.Contains(watchKinds, k) {
			return "", nil, usagef("--kind %q: want result, error or status", k)
		}
		want[k] = true
	}
	token := ">"
	if id != "" {
		token = id
	}
	s := publisher.DefaultSubjects()
	if len(want) == 1 {
		prefix := map[string]string{"result": s.ResultsPrefix, "error": s.ErrorsPrefix, "status": s.StatusPrefix}
		for k := range want {
			return prefix[k] + "." + token, keepAll, nil
		}
	}
	keep := keepAll
	if len(want) > 0 {
		keep = func(ev publisher.Event) bool { return want[eventKind(ev)] }
	}
	if id == "" {
		return "", keep, nil // every result, error and status event
	}
	// fal.*.<id> also matches requests and cancels, which live in no
	// watched stream.
	return "fal.*." + id, keep, nil
}

// eventKind is "result", "error", "status", or "" for an event of none.
func eventKind(ev publisher.Event) string {
	s := publisher.DefaultSubjects()
	switch {
	case strings.HasPrefix(ev.Subject, s.ResultsPrefix+"."):
		return "result"
	case strings.HasPrefix(ev.Subject, s.ErrorsPrefix+"."):
		return "error"
	case strings.HasPrefix(ev.Subject, s.StatusPrefix+"."):
		return "status"
	}
	return ""
}

// watchLine is the one-line form of an event.
func watchLine(ev publisher.Event, decodeErr error) string {
	ts := ev.Time.Local().Format("15:04:05")
	switch {
	case errors.Is(decodeErr, publisher.ErrEventIDMismatch):
		return fmt.Sprintf("%s !       %s  forged (its id is not the subject's): %s", ts, ev.Subject, shorten(string(ev.Data), 120))
	case decodeErr != nil:
		return fmt.Sprintf("%s ?       %s  undecodable: %s", ts, ev.Subject, shorten(string(ev.Data), 120))
	case ev.Result != nil:
		r := ev.Result
		ms := findMedia(r.Output)
		var b strings.Builder
		fmt.Fprintf(&b, "%s result  %s  %s", ts, r.ID, r.ModelID)
		if !r.ReceivedAt.IsZero() && !r.CompletedAt.IsZero() {
			fmt.Fprintf(&b, "  %s", roundDuration(r.CompletedAt.Sub(r.ReceivedAt)))
		}
		switch len(ms) {
		case 0:
			fmt.Fprintf(&b, "  %s", shorten(string(r.Output), 120))
		default:
			fmt.Fprintf(&b, "  %d file(s):", len(ms))
			for _, m := range ms {
				fmt.Fprintf(&b, " %s", shorten(m.URL, 120))
			}
		}
		return b.String()
	case ev.Error != nil:
		e := ev.Error
		return fmt.Sprintf("%s error   %s  %s: %s", ts, e.ID, e.Code, shorten(e.Message, 200))
	case ev.Status != nil:
		return fmt.Sprintf("%s status  %s  %s", ts, ev.Status.ID, statusText(ev.Status))
	}
	return fmt.Sprintf("%s event   %s  %s", ts, ev.Subject, shorten(string(ev.Data), 120))
}
