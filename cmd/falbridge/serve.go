package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/internal/service"
	"github.com/falbridge/falbridge/internal/version"
)

// configFlags registers --config plus one flag per config key.
func configFlags(name string, def config.Config, stderr io.Writer) (*pflag.FlagSet, *string) {
	fs := pflag.NewFlagSet("falbridge "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.StringP("config", "c", "", "YAML config file (default: $FALBRIDGE_CONFIG)")
	config.RegisterFlagsFrom(fs, def)
	fs.SortFlags = false
	return fs, file
}

func parseFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return errHelp
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

// errHelp ends a command after --help with exit code 0.
var errHelp = errors.New("help shown")

func loadConfig(fs *pflag.FlagSet, file string, base config.Config) (*config.Config, error) {
	cfg, err := config.Load(config.LoadOptions{File: file, Flags: fs, Base: &base})
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, file := configFlags("serve", config.Default(), stderr)
	if err := parseFlags(fs, args); err != nil {
		return ignoreHelp(err)
	}
	cfg, err := loadConfig(fs, *file, config.Default())
	if err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	warnSecretFlags(log, fs)
	return natsError(service.Run(ctx, *cfg, service.Options{Logger: log}))
}

// warnSecretFlags warns once at start when a secret came from a flag: the
// command line is visible to every user of the machine.
func warnSecretFlags(log *slog.Logger, fs *pflag.FlagSet) {
	if names := config.SecretFlags(fs); len(names) > 0 {
		log.Warn("secrets given as command-line flags are visible to every user of this machine (ps, /proc); set them in the environment or a config file instead",
			"flags", strings.Join(names, ","))
	}
}

func ignoreHelp(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

// natsError marks connection failures so that they exit with code 3.
func natsError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, nats.ErrNoServers) || strings.Contains(err.Error(), "connect to NATS") {
		return unreachableError{err}
	}
	return err
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, file := configFlags("dev", devBase(), stderr)
	simAddr := fs.String("sim.addr", "127.0.0.1:8787", "fal simulator listen address")
	simLatency := fs.Duration("sim.latency", 0, "override every simulated model's run time (0 = the catalog's own)")
	simConcurrency := fs.Int("sim.concurrency", 0, "runners per simulated model (0 = the catalog's own); 1 makes jobs queue")
	if err := parseFlags(fs, args); err != nil {
		return ignoreHelp(err)
	}
	cfg, err := loadConfig(fs, *file, devBase())
	if err != nil {
		return err
	}
	if cfg.NATS.URL != "" {
		return usagef("dev runs its own embedded NATS; nats.url must be empty (got %q)", cfg.NATS.URL)
	}

	if *simConcurrency < 0 {
		return usagef("--sim.concurrency must not be negative")
	}
	sim, err := falsim.New(falsim.Config{Latency: *simLatency, Concurrency: *simConcurrency})
	if err != nil {
		return err
	}
	defer sim.Close()
	ln, err := net.Listen("tcp", *simAddr)
	if err != nil {
		return fmt.Errorf("fal simulator listener %s: %w", *simAddr, err)
	}
	simSrv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = simSrv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = simSrv.Shutdown(sctx)
	}()
	simURL := "http://" + ln.Addr().String()
	cfg.Fal.QueueURL = simURL
	cfg.Fal.RunURL = simURL + "/run"
	cfg.Fal.JWKSURL = simURL + "/.well-known/jwks.json"
	if !cfg.Fal.Key.IsSet() {
		cfg.Fal.Key = "falbridge-dev:simulator"
	}

	log := newLogger(cfg, stderr)
	warnSecretFlags(log, fs)
	// Unless told otherwise, fal (the simulator) calls back on the webhook
	// listener itself, whatever port it got.
	derive := cfg.Webhook.PublicURL == ""
	return natsError(service.Run(ctx, *cfg, service.Options{Logger: log, WebhookFromListener: derive, Ready: func(a service.Addrs) {
		srv := "" // the client commands' default is dev's default address
		if a.NATS != defaultServer {
			srv = " -s " + a.NATS
		}
		fmt.Fprintf(stdout, `falbridge dev is ready (version %s)
  nats:     %s
  fal sim:  %s  (run: %s/run, jwks: %s/.well-known/jwks.json, stats: %s/_sim/stats)
  webhook:  %s
  admin:    http://%s  (/healthz /readyz)%s

Try it:
  falbridge publish%s -m fal-ai/flux/schnell -p 'a red fox in snow' -n 2 --wait
  falbridge watch%s
or with the nats CLI:
  nats sub 'fal.results.>' &
  nats pub fal.requests.demo '{"model_id":"fal-ai/flux/schnell","input":{"prompt":"a red fox in snow","num_images":2}}'
Press Ctrl-C to stop.
`, version.Version, a.NATS, simURL, simURL, simURL, simURL, a.WebhookURL, a.Admin, consoleLine(a.Console), srv, srv)
	}}))
}

// consoleLine is the dev banner's console line, "" when it is off.
func consoleLine(url string) string {
	if url == "" {
		return ""
	}
	return "\n  console:  " + url
}

// devBase is the configuration dev starts from: loopback listeners,
// throw-away state in a temp dir, human-readable logs.
func devBase() config.Config {
	base := config.Dev()
	base.NATS.Embedded.StoreDir = ""
	base.Log.Format = "text"
	return base
}

func runConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "validate" && args[0] != "print") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			fmt.Fprintln(stdout, "Usage: falbridge config validate|print [--config FILE] [flags]")
			return nil
		}
		return usagef("usage: falbridge config validate|print [--config FILE] [flags]")
	}
	fs, file := configFlags("config "+args[0], config.Default(), stderr)
	if err := parseFlags(fs, args[1:]); err != nil {
		return ignoreHelp(err)
	}
	cfg, err := loadConfig(fs, *file, config.Default())
	if err != nil {
		return err
	}
	if args[0] == "validate" {
		fmt.Fprintln(stdout, "config ok")
		for _, w := range cfg.Warnings() {
			fmt.Fprintln(stdout, "warning:", w)
		}
		return nil
	}
	b, err := cfg.Redacted().YAML()
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintf(stdout, "falbridge %s\n", version.Version)
	return nil
}
