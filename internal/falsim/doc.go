// Package falsim is a local simulator of fal.ai's HTTP API, faithful enough
// that falbridge's client, consumer and tests cannot tell it from the real
// service (see shared/docs/fal-protocol.md).
//
// A *Sim is an http.Handler that serves every fal host under one base URL:
//
//	POST {base}/{model_id}[/path][?fal_webhook=URL]   queue submit (full endpoint id)
//	GET  {base}/{app_id}/requests/{rid}               result
//	GET  {base}/{app_id}/requests/{rid}/status        status (202 running, 200 done)
//	GET  {base}/{app_id}/requests/{rid}/status/stream status as server-sent events
//	PUT  {base}/{app_id}/requests/{rid}/cancel        cancel
//	POST {base}/run/{model_id}                         sync run
//	POST {base}/run/{model_id}/stream                  sync run as server-sent events
//	GET  {base}/.well-known/jwks.json                  webhook signing keys (rest.fal.ai)
//	GET  {base}/alpha/.well-known/jwks.json            the same keys, x "="-padded (rest.alpha.fal.ai)
//	GET  {base}/v1/models/pricing?endpoint_id=…        Platform API pricing (api.fal.ai/v1)
//	GET  {base}/files/...                              media the outputs point to
//	GET  {base}/_sim/stats, POST {base}/_sim/reset, GET|PUT {base}/_sim/faults
//	GET  {base}/_sim/requests/{rid}                    what the simulator knows of a request
//
// # Faithful by default
//
// The zero Config behaves as fal does where that is hard on a client
// (fal-protocol §11; internal/falsim/README.md lists every item):
//
//   - Input validation is asynchronous: a queue submit of an invalid input
//     answers 200 IN_QUEUE; the request completes with the 422 as its
//     stored result and an ERROR webhook. Sync runs answer 422 at once.
//   - Runner failures (_sim.fail runner_disconnected, startup_timeout,
//     generation_timeout) are retried by the queue up to
//     Config.ServerRetries attempts, each with a new gateway_request_id;
//     then the request is COMPLETED and its result is the stored 5xx.
//     500s are not retried; X-Fal-No-Retry turns retries off.
//   - At most Config.AccountConcurrency requests are IN_PROGRESS across all
//     models; queued ones wait, sync runs get 429 concurrent_requests_limit.
//   - A cancel of a running request only signals the app: a model that
//     honours cancels (catalog, or _sim.cancel) ends with 499, one that
//     ignores them finishes, is billed, and its output is the result.
//   - Results are kept 30 days with payload storage on (the default),
//     else 1 hour, or 6 minutes for results of 10 KB or more.
//   - Webhook bodies have sorted keys; webhook retries follow fal's
//     schedule, scaled by Config.WebhookTimeScale.
//
// Config.Lenient (falsim --lenient) keeps the older shortcuts for tests
// that want them: 422 at submit, no server-side retries, every cancel of a
// running request honoured.
//
// {app_id} is the base app id of fal-protocol §2: the endpoint id without its
// path, i.e. two segments, or three under the workflows/ and comfy/
// namespaces.
//
// The engine is data, not goroutines: jobs live in maps and per-model queues,
// and every deadline (a job finishing, a start timeout, a delayed or retried
// webhook, a result expiring) sits on one timer heap served by one goroutine.
// Webhooks go out through a fixed pool of sender goroutines. A simulator with
// 100,000 pending jobs therefore costs memory, not stacks, like the real
// service it stands in for.
//
// Tests steer single requests with a reserved "_sim" object in the input
// ({"latency_ms": N, "fail": "runner_disconnected", "fail_attempts": 2,
// "cancel": "ignore", "sign_gateway_id": true}), and the whole simulator
// with Faults (rate limits, server errors, hung requests, webhook trouble,
// a 502 after an accepted submit, a JWKS path down), which can be changed
// while it runs. Stats count billed runs; Request and Billed tell a test
// what happened to one request.
package falsim
