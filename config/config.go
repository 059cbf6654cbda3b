package config

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// Defaults of every key. Each constant is the value [Default] uses for the key
// named in its comment. Names of streams and subjects, fal's URLs, the retry
// values and the webhook tolerance are declared once, by publisher and
// falclient (the packages that use them without a config), and referred to
// here.
const (
	// NATSNameDefault is nats.name, the client name shown by the server.
	NATSNameDefault = "falbridge"
	// ConnectTimeoutDefault is nats.connect_timeout.
	ConnectTimeoutDefault = 5 * time.Second
	// EmbeddedListenDefault is nats.embedded.listen.
	EmbeddedListenDefault = "127.0.0.1:4222"
	// EmbeddedStoreDirDefault is nats.embedded.store_dir.
	EmbeddedStoreDirDefault = "falbridge-data"

	// ProvisionDefault is streams.provision.
	ProvisionDefault = true
	// ReplicasDefault is streams.replicas.
	ReplicasDefault = 1
	// StorageDefault is streams.storage.
	StorageDefault = StorageFile
	// RequestsStreamDefault is streams.requests.
	RequestsStreamDefault = publisher.RequestsStreamDefault
	// ResultsStreamDefault is streams.results.
	ResultsStreamDefault = publisher.ResultsStreamDefault
	// StatusStreamDefault is streams.status.
	StatusStreamDefault = publisher.StatusStreamDefault
	// PendingStreamDefault is streams.pending.
	PendingStreamDefault = publisher.PendingStreamDefault
	// JobsBucketDefault is streams.jobs_bucket.
	JobsBucketDefault = publisher.JobsBucketDefault
	// ResultsMaxAgeDefault is streams.results_max_age.
	ResultsMaxAgeDefault = 168 * time.Hour
	// StatusMaxAgeDefault is streams.status_max_age.
	StatusMaxAgeDefault = time.Hour
	// JobsTTLDefault is streams.jobs_ttl (0: job records are kept).
	JobsTTLDefault = time.Duration(0)
	// DuplicateWindowDefault is streams.duplicate_window.
	DuplicateWindowDefault = 2 * time.Minute
	// MaxTriggerBytesDefault is streams.max_trigger_bytes (1 MiB).
	MaxTriggerBytesDefault = 1 << 20

	// RequestsSubjectDefault is subjects.requests.
	RequestsSubjectDefault = publisher.RequestsSubjectDefault
	// ResultsPrefixDefault is subjects.results.
	ResultsPrefixDefault = publisher.ResultsPrefixDefault
	// ErrorsPrefixDefault is subjects.errors.
	ErrorsPrefixDefault = publisher.ErrorsPrefixDefault
	// StatusPrefixDefault is subjects.status.
	StatusPrefixDefault = publisher.StatusPrefixDefault
	// CancelPrefixDefault is subjects.cancel.
	CancelPrefixDefault = publisher.CancelPrefixDefault
	// ResultSubjectAllowDefault is the one pattern of
	// subjects.result_subject_allow: a trigger's result_subject may name any
	// subject under "app.", the prefix documented for users' own subjects.
	ResultSubjectAllowDefault = publisher.ResultSubjectAllowDefault
	// PendingNamespace is the first token of the subjects falbridge keeps
	// to itself (the poller's timers live on
	// "falbridge.<streams.pending lower-cased>.<id>"). It is not a key.
	PendingNamespace = "falbridge"

	// QueueURLDefault is fal.queue_url.
	QueueURLDefault = falclient.QueueURLDefault
	// RunURLDefault is fal.run_url.
	RunURLDefault = falclient.RunURLDefault
	// JWKSURLDefault and JWKSURLAlphaDefault are fal.jwks_url: fal
	// publishes its webhook keys on the current host and the one older docs
	// give, and has not said which is authoritative (fal-protocol §11.5).
	JWKSURLDefault      = falclient.JWKSURLDefault
	JWKSURLAlphaDefault = falclient.JWKSURLAlphaDefault
	// PlatformURLDefault is fal.platform_url.
	PlatformURLDefault = falclient.PlatformURLDefault
	// RequestTimeoutDefault is fal.request_timeout.
	RequestTimeoutDefault = falclient.RequestTimeoutDefault
	// MaxAttemptsDefault is fal.max_attempts.
	MaxAttemptsDefault = falclient.MaxAttemptsDefault
	// RetryInitialDefault is fal.retry_initial.
	RetryInitialDefault = falclient.InitialIntervalDefault
	// RetryMaxDefault is fal.retry_max.
	RetryMaxDefault = falclient.MaxIntervalDefault

	// WebhookListenDefault is webhook.listen.
	WebhookListenDefault = ":8080"
	// WebhookPathDefault is webhook.path.
	WebhookPathDefault = "/fal/webhook"
	// WebhookVerifyDefault is webhook.verify.
	WebhookVerifyDefault = true
	// WebhookToleranceDefault is webhook.tolerance.
	WebhookToleranceDefault = falclient.WebhookToleranceDefault
	// WebhookMaxBodyBytesDefault is webhook.max_body_bytes (2 MiB): twice
	// NATS's default max_payload. A result larger than one NATS message can
	// only end as result_too_large, which the poller reaches without the
	// body; an unauthenticated 10 MiB per delivery bought nothing.
	WebhookMaxBodyBytesDefault int64 = 2 << 20

	// AdminListenDefault is admin.listen.
	AdminListenDefault = ":9090"

	// DevWebhookListen is webhook.listen in [Dev].
	DevWebhookListen = "127.0.0.1:8080"
	// DevAdminListen is admin.listen in [Dev].
	DevAdminListen = "127.0.0.1:9090"

	// WorkersDefault is limits.workers.
	WorkersDefault = 64
	// MaxInFlightDefault is limits.max_in_flight.
	MaxInFlightDefault = 256
	// MaxInFlightPerModelDefault is limits.max_in_flight_per_model (0: no cap).
	MaxInFlightPerModelDefault = 0
	// MaxSyncRunsDefault is limits.max_sync_runs.
	MaxSyncRunsDefault = 4
	// MaxTimeoutDefault is limits.max_timeout.
	MaxTimeoutDefault = 24 * time.Hour
	// MaxProgressStreamsDefault is limits.max_progress_streams.
	MaxProgressStreamsDefault = 64

	// WebhookGraceDefault is polling.webhook_grace.
	WebhookGraceDefault = 2 * time.Minute
	// MinIntervalDefault is polling.min_interval.
	MinIntervalDefault = time.Second
	// MaxIntervalDefault is polling.max_interval.
	MaxIntervalDefault = 30 * time.Second
	// JobDeadlineDefault is polling.job_deadline.
	JobDeadlineDefault = time.Hour
	// SafetyIntervalDefault is polling.safety_interval.
	SafetyIntervalDefault = 10 * time.Minute
	// SweepIntervalDefault is polling.sweep_interval.
	SweepIntervalDefault = time.Minute
	// AmbiguousWaitDefault is consumer.ambiguous_wait.
	AmbiguousWaitDefault = 5 * time.Minute

	// DurableDefault is consumer.durable.
	DurableDefault = "falbridge"
	// AckWaitDefault is consumer.ack_wait.
	AckWaitDefault = 60 * time.Second
	// MaxDeliverDefault is consumer.max_deliver.
	MaxDeliverDefault = 10
	// FetchBatchDefault is consumer.fetch_batch.
	FetchBatchDefault = 64
	// AmbiguousSubmitPolicyDefault is consumer.ambiguous_submit_policy.
	AmbiguousSubmitPolicyDefault = AmbiguousSubmitFail

	// GracePeriodDefault is shutdown.grace_period.
	GracePeriodDefault = 25 * time.Second
	// FinishReserve is the part of the shutdown grace period kept for the
	// writes after a fal call (storing the job, publishing its event): a
	// fal call started by a worker is bounded by the grace period less this.
	FinishReserve = 3 * time.Second

	// LogLevelDefault is log.level.
	LogLevelDefault = LogLevelInfo
	// LogFormatDefault is log.format.
	LogFormatDefault = LogFormatJSON
)

