package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/falbridge/falbridge/internal/subject"
)

// Validate checks every key and returns all problems joined with errors.Join,
// or nil. Each problem is a [FieldError] wrapping [ErrInvalidValue] whose
// message starts with the dotted key: "limits.workers: must be ≥ 1 (got 0)".
// It also checks that files named by nats.creds_file, nats.nkey_seed_file and
// nats.tls.* exist. Risky but valid settings are not errors; see
// [Config.Warnings].
func (c *Config) Validate() error {
	v := &validator{}

	// nats
	n := &c.NATS
	v.natsURLs("nats.url", n.URL)
	v.positive("nats.connect_timeout", n.ConnectTimeout)
	v.listen("nats.embedded.listen", n.Embedded.Listen)
	v.natsAuth(n)
	v.file("nats.creds_file", n.CredsFile)
	v.file("nats.nkey_seed_file", n.NKeySeedFile)
	v.file("nats.tls.ca_file", n.TLS.CAFile)
	v.file("nats.tls.cert_file", n.TLS.CertFile)
	v.file("nats.tls.key_file", n.TLS.KeyFile)
	if n.TLS.CertFile != "" && n.TLS.KeyFile == "" {
		v.add("nats.tls.key_file", "required when nats.tls.cert_file is set")
	}
	if n.TLS.KeyFile != "" && n.TLS.CertFile == "" {
		v.add("nats.tls.cert_file", "required when nats.tls.key_file is set")
	}

	// streams
	s := &c.Streams
	if s.Replicas < 1 || s.Replicas > 5 {
		v.add("streams.replicas", "must be between 1 and 5 (got %d)", s.Replicas)
	}
	v.oneOf("streams.storage", s.Storage, StorageFile, StorageMemory)
	streamKeys := []struct{ key, name string }{
		{"streams.requests", s.Requests},
		{"streams.results", s.Results},
		{"streams.status", s.Status},
		{"streams.pending", s.Pending},
	}
	for i, sk := range streamKeys {
		v.name(sk.key, sk.name)
		for _, prev := range streamKeys[:i] {
			if sk.name != "" && sk.name == prev.name {
				v.add(sk.key, "must differ from %s (both %q)", prev.key, sk.name)
			}
		}
	}
	v.bucket("streams.jobs_bucket", s.JobsBucket)
	v.nonNegative("streams.results_max_age", s.ResultsMaxAge)
	v.nonNegative("streams.status_max_age", s.StatusMaxAge)
	v.nonNegative("streams.jobs_ttl", s.JobsTTL)
	v.nonNegative("streams.duplicate_window", s.DuplicateWindow)
	for _, ma := range []struct {
		key string
		d   time.Duration
	}{{"streams.results_max_age", s.ResultsMaxAge}, {"streams.status_max_age", s.StatusMaxAge}} {
		if ma.d > 0 && s.DuplicateWindow > ma.d {
			v.add("streams.duplicate_window", "must not exceed %s (%s > %s); the server rejects a stream whose duplicate window is longer than its max age",
				ma.key, formatDuration(s.DuplicateWindow), formatDuration(ma.d))
		}
	}
	if s.MaxTriggerBytes <= 0 {
		v.add("streams.max_trigger_bytes", "must be > 0 (got %d)", s.MaxTriggerBytes)
	}

	// subjects
	sub := &c.Subjects
	v.subject("subjects.requests", sub.Requests, true)
	prefixes := []struct{ key, prefix string }{
		{"subjects.results", sub.Results},
		{"subjects.errors", sub.Errors},
		{"subjects.status", sub.Status},
		{"subjects.cancel", sub.Cancel},
	}
	for i, p := range prefixes {
		if !v.subject(p.key, p.prefix, false) {
			continue
		}
		for _, prev := range prefixes[:i] {
			if p.prefix == prev.prefix {
				v.add(p.key, "must differ from %s (both %q)", prev.key, p.prefix)
			}
		}
		if subject.Valid(sub.Requests, true) && subject.Overlap(sub.Requests, p.prefix+".id") {
			v.add("subjects.requests", "%q also matches %s subjects (%q); triggers and events must not share subjects",
				sub.Requests, p.key, p.prefix+".<id>")
		}
	}

	v.resultSubjectAllow(c)

	// fal
	f := &c.Fal
	if f.Key.IsSet() {
		if msg := falKeyProblem(f.Key.Reveal()); msg != "" {
			v.add("fal.key", "%s", msg)
		}
	}
	v.httpURL("fal.queue_url", f.QueueURL, true)
	v.httpURL("fal.run_url", f.RunURL, true)
	if len(f.JWKSURLs) == 0 {
		v.add("fal.jwks_url", "required: one or more absolute http(s) URLs")
	}
	for _, u := range f.JWKSURLs {
		v.httpURL("fal.jwks_url", u, true)
	}
	v.httpURL("fal.platform_url", f.PlatformURL, true)
	v.positive("fal.request_timeout", f.RequestTimeout)
	if f.MaxAttempts < 1 {
		v.add("fal.max_attempts", "must be ≥ 1 (got %d)", f.MaxAttempts)
	}
	v.positive("fal.retry_initial", f.RetryInitial)
	if v.positive("fal.retry_max", f.RetryMax) && f.RetryInitial > 0 && f.RetryMax < f.RetryInitial {
		v.add("fal.retry_max", "must be ≥ fal.retry_initial (%s < %s)", formatDuration(f.RetryMax), formatDuration(f.RetryInitial))
	}

	// webhook
	w := &c.Webhook
	v.listen("webhook.listen", w.Listen)
	v.httpURL("webhook.public_url", w.PublicURL, false)
	if !strings.HasPrefix(w.Path, "/") {
		v.add("webhook.path", "must start with \"/\" (got %q)", w.Path)
	}
	for _, u := range w.JWKSURLs {
		v.httpURL("webhook.jwks_url", u, false)
	}
	v.positive("webhook.tolerance", w.Tolerance)
	if w.MaxBodyBytes <= 0 {
		v.add("webhook.max_body_bytes", "must be > 0 (got %d)", w.MaxBodyBytes)
	}

	// admin
	v.listen("admin.listen", c.Admin.Listen)
	if c.Admin.Console && !c.Admin.ConsoleToken.IsSet() {
		// The console shows triggers and results and can retry and cancel
		// jobs: beyond loopback it needs a credential.
		if host, _, err := net.SplitHostPort(c.Admin.Listen); err == nil && !isLoopback(host) {
			v.add("admin.console_token", "must be set when admin.console is on and admin.listen %q is not a loopback address", c.Admin.Listen)
		}
	}
	listeners := []struct{ key, addr string }{
		{"webhook.listen", w.Listen},
		{"admin.listen", c.Admin.Listen},
	}
	if n.URL == "" {
		listeners = append(listeners, struct{ key, addr string }{"nats.embedded.listen", n.Embedded.Listen})
	}
	for i, l := range listeners {
		for _, prev := range listeners[:i] {
			if listenersClash(l.addr, prev.addr) {
				v.add(l.key, "%q clashes with %s %q", l.addr, prev.key, prev.addr)
			}
		}
	}

	// limits
	l := &c.Limits
	if l.Workers < 1 {
		v.add("limits.workers", "must be ≥ 1 (got %d)", l.Workers)
	}
	if l.MaxInFlight < l.Workers {
		v.add("limits.max_in_flight", "must be ≥ limits.workers (%d < %d)", l.MaxInFlight, l.Workers)
	}
	if l.MaxSyncRuns < 1 {
		v.add("limits.max_sync_runs", "must be ≥ 1 (got %d)", l.MaxSyncRuns)
	}
	v.positive("limits.max_timeout", l.MaxTimeout)
	if l.MaxProgressStreams < 0 {
		v.add("limits.max_progress_streams", "must be ≥ 0 (got %d; 0 turns live progress off)", l.MaxProgressStreams)
	}
	if l.MaxTimeout > 0 && c.Polling.JobDeadline > l.MaxTimeout {
		v.add("polling.job_deadline", "must be ≤ limits.max_timeout (%s > %s)", formatDuration(c.Polling.JobDeadline), formatDuration(l.MaxTimeout))
	}
	switch {
	case l.MaxPending < 0 || l.MaxPending > MaxPendingLimit:
		v.add("limits.max_pending", "must be 0 (no caps) to %d (got %d)", MaxPendingLimit, l.MaxPending)
	case l.MaxPending == 0 && (l.MaxPendingPerModel != 0 || len(l.PendingModelLimits) > 0 || l.MaxPendingPerTenant != 0):
		v.add("limits.max_pending", "must be set when limits.max_pending_per_model, limits.pending_model_limits or limits.max_pending_per_tenant is (it bounds them all)")
	}
	if _, err := c.Spend.PriceTable(); err != nil {
		v.add("spend.prices", "%v", err)
	}
	if budgets, err := c.Spend.BudgetList(); err != nil {
		v.add("spend.budgets", "%v", err)
	} else if len(budgets) > 0 && l.MaxPending == 0 {
		v.add("spend.budgets", "need limits.max_pending (budgets are kept in the admission record)")
	}
	switch c.Spend.BudgetPolicy {
	case BudgetWait, BudgetFail:
	default:
		v.add("spend.budget_policy", "must be %q or %q (got %q)", BudgetWait, BudgetFail, c.Spend.BudgetPolicy)
	}
	c.Spend.validateSource(v)
	if strings.TrimSpace(c.Spend.Currency) == "" {
		v.add("spend.currency", "must not be empty")
	}
	if l.MaxPendingPerModel < 0 {
		v.add("limits.max_pending_per_model", "must be ≥ 0 (got %d; 0 means no per-model cap)", l.MaxPendingPerModel)
	}
	if l.MaxPendingPerTenant < 0 {
		v.add("limits.max_pending_per_tenant", "must be ≥ 0 (got %d; 0 means no per-tenant cap)", l.MaxPendingPerTenant)
	}
	for _, model := range sortedKeys(l.PendingModelLimits) {
		if n := l.PendingModelLimits[model]; n < 1 {
			v.add("limits.pending_model_limits", "%q: must be ≥ 1 (got %d)", model, n)
		}
	}
	if l.MaxInFlightPerModel < 0 {
		v.add("limits.max_in_flight_per_model", "must be ≥ 0 (got %d; 0 means no per-model limit)", l.MaxInFlightPerModel)
	}
	for _, model := range sortedKeys(l.ModelLimits) {
		if strings.TrimSpace(model) == "" {
			v.add("limits.model_limits", "model id must not be empty")
		}
		if n := l.ModelLimits[model]; n < 1 {
			v.add("limits.model_limits", "%q: must be ≥ 1 (got %d)", model, n)
		}
	}

	// polling
	p := &c.Polling
	v.nonNegative("polling.webhook_grace", p.WebhookGrace)
	minOK := v.positive("polling.min_interval", p.MinInterval)
	maxOK := v.positive("polling.max_interval", p.MaxInterval)
	if minOK && maxOK && p.MinInterval > p.MaxInterval {
		v.add("polling.min_interval", "must be ≤ polling.max_interval (%s > %s)", formatDuration(p.MinInterval), formatDuration(p.MaxInterval))
	}
	v.positive("polling.job_deadline", p.JobDeadline)
	v.positive("polling.safety_interval", p.SafetyInterval)
	v.positive("polling.sweep_interval", p.SweepInterval)

	// consumer
	co := &c.Consumer
	v.name("consumer.durable", co.Durable)
	v.positive("consumer.ack_wait", co.AckWait)
	if co.MaxDeliver < 1 {
		v.add("consumer.max_deliver", "must be ≥ 1 (got %d)", co.MaxDeliver)
	}
	if co.FetchBatch < 1 {
		v.add("consumer.fetch_batch", "must be ≥ 1 (got %d)", co.FetchBatch)
	}
	v.oneOf("consumer.ambiguous_submit_policy", co.AmbiguousSubmitPolicy, AmbiguousSubmitFail, AmbiguousSubmitResubmit)
	v.nonNegative("consumer.ambiguous_wait", co.AmbiguousWait)

	// shutdown, log
	if v.positive("shutdown.grace_period", c.Shutdown.GracePeriod) && c.Shutdown.GracePeriod < FinishReserve+time.Second {
		// A fal call in hand is bounded by the grace period less the
		// reserve for the writes after it: below this, no call fits.
		v.add("shutdown.grace_period", "must be ≥ %s to fit one fal call and the writes after it (got %s)",
			formatDuration(FinishReserve+time.Second), formatDuration(c.Shutdown.GracePeriod))
	}
	v.oneOf("log.level", c.Log.Level, LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError)
	v.oneOf("log.format", c.Log.Format, LogFormatJSON, LogFormatText)

	return errors.Join(v.errs...)
}

