package falclient

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WebhookStatus is the outcome reported by a webhook.
type WebhookStatus string

// Webhook outcomes. Other values may appear; see [Webhook.Terminal].
const (
	WebhookOK    WebhookStatus = "OK"
	WebhookError WebhookStatus = "ERROR"
)

// Webhook is the body fal POSTs to a submit's webhook URL (fal-protocol
// §5.1).
type Webhook struct {
	RequestID        string          `json:"request_id"`              // the queue request id
	GatewayRequestID string          `json:"gateway_request_id"`      // id of the last attempt
	Status           WebhookStatus   `json:"status"`                  // OK or ERROR (others: see Terminal)
	Payload          json.RawMessage `json:"payload"`                 // output (OK) or error body (ERROR), raw bytes as sent; nil when null
	Error            *string         `json:"error"`                   // e.g. "Invalid status code: 422"
	PayloadError     string          `json:"payload_error,omitempty"` // why Payload is null, when it is
}

// ParseWebhook decodes a webhook body. The payload is kept as the raw bytes
// fal sent (nil for null), so large integers survive; unknown fields are
// ignored, and fields other than request_id and status are read leniently.
// A body that is not a JSON object, or lacks a string request_id or status,
// returns an error wrapping [ErrWebhookPayload]. Verify the signature over
// the same raw body first ([Verifier.Verify]).
func ParseWebhook(body []byte) (*Webhook, error) {
	var w struct {
		RequestID        json.RawMessage `json:"request_id"`
		GatewayRequestID json.RawMessage `json:"gateway_request_id"`
		Status           json.RawMessage `json:"status"`
		Payload          json.RawMessage `json:"payload"`
		Error            json.RawMessage `json:"error"`
		PayloadError     json.RawMessage `json:"payload_error"`
	}
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrWebhookPayload)
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrWebhookPayload, err)
	}
	out := &Webhook{
		RequestID:        jsonString(w.RequestID),
		GatewayRequestID: looseString(w.GatewayRequestID),
		Status:           WebhookStatus(jsonString(w.Status)),
		PayloadError:     looseString(w.PayloadError),
	}
	if out.RequestID == "" {
		return nil, fmt.Errorf("%w: missing request_id", ErrWebhookPayload)
	}
	if out.Status == "" {
		return nil, fmt.Errorf("%w: missing status", ErrWebhookPayload)
	}
	if p := bytes.TrimSpace(w.Payload); len(p) > 0 && !bytes.Equal(p, []byte("null")) {
		out.Payload = json.RawMessage(p)
	}
	if e := bytes.TrimSpace(w.Error); len(e) > 0 && !bytes.Equal(e, []byte("null")) {
		s := looseString(e)
		out.Error = &s
	}
	return out, nil
}

// Terminal reports whether the webhook reports an outcome (OK or ERROR).
// Other statuses are not documented by fal; ignore them.
func (w *Webhook) Terminal() bool {
	return w.Status == WebhookOK || w.Status == WebhookError
}

var statusCodeRE = regexp.MustCompile(`(?i)status code:?\s*(\d{3})\b|\b([1-5]\d\d)\b`)

// Err returns nil for an OK webhook. For ERROR it returns an *APIError with
// Op "webhook": StatusCode from the error string ("Invalid status code:
// 422" → 422; 0 if absent), Details, Message and ErrorType from the payload
// (format A or B, see [APIError]), RequestID the webhook's request id, Body
// the payload. So errors.Is(w.Err(), ErrValidation) works as for an API
// answer. Any other status returns an error wrapping [ErrWebhookPayload].
func (w *Webhook) Err() error {
	switch w.Status {
	case WebhookOK:
		return nil
	case WebhookError:
	default:
		return fmt.Errorf("%w: unexpected status %q", ErrWebhookPayload, truncate(string(w.Status), 64))
	}
	e := &APIError{Op: OpWebhook, RequestID: w.RequestID}
	if w.Error != nil {
		if m := statusCodeRE.FindStringSubmatch(*w.Error); m != nil {
			e.StatusCode, _ = strconv.Atoi(m[1] + m[2])
		}
	}
	fillFromBody(e, w.Payload)
	if e.Message == "" && w.Error != nil {
		e.Message = *w.Error
	}
	if w.PayloadError != "" {
		if e.Message == "" {
			e.Message = w.PayloadError
		} else {
			e.Message += " (payload_error: " + w.PayloadError + ")"
		}
	}
	if e.Message == "" {
		e.Message = http.StatusText(e.StatusCode)
	}
	return e
}

