package falsim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sim is the simulator: an http.Handler serving fal's API (see the package
// documentation for the URL layout). It is safe for concurrent use. Close
// stops its engine and webhook senders.
type Sim struct {
	cfg  Config
	log  *slog.Logger
	keys map[string]struct{}

	priv      ed25519.PrivateKey
	pub       ed25519.PublicKey
	kid       string
	jwks      []byte // the current host's key set: x unpadded
	jwksAlpha []byte // the old host's: the same key, x "="-padded

	// mu guards the engine: jobs, queues, the timer heap and the rng used
	// for plans.
	mu             sync.Mutex
	epoch          uint64
	seq            uint64
	evSeq          uint64
	jobs           map[string]*job
	active         map[*job]struct{} // queued or running, including sync runs
	models         map[string]*modelState
	events         eventHeap
	rng            *mrand.Rand
	submitsByModel map[string]int64
	queued         int64
	running        int64
	billed         int64
	billedByModel  map[string]int64
	billedByID     map[string]int       // survives a request's expiry, not a Reset
	mediaUntil     map[string]time.Time // request id → when its output media expire

	// curEpoch mirrors epoch for the webhook senders, which do not take mu
	// to learn whether a Reset made their delivery stale.
	curEpoch atomic.Uint64

	fmu    sync.Mutex // guards faults and frng
	faults Faults
	frng   *mrand.Rand

	whMu     sync.Mutex
	whQueue  []*delivery
	whSignal chan struct{}
	whClient *http.Client
	whCtx    context.Context
	whCancel context.CancelFunc

	stats [nCounters]atomic.Int64

	wake      chan struct{}
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// New validates cfg, generates the webhook signing key, and starts the
// engine goroutine and the webhook senders. Call Close to stop them.
func New(cfg Config) (*Sim, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("falsim: generate signing key: %w", err)
	}
	sum := sha256.Sum256(pub)
	s := &Sim{
		cfg:      cfg,
		log:      cfg.Logger,
		priv:     priv,
		pub:      pub,
		kid:      hex.EncodeToString(sum[:8]),
		faults:   cfg.Faults.clamped(),
		rng:      mrand.New(mrand.NewPCG(uint64(cfg.Seed), 1)),
		frng:     mrand.New(mrand.NewPCG(uint64(cfg.Seed), 2)),
		whSignal: make(chan struct{}, 1),
		wake:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
	}
	if len(cfg.Keys) > 0 {
		s.keys = make(map[string]struct{}, len(cfg.Keys))
		for _, k := range cfg.Keys {
			s.keys[strings.TrimSpace(k)] = struct{}{}
		}
	}
	jwks := func(x string) []byte {
		return mustMarshal(map[string]any{"keys": []map[string]string{{
			"kty": "OKP", "crv": "Ed25519", "x": x, "kid": s.kid, "use": "sig", "alg": "EdDSA",
		}}})
	}
	s.jwks = jwks(base64.RawURLEncoding.EncodeToString(pub))
	s.jwksAlpha = jwks(base64.URLEncoding.EncodeToString(pub))
	s.resetEngine()
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = cfg.WebhookSenders
	s.whClient = &http.Client{Transport: transport} // each attempt has its own deadline
	s.whCtx, s.whCancel = context.WithCancel(context.Background())

	s.wg.Add(1 + cfg.WebhookSenders)
	go s.engine()
	for range cfg.WebhookSenders {
		go s.sender()
	}
	return s, nil
}

// resetEngine drops every job, queue and pending event. Callers hold s.mu
// (or own s exclusively).
func (s *Sim) resetEngine() {
	s.epoch++
	s.curEpoch.Store(s.epoch)
	s.jobs = make(map[string]*job)
	s.active = make(map[*job]struct{})
	s.models = make(map[string]*modelState, len(catalog))
	for id, m := range catalog {
		c := m.concurrency
		if s.cfg.Concurrency > 0 {
			c = s.cfg.Concurrency
		}
		s.models[id] = &modelState{m: m, concurrency: c}
	}
	s.events = nil
	s.submitsByModel = make(map[string]int64)
	s.queued, s.running = 0, 0
	s.billed = 0
	s.billedByModel = make(map[string]int64)
	s.billedByID = make(map[string]int)
	s.mediaUntil = make(map[string]time.Time)
}

// Close stops the engine and the webhook senders (cancelling deliveries in
// flight), and releases every request the simulator holds open: hung
// requests have their connection dropped, waiting sync runs and streams end.
// It is idempotent and returns nil.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.whCancel()
		s.wg.Wait()
		s.whClient.CloseIdleConnections()
	})
	return nil
}

