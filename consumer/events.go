package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/publisher"
)

// emitter publishes the events downstream of a job.
type emitter struct {
	js       jetstream.JetStream
	nc       *nats.Conn
	subjects publisher.Subjects
	pattern  string // subjects.TerminalPattern(), derived once
	// pub reads what another path published (existingOutcome).
	pub *publisher.Publisher
	log *slog.Logger
}

// filter matches both terminal subjects of id (fal.*.<id>), or is "" (see
// [publisher.Subjects.TerminalPattern]); the pattern is derived once, not on
// every publish.
func (e *emitter) filter(id string) string {
	if e.pattern == "" {
		return ""
	}
	return e.pattern + "." + id
}

// publishTerminal publishes the one terminal event of a job. It returns
// published=false, with no error, when a terminal event for the id already
// exists: the Nats-Msg-Id dedupe catches a retry inside the duplicate window,
// and the expected-last-subject-sequence of 0 on filter catches one at
// any later time, as long as the results stream keeps the first event.
func (e *emitter) publishTerminal(ctx context.Context, id, subject, kind string, payload []byte, copyTo string) (bool, error) {
	opts := []jetstream.PublishOpt{jetstream.WithMsgID(id)}
	if f := e.filter(id); f != "" {
		opts = append(opts, jetstream.WithExpectLastSequenceForSubject(0, f))
	}
	msg := &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{publisher.EventHeader: []string{kind}}}
	ack, err := e.js.PublishMsg(ctx, msg, opts...)
	if isWrongLastSequence(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("publish %s %s: %w", kind, subject, err)
	}
	if ack.Duplicate {
		return false, nil
	}
	if copyTo != "" {
		// A convenience copy for the trigger's result_subject: core NATS,
		// at most once. The durable record is the event in the results stream.
		cp := &nats.Msg{Subject: copyTo, Data: payload, Header: nats.Header{publisher.EventHeader: []string{kind}}}
		if err := e.nc.PublishMsg(cp); err != nil {
			e.log.Warn("copy to result_subject failed", "trigger_id", id, "subject", copyTo, "err", err)
		}
	}
	return true, nil
}

// existingOutcome reads the terminal event already published for id and
// returns "result" or its error code ("unknown" if it cannot be read). Used
// only when a publish was refused, so it costs nothing on the hot path.
func (e *emitter) existingOutcome(ctx context.Context, id string) string {
	res, ev, err := e.pub.Outcome(ctx, id)
	switch {
	case err != nil:
		e.log.Debug("read the terminal event another path published", "trigger_id", id, "err", err)
	case res != nil:
		return "result"
	case ev != nil && ev.Code != "":
		return string(ev.Code)
	}
	return "unknown"
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// encodeResult encodes a result event; tooBig reports that it cannot fit in
// one message (its output is fal's, and is never cut).
func (e *emitter) encodeResult(r *publisher.Result) (b []byte, tooBig bool, err error) {
	b, err = marshalNoEscape(r)
	if err != nil {
		return nil, false, fmt.Errorf("encode result %s: %w", r.ID, err)
	}
	return b, len(b) > bodyLimit(e.nc.MaxPayload()), nil
}

func (e *emitter) publishResult(ctx context.Context, r *publisher.Result, b []byte, copyTo string) (bool, error) {
	return e.publishTerminal(ctx, r.ID, e.subjects.Result(r.ID), "result", b, copyTo)
}

func (e *emitter) publishError(ctx context.Context, ev *publisher.Error, copyTo string) (bool, error) {
	b, err := encodeError(ev, bodyLimit(e.nc.MaxPayload()))
	if err != nil {
		return false, fmt.Errorf("encode error event %s: %w", ev.ID, err)
	}
	return e.publishTerminal(ctx, ev.ID, e.subjects.Error(ev.ID), "error", b, copyTo)
}

// publishStatus sends a progress event. Progress is best effort: a core
// publish (the status stream still captures it) costs no round trip.
func (e *emitter) publishStatus(st *publisher.Status) {
	b, err := marshalNoEscape(st)
	if err != nil {
		e.log.Warn("encode status event", "trigger_id", st.ID, "err", err)
		return
	}
	msg := &nats.Msg{Subject: e.subjects.Status(st.ID), Data: b, Header: nats.Header{publisher.EventHeader: []string{"status"}}}
	if err := e.nc.PublishMsg(msg); err != nil {
		e.log.Debug("status publish failed", "trigger_id", st.ID, "err", err)
	}
}