// Values accepted by the enumerated keys.
const (
	// StorageFile stores streams on disk (streams.storage).
	StorageFile = "file"
	// StorageMemory stores streams in memory (streams.storage).
	StorageMemory = "memory"

	// AmbiguousSubmitFail publishes an ambiguous_submit error event for a
	// trigger whose submit may or may not have reached fal
	// (consumer.ambiguous_submit_policy).
	AmbiguousSubmitFail = "fail"
	// AmbiguousSubmitResubmit submits such a trigger again, accepting that fal
	// may run (and bill) it twice (consumer.ambiguous_submit_policy).
	AmbiguousSubmitResubmit = "resubmit"

	// LogLevelDebug is log.level "debug".
	LogLevelDebug = "debug"
	// LogLevelInfo is log.level "info".
	LogLevelInfo = "info"
	// LogLevelWarn is log.level "warn".
	LogLevelWarn = "warn"
	// LogLevelError is log.level "error".
	LogLevelError = "error"

	// LogFormatJSON is log.format "json".
	LogFormatJSON = "json"
	// LogFormatText is log.format "text".
	LogFormatText = "text"
)

// Config is falbridge's whole configuration. Every field has a koanf key (the
// dotted path of the koanf tags, e.g. "limits.workers"), an environment variable
// (FALBRIDGE_ + the key upper-cased with dots as underscores, e.g.
// FALBRIDGE_LIMITS_WORKERS) and a flag (--limits.workers, see [RegisterFlags]).
//
// Get one from [Load], or from [Default] / [Dev] and change fields, then call
// [Config.Validate]. A Config is a plain value: copy it freely (ModelLimits is
// a map and is shared by copies; [Config.Redacted] copies it).
type Config struct {
	// NATS is how falbridge reaches NATS (or runs an embedded server).
	NATS NATS `koanf:"nats"`
	// Streams names and shapes the JetStream streams and the job KV bucket.
	Streams Streams `koanf:"streams"`
	// Subjects are the subjects triggers arrive on and events leave on.
	Subjects Subjects `koanf:"subjects"`
	// Fal is how falbridge reaches fal.
	Fal Fal `koanf:"fal"`
	// Webhook is the listener fal's webhooks arrive at.
	Webhook Webhook `koanf:"webhook"`
	// Admin is the metrics and health listener.
	Admin Admin `koanf:"admin"`
	// Limits bound concurrency.
	Limits Limits `koanf:"limits"`
	// Polling is how jobs are checked when no webhook arrives.
	Polling Polling `koanf:"polling"`
	// Consumer is the JetStream consumer that pulls triggers.
	Consumer Consumer `koanf:"consumer"`
	// Shutdown bounds a graceful stop.
	Shutdown Shutdown `koanf:"shutdown"`
	// Log configures the slog logger.
	Log Log `koanf:"log"`
	// Spend prices jobs and bounds their cost.
	Spend Spend `koanf:"spend"`
}

