package publisher

import (
	"errors"
	"strings"
)

var (
	// ErrInvalidTrigger is wrapped by every [*TriggerError] that
	// [DecodeTrigger] and [Publisher.Publish] return.
	ErrInvalidTrigger = errors.New("invalid trigger")

	// ErrInvalidID is returned (wrapped) by [Publisher.Await] for an id that
	// is not [ValidID].
	ErrInvalidID = errors.New("invalid trigger id")

	// ErrInvalidOption is wrapped by [New] when an [Option] has a bad value.
	ErrInvalidOption = errors.New("invalid option")

	// ErrNoStream is yielded by [Publisher.Watch] when no watched stream
	// exists or none has subjects that overlap the filter.
	ErrNoStream = errors.New("no stream matches the watch filter")

	// ErrEventIDMismatch marks an event whose id is not the trigger id its
	// subject names. falbridge never publishes one; a client with too wide
	// NATS permissions can forge one. [Publisher.Await] skips such events,
	// [Publisher.Watch] yields them with this error (and no decoded event).
	ErrEventIDMismatch = errors.New("event id does not match its subject")
)

// TriggerError is a trigger that failed to decode or validate. Field is the
// top-level JSON key at fault ("" for the body as a whole); Reason says what
// is wrong. It wraps [ErrInvalidTrigger].
type TriggerError struct {
	Field  string
	Reason string
}

// Error returns "trigger: <field>: <reason>", with "body" as the field when
// Field is empty.
func (e *TriggerError) Error() string {
	var b strings.Builder
	b.WriteString("trigger: ")
	if e.Field == "" {
		b.WriteString("body")
	} else {
		b.WriteString(e.Field)
	}
	b.WriteString(": ")
	b.WriteString(e.Reason)
	return b.String()
}

// Unwrap returns [ErrInvalidTrigger].
func (e *TriggerError) Unwrap() error { return ErrInvalidTrigger }

func triggerErr(field, reason string) *TriggerError {
	return &TriggerError{Field: field, Reason: reason}
}
