// Package console is falbridge's web console: a few server-rendered pages
// and one server-sent-events feed, served on the admin listener under
// /console/ when admin.console is on.
//
// It keeps no state of its own and reads only what every replica can read:
// the job records (KV bucket, default fal_jobs), the result and error events
// (stream FAL_RESULTS) and the progress events (stream FAL_STATUS). So any
// replica serves the same console, and a restart loses nothing.
//
// No view scans the bucket. Lists are windows read by stream sequence from
// the end (the newest N messages of FAL_RESULTS, or of the bucket's own
// stream for jobs still in flight), a job page is a KV get plus two
// last-message-by-subject reads and the job's own status subject, and counts
// over time come from a consumer's pending count, which the server computes
// without delivering anything. Every page therefore costs the same with 10
// or 100,000 jobs in the bucket.
//
// Actions (retry, cancel) are POSTs protected against cross-origin requests
// ([http.CrossOriginProtection]); with a token configured, every request
// needs it. The templates, style sheet and script are embedded: no build
// step, no CDN.
package console