// Webhook signature headers (fal-protocol §5.2).
const (
	HeaderWebhookRequestID = "X-Fal-Webhook-Request-Id"
	HeaderWebhookUserID    = "X-Fal-Webhook-User-Id"
	HeaderWebhookTimestamp = "X-Fal-Webhook-Timestamp"
	HeaderWebhookSignature = "X-Fal-Webhook-Signature"
)

// Verifier defaults.
const (
	WebhookToleranceDefault    = 5 * time.Minute
	JWKSCacheTTLDefault        = 24 * time.Hour
	JWKSRefetchIntervalDefault = 30 * time.Second
)

const (
	jwksFetchTimeout   = 10 * time.Second
	jwksFailureBackoff = time.Second
	maxJWKSBody        = 1 << 20
)

// VerifierOptions configure a [Verifier]. Zero fields take their defaults.
type VerifierOptions struct {
	// JWKSURLs are the key sets fetched; a signature verifies if a key of
	// any of them does, and verification fails closed only when none of
	// them answers. Default [JWKSURLDefault] and [JWKSURLAlphaDefault]
	// (fal-protocol §11.5). Each must be an absolute http(s) URL.
	JWKSURLs []string
	// JWKSURL, if set, is fetched before JWKSURLs (one URL, as before
	// JWKSURLs existed).
	JWKSURL    string
	HTTPClient *http.Client     // default a client with a 10s timeout; each fetch is also bounded to 10s
	Tolerance  time.Duration    // accepted |now − timestamp|; default 5m
	CacheTTL   time.Duration    // how long fetched keys are used; default 24h
	Now        func() time.Time // clock for the timestamp window and the cache; default time.Now
	// RefetchInterval is the minimum spacing of the refetches that a
	// signature no cached key verifies triggers (key rotation); default 30s.
	RefetchInterval time.Duration
}

// Verifier checks fal's webhook signatures against the keys of fal's JWKS.
// It is safe for concurrent use; keys are cached and fetches are shared.
type Verifier struct {
	urls    []string
	hc      *http.Client
	tol     time.Duration
	ttl     time.Duration
	refetch time.Duration
	now     func() time.Time

	mu         sync.Mutex
	keys       []ed25519.PublicKey
	gen        uint64 // incremented by every successful fetch
	fetchedAt  time.Time
	lastForced time.Time
	lastErr    error
	lastErrAt  time.Time
	inflight   *jwksFetch
}

// jwksFetch is a fetch in progress; waiters read its outcome after done.
type jwksFetch struct {
	done chan struct{}
	keys []ed25519.PublicKey // the keys after the fetch (stale ones if it failed)
	gen  uint64
	err  error
}

// NewVerifier returns a verifier. Negative durations or a bad URL return an
// error wrapping [ErrInvalidOption]. No key is fetched until the first
// Verify.
func NewVerifier(opts VerifierOptions) (*Verifier, error) {
	v := &Verifier{
		hc:      opts.HTTPClient,
		tol:     opts.Tolerance,
		ttl:     opts.CacheTTL,
		refetch: opts.RefetchInterval,
		now:     opts.Now,
	}
	if opts.JWKSURL != "" {
		if _, err := checkAbsURL("VerifierOptions.JWKSURL", opts.JWKSURL, true); err != nil {
			return nil, err
		}
		v.urls = append(v.urls, opts.JWKSURL)
	}
	for _, u := range opts.JWKSURLs {
		if _, err := checkAbsURL("VerifierOptions.JWKSURLs", u, true); err != nil {
			return nil, err
		}
		if !slices.Contains(v.urls, u) {
			v.urls = append(v.urls, u)
		}
	}
	if len(v.urls) == 0 {
		v.urls = []string{JWKSURLDefault, JWKSURLAlphaDefault}
	}
	switch {
	case v.tol < 0:
		return nil, invalid("VerifierOptions.Tolerance", "must be ≥ 0 (got %s)", v.tol)
	case v.ttl < 0:
		return nil, invalid("VerifierOptions.CacheTTL", "must be ≥ 0 (got %s)", v.ttl)
	case v.refetch < 0:
		return nil, invalid("VerifierOptions.RefetchInterval", "must be ≥ 0 (got %s)", v.refetch)
	}
	if v.hc == nil {
		v.hc = &http.Client{Timeout: jwksFetchTimeout}
	}
	if v.tol == 0 {
		v.tol = WebhookToleranceDefault
	}
	if v.ttl == 0 {
		v.ttl = JWKSCacheTTLDefault
	}
	if v.refetch == 0 {
		v.refetch = JWKSRefetchIntervalDefault
	}
	if v.now == nil {
		v.now = time.Now
	}
	return v, nil
}

