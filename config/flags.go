package config

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
)

// help is each key's flag usage text.
var help = map[string]string{
	"nats.url":                "NATS server URLs, comma-separated (nats://, tls://, ws://, wss://); empty starts an embedded server",
	"nats.name":               "NATS client connection name",
	"nats.creds_file":         "NATS user credentials file",
	"nats.nkey_seed_file":     "NATS NKey seed file",
	"nats.user":               "NATS user name (with nats.password)",
	"nats.password":           "NATS password (prefer FALBRIDGE_NATS_PASSWORD: flags show in ps)",
	"nats.token":              "NATS token (prefer FALBRIDGE_NATS_TOKEN: flags show in ps)",
	"nats.tls.ca_file":        "PEM CA file to trust for NATS TLS",
	"nats.tls.cert_file":      "PEM client certificate for NATS TLS (with nats.tls.key_file)",
	"nats.tls.key_file":       "PEM client key for NATS TLS (with nats.tls.cert_file)",
	"nats.tls.server_name":    "server name expected in the NATS server's certificate",
	"nats.connect_timeout":    "timeout of one NATS connection attempt",
	"nats.embedded.listen":    "client listener (host:port) of the embedded NATS server",
	"nats.embedded.store_dir": "JetStream directory of the embedded NATS server, created if missing, relative to the working directory (empty: a temporary directory, gone at exit)",

	"streams.provision":         "create or update streams, consumer and bucket at start",
	"streams.replicas":          "replicas of every stream and the bucket (1..5)",
	"streams.storage":           "stream storage: file or memory",
	"streams.requests":          "work-queue stream of triggers",
	"streams.results":           "stream of result and error events",
	"streams.status":            "stream of progress events",
	"streams.pending":           "work-queue stream the poller schedules jobs on",
	"streams.jobs_bucket":       "KV bucket of job records",
	"streams.results_max_age":   "how long result and error events are kept (0: forever)",
	"streams.status_max_age":    "how long progress events are kept (0: forever)",
	"streams.jobs_ttl":          "how long job records are kept (0: forever)",
	"streams.duplicate_window":  "Nats-Msg-Id deduplication window (0: server default)",
	"streams.max_trigger_bytes": "largest trigger accepted, in bytes",

	"subjects.requests":             "subject triggers arrive on (wildcards allowed)",
	"subjects.results":              "subject prefix of result events (+ \".<id>\")",
	"subjects.errors":               "subject prefix of error events (+ \".<id>\")",
	"subjects.status":               "subject prefix of progress events (+ \".<id>\")",
	"subjects.cancel":               "subject prefix of cancel requests (+ \".<id>\")",
	"subjects.result_subject_allow": "subject patterns a trigger's result_subject may match, comma-separated (empty: none); falbridge's own, $… and _INBOX subjects are always refused",

	"fal.key":             "fal API key \"<id>:<secret>\" (prefer FAL_KEY: flags show in ps)",
	"fal.queue_url":       "base URL of fal's queue API",
	"fal.run_url":         "base URL of fal's synchronous run API",
	"fal.jwks_url":        "URLs of fal's webhook signing keys (JWKS), comma-separated; a key of any set verifies",
	"fal.platform_url":    "base URL of fal's Platform API (model pricing)",
	"fal.request_timeout": "timeout of one HTTP attempt to fal",
	"fal.max_attempts":    "attempts per fal call, the first included",
	"fal.retry_initial":   "first retry backoff",
	"fal.retry_max":       "largest retry backoff",

	"webhook.listen":         "webhook listener (host:port)",
	"webhook.public_url":     "URL at which fal reaches the webhook listener (empty: no webhooks, poll only)",
	"webhook.path":           "route of the webhook handler",
	"webhook.verify":         "verify webhook signatures (turn off in development only)",
	"webhook.jwks_url":       "JWKS URLs for webhook verification, comma-separated (empty: fal.jwks_url)",
	"webhook.tolerance":      "accepted clock skew of a webhook's timestamp",
	"webhook.max_body_bytes": "largest webhook body accepted, in bytes",

	"admin.listen":        "metrics and health listener (host:port)",
	"admin.console":       "serve the web console under /console/ on the admin listener (dev: on)",
	"admin.console_token": "token the console requires (Bearer, or basic-auth password); required beyond loopback (prefer FALBRIDGE_ADMIN_CONSOLE_TOKEN: flags show in ps)",

	"limits.workers":                 "triggers handled at once",
	"limits.max_in_flight":           "triggers delivered and not yet settled, across replicas (≥ limits.workers); not jobs waiting at fal",
	"limits.max_in_flight_per_model": "triggers of one model submitted or run at once per replica (0: no limit)",
	"limits.model_limits":            "per-model pending limits, model=n,model2=m",
	"limits.max_sync_runs":           "sync and stream runs in progress at once on one replica (at most limits.workers)",
	"limits.max_timeout":             "largest timeout a trigger may ask for",
	"limits.max_progress_streams":    "fal status streams followed at once for triggers with \"progress\": true (0: none)",
	"limits.max_pending":             "jobs pending at fal across all replicas; over it triggers wait (0: no caps)",
	"limits.max_pending_per_model":   "jobs of one model pending at fal across all replicas (0: no per-model cap)",
	"limits.pending_model_limits":    "per-model caps on pending jobs, model=n,model2=m",
	"limits.max_pending_per_tenant":  "jobs of one tenant pending at fal across all replicas (0: no per-tenant cap)",

	"polling.webhook_grace":   "how long to wait for a webhook before polling",
	"polling.min_interval":    "first poll interval",
	"polling.max_interval":    "largest poll interval",
	"polling.job_deadline":    "how long a job may run before it is cancelled (a trigger's timeout overrides)",
	"polling.safety_interval": "how often a job that expects a webhook is checked at fal past webhook_grace",
	"polling.sweep_interval":  "how often one replica re-arms lost timers and counts pending jobs",

	"consumer.durable":                 "durable name of the trigger consumer",
	"consumer.ack_wait":                "how long a trigger may stay unacknowledged before redelivery",
	"consumer.max_deliver":             "submit attempts fal refused (429, 5xx, unreachable) before a trigger ends with rate_limited or upstream_error; the server does not cap deliveries",
	"consumer.fetch_batch":             "triggers pulled per request",
	"consumer.ambiguous_submit_policy": "a submit that may have reached fal but was not recorded: fail or resubmit",
	"consumer.ambiguous_wait":          "how long an ambiguous submit waits for fal's webhook before ambiguous_submit is published",

	"shutdown.grace_period": "how long in-flight work may take after a stop signal",

	"log.level": "log level: debug, info, warn or error",

	"spend.currency":       "currency of prices, budgets and costs",
	"spend.prices":         "price table: model=amount/unit (image, megapixel, second, request), comma-separated",
	"spend.budgets":        "budgets: scope=amount/window (global, model:<id>, tenant:<t>; hour, day), comma-separated",
	"spend.budget_policy":  "a job over a budget: wait (for the next window) or fail (budget_exceeded)",
	"spend.prices_source":  "where prices come from: config (spend.prices only) or platform (fal's Platform API, spend.prices overriding)",
	"spend.prices_refresh": "how often prices are reloaded from fal's Platform API (spend.prices_source platform)",
	"log.format":           "log format: json or text",
}

