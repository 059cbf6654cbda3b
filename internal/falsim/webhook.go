package falsim

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Webhook headers (fal-protocol §5.2).
const (
	HeaderWebhookRequestID = "X-Fal-Webhook-Request-Id" // the queue request id (or the last gateway id, see "_sim.sign_gateway_id")
	HeaderWebhookUserID    = "X-Fal-Webhook-User-Id"    // the submitting key's id
	HeaderWebhookTimestamp = "X-Fal-Webhook-Timestamp"  // Unix seconds at sending
	HeaderWebhookSignature = "X-Fal-Webhook-Signature"  // hex Ed25519 signature
)

// delivery is one webhook to send, with its retry state. A delivery is
// owned by one sender (or the timer heap) at a time.
type delivery struct {
	epoch     uint64
	url       string
	requestID string
	gatewayID string // the last attempt's gateway_request_id
	signedID  string // X-Fal-Webhook-Request-Id: requestID, or gatewayID
	userID    string
	code      int    // the result's HTTP status
	payload   []byte // the result body, compact JSON
	body      []byte // the webhook body, built by the first attempt
	badSig    bool
	attempt   int       // attempts made so far
	until     time.Time // the stored result's expiry: no retries after it
}

// webhookFor applies the webhook faults to a completed job and queues its
// delivery (or deliveries). Callers hold s.mu.
func (s *Sim) webhookFor(j *job, now time.Time) {
	s.fmu.Lock()
	f := s.faults
	drop := f.WebhookDropRate > 0 && s.frng.Float64() < f.WebhookDropRate
	dup := f.WebhookDuplicateRate > 0 && s.frng.Float64() < f.WebhookDuplicateRate
	bad := f.WebhookBadSignatureRate > 0 && s.frng.Float64() < f.WebhookBadSignatureRate
	s.fmu.Unlock()
	if drop {
		s.count(cWebhooksDropped)
		s.log.Debug("webhook dropped by fault", "request_id", j.id)
		return
	}
	copies := 1
	if dup {
		copies = 2
		s.count(cWebhooksDuplicated)
	}
	if bad {
		s.count(cWebhooksBadSignature)
	}
	for range copies {
		d := &delivery{
			epoch: s.epoch, url: j.webhookURL, requestID: j.id, gatewayID: j.lastGateway(),
			userID: j.userID, code: j.result.code, payload: j.result.body, badSig: bad,
			until: now.Add(s.retention(j, j.result)),
		}
		d.signedID = d.requestID
		if j.signGatewayID {
			d.signedID = d.gatewayID
		}
		if f.WebhookDelay > 0 {
			s.schedule(&event{when: now.Add(f.WebhookDelay), kind: evWebhook, del: d})
		} else {
			s.enqueueDelivery(d)
		}
	}
}

// enqueueDelivery hands a delivery to the sender pool. It never blocks, so
// the engine can call it under s.mu.
func (s *Sim) enqueueDelivery(d *delivery) {
	s.whMu.Lock()
	s.whQueue = append(s.whQueue, d)
	s.whMu.Unlock()
	select {
	case s.whSignal <- struct{}{}:
	default:
	}
}

func (s *Sim) nextDelivery() *delivery {
	s.whMu.Lock()
	defer s.whMu.Unlock()
	if len(s.whQueue) == 0 {
		return nil
	}
	d := s.whQueue[0]
	s.whQueue[0] = nil
	s.whQueue = s.whQueue[1:]
	if len(s.whQueue) > 0 {
		// The signal channel holds one token; pass it on so that a burst
		// spreads over the pool instead of draining through one sender.
		select {
		case s.whSignal <- struct{}{}:
		default:
		}
	}
	return d
}

// sender is one of the fixed pool of webhook goroutines.
func (s *Sim) sender() {
	defer s.wg.Done()
	for {
		d := s.nextDelivery()
		if d == nil {
			select {
			case <-s.whSignal:
				continue
			case <-s.closing:
				return
			}
		}
		s.deliver(d)
	}
}

