package falsim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// Defaults for the zero fields of Config.
const (
	// JitterDefault is the ± fraction applied to run times when Config.Jitter is 0.
	JitterDefault = 0.2
	// WebhookRetriesDefault matches fal's "10 retries" policy.
	WebhookRetriesDefault = 10
	// WebhookRetryDelayDefault is the wait before the first webhook retry; it doubles after each.
	WebhookRetryDelayDefault = time.Second
	// WebhookTimeoutDefault bounds one webhook delivery attempt.
	WebhookTimeoutDefault = 10 * time.Second
	// WebhookSendersDefault is the size of the webhook sender pool.
	WebhookSendersDefault = 16
	// RetentionDefault is how long a completed queue request stays readable.
	RetentionDefault = time.Hour
	// MaxBodyBytes caps request bodies; larger ones get 413.
	MaxBodyBytes = 10 << 20
)

// webhookRetryDelayMax caps the doubling retry delay so that a long retry
// series keeps its last attempts within fal's "2 hours" envelope.
const webhookRetryDelayMax = 30 * time.Minute

// Config configures a Sim. The zero value is usable: catalog latencies and
// concurrency, any well-formed key, no faults.
type Config struct {
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
	// WebhookRetryDelayDefault.
	WebhookRetryDelay time.Duration
	// WebhookTimeout bounds one delivery attempt. Defaults to WebhookTimeoutDefault.
	WebhookTimeout time.Duration
	// WebhookSenders is the number of sender goroutines. Defaults to WebhookSendersDefault.
	WebhookSenders int
	// Retention is how long completed queue requests stay readable before
	// status/result answer 404. Defaults to RetentionDefault.
	Retention time.Duration
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
	if c.WebhookRetryDelay == 0 {
		c.WebhookRetryDelay = WebhookRetryDelayDefault
	}
	if c.WebhookTimeout == 0 {
		c.WebhookTimeout = WebhookTimeoutDefault
	}
	if c.WebhookSenders == 0 {
		c.WebhookSenders = WebhookSendersDefault
	}
	if c.Retention == 0 {
		c.Retention = RetentionDefault
	}
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
	if c.Retention < 0 {
		errs = append(errs, fmt.Errorf("falsim: Retention: must be ≥ 0 (got %s)", c.Retention))
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
// status stream, result, cancel, run, stream), never to /_sim, /files or the
// JWKS. In the admin API durations are Go duration strings ("250ms"); a JSON
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
}

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
	} {
		if !(r.v >= 0 && r.v <= 1) { // also rejects NaN
			errs = append(errs, fmt.Errorf("falsim: faults: %s: must be within [0, 1] (got %g)", r.name, r.v))
		}
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
		RateLimitRate:           j.RateLimitRate,
		RetryAfter:              time.Duration(j.RetryAfter),
		ServerErrorRate:         j.ServerErrorRate,
		AddedLatency:            time.Duration(j.AddedLatency),
		WebhookDropRate:         j.WebhookDropRate,
		WebhookDuplicateRate:    j.WebhookDuplicateRate,
		WebhookDelay:            time.Duration(j.WebhookDelay),
		WebhookBadSignatureRate: j.WebhookBadSignatureRate,
		HangRate:                j.HangRate,
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
	f.RetryAfter = max(f.RetryAfter, 0)
	f.AddedLatency = max(f.AddedLatency, 0)
	f.WebhookDelay = max(f.WebhookDelay, 0)
	return f
}
