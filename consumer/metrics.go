package consumer

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// Metrics are the pool's Prometheus metrics. Create them with NewMetrics and
// pass them with WithMetrics; a nil *Metrics records nothing.
type Metrics struct {
	triggersReceived  prometheus.Counter
	triggersRejected  *prometheus.CounterVec
	submits           *prometheus.CounterVec
	falRequests       *prometheus.CounterVec
	falRetries        *prometheus.CounterVec
	webhooks          *prometheus.CounterVec
	polls             *prometheus.CounterVec
	eventsPublished   *prometheus.CounterVec
	completions       *prometheus.CounterVec
	ambiguousSubmits  prometheus.Counter
	falQueueSeconds   *prometheus.HistogramVec
	falRunSeconds     *prometheus.HistogramVec
	endToEndSeconds   *prometheus.HistogramVec
	webhookToPublish  prometheus.Histogram
	pendingGaugeState *pendingGauge
	models            modelLabels
	spend             *prometheus.CounterVec
	tenants           tenantLabels
	admitted          prometheus.Counter
	waiting           *waitingCollector
}

// maxModelLabels caps the distinct values of the model label: model ids come
// from triggers, and a stream of made-up ids must not grow the series
// without bound. Only a model fal has accepted a job of takes a label of its
// own (admit); any other model, and any past the cap, is "other".
const maxModelLabels = 100

// labelInvalid labels what rejected triggers named as their model: a
// malformed or oversized id never becomes a label value.
const labelInvalid = "invalid"

// maxModelLabelLen caps one label value (fal's ids are far shorter).
const maxModelLabelLen = 128

type modelLabels struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

