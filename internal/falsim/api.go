package falsim

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Response headers (fal-protocol §4).
const (
	HeaderRequestID          = "X-Fal-Request-Id"           // on every response but nginx errors
	HeaderErrorType          = "X-Fal-Error-Type"           // the error_type of a failed result
	HeaderRequestTimeoutType = "X-Fal-Request-Timeout-Type" // "user" on start-timeout 504s
	HeaderRetryable          = "X-Fal-Retryable"            // "false" on the model errors of "_sim.fail"
)

// ServeHTTP serves the whole API. URLs in responses (status_url, file URLs)
// are built from r.Host with the http scheme, so the simulator works behind
// any address it is reached at.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := parseRoute(r.Method, r.URL.Path)
	rid := rt.requestID
	if rid == "" {
		rid = newRequestID()
	}
	w.Header().Set(HeaderRequestID, rid)
	select {
	case <-s.closing:
		writeDetail(w, http.StatusServiceUnavailable, "Simulator is shutting down")
		return
	default:
	}

	switch rt.kind {
	case routeNotFound:
		s.count(cNotFound)
		writeDetail(w, http.StatusNotFound, "Not Found")
		return
	case routeMethodNotAllowed:
		w.Header().Set("Allow", rt.allow)
		writeDetail(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	case routeJWKS, routeJWKSAlpha:
		s.serveJWKS(w, rt.kind)
		return
	case routeFiles:
		s.serveFile(w, r, rt.file)
		return
	case routeStats:
		writeJSON(w, http.StatusOK, mustMarshal(s.Stats()))
		return
	case routeReset:
		s.Reset()
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
		return
	case routeFaults:
		s.serveFaults(w, r)
		return
	case routeSimRequest:
		info, ok := s.Request(rt.requestID)
		if !ok {
			writeDetail(w, http.StatusNotFound, "Request not found")
			return
		}
		writeJSON(w, http.StatusOK, mustMarshal(info))
		return
	}

	userID, ok := s.authorize(r)
	if !ok {
		s.count(cUnauthorized)
		writeDetail(w, http.StatusUnauthorized, "No user found for Key ID and Secret")
		return
	}
	if rt.kind == routePricing {
		s.servePricing(w, r)
		return
	}
	if s.injectFaults(w, r) {
		return
	}
	switch rt.kind {
	case routeSubmit:
		s.handleSubmit(w, r, rt, rid, userID)
	case routeStatus:
		s.handleStatus(w, r, rt)
	case routeStatusStream:
		s.handleStatusStream(w, r, rt)
	case routeResult:
		s.handleResult(w, rt)
	case routeCancel:
		s.handleCancel(w, rt)
	case routeRun:
		s.handleRun(w, r, rt, rid, false)
	case routeRunStream:
		s.handleRun(w, r, rt, rid, true)
	}
}

