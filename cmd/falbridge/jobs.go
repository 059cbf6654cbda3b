package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/publisher"
)

const statusUsage = `
Usage: falbridge status ID [flags]

Show what falbridge knows of trigger ID: its job record (KV bucket fal_jobs:
state waiting, claimed, retry, submitted or done; fal's request id;
attempts; timestamps; for a waiting job, the cap, budget or turn it waits
for), its result or error event if it has ended, and its last status event. Exit code 1 when nothing at all is known of ID.
`

const cancelUsage = `
Usage: falbridge cancel ID [flags]

Cancel trigger ID: a NATS request on fal.cancel.ID, answered by falbridge
with {"id","status","message"}; status is canceled, cancel_requested
(the job was running: fal asked the app to stop; it ends canceled, or with
its result if the app finished regardless), already_done,
already_completed (fal finished first; the result follows), unknown or
error. A canceled job ends with an error event of code canceled.
Exit code 1 when the status is unknown or error.
`

const resultUsage = `
Usage: falbridge result ID [--download DIR] [flags]

Print the result of trigger ID, waiting for it (with progress) if the job
is still running. Live progress (IN_PROGRESS, fal's logs) comes only for a
trigger published with --progress or --wait; with webhooks, other jobs
report their queue position at submit only. Events published before the
command started are found, for as long as FAL_RESULTS keeps them (7 days
by default).
Exit code 1 when the job ended with an error event.
`

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cc := newClientCommand("status", statusUsage, 10*time.Second, "how long to wait for NATS's answers", stderr)
	id, c, ctx, done, err := cc.openJob(ctx, args, stdout)
	if err != nil {
		return ignoreHelp(err)
	}
	defer done()
	o := cc.opts

	st, err := lookupJob(ctx, c, id)
	if err != nil {
		return err
	}
	if !st.Known() {
		return nothingKnown(id)
	}
	if st.Record != nil && st.Record.State == publisher.JobWaiting {
		// What it waits for, from the admission record.
		if info, err := consumer.LookupLimits(ctx, c.js, publisher.JobsBucketDefault, time.Now()); err == nil {
			st.WaitsFor = info.WaitReason(st.Record)
		}
	}
	if o.json {
		return printJSON(stdout, st)
	}
	printStatus(stdout, id, st)
	return nil
}

// nothingKnown is the failure of status and result for an id falbridge has
// never heard of.
func nothingKnown(id string) error {
	return fmt.Errorf("nothing known of %s: no trigger waiting, no job record and no event (not published, or expired)", id)
}

// lookupJob gathers what NATS holds of trigger id (publisher.Lookup): a
// forged event is an error here, so that status says so.
func lookupJob(ctx context.Context, c *client, id string) (*jobStatus, error) {
	j, err := c.pub.Lookup(ctx, id)
	if err != nil {
		return nil, explain(err)
	}
	return &jobStatus{Job: j}, nil
}

// jobStatus is what status prints (its JSON form with --json): the job as
// publisher.Lookup reads it, and for a waiting job what it waits for.
type jobStatus struct {
	*publisher.Job
	// WaitsFor says what a job in state waiting waits for: the cap or
	// budget that is full, or whose turn it is (falbridge limits).
	WaitsFor string `json:"waits_for,omitempty"`
}

