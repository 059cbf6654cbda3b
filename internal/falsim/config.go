package falsim

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"
)

// Defaults for the zero fields of Config.
const (
	// JitterDefault is the ± fraction applied to run times when Config.Jitter is 0.
	JitterDefault = 0.2
	// WebhookRetriesDefault matches fal's "10 retries" policy.
	WebhookRetriesDefault = 10
	// WebhookRetryDelayDefault is fal's wait before the first webhook retry
	// (times WebhookTimeScale); it doubles after each, capped at 30m, so
	// that 10 retries span about 2 hours as fal's docs say.
	WebhookRetryDelayDefault = 15 * time.Second
	// WebhookTimeoutDefault bounds the first webhook delivery attempt, as
	// fal's 15 s (times WebhookTimeScale).
	WebhookTimeoutDefault = 15 * time.Second
	// WebhookRetryTimeoutDefault bounds each retried delivery attempt, as
	// fal's 120 s (times WebhookTimeScale).
	WebhookRetryTimeoutDefault = 120 * time.Second
	// ServerRetriesDefault is how many attempts fal's queue makes at a
	// request whose runner fails (503, 504, connection errors).
	ServerRetriesDefault = 10
	// ServerRetryDelayDefault is how long each retried attempt takes.
	ServerRetryDelayDefault = 10 * time.Millisecond
	// AccountConcurrencyDefault is the account's limit on requests
	// IN_PROGRESS across all models: high, so that only tests that ask
	// for a limit meet one (fal's accounts run from 2 to 40).
	AccountConcurrencyDefault = 10000
	// LargeResultBytes is the size from which a result without payload
	// storage is kept only LargeResultRetention.
	LargeResultBytes = 10 << 10
	// LargeResultRetentionDefault is fal's 6 minutes for results of 10 KB
	// or more when payload storage is off.
	LargeResultRetentionDefault = 6 * time.Minute
	// StoredRetentionDefault is how long results stay readable with payload
	// storage on (X-Fal-Store-IO absent or "1"): fal's 30 days.
	StoredRetentionDefault = 30 * 24 * time.Hour
	// StatusPingIntervalDefault is the keep-alive interval of status streams.
	StatusPingIntervalDefault = time.Second
	// WebhookSendersDefault is the size of the webhook sender pool.
	WebhookSendersDefault = 16
	// RetentionDefault is how long a completed queue request stays
	// readable when payload storage is off (X-Fal-Store-IO: 0): fal's 1 hour.
	RetentionDefault = time.Hour
	// MaxBodyBytes caps request bodies; larger ones get 413.
	MaxBodyBytes = 10 << 20
)

// webhookRetryDelayMax caps the doubling retry delay so that a long retry
// series keeps its last attempts within fal's "2 hours" envelope.
const webhookRetryDelayMax = 30 * time.Minute