// newRequestID is a random UUIDv4. math/rand/v2's global source is a
// per-thread ChaCha8, fast and lock-free, and ids need only be unique.
func newRequestID() string {
	var b [16]byte
	hi, lo := mrand.Uint64(), mrand.Uint64()
	for i := range 8 {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// parseKey splits "id:secret" on the first colon.
func parseKey(k string) (id string, ok bool) {
	id, secret, found := strings.Cut(strings.TrimSpace(k), ":")
	return id, found && id != "" && secret != ""
}

func redactKey(k string) string {
	if id, _, found := strings.Cut(k, ":"); found {
		return id + ":****"
	}
	return "****"
}

// authorize checks "Authorization: Key id:secret" and returns the key id,
// which stands in for the fal user id in webhook headers.
func (s *Sim) authorize(r *http.Request) (string, bool) {
	scheme, cred, found := strings.Cut(r.Header.Get("Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Key") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	id, ok := parseKey(cred)
	if !ok {
		return "", false
	}
	if s.keys != nil {
		if _, known := s.keys[cred]; !known {
			return "", false
		}
	}
	return id, true
}

// nginx pages, as fal's ingress sends them (no x-fal-request-id).
const (
	nginx502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	nginx503 = "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)

// injectFaults applies the faults in force to an API call. It reports true
// if it answered the call (or hung it), in which case nothing else happens:
// in particular a rejected submit creates no job.
func (s *Sim) injectFaults(w http.ResponseWriter, r *http.Request) bool {
	s.fmu.Lock()
	f := s.faults
	hang := f.HangRate > 0 && s.frng.Float64() < f.HangRate
	limited := f.RateLimitRate > 0 && s.frng.Float64() < f.RateLimitRate
	failed := f.ServerErrorRate > 0 && s.frng.Float64() < f.ServerErrorRate
	kind := s.frng.IntN(4)
	s.fmu.Unlock()

	if f.AddedLatency > 0 && !s.sleep(r, f.AddedLatency) {
		return true
	}
	switch {
	case hang:
		s.count(cHung)
		select {
		case <-r.Context().Done():
			return true
		case <-s.closing:
			// Drop the connection, as a gateway that never answered would.
			panic(http.ErrAbortHandler)
		}
	case limited:
		s.count(cRateLimited)
		if f.RetryAfter > 0 {
			w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(f.RetryAfter.Seconds())), 10))
		}
		writeDetail(w, http.StatusTooManyRequests, "Rate limit exceeded: too many concurrent requests")
		return true
	case failed:
		s.count(cServerErrors)
		switch kind {
		case 0:
			writeOutcome(w, requestError(http.StatusInternalServerError, "Internal server error", "internal_error"))
		case 1:
			writeOutcome(w, requestError(http.StatusServiceUnavailable, "Runner scheduling failure", "runner_scheduling_failure"))
		default:
			page, code := nginx502, http.StatusBadGateway
			if kind == 3 {
				page, code = nginx503, http.StatusServiceUnavailable
			}
			writeNginx(w, code, page)
		}
		return true
	}
	return false
}

// writeNginx answers as fal's ingress does: an HTML page, no x-fal-request-id.
func writeNginx(w http.ResponseWriter, code int, page string) {
	h := w.Header()
	h.Del(HeaderRequestID)
	h.Set("Content-Type", "text/html")
	h.Set("Server", "nginx")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, page)
}

// sleep waits d, reporting false if the client left or the Sim closed first.
func (s *Sim) sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.closing:
		return false
	}
}

func writeJSON(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// writeDetail writes a {"detail": "..."} body (fal-protocol §7.1 C).
func writeDetail(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, mustMarshal(struct {
		Detail string `json:"detail"`
	}{msg}))
}

// writeOutcome writes a result: status, error headers, body.
func writeOutcome(w http.ResponseWriter, o *outcome) {
	if o.errorType != "" {
		w.Header().Set(HeaderErrorType, o.errorType)
	}
	if o.timeoutType != "" {
		w.Header().Set(HeaderRequestTimeoutType, o.timeoutType)
	}
	if o.final {
		w.Header().Set(HeaderRetryable, "false")
	}
	writeJSON(w, o.code, o.body)
}

// readInput reads a request body, answering 413 if it is too large.
func readInput(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeDetail(w, http.StatusRequestEntityTooLarge, "Request body too large")
		} else {
			writeDetail(w, http.StatusBadRequest, "Could not read request body")
		}
		return nil, false
	}
	return body, true
}

