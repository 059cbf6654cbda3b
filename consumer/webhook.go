package consumer

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// webhookWorkTimeout bounds the NATS work behind one webhook delivery. fal
// retries a delivery that fails, so giving up with a 503 loses nothing.
const webhookWorkTimeout = 10 * time.Second

// WebhookHandler returns the http.Handler for fal's webhook deliveries
// (POST on webhook.path). Mount it on the webhook listener.
//
// Answers: 200 when the delivery is done with (published, a duplicate, or
// for a job or request we do not know, so fal does not retry in a storm);
// 401 for a bad signature; 400 for a malformed body or job key; 413 over
// webhook.max_body_bytes; 503 when NATS trouble means fal should retry.
func (p *Pool) WebhookHandler() http.Handler {
	return http.HandlerFunc(p.serveWebhook)
}

func (p *Pool) serveWebhook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		webhookReply(w, http.StatusMethodNotAllowed, "method_not_allowed", "use POST")
		return
	}
	start := time.Now()
	p.metrics.webhook("received")
	if p.cfg.Webhook.Verify {
		// Cheap checks first: nobody gets us to buffer a body without
		// headers that could possibly verify.
		if err := checkSignatureHeaders(r.Header, start, p.cfg.Webhook.Tolerance); err != nil {
			p.rejectedWebhook(r, err)
			p.reply(w, http.StatusUnauthorized, "bad_signature", "signature verification failed")
			return
		}
	}
	if !p.webhookSlot(r.Context()) {
		// fal retries a 503: a flood of bodies waits at fal, not here.
		p.reply(w, http.StatusServiceUnavailable, "retry", "too many webhook deliveries in progress")
		return
	}
	defer func() { <-p.webhookBodies }()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, p.cfg.Webhook.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			p.reply(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body over %d bytes (webhook.max_body_bytes)", tooBig.Limit))
			return
		}
		p.reply(w, http.StatusBadRequest, "bad_body", "cannot read body")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), webhookWorkTimeout)
	defer cancel()

	signedID := ""
	if p.cfg.Webhook.Verify {
		if p.verifier == nil {
			p.reply(w, http.StatusServiceUnavailable, "no_verifier", "webhook verification is on but not configured")
			return
		}
		if signedID, err = p.verifier.Verify(ctx, r.Header, body); err != nil {
			if errors.Is(err, falclient.ErrJWKS) {
				// We could not fetch fal's keys: our problem, not the
				// sender's. fal retries a 5xx.
				p.log.Warn("webhook: cannot fetch signing keys", "err", err)
				p.reply(w, http.StatusServiceUnavailable, "retry", "signing keys unavailable")
				return
			}
			p.rejectedWebhook(r, err)
			p.reply(w, http.StatusUnauthorized, "bad_signature", "signature verification failed")
			return
		}
		p.metrics.webhook("verified")
	}
	wh, err := falclient.ParseWebhook(body)
	if err != nil {
		p.reply(w, http.StatusBadRequest, "bad_payload", err.Error())
		return
	}
	// fal does not document which id it signs after its own retries of a
	// run: the queue request id or the last attempt's gateway id. Either,
	// when it is the body's, is a correctly signed delivery.
	if signedID != "" && signedID != wh.RequestID && (wh.GatewayRequestID == "" || signedID != wh.GatewayRequestID) {
		p.reply(w, http.StatusUnauthorized, "bad_signature", "the signature is for another request id")
		return
	}
	if p.cfg.Webhook.Verify {
		p.lastWebhook.Store(time.Now().UnixNano())
	}
	if !wh.Terminal() {
		// Not a completion (fal documents only OK and ERROR): nothing to do.
		p.log.Debug("non-terminal webhook ignored", "request_id", wh.RequestID, "status", wh.Status)
		p.reply(w, http.StatusOK, "ignored", "")
		return
	}
	id := r.URL.Query().Get("job")
	if !publisher.ValidID(id) {
		p.reply(w, http.StatusBadRequest, "bad_job", "missing or invalid ?job= key")
		return
	}
	j, rev, ok := p.recent.get(id)
	if !ok {
		j, rev, err = p.store.get(ctx, id)
	}
	switch {
	case errors.Is(err, publisher.ErrJobNotFound):
		p.log.Warn("webhook for unknown job", "trigger_id", id, "request_id", wh.RequestID)
		p.reply(w, http.StatusOK, "unknown_job", "")
		return
	case err != nil:
		p.log.Warn("webhook: load job failed", "trigger_id", id, "err", err)
		p.reply(w, http.StatusServiceUnavailable, "retry", "job store unavailable")
		return
	}
	switch {
	case j.State == stateClaimed && j.RequestID == "" && !p.cfg.Webhook.Verify:
		// Unverified deliveries never settle an ambiguous claim.
		p.reply(w, http.StatusServiceUnavailable, "retry", "job not recorded yet")
		return
	case j.State == stateClaimed && j.RequestID == "" && j.Mode == publisher.ModeQueue:
		// fal accepted a submit whose answer we have not recorded: the
		// worker is still storing it, or it stopped in the ambiguous
		// window. The signed webhook names the job, so fal itself settles
		// the question: adopt its request id and end the job with its
		// outcome, never submitting it again.
		j.RequestID = wh.RequestID
		j.GatewayRequestID = wh.GatewayRequestID
		j.Webhook = true
		if j.SubmittedAt.IsZero() {
			j.SubmittedAt = j.ReceivedAt
		}
		p.log.Info("webhook settles a claimed job", "trigger_id", id, "request_id", wh.RequestID)
	case j.State == stateDone && j.RequestID == "":
		p.reply(w, http.StatusOK, "duplicate", "")
		return
	case j.RequestID != wh.RequestID:
		p.log.Warn("webhook for another request of this job", "trigger_id", id, "request_id", wh.RequestID, "job_request_id", j.RequestID)
		p.reply(w, http.StatusOK, "stale_request", "")
		return
	case j.State == stateDone:
		p.log.Debug("duplicate webhook", "trigger_id", id, "request_id", wh.RequestID)
		p.reply(w, http.StatusOK, "duplicate", "")
		return
	}
	var (
		res *publisher.Result
		f   *failure
	)
	switch {
	case wh.Status == falclient.WebhookOK && len(wh.Payload) > 0: // a JSON null payload is nil
		res = p.newResult(j, wh.Payload)
	case wh.Status == falclient.WebhookOK:
		f = &failure{Code: publisher.CodeFalError, Message: "fal reported success without a payload: " + wh.PayloadError}
	default:
		// Final, whatever its code: fal has already retried the run.
		ff := classify(wh.Err(), j.ModelID)
		if wh.PayloadError != "" {
			ff.Message += " (" + wh.PayloadError + ")"
		}
		f = &ff
	}
	published, err := p.finish(ctx, j, rev, res, f, viaWebhook)
	if err != nil {
		p.log.Warn("webhook: finish failed; fal will retry", "trigger_id", id, "err", err)
		p.reply(w, http.StatusServiceUnavailable, "retry", "could not publish")
		return
	}
	if published {
		p.metrics.webhookPublished(time.Since(start))
		p.reply(w, http.StatusOK, "published", "")
		return
	}
	p.reply(w, http.StatusOK, "duplicate", "")
}

