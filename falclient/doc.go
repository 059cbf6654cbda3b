// Package falclient is a Go client for fal.ai's HTTP API: the queue (submit,
// status, result, cancel, status stream), synchronous runs, SSE streaming,
// model-id parsing, typed errors, a retry policy that never double-submits, and
// webhook payload parsing and ED25519 signature verification.
//
// It knows nothing of NATS. Point its three base URLs (queue, run, JWKS) at the
// fal simulator (internal/falsim) and nothing else changes.
package falclient
