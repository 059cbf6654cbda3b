package publisher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/internal/subject"
)

// Event is one message seen by [Publisher.Watch]. Exactly one of Result,
// Error and Status is set when the subject has the results, errors or
// status prefix and the payload decoded; Data always holds the payload.
type Event struct {
	// Subject is the message subject, e.g. "fal.results.<id>".
	Subject string
	// Sequence is the message's sequence in Stream.
	Sequence uint64
	// Stream is the stream the message was read from.
	Stream string
	// Time is when the stream stored the message.
	Time time.Time
	// Data is the raw payload.
	Data   []byte
	Result *Result
	Error  *Error
	Status *Status
}

// decodedID is the id the decoded event carries ("" if none).
func (e Event) decodedID() string {
	switch {
	case e.Result != nil:
		return e.Result.ID
	case e.Error != nil:
		return e.Error.ID
	case e.Status != nil:
		return e.Status.ID
	}
	return ""
}

// ID returns the trigger id of the event: the decoded event's id, else the
// last token of the subject.
func (e Event) ID() string {
	switch {
	case e.Result != nil && e.Result.ID != "":
		return e.Result.ID
	case e.Error != nil && e.Error.ID != "":
		return e.Error.ID
	case e.Status != nil && e.Status.ID != "":
		return e.Status.ID
	}
	return e.Subject[strings.LastIndexByte(e.Subject, '.')+1:]
}

// WatchOption sets where [Publisher.Watch] starts. The default is new
// messages only (those stored after the watch started); the last option
// given wins.
type WatchOption func(*watchOptions)

type watchOptions struct {
	policy jetstream.DeliverPolicy
	seq    uint64
	time   time.Time
}

// FromStart makes Watch start with the first message each stream holds.
func FromStart() WatchOption {
	return func(o *watchOptions) { o.policy = jetstream.DeliverAllPolicy }
}

// FromSequence makes Watch start at stream sequence seq (0 means
// [FromStart]). Sequences are per stream and the option applies to every
// watched stream, so it is most useful with a filter that lies in one
// stream, e.g. to resume after the Sequence of the last [Event] seen.
func FromSequence(seq uint64) WatchOption {
	return func(o *watchOptions) {
		if seq == 0 {
			o.policy = jetstream.DeliverAllPolicy
			return
		}
		o.policy, o.seq = jetstream.DeliverByStartSequencePolicy, seq
	}
}

// FromTime makes Watch start with the first message stored at or after t.
func FromTime(t time.Time) WatchOption {
	return func(o *watchOptions) { o.policy, o.time = jetstream.DeliverByStartTimePolicy, t }
}

