package publisher

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Publisher publishes triggers and reads their events. It is safe for
// concurrent use.
type Publisher struct {
	js       jetstream.JetStream
	subjects Subjects
	terminal string // subjects.TerminalPattern(), derived once
}

// Option configures a [Publisher]. Options that get bad values make [New]
// fail with an error wrapping [ErrInvalidOption].
type Option func(*Publisher) error

// WithSubjects sets the subjects and streams to use. Empty fields keep their
// defaults ([Subjects.WithDefaults]); the result must pass
// [Subjects.Validate]. Defaults to [DefaultSubjects].
func WithSubjects(s Subjects) Option {
	return func(p *Publisher) error {
		s = s.WithDefaults()
		if err := s.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidOption, err)
		}
		p.subjects = s
		return nil
	}
}

// New returns a Publisher that uses js. Options:
//   - [WithSubjects]: subjects and streams, default [DefaultSubjects].
//
// The streams themselves are provisioned by the consumer (falbridge serve),
// not here.
func New(js jetstream.JetStream, opts ...Option) (*Publisher, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: nil JetStream", ErrInvalidOption)
	}
	p := &Publisher{js: js, subjects: DefaultSubjects()}
	for _, opt := range opts {
		if err := opt(p); err != nil {
			return nil, err
		}
	}
	p.terminal = p.subjects.TerminalPattern()
	return p, nil
}

// Subjects returns the subjects and streams p uses.
func (p *Publisher) Subjects() Subjects { return p.subjects }

// NewID returns a random trigger id: 26 characters of base32 (A–Z, 2–7)
// from crypto/rand, 128 bits of randomness. It satisfies [ValidID].
func NewID() string { return rand.Text() }

// Publish validates t, assigns it an id when t.ID is empty ([NewID]) and
// publishes it on [Subjects.RequestSubject](id) with a Nats-Msg-Id header
// equal to the id, so that publishing the same id again within the stream's
// duplicate window is dropped by JetStream (the returned ack then has
// Duplicate set). It returns the id and JetStream's ack; t is not modified.
//
// Validation applies the [DecodeTrigger] rules to t's JSON encoding; an
// empty t.Input is sent as {}. Errors name the id and wrap the cause
// ([ErrInvalidTrigger] with a [*TriggerError], or the JetStream error).
func (p *Publisher) Publish(ctx context.Context, t *Trigger) (string, *jetstream.PubAck, error) {
	if t == nil {
		return "", nil, fmt.Errorf("publish: %w", triggerErr("", "nil trigger"))
	}
	c := *t
	if c.ID == "" {
		c.ID = NewID()
	}
	if len(c.Input) == 0 {
		c.Input = json.RawMessage("{}")
	}
	if !json.Valid(c.Input) {
		return c.ID, nil, fmt.Errorf("publish %s: %w", c.ID, triggerErr("input", "must be a JSON object"))
	}
	if len(c.Metadata) > 0 && !json.Valid(c.Metadata) {
		return c.ID, nil, fmt.Errorf("publish %s: %w", c.ID, triggerErr("metadata", "not valid JSON"))
	}
	body, err := json.Marshal(&c)
	if err != nil {
		return c.ID, nil, fmt.Errorf("publish %s: %w", c.ID, triggerErr("", err.Error()))
	}
	canon, err := DecodeTrigger(body)
	if err != nil {
		return c.ID, nil, fmt.Errorf("publish %s: %w", c.ID, err)
	}
	if body, err = json.Marshal(canon); err != nil {
		return c.ID, nil, fmt.Errorf("publish %s: %w", c.ID, err)
	}
	ack, err := p.js.Publish(ctx, p.subjects.RequestSubject(c.ID), body, jetstream.WithMsgID(c.ID))
	if err != nil {
		return c.ID, nil, fmt.Errorf("publish %s: %w", c.ID, err)
	}
	return c.ID, ack, nil
}

// Await waits for the terminal event of trigger id and returns its
// [*Result], or its [*Error] as the error (use errors.As, or errors.Is with
// [Error.Is]). An event whose id is not id (forged by a client allowed to
// publish on falbridge's subjects) is skipped. It reads the results stream with an ordered consumer filtered
// on [Subjects.Result](id) and [Subjects.Error](id) from the start of the
// stream, so an event published before Await was called is found as long
// as the stream retains it.
//
// Await blocks until an event arrives or ctx is done; then it returns an
// error wrapping ctx's error. An id that is not [ValidID] gives
// [ErrInvalidID]. The server-side consumer is deleted before Await returns.
func (p *Publisher) Await(ctx context.Context, id string) (*Result, error) {
	if !ValidID(id) {
		return nil, fmt.Errorf("await %q: %w", id, ErrInvalidID)
	}
	resSubj, errSubj := p.subjects.Result(id), p.subjects.Error(id)
	sub, err := p.subscribe(ctx, p.subjects.ResultsStream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{resSubj, errSubj},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return nil, fmt.Errorf("await %s: %w", id, err)
	}
	defer sub.close()

	for {
		msg, err := sub.it.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("await %s: %w", id, err)
		}
		switch msg.Subject() {
		case errSubj:
			var e Error
			if err := json.Unmarshal(msg.Data(), &e); err != nil {
				return nil, fmt.Errorf("await %s: decode error event: %w", id, err)
			}
			if e.ID != id {
				continue // forged: see ErrEventIDMismatch
			}
			return nil, &e
		default:
			var r Result
			if err := json.Unmarshal(msg.Data(), &r); err != nil {
				return nil, fmt.Errorf("await %s: decode result event: %w", id, err)
			}
			if r.ID != id {
				continue
			}
			return &r, nil
		}
	}
}

// subscription is an ordered consumer and its message iterator.
type subscription struct {
	js     jetstream.JetStream
	stream string
	cons   jetstream.Consumer
	it     jetstream.MessagesContext
}

func (p *Publisher) subscribe(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig) (*subscription, error) {
	cons, err := p.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, err
	}
	s := &subscription{js: p.js, stream: stream, cons: cons}
	it, err := cons.Messages()
	if err != nil {
		s.deleteConsumer()
		return nil, err
	}
	s.it = it
	return s, nil
}

// close stops the iterator and deletes the server-side consumer. The
// iterator's own goroutines (nats.go's) end right after Stop; their
// Closed channel is not waited for, as it does not fire reliably for
// Messages iterators.
func (s *subscription) close() {
	if s.it != nil {
		s.it.Stop()
	}
	s.deleteConsumer()
}

func (s *subscription) deleteConsumer() {
	info := s.cons.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Best effort: the server removes an inactive ordered consumer anyway.
	_ = s.js.DeleteConsumer(ctx, s.stream, info.Name)
}
