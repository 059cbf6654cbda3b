// Package falsimtest runs the fal simulator behind an httptest server for
// tests in any package. It lives apart from falsim so that the testing
// package is never linked into the falbridge binary.
package falsimtest

import (
	"net/http/httptest"
	"testing"

	"github.com/falbridge/falbridge/internal/falsim"
)

// Server is a falsim.Sim behind an httptest server on 127.0.0.1, for tests in
// any package. Its URL fields are what falclient's options take.
type Server struct {
	*falsim.Sim
	// Server is the underlying httptest server.
	Server *httptest.Server
	// URL is the base URL, "http://127.0.0.1:port".
	URL string
	// QueueURL is the queue base URL (= URL).
	QueueURL string
	// RunURL is the sync run base URL (= URL + "/run").
	RunURL string
	// JWKSURL is the webhook key set at the current host's path
	// (= URL + "/.well-known/jwks.json", rest.fal.ai).
	JWKSURL string
	// AlphaJWKSURL is the same key set at the old host's path
	// (= URL + "/alpha/.well-known/jwks.json", rest.alpha.fal.ai), its
	// keys' x "="-padded.
	AlphaJWKSURL string
	// PlatformURL is the Platform API base (= URL + "/v1", api.fal.ai/v1).
	PlatformURL string
}

// New starts a simulator configured by cfg and stops it when the
// test ends. Tests typically set a small Latency (20ms). It fails the test
// if cfg is invalid.
func New(tb testing.TB, cfg falsim.Config) *Server {
	tb.Helper()
	sim, err := falsim.New(cfg)
	if err != nil {
		tb.Fatalf("falsim: %v", err)
	}
	srv := httptest.NewServer(sim)
	tb.Cleanup(func() {
		// The Sim first: it releases the requests it holds open (hung
		// calls, streams), which srv.Close would otherwise wait for.
		_ = sim.Close()
		srv.Close()
	})
	return &Server{
		Sim:      sim,
		Server:   srv,
		URL:      srv.URL,
		QueueURL: srv.URL,
		RunURL:   srv.URL + "/run",
		JWKSURL:  srv.URL + "/.well-known/jwks.json",

		AlphaJWKSURL: srv.URL + "/alpha/.well-known/jwks.json",
		PlatformURL:  srv.URL + "/v1",
	}
}