// errNoRefetch: a forced refetch was skipped (rate limit).
var errNoRefetch = errors.New("refetch rate-limited")

func sigError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrWebhookSignature, fmt.Sprintf(format, args...))
}

// Verify checks a webhook's signature (fal-protocol §5.2): the four
// X-Fal-Webhook-* headers must be present, the timestamp within Tolerance
// of now (either direction), the signature 64 bytes of hex, and some
// Ed25519 key of the JWKS must verify
// "<request id>\n<user id>\n<timestamp>\n<hex sha256 of body>". body must
// be the raw bytes received, never re-encoded. When no cached key verifies,
// the JWKS is fetched again once (at most once per RefetchInterval, shared
// by concurrent callers) to follow key rotation.
//
// It returns the signed request id; check that it is the one you expect.
// Every failure wraps [ErrWebhookSignature]; JWKS fetch failures also wrap
// [ErrJWKS].
func (v *Verifier) Verify(ctx context.Context, h http.Header, body []byte) (requestID string, err error) {
	vals := make([]string, 4)
	for i, name := range []string{HeaderWebhookRequestID, HeaderWebhookUserID, HeaderWebhookTimestamp, HeaderWebhookSignature} {
		if vals[i] = h.Get(name); vals[i] == "" {
			return "", sigError("missing header %s", name)
		}
	}
	rid, uid, tsText, sigHex := vals[0], vals[1], vals[2], vals[3]
	ts, perr := strconv.ParseInt(tsText, 10, 64)
	if perr != nil || ts < 0 {
		return "", sigError("timestamp %q is not decimal Unix seconds", truncate(tsText, 32))
	}
	if skew := v.now().Sub(time.Unix(ts, 0)); skew > v.tol || skew < -v.tol {
		return "", sigError("timestamp %d is %s away from now, beyond ±%s", ts, skew.Round(time.Second), v.tol)
	}
	sig, herr := hex.DecodeString(sigHex)
	if herr != nil {
		return "", sigError("signature is not hex")
	}
	if len(sig) != ed25519.SignatureSize {
		return "", sigError("signature has %d bytes, want %d", len(sig), ed25519.SignatureSize)
	}
	sum := sha256.Sum256(body)
	msg := []byte(rid + "\n" + uid + "\n" + tsText + "\n" + hex.EncodeToString(sum[:]))

	keys, gen, err := v.getKeys(ctx, false, 0)
	if err != nil {
		return "", fmt.Errorf("%w: %w: %v", ErrWebhookSignature, ErrJWKS, err)
	}
	if verifyAny(keys, msg, sig) {
		return rid, nil
	}
	// Newer keys (a concurrent refetch) or one rate-limited refetch.
	keys, _, err = v.getKeys(ctx, true, gen)
	switch {
	case errors.Is(err, errNoRefetch):
	case err != nil:
		return "", fmt.Errorf("%w: no cached key verifies and %w: %v", ErrWebhookSignature, ErrJWKS, err)
	case verifyAny(keys, msg, sig):
		return rid, nil
	}
	return "", sigError("no key of the JWKS verifies the signature of request %q", truncate(rid, 64))
}

func verifyAny(keys []ed25519.PublicKey, msg, sig []byte) bool {
	for _, k := range keys {
		if ed25519.Verify(k, msg, sig) {
			return true
		}
	}
	return false
}