// falKeyHelp says where the fal key comes from, for messages about it.
const falKeyHelp = `set FAL_KEY="<key id>:<key secret>" (or FAL_KEY_ID and FAL_KEY_SECRET, or fal.key in the config file)`

// falKeyProblem says what is wrong with a fal key, or "" when nothing is.
// fal keys are "<key id>:<key secret>"; nothing more is checked (the parts'
// own formats are not documented). The message never quotes the key.
func falKeyProblem(k string) string {
	for _, r := range k {
		if r <= ' ' || r >= 0x7f || r == '"' || r == '\\' {
			return "contains whitespace, a control or non-ASCII character, a quote or a backslash; " + falKeyHelp
		}
	}
	id, secret, ok := strings.Cut(k, ":")
	switch {
	case !ok:
		return "has no ':'; a fal key is \"<key id>:<key secret>\"; " + falKeyHelp
	case id == "" || secret == "":
		return "has an empty key id or secret; a fal key is \"<key id>:<key secret>\"; " + falKeyHelp
	}
	return ""
}

// RequireFalKey returns a [FieldError] for fal.key, naming FAL_KEY, when no
// fal key is set: serve cannot submit anything without one. [Config.Validate]
// does not require it (dev brings its own, config print shows a config
// without it); serve and config validate call this too, before anything
// connects.
func (c *Config) RequireFalKey() error {
	if c.Fal.Key.IsSet() {
		return nil
	}
	return invalid("fal.key", "no fal key: %s", falKeyHelp)
}

