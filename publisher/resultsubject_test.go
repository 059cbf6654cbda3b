package publisher

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/subject"
)

// reservedDefault is what config.Default().ReservedSubjects() returns
// (publisher does not import config).
var reservedDefault = []string{"fal.requests.>", "fal.results", "fal.errors", "fal.status", "fal.cancel", "falbridge"}

func TestResultSubjectAllowed(t *testing.T) {
	t.Parallel()
	app := []string{ResultSubjectAllowDefault}
	all := []string{">"}
	tests := []struct {
		name  string
		s     string
		allow []string
		ok    bool
		why   string // part of the refusal
	}{
		{"none asked", "", nil, true, ""},
		{"under app", "app.orders.done", app, true, ""},
		{"app itself is not under app.>", "app", app, false, "matches no allowed pattern"},
		{"outside app", "orders.done", app, false, "matches no allowed pattern"},
		{"empty allow list", "app.x", nil, false, "no result_subject is allowed"},
		{"empty allow list, explicit", "app.x", []string{}, false, "subjects.result_subject_allow is empty"},
		{"literal pattern", "orders.done", []string{"orders.done"}, true, ""},
		{"star pattern", "events.a.done", []string{"events.*.done"}, true, ""},
		{"star pattern miss", "events.a.b.done", []string{"events.*.done"}, false, "matches no allowed pattern"},
		{"second pattern", "b.x", []string{"a.>", "b.>"}, true, ""},
		{"invalid allow entry ignored", "a.x", []string{"a b", "a.>"}, true, ""},
		{"wildcard subject", "app.*", app, false, "not a NATS subject without wildcards"},
		{"full wildcard subject", "app.>", app, false, "not a NATS subject without wildcards"},
		{"space", "app.a b", app, false, "not a NATS subject"},
		{"empty token", "app..x", app, false, "not a NATS subject"},

		// The attacks of issue 11, under the widest allow list.
		{"victim's result", "fal.results.victim", all, false, "falbridge's own subjects (fal.results)"},
		{"victim's error", "fal.errors.victim", all, false, "(fal.errors)"},
		{"victim's status", "fal.status.victim", all, false, "(fal.status)"},
		{"cancel the victim", "fal.cancel.victim", all, false, "(fal.cancel)"},
		{"a new trigger", "fal.requests.loop", all, false, "(fal.requests.>)"},
		{"a results prefix itself", "fal.results", all, false, "(fal.results)"},
		{"poller timers", "falbridge.fal_pending.victim", all, false, "(falbridge)"},
		{"job record", "$KV.fal_jobs.victim", all, false, "server subjects"},
		{"stream purge", "$JS.API.STREAM.PURGE.FAL_RESULTS", all, false, "server subjects"},
		{"system account", "$SYS.REQ.SERVER.PING", all, false, "server subjects"},
		{"object store", "$O.bucket.C.x", all, false, "server subjects"},
		{"someone's reply", "_INBOX.abc.def", all, false, "server subjects"},
		{"a falbridge-like prefix is fine", "fal.resultsx.victim", all, true, ""},
		{"other under fal.>", "fal.app.x", []string{"fal.>"}, true, ""},
		{"everything else under >", "orders.done", all, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := ResultSubjectAllowed(tt.s, tt.allow, reservedDefault)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			var te *TriggerError
			require.ErrorAs(t, err, &te)
			require.Equal(t, "result_subject", te.Field)
			require.ErrorIs(t, err, ErrInvalidTrigger)
			require.Contains(t, err.Error(), "trigger: result_subject: ")
			require.Contains(t, err.Error(), tt.why)
			if len(tt.allow) > 0 {
				require.Contains(t, err.Error(), "allowed: "+strings.Join(tt.allow, ", "), "says what is allowed")
			}
		})
	}
}

// Reserved subjects follow the configured names, not the defaults.
func TestResultSubjectAllowedCustomSubjects(t *testing.T) {
	t.Parallel()
	reserved := []string{"jobs.in.*", "app.results", "app.errors", "app.status", "app.cancel", "falbridge"}
	allow := []string{"app.>"}
	for _, s := range []string{"app.results.v", "app.errors.v", "app.status.v", "app.cancel.v", "jobs.in.x", "jobs.in.x.y"} {
		require.Error(t, ResultSubjectAllowed(s, allow, reserved), s)
	}
	require.NoError(t, ResultSubjectAllowed("app.orders.v", allow, reserved))
	require.NoError(t, ResultSubjectAllowed("fal.results.v", []string{"fal.>"}, reserved), "the default prefix is not reserved when not in use")
}

// FuzzResultSubjectAllowed checks the invariants whatever the input: an
// allowed subject is a literal subject matched by an allow pattern and in
// no reserved or server namespace; a refusal always names result_subject.
func FuzzResultSubjectAllowed(f *testing.F) {
	for _, s := range []string{"app.x", "fal.results.v", "$KV.fal_jobs.v", "_INBOX.x", "fal.cancel.v", "a.>", "", " ", "app..x", "falbridge.p.x", "$", "_INBOX"} {
		f.Add(s, ">")
		f.Add(s, "app.>")
		f.Add(s, "*.*")
	}
	f.Fuzz(func(t *testing.T, s, allowPattern string) {
		allow := []string{allowPattern}
		err := ResultSubjectAllowed(s, allow, reservedDefault)
		if err != nil {
			var te *TriggerError
			if !errors.As(err, &te) || te.Field != "result_subject" || !errors.Is(err, ErrInvalidTrigger) {
				t.Fatalf("refusal %v is not a result_subject TriggerError", err)
			}
			return
		}
		if s == "" {
			return
		}
		if !subject.Valid(s, false) {
			t.Fatalf("allowed invalid subject %q", s)
		}
		if subject.ServerOwned(s) {
			t.Fatalf("allowed server subject %q", s)
		}
		for _, r := range reservedDefault {
			if subject.Within(r, s) || strings.HasPrefix(s, r+".") || s == r {
				t.Fatalf("allowed %q within reserved %q", s, r)
			}
		}
		first, _, _ := strings.Cut(s, ".")
		if strings.HasPrefix(first, "$") || first == "_INBOX" {
			t.Fatalf("allowed %q", s)
		}
		if !subject.Valid(allowPattern, true) || !subject.Overlap(allowPattern, s) {
			t.Fatalf("allowed %q not matched by %q", s, allowPattern)
		}
	})
}