// NATS configures the connection to NATS (keys nats.*). At most one
// authentication method may be set: CredsFile, NKeySeedFile, User+Password or
// Token.
type NATS struct {
	// URL is a comma-separated list of server URLs (nats://, tls://, ws://,
	// wss://). Empty starts an embedded server (see Embedded). Defaults to "".
	URL string `koanf:"url"`
	// Name is the client connection name. Defaults to [NATSNameDefault].
	Name string `koanf:"name"`
	// CredsFile is a user credentials (JWT + NKey seed) file. Defaults to "".
	CredsFile string `koanf:"creds_file"`
	// NKeySeedFile is an NKey seed file. Defaults to "".
	NKeySeedFile string `koanf:"nkey_seed_file"`
	// User is the user name; it requires Password. Defaults to "".
	User string `koanf:"user"`
	// Password is User's password. Defaults to "".
	Password Secret `koanf:"password"`
	// Token is an authentication token. Defaults to "".
	Token Secret `koanf:"token"`
	// TLS configures TLS to the server.
	TLS TLS `koanf:"tls"`
	// ConnectTimeout bounds one connection attempt. Defaults to
	// [ConnectTimeoutDefault] (5s).
	ConnectTimeout time.Duration `koanf:"connect_timeout"`
	// Embedded configures the server started when URL is empty.
	Embedded Embedded `koanf:"embedded"`
}

// TLS configures TLS to the NATS server (keys nats.tls.*).
type TLS struct {
	// CAFile is a PEM file of CAs to trust instead of the system pool.
	// Defaults to "".
	CAFile string `koanf:"ca_file"`
	// CertFile is a PEM client certificate; it requires KeyFile. Defaults to "".
	CertFile string `koanf:"cert_file"`
	// KeyFile is CertFile's PEM private key; it requires CertFile.
	// Defaults to "".
	KeyFile string `koanf:"key_file"`
	// ServerName overrides the name checked against the server's certificate.
	// Defaults to "" (the URL's host).
	ServerName string `koanf:"server_name"`
}

// Enabled reports whether any TLS setting is present.
func (t TLS) Enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != ""
}

// Embedded configures the NATS server falbridge starts itself when nats.url is
// empty (keys nats.embedded.*).
type Embedded struct {
	// Listen is the client listener's host:port. Defaults to
	// [EmbeddedListenDefault] ("127.0.0.1:4222").
	Listen string `koanf:"listen"`
	// StoreDir is the JetStream storage directory. Empty means the caller
	// picks a temporary directory. Defaults to [EmbeddedStoreDirDefault]
	// ("falbridge-data").
	StoreDir string `koanf:"store_dir"`
}

