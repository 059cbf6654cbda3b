package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/publisher"
)

func TestFindMedia(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		output string
		want   []media
	}{
		{name: "empty", output: ``, want: nil},
		{name: "no urls", output: `{"text":"a cat","seed":1}`, want: nil},
		{name: "flux images", output: `{"images":[{"url":"http://x/0.png","width":1024,"height":768,"content_type":"image/png"},{"url":"http://x/1.png"}],"seed":18446744073709551617}`,
			want: []media{{URL: "http://x/0.png", ContentType: "image/png", Width: 1024, Height: 768}, {URL: "http://x/1.png"}}},
		{name: "video, keys in order", output: `{"video":{"url":"https://v/a.mp4","content_type":"video/mp4"},"audio":{"url":"https://v/a.mp3"}}`,
			want: []media{{URL: "https://v/a.mp3"}, {URL: "https://v/a.mp4", ContentType: "video/mp4"}}},
		{name: "nested deeper", output: `[{"result":{"files":[{"url":"data:text/plain,hi"}]}}]`, want: []media{{URL: "data:text/plain,hi"}}},
		{name: "url not a string", output: `{"url":3,"inner":{"url":""}}`, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, findMedia(json.RawMessage(tt.output)))
		})
	}
}

func TestExtension(t *testing.T) {
	t.Parallel()
	tests := []struct{ ctype, path, want string }{
		{"image/png", "/f/a", ".png"},
		{"image/jpeg; charset=binary", "/f/a.jpeg", ".jpg"},
		{"video/mp4", "", ".mp4"},
		{"application/octet-stream", "/f/model.GLB", ".glb"},
		{"", "/f/a.webp", ".webp"},
		{"", "/f/a", ".bin"},
		{"", "/f/a.tar-gz", ".bin"},
		{"nonsense", "/f/a.wav", ".wav"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, extension(tt.ctype, tt.path), "%q %q", tt.ctype, tt.path)
	}
}

func TestDecodeDataURL(t *testing.T) {
	t.Parallel()
	mt, data, err := decodeDataURL("data:image/png;base64,iVBORw0KGgo=")
	require.NoError(t, err)
	require.Equal(t, "image/png", mt)
	require.Equal(t, []byte("\x89PNG\r\n\x1a\n"), data)

	mt, data, err = decodeDataURL("data:text/plain,a%20cat")
	require.NoError(t, err)
	require.Equal(t, "text/plain", mt)
	require.Equal(t, "a cat", string(data))

	_, _, err = decodeDataURL("data:no-comma")
	require.Error(t, err)
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	w, h, ok := parseSize("1024x768")
	require.True(t, ok)
	require.Equal(t, [2]int{1024, 768}, [2]int{w, h})
	for _, s := range []string{"landscape_4_3", "x768", "0x1", "12x", "axb"} {
		_, _, ok := parseSize(s)
		require.False(t, ok, s)
	}
}

func TestWatchFilter(t *testing.T) {
	t.Parallel()
	ev := func(subject string) publisher.Event { return publisher.Event{Subject: subject} }
	tests := []struct {
		name    string
		id      string
		kinds   []string
		subject string
		filter  string
		keeps   []string // subjects the predicate keeps
		drops   []string
	}{
		{name: "everything", filter: "", keeps: []string{"fal.results.a", "fal.errors.a", "fal.status.a"}},
		{name: "one id", id: "a", filter: "fal.*.a", keeps: []string{"fal.results.a", "fal.status.a"}},
		{name: "one kind", kinds: []string{"error"}, filter: "fal.errors.>"},
		{name: "one kind one id", id: "a", kinds: []string{"status"}, filter: "fal.status.a"},
		{name: "two kinds", kinds: []string{"result", "error"}, filter: "",
			keeps: []string{"fal.results.a", "fal.errors.a"}, drops: []string{"fal.status.a"}},
		{name: "two kinds one id", id: "a", kinds: []string{"result", " status"}, filter: "fal.*.a",
			keeps: []string{"fal.results.a", "fal.status.a"}, drops: []string{"fal.errors.a"}},
		{name: "raw subject", subject: "fal.results.>", filter: "fal.results.>", keeps: []string{"fal.results.a"}},
		{name: "raw subject wide", subject: "fal.>", filter: "fal.>", keeps: []string{"fal.results.a"}},
		{name: "raw subject one job", subject: "fal.errors.a", filter: "fal.errors.a", keeps: []string{"fal.errors.a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			filter, keep, err := watchFilter(tt.id, tt.kinds, tt.subject)
			require.NoError(t, err)
			require.Equal(t, tt.filter, filter)
			for _, s := range tt.keeps {
				require.True(t, keep(ev(s)), s)
			}
			for _, s := range tt.drops {
				require.False(t, keep(ev(s)), s)
			}
		})
	}
}

