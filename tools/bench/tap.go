package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
)

// tap counts every message on the server by subject class, on a connection
// of its own (BENCH_SUBJECTS=1): where the messages per job go. It adds
// load, so it never runs in a measured round unless asked for.
type tap struct {
	mu     sync.Mutex
	counts map[string]int
	sub    *nats.Subscription
	nc     *nats.Conn
}

func startTap(url string) (*tap, error) {
	nc, err := nats.Connect(url, nats.Name("bench-tap"))
	if err != nil {
		return nil, fmt.Errorf("tap: %w", err)
	}
	t := &tap{counts: map[string]int{}, nc: nc}
	t.sub, err = nc.Subscribe(">", func(m *nats.Msg) {
		c := subjectClass(m.Subject)
		if strings.HasPrefix(m.Subject, "$KV.") {
			// Which write of the record it is: its state (and outcome).
			var rec struct{ State, Outcome string }
			_ = json.Unmarshal(m.Data, &rec)
			c += " state=" + rec.State
			if rec.State == "" {
				c += fmt.Sprintf("(%d bytes, reply %q, headers %v)", len(m.Data), subjectClass(m.Reply), m.Header)
			}
			if rec.Outcome != "" {
				c += "/" + rec.Outcome
			}
		}
		t.mu.Lock()
		t.counts[c]++
		t.mu.Unlock()
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("tap: %w", err)
	}
	_ = t.sub.SetPendingLimits(-1, -1)
	return t, nc.Flush()
}

// stop ends the tap and returns its counts.
func (t *tap) stop() map[string]int {
	_ = t.sub.Unsubscribe()
	t.nc.Close()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.counts
}

// subjectClass drops the per-job parts of a subject: ids, inboxes, ack
// sequences.
func subjectClass(s string) string {
	tok := strings.Split(s, ".")
	keep := 2
	switch {
	case strings.HasPrefix(s, "$JS.API.DIRECT.GET."), strings.HasPrefix(s, "$JS.API.STREAM.MSG.GET."):
		keep = 5
	case strings.HasPrefix(s, "$JS.API.CONSUMER.MSG.NEXT."):
		keep = 7
	case strings.HasPrefix(s, "$JS.API."):
		keep = 4
	case strings.HasPrefix(s, "$JS.ACK."):
		keep = 4
	case strings.HasPrefix(s, "$KV."):
		keep = 2
	case tok[0] == "_INBOX":
		keep = 1
	}
	if len(tok) <= keep {
		return s
	}
	return strings.Join(tok[:keep], ".") + ".*"
}

func printTap(out io.Writer, kind string, counts map[string]int, jobs int) {
	type kv struct {
		k string
		n int
	}
	var list []kv
	for k, n := range counts {
		list = append(list, kv{k, n})
	}
	slices.SortFunc(list, func(a, b kv) int { return b.n - a.n })
	fmt.Fprintf(out, "  messages by subject during %s's throughput phase and tail, per job:\n", kind)
	for _, e := range list {
		if per := float64(e.n) / float64(jobs); per >= 0.01 {
			fmt.Fprintf(out, "    %6.2f  %s\n", per, e.k)
		}
	}
}