// Reset zeroes every counter and forgets every job: running and queued jobs
// end at once (their waiters see a 499, their webhooks are not sent), and
// pending or retrying webhooks are dropped.
func (s *Sim) Reset() {
	s.mu.Lock()
	now := time.Now()
	for _, ms := range s.models {
		ms.concurrency = 0 // ending a running job must not start a queued one
	}
	for j := range s.active {
		if j.state == stateQueued {
			j.ms.lanes[j.lane].remove(j)
			j.ms.queueChanged()
		}
		j.webhookURL = "" // a forgotten job tells nobody
		s.complete(j, cancelledOutcome, now)
	}
	s.resetEngine()
	s.mu.Unlock()

	s.whMu.Lock()
	s.whQueue = nil
	s.whMu.Unlock()
	for i := range s.stats {
		s.stats[i].Store(0)
	}
}

// SetFaults replaces the injected faults at once, for every later call.
// Out-of-range values are clamped: rates into [0, 1], durations to ≥ 0 (use
// Faults.Validate first to reject them instead, as PUT /_sim/faults does).
func (s *Sim) SetFaults(f Faults) {
	f = f.clamped()
	s.fmu.Lock()
	s.faults = f
	s.fmu.Unlock()
}

// Faults returns the faults in force.
func (s *Sim) Faults() Faults {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	return s.faults
}

// PublicKey is the Ed25519 key webhooks are signed with; the JWKS at
// /.well-known/jwks.json and /alpha/.well-known/jwks.json publish it.
func (s *Sim) PublicKey() ed25519.PublicKey { return s.pub }

// KeyID is the "kid" of PublicKey in the JWKS.
func (s *Sim) KeyID() string { return s.kid }

// counter indexes Sim.stats.
type counter int

const (
	cSubmits counter = iota
	cStatusCalls
	cStatusStreams
	cResultCalls
	cCancels
	cSyncRuns
	cStreams
	cCompleted
	cFailed
	cCancelled
	cTimedOut
	cWebhooksSent
	cWebhooksFailed
	cWebhooksDropped
	cWebhooksDuplicated
	cWebhooksBadSignature
	cRateLimited
	cServerErrors
	cHung
	cUnauthorized
	cValidationErrors
	cNotFound
	cFiles
	cServerRetries
	cBadGatewayAfterAccept
	cConcurrencyLimited
	nCounters
)

func (s *Sim) count(c counter) { s.stats[c].Add(1) }

// Stats are the simulator's counters, served as JSON at /_sim/stats.
//
// API call counters (status_calls, result_calls, cancels, status_streams)
// count authenticated calls that were not answered by an injected fault;
// those are counted in rate_limited, server_errors and hung instead.
// submits, sync_runs and streams count accepted requests only: a submit
// rejected by a fault or a 404 never counts. An invalid input is accepted
// (its 422 is the request's result, and counts in validation_errors) unless
// the Sim is Lenient.
type Stats struct {
	Submits        int64            `json:"submits"`
	SubmitsByModel map[string]int64 `json:"submits_by_model"`
	StatusCalls    int64            `json:"status_calls"`
	StatusStreams  int64            `json:"status_streams"`
	ResultCalls    int64            `json:"result_calls"`
	Cancels        int64            `json:"cancels"`
	SyncRuns       int64            `json:"sync_runs"`
	Streams        int64            `json:"streams"`

	// Completed counts requests that reached COMPLETED (queue, run and
	// stream); Failed those whose result is an error, including
	// Cancelled (499) and TimedOut (start deadline, 504).
	Completed int64 `json:"completed"`
	Failed    int64 `json:"failed"`
	Cancelled int64 `json:"cancelled"`
	TimedOut  int64 `json:"timed_out"`

	// WebhooksSent counts deliveries answered 2xx; WebhooksFailed counts
	// failed attempts (non-2xx or no answer), each retry included.
	WebhooksSent         int64 `json:"webhooks_sent"`
	WebhooksFailed       int64 `json:"webhooks_failed"`
	WebhooksDropped      int64 `json:"webhooks_dropped"`
	WebhooksDuplicated   int64 `json:"webhooks_duplicated"`
	WebhooksBadSignature int64 `json:"webhooks_bad_signature"`

	RateLimited      int64 `json:"rate_limited"`
	ServerErrors     int64 `json:"server_errors"`
	Hung             int64 `json:"hung"`
	Unauthorized     int64 `json:"unauthorized"`
	ValidationErrors int64 `json:"validation_errors"`
	NotFound         int64 `json:"not_found"`
	Files            int64 `json:"files"`

	// ServerRetries counts attempts the queue retried after a runner
	// failure; BadGatewayAfterAccept accepted submits answered with an
	// nginx 502; ConcurrencyLimited sync runs and streams refused with 429
	// at the account's concurrency limit.
	ServerRetries         int64 `json:"server_retries"`
	BadGatewayAfterAccept int64 `json:"bad_gateway_after_accept"`
	ConcurrencyLimited    int64 `json:"concurrency_limited"`

	// Billed counts app runs billed: runs that produced a result (an OK
	// output, including one whose cancel the app ignored), queue and sync
	// alike. Server errors, 499s and validation errors are not billed.
	Billed        int64            `json:"billed"`
	BilledByModel map[string]int64 `json:"billed_by_model"`

	// Gauges: requests waiting for a runner, running, and queue requests
	// still readable.
	Queued  int64 `json:"queued"`
	Running int64 `json:"running"`
	Jobs    int64 `json:"jobs"`
}