// Config configures a Sim. The zero value is usable and faithful to fal:
// catalog latencies and concurrency, any well-formed key, no faults,
// asynchronous input validation, server-side retries, and cancels that
// only signal the app (see Lenient).
type Config struct {
	// Lenient keeps the simulator's old shortcuts, for tests that want
	// them: invalid input is answered 422 at submit (no job is made),
	// runner failures are not retried server-side, and a cancel of a
	// running request is always honoured (499). The default (false) is
	// what fal does.
	Lenient bool
	// ServerRetries is the number of attempts the queue makes at a request
	// whose runner fails (_sim.fail runner_disconnected or startup_timeout):
	// each further attempt gets a new gateway_request_id, and when they are
	// spent the request is COMPLETED with the failure as its stored result.
	// 500s are never retried, nor sync runs. Defaults to
	// ServerRetriesDefault (10); negative means one attempt only.
	ServerRetries int
	// ServerRetryDelay is how long each retried attempt takes. Defaults to
	// ServerRetryDelayDefault (10ms).
	ServerRetryDelay time.Duration
	// AccountConcurrency limits the requests IN_PROGRESS across all models
	// (queue and sync): queued requests past it wait IN_QUEUE, sync runs and
	// streams are answered 429 concurrent_requests_limit. Defaults to
	// AccountConcurrencyDefault (10000) when 0.
	AccountConcurrency int
	// Latency, if > 0, replaces every catalog model's run time. Tests use
	// small values (20ms). A request's "_sim.latency_ms" wins over it.
	Latency time.Duration
	// Jitter is the ± fraction applied to run times. Defaults to
	// JitterDefault (0.2) when 0; a negative value turns jitter off.
	Jitter float64
	// Concurrency is the number of runners per model (endpoint id); 0 keeps
	// the catalog's per-model value.
	Concurrency int
	// QueueTick is unused: the timer heap drives every deadline. It is kept
	// so that configurations written against the contract still compile.
	QueueTick time.Duration
	// Keys restricts the accepted "id:secret" keys. Empty accepts any
	// well-formed "Authorization: Key id:secret".
	Keys []string
	// WebhookRetries is how many times a failed webhook delivery is retried
	// (non-2xx or no answer). Defaults to WebhookRetriesDefault; negative
	// means no retries.
	WebhookRetries int
	// WebhookRetryDelay is the wait before the first retry; each further
	// retry waits twice as long (capped at 30m). Defaults to
	// WebhookRetryDelayDefault (15s) times WebhookTimeScale.
	WebhookRetryDelay time.Duration
	// WebhookTimeout bounds the first delivery attempt. Defaults to
	// WebhookTimeoutDefault (15s) times WebhookTimeScale.
	WebhookTimeout time.Duration
	// WebhookRetryTimeout bounds each retried attempt. Defaults to
	// WebhookTimeout when that is set, else WebhookRetryTimeoutDefault
	// (120s) times WebhookTimeScale.
	WebhookRetryTimeout time.Duration
	// WebhookTimeScale scales fal's webhook schedule (the defaults of
	// WebhookRetryDelay, WebhookTimeout and WebhookRetryTimeout): 1 is real
	// time, 0.01 a hundred times faster. Defaults to 1 when 0.
	WebhookTimeScale float64
	// WebhookSenders is the number of sender goroutines. Defaults to WebhookSendersDefault.
	WebhookSenders int
	// Retention is how long completed queue requests stay readable before
	// status/result answer 404, when the submit turned payload storage off
	// (X-Fal-Store-IO: 0). Defaults to RetentionDefault (1h).
	Retention time.Duration
	// LargeResultRetention replaces Retention for results of
	// LargeResultBytes (10 KB) or more. Defaults to
	// LargeResultRetentionDefault (6m).
	LargeResultRetention time.Duration
	// StoredRetention is how long results stay readable with payload
	// storage on, fal's default. Defaults to StoredRetentionDefault (30 days).
	StoredRetention time.Duration
	// StatusPingInterval is how often a status stream sends a ": ping"
	// comment (and, while the request runs, repeats its IN_PROGRESS event).
	// Defaults to StatusPingIntervalDefault (1s).
	StatusPingInterval time.Duration
	// Faults are the initial injected faults; see SetFaults.
	Faults Faults
	// Seed seeds the random source used for faults, jitter and generated
	// seeds; 0 picks a time-based seed. Request ids are always random.
	Seed int64
	// Logger receives debug logs (job lifecycle, webhook attempts). Nil
	// discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Jitter == 0 {
		c.Jitter = JitterDefault
	} else if c.Jitter < 0 {
		c.Jitter = 0
	}
	if c.WebhookRetries == 0 {
		c.WebhookRetries = WebhookRetriesDefault
	} else if c.WebhookRetries < 0 {
		c.WebhookRetries = 0
	}
	if c.WebhookTimeScale == 0 {
		c.WebhookTimeScale = 1
	}
	scaled := func(d time.Duration) time.Duration {
		return max(time.Duration(float64(d)*c.WebhookTimeScale), time.Millisecond)
	}
	if c.WebhookRetryDelay == 0 {
		c.WebhookRetryDelay = scaled(WebhookRetryDelayDefault)
	}
	if c.WebhookRetryTimeout == 0 {
		c.WebhookRetryTimeout = c.WebhookTimeout
		if c.WebhookRetryTimeout == 0 {
			c.WebhookRetryTimeout = scaled(WebhookRetryTimeoutDefault)
		}
	}
	if c.WebhookTimeout == 0 {
		c.WebhookTimeout = scaled(WebhookTimeoutDefault)
	}
	if c.ServerRetries == 0 {
		c.ServerRetries = ServerRetriesDefault
	} else if c.ServerRetries < 0 {
		c.ServerRetries = 1
	}
	if c.Lenient {
		c.ServerRetries = 1
	}
	c.ServerRetryDelay = cmp.Or(c.ServerRetryDelay, ServerRetryDelayDefault)
	c.AccountConcurrency = cmp.Or(c.AccountConcurrency, AccountConcurrencyDefault)
	c.LargeResultRetention = cmp.Or(c.LargeResultRetention, LargeResultRetentionDefault)
	c.StoredRetention = cmp.Or(c.StoredRetention, StoredRetentionDefault)
	c.StatusPingInterval = cmp.Or(c.StatusPingInterval, StatusPingIntervalDefault)
	c.WebhookSenders = cmp.Or(c.WebhookSenders, WebhookSendersDefault)
	c.Retention = cmp.Or(c.Retention, RetentionDefault)
	if c.Seed == 0 {
		c.Seed = time.Now().UnixNano()
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.Latency < 0 {
		errs = append(errs, fmt.Errorf("falsim: Latency: must be ≥ 0 (got %s)", c.Latency))
	}
	if c.Jitter > 1 {
		errs = append(errs, fmt.Errorf("falsim: Jitter: must be ≤ 1 (got %g)", c.Jitter))
	}
	if c.Concurrency < 0 {
		errs = append(errs, fmt.Errorf("falsim: Concurrency: must be ≥ 0 (got %d)", c.Concurrency))
	}
	if c.WebhookRetryDelay < 0 {
		errs = append(errs, fmt.Errorf("falsim: WebhookRetryDelay: must be ≥ 0 (got %s)", c.WebhookRetryDelay))
	}
	if c.WebhookTimeout < 0 {
		errs = append(errs, fmt.Errorf("falsim: WebhookTimeout: must be ≥ 0 (got %s)", c.WebhookTimeout))
	}
	if c.WebhookSenders < 0 {
		errs = append(errs, fmt.Errorf("falsim: WebhookSenders: must be ≥ 0 (got %d)", c.WebhookSenders))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"Retention", c.Retention}, {"LargeResultRetention", c.LargeResultRetention},
		{"StoredRetention", c.StoredRetention}, {"ServerRetryDelay", c.ServerRetryDelay},
		{"WebhookRetryTimeout", c.WebhookRetryTimeout}, {"StatusPingInterval", c.StatusPingInterval},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("falsim: %s: must be ≥ 0 (got %s)", d.name, d.v))
		}
	}
	if !(c.WebhookTimeScale >= 0) || math.IsInf(c.WebhookTimeScale, 0) {
		errs = append(errs, fmt.Errorf("falsim: WebhookTimeScale: must be a finite number ≥ 0 (got %g)", c.WebhookTimeScale))
	}
	if c.AccountConcurrency < 0 {
		errs = append(errs, fmt.Errorf("falsim: AccountConcurrency: must be ≥ 0 (got %d)", c.AccountConcurrency))
	}
	for _, k := range c.Keys {
		if _, ok := parseKey(k); !ok {
			errs = append(errs, fmt.Errorf("falsim: Keys: %q is not of the form id:secret", redactKey(k)))
		}
	}
	if err := c.Faults.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Faults are injected failures. Rates are fractions in [0, 1] drawn