// getKeys returns the cached keys and their generation, fetching them when
// absent or expired, or (force) because no key of generation tried
// verified. A forced call returns the current keys without fetching when
// they changed since tried (a concurrent refetch), and errNoRefetch when a
// forced refetch happened less than RefetchInterval ago.
func (v *Verifier) getKeys(ctx context.Context, force bool, tried uint64) ([]ed25519.PublicKey, uint64, error) {
	v.mu.Lock()
	now := v.now()
	switch {
	case v.inflight != nil:
		// Join the fetch in progress.
	case force && v.keys != nil && v.gen != tried:
		keys, gen := v.keys, v.gen
		v.mu.Unlock()
		return keys, gen, nil
	case force:
		if !v.lastForced.IsZero() && now.Sub(v.lastForced) < v.refetch {
			v.mu.Unlock()
			return nil, 0, errNoRefetch
		}
		v.lastForced = now
	case v.keys != nil && now.Sub(v.fetchedAt) < v.ttl:
		keys, gen := v.keys, v.gen
		v.mu.Unlock()
		return keys, gen, nil
	case v.lastErr != nil && now.Sub(v.lastErrAt) < jwksFailureBackoff:
		keys, gen, err := v.keys, v.gen, v.lastErr
		v.mu.Unlock()
		if keys != nil {
			return keys, gen, nil // stale keys beat none
		}
		return nil, 0, err
	}
	f := v.inflight
	if f == nil {
		f = &jwksFetch{done: make(chan struct{})}
		v.inflight = f
		v.mu.Unlock()
		keys, err := v.fetch(ctx)
		v.mu.Lock()
		v.inflight = nil
		if err == nil {
			v.gen++
			v.keys, v.fetchedAt, v.lastErr = keys, v.now(), nil
		} else {
			v.lastErr, v.lastErrAt = err, v.now()
		}
		f.keys, f.gen, f.err = v.keys, v.gen, err
		v.mu.Unlock()
		close(f.done)
	} else {
		v.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, 0, context.Cause(ctx)
		}
	}
	switch {
	case f.err == nil:
		return f.keys, f.gen, nil
	case !force && f.keys != nil:
		return f.keys, f.gen, nil // stale keys beat none
	}
	return nil, 0, f.err
}

// fetch downloads every key set at once and returns the union of their
// keys. One set that fails is no failure while another answered (fal
// serves the keys from two hosts, fal-protocol §11.5); the error says why
// each failed only when none answered. It is not bound to the caller's
// cancellation (other callers may share it), only to a 10s timeout.
func (v *Verifier) fetch(ctx context.Context) ([]ed25519.PublicKey, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jwksFetchTimeout)
	defer cancel()
	keys := make([][]ed25519.PublicKey, len(v.urls))
	errs := make([]error, len(v.urls))
	var wg sync.WaitGroup
	for i, u := range v.urls {
		wg.Go(func() { keys[i], errs[i] = v.fetchOne(ctx, u) })
	}
	wg.Wait()
	var all []ed25519.PublicKey
	for _, ks := range keys {
		for _, k := range ks {
			if !slices.ContainsFunc(all, func(o ed25519.PublicKey) bool { return o.Equal(k) }) {
				all = append(all, k)
			}
		}
	}
	if len(all) > 0 {
		return all, nil
	}
	if len(v.urls) == 1 {
		return nil, errs[0]
	}
	for i, err := range errs {
		errs[i] = fmt.Errorf("%s: %w", v.urls[i], err)
	}
	return nil, errors.Join(errs...)
}

// fetchOne downloads and parses one JWKS.
func (v *Verifier) fetchOne(ctx context.Context, url string) ([]ed25519.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", contentJSON)
	resp, err := v.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", stripURLError(err))
	}
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
		_ = resp.Body.Close()
	}()
	if !ok2xx(resp.StatusCode) {
		return nil, fmt.Errorf("fetch JWKS: HTTP %d", resp.StatusCode)
	}
	body, err := readCapped(resp.Body, maxJWKSBody)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	return parseJWKS(body)
}

// parseJWKS returns the Ed25519 keys (kty OKP, crv Ed25519) of a JWKS.
func parseJWKS(body []byte) ([]ed25519.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Crv string `json:"crv"`
			X   string `json:"x"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	var keys []ed25519.PublicKey
	for _, k := range set.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			continue
		}
		pub, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.X, "="))
		if err != nil || len(pub) != ed25519.PublicKeySize {
			continue
		}
		keys = append(keys, ed25519.PublicKey(pub))
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no usable Ed25519 key")
	}
	return keys, nil
}