func printStatus(w io.Writer, id string, st *jobStatus) {
	const tf = time.RFC3339
	fmt.Fprintf(w, "job       %s\n", id)
	if j := st.Record; j != nil {
		state := j.State
		if j.Outcome != "" {
			state += " (" + j.Outcome + ")"
		}
		fmt.Fprintf(w, "state     %s\n", state)
		if st.WaitsFor != "" {
			fmt.Fprintf(w, "waits for %s\n", st.WaitsFor)
		}
		if j.Tenant != "" || j.Priority != "" {
			fmt.Fprintf(w, "tenant    %s  (priority %s)\n", tenantName(j.Tenant), cmp.Or(j.Priority, "normal"))
		}
		if j.State == publisher.JobRetry && j.RetryReason != "" {
			fmt.Fprintf(w, "retrying  %s\n", j.RetryReason)
		}
		fmt.Fprintf(w, "model     %s  (mode %s)\n", j.ModelID, j.Mode)
		if j.RequestID != "" {
			fmt.Fprintf(w, "request   %s\n", j.RequestID)
		}
		webhook := "no (polled)"
		if j.Webhook {
			webhook = "yes"
		}
		fmt.Fprintf(w, "attempts  %d   webhook %s\n", j.Attempts, webhook)
		fmt.Fprintf(w, "received  %s\n", j.ReceivedAt.Local().Format(tf))
		if !j.SubmittedAt.IsZero() {
			fmt.Fprintf(w, "submitted %s\n", j.SubmittedAt.Local().Format(tf))
		}
		if !j.CompletedAt.IsZero() {
			fmt.Fprintf(w, "completed %s  (%s after received)\n", j.CompletedAt.Local().Format(tf), roundDuration(j.CompletedAt.Sub(j.ReceivedAt)))
		} else if !j.Deadline.IsZero() {
			fmt.Fprintf(w, "deadline  %s\n", j.Deadline.Local().Format(tf))
		}
	} else if st.Waiting {
		fmt.Fprintf(w, "state     waiting in %s: published, not taken by falbridge yet (is falbridge serve or dev running?)\n", publisher.RequestsStreamDefault)
	} else {
		fmt.Fprintf(w, "state     no job record (a trigger rejected before it was claimed, or records expired)\n")
	}
	if s := st.LastStatus; s != nil {
		fmt.Fprintf(w, "progress  %s  at %s\n", statusText(s), s.At.Local().Format("15:04:05"))
	}
	switch {
	case st.Result != nil:
		fmt.Fprintln(w)
		printResult(w, st.Result)
	case st.Error != nil:
		fmt.Fprintln(w)
		printError(w, st.Error)
	}
}

func runCancel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cc := newClientCommand("cancel", cancelUsage, 20*time.Second, "how long to wait for falbridge's answer", stderr)
	id, c, ctx, done, err := cc.openJob(ctx, args, stdout)
	if err != nil {
		return ignoreHelp(err)
	}
	defer done()
	o := cc.opts

	subject := c.pub.Subjects().Cancel(id)
	msg, err := c.nc.RequestWithContext(ctx, subject, nil)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("no falbridge answers on %s (is falbridge serve or dev running against this NATS?)", subject)
	case err != nil:
		return fmt.Errorf("cancel %s: %w", id, err)
	}
	var reply publisher.CancelReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return fmt.Errorf("cancel %s: unreadable answer %q: %w", id, shorten(string(msg.Data), 200), err)
	}
	if o.json {
		if _, err := stdout.Write(append(msg.Data, '\n')); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "%s  %s", reply.Status, reply.ID)
		if reply.Message != "" {
			fmt.Fprintf(stdout, "  %s", reply.Message)
		}
		fmt.Fprintln(stdout)
	}
	if reply.Status == publisher.CancelError || reply.Status == publisher.CancelUnknown {
		return jobFailedError{"cancel " + id + ": " + reply.Status}
	}
	return nil
}

func runResult(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cc := newClientCommand("result", resultUsage, publishTimeoutDefault, "how long to wait for the result", stderr)
	dir := cc.fs.String("download", "", "save the output's files into `DIR` as <id>_<n>.<ext>")
	cc.check = func() error {
		if *dir == "" {
			return nil
		}
		return checkDownloadDir(*dir)
	}
	id, c, ctx, done, err := cc.openJob(ctx, args, stdout)
	if err != nil {
		return ignoreHelp(err)
	}
	defer done()
	o := cc.opts
	// Fail at once for an id nobody published, instead of waiting out
	// --timeout. A forged event (its id not its subject's) does not count:
	// Await skips it too.
	j, err := c.pub.Lookup(ctx, id)
	if err != nil && !errors.Is(err, publisher.ErrEventIDMismatch) {
		return explain(err)
	}
	if !j.Known() {
		return nothingKnown(id)
	}
	return awaitAndShow(ctx, c, id, "waiting for the result", o.json, *dir, stdout, stderr)
}

// openJob does what every "<command> ID" starts with: parse the flags and the
// one trigger id, check the id, connect, and bound ctx by --timeout. The
// caller defers done.
func (cc *clientCommand) openJob(ctx context.Context, args []string, stdout io.Writer) (string, *client, context.Context, func(), error) {
	if err := cc.parse(args, stdout, 1, "trigger ID"); err != nil {
		return "", nil, nil, nil, err
	}
	id := cc.fs.Arg(0)
	if !publisher.ValidID(id) {
		return "", nil, nil, nil, usagef("%q is not a trigger id (letters, digits, - and _)", id)
	}
	c, err := cc.opts.connect()
	if err != nil {
		return "", nil, nil, nil, err
	}
	ctx, cancel := cc.opts.withTimeout(ctx)
	return id, c, ctx, func() { cancel(); c.close() }, nil
}