// reply answers a webhook and counts its outcome.
func (p *Pool) reply(w http.ResponseWriter, code int, status, message string) {
	outcome := status
	switch status {
	case "bad_signature":
		outcome = "rejected"
	case "unknown_job", "stale_request":
		outcome = "unknown"
	case "too_large", "bad_body", "bad_payload", "bad_job", "no_verifier":
		outcome = "rejected"
	}
	p.metrics.webhook(outcome)
	webhookReply(w, code, status, message)
}

func webhookReply(w http.ResponseWriter, code int, status, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Status  string `json:"status"`
		Message string `json:"message,omitempty"`
	}{status, message})
}

// webhookBodiesInFlight bounds the webhook bodies being read and handled at
// once: each may be up to webhook.max_body_bytes.
const webhookBodiesInFlight = 64

// webhookSlotWait is how long a delivery waits for one of the
// webhookBodiesInFlight slots before it is told to come back. A delivery
// that waits holds a connection and a goroutine, not its body; fal gives a
// delivery 15 s. Refusing at once cost a full webhook round and fal's retry
// delay (1 s, doubling): make bench measured 24–77 % of deliveries refused
// with 256 senders and the last results seconds late. A 1 s wait was not
// enough on a loaded machine: one run of five had its deliveries refused
// five times over (1+2+4+8+16 s), half the results 31 s late.
const webhookSlotWait = 5 * time.Second

// webhookSlot takes a body slot, waiting up to p.webhookSlotWait; false when
// none freed in time or the request ended.
func (p *Pool) webhookSlot(ctx context.Context) bool {
	select {
	case p.webhookBodies <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(p.webhookSlotWait)
	defer t.Stop()
	select {
	case p.webhookBodies <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

// checkSignatureHeaders checks what can be checked of a delivery's
// signature before its body is read: the four headers are there, the
// timestamp is decimal Unix seconds within tolerance of now, and the
// signature is 64 bytes of hex. Verify checks all of it again, and the
// signature itself.
func checkSignatureHeaders(h http.Header, now time.Time, tolerance time.Duration) error {
	for _, name := range []string{falclient.HeaderWebhookRequestID, falclient.HeaderWebhookUserID, falclient.HeaderWebhookTimestamp, falclient.HeaderWebhookSignature} {
		if h.Get(name) == "" {
			return fmt.Errorf("missing header %s", name)
		}
	}
	ts, err := strconv.ParseInt(h.Get(falclient.HeaderWebhookTimestamp), 10, 64)
	if err != nil || ts < 0 {
		return errors.New("timestamp is not decimal Unix seconds")
	}
	if skew := now.Sub(time.Unix(ts, 0)); skew > tolerance || skew < -tolerance {
		return fmt.Errorf("timestamp is %s away from now, beyond ±%s", skew.Round(time.Second), tolerance)
	}
	if sig := h.Get(falclient.HeaderWebhookSignature); len(sig) != 2*ed25519.SignatureSize {
		return fmt.Errorf("signature has %d hex digits, want %d", len(sig), 2*ed25519.SignatureSize)
	} else if _, err := hex.DecodeString(sig); err != nil {
		return errors.New("signature is not hex")
	}
	return nil
}

// rejectedWebhook logs a rejected delivery, at most one line per
// rejectedLogEvery: a flood of bogus deliveries must not flood the logs. The
// metric falbridge_webhooks_total{outcome="rejected"} counts every one.
func (p *Pool) rejectedWebhook(r *http.Request, err error) {
	now := time.Now().UnixNano()
	last := p.lastRejectLog.Load()
	if now-last < int64(rejectedLogEvery) || !p.lastRejectLog.CompareAndSwap(last, now) {
		p.suppressedRejects.Add(1)
		return
	}
	p.log.Warn("webhook rejected: bad signature", "err", err, "remote", r.RemoteAddr,
		"suppressed_since_last", p.suppressedRejects.Swap(0))
}

// rejectedLogEvery is the least time between two log lines about rejected
// webhook deliveries.
const rejectedLogEvery = 10 * time.Second