// Streams names and shapes the JetStream assets (keys streams.*).
type Streams struct {
	// Provision creates or updates the streams, consumer and bucket at start.
	// With false they must exist. Defaults to [ProvisionDefault] (true).
	Provision bool `koanf:"provision"`
	// Replicas is the replica count of every stream and the bucket (1..5).
	// Defaults to [ReplicasDefault] (1).
	Replicas int `koanf:"replicas"`
	// Storage is "file" or "memory". Defaults to [StorageDefault] ("file").
	Storage string `koanf:"storage"`
	// Requests is the work-queue stream of triggers. Defaults to
	// [RequestsStreamDefault] ("FAL_REQUESTS").
	Requests string `koanf:"requests"`
	// Results is the stream of result and error events. Defaults to
	// [ResultsStreamDefault] ("FAL_RESULTS").
	Results string `koanf:"results"`
	// Status is the stream of progress events. Defaults to
	// [StatusStreamDefault] ("FAL_STATUS").
	Status string `koanf:"status"`
	// Pending is the work-queue stream the poller uses as its timer wheel.
	// Defaults to [PendingStreamDefault] ("FAL_PENDING").
	Pending string `koanf:"pending"`
	// JobsBucket is the KV bucket of job records. Defaults to
	// [JobsBucketDefault] ("fal_jobs").
	JobsBucket string `koanf:"jobs_bucket"`
	// ResultsMaxAge is how long result and error events are kept; 0 keeps
	// them forever. Defaults to [ResultsMaxAgeDefault] (168h).
	ResultsMaxAge time.Duration `koanf:"results_max_age"`
	// StatusMaxAge is how long progress events are kept; 0 keeps them
	// forever. Defaults to [StatusMaxAgeDefault] (1h).
	StatusMaxAge time.Duration `koanf:"status_max_age"`
	// JobsTTL is how long a job record is kept; 0 keeps it forever (the
	// bucket keeps one revision per key). Defaults to [JobsTTLDefault] (0).
	JobsTTL time.Duration `koanf:"jobs_ttl"`
	// DuplicateWindow is the Nats-Msg-Id deduplication window of the streams;
	// 0 uses the server's default. Defaults to [DuplicateWindowDefault] (2m).
	DuplicateWindow time.Duration `koanf:"duplicate_window"`
	// MaxTriggerBytes is the largest trigger accepted, in bytes. Defaults to
	// [MaxTriggerBytesDefault] (1 MiB).
	MaxTriggerBytes int `koanf:"max_trigger_bytes"`
}

// Subjects are the NATS subjects falbridge uses (keys subjects.*). The
// prefixes get "." + trigger id appended.
type Subjects struct {
	// Requests is the subject (wildcards allowed) triggers arrive on.
	// Defaults to [RequestsSubjectDefault] ("fal.requests.>").
	Requests string `koanf:"requests"`
	// Results is the prefix of result events. Defaults to
	// [ResultsPrefixDefault] ("fal.results").
	Results string `koanf:"results"`
	// Errors is the prefix of error events. Defaults to
	// [ErrorsPrefixDefault] ("fal.errors").
	Errors string `koanf:"errors"`
	// Status is the prefix of progress events. Defaults to
	// [StatusPrefixDefault] ("fal.status").
	Status string `koanf:"status"`
	// Cancel is the prefix of cancel requests. Defaults to
	// [CancelPrefixDefault] ("fal.cancel").
	Cancel string `koanf:"cancel"`
	// ResultSubjectAllow lists the subject patterns a trigger's
	// result_subject may match; an empty list allows none. Whatever it
	// says, falbridge's own subjects ([Config.ReservedSubjects]) and the
	// server's ($KV, $JS, $SYS, every "$…", _INBOX) are refused: the copy is
	// published with falbridge's NATS identity, so outside input must not
	// choose where falbridge writes. In YAML a list; in
	// FALBRIDGE_SUBJECTS_RESULT_SUBJECT_ALLOW and
	// --subjects.result_subject_allow comma-separated. A later source
	// replaces the whole list. Defaults to [[ResultSubjectAllowDefault]]
	// ("app.>").
	ResultSubjectAllow []string `koanf:"result_subject_allow"`
}

// Fal configures the fal API client (keys fal.*).
type Fal struct {
	// Key is the fal API key "<id>:<secret>". FAL_KEY (or FAL_KEY_ID and
	// FAL_KEY_SECRET) fills it when FALBRIDGE_FAL_KEY is not set. Defaults
	// to "".
	Key Secret `koanf:"key"`
	// QueueURL is the base URL of fal's queue API. Defaults to
	// [QueueURLDefault] ("https://queue.fal.run").
	QueueURL string `koanf:"queue_url"`
	// RunURL is the base URL of fal's synchronous run API. Defaults to
	// [RunURLDefault] ("https://fal.run").
	RunURL string `koanf:"run_url"`
	// JWKSURLs are where fal's webhook signing keys are published: one URL
	// or a list; a signature verifies if a key of any set does, and
	// verification fails closed only when none answers. Defaults to
	// [JWKSURLDefault] and [JWKSURLAlphaDefault].
	JWKSURLs []string `koanf:"jwks_url"`
	// PlatformURL is the base URL of fal's Platform API (model pricing,
	// with spend.prices_source platform). Defaults to
	// [PlatformURLDefault] ("https://api.fal.ai/v1").
	PlatformURL string `koanf:"platform_url"`
	// RequestTimeout bounds one HTTP attempt. Defaults to
	// [RequestTimeoutDefault] (60s).
	RequestTimeout time.Duration `koanf:"request_timeout"`
	// MaxAttempts is the number of attempts per call, the first included.
	// Defaults to [MaxAttemptsDefault] (5).
	MaxAttempts int `koanf:"max_attempts"`
	// RetryInitial is the first retry's backoff. Defaults to
	// [RetryInitialDefault] (500ms).
	RetryInitial time.Duration `koanf:"retry_initial"`
	// RetryMax caps the backoff between retries. Defaults to
	// [RetryMaxDefault] (30s).
	RetryMax time.Duration `koanf:"retry_max"`
}

