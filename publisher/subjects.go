package publisher

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/falbridge/falbridge/internal/subject"
)

// Default subject, stream and bucket names. They are part of falbridge's public
// contract (design.md, "Contracts"): the README, the demo and outside scripts
// rely on them. Every one of them is configurable.
const (
	// RequestsSubjectDefault is the subject pattern triggers are published on;
	// any suffix works ("nats pub fal.requests.demo '{…}'").
	RequestsSubjectDefault = "fal.requests.>"
	// ResultsPrefixDefault prefixes result events: "fal.results.<trigger id>".
	ResultsPrefixDefault = "fal.results"
	// ErrorsPrefixDefault prefixes error events: "fal.errors.<trigger id>".
	ErrorsPrefixDefault = "fal.errors"
	// StatusPrefixDefault prefixes progress events: "fal.status.<trigger id>".
	StatusPrefixDefault = "fal.status"
	// CancelPrefixDefault prefixes cancel requests: "fal.cancel.<trigger id>"
	// (core NATS request or publish).
	CancelPrefixDefault = "fal.cancel"

	// RequestsStreamDefault is the work-queue stream holding triggers.
	RequestsStreamDefault = "FAL_REQUESTS"
	// ResultsStreamDefault is the stream holding result and error events.
	ResultsStreamDefault = "FAL_RESULTS"
	// StatusStreamDefault is the stream holding progress events (short max age).
	StatusStreamDefault = "FAL_STATUS"
	// PendingStreamDefault is the consumer's timer stream for pending fal jobs.
	PendingStreamDefault = "FAL_PENDING"
	// JobsBucketDefault is the KV bucket holding job state.
	JobsBucketDefault = "fal_jobs"

	// MaxIDLen is the maximum length of a trigger id.
	MaxIDLen = 128
	// MaxTenantLen is the maximum length of a trigger's tenant.
	MaxTenantLen = 64
)

// Subjects names the subjects and streams a [Publisher] uses. The zero value
// of a field means its default; see [Subjects.WithDefaults].
type Subjects struct {
	// Requests is the trigger subject pattern. Defaults to
	// [RequestsSubjectDefault]. See [Subjects.RequestSubject].
	Requests string
	// ResultsPrefix defaults to [ResultsPrefixDefault].
	ResultsPrefix string
	// ErrorsPrefix defaults to [ErrorsPrefixDefault].
	ErrorsPrefix string
	// StatusPrefix defaults to [StatusPrefixDefault].
	StatusPrefix string
	// CancelPrefix defaults to [CancelPrefixDefault].
	CancelPrefix string
	// ResultsStream is the stream holding result and error events, read by
	// [Publisher.Await] and [Publisher.Watch]. Defaults to [ResultsStreamDefault].
	ResultsStream string
	// StatusStream is the stream holding status events, read by
	// [Publisher.Watch]. Defaults to [StatusStreamDefault].
	StatusStream string
	// RequestsStream is the work-queue stream holding triggers not yet
	// taken, read by [Publisher.Lookup]. Defaults to [RequestsStreamDefault].
	RequestsStream string
	// JobsBucket is the KV bucket of job records, read by [Publisher.Lookup].
	// Defaults to [JobsBucketDefault].
	JobsBucket string
}

// DefaultSubjects returns the default subjects and streams.
func DefaultSubjects() Subjects {
	return Subjects{
		Requests:       RequestsSubjectDefault,
		ResultsPrefix:  ResultsPrefixDefault,
		ErrorsPrefix:   ErrorsPrefixDefault,
		StatusPrefix:   StatusPrefixDefault,
		CancelPrefix:   CancelPrefixDefault,
		ResultsStream:  ResultsStreamDefault,
		StatusStream:   StatusStreamDefault,
		RequestsStream: RequestsStreamDefault,
		JobsBucket:     JobsBucketDefault,
	}
}

// WithDefaults returns s with every empty field set to its default.
func (s Subjects) WithDefaults() Subjects {
	d := DefaultSubjects()
	return Subjects{
		Requests:       cmp.Or(s.Requests, d.Requests),
		ResultsPrefix:  cmp.Or(s.ResultsPrefix, d.ResultsPrefix),
		ErrorsPrefix:   cmp.Or(s.ErrorsPrefix, d.ErrorsPrefix),
		StatusPrefix:   cmp.Or(s.StatusPrefix, d.StatusPrefix),
		CancelPrefix:   cmp.Or(s.CancelPrefix, d.CancelPrefix),
		ResultsStream:  cmp.Or(s.ResultsStream, d.ResultsStream),
		StatusStream:   cmp.Or(s.StatusStream, d.StatusStream),
		RequestsStream: cmp.Or(s.RequestsStream, d.RequestsStream),
		JobsBucket:     cmp.Or(s.JobsBucket, d.JobsBucket),
	}
}

