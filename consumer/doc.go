// Package consumer is falbridge's engine: it pulls triggers from JetStream,
// claims each trigger id exactly once, submits to fal, stores the job in a KV
// bucket, and completes it from fal's signed webhook or by polling, publishing
// exactly one result or error event per accepted trigger.
package consumer