// Webhook configures the listener for fal's webhooks (keys webhook.*).
type Webhook struct {
	// Listen is the listener's host:port. Defaults to
	// [WebhookListenDefault] (":8080"); [Dev] uses "127.0.0.1:8080".
	Listen string `koanf:"listen"`
	// PublicURL is the absolute http(s) URL at which fal reaches the
	// listener; Path is appended unless PublicURL already ends with it (see
	// [Webhook.URL]). Empty means no webhooks are requested and every job is
	// polled. Defaults to "".
	PublicURL string `koanf:"public_url"`
	// Path is the route the listener serves webhooks on. Defaults to
	// [WebhookPathDefault] ("/fal/webhook").
	Path string `koanf:"path"`
	// Verify checks every webhook's ED25519 signature. Turning it off is for
	// development only ([Config.Warnings] reports it). Defaults to
	// [WebhookVerifyDefault] (true).
	Verify bool `koanf:"verify"`
	// JWKSURLs override fal.jwks_url for verification; see
	// [Config.WebhookJWKSURLs]. Defaults to none (use fal.jwks_url).
	JWKSURLs []string `koanf:"jwks_url"`
	// Tolerance is the accepted clock skew of a webhook's timestamp.
	// Defaults to [WebhookToleranceDefault] (5m).
	Tolerance time.Duration `koanf:"tolerance"`
	// MaxBodyBytes is the largest webhook body accepted, in bytes. Defaults
	// to [WebhookMaxBodyBytesDefault] (2 MiB).
	MaxBodyBytes int64 `koanf:"max_body_bytes"`
}

// URL returns the webhook URL to give fal: PublicURL with Path appended
// (unless PublicURL's path already ends with Path), or "" when PublicURL is
// empty. The caller adds its query (e.g. "?job=<id>").
func (w Webhook) URL() string {
	if w.PublicURL == "" {
		return ""
	}
	base, query, hasQuery := strings.Cut(w.PublicURL, "?")
	if w.Path != "" && w.Path != "/" && !strings.HasSuffix(strings.TrimSuffix(base, "/"), strings.TrimSuffix(w.Path, "/")) {
		base = strings.TrimSuffix(base, "/") + w.Path
	}
	if hasQuery {
		return base + "?" + query
	}
	return base
}

// Admin configures the metrics and health listener (keys admin.*).
type Admin struct {
	// Listen is the listener's host:port, serving /metrics, /healthz and
	// /readyz. Defaults to [AdminListenDefault] (":9090"); [Dev] uses
	// "127.0.0.1:9090".
	Listen string `koanf:"listen"`
	// Console serves the web console under /console/ on this listener
	// (see internal/console). Defaults to false; [Dev] turns it on.
	Console bool `koanf:"console"`
	// ConsoleToken, when set, is required by every console request, as
	// "Authorization: Bearer <token>" or as the password of HTTP basic auth
	// (any user name). It must be set when the console is on and Listen is
	// not a loopback address. Empty by default.
	ConsoleToken Secret `koanf:"console_token"`
}