// deliver makes one attempt and, on failure, schedules the next on the
// timer heap with a doubling delay.
func (s *Sim) deliver(d *delivery) {
	if d.epoch != s.curEpoch.Load() {
		return
	}
	if d.body == nil {
		d.body = webhookBody(d.requestID, d.gatewayID, d.code, d.payload)
	}
	d.attempt++
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sig := ed25519.Sign(s.priv, webhookMessage(d.signedID, d.userID, ts, d.body))
	if d.badSig {
		sig[0] ^= 0xff
	}
	ok := false
	timeout := s.cfg.WebhookTimeout
	if d.attempt > 1 {
		timeout = s.cfg.WebhookRetryTimeout
	}
	ctx, cancel := context.WithTimeout(s.whCtx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(d.body))
	if err == nil {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("User-Agent", "falsim-webhook/1")
		req.Header.Set(HeaderWebhookRequestID, d.signedID)
		req.Header.Set(HeaderWebhookUserID, d.userID)
		req.Header.Set(HeaderWebhookTimestamp, ts)
		req.Header.Set(HeaderWebhookSignature, hex.EncodeToString(sig))
		var resp *http.Response
		resp, err = s.whClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			_ = resp.Body.Close()
			ok = resp.StatusCode >= 200 && resp.StatusCode < 300
		}
	}
	if s.whCtx.Err() != nil || d.epoch != s.curEpoch.Load() {
		return // closing or reset: this attempt counts for nobody
	}
	if ok {
		s.count(cWebhooksSent)
		s.log.Debug("webhook delivered", "request_id", d.requestID, "attempt", d.attempt)
		return
	}
	s.count(cWebhooksFailed)
	if d.attempt > s.cfg.WebhookRetries {
		s.log.Warn("webhook gave up", "request_id", d.requestID, "attempt", d.attempt, "err", err)
		return
	}
	// fal backs off: the delay doubles, capped at 30m (times the time
	// scale), so that 10 retries span about 2 hours.
	ceiling := max(time.Duration(float64(webhookRetryDelayMax)*s.cfg.WebhookTimeScale), s.cfg.WebhookRetryDelay)
	delay := s.cfg.WebhookRetryDelay
	for i := 1; i < d.attempt && delay < ceiling; i++ {
		delay *= 2
	}
	delay = min(delay, ceiling)
	if time.Now().Add(delay).After(d.until) {
		// fal backs off until the stored result expires, no longer.
		s.log.Warn("webhook gave up: result expired", "request_id", d.requestID, "attempt", d.attempt, "err", err)
		return
	}
	s.log.Debug("webhook failed, will retry", "request_id", d.requestID, "attempt", d.attempt, "retry_in", delay, "err", err)
	s.mu.Lock()
	if d.epoch == s.epoch {
		s.schedule(&event{when: time.Now().Add(delay), kind: evWebhook, del: d})
	}
	s.mu.Unlock()
}

// webhookMessage is the signed message of fal-protocol §5.2.
func webhookMessage(requestID, userID, ts string, body []byte) []byte {
	sum := sha256.Sum256(body)
	msg := make([]byte, 0, len(requestID)+len(userID)+len(ts)+3+64)
	msg = append(msg, requestID...)
	msg = append(msg, '\n')
	msg = append(msg, userID...)
	msg = append(msg, '\n')
	msg = append(msg, ts...)
	msg = append(msg, '\n')
	return hex.AppendEncode(msg, sum[:])
}

// webhookBody is the §5.1 body, serialised as fal's Python service does
// (json.dumps with sort_keys: keys sorted at every level, ", " and ": "
// separators, non-ASCII escaped), because the signature covers these exact
// bytes and clients must not assume Go's key order or spacing.
func webhookBody(requestID, gatewayID string, code int, payload []byte) []byte {
	status, errField := "OK", "null"
	if code < 200 || code >= 300 {
		status = "ERROR"
		errField = `"Invalid status code: ` + strconv.Itoa(code) + `"`
	}
	b := make([]byte, 0, len(payload)+len(payload)/8+200)
	b = append(b, `{"error": `...)
	b = append(b, errField...)
	b = append(b, `, "gateway_request_id": `...)
	b = strconv.AppendQuote(b, gatewayID)
	b = append(b, `, "payload": `...)
	if len(payload) == 0 {
		b = append(b, "null"...)
	} else {
		b = pyJSON(b, sortedJSON(payload))
	}
	b = append(b, `, "request_id": `...)
	b = strconv.AppendQuote(b, requestID)
	b = append(b, `, "status": "`...)
	b = append(b, status...)
	return append(b, `"}`...)
}

// sortedJSON re-encodes JSON with every object's keys sorted (Go sorts map
// keys), numbers kept as written. Input it cannot read is returned as is.
func sortedJSON(src []byte) []byte {
	dec := json.NewDecoder(bytes.NewReader(src))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return src
	}
	return mustMarshal(v)
}

// pyJSON appends compact JSON re-spaced as Python's json.dumps writes it by
// default: ", " and ": " separators outside strings, and every non-ASCII
// character escaped as \uXXXX (ensure_ascii), surrogate pairs included.
func pyJSON(dst, src []byte) []byte {
	const hexDigits = "0123456789abcdef"
	inStr, esc := false, false
	for i := 0; i < len(src); {
		c := src[i]
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			case c >= utf8.RuneSelf:
				r, size := utf8.DecodeRune(src[i:])
				units := []rune{r}
				if r1, r2 := utf16.EncodeRune(r); r1 != utf8.RuneError {
					units = []rune{r1, r2}
				}
				for _, u := range units {
					dst = append(dst, '\\', 'u', hexDigits[u>>12&0xf], hexDigits[u>>8&0xf], hexDigits[u>>4&0xf], hexDigits[u&0xf])
				}
				i += size
				continue
			}
			dst = append(dst, c)
			i++
			continue
		}
		switch c {
		case '"':
			inStr = true
			dst = append(dst, c)
		case ',':
			dst = append(dst, ',', ' ')
		case ':':
			dst = append(dst, ':', ' ')
		case ' ', '\t', '\n', '\r':
		default:
			dst = append(dst, c)
		}
		i++
	}
	return dst
}