// Stats returns a snapshot of the counters.
func (s *Sim) Stats() Stats {
	st := Stats{
		Submits:               s.stats[cSubmits].Load(),
		StatusCalls:           s.stats[cStatusCalls].Load(),
		StatusStreams:         s.stats[cStatusStreams].Load(),
		ResultCalls:           s.stats[cResultCalls].Load(),
		Cancels:               s.stats[cCancels].Load(),
		SyncRuns:              s.stats[cSyncRuns].Load(),
		Streams:               s.stats[cStreams].Load(),
		Completed:             s.stats[cCompleted].Load(),
		Failed:                s.stats[cFailed].Load(),
		Cancelled:             s.stats[cCancelled].Load(),
		TimedOut:              s.stats[cTimedOut].Load(),
		WebhooksSent:          s.stats[cWebhooksSent].Load(),
		WebhooksFailed:        s.stats[cWebhooksFailed].Load(),
		WebhooksDropped:       s.stats[cWebhooksDropped].Load(),
		WebhooksDuplicated:    s.stats[cWebhooksDuplicated].Load(),
		WebhooksBadSignature:  s.stats[cWebhooksBadSignature].Load(),
		RateLimited:           s.stats[cRateLimited].Load(),
		ServerErrors:          s.stats[cServerErrors].Load(),
		Hung:                  s.stats[cHung].Load(),
		Unauthorized:          s.stats[cUnauthorized].Load(),
		ValidationErrors:      s.stats[cValidationErrors].Load(),
		NotFound:              s.stats[cNotFound].Load(),
		Files:                 s.stats[cFiles].Load(),
		ServerRetries:         s.stats[cServerRetries].Load(),
		BadGatewayAfterAccept: s.stats[cBadGatewayAfterAccept].Load(),
		ConcurrencyLimited:    s.stats[cConcurrencyLimited].Load(),
	}
	s.mu.Lock()
	st.SubmitsByModel = make(map[string]int64, len(s.submitsByModel))
	for k, v := range s.submitsByModel {
		st.SubmitsByModel[k] = v
	}
	st.BilledByModel = make(map[string]int64, len(s.billedByModel))
	for k, v := range s.billedByModel {
		st.BilledByModel[k] = v
	}
	st.Billed = s.billed
	st.Queued, st.Running, st.Jobs = s.queued, s.running, int64(len(s.jobs))
	s.mu.Unlock()
	return st
}

// RequestInfo is what the simulator knows of one queue request, served as
// JSON at GET /_sim/requests/{request_id}.
type RequestInfo struct {
	RequestID string `json:"request_id"`
	Model     string `json:"model"`
	// State is IN_QUEUE, IN_PROGRESS or COMPLETED.
	State string `json:"state"`
	// Attempts counts the attempts started (server-side retries included).
	Attempts int `json:"attempts"`
	// GatewayRequestIDs are the attempts' gateway_request_id, first to
	// last; the first is the request id.
	GatewayRequestIDs []string `json:"gateway_request_ids"`
	// Billed is how many times the request was billed (0 or 1).
	Billed int `json:"billed"`
	// Headers are the platform request headers the submit carried
	// (X-Fal-*, x-app-fal-disable-fallback), by lower-case name.
	Headers         map[string]string `json:"headers"`
	CancelRequested bool              `json:"cancel_requested"`
	// StatusCode is the result's HTTP status once COMPLETED, else 0.
	StatusCode int    `json:"status_code,omitempty"`
	ErrorType  string `json:"error_type,omitempty"`
	Webhook    bool   `json:"webhook"`
}

// Request returns what the simulator knows of a queue request, and false
// if it has none (unknown, expired or forgotten by a Reset). Sync runs are
// not queue requests.
func (s *Sim) Request(id string) (RequestInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[id]
	if j == nil {
		return RequestInfo{}, false
	}
	info := RequestInfo{
		RequestID: j.id, Model: j.ms.m.id, State: j.state.String(), Attempts: j.attempts,
		GatewayRequestIDs: append([]string{j.id}, j.gateways...),
		Billed:            j.billed, Headers: make(map[string]string, len(j.headers)),
		CancelRequested: j.cancelReq, Webhook: j.webhookURL != "",
	}
	for k, v := range j.headers {
		info.Headers[k] = v
	}
	if j.result != nil {
		info.StatusCode, info.ErrorType = j.result.code, j.result.errorType
	}
	return info, true
}

// Billed is how many times the request with this id (queue or sync) was
// billed; it still answers after the request expired, until a Reset.
func (s *Sim) Billed(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.billedByID[id]
}
