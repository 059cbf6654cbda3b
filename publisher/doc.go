// Package publisher defines falbridge's public event schemas (trigger, result,
// error, status) and the subject names they travel on, and offers the
// client-side helpers: publish a trigger, await its result, watch events.
//
// It knows nothing of fal's HTTP API.
package publisher
