package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRequireFalKey(t *testing.T) {
	t.Parallel()
	c := Default()
	err := c.RequireFalKey()
	require.ErrorIs(t, err, ErrInvalidValue)
	var fe *FieldError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, "fal.key", fe.Key)
	require.Contains(t, err.Error(), "FAL_KEY", "the message names the variable people set")
	require.NoError(t, c.Validate(), "Validate alone does not require a key")

	c.Fal.Key = "id:secret"
	require.NoError(t, c.RequireFalKey())
}

func TestFalKeyProblemNeverQuotesTheKey(t *testing.T) {
	t.Parallel()
	for _, k := range []string{"nocolon-supersecret", "supersecret:", " supersecret:x", "sécret:x"} {
		c := Default()
		c.Fal.Key = Secret(k)
		err := c.Validate()
		require.Error(t, err, k)
		require.NotContains(t, err.Error(), "supersecret")
		require.NotContains(t, err.Error(), "sécret")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()

	dir := t.TempDir()
	creds := writeFile(t, "user.creds", "creds")
	seed := writeFile(t, "user.nk", "seed")
	cert := writeFile(t, "client.pem", "cert")
	key := writeFile(t, "client-key.pem", "key")
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name   string
		mutate func(c *Config)
		key    string // "" = valid
		msg    string // substring of the problem
	}{
		// limits
		{"workers zero", func(c *Config) { c.Limits.Workers = 0 }, "limits.workers", "must be ≥ 1 (got 0)"},
		{"max_in_flight below workers", func(c *Config) { c.Limits.MaxInFlight = 8 }, "limits.max_in_flight", "must be ≥ limits.workers (8 < 64)"},
		{"max_in_flight equal workers", func(c *Config) { c.Limits.MaxInFlight = 64 }, "", ""},
		{"per-model negative", func(c *Config) { c.Limits.MaxInFlightPerModel = -1 }, "limits.max_in_flight_per_model", "must be ≥ 0"},
		{"model limit zero", func(c *Config) { c.Limits.ModelLimits = map[string]int{"fal-ai/flux/dev": 0} }, "limits.model_limits", `"fal-ai/flux/dev": must be ≥ 1 (got 0)`},
		{"model limit empty id", func(c *Config) { c.Limits.ModelLimits = map[string]int{" ": 1} }, "limits.model_limits", "model id must not be empty"},
		{"model limits ok", func(c *Config) { c.Limits.ModelLimits = map[string]int{"fal-ai/flux-pro/v1.1": 2} }, "", ""},

		// fal key: "<key id>:<key secret>", checked only for its shape
		{"fal key without colon", func(c *Config) { c.Fal.Key = "nocolon" }, "fal.key", "has no ':'"},
		{"fal key empty secret", func(c *Config) { c.Fal.Key = "id:" }, "fal.key", "empty key id or secret"},
		{"fal key empty id", func(c *Config) { c.Fal.Key = ":secret" }, "fal.key", "empty key id or secret"},
		{"fal key with space", func(c *Config) { c.Fal.Key = "id: secret" }, "fal.key", "whitespace"},
		{"fal key ok", func(c *Config) { c.Fal.Key = "6b2c1e0a-0000-4000-8000-000000000000:0123abcd:x" }, "", ""},

		// durations
		{"request_timeout zero", func(c *Config) { c.Fal.RequestTimeout = 0 }, "fal.request_timeout", "must be > 0 (got 0s)"},
		{"tolerance zero", func(c *Config) { c.Webhook.Tolerance = 0 }, "webhook.tolerance", "must be > 0"},
		{"min_interval zero", func(c *Config) { c.Polling.MinInterval = 0 }, "polling.min_interval", "must be > 0"},
		{"max_interval negative", func(c *Config) { c.Polling.MaxInterval = -time.Second }, "polling.max_interval", "must be > 0 (got -1s)"},
		{"min above max", func(c *Config) { c.Polling.MinInterval = time.Minute }, "polling.min_interval", "must be ≤ polling.max_interval (1m > 30s)"},
		{"webhook_grace negative", func(c *Config) { c.Polling.WebhookGrace = -time.Second }, "polling.webhook_grace", "must be ≥ 0"},
		{"webhook_grace zero ok", func(c *Config) { c.Polling.WebhookGrace = 0 }, "", ""},
		{"job_deadline zero", func(c *Config) { c.Polling.JobDeadline = 0 }, "polling.job_deadline", "must be > 0"},
		{"ack_wait zero", func(c *Config) { c.Consumer.AckWait = 0 }, "consumer.ack_wait", "must be > 0"},
		{"grace_period zero", func(c *Config) { c.Shutdown.GracePeriod = 0 }, "shutdown.grace_period", "must be > 0"},
		{"grace_period too short for a fal call", func(c *Config) { c.Shutdown.GracePeriod = 2 * time.Second }, "shutdown.grace_period", "must be ≥ 4s to fit one fal call"},
		{"max_sync_runs zero", func(c *Config) { c.Limits.MaxSyncRuns = 0 }, "limits.max_sync_runs", "must be ≥ 1"},
		{"price without unit", func(c *Config) { c.Spend.Prices = []string{"fal-ai/x=0.1"} }, "spend.prices", "want model=amount/unit"},
		{"price bad unit", func(c *Config) { c.Spend.Prices = []string{"fal-ai/x=0.1/gallon"} }, "spend.prices", "unit must be image"},
		{"price negative", func(c *Config) { c.Spend.Prices = []string{"fal-ai/x=-1/image"} }, "spend.prices", "amount must be a number"},
		{"budget bad scope", func(c *Config) { c.Limits.MaxPending = 4; c.Spend.Budgets = []string{"team=1/day"} }, "spend.budgets", "scope must be global"},
		{"budget bad window", func(c *Config) { c.Limits.MaxPending = 4; c.Spend.Budgets = []string{"global=1/week"} }, "spend.budgets", "window must be hour or day"},
		{"budget without max_pending", func(c *Config) { c.Spend.Budgets = []string{"global=1/day"} }, "spend.budgets", "need limits.max_pending"},
		{"budget policy", func(c *Config) { c.Spend.BudgetPolicy = "panic" }, "spend.budget_policy", `must be "wait" or "fail"`},
		{"max_pending too large", func(c *Config) { c.Limits.MaxPending = MaxPendingLimit + 1 }, "limits.max_pending", "must be 0 (no caps) to 10000"},
		{"model cap without max_pending", func(c *Config) { c.Limits.MaxPendingPerModel = 2 }, "limits.max_pending", "must be set when"},
		{"tenant cap without max_pending", func(c *Config) { c.Limits.MaxPendingPerTenant = 2 }, "limits.max_pending", "must be set when"},
		{"pending model limit zero", func(c *Config) {
			c.Limits.MaxPending = 8
			c.Limits.PendingModelLimits = map[string]int{"fal-ai/x": 0}
		}, "limits.pending_model_limits", `"fal-ai/x": must be ≥ 1`},
		{"max_timeout below job_deadline", func(c *Config) { c.Limits.MaxTimeout = time.Minute }, "polling.job_deadline", "must be ≤ limits.max_timeout"},
		{"safety_interval zero", func(c *Config) { c.Polling.SafetyInterval = 0 }, "polling.safety_interval", "must be > 0"},
		{"sweep_interval zero", func(c *Config) { c.Polling.SweepInterval = 0 }, "polling.sweep_interval", "must be > 0"},
		{"ambiguous_wait negative", func(c *Config) { c.Consumer.AmbiguousWait = -time.Second }, "consumer.ambiguous_wait", "must be ≥ 0"},
		{"connect_timeout zero", func(c *Config) { c.NATS.ConnectTimeout = 0 }, "nats.connect_timeout", "must be > 0"},
		{"retry_initial zero", func(c *Config) { c.Fal.RetryInitial = 0 }, "fal.retry_initial", "must be > 0"},
		{"retry_max below initial", func(c *Config) { c.Fal.RetryMax = 100 * time.Millisecond }, "fal.retry_max", "must be ≥ fal.retry_initial (100ms < 500ms)"},
		{"results_max_age negative", func(c *Config) { c.Streams.ResultsMaxAge = -time.Hour }, "streams.results_max_age", "must be ≥ 0"},
		{"jobs_ttl negative", func(c *Config) { c.Streams.JobsTTL = -time.Hour }, "streams.jobs_ttl", "must be ≥ 0"},
		{"max ages zero ok", func(c *Config) { c.Streams.ResultsMaxAge, c.Streams.StatusMaxAge, c.Streams.JobsTTL = 0, 0, 0 }, "", ""},
		{"duplicate window above max age", func(c *Config) { c.Streams.StatusMaxAge = time.Minute }, "streams.duplicate_window", "must not exceed streams.status_max_age (2m > 1m)"},

		// counts
		{"max_attempts zero", func(c *Config) { c.Fal.MaxAttempts = 0 }, "fal.max_attempts", "must be ≥ 1"},
		{"max_deliver zero", func(c *Config) { c.Consumer.MaxDeliver = 0 }, "consumer.max_deliver", "must be ≥ 1"},
		{"fetch_batch zero", func(c *Config) { c.Consumer.FetchBatch = 0 }, "consumer.fetch_batch", "must be ≥ 1"},
		{"max_trigger_bytes zero", func(c *Config) { c.Streams.MaxTriggerBytes = 0 }, "streams.max_trigger_bytes", "must be > 0 (got 0)"},
		{"max_body_bytes zero", func(c *Config) { c.Webhook.MaxBodyBytes = 0 }, "webhook.max_body_bytes", "must be > 0"},

		// streams
		{"replicas zero", func(c *Config) { c.Streams.Replicas = 0 }, "streams.replicas", "must be between 1 and 5 (got 0)"},
		{"replicas six", func(c *Config) { c.Streams.Replicas = 6 }, "streams.replicas", "must be between 1 and 5 (got 6)"},
		{"replicas five", func(c *Config) { c.Streams.Replicas = 5 }, "", ""},
		{"storage", func(c *Config) { c.Streams.Storage = "disk" }, "streams.storage", `must be one of file, memory (got "disk")`},
		{"storage memory", func(c *Config) { c.Streams.Storage = StorageMemory }, "", ""},
		{"stream name space", func(c *Config) { c.Streams.Requests = "FAL REQUESTS" }, "streams.requests", "must not contain spaces"},
		{"stream name dot", func(c *Config) { c.Streams.Results = "FAL.RESULTS" }, "streams.results", "must not contain"},
		{"stream name wildcard", func(c *Config) { c.Streams.Status = "FAL_*" }, "streams.status", "must not contain"},
		{"stream name empty", func(c *Config) { c.Streams.Pending = "" }, "streams.pending", "required"},
		{"stream names equal", func(c *Config) { c.Streams.Pending = "FAL_REQUESTS" }, "streams.pending", "must differ from streams.requests"},
		{"bucket dot", func(c *Config) { c.Streams.JobsBucket = "fal.jobs" }, "streams.jobs_bucket", "may contain only letters, digits"},
		{"bucket empty", func(c *Config) { c.Streams.JobsBucket = "" }, "streams.jobs_bucket", "required"},
		{"durable space", func(c *Config) { c.Consumer.Durable = "fal bridge" }, "consumer.durable", "must not contain spaces"},

		// subjects
		{"requests empty", func(c *Config) { c.Subjects.Requests = "" }, "subjects.requests", "is not a valid subject"},
		{"requests space", func(c *Config) { c.Subjects.Requests = "fal. requests" }, "subjects.requests", "is not a valid subject"},
		{"requests > not last", func(c *Config) { c.Subjects.Requests = "fal.>.x" }, "subjects.requests", "is not a valid subject"},
		{"requests partial wildcard", func(c *Config) { c.Subjects.Requests = "fal.req*" }, "subjects.requests", "is not a valid subject"},
		{"requests wildcards ok", func(c *Config) { c.Subjects.Requests = "jobs.*.in.>" }, "", ""},
		{"requests literal ok", func(c *Config) { c.Subjects.Requests = "jobs.in" }, "", ""},
		{"requests overlap results", func(c *Config) { c.Subjects.Requests = "fal.>" }, "subjects.requests", `also matches subjects.results subjects ("fal.results.<id>")`},
		{"requests overlap cancel", func(c *Config) { c.Subjects.Requests = "fal.cancel.*" }, "subjects.requests", "also matches subjects.cancel"},
		{"results wildcard", func(c *Config) { c.Subjects.Results = "fal.results.*" }, "subjects.results", "not a valid subject prefix"},
		{"errors empty token", func(c *Config) { c.Subjects.Errors = "fal..errors" }, "subjects.errors", "not a valid subject prefix"},
		{"status trailing dot", func(c *Config) { c.Subjects.Status = "fal.status." }, "subjects.status", "not a valid subject prefix"},
		{"cancel >", func(c *Config) { c.Subjects.Cancel = ">" }, "subjects.cancel", "not a valid subject prefix"},
		{"errors equal results", func(c *Config) { c.Subjects.Errors = "fal.results" }, "subjects.errors", "must differ from subjects.results"},
		{"result_subject_allow empty ok", func(c *Config) { c.Subjects.ResultSubjectAllow = nil }, "", ""},
		{"result_subject_allow several ok", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{"app.>", "events.*.done", "orders"} }, "", ""},
		{"result_subject_allow > ok", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{">"} }, "", ""},
		{"result_subject_allow fal.> ok", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{"fal.>"} }, "", ""}, // fal.app.x is allowed, fal.results.x is not
		{"result_subject_allow invalid", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{"app.>", "a b"} }, "subjects.result_subject_allow", `"a b" is not a valid subject pattern`},
		{"result_subject_allow > not last", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{"app.>.x"} }, "subjects.result_subject_allow", "is not a valid subject pattern"},
		{"result_subject_allow results", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{"fal.results.>"} }, "subjects.result_subject_allow", `"fal.results.>" lies within subjects.results ("fal.results")`},
		{"result_subject_allow cancel", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{"fal.cancel.*"} }, "subjects.result_subject_allow", "lies within subjects.cancel"},
		{"result_subject_allow requests", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{"fal.requests.x"} }, "subjects.result_subject_allow", "lies within subjects.requests"},
		{"result_subject_allow custom errors", func(c *Config) {
			c.Subjects.Errors = "app.errors"
			c.Subjects.ResultSubjectAllow = []string{"app.errors.>"}
		}, "subjects.result_subject_allow", "lies within subjects.errors"},
		{"result_subject_allow pending", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{"falbridge.>"} }, "subjects.result_subject_allow", "lies within the poller's namespace"},
		{"result_subject_allow kv", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{"$KV.fal_jobs.>"} }, "subjects.result_subject_allow", "names server subjects"},
		{"result_subject_allow inbox", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{"_INBOX.>"} }, "subjects.result_subject_allow", "names server subjects"},

		// URLs
		{"queue_url no scheme", func(c *Config) { c.Fal.QueueURL = "queue.fal.run" }, "fal.queue_url", "must be an absolute http:// or https:// URL"},
		{"queue_url ftp", func(c *Config) { c.Fal.QueueURL = "ftp://queue.fal.run" }, "fal.queue_url", "must be an absolute http:// or https:// URL"},
		{"run_url empty", func(c *Config) { c.Fal.RunURL = "" }, "fal.run_url", "required"},
		{"jwks_url empty", func(c *Config) { c.Fal.JWKSURLs = nil }, "fal.jwks_url", "required"},
		{"jwks_url no host", func(c *Config) { c.Fal.JWKSURLs = []string{JWKSURLDefault, "https:///jwks.json"} }, "fal.jwks_url", "must name a host"},
		{"queue_url bad port", func(c *Config) { c.Fal.QueueURL = "http://127.0.0.1:99999" }, "fal.queue_url", "bad port"},
		{"queue_url unparsable", func(c *Config) { c.Fal.QueueURL = "http://[::1" }, "fal.queue_url", "not a URL"},
		{"queue_url local ok", func(c *Config) { c.Fal.QueueURL = "http://127.0.0.1:8787" }, "", ""},
		{"public_url relative", func(c *Config) { c.Webhook.PublicURL = "bridge.example.com/hook" }, "webhook.public_url", "must be an absolute"},
		{"public_url fragment", func(c *Config) { c.Webhook.PublicURL = "https://bridge.example.com/#x" }, "webhook.public_url", "#fragment"},
		{"public_url user info", func(c *Config) { c.Webhook.PublicURL = "https://u:p@bridge.example.com" }, "webhook.public_url", "user info"},
		{"public_url ok", func(c *Config) { c.Webhook.PublicURL = "https://bridge.example.com" }, "", ""},
		{"webhook jwks_url bad", func(c *Config) { c.Webhook.JWKSURLs = []string{"jwks.json"} }, "webhook.jwks_url", "must be an absolute"},
		{"nats url http", func(c *Config) { c.NATS.URL = "http://127.0.0.1:4222" }, "nats.url", "must be a nats://, tls://, ws:// or wss:// URL"},
		{"nats url no scheme", func(c *Config) { c.NATS.URL = "localhost:4222" }, "nats.url", "must be a nats://"},
		{"nats url empty entry", func(c *Config) { c.NATS.URL = "nats://a:4222,,nats://b:4222" }, "nats.url", "empty entry"},
		{"nats url no host", func(c *Config) { c.NATS.URL = "nats://:4222" }, "nats.url", "must name a host"},
		{"nats urls ok", func(c *Config) { c.NATS.URL = "nats://a:4222, tls://b:4222,ws://c:8080,wss://d" }, "", ""},

		// listeners
		{"webhook listen no host:port", func(c *Config) { c.Webhook.Listen = "8080" }, "webhook.listen", "must be host:port"},
		{"admin listen empty", func(c *Config) { c.Admin.Listen = "" }, "admin.listen", "must be host:port"},
		{"embedded listen bad port", func(c *Config) { c.NATS.Embedded.Listen = "127.0.0.1:99999" }, "nats.embedded.listen", "bad port"},
		{"embedded listen no port", func(c *Config) { c.NATS.Embedded.Listen = "127.0.0.1:" }, "nats.embedded.listen", "must include a port"},
		{"admin clashes with webhook", func(c *Config) { c.Admin.Listen = "127.0.0.1:8080" }, "admin.listen", `clashes with webhook.listen ":8080"`},
		{"embedded clashes with admin", func(c *Config) { c.Admin.Listen = ":4222" }, "nats.embedded.listen", "clashes with admin.listen"},
		{"embedded unused no clash", func(c *Config) { c.Admin.Listen = ":4222"; c.NATS.URL = "nats://x:4222" }, "", ""},
		{"port zero never clashes", func(c *Config) { c.Admin.Listen = ":0"; c.Webhook.Listen = ":0" }, "", ""},
		{"console beyond loopback without token", func(c *Config) { c.Admin.Console = true }, "admin.console_token", "must be set"},
		{"console beyond loopback with token", func(c *Config) { c.Admin.Console = true; c.Admin.ConsoleToken = "t0ken" }, "", ""},
		{"console on loopback without token", func(c *Config) { c.Admin.Console = true; c.Admin.Listen = "127.0.0.1:9090" }, "", ""},
		{"different hosts same port", func(c *Config) { c.Admin.Listen = "127.0.0.1:9000"; c.Webhook.Listen = "127.0.0.2:9000" }, "", ""},

		// enums and paths
		{"log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level", `must be one of debug, info, warn, error (got "verbose")`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format", "must be one of json, text"},
		{"policy", func(c *Config) { c.Consumer.AmbiguousSubmitPolicy = "retry" }, "consumer.ambiguous_submit_policy", "must be one of fail, resubmit"},
		{"policy resubmit", func(c *Config) { c.Consumer.AmbiguousSubmitPolicy = AmbiguousSubmitResubmit }, "", ""},
		{"webhook path", func(c *Config) { c.Webhook.Path = "fal/webhook" }, "webhook.path", `must start with "/"`},
		{"verify off is valid", func(c *Config) { c.Webhook.Verify = false }, "", ""},

		// NATS auth and files
		{"creds and token", func(c *Config) { c.NATS.CredsFile = creds; c.NATS.Token = "t" }, "nats.token", "conflicts with nats.creds_file"},
		{"nkey and user", func(c *Config) { c.NATS.NKeySeedFile = seed; c.NATS.User = "u"; c.NATS.Password = "p" }, "nats.user", "conflicts with nats.nkey_seed_file"},
		{"user without password", func(c *Config) { c.NATS.User = "u" }, "nats.password", "required when nats.user is set"},
		{"password without user", func(c *Config) { c.NATS.Password = "p" }, "nats.user", "required when nats.password is set"},
		{"user and password ok", func(c *Config) { c.NATS.User = "u"; c.NATS.Password = "p" }, "", ""},
		{"token ok", func(c *Config) { c.NATS.Token = "t" }, "", ""},
		{"creds ok", func(c *Config) { c.NATS.CredsFile = creds }, "", ""},
		{"nkey ok", func(c *Config) { c.NATS.NKeySeedFile = seed }, "", ""},
		{"creds missing", func(c *Config) { c.NATS.CredsFile = missing }, "nats.creds_file", "does not exist"},
		{"nkey is a directory", func(c *Config) { c.NATS.NKeySeedFile = dir }, "nats.nkey_seed_file", "is a directory"},
		{"ca missing", func(c *Config) { c.NATS.TLS.CAFile = missing }, "nats.tls.ca_file", "does not exist"},
		{"cert without key", func(c *Config) { c.NATS.TLS.CertFile = cert }, "nats.tls.key_file", "required when nats.tls.cert_file is set"},
		{"key without cert", func(c *Config) { c.NATS.TLS.KeyFile = key }, "nats.tls.cert_file", "required when nats.tls.key_file is set"},
		{"cert and key ok", func(c *Config) { c.NATS.TLS.CertFile = cert; c.NATS.TLS.KeyFile = key }, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			if tt.key == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.ErrorIs(t, err, ErrInvalidValue)
			found := false
			for _, fe := range fieldErrors(err) {
				require.True(t, strings.HasPrefix(fe.Error(), fe.Key+": "), fe.Error())
				if fe.Key == tt.key && strings.Contains(fe.Message, tt.msg) {
					found = true
				}
			}
			require.True(t, found, "want %s: …%s…, got:\n%v", tt.key, tt.msg, err)
			for line := range strings.SplitSeq(err.Error(), "\n") {
				key, _, ok := strings.Cut(line, ": ")
				require.True(t, ok, line)
				require.Contains(t, Keys(), key, line)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()

	c := Default()
	c.Limits.Workers = 0
	c.Log.Level = "loud"
	c.Streams.Replicas = 9
	err := c.Validate()
	require.Len(t, fieldErrors(err), 3)
	require.Equal(t, "streams.replicas: must be between 1 and 5 (got 9)\n"+
		"limits.workers: must be ≥ 1 (got 0)\n"+
		"log.level: must be one of debug, info, warn, error (got \"loud\")", err.Error())
	var fe *FieldError
	require.True(t, errors.As(err, &fe))
	require.Equal(t, "streams.replicas", fe.Key)
}

func TestWarnings(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // key prefix of each warning
	}{
		{"default", func(*Config) {}, nil},
		{"verify off", func(c *Config) { c.Webhook.Verify = false }, []string{"webhook.verify"}},
		{"public http remote", func(c *Config) { c.Webhook.PublicURL = "http://bridge.example.com" }, []string{"webhook.public_url"}},
		{"public http loopback", func(c *Config) { c.Webhook.PublicURL = "http://127.0.0.1:8080" }, nil},
		{"public http localhost", func(c *Config) { c.Webhook.PublicURL = "http://localhost:8080" }, nil},
		{"public http ipv6 loopback", func(c *Config) { c.Webhook.PublicURL = "http://[::1]:8080" }, nil},
		{"public https", func(c *Config) { c.Webhook.PublicURL = "https://bridge.example.com" }, nil},
		{"embedded all interfaces", func(c *Config) { c.NATS.Embedded.Listen = ":4222" }, []string{"nats.embedded.listen"}},
		{"embedded unused", func(c *Config) { c.NATS.Embedded.Listen = ":4222"; c.NATS.URL = "nats://x:4222" }, nil},
		{"result_subject_allow >", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{"app.>", ">"} }, []string{"subjects.result_subject_allow"}},
		{"result_subject_allow *.x", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{"*.done"} }, []string{"subjects.result_subject_allow"}},
		{"result_subject_allow none", func(c *Config) { c.Subjects.ResultSubjectAllow = []string{} }, nil},
		{"several", func(c *Config) {
			c.Webhook.Verify = false
			c.Webhook.PublicURL = "http://10.0.0.5:8080"
		}, []string{"webhook.verify", "webhook.public_url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			tt.mutate(&c)
			require.NoError(t, c.Validate(), "warnings are not errors")
			got := c.Warnings()
			require.Len(t, got, len(tt.want), "%q", got)
			for i, w := range got {
				require.True(t, strings.HasPrefix(w, tt.want[i]+": "), w)
			}
		})
	}
}
