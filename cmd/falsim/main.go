// Command falsim runs the fal.ai simulator: fal's queue, sync run, streaming
// and webhook protocol on one local listener, with per-model latency and
// fault injection. Point falbridge's fal.queue_url, fal.run_url and
// fal.jwks_url (or falclient's options) at the URLs it prints.
//
//	falsim --addr 127.0.0.1:8787 --latency 200ms --rate-limit-rate 0.1
//
// By default it behaves as fal does where that is hard on a client:
// invalid input is a stored 422 result, runner failures are retried
// server-side, a cancel of a running request only signals the app.
// --lenient keeps the older shortcuts (422 at submit, no server-side
// retries, every cancel honoured).
//
// Faults can also be changed while it runs: PUT /_sim/faults with JSON such
// as {"server_error_rate": 0.2, "added_latency": "250ms"}.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/falbridge/falbridge/internal/falsim"
)

// shutdownGrace bounds the wait for in-flight requests on SIGINT/SIGTERM.
const shutdownGrace = 5 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// keyList collects repeated --key flags.
type keyList []string

func (k *keyList) String() string {
	if k == nil || len(*k) == 0 {
		return ""
	}
	// Never echo secrets back: only the key ids.
	ids := make([]string, len(*k))
	for i, key := range *k {
		id, _, _ := strings.Cut(key, ":")
		ids[i] = id + ":****"
	}
	return strings.Join(ids, ",")
}

func (k *keyList) Set(v string) error {
	if id, secret, ok := strings.Cut(v, ":"); !ok || id == "" || secret == "" {
		return errors.New("want id:secret")
	}
	*k = append(*k, v)
	return nil
}