// Warnings lists settings that are valid but risky, one sentence each,
// starting with the key; the caller logs them at start. Nil when there are
// none. It reports: webhook.verify off; webhook.public_url using http:// to a
// non-loopback host; an embedded NATS server listening beyond loopback.
func (c *Config) Warnings() []string {
	var out []string
	if !c.Webhook.Verify {
		out = append(out, "webhook.verify: false: webhook signatures are not checked, so anyone who can reach webhook.listen can forge results; use only in development")
	}
	if u, err := url.Parse(c.Webhook.PublicURL); err == nil && c.Webhook.PublicURL != "" && strings.EqualFold(u.Scheme, "http") && !isLoopback(u.Hostname()) {
		out = append(out, fmt.Sprintf("webhook.public_url: %q uses plain http:// to a non-loopback host; results travel unencrypted", c.Webhook.PublicURL))
	}
	for _, p := range c.Subjects.ResultSubjectAllow {
		if first, _, _ := strings.Cut(p, "."); first == "*" || first == ">" {
			out = append(out, fmt.Sprintf("subjects.result_subject_allow: %q lets whoever may publish triggers make falbridge publish, with its own NATS identity, on nearly any subject (all but falbridge's own and the server's); prefer a prefix of your own such as %q", p, ResultSubjectAllowDefault))
		}
	}
	if c.NATS.URL == "" {
		if host, _, err := net.SplitHostPort(c.NATS.Embedded.Listen); err == nil && !isLoopback(host) {
			out = append(out, fmt.Sprintf("nats.embedded.listen: the embedded NATS server listens on %q, beyond loopback, without authentication", c.NATS.Embedded.Listen))
		}
	}
	return out
}

