package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/publisher"
)

// streamMsg is one stored message read from a stream.
type streamMsg struct {
	Seq     uint64
	Subject string
	Header  nats.Header
	Data    []byte
	Time    time.Time
}

// tail reads the messages of stream matching filters among the n newest
// messages stored before sequence before (0: the end of the stream), oldest
// first. It reads at most n messages whatever the stream holds: the window
// is chosen by sequence, and one ordered consumer delivers it in batches.
// Pass nil filters to read every subject, and skip the others by subject:
// a consumer's pending count is arithmetic without a filter, but a scan of
// the rest of the stream with one (measured: the larger part of a page's
// time at 10,000 jobs).
func (c *Console) tail(ctx context.Context, stream string, filters []string, before uint64, n int) ([]streamMsg, error) {
	s, err := c.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	st := s.CachedInfo().State
	last := st.LastSeq
	if before > 0 && before-1 < last {
		last = before - 1
	}
	if last == 0 || last < st.FirstSeq || n <= 0 {
		return nil, nil
	}
	start := st.FirstSeq
	if last >= uint64(n) && last-uint64(n)+1 > start {
		start = last - uint64(n) + 1
	}
	return c.readRange(ctx, s, filters, start, last, n)
}

// readRange reads the messages matching filters with sequence in
// [start, last], at most limit of them.
func (c *Console) readRange(ctx context.Context, s jetstream.Stream, filters []string, start, last uint64, limit int) ([]streamMsg, error) {
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    start,
	})
	if err != nil {
		return nil, fmt.Errorf("read %s from %d: %w", s.CachedInfo().Config.Name, start, err)
	}
	defer c.dropConsumer(s, cons)
	info := cons.CachedInfo()
	want := int(min(info.NumPending, uint64(limit)))
	out := make([]streamMsg, 0, want)
	for len(out) < want {
		batch, err := cons.Fetch(min(want-len(out), 500), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return out, fmt.Errorf("read %s: %w", info.Stream, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			if md.Sequence.Stream > last {
				return out, nil
			}
			out = append(out, streamMsg{Seq: md.Sequence.Stream, Subject: m.Subject(), Header: m.Headers(), Data: m.Data(), Time: md.Timestamp})
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return out, fmt.Errorf("read %s: %w", info.Stream, err)
		}
		if got == 0 {
			break
		}
	}
	return out, nil
}

// pendingSince counts the messages matching filters stored at or after t,
// without reading them: an ordered consumer's pending count.
func (c *Console) pendingSince(ctx context.Context, s jetstream.Stream, filters []string, t time.Time) (uint64, error) {
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: filters,
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &t,
	})
	if err != nil {
		return 0, fmt.Errorf("count %s since %s: %w", s.CachedInfo().Config.Name, t.Format(time.RFC3339), err)
	}
	defer c.dropConsumer(s, cons)
	return cons.CachedInfo().NumPending, nil
}

// dropConsumer deletes an ordered consumer now rather than leaving it to
// the server's inactivity threshold.
func (c *Console) dropConsumer(s jetstream.Stream, cons jetstream.Consumer) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.DeleteConsumer(ctx, cons.CachedInfo().Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		c.log.Debug("console: delete ordered consumer", "err", err)
	}
}

// terminal is a result or error event read from the results stream.
type terminal struct {
	Seq    uint64
	At     time.Time
	Result *publisher.Result
	Error  *publisher.Error
}

// ID is the trigger id of the event.
func (t terminal) ID() string {
	if t.Result != nil {
		return t.Result.ID
	}
	return t.Error.ID
}

// ModelID is the event's model.
func (t terminal) ModelID() string {
	if t.Result != nil {
		return t.Result.ModelID
	}
	return t.Error.ModelID
}

// Metadata is the event's metadata.
func (t terminal) Metadata() json.RawMessage {
	if t.Result != nil {
		return t.Result.Metadata
	}
	return t.Error.Metadata
}

