package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/pflag"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/internal/service"
	"github.com/falbridge/falbridge/internal/version"
)

// configFlags registers --config plus one flag per config key; --help
// prints usage (the synopsis and description) then the flags, on stdout.
func configFlags(name, usage string, def config.Config, stdout, stderr io.Writer) (*pflag.FlagSet, *string) {
	fs := pflag.NewFlagSet("falbridge "+name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.StringP("config", "c", "", "YAML config file (default: $FALBRIDGE_CONFIG)")
	config.RegisterFlagsFrom(fs, def)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintln(stdout, strings.TrimSpace(usage))
		fmt.Fprintln(stdout)
		fmt.Fprintln(stdout, "Flags:")
		fmt.Fprint(stdout, fs.FlagUsages())
	}
	return fs, file
}

const serveUsage = `
Usage: falbridge serve [--config FILE] [flags]

Run the bridge: pull triggers, submit them to fal, publish results. It needs
a fal key: FAL_KEY="<key id>:<key secret>" (or FAL_KEY_ID and
FAL_KEY_SECRET, or fal.key). With no nats.url it starts an embedded NATS
server whose JetStream state lives in nats.embedded.store_dir
(./falbridge-data, created if missing). Config: defaults, then the file,
then FALBRIDGE_* variables, then these flags; see config/example.yaml.
`

const devUsage = `
Usage: falbridge dev [--config FILE] [--sim.* flags] [flags]

Run an embedded NATS server, the fal simulator and the bridge on loopback,
for trying things out: no network, no FAL_KEY. State lives in a temporary
directory. fal's URLs always point at the simulator (--sim.addr), so the
fal.*_url flags are not offered here.
`

const configUsage = `
Usage: falbridge config validate|print [--config FILE] [flags]

validate loads the config as serve would (defaults, the file, FALBRIDGE_*
variables and FAL_KEY, then the flags), checks every key and that a fal key
is set, and prints "config ok" and any warnings; exit 2 on a problem, naming
the key. print shows the effective config as YAML, secrets redacted.
`

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
	opts.ReplaceAttr = durationsAsText
	return slog.New(slog.NewJSONHandler(w, opts))
}

// durationsAsText writes durations as "1m30s" (the config's own format)
// instead of the JSON handler's integer nanoseconds.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, file := configFlags("serve", serveUsage, config.Default(), stdout, stderr)
	if err := parseFlags(fs, args); err != nil {
		return ignoreHelp(err)
	}
	cfg, err := loadConfig(fs, *file, config.Default())
	if err != nil {
		return err
	}
	// Before connecting anywhere: a missing key is a setup mistake.
	if err := cfg.RequireFalKey(); err != nil {
		return usageError{err}
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
	if errors.Is(err, nats.ErrNoServers) || errors.Is(err, service.ErrNATSUnreachable) {
		return unreachableError{err}
	}
	return err
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, file := configFlags("dev", devUsage, devBase(), stdout, stderr)
	for _, name := range simReplaced {
		_ = fs.MarkHidden(name)
	}
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
	for _, name := range simReplaced {
		if fs.Changed(name) {
			return usagef("--%s: dev points fal at its simulator (--sim.addr); use serve for another fal", name)
		}
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
	// Both key-set paths, as falbridge fetches both of fal's hosts.
	cfg.Fal.JWKSURLs = []string{simURL + "/.well-known/jwks.json", simURL + "/alpha/.well-known/jwks.json"}
	cfg.Fal.PlatformURL = simURL + "/v1"
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
		self, onPath := selfCommand()
		natsSrv := ""
		if a.NATS != defaultServer {
			natsSrv = " -s " + a.NATS
		}
		fmt.Fprintf(stdout, `falbridge dev is ready (version %s)
  nats:     %s
  fal sim:  %s  (run: %s/run, jwks: %s/.well-known/jwks.json, stats: %s/_sim/stats)
  webhook:  %s
  admin:    http://%s  (/healthz /readyz)%s

Try it, in another terminal:
  %s publish%s -m fal-ai/flux/schnell -p 'a red fox in snow' -n 2 --wait
  %s watch%s
or with the nats CLI:
  nats sub%s 'fal.results.>' &
  nats pub%s fal.requests.demo '{"model_id":"fal-ai/flux/schnell","input":{"prompt":"a red fox in snow","num_images":2}}'
%sPress Ctrl-C to stop.
`, versionString(), a.NATS, simURL, simURL, simURL, simURL, a.WebhookURL, a.Admin, consoleLine(a.Console), self, srv, self, srv, natsSrv, natsSrv, devHints(onPath))
	}}))
}

// consoleLine is the dev banner's console line, "" when it is off.
func consoleLine(url string) string {
	if url == "" {
		return ""
	}
	return "\n  console:  " + url
}

// simReplaced are the config keys dev sets to its simulator's URLs.
var simReplaced = []string{"fal.queue_url", "fal.run_url", "fal.jwks_url", "fal.platform_url"}

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
			fs, _ := configFlags("config", configUsage, config.Default(), stdout, stderr)
			fs.Usage()
			return nil
		}
		return usagef("usage: falbridge config validate|print [--config FILE] [flags] (see falbridge config --help)")
	}
	fs, file := configFlags("config "+args[0], configUsage, config.Default(), stdout, stderr)
	if err := parseFlags(fs, args[1:]); err != nil {
		return ignoreHelp(err)
	}
	cfg, err := loadConfig(fs, *file, config.Default())
	if err != nil {
		return err
	}
	if args[0] == "validate" {
		// What serve checks, so that "config ok" means serve can start.
		if err := cfg.RequireFalKey(); err != nil {
			return usageError{err}
		}
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
	fmt.Fprintf(stdout, "falbridge %s\n", versionString())
	return nil
}

// versionString is the stamped version, or for an unstamped build (go
// install, go build) "dev" with the commit Go recorded.
func versionString() string {
	v := version.Version
	bi, ok := debug.ReadBuildInfo()
	if v != "dev" || !ok {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return v
	}
	rev = rev[:min(len(rev), 12)]
	if dirty {
		rev += "-dirty"
	}
	return v + " (" + rev + ")"
}

// selfCommand is how the dev banner tells people to run falbridge: by name
// when it is on PATH, else by the path of this binary (relative when under
// the working directory), else, for a go run binary that disappears at
// exit, go run.
func selfCommand() (cmd string, onPath bool) {
	if _, err := exec.LookPath("falbridge"); err == nil {
		return "falbridge", true
	}
	exe, err := os.Executable()
	if err != nil || strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/falbridge", false
	}
	if wd, err := os.Getwd(); err == nil {
		if rel, err := filepath.Rel(wd, exe); err == nil && !strings.HasPrefix(rel, "..") {
			return "./" + rel, false
		}
	}
	return exe, false
}

// devHints are the banner's notes for commands that are not on PATH.
func devHints(onPath bool) string {
	var b strings.Builder
	if !onPath {
		b.WriteString("  (falbridge is not on PATH: make install puts it in $(go env GOPATH)/bin)\n")
	}
	if _, err := exec.LookPath("nats"); err != nil {
		b.WriteString("  (nats is not on PATH: go install github.com/nats-io/natscli/nats@v0.5.1)\n")
	}
	return b.String()
}