// Watch returns an iterator over the events on subjects matching filter (a
// NATS subject, wildcards allowed). The empty filter means every result,
// error and status event: "<results prefix>.>", "<errors prefix>.>" and
// "<status prefix>.>".
//
// Watch reads JetStream, not core NATS: one ordered consumer on each of the
// results and status streams whose subjects overlap the filter (a stream
// that does not exist is skipped), merged into one sequence. Events of one
// stream arrive in stream order; there is no order between streams. Reading
// a stream means status events are not lost when the watcher is slow and
// that [FromSequence] and [FromTime] can replay them while the status
// stream keeps them.
//
// Nothing happens until the loop starts. The iterator ends when ctx is done
// (without an error; check ctx.Err()), after yielding an error when a
// consumer fails or no stream matches ([ErrNoStream]), or when the loop
// exits; in every case the goroutines Watch started have ended, the
// iterators are stopped and the server-side consumers are deleted before
// the loop statement returns. An event that fails to decode
// is yielded with its error (and Data set), and the iteration goes on.
func (p *Publisher) Watch(ctx context.Context, filter string, opts ...WatchOption) iter.Seq2[Event, error] {
	o := watchOptions{policy: jetstream.DeliverNewPolicy}
	for _, opt := range opts {
		opt(&o)
	}
	return func(yield func(Event, error) bool) {
		filters := []string{filter}
		if filter == "" {
			filters = []string{p.subjects.ResultsPrefix + ".>", p.subjects.ErrorsPrefix + ".>", p.subjects.StatusPrefix + ".>"}
		} else if !subject.Valid(filter, true) {
			yield(Event{}, fmt.Errorf("watch %q: invalid subject filter", filter))
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		var subs []*subscription
		defer func() {
			cancel()
			wg.Wait()
			for _, s := range subs {
				s.close()
			}
		}()

		subs, err := p.openWatch(ctx, filters, o)
		if err != nil {
			if ctx.Err() == nil {
				yield(Event{}, fmt.Errorf("watch %q: %w", filter, err))
			}
			return
		}

		type item struct {
			msg jetstream.Msg
			err error
		}
		ch := make(chan item)
		for _, s := range subs {
			wg.Go(func() {
				for {
					msg, err := s.it.Next(jetstream.NextContext(ctx))
					select {
					case ch <- item{msg, err}:
					case <-ctx.Done():
						return
					}
					if err != nil {
						return
					}
				}
			})
		}
		for {
			select {
			case <-ctx.Done():
				return
			case it := <-ch:
				if it.err != nil {
					if ctx.Err() == nil {
						yield(Event{}, fmt.Errorf("watch %q: %w", filter, it.err))
					}
					return
				}
				if !yield(p.event(it.msg)) {
					return
				}
			}
		}
	}
}

// openWatch opens an ordered consumer on each watched stream whose subjects
// overlap filters. On error it returns the subscriptions opened so far.
func (p *Publisher) openWatch(ctx context.Context, filters []string, o watchOptions) ([]*subscription, error) {
	var subs []*subscription
	streams := []string{p.subjects.ResultsStream}
	if p.subjects.StatusStream != p.subjects.ResultsStream {
		streams = append(streams, p.subjects.StatusStream)
	}
	for _, name := range streams {
		st, err := p.js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return subs, fmt.Errorf("stream %s: %w", name, err)
		}
		var matched []string
		for _, f := range filters {
			for _, ss := range st.CachedInfo().Config.Subjects {
				if subject.Overlap(f, ss) {
					matched = append(matched, f)
					break
				}
			}
		}
		if len(matched) == 0 {
			continue
		}
		cfg := jetstream.OrderedConsumerConfig{
			FilterSubjects: matched,
			DeliverPolicy:  o.policy,
		}
		switch o.policy {
		case jetstream.DeliverByStartSequencePolicy:
			cfg.OptStartSeq = o.seq
		case jetstream.DeliverByStartTimePolicy:
			t := o.time
			cfg.OptStartTime = &t
		}
		sub, err := p.subscribe(ctx, name, cfg)
		if err != nil {
			return subs, fmt.Errorf("stream %s: %w", name, err)
		}
		subs = append(subs, sub)
	}
	if len(subs) == 0 {
		return nil, ErrNoStream
	}
	return subs, nil
}

// event turns a message into an Event, decoding it by subject prefix.
func (p *Publisher) event(msg jetstream.Msg) (Event, error) {
	ev, err := p.decodeEvent(msg.Subject(), msg.Data())
	if md, mdErr := msg.Metadata(); mdErr == nil {
		ev.Stream, ev.Sequence, ev.Time = md.Stream, md.Sequence.Stream, md.Timestamp
	}
	if err != nil {
		return ev, fmt.Errorf("watch: %w", err)
	}
	return ev, nil
}

// decodeEvent decodes the payload of a message on subject by the subject's
// prefix (results, errors or status; any other subject gives an Event with
// Data only). A payload that does not decode, or whose id is not the one its
// subject names ([ErrEventIDMismatch]), gives an error and no decoded event.
func (p *Publisher) decodeEvent(subject string, data []byte) (Event, error) {
	ev := Event{Subject: subject, Data: data}
	var (
		v      any
		kind   string
		prefix string
	)
	switch {
	case strings.HasPrefix(ev.Subject, p.subjects.ResultsPrefix+"."):
		ev.Result = new(Result)
		v, kind, prefix = ev.Result, "result", p.subjects.ResultsPrefix
	case strings.HasPrefix(ev.Subject, p.subjects.ErrorsPrefix+"."):
		ev.Error = new(Error)
		v, kind, prefix = ev.Error, "error", p.subjects.ErrorsPrefix
	case strings.HasPrefix(ev.Subject, p.subjects.StatusPrefix+"."):
		ev.Status = new(Status)
		v, kind, prefix = ev.Status, "status", p.subjects.StatusPrefix
	default:
		return ev, nil
	}
	if err := json.Unmarshal(ev.Data, v); err != nil {
		ev.Result, ev.Error, ev.Status = nil, nil, nil
		return ev, fmt.Errorf("decode %s event on %s: %w", kind, ev.Subject, err)
	}
	if got, want := ev.decodedID(), ev.Subject[len(prefix)+1:]; got != want {
		ev.Result, ev.Error, ev.Status = nil, nil, nil
		return ev, fmt.Errorf("%s event on %s carries id %q: %w", kind, ev.Subject, got, ErrEventIDMismatch)
	}
	return ev, nil
}
