package consumer

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/publisher"
)

func TestEncodeErrorFitsTheLimit(t *testing.T) {
	t.Parallel()
	big := func(n int, s string) json.RawMessage {
		return json.RawMessage(`{"v":"` + strings.Repeat(s, n) + `"}`)
	}
	cases := []struct {
		name    string
		ev      publisher.Error
		limit   int
		wantCut bool
	}{
		{name: "small stays whole", ev: publisher.Error{ID: "a", Code: "x", Trigger: big(10, "t")}, limit: 1 << 10},
		{name: "big trigger", ev: publisher.Error{ID: "a", Code: "x", Trigger: big(100_000, "t")}, limit: 16 << 10, wantCut: true},
		{name: "big detail and metadata", ev: publisher.Error{ID: "a", Code: "x", Detail: big(50_000, "d"), Metadata: big(50_000, "m")}, limit: 16 << 10, wantCut: true},
		{name: "markup is not escaped", ev: publisher.Error{ID: "a", Code: "x", Trigger: big(2_000, "<&>")}, limit: 7 << 10},
		{name: "multi-byte runes cut whole", ev: publisher.Error{ID: "a", Code: "x", Trigger: big(50_000, "é€")}, limit: 8 << 10, wantCut: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ev := tc.ev
			b, err := encodeError(&ev, tc.limit)
			require.NoError(t, err)
			require.LessOrEqual(t, len(b), tc.limit)
			require.True(t, json.Valid(b))
			require.True(t, utf8.Valid(b))
			require.Equal(t, tc.wantCut, ev.Truncated)
			var back publisher.Error
			require.NoError(t, json.Unmarshal(b, &back))
			require.Equal(t, tc.wantCut, back.Truncated)
		})
	}
}

func TestJobRecordFitsTheLimit(t *testing.T) {
	t.Parallel()
	j := &job{ID: "j", State: stateClaimed, Trigger: json.RawMessage(`{"input":{"prompt":"` + strings.Repeat("<p>", 200_000) + `"}}`),
		Metadata: json.RawMessage(`{"k":"v"}`)}
	b, err := encodeJobFit(j, 64<<10)
	require.NoError(t, err)
	require.LessOrEqual(t, len(b), 64<<10)
	require.True(t, j.Truncated)
	require.JSONEq(t, `{"k":"v"}`, string(j.Metadata), "the metadata is cut last, and here not at all")
}
