package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"

	"github.com/falbridge/falbridge/internal/service"
	"github.com/falbridge/falbridge/publisher"
)

// defaultServer is the NATS URL client commands use without --server or
// $NATS_URL: the address `falbridge dev` listens on.
const defaultServer = "nats://127.0.0.1:4222"

// connectTimeoutMax bounds the NATS connect of a client command.
const connectTimeoutMax = 5 * time.Second

// clientOptions are the flags every client command (publish, watch, status,
// cancel, result) shares.
type clientOptions struct {
	server  string
	creds   string
	timeout time.Duration
	json    bool
}

// clientCommand is a client command's flag set and help text.
type clientCommand struct {
	fs    *pflag.FlagSet
	opts  *clientOptions
	usage string // synopsis and description, printed before the flags

	timeoutDefault time.Duration
	timeoutHelp    string

	// check, when set, checks the command's own flags after parsing,
	// before anything connects.
	check func() error
}

// newClientCommand returns a command whose own flags are registered on fs
// next; parse adds the common flags after them. timeoutHelp says what
// --timeout bounds for this command; def is its default.
func newClientCommand(name, usage string, def time.Duration, timeoutHelp string, stderr io.Writer) *clientCommand {
	fs := pflag.NewFlagSet("falbridge "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // errors are reported by parse; --help by printHelp
	fs.SortFlags = false
	return &clientCommand{fs: fs, opts: &clientOptions{}, usage: usage, timeoutDefault: def, timeoutHelp: timeoutHelp}
}

func (c *clientCommand) commonFlags() {
	fs, o := c.fs, c.opts
	fs.StringVarP(&o.server, "server", "s", envOr("NATS_URL", defaultServer), "NATS server `URL`s, comma-separated ($NATS_URL when set)")
	fs.StringVar(&o.creds, "creds", os.Getenv("NATS_CREDS"), "NATS credentials `FILE` ($NATS_CREDS when set)")
	fs.DurationVar(&o.timeout, "timeout", c.timeoutDefault, c.timeoutHelp)
	fs.BoolVar(&o.json, "json", false, "print JSON only, one event per line, for scripts")
	argNames(fs, "timeout", "DURATION")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// parse parses args; it prints the help to stdout for --help (returning
// errHelp) and turns bad flags into usage errors. nargs is the number of
// positional arguments the command takes, named argName in messages.
func (c *clientCommand) parse(args []string, stdout io.Writer, nargs int, argName string) error {
	c.commonFlags()
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			c.printHelp(stdout)
			return errHelp
		}
		return usagef("%v (see %s --help)", err, c.fs.Name())
	}
	switch {
	case c.fs.NArg() < nargs:
		return usagef("missing %s (see %s --help)", argName, c.fs.Name())
	case c.fs.NArg() > nargs:
		return usagef("unexpected argument %q (see %s --help)", c.fs.Arg(nargs), c.fs.Name())
	}
	if c.opts.timeout < 0 {
		return usagef("--timeout must not be negative")
	}
	if c.opts.creds != "" {
		if _, err := os.Stat(c.opts.creds); err != nil {
			return usagef("--creds: %v", err)
		}
	}
	if c.check != nil {
		return c.check()
	}
	return nil
}

func (c *clientCommand) printHelp(w io.Writer) {
	fmt.Fprintln(w, strings.TrimSpace(c.usage))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Flags:")
	fmt.Fprint(w, flagUsages(c.fs))
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Exit codes: 0 ok, 1 the job failed (or another failure), 2 usage error, 3 cannot reach NATS.")
}

// argAnnotation names a flag's argument in flagUsages (see argNames).
const argAnnotation = "falbridge_arg"

// argNames sets how flagUsages names the arguments of flags, e.g.
// "timeout", "DURATION".
func argNames(fs *pflag.FlagSet, pairs ...string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		_ = fs.SetAnnotation(pairs[i], argAnnotation, []string{pairs[i+1]})
	}
}