// startTimeout reads X-Fal-Request-Start-Timeout (which wins) or
// X-Fal-Request-Timeout: decimal seconds before the request must start.
func startTimeout(r *http.Request) (time.Duration, error) {
	v := r.Header.Get("X-Fal-Request-Start-Timeout")
	name := "X-Fal-Request-Start-Timeout"
	if v == "" {
		v, name = r.Header.Get("X-Fal-Request-Timeout"), "X-Fal-Request-Timeout"
	}
	if v == "" {
		return 0, nil
	}
	secs, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil || !(secs > 0) || secs > 86400*7 {
		return 0, fmt.Errorf("invalid %s header %q: must be a positive number of seconds", name, v)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

func laneOf(r *http.Request) int {
	if strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Fal-Queue-Priority")), "low") {
		return laneLow
	}
	return laneNormal
}

// platformHeaders are the request headers of fal's common parameters
// (fal-protocol §4, §11) that the simulator records per request.
var platformHeaders = []string{
	"X-Fal-Request-Timeout", "X-Fal-Request-Start-Timeout", "X-Fal-Queue-Priority",
	"X-Fal-Object-Lifecycle-Preference", "X-App-Fal-Disable-Fallback", "X-Fal-Disable-Fallbacks",
	"X-Fal-Store-Io", "X-Fal-No-Retry", "X-Fal-Runner-Hint", "X-Fal-Retry-Config",
}

// receivedHeaders returns the platform headers r carries, by lower-case
// name, or nil if none.
func receivedHeaders(r *http.Request) map[string]string {
	var out map[string]string
	for _, name := range platformHeaders {
		if v := r.Header.Values(name); len(v) > 0 {
			if out == nil {
				out = make(map[string]string, 4)
			}
			out[strings.ToLower(name)] = strings.Join(v, ", ")
		}
	}
	return out
}

// headerOff reports whether a boolean-ish header value says no.
func headerOff(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "0", "false", "no", "off":
		return true
	}
	return false
}