type validator struct {
	errs []error
}

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, invalid(key, format, args...))
}

func (v *validator) positive(key string, d time.Duration) bool {
	if d <= 0 {
		v.add(key, "must be > 0 (got %s)", formatDuration(d))
		return false
	}
	return true
}

func (v *validator) nonNegative(key string, d time.Duration) {
	if d < 0 {
		v.add(key, "must be ≥ 0 (got %s)", formatDuration(d))
	}
}

func (v *validator) oneOf(key, val string, allowed ...string) {
	if !slices.Contains(allowed, val) {
		v.add(key, "must be one of %s (got %q)", strings.Join(allowed, ", "), val)
	}
}

func (v *validator) file(key, path string) {
	if path == "" {
		return
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		v.add(key, "file %q does not exist", path)
	case err != nil:
		v.add(key, "file %q: %v", path, err)
	case fi.IsDir():
		v.add(key, "%q is a directory, not a file", path)
	}
}

func (v *validator) natsAuth(n *NATS) {
	type method struct{ key, name string }
	var set []method
	if n.CredsFile != "" {
		set = append(set, method{"nats.creds_file", "creds_file"})
	}
	if n.NKeySeedFile != "" {
		set = append(set, method{"nats.nkey_seed_file", "nkey_seed_file"})
	}
	if n.User != "" || n.Password != "" {
		set = append(set, method{"nats.user", "user+password"})
		if n.User == "" {
			v.add("nats.user", "required when nats.password is set")
		}
		if n.Password == "" {
			v.add("nats.password", "required when nats.user is set")
		}
	}
	if n.Token != "" {
		set = append(set, method{"nats.token", "token"})
	}
	for _, m := range set[min(1, len(set)):] {
		v.add(m.key, "conflicts with %s; set at most one of creds_file, nkey_seed_file, user+password, token", set[0].key)
	}
}