// independently per call. They apply to the API calls (submit, status,
// status stream, result, cancel, run, stream), never to /_sim, /files, the
// pricing API or the JWKS (but for JWKSDown). In the admin API durations are Go duration strings ("250ms"); a JSON
// number is read as seconds.
type Faults struct {
	// RateLimitRate is the fraction of API calls answered 429. A rejected
	// submit creates no job.
	RateLimitRate float64 `json:"rate_limit_rate"`
	// RetryAfter is sent as Retry-After (whole seconds, rounded up) on those
	// 429s; 0 omits the header.
	RetryAfter time.Duration `json:"retry_after"`
	// ServerErrorRate is the fraction of API calls answered with a server
	// error: an even mix of JSON 500, JSON 503, and nginx HTML 502 and 503
	// (the HTML ones without x-fal-request-id, like fal's ingress). A
	// rejected submit creates no job.
	ServerErrorRate float64 `json:"server_error_rate"`
	// AddedLatency delays every API response.
	AddedLatency time.Duration `json:"added_latency"`
	// WebhookDropRate is the fraction of webhooks never sent.
	WebhookDropRate float64 `json:"webhook_drop_rate"`
	// WebhookDuplicateRate is the fraction of webhooks delivered twice.
	WebhookDuplicateRate float64 `json:"webhook_duplicate_rate"`
	// WebhookDelay postpones every webhook's first attempt.
	WebhookDelay time.Duration `json:"webhook_delay"`
	// WebhookBadSignatureRate is the fraction of webhooks sent with a
	// signature that does not verify.
	WebhookBadSignatureRate float64 `json:"webhook_bad_signature_rate"`
	// HangRate is the fraction of API calls that never answer: they hang
	// until the client disconnects or the Sim closes (then the connection
	// is dropped).
	HangRate float64 `json:"hang_rate"`
	// BadGatewayAfterAcceptRate is the fraction of submits that are
	// accepted (the job is made, runs, is billed and sends its webhook)
	// but answered with nginx's HTML 502 without x-fal-request-id, as when
	// fal's ingress loses the upstream's answer (fal-protocol §11.4).
	BadGatewayAfterAcceptRate float64 `json:"bad_gateway_after_accept_rate"`
	// JWKSDown makes one JWKS path answer 503: JWKSDownCurrent
	// (/.well-known/jwks.json) or JWKSDownAlpha
	// (/alpha/.well-known/jwks.json); "" keeps both up.
	JWKSDown string `json:"jwks_down"`
}