// headerOn reports whether a boolean-ish header value says yes.
func headerOn(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// mediaLifetime reads X-Fal-Object-Lifecycle-Preference's
// expiration_duration_seconds: how long a request's output media stay
// served. It returns 0 (never expire) when the header is absent or not an
// object with a positive number there; fal's other fields (initial_acl)
// are recorded with the header but not enforced.
func mediaLifetime(v string) time.Duration {
	if v == "" {
		return 0
	}
	var pref struct {
		Seconds *float64 `json:"expiration_duration_seconds"`
	}
	if err := json.Unmarshal([]byte(v), &pref); err != nil || pref.Seconds == nil || !(*pref.Seconds > 0) || *pref.Seconds > 100*365*86400 {
		return 0
	}
	return time.Duration(*pref.Seconds * float64(time.Second))
}

// validationRunTime bounds how long an app takes to reject an invalid
// input it was handed by the queue.
const validationRunTime = 20 * time.Millisecond

// prepare does the request work that needs no lock: model lookup, input
// validation, headers, and the plan (run time and outcomes). It answers the
// call itself and returns nil when the request is rejected. An invalid input
// is rejected with a 422 only on sync runs and streams, and on queue submits
// of a Lenient Sim; otherwise the job is made and the 422 is its result, as
// fal's queue validates asynchronously.
func (s *Sim) prepare(w http.ResponseWriter, r *http.Request, rt route, rid string, queue, stream bool) (*job, time.Duration) {
	m, ok := catalog[rt.model]
	if !ok {
		s.count(cNotFound)
		writeDetail(w, http.StatusNotFound, fmt.Sprintf("Application '%s' not found", rt.model))
		return nil, 0
	}
	if stream && !m.streams {
		s.count(cNotFound)
		writeDetail(w, http.StatusNotFound, "Not Found")
		return nil, 0
	}
	body, ok := readInput(w, r)
	if !ok {
		return nil, 0
	}
	timeout, err := startTimeout(r)
	if err != nil {
		writeOutcome(w, requestError(http.StatusBadRequest, err.Error(), "bad_request"))
		return nil, 0
	}
	p, details := m.validate(body)
	if details != nil {
		s.count(cValidationErrors)
		if !queue || s.cfg.Lenient {
			writeJSON(w, http.StatusUnprocessableEntity, detailBody(details))
			return nil, 0
		}
	}

	s.mu.Lock()
	ms := s.models[m.id]
	runTime := s.cfg.Latency
	if runTime <= 0 {
		runTime = m.latency
	}
	if s.cfg.Jitter > 0 {
		runTime = time.Duration(float64(runTime) * (1 + s.cfg.Jitter*(2*s.rng.Float64()-1)))
	}
	seed := s.rng.Uint64() // 64 bits: above 2^63 half the time, as fal's are
	s.mu.Unlock()
	if p.ctl.hasLatency {
		runTime = p.ctl.latency // exact, for deterministic tests
	}

	j := &job{
		id: rid, ms: ms, base: "http://" + r.Host, lane: laneOf(r), runTime: runTime, nImages: p.numImages,
		honours: m.HonoursCancel, headers: receivedHeaders(r), signGatewayID: p.ctl.signGatewayID,
		storeIO: !headerOff(r.Header.Get("X-Fal-Store-IO")), noRetry: headerOn(r.Header.Get("X-Fal-No-Retry")),
		mediaTTL: mediaLifetime(r.Header.Get("X-Fal-Object-Lifecycle-Preference")),
	}
	switch p.ctl.cancel {
	case CancelHonour:
		j.honours = true
	case CancelIgnore:
		j.honours = false
	}
	switch {
	case details != nil:
		j.planned = &outcome{code: http.StatusUnprocessableEntity, body: detailBody(details), final: true}
		if !p.ctl.hasLatency {
			j.runTime = min(runTime, validationRunTime)
		}
	default:
		j.planned = &outcome{code: http.StatusOK, body: m.output(p, outputBuilder{base: j.base, requestID: rid, seed: seed, runTime: runTime})}
		if p.ctl.fail != "" {
			j.fail, j.failAttempts = failOutcome(p.ctl.fail, p.prompt), p.ctl.failAttempts
		}
	}
	return j, timeout
}

type submitResponse struct {
	Status           string `json:"status"`
	RequestID        string `json:"request_id"`
	GatewayRequestID string `json:"gateway_request_id"`
	ResponseURL      string `json:"response_url"`
	StatusURL        string `json:"status_url"`
	CancelURL        string `json:"cancel_url"`
	QueuePosition    int    `json:"queue_position"`
}

func (s *Sim) handleSubmit(w http.ResponseWriter, r *http.Request, rt route, rid, userID string) {
	q := r.URL.Query()
	var hook string
	if raw := q.Get("fal_webhook"); raw != "" {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			writeOutcome(w, requestError(http.StatusBadRequest, "fal_webhook must be an absolute http(s) URL", "bad_request"))
			return
		}
		hook = raw
	}
	maxQueue := -1
	if raw := q.Get("fal_max_queue_length"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 0 {
			writeOutcome(w, requestError(http.StatusBadRequest, "fal_max_queue_length must be a non-negative integer", "bad_request"))
			return
		}
		maxQueue = n
	}
	j, timeout := s.prepare(w, r, rt, rid, true, false)
	if j == nil {
		return
	}
	j.webhookURL, j.userID = hook, userID

	s.mu.Lock()
	if ms := s.models[j.ms.m.id]; maxQueue >= 0 && ms.lanes[laneNormal].len()+ms.lanes[laneLow].len() >= maxQueue {
		s.mu.Unlock()
		s.count(cRateLimited)
		writeOutcome(w, requestError(http.StatusTooManyRequests, fmt.Sprintf("Queue is longer than fal_max_queue_length=%d", maxQueue), "queue_full"))
		return
	}
	now := time.Now()
	s.jobs[j.id] = j
	s.enqueue(j, timeout, now)
	pos := 0
	if j.state == stateQueued {
		pos = j.ms.position(j)
	}
	s.submitsByModel[rt.model]++
	s.mu.Unlock()
	s.count(cSubmits)
	s.log.Debug("submit", "request_id", j.id, "model_id", rt.model, "queue_position", pos)

	s.fmu.Lock()
	badGateway := s.faults.BadGatewayAfterAcceptRate > 0 && s.frng.Float64() < s.faults.BadGatewayAfterAcceptRate
	s.fmu.Unlock()
	if badGateway {
		// The job is made and runs; only its answer is lost at the ingress.
		s.count(cBadGatewayAfterAccept)
		writeNginx(w, http.StatusBadGateway, nginx502)
		return
	}

	resp := submitResponse{Status: "IN_QUEUE", RequestID: j.id, GatewayRequestID: j.id, QueuePosition: pos}
	resp.ResponseURL, resp.StatusURL, resp.CancelURL = queueURLs(j)
	writeJSON(w, http.StatusOK, mustMarshal(resp))
}

func queueURLs(j *job) (response, status, cancel string) {
	response = j.base + "/" + j.ms.m.app + "/requests/" + j.id
	return response, response + "/status", response + "/cancel"
}