func TestStatusLineOnTerminal(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	l := newStatusLine(&b, true)
	l.Set("working 1")
	l.Set("w 2")
	l.Println("a log line")
	l.Around(func() { b.WriteString("an event\n") }, "w 3")
	l.Done()
	require.Equal(t,
		"\rworking 1"+ // first draw
			"\rw 2      \rw 2"+ // shorter: padded, then the cursor goes back
			"\r   \r"+"a log line\n"+"\rw 2"+ // erased, printed above, redrawn
			"\r   \r"+"an event\n"+"\rw 3"+
			"\r   \r", // Done erases it
		b.String())
}

func TestStatusLineElsewhere(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	l := newStatusLine(&b, false)
	l.Set("working")
	l.Println("a log line")
	l.Done()
	require.Equal(t, "a log line\n", b.String(), "no redrawn line when not a terminal")
}

func TestJobProgressPlain(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	p := newJobProgress(&b, false, "fox-1", "waiting")
	p.draw(0)
	pos := 3
	p.update(publisher.StateInQueue, &pos, nil)
	p.update(publisher.StateInQueue, &pos, nil) // unchanged: no line
	logs := []falLog{{Message: "loading weights", Timestamp: "t1"}}
	p.update(publisher.StateInProgress, nil, logs)
	p.update(publisher.StateInProgress, nil, append(logs, falLog{Message: "step 1/4", Timestamp: "t2"}))
	require.Equal(t, strings.Join([]string{
		"fox-1: IN_QUEUE (position 3)",
		"fox-1: IN_PROGRESS",
		"  fal: loading weights",
		"  fal: step 1/4",
	}, "\n")+"\n", b.String())
}

func TestBatchProgressText(t *testing.T) {
	t.Parallel()
	c := batchCounts{total: 10, done: 4, failed: 1, pending: 3}
	require.Equal(t, "batch: 5/10 finished, done 4, failed 1, pending 3, 2.5/s, eta 2s",
		batchProgressText(c, 2*time.Second, false, 0, 80))
	got := batchProgressText(c, 2*time.Second, true, 0, 80)
	require.Equal(t, "⠋ ██████████░░░░░░░░░░ 5/10  ETA 2s  2.5/s  done 4  failed 1  pending 3", got)
	// A large batch still fits 80 columns whole, ETA included.
	big := batchProgressText(batchCounts{total: 100000, done: 12345, failed: 678, pending: 64}, 1234*time.Second, true, 0, 80)
	require.LessOrEqual(t, len([]rune(big)), 79, big)
	require.Contains(t, big, "ETA 2h17m22s")
	require.Contains(t, big, "░", "with a (shorter) bar")
	require.Contains(t, batchProgressText(batchCounts{total: 3}, 0, false, 0, 80), "eta ?")
}

func TestIsTerminal(t *testing.T) {
	t.Parallel()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	require.NoError(t, err)
	defer null.Close()
	require.False(t, isTerminal(null), "/dev/null is a character device but no terminal")
	require.False(t, isTerminal(&bytes.Buffer{}))
	require.Equal(t, 80, termWidth(null), "no terminal and no usable $COLUMNS: 80")
}

func TestShorten(t *testing.T) {
	t.Parallel()
	require.Equal(t, "abc", shorten("abc", 3))
	require.Equal(t, "ab…", shorten("abcd", 3))
	require.Equal(t, "ü…", shorten("üüü", 2))
}

func TestJSONLogsDurationsAsText(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	cfg := config.Default()
	cfg.Log.Format = "json"
	newLogger(&cfg, &b).Info("shutting down", "grace_period", 90*time.Second)
	require.Contains(t, b.String(), `"grace_period":"1m30s"`)
}
