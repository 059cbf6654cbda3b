// Package falclient is a Go client for fal.ai's HTTP API: the queue (submit,
// status, result, cancel, status stream), synchronous runs, SSE streaming,
// model-id parsing, typed errors, a retry policy that never double-submits, and
// webhook payload parsing and ED25519 signature verification.
//
// It knows nothing of NATS. Point its three base URLs (queue, run, JWKS) at the
// fal simulator (internal/falsim) and nothing else changes.
//
// # Client
//
// [New] builds a [Client] from functional options; every option validates its
// value (errors wrap [ErrInvalidOption]). By default the client talks to fal's
// real hosts with the key from FAL_KEY, through its own tuned HTTP transport
// (keep-alive, a connection pool sized by [WithMaxConnsPerHost], HTTP/2). A
// Client is safe for concurrent use and should be shared.
//
// Model ids are parsed as fal's official clients do ([ParseModelID]): submit
// and run URLs use the full endpoint id, the other queue URLs only the base
// app id. Outputs are returned as the exact bytes fal sent (json.RawMessage),
// so large integers such as seeds above 2^53 survive.
//
// # Errors
//
// Error answers become *[APIError] values; use errors.Is with the sentinels
// ([ErrNotFound], [ErrValidation], [ErrRateLimited], [ErrTimeout], …) and
// errors.As for details such as [ValidationDetail.Field]. [IsRetryable] and
// [RetryAfter] tell a caller whether and when to try again. Neither errors
// nor log lines ever contain the API key; [Key] redacts itself wherever it is
// printed.
//
// # Retries
//
// Calls are retried with exponential backoff and jitter ([RetryPolicy]);
// Retry-After is a floor for the next wait, and no wait outlives the caller's
// context. Status, result and cancel retry network errors and retryable
// codes. Submit is retried only when fal certainly did not accept it: if it
// may have, the error wraps [ErrAmbiguousSubmit] and the caller decides. Run
// and Stream are retried only before the request was written, or on 429/503.
//
// # Webhooks
//
// [ParseWebhook] decodes fal's webhook body and [Webhook.Err] turns a failed
// run into an *[APIError]. A [Verifier] checks the X-Fal-Webhook-* signature
// headers against fal's JWKS (cached, refetched once on key rotation).
package falclient
