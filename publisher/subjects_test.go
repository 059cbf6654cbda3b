package publisher_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/publisher"
)

func TestDefaultSubjects(t *testing.T) {
	t.Parallel()
	s := publisher.DefaultSubjects()
	require.NoError(t, s.Validate())
	require.Equal(t, "fal.results.j1", s.Result("j1"))
	require.Equal(t, "fal.errors.j1", s.Error("j1"))
	require.Equal(t, "fal.status.j1", s.Status("j1"))
	require.Equal(t, "fal.cancel.j1", s.Cancel("j1"))
	require.Equal(t, "fal.requests.j1", s.RequestSubject("j1"))
	require.Equal(t, "FAL_RESULTS", s.ResultsStream)
	require.Equal(t, "FAL_STATUS", s.StatusStream)
	require.Equal(t, s, publisher.Subjects{}.WithDefaults())
}

func TestRequestSubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, requests, want string
	}{
		{"default", "fal.requests.>", "fal.requests.x"},
		{"star", "jobs.*", "jobs.x"},
		{"literal", "jobs.in", "jobs.in"},
		{"deep", "a.b.c.>", "a.b.c.x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := publisher.Subjects{Requests: tt.requests}
			require.Equal(t, tt.want, s.RequestSubject("x"))
		})
	}
}

func TestSubjectsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		modify  func(*publisher.Subjects)
		wantErr string
	}{
		{"defaults", func(*publisher.Subjects) {}, ""},
		{"requests empty", func(s *publisher.Subjects) { s.Requests = "" }, "subjects: requests"},
		{"results prefix wildcard", func(s *publisher.Subjects) { s.ResultsPrefix = "fal.*" }, "subjects: results"},
		{"errors prefix dot", func(s *publisher.Subjects) { s.ErrorsPrefix = "fal." }, "subjects: errors"},
		{"status prefix space", func(s *publisher.Subjects) { s.StatusPrefix = "a b" }, "subjects: status"},
		{"cancel prefix empty", func(s *publisher.Subjects) { s.CancelPrefix = "" }, "subjects: cancel"},
		{"results stream dot", func(s *publisher.Subjects) { s.ResultsStream = "A.B" }, "subjects: results_stream"},
		{"status stream empty", func(s *publisher.Subjects) { s.StatusStream = "" }, "subjects: status_stream"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := publisher.DefaultSubjects()
			tt.modify(&s)
			err := s.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestMatchesEvents(t *testing.T) {
	t.Parallel()
	s := publisher.DefaultSubjects()
	for filter, want := range map[string]bool{
		"fal.results.x": true, "fal.*.x": true, "fal.>": true, ">": true, "fal.status.*": true,
		"fal.requests.x": false, "fal.cancel.>": false, "other.>": false,
	} {
		require.Equal(t, want, s.MatchesEvents(filter), filter)
	}
	require.True(t, publisher.ValidSubject("fal.*.x", true))
	require.False(t, publisher.ValidSubject("fal.*.x", false))
	require.False(t, publisher.ValidSubject("fal..x", true))
}
