// Command falbridge connects NATS JetStream to fal.ai.
//
//	falbridge serve            run the bridge (embedded NATS when no nats.url)
//	falbridge dev              embedded NATS + fal simulator + bridge, on loopback
//	falbridge publish          publish a trigger (or a file of them), wait for the result
//	falbridge watch            tail result, error and status events
//	falbridge status ID        show a job's record and events
//	falbridge cancel ID        cancel a job
//	falbridge result ID        print (waiting if need be) a job's result
//	falbridge limits           show caps, waiting jobs and budgets
//	falbridge config validate  load and check a config
//	falbridge config print     show the effective config, secrets redacted
//	falbridge version
//
// Exit codes: 0 ok, 1 failure (a job ended with an error event, or another
// failure), 2 usage error, 3 cannot reach NATS.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes, documented in the README.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnreachable = 3
)

// usageError marks an error as the user's command line being wrong.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// unreachableError marks an error as NATS being out of reach.
type unreachableError struct{ err error }

func (e unreachableError) Error() string { return e.err.Error() }
func (e unreachableError) Unwrap() error { return e.err }

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the bridge: pull triggers, submit to fal, publish results", runServe},
		{"dev", "run embedded NATS, the fal simulator and the bridge on loopback", runDev},
		{"publish", "publish a trigger (or --batch a file of them); --wait for the result", runPublish},
		{"watch", "tail result, error and status events", runWatch},
		{"status", "show a job's record, its result or error, and its last progress", runStatus},
		{"cancel", "cancel a job", runCancel},
		{"result", "print a job's result, waiting for it if need be", runResult},
		{"limits", "show the caps on pending jobs, what waits for them, and the budgets", runLimits},
		{"config", "validate or print the effective configuration", runConfig},
		{"version", "print the version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) >= 2 && args[0] == "help":
		// "falbridge help publish" is "falbridge publish --help".
		args = []string{args[1], "--help"}
	case len(args) >= 1 && (args[0] == "--version" || args[0] == "-v"):
		args = []string{"version"}
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printUsage(stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		return exitCode(err, stderr)
	}
	fmt.Fprintf(stderr, "falbridge: unknown command %q\n\n", args[0])
	printUsage(stderr)
	return exitUsage
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return exitOK
	}
	var fe jobFailedError
	if errors.As(err, &fe) {
		return exitFailed // the command printed the failure itself
	}
	fmt.Fprintf(stderr, "falbridge: %v\n", err)
	var ue usageError
	var ne unreachableError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ne):
		return exitUnreachable
	}
	return exitFailed
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "falbridge connects NATS JetStream to fal.ai.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: falbridge <command> [flags]   (falbridge <command> --help for its flags)")
	fmt.Fprintln(w)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Client commands (publish, watch, status, cancel, result, limits) connect to --server,")
	fmt.Fprintln(w, "default $NATS_URL, else nats://127.0.0.1:4222 (falbridge dev's address).")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Exit codes: 0 ok, 1 failure (a job ended with an error event), 2 usage error,")
	fmt.Fprintln(w, "3 cannot reach NATS.")
}