// label returns the label value of model, admitting it to the set of
// labelled models when admit is true (fal accepted it) and there is room.
// An id that is not a model id at all, or longer than any fal id, is
// "invalid"; a well-formed one not (yet) admitted, or past the cap, "other".
func (l *modelLabels) label(model string, admit bool) string {
	if len(model) > maxModelLabelLen {
		return labelInvalid
	}
	if _, err := falclient.ParseModelID(model); err != nil {
		return labelInvalid
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[model]; ok {
		return model
	}
	if !admit || len(l.seen) >= maxModelLabels {
		return "other"
	}
	if l.seen == nil {
		l.seen = map[string]struct{}{}
	}
	l.seen[model] = struct{}{}
	return model
}

// tenantLabels caps the distinct values of the tenant label as
// modelLabels does for models: tenants come from triggers.
type tenantLabels struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

func (l *tenantLabels) label(tenant string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[tenant]; ok {
		return tenant
	}
	if len(l.seen) >= maxModelLabels {
		return "other"
	}
	if l.seen == nil {
		l.seen = map[string]struct{}{}
	}
	l.seen[tenant] = struct{}{}
	return tenant
}

// spent counts a result's estimated cost.
func (m *Metrics) spent(j *job, amount float64) {
	if m == nil || amount <= 0 {
		return
	}
	m.spend.WithLabelValues(m.models.label(j.ModelID, true), m.tenants.label(j.Tenant)).Add(amount)
}

// latencyBuckets span fast image models (sub-second) to video (minutes).
var latencyBuckets = []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{
		triggersReceived: prometheus.NewCounter(prometheus.CounterOpts{Name: "falbridge_triggers_received_total",
			Help: "Trigger messages delivered, redeliveries included."}),
		triggersRejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "falbridge_triggers_rejected_total",
			Help: "Triggers ended with an error event before reaching fal, by error code."}, []string{"code"}),
		submits: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "falbridge_submits_total",
			Help: "Submits (and sync/stream runs) to fal by model and outcome: accepted, refused, retry, ambiguous."}, []string{"model", "outcome"}),
		falRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "falbridge_fal_requests_total",
			Help: "HTTP attempts to fal by endpoint and status (the HTTP code, or \"error\")."}, []string{"endpoint", "status"}),
		falRetries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "falbridge_fal_retries_total",
			Help: "HTTP attempts to fal that were retries, by endpoint."}, []string{"endpoint"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "falbridge_webhooks_total",
			Help: "Webhook deliveries by outcome: received, verified, rejected, duplicate, unknown, published, retry, ignored."}, []string{"outcome"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "falbridge_polls_total",
			Help: "Status polls of pending jobs by outcome: running, completed, error."}, []string{"outcome"}),
		eventsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "falbridge_events_published_total",
			Help: "Terminal events published, by kind (result, error) and error code."}, []string{"kind", "code"}),
		spend: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "falbridge_spend_total",
			Help: "Estimated spend of results of priced models (spend.prices), in spend.currency, by model and tenant."}, []string{"model", "tenant"}),
		completions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "falbridge_completions_total",
			Help: "Jobs ended, by the path that ended them: webhook, poll, sync, stream, cancel, timeout, intake."}, []string{"via"}),
		ambiguousSubmits: prometheus.NewCounter(prometheus.CounterOpts{Name: "falbridge_ambiguous_submits_total",
			Help: "Submits whose outcome at fal is unknown (invariant 1's window)."}),
		falQueueSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "falbridge_fal_queue_seconds",
			Help: "Time a polled job waited in fal's queue (run time minus fal's inference time).", Buckets: latencyBuckets}, []string{"model"}),
		falRunSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "falbridge_fal_run_seconds",
			Help: "Submit to completion seen by falbridge.", Buckets: latencyBuckets}, []string{"model"}),
		endToEndSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "falbridge_end_to_end_seconds",
			Help: "Trigger stored in the stream to terminal event published.", Buckets: latencyBuckets}, []string{"model"}),
		webhookToPublish: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "falbridge_webhook_to_publish_seconds",
			Help: "Webhook received to terminal event published.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}}),
		pendingGaugeState: &pendingGauge{},
		admitted: prometheus.NewCounter(prometheus.CounterOpts{Name: "falbridge_admitted_total",
			Help: "Jobs admitted under the caps on pending jobs (limits.max_pending) by this replica."}),
	}
	m.waiting = &waitingCollector{m: m, desc: prometheus.NewDesc("falbridge_waiting",
		"Jobs waiting for a slot under the caps on pending jobs or a budget, by model and tenant, as the admission record this replica read last holds them (the same on every replica: aggregate with max).",
		[]string{"model", "tenant"}, nil)}
	for _, c := range []prometheus.Collector{m.triggersReceived, m.triggersRejected, m.submits, m.falRequests, m.falRetries,
		m.webhooks, m.polls, m.eventsPublished, m.completions, m.ambiguousSubmits, m.falQueueSeconds, m.falRunSeconds,
		m.endToEndSeconds, m.webhookToPublish, m.spend, m.admitted, m.waiting} {
		f(c)
	}
	// Fixed label values start at zero, so dashboards see every series.
	for _, o := range []string{"running", "completed", "error"} {
		m.polls.WithLabelValues(o)
	}
	for _, o := range []string{"received", "verified", "rejected", "duplicate", "unknown", "published", "retry", "ignored"} {
		m.webhooks.WithLabelValues(o)
	}
	for _, v := range []string{viaWebhook, viaPoll, viaCancel, viaTimeout, viaIntake, "sync", "stream"} {
		m.completions.WithLabelValues(v)
	}
	for _, op := range []string{falclient.OpSubmit, falclient.OpStatus, falclient.OpResult, falclient.OpCancel, falclient.OpRun, falclient.OpStream} {
		m.falRetries.WithLabelValues(op)
	}
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "falbridge_jobs_pending",
		Help: "Jobs submitted to fal and not yet done, as the last sweep of the job records counted them (the same on every replica: aggregate with max)."}, m.pendingGaugeState.value))
	return m
}

// pendingGauge reads the count of pending jobs of the pool's last sweep.
type pendingGauge struct {
	count atomic.Pointer[atomic.Int64]
}

func (g *pendingGauge) value() float64 {
	if c := g.count.Load(); c != nil {
		return float64(c.Load())
	}
	return 0
}

