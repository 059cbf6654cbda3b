package falclient_test

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/falclient"
)

func TestSSE(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"one event", "data: {\"a\":1}\n\n", []string{`{"a":1}`}},
		{"two events", "data: 1\n\ndata: 2\n\n", []string{"1", "2"}},
		{"multi-line data joined with LF", "data: a\ndata: b\ndata:c\n\n", []string{"a\nb\nc"}},
		{"only one leading space stripped", "data:  x\n\n", []string{" x"}},
		{"CRLF", "data: 1\r\n\r\ndata: 2\r\ndata: 3\r\n\r\n", []string{"1", "2\n3"}},
		{"lone CR", "data: 1\r\rdata: 2\rdata: 3\r\r", []string{"1", "2\n3"}},
		{"no trailing blank line at EOF", "data: 1\n\ndata: last", []string{"1", "last"}},
		{"no trailing newline, CRLF before", "data: 1\r\n\r\ndata: last\r\n", []string{"1", "last"}},
		{"fields ignored", "event: status\nid: 7\nretry: 100\ndata: x\nfoo: bar\n\n", []string{"x"}},
		{"comments ignored", ": keep-alive\n\n: ping\ndata: y\n\n", []string{"y"}},
		{"events without data skipped", "event: ping\n\nid: 3\n\ndata: z\n\n", []string{"z"}},
		{"empty data dispatched", "data:\n\n", []string{""}},
		{"data without colon", "data\ndata: q\n\n", []string{"\nq"}},
		{"BOM", "\xef\xbb\xbfdata: b\n\n", []string{"b"}},
		{"many blank lines", "\n\n\ndata: 1\n\n\n\n", []string{"1"}},
		{"empty stream", "", nil},
		{"colon in value", "data: {\"u\":\"http://x\"}\n\n", []string{`{"u":"http://x"}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := falclient.SSEEvents([]byte(tt.in), 1<<20)
			require.NoError(t, err)
			require.Equal(t, tt.want, asStrings(got))
			// The same, read one byte at a time.
			got, err = falclient.SSEEventsChunked(iotest.OneByteReader(strings.NewReader(tt.in)), 1<<20)
			require.NoError(t, err)
			require.Equal(t, tt.want, asStrings(got))
		})
	}
}

func TestSSELongLines(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 200<<10) // longer than the read buffer
	got, err := falclient.SSEEvents([]byte("data: "+long+"\n\ndata: 2\n\n"), 1<<20)
	require.NoError(t, err)
	require.Equal(t, []string{long, "2"}, asStrings(got))

	_, err = falclient.SSEEvents([]byte("data: "+long+"\n\n"), 100<<10)
	require.ErrorIs(t, err, falclient.ErrResponseTooLarge)

	many := strings.Repeat("data: "+strings.Repeat("y", 1000)+"\n", 200)
	_, err = falclient.SSEEvents([]byte(many+"\n"), 100<<10)
	require.ErrorIs(t, err, falclient.ErrResponseTooLarge)
}

func asStrings(evs [][]byte) []string {
	var out []string
	for _, e := range evs {
		out = append(out, string(e))
	}
	return out
}

// encodeSSE writes payloads as SSE events with the given line ending.
func encodeSSE(payloads []string, eol string) []byte {
	var b bytes.Buffer
	for _, p := range payloads {
		for _, line := range splitLines(p) {
			b.WriteString("data: " + line + eol)
		}
		b.WriteString(eol)
	}
	return b.Bytes()
}

func splitLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Split(s, "\n")
}

func FuzzSSE(f *testing.F) {
	f.Add("hello", `{"a":1}`, "", uint8(0))
	f.Add("a\nb", "c\r\nd", "e\rf", uint8(1))
	f.Add(": x", "data: y", "\xef\xbb\xbf", uint8(2))
	f.Add("", "", "", uint8(3))
	f.Add("  spaced", "trail\n", "\n\n", uint8(1))
	f.Fuzz(func(t *testing.T, a, b, c string, mode uint8) {
		// 1. Arbitrary bytes never panic.
		_, _ = falclient.SSEEvents([]byte(a+b+c), 1<<16)

		// 2. Generated events round-trip (newlines normalised to LF).
		payloads := []string{a, b, c}
		eol := []string{"\n", "\r\n", "\r"}[mode%3]
		stream := encodeSSE(payloads, eol)
		if mode%4 == 3 {
			stream = bytes.TrimSuffix(stream, []byte(eol)) // no blank line at EOF
		}
		got, err := falclient.SSEEvents(stream, 1<<20)
		if err != nil {
			t.Fatalf("parse %q: %v", stream, err)
		}
		want := make([]string, len(payloads))
		for i, p := range payloads {
			want[i] = strings.Join(splitLines(p), "\n")
		}
		if len(got) != len(want) {
			t.Fatalf("stream %q: got %d events %q, want %q", stream, len(got), asStrings(got), want)
		}
		for i := range want {
			if string(got[i]) != want[i] {
				t.Fatalf("stream %q: event %d = %q, want %q", stream, i, got[i], want[i])
			}
		}
	})
}