// lookup finds a queue request by app id and request id.
func (s *Sim) lookup(rt route) *job {
	j := s.jobs[rt.requestID]
	if j == nil || j.ms.m.app != rt.app {
		return nil
	}
	return j
}

// logEntry is a status log line (fal-protocol §3.2).
type logEntry struct {
	Message   string `json:"message"`
	Level     string `json:"level"`
	Source    string `json:"source"`
	Timestamp string `json:"timestamp"`
}

// logPlan is the scripted log of a run: (fraction of run time, message).
// Lines are derived from the start time when read, so logs cost nothing
// per job until someone asks for them.
func logPlan(j *job) []struct {
	at  float64
	msg string
} {
	plan := []struct {
		at  float64
		msg string
	}{{0, "Loading model weights for " + j.ms.m.id}, {0.1, "Model loaded, starting inference"}}
	n := max(j.nImages, 1)
	for i := range n {
		plan = append(plan, struct {
			at  float64
			msg string
		}{0.2 + 0.7*float64(i)/float64(n), fmt.Sprintf("Generating output %d/%d", i+1, n)})
	}
	return plan
}

// logsAt returns the log lines visible at now. Callers hold s.mu.
func logsAt(j *job, now time.Time) []logEntry {
	out := []logEntry{}
	if j.started.IsZero() {
		return out
	}
	end := now
	if j.state == stateCompleted {
		end = j.completed
	}
	for _, l := range logPlan(j) {
		at := j.started.Add(time.Duration(l.at * float64(j.runTime)))
		if at.After(end) {
			break
		}
		out = append(out, logEntry{Message: l.msg, Level: "INFO", Source: "USER", Timestamp: at.UTC().Format("2006-01-02T15:04:05.000000")})
	}
	if j.state == stateCompleted && j.result.ok() {
		out = append(out, logEntry{Message: fmt.Sprintf("Completed in %.2fs", j.completed.Sub(j.started).Seconds()), Level: "INFO", Source: "USER", Timestamp: j.completed.UTC().Format("2006-01-02T15:04:05.000000")})
	}
	return out
}

// nextLogAt is when the next log line appears for a running job (zero if
// none will before completion). Callers hold s.mu.
func nextLogAt(j *job, now time.Time) time.Time {
	if j.state != stateRunning {
		return time.Time{}
	}
	for _, l := range logPlan(j) {
		if at := j.started.Add(time.Duration(l.at * float64(j.runTime))); at.After(now) {
			return at
		}
	}
	return time.Time{}
}

type metrics struct {
	InferenceTime *float64 `json:"inference_time"`
}

type statusBody struct {
	Status        string     `json:"status"`
	RequestID     string     `json:"request_id"`
	ResponseURL   string     `json:"response_url"`
	StatusURL     string     `json:"status_url"`
	CancelURL     string     `json:"cancel_url"`
	QueuePosition *int       `json:"queue_position,omitempty"`
	Logs          []logEntry `json:"logs"`              // nil → null: the key is always present
	Metrics       any        `json:"metrics,omitempty"` // {} while IN_PROGRESS, as fal sends
	Error         string     `json:"error,omitempty"`
	ErrorType     string     `json:"error_type,omitempty"`
}

// statusOf renders j's status; logs are included from line skip on when
// withLogs. Callers hold s.mu.
func statusOf(j *job, now time.Time, withLogs bool, skip int) (statusBody, int) {
	b := statusBody{Status: j.state.String(), RequestID: j.id}
	b.ResponseURL, b.StatusURL, b.CancelURL = queueURLs(j)
	nlogs := 0
	if withLogs {
		all := logsAt(j, now)
		nlogs = len(all)
		b.Logs = all[min(skip, len(all)):]
	}
	switch j.state {
	case stateQueued:
		pos := j.ms.position(j)
		b.QueuePosition = &pos
	case stateRunning:
		b.Metrics = struct{}{}
	case stateCompleted:
		m := &metrics{}
		if !j.started.IsZero() {
			t := roundSeconds(j.completed.Sub(j.started))
			m.InferenceTime = &t
		}
		b.Metrics = m
		if !j.result.ok() {
			b.Error, b.ErrorType = j.result.errMsg, j.result.errorType
		}
	}
	return b, nlogs
}

