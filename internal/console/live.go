package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/publisher"
)

// liveEvent is one line of the live feed: a job moved.
type liveEvent struct {
	ID            string    `json:"id"`
	Kind          string    `json:"kind"` // "job", "status", "result", "error"
	ModelID       string    `json:"model_id,omitempty"`
	Tenant        string    `json:"tenant,omitempty"`
	State         string    `json:"state,omitempty"`
	Outcome       string    `json:"outcome,omitempty"`
	QueuePosition *int      `json:"queue_position,omitempty"`
	ReceivedAt    time.Time `json:"received_at,omitzero"`
	At            time.Time `json:"at,omitzero"`
	RetryOf       string    `json:"retry_of,omitempty"`
}

// liveBuffer is how many events may wait for a slow browser before the
// feed drops it (the page reconnects and reloads).
const liveBuffer = 256

// keepAlive is the interval of SSE comments that keep proxies from closing
// an idle feed.
const keepAlive = 15 * time.Second

// liveFeed streams job movements as server-sent events, from ordered
// consumers on the bucket (claims, submits, ends), the status stream
// (queue position, logs) and the results stream, all from now on. It ends
// when the browser leaves, a slow browser falls liveBuffer behind, or the
// console is closed.
func (c *Console) liveFeed(w http.ResponseWriter, r *http.Request) {
	select {
	case <-c.quit:
		http.Error(w, "console closing", http.StatusServiceUnavailable)
		return
	default:
	}
	c.live.Add(1)
	defer c.live.Done()
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	events := make(chan liveEvent, liveBuffer)
	push := func(e liveEvent) {
		select {
		case events <- e:
		default:
			cancel(fmt.Errorf("live feed: browser %d events behind", liveBuffer))
		}
	}
	sources := []struct {
		stream  string
		filters []string
	}{
		{c.kvStream, []string{c.kvPrefix + ">"}},
		{c.streams.Status, []string{c.subjects.StatusPrefix + ".>"}},
		{c.streams.Results, []string{c.subjects.ResultsPrefix + ".>", c.subjects.ErrorsPrefix + ".>"}},
	}
	for _, src := range sources {
		stop, err := c.follow(ctx, src.stream, src.filters, push)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		defer stop()
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprint(w, "retry: 2000\n: live\n\n")
	fl.Flush()
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.quit:
			return
		case <-tick.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		case e := <-events:
			b, _ := json.Marshal(e)
			if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

// follow starts an ordered consumer on stream from new messages on and
// hands each decoded event to push; stop ends it and deletes the consumer.
func (c *Console) follow(ctx context.Context, stream string, filters []string, push func(liveEvent)) (func(), error) {
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: filters, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		return nil, fmt.Errorf("follow %s: %w", stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if e, ok := c.liveEventOf(m); ok {
			push(e)
		}
	})
	if err != nil {
		c.dropConsumer(s, cons)
		return nil, fmt.Errorf("follow %s: %w", stream, err)
	}
	return func() {
		cc.Stop()
		<-cc.Closed()
		c.dropConsumer(s, cons)
	}, nil
}

func (c *Console) liveEventOf(m jetstream.Msg) (liveEvent, bool) {
	subj := m.Subject()
	switch {
	case strings.HasPrefix(subj, c.kvPrefix):
		key := strings.TrimPrefix(subj, c.kvPrefix)
		var j publisher.JobInfo
		if m.Headers().Get("KV-Operation") != "" || json.Unmarshal(m.Data(), &j) != nil || j.ID != key {
			return liveEvent{}, false
		}
		return liveEvent{ID: j.ID, Kind: "job", ModelID: j.ModelID, Tenant: tenantOf(j.Metadata), State: j.State,
			Outcome: j.Outcome, ReceivedAt: j.ReceivedAt, At: j.CompletedAt, RetryOf: retryOf(j.Metadata)}, true
	case strings.HasPrefix(subj, c.subjects.StatusPrefix+"."):
		var s struct {
			ID            string    `json:"id"`
			State         string    `json:"state"`
			QueuePosition *int      `json:"queue_position"`
			At            time.Time `json:"at"`
		}
		if json.Unmarshal(m.Data(), &s) != nil || subj != c.subjects.Status(s.ID) {
			return liveEvent{}, false
		}
		return liveEvent{ID: s.ID, Kind: "status", State: s.State, QueuePosition: s.QueuePosition, At: s.At}, true
	default:
		md, _ := m.Metadata()
		var seq uint64
		var at time.Time
		if md != nil {
			seq, at = md.Sequence.Stream, md.Timestamp
		}
		t, ok := c.decodeTerminal(subj, m.Data(), seq, at)
		if !ok {
			return liveEvent{}, false
		}
		e := liveEvent{ID: t.ID(), ModelID: t.ModelID(), Tenant: tenantOf(t.Metadata()), State: publisher.JobDone, At: t.At, RetryOf: retryOf(t.Metadata())}
		if t.Result != nil {
			e.Kind, e.Outcome, e.ReceivedAt = "result", "result", t.Result.ReceivedAt
		} else {
			e.Kind, e.Outcome = "error", string(t.Error.Code)
		}
		return e, true
	}
}
