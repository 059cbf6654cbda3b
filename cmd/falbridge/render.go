package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/falbridge/falbridge/publisher"
)

// media is one file an output points to: an object with a "url" field.
type media struct {
	URL         string
	ContentType string
	Width       int
	Height      int
}

// findMedia walks output for objects with a non-empty string "url" field,
// in document order for arrays and key order for objects.
func findMedia(output json.RawMessage) []media {
	if len(output) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(output))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	var out []media
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			if u, ok := x["url"].(string); ok && u != "" {
				m := media{URL: u}
				m.ContentType, _ = x["content_type"].(string)
				m.Width, m.Height = jsonInt(x["width"]), jsonInt(x["height"])
				out = append(out, m)
				return
			}
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				walk(x[k])
			}
		}
	}
	walk(v)
	return out
}

func jsonInt(v any) int {
	n, ok := v.(json.Number)
	if !ok {
		return 0
	}
	i, err := n.Int64()
	if err != nil {
		return 0
	}
	return int(i)
}

// maxShownOutput is the largest output printed in full by the human form;
// larger ones are left to --json.
const maxShownOutput = 8 << 10

// printResult writes a result for people: a header line, the media it
// points to, then the output.
func printResult(w io.Writer, r *publisher.Result) {
	fmt.Fprintf(w, "result  %s  %s", r.ID, r.ModelID)
	if r.RequestID != "" {
		fmt.Fprintf(w, "  request %s", r.RequestID)
	}
	if !r.ReceivedAt.IsZero() && !r.CompletedAt.IsZero() {
		fmt.Fprintf(w, "  took %s", roundDuration(r.CompletedAt.Sub(r.ReceivedAt)))
	}
	fmt.Fprintln(w)
	for _, m := range findMedia(r.Output) {
		fmt.Fprintf(w, "  %s\n", describeMedia(m))
	}
	if len(r.Metadata) > 0 {
		fmt.Fprintf(w, "  metadata: %s\n", shorten(string(r.Metadata), 200))
	}
	if len(r.Output) > maxShownOutput {
		fmt.Fprintf(w, "output: %d bytes (use --json to see it all)\n", len(r.Output))
		return
	}
	var b bytes.Buffer
	if json.Indent(&b, r.Output, "  ", "  ") != nil {
		b.Reset()
		b.Write(r.Output)
	}
	fmt.Fprintf(w, "output:\n  %s\n", b.String())
}

func describeMedia(m media) string {
	var parts []string
	if m.ContentType != "" {
		parts = append(parts, m.ContentType)
	}
	if m.Width > 0 && m.Height > 0 {
		parts = append(parts, fmt.Sprintf("%dx%d", m.Width, m.Height))
	}
	parts = append(parts, shorten(m.URL, 160))
	return strings.Join(parts, "  ")
}

// printError writes an error event for people.
func printError(w io.Writer, e *publisher.Error) {
	fmt.Fprintf(w, "error  %s  %s", e.ID, e.Code)
	if e.ModelID != "" {
		fmt.Fprintf(w, "  %s", e.ModelID)
	}
	if e.RequestID != "" {
		fmt.Fprintf(w, "  request %s", e.RequestID)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  %s\n", e.Message)
	if len(e.Detail) > 0 {
		fmt.Fprintf(w, "  detail: %s\n", shorten(string(e.Detail), 600))
	}
	if len(e.Metadata) > 0 {
		fmt.Fprintf(w, "  metadata: %s\n", shorten(string(e.Metadata), 200))
	}
}

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// statusText is the one-line form of a status event: state, queue
// position, last log message.
func statusText(s *publisher.Status) string {
	var b strings.Builder
	b.WriteString(s.State)
	if s.QueuePosition != nil && s.State == publisher.StateInQueue {
		fmt.Fprintf(&b, " (position %d)", *s.QueuePosition)
	}
	if logs := decodeLogs(s.Logs); len(logs) > 0 {
		fmt.Fprintf(&b, "  %s", logs[len(logs)-1].Message)
	}
	if len(s.Partial) > 0 {
		fmt.Fprintf(&b, "  partial: %s", shorten(string(s.Partial), 120))
	}
	return b.String()
}

// falLog is one entry of fal's status logs.
type falLog struct {
	Message   string `json:"message"`
	Level     string `json:"level"`
	Timestamp string `json:"timestamp"`
}

func decodeLogs(raw json.RawMessage) []falLog {
	if len(raw) == 0 {
		return nil
	}
	var logs []falLog
	if json.Unmarshal(raw, &logs) != nil {
		return nil
	}
	return logs
}

// shorten cuts s to at most n runes, marking the cut with "…".
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// roundDuration rounds d for display: ms below a second, else 0.1 s.
func roundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}