// wantLogs reads ?logs=: fal-js sends 1/0, fal_client true/false.
func wantLogs(r *http.Request) bool {
	switch strings.ToLower(r.URL.Query().Get("logs")) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

func (s *Sim) handleStatus(w http.ResponseWriter, r *http.Request, rt route) {
	s.count(cStatusCalls)
	s.mu.Lock()
	j := s.lookup(rt)
	if j == nil {
		s.mu.Unlock()
		s.count(cNotFound)
		writeDetail(w, http.StatusNotFound, "Request not found")
		return
	}
	b, _ := statusOf(j, time.Now(), wantLogs(r), 0)
	s.mu.Unlock()
	code := http.StatusAccepted
	if b.Status == "COMPLETED" {
		code = http.StatusOK
	}
	writeJSON(w, code, mustMarshal(b))
}

// handleStatusStream sends a status event whenever something a client can
// see changes (state, queue position, new log lines), COMPLETED last. Every
// StatusPingInterval it sends a ": ping" comment as fal does, and repeats
// the IN_PROGRESS event of a running request.
func (s *Sim) handleStatusStream(w http.ResponseWriter, r *http.Request, rt route) {
	s.count(cStatusStreams)
	withLogs := wantLogs(r)
	s.mu.Lock()
	j := s.lookup(rt)
	s.mu.Unlock()
	if j == nil {
		s.count(cNotFound)
		writeDetail(w, http.StatusNotFound, "Request not found")
		return
	}
	sse := startSSE(w)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	ping := time.NewTicker(s.cfg.StatusPingInterval)
	defer ping.Stop()
	lastState, lastPos, sentLogs := "", -1, 0
	repeat := false
	for {
		s.mu.Lock()
		now := time.Now()
		b, nlogs := statusOf(j, now, withLogs, sentLogs)
		changed := j.changed()
		nextLog := nextLogAt(j, now)
		s.mu.Unlock()
		pos := -1
		if b.QueuePosition != nil {
			pos = *b.QueuePosition
		}
		if b.Status != lastState || pos != lastPos || len(b.Logs) > 0 || (repeat && b.Status == "IN_PROGRESS") {
			if !sse.event(mustMarshal(b)) {
				return
			}
			lastState, lastPos, sentLogs = b.Status, pos, nlogs
		}
		repeat = false
		if b.Status == "COMPLETED" {
			return
		}
		var tick <-chan time.Time
		if withLogs && !nextLog.IsZero() {
			timer.Reset(time.Until(nextLog))
			tick = timer.C
		}
		select {
		case <-changed:
		case <-tick:
		case <-ping.C:
			if !sse.comment("ping") {
				return
			}
			repeat = true
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		}
	}
}

func (s *Sim) handleResult(w http.ResponseWriter, rt route) {
	s.count(cResultCalls)
	s.mu.Lock()
	j := s.lookup(rt)
	var o *outcome
	if j != nil {
		o = j.result
	}
	s.mu.Unlock()
	switch {
	case j == nil:
		s.count(cNotFound)
		writeDetail(w, http.StatusNotFound, "Request not found")
	case o == nil:
		writeDetail(w, http.StatusBadRequest, "Request is still in progress")
	default:
		writeOutcome(w, o)
	}
}

func (s *Sim) handleCancel(w http.ResponseWriter, rt route) {
	s.count(cCancels)
	s.mu.Lock()
	j := s.lookup(rt)
	cancelled := j != nil && s.requestCancel(j, time.Now())
	s.mu.Unlock()
	switch {
	case j == nil:
		s.count(cNotFound)
		writeJSON(w, http.StatusNotFound, []byte(`{"status":"NOT_FOUND"}`))
	case !cancelled:
		writeJSON(w, http.StatusBadRequest, []byte(`{"status":"ALREADY_COMPLETED"}`))
	default:
		writeJSON(w, http.StatusAccepted, []byte(`{"status":"CANCELLATION_REQUESTED"}`))
	}
}

// handleRun serves fal.run: the request takes a runner like a queued one
// (waiting for it if all are busy, bounded by the start timeout) and the
// connection stays open until the output is ready. A client that leaves
// cancels its run.
func (s *Sim) handleRun(w http.ResponseWriter, r *http.Request, rt route, rid string, stream bool) {
	j, timeout := s.prepare(w, r, rt, rid, false, stream)
	if j == nil {
		return
	}
	j.sync = true
	s.mu.Lock()
	if s.running >= int64(s.cfg.AccountConcurrency) {
		// fal.run checks the account's concurrency on arrival (§9, §11).
		s.mu.Unlock()
		s.count(cConcurrencyLimited)
		writeOutcome(w, concurrencyLimitOutcome)
		return
	}
	s.enqueue(j, timeout, time.Now())
	s.mu.Unlock()
	if stream {
		s.count(cStreams)
	} else {
		s.count(cSyncRuns)
	}

	// A stream's partial events start once it runs; a run that is going to
	// fail answers with an ordinary HTTP error instead of a stream.
	var sse *sseWriter
	var partials [][]byte
	sent := 0
	if stream && j.fail == nil && j.planned.ok() {
		partials = j.ms.m.partials()
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		state, started, o := j.state, j.started, j.result
		changed := j.changed()
		s.mu.Unlock()
		if state == stateCompleted {
			switch {
			case stream && o.ok():
				// Every stream carries its partials and then the output,
				// even when the run finished before this handler looked.
				if sse == nil {
					sse = startSSE(w)
				}
				for _, p := range partials[sent:] {
					sse.event(p)
				}
				sse.event(o.body)
			case sse != nil:
				sse.event(o.body) // failed after the stream began (cancel): the error is the last event
			default:
				writeOutcome(w, o)
			}
			return
		}
		var tick <-chan time.Time
		if state == stateRunning && sent < len(partials) {
			if sse == nil {
				sse = startSSE(w)
			}
			due := started.Add(j.runTime * time.Duration(sent+1) / time.Duration(len(partials)+1))
			if wait := time.Until(due); wait <= 0 {
				if !sse.event(partials[sent]) {
					s.abandon(j)
					return
				}
				sent++
				continue
			} else {
				timer.Reset(wait)
				tick = timer.C
			}
		}
		select {
		case <-changed:
		case <-tick:
		case <-r.Context().Done():
			s.abandon(j)
			return
		case <-s.closing:
			return
		}
	}
}

// abandon cancels a sync run whose client left, freeing its runner.
func (s *Sim) abandon(j *job) {
	s.mu.Lock()
	s.cancel(j, time.Now())
	s.mu.Unlock()
}

// sseWriter writes server-sent events, flushing each one.
type sseWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

func startSSE(w http.ResponseWriter) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	if f != nil {
		f.Flush()
	}
	return &sseWriter{w: w, f: f}
}