// Values of Faults.JWKSDown.
const (
	JWKSDownCurrent = "current" // rest.fal.ai's path answers 503
	JWKSDownAlpha   = "alpha"   // rest.alpha.fal.ai's path answers 503
)

// Validate reports rates outside [0, 1] and negative durations, naming the
// JSON field.
func (f Faults) Validate() error {
	var errs []error
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"rate_limit_rate", f.RateLimitRate},
		{"server_error_rate", f.ServerErrorRate},
		{"webhook_drop_rate", f.WebhookDropRate},
		{"webhook_duplicate_rate", f.WebhookDuplicateRate},
		{"webhook_bad_signature_rate", f.WebhookBadSignatureRate},
		{"hang_rate", f.HangRate},
		{"bad_gateway_after_accept_rate", f.BadGatewayAfterAcceptRate},
	} {
		if !(r.v >= 0 && r.v <= 1) { // also rejects NaN
			errs = append(errs, fmt.Errorf("falsim: faults: %s: must be within [0, 1] (got %g)", r.name, r.v))
		}
	}
	switch f.JWKSDown {
	case "", JWKSDownCurrent, JWKSDownAlpha:
	default:
		errs = append(errs, fmt.Errorf("falsim: faults: jwks_down: must be \"\", %q or %q (got %q)", JWKSDownCurrent, JWKSDownAlpha, f.JWKSDown))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"retry_after", f.RetryAfter},
		{"added_latency", f.AddedLatency},
		{"webhook_delay", f.WebhookDelay},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("falsim: faults: %s: must be ≥ 0 (got %s)", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}

// jsonDuration is a time.Duration that reads and writes Go duration strings,
// so that the admin API takes "250ms" rather than nanoseconds.
type jsonDuration time.Duration

