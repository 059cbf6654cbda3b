// Package natstest starts an embedded, JetStream-enabled NATS server for tests.
//
// Every server listens on 127.0.0.1 on a random port and keeps its store in a
// fresh t.TempDir(), so tests are hermetic and may run in parallel.
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Server is a running embedded NATS server owned by one test.
type Server struct {
	*server.Server
	// StoreDir is the JetStream store directory; Restart reuses it so that
	// streams and KV buckets survive a restart.
	StoreDir string
	opts     *server.Options
	tb       testing.TB
}

// Option adjusts the server options before start (auth, TLS, limits...).
type Option func(*server.Options)

// Run starts an embedded JetStream server and stops it when the test ends.
func Run(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	o := &server.Options{
		Host:      "127.0.0.1",
		Port:      server.RANDOM_PORT,
		JetStream: true,
		StoreDir:  tb.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	for _, opt := range opts {
		opt(o)
	}
	s := &Server{StoreDir: o.StoreDir, opts: o, tb: tb}
	s.start()
	return s
}

func (s *Server) start() {
	s.tb.Helper()
	ns, err := server.NewServer(s.opts)
	if err != nil {
		s.tb.Fatalf("natstest: new server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		s.tb.Fatalf("natstest: server not ready within 10s")
	}
	// Keep the port across restarts so clients can reconnect to the same URL.
	s.opts.Port = ns.Addr().(*net.TCPAddr).Port
	s.Server = ns
	s.tb.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
}

// Restart shuts the server down and starts it again on the same port with the
// same store, as a NATS restart in production would.
func (s *Server) Restart() {
	s.tb.Helper()
	s.Shutdown()
	s.WaitForShutdown()
	s.start()
}

// Connect opens a client connection that is closed when the test ends.
func (s *Server) Connect(tb testing.TB, opts ...nats.Option) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	return nc
}