// comment writes one ": text" comment line, as SSE keep-alives are; false
// means the client is gone.
func (e *sseWriter) comment(text string) bool {
	if _, err := io.WriteString(e.w, ": "+text+"\n\n"); err != nil {
		return false
	}
	if e.f != nil {
		e.f.Flush()
	}
	return true
}

// event writes one "data:" event; false means the client is gone.
func (e *sseWriter) event(data []byte) bool {
	buf := make([]byte, 0, len(data)+8)
	buf = append(buf, "data: "...)
	buf = append(buf, data...)
	buf = append(buf, '\n', '\n')
	if _, err := e.w.Write(buf); err != nil {
		return false
	}
	if e.f != nil {
		e.f.Flush()
	}
	return true
}

// serveFile serves the generated media by extension.
func (s *Sim) serveFile(w http.ResponseWriter, r *http.Request, name string) {
	if s.mediaExpired(name, time.Now()) {
		s.count(cNotFound)
		writeDetail(w, http.StatusNotFound, "File not found")
		return
	}
	var data []byte
	var ctype string
	switch ext := strings.ToLower(name[strings.LastIndexByte(name, '.')+1:]); ext {
	case "png", "jpg", "jpeg":
		w, h := imageFileSize(name)
		data, ctype = imageBytes(w, h, ext != "png"), "image/png"
		if ext != "png" {
			ctype = "image/jpeg"
		}
	case "mp4":
		data, ctype = mp4Bytes(), "video/mp4"
	default:
		s.count(cNotFound)
		writeDetail(w, http.StatusNotFound, "File not found")
		return
	}
	s.count(cFiles)
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "public, max-age=86400")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(data))
}