// Validate reports the first field that is not a usable name: Requests must
// be a subject (wildcards allowed, see [Subjects.RequestSubject]), prefixes
// must be subjects without wildcards, streams must be non-empty and contain
// no '.', '*', '>' or whitespace. Empty fields are errors; call
// [Subjects.WithDefaults] first to fill them.
func (s Subjects) Validate() error {
	if !subject.Valid(s.Requests, true) {
		return fmt.Errorf("subjects: requests: invalid subject %q", s.Requests)
	}
	for _, f := range []struct{ name, v string }{
		{"results", s.ResultsPrefix},
		{"errors", s.ErrorsPrefix},
		{"status", s.StatusPrefix},
		{"cancel", s.CancelPrefix},
	} {
		if !subject.Valid(f.v, false) {
			return fmt.Errorf("subjects: %s: invalid subject prefix %q", f.name, f.v)
		}
	}
	for _, f := range []struct{ name, v string }{
		{"results_stream", s.ResultsStream},
		{"status_stream", s.StatusStream},
		{"requests_stream", s.RequestsStream},
		{"jobs_bucket", s.JobsBucket},
	} {
		if f.v == "" || strings.ContainsAny(f.v, ".*> \t\r\n/\\") {
			return fmt.Errorf("subjects: %s: invalid stream name %q", f.name, f.v)
		}
	}
	return nil
}

// TerminalPattern returns the subject pattern that, inside the results
// stream, matches both terminal subjects of any id once ".<id>" is appended
// (fal.results + fal.errors → "fal.*"): one read finds a job's terminal
// event whichever kind it is, and one expected-last-sequence check guards
// both. It is "" when the two prefixes differ in their number of tokens.
func (s Subjects) TerminalPattern() string {
	a := strings.Split(s.ResultsPrefix, ".")
	b := strings.Split(s.ErrorsPrefix, ".")
	if len(a) != len(b) {
		return ""
	}
	out := make([]string, len(a))
	for i := range a {
		if a[i] == b[i] {
			out[i] = a[i]
		} else {
			out[i] = "*"
		}
	}
	return strings.Join(out, ".")
}

// Result returns the subject of the result event of trigger id.
func (s Subjects) Result(id string) string { return s.ResultsPrefix + "." + id }

// Error returns the subject of the error event of trigger id.
func (s Subjects) Error(id string) string { return s.ErrorsPrefix + "." + id }

// Status returns the subject of the status events of trigger id.
func (s Subjects) Status(id string) string { return s.StatusPrefix + "." + id }

// Cancel returns the subject that cancels trigger id.
func (s Subjects) Cancel(id string) string { return s.CancelPrefix + "." + id }

// RequestSubject returns the subject to publish a trigger on: the Requests
// pattern without its trailing ".>" or ".*", then "." and suffix, so the
// default gives "fal.requests.<suffix>". A Requests subject without a
// trailing wildcard is a literal subject and is returned unchanged.
func (s Subjects) RequestSubject(suffix string) string {
	if base, ok := strings.CutSuffix(s.Requests, ".>"); ok {
		return base + "." + suffix
	}
	if base, ok := strings.CutSuffix(s.Requests, ".*"); ok {
		return base + "." + suffix
	}
	return s.Requests
}

// ValidSubject reports whether s is a NATS subject: non-empty tokens
// separated by '.', no whitespace; with wildcards, a token may be '*' and
// the last one '>'.
func ValidSubject(s string, wildcards bool) bool { return subject.Valid(s, wildcards) }

// MatchesEvents reports whether the subject filter matches the subject of
// some result, error or status event, i.e. whether [Publisher.Watch] on it
// can see anything.
func (s Subjects) MatchesEvents(filter string) bool {
	for _, p := range []string{s.ResultsPrefix, s.ErrorsPrefix, s.StatusPrefix} {
		if subject.Overlap(filter, p+".>") {
			return true
		}
	}
	return false
}

// ValidID reports whether id is a valid trigger id: 1 to [MaxIDLen]
// characters, each an ASCII letter, digit, '-' or '_', so that the id is a
// single NATS subject token.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
