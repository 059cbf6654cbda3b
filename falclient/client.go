package falclient

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Defaults.
const (
	// QueueURLDefault is fal's queue host (submit, status, result, cancel).
	QueueURLDefault = "https://queue.fal.run"
	// RunURLDefault is fal's synchronous run host (run, stream).
	RunURLDefault = "https://fal.run"
	// JWKSURLDefault serves the public keys of fal's webhook signatures
	// (the current host).
	JWKSURLDefault = "https://rest.fal.ai/.well-known/jwks.json"
	// JWKSURLAlphaDefault is the host older fal docs give for the same
	// keys. fal has not said which one is authoritative (fal-protocol
	// §11.5), so verifiers fetch both by default: a key verifies if either
	// set holds it.
	JWKSURLAlphaDefault = "https://rest.alpha.fal.ai/.well-known/jwks.json"

	// MaxAttemptsDefault is the default [RetryPolicy.MaxAttempts].
	MaxAttemptsDefault = 5
	// InitialIntervalDefault is the default [RetryPolicy.InitialInterval].
	InitialIntervalDefault = 500 * time.Millisecond
	// MaxIntervalDefault is the default [RetryPolicy.MaxInterval].
	MaxIntervalDefault = 30 * time.Second
	// MultiplierDefault is the default [RetryPolicy.Multiplier].
	MultiplierDefault = 2.0
	// RandomizationFactorDefault is the default [RetryPolicy.RandomizationFactor].
	RandomizationFactorDefault = 0.25

	// RequestTimeoutDefault is the default per-attempt timeout of queue calls.
	RequestTimeoutDefault = 60 * time.Second
	// MaxConnsPerHostDefault is the default of [WithMaxConnsPerHost].
	MaxConnsPerHostDefault = 64
	// MaxResponseBytesDefault is the default of [WithMaxResponseBytes].
	MaxResponseBytesDefault int64 = 64 << 20
	// UserAgentDefault is the default User-Agent header.
	UserAgentDefault = "falbridge-falclient/1"
)

// Internal limits.
const (
	maxErrorBody    = 1 << 20  // error bodies are read up to this size
	maxDrain        = 64 << 10 // bytes drained before closing a body, to reuse the connection
	maxRequestIDLen = 256
)

// RetryPolicy is the exponential backoff (with jitter) used between
// attempts. Zero fields take their defaults. Which failures are retried is
// fixed per operation; see [Client.Submit], [Client.Status] and [Client.Run].
type RetryPolicy struct {
	MaxAttempts         int           // total attempts including the first; default 5; 1 disables retries
	InitialInterval     time.Duration // first wait; default 500ms
	MaxInterval         time.Duration // cap of one wait; default 30s. A longer Retry-After ends the retries (see [RetryAfter])
	Multiplier          float64       // growth per attempt, ≥ 1; default 2
	RandomizationFactor float64       // jitter, wait·(1±factor), in [0,1]; default 0.25 (0 means the default)
}

// DefaultRetryPolicy returns the policy a [Client] uses without [WithRetry].
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{
		MaxAttempts:         MaxAttemptsDefault,
		InitialInterval:     InitialIntervalDefault,
		MaxInterval:         MaxIntervalDefault,
		Multiplier:          MultiplierDefault,
		RandomizationFactor: RandomizationFactorDefault,
	}
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.MaxAttempts == 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.InitialInterval == 0 {
		p.InitialInterval = d.InitialInterval
	}
	if p.MaxInterval == 0 {
		p.MaxInterval = d.MaxInterval
	}
	if p.Multiplier == 0 {
		p.Multiplier = d.Multiplier
	}
	if p.RandomizationFactor == 0 {
		p.RandomizationFactor = d.RandomizationFactor
	}
	return p
}

