package service

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/internal/falsim/falsimtest"
	"github.com/falbridge/falbridge/internal/natstest"
)

// TestRunStartupErrors checks that a start that cannot work fails at once
// with a message that says why, before (or instead of) anything NATS says.
func TestRunStartupErrors(t *testing.T) {
	t.Parallel()

	// A NATS server without JetStream.
	plain, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	plain.Start()
	t.Cleanup(plain.Shutdown)
	require.True(t, plain.ReadyForConnections(10*time.Second))

	// A taken port for the embedded server.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { taken.Close() })

	tests := []struct {
		name string
		mod  func(c *config.Config)
		is   error  // errors.Is target, when not nil
		msg  string // substring of the error
	}{
		{
			name: "no fal key, unreachable NATS: the key is named, NATS is not tried",
			mod:  func(c *config.Config) { c.Fal.Key = ""; c.NATS.URL = "nats://127.0.0.1:1" },
			is:   config.ErrInvalidValue,
			msg:  "fal.key: no fal key: set FAL_KEY=",
		},
		{
			name: "malformed fal key",
			mod:  func(c *config.Config) { c.Fal.Key = "nocolon"; c.NATS.URL = "nats://127.0.0.1:1" },
			is:   config.ErrInvalidValue,
			msg:  "fal.key: has no ':'",
		},
		{
			name: "NATS without JetStream",
			mod:  func(c *config.Config) { c.NATS.URL = plain.ClientURL() },
			is:   ErrNoJetStream,
			msg:  "start nats-server with -js",
		},
		{
			name: "embedded NATS port taken",
			mod:  func(c *config.Config) { c.NATS.URL = ""; c.NATS.Embedded.Listen = taken.Addr().String() },
			msg:  "address already in use",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Default()
			cfg.Fal.Key = falKey
			cfg.NATS.ConnectTimeout = 2 * time.Second
			cfg.Webhook.Listen = "127.0.0.1:0"
			cfg.Admin.Listen = "127.0.0.1:0"
			tt.mod(&cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			err := Run(ctx, cfg, Options{})
			require.Error(t, err)
			if tt.is != nil {
				require.ErrorIs(t, err, tt.is)
			}
			require.Contains(t, err.Error(), tt.msg)
			require.NotContains(t, err.Error(), "connect to NATS")
			require.Less(t, time.Since(start), 5*time.Second, "fails at once: %v", err)
		})
	}
}

// TestCleanShutdownLogsNoDisconnect: a stop on purpose is not a warning.
func TestCleanShutdownLogsNoDisconnect(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	sim := falsimtest.New(t, falsim.Config{Latency: 10 * time.Millisecond})
	cfg := config.Default()
	cfg.NATS.URL = srv.ClientURL()
	cfg.Fal.Key = falKey
	cfg.Fal.QueueURL, cfg.Fal.RunURL, cfg.Fal.JWKSURLs = sim.QueueURL, sim.RunURL, []string{sim.JWKSURL}
	cfg.Webhook.Listen = "127.0.0.1:0"
	cfg.Admin.Listen = "127.0.0.1:0"
	cfg.Streams.Storage = "memory"
	cfg.Shutdown.GracePeriod = 5 * time.Second
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, Options{
			Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Ready:  func(Addrs) { close(ready) },
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run ended early: %v\n%s", err, logs.String())
	case <-time.After(20 * time.Second):
		t.Fatal("not ready in 20s")
	}
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	require.Contains(t, logs.String(), "shutting down")
	require.NotContains(t, logs.String(), "nats disconnected", logs.String())
	require.False(t, strings.Contains(logs.String(), `"level":"WARN"`), "no warning on a clean stop: %s", logs.String())
}

// An unreachable NATS is a typed error, so that the CLI can tell it apart
// (exit code 3) without reading the message.
func TestUnreachableNATSIsTyped(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Fal.Key = "a:b"
	cfg.NATS.URL = "nats://127.0.0.1:1"
	cfg.NATS.ConnectTimeout = time.Second
	cfg.Webhook.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := Run(ctx, cfg, Options{})
	require.ErrorIs(t, err, ErrNATSUnreachable)
	require.ErrorContains(t, err, "nats://127.0.0.1:1")
}