// ObserveFal records one HTTP attempt to fal; pass it to
// falclient.WithObserver.
func (m *Metrics) ObserveFal(a falclient.Attempt) {
	if m == nil {
		return
	}
	status := "error"
	if a.StatusCode != 0 {
		status = strconv.Itoa(a.StatusCode)
	}
	m.falRequests.WithLabelValues(a.Op, status).Inc()
	if a.Number > 1 {
		m.falRetries.WithLabelValues(a.Op).Inc()
	}
}

func (m *Metrics) received() {
	if m != nil {
		m.triggersReceived.Inc()
	}
}

func (m *Metrics) rejected(code publisher.Code) {
	if m != nil {
		m.triggersRejected.WithLabelValues(string(code)).Inc()
	}
}

func (m *Metrics) submit(model, outcome string) {
	if m == nil {
		return
	}
	m.submits.WithLabelValues(m.models.label(model, outcome == "accepted"), outcome).Inc()
	if outcome == "ambiguous" {
		m.ambiguousSubmits.Inc()
	}
}

func (m *Metrics) webhook(outcome string) {
	if m != nil {
		m.webhooks.WithLabelValues(outcome).Inc()
	}
}

func (m *Metrics) poll(outcome string) {
	if m != nil {
		m.polls.WithLabelValues(outcome).Inc()
	}
}

// finished records a published terminal event of job j, ended via the named path.
func (m *Metrics) finished(j *job, code publisher.Code, via string, now time.Time) {
	if m == nil {
		return
	}
	kind := "result"
	if code != "" {
		kind = "error"
	}
	m.eventsPublished.WithLabelValues(kind, string(code)).Inc()
	m.completions.WithLabelValues(via).Inc()
	if j.ModelID == "" {
		return // a trigger rejected before it named a model: not a job
	}
	model := m.models.label(j.ModelID, j.RequestID != "")
	if !j.ReceivedAt.IsZero() {
		m.endToEndSeconds.WithLabelValues(model).Observe(now.Sub(j.ReceivedAt).Seconds())
	}
	if !j.SubmittedAt.IsZero() && j.RequestID != "" {
		m.falRunSeconds.WithLabelValues(model).Observe(now.Sub(j.SubmittedAt).Seconds())
	}
}

func (m *Metrics) queueTime(model string, d time.Duration) {
	if m != nil && d >= 0 {
		m.falQueueSeconds.WithLabelValues(m.models.label(model, true)).Observe(d.Seconds())
	}
}

func (m *Metrics) webhookPublished(d time.Duration) {
	if m != nil {
		m.webhookToPublish.Observe(d.Seconds())
	}
}

// admittedJob counts a job admitted under the caps.
func (m *Metrics) admittedJob() {
	if m != nil {
		m.admitted.Inc()
	}
}

// observeAdmission takes the waiting counts of an admission record just read
// or written, for falbridge_waiting.
func (m *Metrics) observeAdmission(rec *admissionRecord, now time.Time) {
	if m == nil {
		return
	}
	counts := map[[2]string]float64{}
	for k, l := range rec.Lanes {
		if !l.live(now) {
			continue
		}
		_, tenant, model := splitLaneKey(k)
		counts[[2]string{m.models.label(model, false), m.tenants.label(tenant)}] += float64(l.waiting())
	}
	m.waiting.mu.Lock()
	m.waiting.counts = counts
	m.waiting.mu.Unlock()
}

// waitingCollector serves falbridge_waiting from the last snapshot, so that
// a model or tenant that stops waiting leaves no stale series behind. Its
// label values go through the same caps as every model and tenant label:
// at most maxModelLabels models (an invalid id "invalid", one not seen
// accepted by fal on this replica or past the cap "other") and at most
// maxModelLabels tenants (the rest "other").
type waitingCollector struct {
	m      *Metrics
	desc   *prometheus.Desc
	mu     sync.Mutex
	counts map[[2]string]float64
}

func (c *waitingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *waitingCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, k[0], k[1])
	}
}