func (d jsonDuration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, time.Duration(d).String()), nil
}

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	if bytes.Equal(b, []byte("null")) {
		*d = 0
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = jsonDuration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("duration: want a string like \"250ms\" or a number of seconds, got %s", b)
	}
	*d = jsonDuration(secs * float64(time.Second))
	return nil
}

type faultsJSON struct {
	RateLimitRate           float64      `json:"rate_limit_rate"`
	RetryAfter              jsonDuration `json:"retry_after"`
	ServerErrorRate         float64      `json:"server_error_rate"`
	AddedLatency            jsonDuration `json:"added_latency"`
	WebhookDropRate         float64      `json:"webhook_drop_rate"`
	WebhookDuplicateRate    float64      `json:"webhook_duplicate_rate"`
	WebhookDelay            jsonDuration `json:"webhook_delay"`
	WebhookBadSignatureRate float64      `json:"webhook_bad_signature_rate"`
	HangRate                float64      `json:"hang_rate"`
	BadGatewayAfterAccept   float64      `json:"bad_gateway_after_accept_rate"`
	JWKSDown                string       `json:"jwks_down"`
}

// MarshalJSON writes durations as Go duration strings ("250ms").
func (f Faults) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultsJSON{
		RateLimitRate:           f.RateLimitRate,
		RetryAfter:              jsonDuration(f.RetryAfter),
		ServerErrorRate:         f.ServerErrorRate,
		AddedLatency:            jsonDuration(f.AddedLatency),
		WebhookDropRate:         f.WebhookDropRate,
		WebhookDuplicateRate:    f.WebhookDuplicateRate,
		WebhookDelay:            jsonDuration(f.WebhookDelay),
		WebhookBadSignatureRate: f.WebhookBadSignatureRate,
		HangRate:                f.HangRate,
		BadGatewayAfterAccept:   f.BadGatewayAfterAcceptRate,
		JWKSDown:                f.JWKSDown,
	})
}

// UnmarshalJSON reads durations as Go duration strings or numbers of
// seconds, and rejects unknown fields so that a typo in a chaos script is an
// error rather than a fault silently left off.
func (f *Faults) UnmarshalJSON(b []byte) error {
	var j faultsJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	*f = Faults{
		RateLimitRate:             j.RateLimitRate,
		RetryAfter:                time.Duration(j.RetryAfter),
		ServerErrorRate:           j.ServerErrorRate,
		AddedLatency:              time.Duration(j.AddedLatency),
		WebhookDropRate:           j.WebhookDropRate,
		WebhookDuplicateRate:      j.WebhookDuplicateRate,
		WebhookDelay:              time.Duration(j.WebhookDelay),
		WebhookBadSignatureRate:   j.WebhookBadSignatureRate,
		HangRate:                  j.HangRate,
		BadGatewayAfterAcceptRate: j.BadGatewayAfterAccept,
		JWKSDown:                  j.JWKSDown,
	}
	return nil
}

func (f Faults) clamped() Faults {
	rate := func(v float64) float64 {
		if !(v >= 0) { // NaN too
			return 0
		}
		return min(v, 1)
	}
	f.RateLimitRate = rate(f.RateLimitRate)
	f.ServerErrorRate = rate(f.ServerErrorRate)
	f.WebhookDropRate = rate(f.WebhookDropRate)
	f.WebhookDuplicateRate = rate(f.WebhookDuplicateRate)
	f.WebhookBadSignatureRate = rate(f.WebhookBadSignatureRate)
	f.HangRate = rate(f.HangRate)
	f.BadGatewayAfterAcceptRate = rate(f.BadGatewayAfterAcceptRate)
	if f.JWKSDown != JWKSDownCurrent && f.JWKSDown != JWKSDownAlpha {
		f.JWKSDown = ""
	}
	f.RetryAfter = max(f.RetryAfter, 0)
	f.AddedLatency = max(f.AddedLatency, 0)
	f.WebhookDelay = max(f.WebhookDelay, 0)
	return f
}