// run is main without the process: it parses args, serves until ctx ends,
// and returns the exit code (0 ok, 1 runtime error, 2 usage error).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("falsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			fs.SetOutput(stdout) // asked-for help is output, not an error
		}
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: falsim [flags]\n\nA local simulator of fal.ai's HTTP API (queue, run, stream, webhooks).\nServes: POST /{model_id} (queue), /{app_id}/requests/{id}[/status[/stream]|/cancel],\nPOST /run/{model_id}[/stream], [/alpha]/.well-known/jwks.json, GET /v1/models/pricing,\n/files/..., /_sim/stats|reset|faults|requests/{id}.\nModels: %s\n\nFlags:\n", strings.Join(falsim.ModelIDs(), ", "))
		// Like fs.PrintDefaults, but with the "--" spelling the docs use.
		fs.VisitAll(func(f *flag.Flag) {
			typ, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(fs.Output(), "  --%s %s\n    \t%s", f.Name, typ, usage)
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
				fmt.Fprintf(fs.Output(), " (default %s)", f.DefValue)
			}
			fmt.Fprintln(fs.Output())
		})
	}
	var (
		cfg     falsim.Config
		keys    keyList
		f       falsim.Faults
		addr    = fs.String("addr", "127.0.0.1:8787", "listen address (host:port; port 0 picks a free one)")
		verbose = fs.Bool("verbose", false, "log every request lifecycle event (debug level)")
	)
	fs.DurationVar(&cfg.Latency, "latency", 0, "run time of every model (0 = each model's catalog time)")
	fs.Float64Var(&cfg.Jitter, "jitter", falsim.JitterDefault, "± fraction of jitter on run times (0 = none)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 0, "runners per model (0 = catalog default)")
	fs.BoolVar(&cfg.Lenient, "lenient", false, "keep the simulator's shortcuts: 422 at submit, no server-side retries, every cancel of a running request honoured")
	fs.IntVar(&cfg.AccountConcurrency, "account-concurrency", falsim.AccountConcurrencyDefault, "requests IN_PROGRESS at once across all models (0 = default); the rest wait IN_QUEUE, sync runs get 429")
	fs.IntVar(&cfg.ServerRetries, "server-retries", falsim.ServerRetriesDefault, "attempts the queue makes at a request whose runner fails (1 = no retries)")
	fs.DurationVar(&cfg.ServerRetryDelay, "server-retry-delay", falsim.ServerRetryDelayDefault, "how long each retried attempt takes")
	fs.DurationVar(&cfg.StatusPingInterval, "status-ping-interval", falsim.StatusPingIntervalDefault, "keep-alive interval of status streams (\": ping\" and a repeated IN_PROGRESS event)")
	fs.Var(&keys, "key", "accepted API key `id:secret` (repeatable; none = any well-formed key)")
	fs.IntVar(&cfg.WebhookRetries, "webhook-retries", falsim.WebhookRetriesDefault, "retries of a failed webhook delivery (0 = none)")
	fs.DurationVar(&cfg.WebhookRetryDelay, "webhook-retry-delay", 0, "wait before the first webhook retry; doubles after each (0 = fal's 15s × --webhook-time-scale)")
	fs.Float64Var(&cfg.WebhookTimeScale, "webhook-time-scale", 1, "scale of fal's webhook schedule (15s first-attempt timeout, 120s on retries, 15s first retry delay doubling to 30m): 1 = real time")
	fs.IntVar(&cfg.WebhookSenders, "webhook-senders", falsim.WebhookSendersDefault, "webhook deliveries in flight at once (sender goroutines and kept-alive connections); each waits for the receiver's answer, so this caps webhook throughput near senders ÷ receiver latency")
	fs.DurationVar(&cfg.Retention, "retention", falsim.RetentionDefault, "how long completed requests stay readable without payload storage (X-Fal-Store-IO: 0)")
	fs.DurationVar(&cfg.LargeResultRetention, "large-result-retention", falsim.LargeResultRetentionDefault, "the same for results of 10 KB or more")
	fs.DurationVar(&cfg.StoredRetention, "stored-retention", falsim.StoredRetentionDefault, "how long results stay readable with payload storage on (fal's default)")
	fs.Int64Var(&cfg.Seed, "seed", 0, "random seed for faults and jitter (0 = time-based)")
	fs.Float64Var(&f.RateLimitRate, "rate-limit-rate", 0, "fault: fraction of API calls answered 429")
	fs.DurationVar(&f.RetryAfter, "retry-after", 0, "fault: Retry-After on those 429s (0 = header omitted)")
	fs.Float64Var(&f.ServerErrorRate, "server-error-rate", 0, "fault: fraction of API calls answered 500/502/503 (JSON and nginx HTML)")
	fs.DurationVar(&f.AddedLatency, "added-latency", 0, "fault: latency added to every API response")
	fs.Float64Var(&f.WebhookDropRate, "webhook-drop-rate", 0, "fault: fraction of webhooks never sent")
	fs.Float64Var(&f.WebhookDuplicateRate, "webhook-duplicate-rate", 0, "fault: fraction of webhooks sent twice")
	fs.DurationVar(&f.WebhookDelay, "webhook-delay", 0, "fault: delay before every webhook")
	fs.Float64Var(&f.WebhookBadSignatureRate, "webhook-bad-signature-rate", 0, "fault: fraction of webhooks with a bad signature")
	fs.Float64Var(&f.HangRate, "hang-rate", 0, "fault: fraction of API calls that never answer")
	fs.Float64Var(&f.BadGatewayAfterAcceptRate, "bad-gateway-after-accept-rate", 0, "fault: fraction of submits accepted (job made, run, billed) but answered with nginx's HTML 502")
	fs.StringVar(&f.JWKSDown, "jwks-down", "", "fault: JWKS path answering 503: current (/.well-known/jwks.json) or alpha (/alpha/.well-known/jwks.json)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "falsim: unexpected arguments: %s\n", strings.Join(fs.Args(), " "))
		return 2
	}
	// On the command line 0 means what it says; in Config, 0 means default.
	if cfg.Jitter == 0 {
		cfg.Jitter = -1
	}
	if cfg.WebhookRetries == 0 {
		cfg.WebhookRetries = -1
	}
	if cfg.ServerRetries < 1 {
		fmt.Fprintf(stderr, "falsim: --server-retries: must be ≥ 1 (got %d)\n", cfg.ServerRetries)
		return 2
	}
	if cfg.AccountConcurrency < 0 {
		fmt.Fprintf(stderr, "falsim: --account-concurrency: must be ≥ 0 (got %d)\n", cfg.AccountConcurrency)
		return 2
	}
	if cfg.ServerRetries == 1 {
		cfg.ServerRetries = -1
	}
	if !(cfg.WebhookTimeScale > 0) {
		fmt.Fprintf(stderr, "falsim: --webhook-time-scale: must be > 0 (got %g)\n", cfg.WebhookTimeScale)
		return 2
	}
	if cfg.WebhookSenders < 1 {
		fmt.Fprintf(stderr, "falsim: --webhook-senders: must be ≥ 1 (got %d)\n", cfg.WebhookSenders)
		return 2
	}
	cfg.Keys, cfg.Faults = keys, f
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = logger

	sim, err := falsim.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	defer sim.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "falsim: listen: %v\n", err)
		return 1
	}
	base := "http://" + ln.Addr().String()
	fmt.Fprintf(stdout, "falsim listening\n  queue: %s\n  run:   %s/run\n  jwks:  %s/.well-known/jwks.json\n  stats: %s/_sim/stats\n  alpha-jwks: %s/alpha/.well-known/jwks.json\n  platform: %s/v1\n", base, base, base, base, base, base)

	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		fmt.Fprintf(stderr, "falsim: serve: %v\n", err)
		return 1
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		// Hung or streaming requests outlived the grace period: closing the
		// Sim releases them, then the connections go.
		_ = sim.Close()
		_ = srv.Close()
	}
	<-serveErr
	return 0
}