// httpURL checks an absolute http(s) URL; empty is allowed unless required.
func (v *validator) httpURL(key, s string, required bool) {
	if s == "" {
		if required {
			v.add(key, "required: an absolute http(s) URL")
		}
		return
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		v.add(key, "not a URL: %v", unwrapURLError(err))
	case u.Scheme != "http" && u.Scheme != "https":
		v.add(key, "must be an absolute http:// or https:// URL (got %q)", s)
	case u.Host == "" || u.Hostname() == "":
		v.add(key, "must name a host (got %q)", s)
	case u.Fragment != "" || strings.Contains(s, "#"):
		v.add(key, "must not have a #fragment (got %q)", s)
	case u.User != nil:
		v.add(key, "must not carry user info (got %q)", u.Redacted())
	default:
		if _, err := portOf(u.Port()); err != nil {
			v.add(key, "bad port in %q", s)
		}
	}
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func portOf(p string) (int, error) {
	if p == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return 0, fmt.Errorf("bad port %q", p)
	}
	return n, nil
}

func (v *validator) natsURLs(key, s string) {
	if s == "" {
		return
	}
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			v.add(key, "empty entry in %q", s)
			continue
		}
		u, err := url.Parse(entry)
		if err != nil {
			v.add(key, "%q is not a URL: %v", entry, unwrapURLError(err))
			continue
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			v.add(key, "%q must be a nats://, tls://, ws:// or wss:// URL", entry)
			continue
		}
		if u.Hostname() == "" {
			v.add(key, "%q must name a host", entry)
			continue
		}
		if _, err := portOf(u.Port()); err != nil {
			v.add(key, "%q: %v", entry, err)
		}
	}
}

func (v *validator) listen(key, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(key, "must be host:port, e.g. \":8080\" or \"127.0.0.1:8080\" (got %q)", addr)
		return
	}
	if strings.ContainsFunc(host, unicode.IsSpace) {
		v.add(key, "bad host in %q", addr)
	}
	if port == "" {
		v.add(key, "must include a port (got %q)", addr)
		return
	}
	if _, err := portOf(port); err != nil {
		v.add(key, "bad port in %q: must be 0..65535", addr)
	}
}

// listenersClash reports whether two listen addresses would bind the same
// port on overlapping interfaces. Port 0 (any free port) never clashes.
func listenersClash(a, b string) bool {
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil || pa != pb {
		return false
	}
	if n, err := portOf(pa); err != nil || n == 0 {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}

// name checks a stream or consumer name.
func (v *validator) name(key, s string) {
	switch {
	case s == "":
		v.add(key, "required")
	case len(s) > 255:
		v.add(key, "must be at most 255 characters (got %d)", len(s))
	case strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(".*>/\\", r)
	}):
		v.add(key, "%q must not contain spaces, \".\", \"*\", \">\", \"/\" or \"\\\"", s)
	}
}

// bucket checks a KV bucket name.
func (v *validator) bucket(key, s string) {
	if s == "" {
		v.add(key, "required")
		return
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			v.add(key, "%q may contain only letters, digits, \"_\" and \"-\"", s)
			return
		}
	}
}

// subject checks a subject (wildcards allowed or not) and reports whether it
// is valid.
func (v *validator) subject(key, s string, wildcards bool) bool {
	if subject.Valid(s, wildcards) {
		return true
	}
	if wildcards {
		v.add(key, "%q is not a valid subject: non-empty dot-separated tokens without spaces; \"*\" and a final \">\" only as whole tokens", s)
	} else {
		v.add(key, "%q is not a valid subject prefix: non-empty dot-separated tokens without spaces or wildcards", s)
	}
	return false
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// resultSubjectAllow checks subjects.result_subject_allow: each entry a valid
// pattern that can match some subject a result_subject may name, i.e. not
// wholly within falbridge's own subjects or the server's.
func (v *validator) resultSubjectAllow(c *Config) {
	const key = "subjects.result_subject_allow"
	sub := &c.Subjects
	reserved := []struct{ key, prefix string }{
		{"subjects.requests", sub.Requests},
		{"subjects.results", sub.Results},
		{"subjects.errors", sub.Errors},
		{"subjects.status", sub.Status},
		{"subjects.cancel", sub.Cancel},
		{"the poller's namespace", PendingNamespace},
	}
	for _, p := range sub.ResultSubjectAllow {
		if !subject.Valid(p, true) {
			v.add(key, "%q is not a valid subject pattern: non-empty dot-separated tokens without spaces; \"*\" and a final \">\" only as whole tokens", p)
			continue
		}
		if subject.ServerOwned(p) {
			v.add(key, "%q names server subjects ($…, _INBOX), which a result_subject may never name", p)
			continue
		}
		for _, r := range reserved {
			if subject.Valid(r.prefix, true) && subject.Within(r.prefix, p) {
				v.add(key, "%q lies within %s (%q), which a result_subject may never name", p, r.key, r.prefix)
				break
			}
		}
	}
}
