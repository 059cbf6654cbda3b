// Package publisher defines falbridge's public event schemas (trigger, result,
// error, status) and the subject names they travel on, and offers the
// client-side helpers: publish a trigger, await its result, watch events.
//
// It knows nothing of fal's HTTP API, and imports no other falbridge package.
//
// # Subjects and streams
//
// The defaults (all in subjects.go, all configurable through [Subjects]):
//
//	fal.requests.<any>   triggers in          stream FAL_REQUESTS (work queue)
//	fal.results.<id>     result event         stream FAL_RESULTS
//	fal.errors.<id>      error event          stream FAL_RESULTS
//	fal.status.<id>      progress events      stream FAL_STATUS
//	fal.cancel.<id>      cancel a trigger     core NATS
//
// A trigger id is 1 to 128 letters, digits, '-' or '_' ([ValidID]), so that it
// is one subject token. [ResolveID] says which id a trigger without one gets.
//
// # Events
//
// [Trigger] (decoded from three shapes by [DecodeTrigger]), [Result], [Error]
// and [Status] are the JSON schemas. [Error] implements error, with an Is
// method that matches by [Code].
//
// # Client side
//
// [New] wraps a nats.go jetstream.JetStream. [Publisher.Publish] validates and
// publishes a trigger with Nats-Msg-Id set to its id, so republishing is
// deduplicated; [Publisher.Await] returns the result (or the error event) of
// one trigger, even if it was published before the call;
// [Publisher.Watch] iterates over events. The streams are provisioned by the
// consumer (falbridge serve), not by this package.
package publisher