// validate returns "" or the reason p is invalid.
func (p RetryPolicy) validate() string {
	switch {
	case p.MaxAttempts < 1:
		return fmt.Sprintf("MaxAttempts must be ≥ 1 (got %d)", p.MaxAttempts)
	case p.InitialInterval < 0:
		return fmt.Sprintf("InitialInterval must be ≥ 0 (got %s)", p.InitialInterval)
	case p.MaxInterval < p.InitialInterval:
		return fmt.Sprintf("MaxInterval (%s) must be ≥ InitialInterval (%s)", p.MaxInterval, p.InitialInterval)
	case !(p.Multiplier >= 1):
		return fmt.Sprintf("Multiplier must be ≥ 1 (got %g)", p.Multiplier)
	case !(p.RandomizationFactor >= 0 && p.RandomizationFactor <= 1):
		return fmt.Sprintf("RandomizationFactor must be in [0,1] (got %g)", p.RandomizationFactor)
	}
	return ""
}

type options struct {
	key             Key
	keySet          bool
	queueURL        string
	runURL          string
	jwksURLs        []string
	platformURL     string
	httpClient      *http.Client
	maxConnsPerHost int
	retry           RetryPolicy
	requestTimeout  time.Duration
	logger          *slog.Logger
	now             func() time.Time
	userAgent       string
	maxResponse     int64
	observe         func(Attempt)
}

// Option configures a [Client]. An option given a bad value makes [New]
// fail with an error wrapping [ErrInvalidOption] that names the option.
type Option func(*options) error

func invalid(name, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidOption, name, fmt.Sprintf(format, args...))
}

// Attempt describes one HTTP attempt, for an observer (metrics).
type Attempt struct {
	// Op is the operation: one of the Op* constants.
	Op string
	// Model is the model id as given by the caller.
	Model string
	// Number is 1 for the first attempt of a call, 2 for its first retry...
	Number int
	// StatusCode is the HTTP status; 0 when no answer came (see Err).
	StatusCode int
	// Err is the transport error, if any. It never contains the key.
	Err error
	// Duration is the time until the response headers (or the error).
	Duration time.Duration
}

// WithObserver sets a function called after every HTTP attempt, from the
// goroutine that made it; it must be quick and safe for concurrent use.
// Retries are the attempts with Number > 1. Default: none.
func WithObserver(f func(Attempt)) Option {
	return func(o *options) error {
		o.observe = f
		return nil
	}
}

// WithKey sets the API key ("<key id>:<key secret>"). Without it, [New]
// uses [KeyFromEnv]. An empty key, or one with whitespace, control
// characters, quotes or backslashes, is invalid.
func WithKey(k Key) Option {
	return func(o *options) error {
		if !validKey(k) {
			return invalid("WithKey", "key is empty or contains invalid characters")
		}
		o.key, o.keySet = k, true
		return nil
	}
}

// WithQueueURL sets the queue base URL (default [QueueURLDefault]). It must
// be an absolute http(s) URL without user info, query or fragment; a
// trailing slash is removed.
func WithQueueURL(u string) Option {
	return func(o *options) (err error) {
		o.queueURL, err = checkBaseURL("WithQueueURL", u)
		return err
	}
}

// WithRunURL sets the sync run base URL (default [RunURLDefault]); same
// rules as [WithQueueURL].
func WithRunURL(u string) Option {
	return func(o *options) (err error) {
		o.runURL, err = checkBaseURL("WithRunURL", u)
		return err
	}
}

// WithJWKSURL sets the URLs of the webhook JWKS (default
// [JWKSURLDefault] and [JWKSURLAlphaDefault]), used by [Client.Verifier]:
// a signature verifies if a key of any of them does. Each must be an
// absolute http(s) URL; at least one is required.
func WithJWKSURL(urls ...string) Option {
	return func(o *options) error {
		if len(urls) == 0 {
			return invalid("WithJWKSURL", "needs at least one URL")
		}
		out := make([]string, 0, len(urls))
		for _, u := range urls {
			v, err := checkAbsURL("WithJWKSURL", u, true)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		o.jwksURLs = out
		return nil
	}
}

// WithHTTPClient replaces the client's own tuned *http.Client. The given
// client is used as is: [WithMaxConnsPerHost] does not apply to it, and its
// Timeout, if set, bounds every call including Run and Stream. nil is
// invalid.
func WithHTTPClient(h *http.Client) Option {
	return func(o *options) error {
		if h == nil {
			return invalid("WithHTTPClient", "nil client")
		}
		o.httpClient = h
		return nil
	}
}

// WithMaxConnsPerHost sizes the connection pool of the client's own
// transport: at most n connections per host, all of which may stay idle for
// reuse. Set it to at least the number of concurrent callers (workers).
// Default 64; n must be ≥ 1. Long-lived status streams hold a connection each.
func WithMaxConnsPerHost(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return invalid("WithMaxConnsPerHost", "must be ≥ 1 (got %d)", n)
		}
		o.maxConnsPerHost = n
		return nil
	}
}