// decodeTerminal decodes a message of the results stream; ok is false for
// a message that is neither a result nor an error event, or whose id is
// not the one its subject names (forged).
func (c *Console) decodeTerminal(subject string, data []byte, seq uint64, at time.Time) (terminal, bool) {
	t := terminal{Seq: seq, At: at}
	switch {
	case strings.HasPrefix(subject, c.subjects.ResultsPrefix+"."):
		var r publisher.Result
		if json.Unmarshal(data, &r) != nil || subject != c.subjects.Result(r.ID) {
			return t, false
		}
		t.Result = &r
		if !r.CompletedAt.IsZero() {
			t.At = r.CompletedAt
		}
	case strings.HasPrefix(subject, c.subjects.ErrorsPrefix+"."):
		var e publisher.Error
		if json.Unmarshal(data, &e) != nil || subject != c.subjects.Error(e.ID) {
			return t, false
		}
		t.Error = &e
		if !e.At.IsZero() {
			t.At = e.At
		}
	default:
		return t, false
	}
	return t, true
}

// terminalOf returns the result or error event of id, or ok false. A
// forged event (its id not its subject's) is not the job's: ok false.
func (c *Console) terminalOf(ctx context.Context, id string) (terminal, bool, error) {
	res, ev, err := c.pub.Outcome(ctx, id)
	switch {
	case errors.Is(err, publisher.ErrEventIDMismatch):
		return terminal{}, false, nil
	case err != nil:
		return terminal{}, false, err
	case res == nil && ev == nil:
		return terminal{}, false, nil
	}
	return terminal{Result: res, Error: ev}, true, nil
}

// statusHistory returns up to StatusLimit status events of id, oldest
// first: the job's own subject only, so the read is as long as its history.
func (c *Console) statusHistory(ctx context.Context, id string) ([]publisher.Status, error) {
	s, err := c.js.Stream(ctx, c.streams.Status)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", c.streams.Status, err)
	}
	st := s.CachedInfo().State
	if st.Msgs == 0 {
		return nil, nil
	}
	msgs, err := c.readRange(ctx, s, []string{c.subjects.Status(id)}, st.FirstSeq, st.LastSeq, StatusLimit)
	if err != nil {
		return nil, err
	}
	out := make([]publisher.Status, 0, len(msgs))
	for _, m := range msgs {
		var ev publisher.Status
		if json.Unmarshal(m.Data, &ev) == nil && ev.ID == id {
			out = append(out, ev)
		}
	}
	return out, nil
}

// activeJobs returns the jobs not yet done among the newest window
// revisions of the bucket, newest first, and the number of records the
// window held. A record's state is read from its Falbridge-State header
// (consumer writes it on every record), so only the records in flight are
// decoded.
func (c *Console) activeJobs(ctx context.Context, window int) ([]publisher.JobInfo, int, error) {
	msgs, err := c.tail(ctx, c.kvStream, nil, 0, window)
	if err != nil {
		return nil, 0, err
	}
	var out []publisher.JobInfo
	records := 0
	for i := len(msgs) - 1; i >= 0; i-- {
		m := msgs[i]
		key, ok := strings.CutPrefix(m.Subject, c.kvPrefix)
		if !ok || m.Header.Get("KV-Operation") != "" || len(m.Data) == 0 {
			continue // a delete or purge
		}
		records++
		if m.Header.Get(publisher.StateHeader) == publisher.JobDone {
			continue
		}
		var j publisher.JobInfo
		if json.Unmarshal(m.Data, &j) != nil || j.ID != key || j.State == publisher.JobDone {
			continue // the sweep's lease, or not a job record
		}
		out = append(out, j)
	}
	return out, records, nil
}

// sweepPending is the pending count of the last sweep, from the sweep's
// lease record in the bucket (consumer/sweep.go), and when it was taken.
func (c *Console) sweepPending(ctx context.Context) (int, time.Time, bool) {
	kv, err := c.js.KeyValue(ctx, c.streams.JobsBucket)
	if err != nil {
		return 0, time.Time{}, false
	}
	e, err := kv.Get(ctx, sweepKey)
	if err != nil {
		return 0, time.Time{}, false
	}
	var l struct {
		Pending int       `json:"pending"`
		At      time.Time `json:"at"`
	}
	if json.Unmarshal(e.Value(), &l) != nil || l.At.IsZero() {
		return 0, time.Time{}, false
	}
	return l.Pending, l.At, true
}

// sweepKey is consumer's sweep lease record key.
const sweepKey = "falbridge.sweep"