// serveJWKS serves the webhook key set at the current host's path or the
// old (alpha) host's, where x is "="-padded; Faults.JWKSDown makes one of
// them answer 503.
func (s *Sim) serveJWKS(w http.ResponseWriter, kind routeKind) {
	down := s.Faults().JWKSDown
	if (kind == routeJWKS && down == JWKSDownCurrent) || (kind == routeJWKSAlpha && down == JWKSDownAlpha) {
		writeNginx(w, http.StatusServiceUnavailable, nginx503)
		return
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	if kind == routeJWKSAlpha {
		writeJSON(w, http.StatusOK, s.jwksAlpha)
		return
	}
	writeJSON(w, http.StatusOK, s.jwks)
}

// maxPricingIDs is the Platform API's limit on endpoint ids per call.
const maxPricingIDs = 50

type price struct {
	EndpointID string  `json:"endpoint_id"`
	UnitPrice  float64 `json:"unit_price"`
	Unit       string  `json:"unit"`
	Currency   string  `json:"currency"`
}

// servePricing is the Platform API's GET /v1/models/pricing: the unit
// price of each requested endpoint the catalog holds (repeated or
// comma-separated endpoint_id); unknown ids are left out.
func (s *Sim) servePricing(w http.ResponseWriter, r *http.Request) {
	var ids []string
	seen := map[string]bool{}
	for _, v := range r.URL.Query()["endpoint_id"] {
		for _, id := range strings.Split(v, ",") {
			if id = strings.TrimSpace(id); id != "" && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 || len(ids) > maxPricingIDs {
		writeDetail(w, http.StatusBadRequest, fmt.Sprintf("endpoint_id: give 1 to %d endpoint ids", maxPricingIDs))
		return
	}
	out := struct {
		Prices     []price `json:"prices"`
		NextCursor *string `json:"next_cursor"`
		HasMore    bool    `json:"has_more"`
	}{Prices: []price{}}
	for _, id := range ids {
		if m, ok := catalog[id]; ok {
			out.Prices = append(out.Prices, price{EndpointID: id, UnitPrice: m.price, Unit: m.unit, Currency: "USD"})
		}
	}
	writeJSON(w, http.StatusOK, mustMarshal(out))
}

// mediaExpired reports whether a file (named "{word}/{request id}_{n}.ext"
// or "{word}/{request id}_{n}_{W}x{H}.ext" as outputs name them) belongs to
// a request whose media lifetime is over. Request ids have no '_'.
func (s *Sim) mediaExpired(name string, now time.Time) bool {
	base := name[strings.LastIndexByte(name, '/')+1:]
	i := strings.IndexByte(base, '_')
	if i <= 0 {
		return false
	}
	s.mu.Lock()
	until, ok := s.mediaUntil[base[:i]]
	s.mu.Unlock()
	return ok && !now.Before(until)
}

// serveFaults reads (GET) or replaces (PUT) the faults. PUT takes the whole
// Faults object: fields left out are zero, unknown fields are an error.
func (s *Sim) serveFaults(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut {
		body, ok := readInput(w, r)
		if !ok {
			return
		}
		var f Faults
		if err := f.UnmarshalJSON(body); err != nil {
			writeDetail(w, http.StatusBadRequest, "invalid faults: "+err.Error())
			return
		}
		if err := f.Validate(); err != nil {
			writeDetail(w, http.StatusBadRequest, err.Error())
			return
		}
		s.SetFaults(f)
		s.log.Info("faults changed", "faults", string(mustMarshal(f)))
	}
	writeJSON(w, http.StatusOK, mustMarshal(s.Faults()))
}