// Limits bounds concurrency (keys limits.*).
type Limits struct {
	// Workers is the number of triggers handled at once. Defaults to
	// [WorkersDefault] (64).
	Workers int `koanf:"workers"`
	// MaxInFlight is the number of triggers delivered and not yet settled,
	// across all replicas (the trigger consumer's MaxAckPending), above which
	// the server hands out no more. It does not bound the jobs waiting at
	// fal: a queue-mode trigger is settled once fal has it. It must be at
	// least Workers. Defaults to [MaxInFlightDefault] (256).
	MaxInFlight int `koanf:"max_in_flight"`
	// MaxInFlightPerModel bounds the triggers of one model being submitted
	// or run at once on one replica; 0 means no per-model bound. Defaults to
	// [MaxInFlightPerModelDefault] (0).
	MaxInFlightPerModel int `koanf:"max_in_flight_per_model"`
	// ModelLimits overrides MaxInFlightPerModel for single model ids, e.g.
	// {"fal-ai/flux/dev": 4}. In YAML a mapping; in FALBRIDGE_LIMITS_MODEL_LIMITS
	// and --limits.model_limits "model=n,model2=m". A later source replaces the
	// whole map. Defaults to nil.
	ModelLimits map[string]int `koanf:"model_limits"`
	// MaxSyncRuns bounds the sync and stream runs in progress on one
	// replica: each holds a worker for its whole run, so the rest of the
	// workers always take queue-mode work. Above Workers it is Workers.
	// Defaults to [MaxSyncRunsDefault] (4).
	MaxSyncRuns int `koanf:"max_sync_runs"`
	// MaxTimeout is the largest timeout a trigger may ask for; a trigger
	// asking for more is rejected (invalid_trigger, naming "timeout").
	// Defaults to [MaxTimeoutDefault] (24h).
	MaxTimeout time.Duration `koanf:"max_timeout"`
	// MaxProgressStreams bounds the fal status streams one replica follows
	// at once for triggers that ask for live progress ("progress": true).
	// A job over the cap gets no live progress; its result is unaffected.
	// Defaults to [MaxProgressStreamsDefault] (64).
	MaxProgressStreams int `koanf:"max_progress_streams"`
	// MaxPending caps the jobs pending at fal across all replicas: admitted
	// (being submitted, at fal, or waiting to retry a refused submit) and
	// not yet ended. A trigger over a cap waits in JetStream, recorded as
	// waiting, and is submitted as a slot frees; no fal call, no error. 0
	// turns the caps off; it must be set (and at most
	// [MaxPendingLimit]) when MaxPendingPerModel, PendingModelLimits or
	// MaxPendingPerTenant is. Defaults to 0.
	MaxPending int `koanf:"max_pending"`
	// MaxPendingPerModel caps the pending jobs of one model across all
	// replicas; 0 means no per-model cap. Defaults to 0.
	MaxPendingPerModel int `koanf:"max_pending_per_model"`
	// PendingModelLimits overrides MaxPendingPerModel for single model ids,
	// in the forms of ModelLimits. Defaults to nil.
	PendingModelLimits map[string]int `koanf:"pending_model_limits"`
	// MaxPendingPerTenant caps the pending jobs of one tenant (the
	// trigger's "tenant"; no tenant is a tenant of its own) across all
	// replicas; 0 means no per-tenant cap. Defaults to 0.
	MaxPendingPerTenant int `koanf:"max_pending_per_tenant"`
}

// MaxPendingLimit is the largest limits.max_pending: the admission record
// holds one entry per pending job and must fit one NATS message.
const MaxPendingLimit = 10_000

// Admission reports whether the cross-replica caps on pending jobs are on.
func (l Limits) Admission() bool { return l.MaxPending > 0 }

// PendingModelLimit returns the cap on pending jobs of model: its
// PendingModelLimits entry, else MaxPendingPerModel (0: none).
func (l Limits) PendingModelLimit(model string) int {
	if n, ok := l.PendingModelLimits[model]; ok {
		return n
	}
	return l.MaxPendingPerModel
}

// ModelLimit returns the in-flight bound for model: its ModelLimits entry,
// else MaxInFlightPerModel (0: none).
func (l Limits) ModelLimit(model string) int {
	if n, ok := l.ModelLimits[model]; ok {
		return n
	}
	return l.MaxInFlightPerModel
}

// Polling configures how jobs are checked at fal (keys polling.*).
type Polling struct {
	// WebhookGrace is how long to wait for a webhook before polling a job
	// (without webhook.public_url, polling starts at once). Defaults to
	// [WebhookGraceDefault] (2m).
	WebhookGrace time.Duration `koanf:"webhook_grace"`
	// MinInterval is the first poll interval. Defaults to
	// [MinIntervalDefault] (1s).
	MinInterval time.Duration `koanf:"min_interval"`
	// MaxInterval caps the growing poll interval. Defaults to
	// [MaxIntervalDefault] (30s).
	MaxInterval time.Duration `koanf:"max_interval"`
	// JobDeadline is how long a job may run at fal before it is cancelled
	// with a timeout error; a trigger's timeout overrides it. Defaults to
	// [JobDeadlineDefault] (1h).
	JobDeadline time.Duration `koanf:"job_deadline"`
	// SafetyInterval is how often a job that expects a webhook is checked at
	// fal once it is past webhook_grace (and, while webhooks arrive, instead
	// of the check at webhook_grace). Jittered by up to +20 %. Defaults to
	// [SafetyIntervalDefault] (10m).
	SafetyInterval time.Duration `koanf:"safety_interval"`
	// SweepInterval is how often one replica sweeps the job records: it
	// re-arms the timer of any submitted job that has none and refreshes
	// falbridge_jobs_pending. Defaults to [SweepIntervalDefault] (1m).
	SweepInterval time.Duration `koanf:"sweep_interval"`
}