// flagUsages lists fs's flags, one a line, aligned, with their defaults.
func flagUsages(fs *pflag.FlagSet) string {
	type row struct{ left, usage string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *pflag.Flag) {
		left := "      --" + f.Name
		if f.Shorthand != "" {
			left = "  -" + f.Shorthand + ", --" + f.Name
		}
		name, usage := pflag.UnquoteUsage(f)
		if a := f.Annotations[argAnnotation]; len(a) == 1 {
			name = a[0]
		}
		if f.Value.Type() != "bool" && name != "" {
			left += " " + name
		}
		switch f.DefValue {
		case "", "0", "0s", "false", "[]":
		default:
			if f.Value.Type() == "string" {
				usage += fmt.Sprintf(" (default %q)", f.DefValue)
			} else {
				usage += " (default " + f.DefValue + ")"
			}
		}
		rows = append(rows, row{left, usage})
		width = max(width, len(left))
	})
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s   %s\n", width, r.left, r.usage)
	}
	return b.String()
}

// withTimeout returns ctx bounded by --timeout (0 = no bound).
func (o *clientOptions) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if o.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, o.timeout)
}

// client is a connection to NATS with a Publisher on it.
type client struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	pub *publisher.Publisher
}

// connect connects to --server. A failure is an unreachableError (exit 3).
func (o *clientOptions) connect() (*client, error) {
	ct := connectTimeoutMax
	if o.timeout > 0 && o.timeout < ct {
		ct = o.timeout
	}
	opts := []nats.Option{nats.Name("falbridge-cli"), nats.Timeout(ct)}
	if o.creds != "" {
		opts = append(opts, nats.UserCredentials(o.creds))
	}
	nc, err := nats.Connect(o.server, opts...)
	if err != nil {
		return nil, unreachableError{fmt.Errorf("connect to NATS at %s: %w", redactURL(o.server), err)}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	pub, err := publisher.New(js)
	if err != nil {
		nc.Close()
		return nil, err
	}
	// Without JetStream every later call fails as "no responders" or "no
	// stream", which would read like falbridge not running; say it here.
	actx, cancel := context.WithTimeout(context.Background(), ct)
	_, err = js.AccountInfo(actx)
	cancel()
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) || errors.Is(err, nats.ErrNoResponders) {
		nc.Close()
		return nil, fmt.Errorf("NATS at %s has no JetStream, which falbridge needs (nats-server -js, or falbridge dev): %w", redactURL(o.server), err)
	}
	return &client{nc: nc, js: js, pub: pub}, nil
}

func (c *client) close() { c.nc.Close() }

// redactURL hides user:password in NATS URLs.
func redactURL(u string) string { return service.RedactURL(u) }

// explain adds a hint to JetStream errors that mean no falbridge has set up
// its streams on this NATS.
func explain(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount),
		errors.Is(err, nats.ErrNoResponders):
		// Nobody answers the JetStream API: the server runs without it.
		return fmt.Errorf("%w (JetStream is not enabled on this NATS server; falbridge needs it: nats-server -js, or falbridge dev)", err)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, jetstream.ErrStreamNotFound),
		errors.Is(err, jetstream.ErrBucketNotFound), errors.Is(err, publisher.ErrNoStream):
		return fmt.Errorf("%w (is falbridge serve or dev running against this NATS?)", err)
	}
	return err
}

// jobFailedError ends a command with exit code 1 after the failure has been
// printed (the error event), so main does not print it again.
type jobFailedError struct{ msg string }

func (e jobFailedError) Error() string { return e.msg }

// waitError describes a wait for id's result that ended without one.
func waitError(ctx context.Context, id string, err error) error {
	switch {
	case errors.Is(context.Cause(ctx), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("no result for %s within --timeout; the job may still finish: falbridge result %s", id, id)
	case ctx.Err() != nil:
		return fmt.Errorf("stopped waiting for %s; the job goes on: falbridge result %s", id, id)
	}
	return explain(err)
}