// RegisterFlags adds one flag per key to fs, named by the dotted key
// ("--limits.workers"), typed like the key, with the value from [Default] as
// its default and a usage text. Durations take Go duration strings ("30s");
// limits.model_limits takes "model=n,model2=m", subjects.result_subject_allow
// "a,b". Pass fs as [LoadOptions].Flags
// after parsing: only flags the user set override other sources. It panics,
// as pflag does, if fs already has a flag of one of these names.
func RegisterFlags(fs *pflag.FlagSet) {
	RegisterFlagsFrom(fs, Default())
}

// RegisterFlagsFrom is [RegisterFlags] with the defaults shown in the usage
// taken from def (e.g. [Dev]() for a command that loads on top of Dev).
// Secrets in def are not shown: their flags default to "".
func RegisterFlagsFrom(fs *pflag.FlagSet, def Config) {
	for _, ki := range schema {
		usage := help[ki.key]
		if usage == "" {
			panic(fmt.Sprintf("config: key %s has no help text", ki.key))
		}
		v := ki.value(&def).Interface()
		switch ki.kind {
		case kindString:
			fs.String(ki.key, v.(string), usage)
		case kindSecret:
			fs.String(ki.key, "", usage)
		case kindBool:
			fs.Bool(ki.key, v.(bool), usage)
		case kindInt:
			fs.Int(ki.key, v.(int), usage)
		case kindInt64:
			fs.Int64(ki.key, v.(int64), usage)
		case kindDuration:
			fs.Duration(ki.key, v.(time.Duration), usage)
		case kindIntMap:
			fs.StringToInt(ki.key, v.(map[string]int), usage)
		case kindStringList:
			fs.StringSlice(ki.key, v.([]string), usage)
		}
	}
}

// SecretFlags returns the names of the flags in fs that the user set and
// that carry a secret: fal.key, nats.password, nats.token, and nats.url when
// it holds user info. A command line is visible to every user of the machine
// (ps, /proc/<pid>/cmdline), so a caller warns when this is not empty.
func SecretFlags(fs *pflag.FlagSet) []string {
	var names []string
	for _, ki := range schema {
		f := fs.Lookup(ki.key)
		if f == nil || !f.Changed {
			continue
		}
		if ki.kind == kindSecret || (ki.key == "nats.url" && RedactURL(f.Value.String()) != f.Value.String()) {
			names = append(names, "--"+ki.key)
		}
	}
	return names
}