// Consumer configures the JetStream pull consumer of triggers (keys
// consumer.*).
type Consumer struct {
	// Durable is the consumer's durable name, shared by every replica.
	// Defaults to [DurableDefault] ("falbridge").
	Durable string `koanf:"durable"`
	// AckWait is how long a delivered trigger may stay unacknowledged before
	// it is redelivered. Defaults to [AckWaitDefault] (60s).
	AckWait time.Duration `koanf:"ack_wait"`
	// MaxDeliver is the number of submit attempts fal refused (429, 5xx,
	// unreachable before the body was sent) before a trigger ends with
	// rate_limited or upstream_error. It counts attempts in the job record,
	// not deliveries: the server never caps deliveries. Defaults to
	// [MaxDeliverDefault] (10).
	MaxDeliver int `koanf:"max_deliver"`
	// FetchBatch is the number of triggers pulled per request. Defaults to
	// [FetchBatchDefault] (64).
	FetchBatch int `koanf:"fetch_batch"`
	// AmbiguousSubmitPolicy decides what happens to a trigger whose submit
	// may have reached fal but was not recorded: "fail"
	// ([AmbiguousSubmitFail]) or "resubmit" ([AmbiguousSubmitResubmit]).
	// Defaults to [AmbiguousSubmitPolicyDefault] ("fail").
	AmbiguousSubmitPolicy string `koanf:"ambiguous_submit_policy"`
	// AmbiguousWait is how long a job whose submit may or may not have
	// reached fal waits for fal's webhook to settle the question (the
	// webhook URL names the job) before ambiguous_submit is published.
	// Only with a webhook URL. Defaults to [AmbiguousWaitDefault] (5m).
	AmbiguousWait time.Duration `koanf:"ambiguous_wait"`
}

// Shutdown bounds a graceful stop (keys shutdown.*).
type Shutdown struct {
	// GracePeriod is how long in-flight work may take after a stop signal.
	// Defaults to [GracePeriodDefault] (25s).
	GracePeriod time.Duration `koanf:"grace_period"`
}

// Log configures logging (keys log.*).
type Log struct {
	// Level is "debug", "info", "warn" or "error". Defaults to
	// [LogLevelDefault] ("info").
	Level string `koanf:"level"`
	// Format is "json" or "text". Defaults to [LogFormatDefault] ("json").
	Format string `koanf:"format"`
}

// Default returns the configuration with every default above. It is valid.
func Default() Config {
	return Config{
		NATS: NATS{
			Name:           NATSNameDefault,
			ConnectTimeout: ConnectTimeoutDefault,
			Embedded: Embedded{
				Listen:   EmbeddedListenDefault,
				StoreDir: EmbeddedStoreDirDefault,
			},
		},
		Streams: Streams{
			Provision:       ProvisionDefault,
			Replicas:        ReplicasDefault,
			Storage:         StorageDefault,
			Requests:        RequestsStreamDefault,
			Results:         ResultsStreamDefault,
			Status:          StatusStreamDefault,
			Pending:         PendingStreamDefault,
			JobsBucket:      JobsBucketDefault,
			ResultsMaxAge:   ResultsMaxAgeDefault,
			StatusMaxAge:    StatusMaxAgeDefault,
			JobsTTL:         JobsTTLDefault,
			DuplicateWindow: DuplicateWindowDefault,
			MaxTriggerBytes: MaxTriggerBytesDefault,
		},
		Subjects: Subjects{
			Requests:           RequestsSubjectDefault,
			Results:            ResultsPrefixDefault,
			Errors:             ErrorsPrefixDefault,
			Status:             StatusPrefixDefault,
			Cancel:             CancelPrefixDefault,
			ResultSubjectAllow: []string{ResultSubjectAllowDefault},
		},
		Fal: Fal{
			QueueURL:       QueueURLDefault,
			RunURL:         RunURLDefault,
			JWKSURLs:       []string{JWKSURLDefault, JWKSURLAlphaDefault},
			PlatformURL:    PlatformURLDefault,
			RequestTimeout: RequestTimeoutDefault,
			MaxAttempts:    MaxAttemptsDefault,
			RetryInitial:   RetryInitialDefault,
			RetryMax:       RetryMaxDefault,
		},
		Webhook: Webhook{
			Listen:       WebhookListenDefault,
			Path:         WebhookPathDefault,
			Verify:       WebhookVerifyDefault,
			JWKSURLs:     []string{},
			Tolerance:    WebhookToleranceDefault,
			MaxBodyBytes: WebhookMaxBodyBytesDefault,
		},
		Admin: Admin{Listen: AdminListenDefault},
		Limits: Limits{
			Workers:             WorkersDefault,
			MaxInFlight:         MaxInFlightDefault,
			MaxInFlightPerModel: MaxInFlightPerModelDefault,
			MaxSyncRuns:         MaxSyncRunsDefault,
			MaxTimeout:          MaxTimeoutDefault,
			MaxProgressStreams:  MaxProgressStreamsDefault,
		},
		Polling: Polling{
			WebhookGrace: WebhookGraceDefault,
			MinInterval:  MinIntervalDefault,
			MaxInterval:  MaxIntervalDefault,
			JobDeadline:  JobDeadlineDefault,

			SafetyInterval: SafetyIntervalDefault,
			SweepInterval:  SweepIntervalDefault,
		},
		Consumer: Consumer{
			Durable:               DurableDefault,
			AckWait:               AckWaitDefault,
			MaxDeliver:            MaxDeliverDefault,
			FetchBatch:            FetchBatchDefault,
			AmbiguousSubmitPolicy: AmbiguousSubmitPolicyDefault,
			AmbiguousWait:         AmbiguousWaitDefault,
		},
		Shutdown: Shutdown{GracePeriod: GracePeriodDefault},
		Log:      Log{Level: LogLevelDefault, Format: LogFormatDefault},
		Spend:    Spend{Currency: "USD", BudgetPolicy: BudgetWait, PricesSource: PricesFromConfig, PricesRefresh: PricesRefreshDefault},
	}
}

