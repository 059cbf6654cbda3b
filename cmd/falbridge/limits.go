package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/publisher"
)

const limitsUsage = `
Usage: falbridge limits [flags]

Show the caps on jobs pending at fal (limits.max_pending, per model, per
tenant) with the jobs pending under each and those waiting for it, the
waiting jobs per tenant, model and priority, and the budgets (spend.budgets)
with the estimated spend of their current window and when it resets.

It reads the admission record in the job bucket (fal_jobs), which every
falbridge replica shares; the caps shown are those of the replica that
wrote it last. Exit code 1 when the caps are off (no admission record).
`

func runLimits(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cc := newClientCommand("limits", limitsUsage, 10*time.Second, "how long to wait for NATS's answers", stderr)
	if err := cc.parse(args, stdout, 0, ""); err != nil {
		return ignoreHelp(err)
	}
	c, err := cc.opts.connect()
	if err != nil {
		return err
	}
	defer c.close()
	ctx, cancel := cc.opts.withTimeout(ctx)
	defer cancel()
	now := time.Now()
	info, err := consumer.LookupLimits(ctx, c.js, publisher.JobsBucketDefault, now)
	if err != nil {
		return explain(err)
	}
	if cc.opts.json {
		if err := printJSON(stdout, info); err != nil {
			return err
		}
	} else {
		printLimits(stdout, info, now)
	}
	if !info.On {
		return jobFailedError{"caps off"}
	}
	return nil
}

func printLimits(w io.Writer, info *consumer.LimitsInfo, now time.Time) {
	if !info.On {
		fmt.Fprintln(w, "caps off: no admission record in "+publisher.JobsBucketDefault+" (limits.max_pending is 0, or no job was admitted yet)")
		return
	}
	fmt.Fprintf(w, "admission record revision %d, written %s ago\n\n", info.Revision, roundDuration(now.Sub(info.WrittenAt)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CAP\tLIMIT\tPENDING\tWAITING")
	for _, c := range info.Caps {
		name := c.Scope
		switch c.Scope {
		case "global":
			name = "global (limits.max_pending)"
		case "tenant":
			name = "tenant " + tenantName(c.Name)
		default:
			name += " " + c.Name
		}
		limit := strconv.Itoa(c.Cap)
		if c.Cap == 0 {
			limit = "?" // written by an older falbridge: the caps are not in the record
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", name, limit, c.Pending, c.Waiting)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	if len(info.Waiting) == 0 {
		fmt.Fprintln(w, "no jobs waiting")
	} else {
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "WAITING\tTENANT\tMODEL\tPRIORITY")
		for _, q := range info.Waiting {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", q.Jobs, tenantName(q.Tenant), q.Model, q.Priority)
		}
		_ = tw.Flush()
	}
	if len(info.Budgets) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "BUDGET\tLIMIT (%s)\tSPENT\tPENDING\tRESETS\n", info.Currency)
	for _, b := range info.Budgets {
		fmt.Fprintf(tw, "%s\t%s/%s\t%s\t%s\t%s (in %s)\n", b.Scope, money(b.Amount), b.Window, money(b.Spent), money(b.Pending),
			b.ResetsAt.Local().Format(time.RFC3339), roundDuration(b.ResetsAt.Sub(now)).Truncate(time.Second))
	}
	_ = tw.Flush()
	what := "waits for the next window"
	if info.BudgetPolicy == "fail" {
		what = "ends with error budget_exceeded"
	}
	fmt.Fprintf(w, "over a budget a job %s (spend.budget_policy %s)\n", what, cmp.Or(info.BudgetPolicy, "wait"))
}

func tenantName(t string) string {
	if t == "" {
		return "(none)"
	}
	return t
}

func money(f float64) string {
	s := strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.6f", f), "0"), ".")
	if s == "" || s == "-0" {
		return "0"
	}
	return s
}
