package deploycheck

// falbridgeMetrics is the metrics contract (the lead's metrics.md for the
// issue "Run it in production"): every name the dashboard may use. Keep it
// in step with the code that registers them.
var falbridgeMetrics = []Metric{
	{Name: "falbridge_triggers_received_total", Type: "counter"},
	{Name: "falbridge_triggers_rejected_total", Type: "counter", Labels: []string{"code"}},
	{Name: "falbridge_submits_total", Type: "counter", Labels: []string{"model", "outcome"}},
	{Name: "falbridge_fal_requests_total", Type: "counter", Labels: []string{"endpoint", "status"}},
	{Name: "falbridge_fal_retries_total", Type: "counter", Labels: []string{"endpoint"}},
	{Name: "falbridge_webhooks_total", Type: "counter", Labels: []string{"outcome"}},
	{Name: "falbridge_polls_total", Type: "counter", Labels: []string{"outcome"}},
	{Name: "falbridge_jobs_pending", Type: "gauge"},
	{Name: "falbridge_events_published_total", Type: "counter", Labels: []string{"kind", "code"}},
	{Name: "falbridge_completions_total", Type: "counter", Labels: []string{"via"}},
	{Name: "falbridge_ambiguous_submits_total", Type: "counter"},
	{Name: "falbridge_fal_queue_seconds", Type: "histogram", Labels: []string{"model"}},
	{Name: "falbridge_fal_run_seconds", Type: "histogram", Labels: []string{"model"}},
	{Name: "falbridge_end_to_end_seconds", Type: "histogram", Labels: []string{"model"}},
	{Name: "falbridge_webhook_to_publish_seconds", Type: "histogram"},
	{Name: "falbridge_spend_total", Type: "counter", Labels: []string{"model", "tenant"}},
	{Name: "falbridge_waiting", Type: "gauge", Labels: []string{"model", "tenant"}},
	{Name: "falbridge_admitted_total", Type: "counter"},

	// The standard Go and process collectors the dashboard uses.
	{Name: "go_goroutines", Type: "gauge"},
	{Name: "go_memstats_heap_inuse_bytes", Type: "gauge"},
	{Name: "process_resident_memory_bytes", Type: "gauge"},
	{Name: "process_cpu_seconds_total", Type: "counter"},
}