// Dev returns [Default] with every listener on the loopback interface
// (webhook [DevWebhookListen], admin [DevAdminListen]; the embedded NATS
// server already listens on 127.0.0.1) and the web console on
// (admin.console). It is valid.
func Dev() Config {
	c := Default()
	c.Webhook.Listen = DevWebhookListen
	c.Admin.Listen = DevAdminListen
	c.Admin.Console = true
	return c
}

// Redacted returns a copy of c with every set secret (fal.key, nats.password,
// nats.token, admin.console_token) replaced by "****" and the user info of every nats.url entry
// (a password or token written into the URL) replaced by "***" (see
// [RedactURL]), safe to print or log. ModelLimits and ResultSubjectAllow are
// copied.
func (c Config) Redacted() Config {
	c.Fal.Key = Secret(c.Fal.Key.String())
	c.NATS.Password = Secret(c.NATS.Password.String())
	c.NATS.Token = Secret(c.NATS.Token.String())
	c.Admin.ConsoleToken = Secret(c.Admin.ConsoleToken.String())
	c.NATS.URL = RedactURL(c.NATS.URL)
	c.Limits.ModelLimits = maps.Clone(c.Limits.ModelLimits)
	c.Subjects.ResultSubjectAllow = slices.Clone(c.Subjects.ResultSubjectAllow)
	c.Spend.Prices = slices.Clone(c.Spend.Prices)
	c.Spend.Budgets = slices.Clone(c.Spend.Budgets)
	c.Fal.JWKSURLs = slices.Clone(c.Fal.JWKSURLs)
	c.Webhook.JWKSURLs = slices.Clone(c.Webhook.JWKSURLs)
	return c
}

// RedactURL hides the user info of each entry of a comma-separated URL list
// ("nats://user:pass@host:4222" → "nats://***@host:4222"; a token written as
// "nats://TOKEN@host" likewise). User names are hidden too: with a token
// the "user" is the secret. Entries without user info are unchanged.
func RedactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		at := strings.LastIndex(p, "@")
		if at < 0 {
			continue
		}
		start := 0
		if scheme := strings.Index(p, "://"); scheme >= 0 && scheme < at {
			start = scheme + 3
		}
		// Keep leading white space of a "a, b" list readable.
		for start < at && (p[start] == ' ' || p[start] == '\t') {
			start++
		}
		parts[i] = p[:start] + "***@" + p[at+1:]
	}
	return strings.Join(parts, ",")
}

// ReservedSubjects returns the subjects falbridge keeps to itself, as
// patterns and prefixes (a subject equal to a prefix or under it is
// reserved): subjects.requests, the results, errors, status and cancel
// prefixes, and [PendingNamespace]. A trigger's result_subject must lie in
// none of them (pass it to publisher.ResultSubjectAllowed).
func (c *Config) ReservedSubjects() []string {
	s := c.Subjects
	return []string{s.Requests, s.Results, s.Errors, s.Status, s.Cancel, PendingNamespace}
}

// WebhookJWKSURLs returns the URLs webhook signing keys are fetched from:
// webhook.jwks_url, else fal.jwks_url.
func (c *Config) WebhookJWKSURLs() []string {
	if len(c.Webhook.JWKSURLs) > 0 {
		return c.Webhook.JWKSURLs
	}
	return c.Fal.JWKSURLs
}
