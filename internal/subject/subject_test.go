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