// WithRetry sets the backoff policy; zero fields take the defaults of
// [DefaultRetryPolicy].
func WithRetry(p RetryPolicy) Option {
	return func(o *options) error {
		p = p.withDefaults()
		if reason := p.validate(); reason != "" {
			return invalid("WithRetry", "%s", reason)
		}
		o.retry = p
		return nil
	}
}

// WithRequestTimeout bounds each attempt of Submit, Status, Result and
// Cancel, and the wait for the response headers of StatusStream (default
// 60s; 0 disables; negative is invalid). Run and Stream have no per-attempt
// timeout: only their context bounds them. A timed-out attempt fails with an
// error wrapping [ErrTimeout].
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return invalid("WithRequestTimeout", "must be ≥ 0 (got %s)", d)
		}
		o.requestTimeout = d
		return nil
	}
}

// WithLogger sets the logger for retries (debug level, keys op, model_id,
// attempt, err, wait). nil, the default, discards.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		o.logger = l
		return nil
	}
}

// WithClock sets the clock used for Retry-After dates and by
// [Client.Verifier] for timestamp checks (default time.Now). nil is invalid.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return invalid("WithClock", "nil clock")
		}
		o.now = now
		return nil
	}
}

// WithUserAgent sets the User-Agent header (default [UserAgentDefault]). It
// must be non-empty printable ASCII.
func WithUserAgent(ua string) Option {
	return func(o *options) error {
		if ua == "" || strings.IndexFunc(ua, func(r rune) bool { return r < ' ' || r > '~' }) >= 0 {
			return invalid("WithUserAgent", "must be non-empty printable ASCII")
		}
		o.userAgent = ua
		return nil
	}
}

// WithMaxResponseBytes caps the size of a success body (Result, Run) and of
// one SSE event (default 64 MiB; must be ≥ 1 KiB). Larger answers fail with
// [ErrResponseTooLarge]. Error bodies are always read up to 1 MiB.
func WithMaxResponseBytes(n int64) Option {
	return func(o *options) error {
		if n < 1<<10 {
			return invalid("WithMaxResponseBytes", "must be ≥ 1024 (got %d)", n)
		}
		o.maxResponse = n
		return nil
	}
}

func checkBaseURL(name, raw string) (string, error) {
	u, err := checkAbsURL(name, raw, false)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(u, "/"), nil
}

func checkAbsURL(name, raw string, allowQuery bool) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", invalid(name, "cannot parse URL: %v", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", invalid(name, "URL %q must be absolute http or https", raw)
	case u.Host == "":
		return "", invalid(name, "URL %q has no host", raw)
	case u.User != nil:
		return "", invalid(name, "URL must not contain user info")
	case u.Fragment != "" || (!allowQuery && (u.RawQuery != "" || u.ForceQuery)):
		return "", invalid(name, "URL %q must not have a query or fragment", raw)
	}
	return raw, nil
}

// Client calls fal's queue, run and stream APIs. Create it with [New]; it
// is safe for concurrent use by many goroutines and should be reused.
type Client struct {
	key        Key
	queueURL   string
	runURL     string
	jwksURLs   []string
	platform   string
	hc         *http.Client
	retry      RetryPolicy
	reqTimeout time.Duration
	log        *slog.Logger
	now        func() time.Time
	userAgent  string
	maxBody    int64

	observe func(Attempt)

	// sleep waits d or until ctx is done (replaceable in tests).
	sleep func(ctx context.Context, d time.Duration) error

	verifierOnce sync.Once
	verifier     *Verifier
}

