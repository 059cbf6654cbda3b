package subject

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		subject   string
		wildcards bool
		want      bool
	}{
		{"fal.results.x", false, true},
		{"fal.results.>", true, true},
		{"fal.*.x", true, true},
		{"fal.*.x", false, false},
		{"fal.>.x", true, false},
		{"fal.a*", true, false},
		{"fal..x", true, false},
		{".fal", true, false},
		{"fal.", true, false},
		{"", true, false},
		{"fal x", true, false},
		{"fal\tx", true, false},
		{"fal.ümlaut", false, true},
		{"fal\u00a0x", false, false}, // no-break space: rejected by config and publisher alike
		{"fal.\x7f", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.subject, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Valid(tt.subject, tt.wildcards))
		})
	}
}

func TestOverlap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		want bool
	}{
		{"fal.results.>", "fal.results.>", true},
		{"fal.results.x", "fal.results.>", true},
		{"fal.>", "fal.results.>", true},
		{">", "fal.status.>", true},
		{"fal.*.x", "fal.status.>", true},
		{"fal.*.x", "fal.errors.>", true},
		{"fal.results.>", "fal.status.>", false},
		{"fal.results", "fal.results.>", false},
		{"fal.*", "fal.results.>", false},
		{"fal.*.*", "fal.results.>", true},
		{"a.b", "a.b", true},
		{"a.b", "a.c", false},
		{"a.b.c", "a.b", false},
	}
	for _, tt := range tests {
		t.Run(tt.a+" "+tt.b, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Overlap(tt.a, tt.b))
			require.Equal(t, tt.want, Overlap(tt.b, tt.a))
		})
	}
}

func TestWithin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix, s string
		want      bool
	}{
		{"fal.results", "fal.results", true},
		{"fal.results", "fal.results.x", true},
		{"fal.results", "fal.results.x.y", true},
		{"fal.results", "fal.results.>", true},
		{"fal.results", "fal.results.*", true},
		{"fal.results", "fal.resultsx", false},
		{"fal.results", "fal", false},
		{"fal.results", "fal.>", false},
		{"fal.results", "fal.*", false},
		{"fal.results", ">", false},
		{"fal.requests.>", "fal.requests.x", true},
		{"fal.requests.>", "fal.requests", false},
		{"fal.requests.>", "fal.requests.>", true},
		{"fal.*", "fal.x", true},
		{"fal.*", "fal.x.y", true},
		{"fal.*", "fal.>", true},
		{"fal.*", "fal", false},
		{"fal.*.x", "fal.a.x", true},
		{"fal.*.x", "fal.a.y", false},
		{"fal.*.x", "fal.>", false},
		{">", "anything", true},
		{">", "a.b", true},
		{"falbridge", "falbridge.fal_pending.x", true},
		{"app", "app.x", true},
	}
	for _, tt := range tests {
		t.Run(tt.prefix+" "+tt.s, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Within(tt.prefix, tt.s))
		})
	}
}

func TestServerOwned(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    string
		want bool
	}{
		{"$KV.fal_jobs.x", true},
		{"$JS.API.STREAM.PURGE.FAL_RESULTS", true},
		{"$SYS.REQ.SERVER.PING", true},
		{"$O.store.x", true},
		{"$JS", true},
		{"_INBOX.abc", true},
		{"_INBOX", true},
		{"_INBOXES.x", false},
		{"app.x", false},
		{"KV.x", false},
		{"a.$KV", false},
	}
	for _, tt := range tests {
		t.Run(tt.s, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, ServerOwned(tt.s))
		})
	}
}
