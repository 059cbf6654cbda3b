// Package service assembles a running falbridge from a config.Config: NATS
// (embedded when no URL is set), the fal client, the consumer pool, the
// webhook and admin listeners, and the graceful shutdown that ties them.
// The falbridge binary's serve and dev commands are thin wrappers over Run.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/internal/console"
)

// Addrs are the addresses Run listens on, once it is ready.
type Addrs struct {
	// NATS is the client URL of the NATS server in use.
	NATS string
	// Embedded reports whether that server is the embedded one.
	Embedded bool
	// Webhook and Admin are the listeners' host:port.
	Webhook, Admin string
	// WebhookURL is the URL given to fal ("" when polling only).
	WebhookURL string
	// Console is the web console's URL ("" when admin.console is off).
	Console string
}

// Options are Run's optional collaborators.
type Options struct {
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Ready is called once everything listens and the pool pulls.
	Ready func(Addrs)
	// WebhookFromListener sets webhook.public_url to http://<the webhook
	// listener's address> once it listens (dev: port 0 works).
	WebhookFromListener bool
}

// Run runs falbridge until ctx is done, then stops within
// shutdown.grace_period: stop pulling, finish submissions in hand, close the
// listeners, drain NATS. It returns nil after a clean stop.
func Run(ctx context.Context, cfg config.Config, o Options) (err error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// Without a key nothing can be submitted: say so, naming FAL_KEY,
	// before anything starts or connects.
	if err := cfg.RequireFalKey(); err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		log.Warn("risky setting", "warning", w)
	}
	addrs := Addrs{NATS: cfg.NATS.URL}

	// The fal client before NATS: its options are checked without a
	// connection, so a bad setting fails the start at once.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := consumer.NewMetrics(reg)

	fal, err := falclient.New(
		falclient.WithObserver(metrics.ObserveFal),
		falclient.WithKey(falclient.Key(cfg.Fal.Key.Reveal())),
		falclient.WithQueueURL(cfg.Fal.QueueURL),
		falclient.WithRunURL(cfg.Fal.RunURL),
		falclient.WithJWKSURL(cfg.WebhookJWKSURLs()...),
		falclient.WithPlatformURL(cfg.Fal.PlatformURL),
		falclient.WithRequestTimeout(cfg.Fal.RequestTimeout),
		falclient.WithRetry(falclient.RetryPolicy{MaxAttempts: cfg.Fal.MaxAttempts, InitialInterval: cfg.Fal.RetryInitial, MaxInterval: cfg.Fal.RetryMax}),
		falclient.WithMaxConnsPerHost(max(cfg.Limits.Workers*2, 16)),
		falclient.WithLogger(log),
	)
	if err != nil {
		return fmt.Errorf("fal client: %w", err)
	}
	verifier, err := falclient.NewVerifier(falclient.VerifierOptions{JWKSURLs: cfg.WebhookJWKSURLs(), Tolerance: cfg.Webhook.Tolerance})
	if err != nil {
		return fmt.Errorf("webhook verifier: %w", err)
	}

	var ns *server.Server
	if cfg.NATS.URL == "" {
		dir := cfg.NATS.Embedded.StoreDir
		if dir == "" {
			if dir, err = os.MkdirTemp("", "falbridge-nats-"); err != nil {
				return fmt.Errorf("embedded nats store: %w", err)
			}
			defer os.RemoveAll(dir)
		}
		if ns, err = StartEmbedded(cfg.NATS.Embedded.Listen, filepath.Clean(dir)); err != nil {
			return err
		}
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
		addrs.NATS = ns.ClientURL()
		addrs.Embedded = true
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs // say where the state lives: serve creates it in the working directory by default
		}
		log.Info("embedded nats started", "url", addrs.NATS, "store_dir", dir)
	}
	nc, err := nats.Connect(addrs.NATS, append(NATSOptions(cfg.NATS),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// err is nil when the connection was closed on purpose
			// (shutdown): nothing to warn about.
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
	)...)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w: %w", RedactURL(addrs.NATS), ErrNATSUnreachable, err)
	}
	defer nc.Close()
	if err := checkJetStream(ctx, nc, addrs.NATS); err != nil {
		return err
	}

	// Listen before the pool starts: a port 0 listener tells us the webhook
	// URL to give fal.
	webhookLn, err := net.Listen("tcp", cfg.Webhook.Listen)
	if err != nil {
		return fmt.Errorf("webhook listener %s: %w", cfg.Webhook.Listen, err)
	}
	adminLn, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		webhookLn.Close()
		return fmt.Errorf("admin listener %s: %w", cfg.Admin.Listen, err)
	}
	addrs.Webhook, addrs.Admin = webhookLn.Addr().String(), adminLn.Addr().String()
	if o.WebhookFromListener {
		cfg.Webhook.PublicURL = "http://" + addrs.Webhook
	}

	pool, err := consumer.New(nc, fal, cfg, consumer.WithLogger(log), consumer.WithVerifier(verifier), consumer.WithMetrics(metrics),
		consumer.WithPriceSource(fal))
	if err != nil {
		webhookLn.Close()
		adminLn.Close()
		return err
	}
	startCtx, cancelStart := context.WithTimeout(ctx, 30*time.Second)
	err = pool.Start(startCtx)
	cancelStart()
	if err != nil {
		webhookLn.Close()
		adminLn.Close()
		return err
	}

	js, err := jetstream.New(nc)
	if err != nil {
		_ = pool.Stop(context.Background())
		webhookLn.Close()
		adminLn.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	webhookMux := http.NewServeMux()
	webhookMux.Handle(cfg.Webhook.Path, pool.WebhookHandler())
	adminMux := http.NewServeMux()
	adminMux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	adminMux.Handle("/readyz", newReadiness(nc, js, pool, cfg))
	adminMux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	var cons *console.Console
	if cfg.Admin.Console {
		if cons, err = console.New(console.Config{NATS: nc, JetStream: js, Bridge: cfg, Gatherer: reg, Logger: log}); err != nil {
			_ = pool.Stop(context.Background())
			webhookLn.Close()
			adminLn.Close()
			return err
		}
		adminMux.Handle(console.Prefix, cons.Handler())
		addrs.Console = "http://" + addrs.Admin + console.Prefix
	}

	var (
		wg      sync.WaitGroup
		srvErrs = make(chan error, 2)
		servers []*http.Server
	)
	serve := func(name string, ln net.Listener, h http.Handler) {
		hs := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second}
		servers = append(servers, hs)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				srvErrs <- fmt.Errorf("%s listener: %w", name, err)
			}
		}()
	}
	shutdown := func() error {
		grace, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.GracePeriod)
		defer cancel()
		log.Info("shutting down", "grace_period", cfg.Shutdown.GracePeriod)
		stopErr := pool.Stop(grace) // stop pulling first, finish what is in hand
		if cons != nil {
			cons.Close() // end the live feeds, or Shutdown waits on them
		}
		for _, hs := range servers {
			_ = hs.Shutdown(grace)
		}
		wg.Wait()
		if err := nc.Drain(); err != nil {
			log.Debug("nats drain", "err", err)
		}
		return stopErr
	}
	serve("webhook", webhookLn, webhookMux)
	serve("admin", adminLn, adminMux)
	addrs.WebhookURL = cfg.Webhook.URL()
	log.Info("falbridge ready", "nats", RedactURL(addrs.NATS), "webhook", addrs.Webhook, "admin", addrs.Admin,
		"webhook_url", addrs.WebhookURL, "requests", cfg.Subjects.Requests)
	if o.Ready != nil {
		o.Ready(addrs)
	}
	select {
	case <-ctx.Done():
		return shutdown()
	case err := <-srvErrs:
		_ = shutdown()
		return err
	}
}

// ErrNATSUnreachable is wrapped by [Run]'s error when no NATS server of
// nats.url could be reached at start.
var ErrNATSUnreachable = errors.New("NATS unreachable")

// ErrNoJetStream is returned by [Run] when the NATS server has JetStream
// off (a nats-server started without -js).
var ErrNoJetStream = errors.New("JetStream is not enabled on this NATS server; falbridge keeps everything in JetStream (start nats-server with -js, or leave nats.url empty for the embedded server)")

// checkJetStream fails with ErrNoJetStream when the server at url (in nc)
// has no JetStream, instead of the "no responders available" that creating
// the streams would give.
func checkJetStream(ctx context.Context, nc *nats.Conn, url string) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = js.AccountInfo(actx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount), errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("NATS at %s: %w", RedactURL(url), ErrNoJetStream)
	}
	return fmt.Errorf("NATS at %s: jetstream account info: %w", RedactURL(url), err)
}

// redactURL hides user:password in NATS URLs for logs.
func RedactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
				parts[i] = p[:scheme+3] + "***@" + p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}
