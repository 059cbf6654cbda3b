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
//	GET  {base}/.well-known/jwks.json                  webhook signing keys
//	GET  {base}/files/...                              media the outputs point to
//	GET  {base}/_sim/stats, POST {base}/_sim/reset, GET|PUT {base}/_sim/faults
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
// ({"latency_ms": N, "fail": "content_policy_violation"}), and the whole
// simulator with Faults (rate limits, server errors, hung requests, webhook
// trouble), which can be changed while it runs.
package falsim