// New returns a client. Defaults: the key from [KeyFromEnv] (when
// [WithKey] is not given; an empty environment means no Authorization header,
// which fal answers with 401), fal's real hosts ([QueueURLDefault],
// [RunURLDefault], [JWKSURLDefault], [PlatformURLDefault]), [DefaultRetryPolicy], a 60s
// per-attempt timeout, 64 connections per host, a 64 MiB response cap,
// no logging, time.Now. Errors wrap [ErrInvalidOption] and name the option.
func New(opts ...Option) (*Client, error) {
	o := options{
		queueURL:        QueueURLDefault,
		runURL:          RunURLDefault,
		jwksURLs:        []string{JWKSURLDefault, JWKSURLAlphaDefault},
		platformURL:     PlatformURLDefault,
		maxConnsPerHost: MaxConnsPerHostDefault,
		retry:           DefaultRetryPolicy(),
		requestTimeout:  RequestTimeoutDefault,
		now:             time.Now,
		userAgent:       UserAgentDefault,
		maxResponse:     MaxResponseBytesDefault,
	}
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if !o.keySet {
		o.key = KeyFromEnv()
		if o.key != "" && !validKey(o.key) {
			return nil, invalid("FAL_KEY", "key from the environment contains invalid characters")
		}
	}
	logger := o.logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hc := o.httpClient
	if hc == nil {
		hc = &http.Client{Transport: newTransport(o.maxConnsPerHost), CheckRedirect: checkRedirect}
	}
	return &Client{
		key:        o.key,
		queueURL:   strings.TrimRight(o.queueURL, "/"),
		runURL:     strings.TrimRight(o.runURL, "/"),
		jwksURLs:   o.jwksURLs,
		platform:   strings.TrimRight(o.platformURL, "/"),
		hc:         hc,
		retry:      o.retry,
		reqTimeout: o.requestTimeout,
		log:        logger,
		now:        o.now,
		userAgent:  o.userAgent,
		maxBody:    o.maxResponse,
		observe:    o.observe,
		sleep:      sleepCtx,
	}, nil
}

// newTransport returns the tuned transport: keep-alive, an idle pool sized
// to n per host, HTTP/2 when the server offers it, and bounded dial, TLS and
// idle timeouts. There is no response-header timeout: synchronous runs may
// legitimately take minutes; contexts bound them.
func newTransport(n int) *http.Transport {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          max(100, 2*n),
		MaxIdleConnsPerHost:   n,
		MaxConnsPerHost:       n,
		IdleConnTimeout:       50 * time.Second, // below nginx's 75s keepalive_timeout
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// CloseIdleConnections closes the idle connections of the client's
// transport.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Verifier returns a webhook [Verifier] that fetches keys from the client's
// JWKS URL with the client's HTTP client and clock. It is created on first
// use and shared.
func (c *Client) Verifier() *Verifier {
	c.verifierOnce.Do(func() {
		v, err := NewVerifier(VerifierOptions{JWKSURLs: c.jwksURLs, HTTPClient: c.hc, Now: c.now})
		if err != nil {
			// Cannot happen: the JWKS URL and clock were validated by New.
			panic(err)
		}
		c.verifier = v
	})
	return c.verifier
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// parseModel parses model for op, wrapping failures with the op name.
func parseModel(op, model string) (ModelID, error) {
	m, err := ParseModelID(model)
	if err != nil {
		return ModelID{}, fmt.Errorf("falclient: %s: %w", op, err)
	}
	return m, nil
}

// checkRequestID validates a request id for use as one path segment.
func checkRequestID(op, rid string) error {
	bad := func(reason string) error {
		return fmt.Errorf("falclient: %s: %w %q: %s", op, ErrInvalidRequestID, truncate(rid, 64), reason)
	}
	if rid == "" {
		return bad("empty")
	}
	if len(rid) > maxRequestIDLen {
		return bad(fmt.Sprintf("longer than %d bytes", maxRequestIDLen))
	}
	if rid == "." || rid == ".." {
		return bad("dot segment")
	}
	for i := 0; i < len(rid); i++ {
		if c := rid[i]; !isPathChar(c) {
			return bad(fmt.Sprintf("invalid character %q", rune(c)))
		}
	}
	return nil
}
