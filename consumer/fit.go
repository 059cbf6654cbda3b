package consumer

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/falbridge/falbridge/publisher"
)

// Everything falbridge writes fits in one NATS message. Records and events
// embed what users sent (the trigger, its metadata) and what fal sent (error
// details, outputs), any of which can be large; a message over the server's
// max_payload is refused for good, so retrying it would loop for ever while
// it holds a worker and an in-flight slot. Instead the large parts are cut,
// with a flag saying so, and an output that cannot fit becomes a small
// result_too_large error carrying fal's request id.

// headerRoom is kept free of a message's max payload for its headers.
const headerRoom = 4 << 10

// fitReserve is room kept for a job record's own fields beside the
// trigger and metadata it embeds (see parkable).
const fitReserve = 8 << 10

// minKeep is the least of a cut field that is kept.
const minKeep = 256

// bodyLimit is the largest body that fits in one message under maxPayload.
func bodyLimit(maxPayload int64) int {
	return int(max(maxPayload-headerRoom, 2*headerRoom))
}

// cutJSON returns a JSON string holding the start of raw, at most keep
// bytes of it, cut on a UTF-8 boundary.
func cutJSON(raw json.RawMessage, keep int) json.RawMessage {
	if keep >= len(raw) {
		keep = len(raw)
	}
	s := raw[:max(keep, 0)]
	for len(s) > 0 && !utf8.Valid(s) {
		s = s[:len(s)-1]
	}
	b, _ := marshalNoEscape(string(s))
	return b
}

// shrink cuts the fields in order until encode's output fits limit. It
// reports whether it cut anything and returns the last encoding.
func shrink(limit int, encode func() ([]byte, error), fields ...*json.RawMessage) ([]byte, bool, error) {
	b, err := encode()
	if err != nil || len(b) <= limit {
		return b, false, err
	}
	for _, f := range fields {
		over := len(b) - limit
		if len(*f) == 0 {
			continue
		}
		// A JSON string of the kept part may grow by escaping: keep less.
		*f = cutJSON(*f, max(len(*f)-over*2-64, minKeep))
		if b, err = encode(); err != nil || len(b) <= limit {
			return b, true, err
		}
	}
	return b, true, nil
}

// encodeError encodes an error event cut to fit limit.
func encodeError(ev *publisher.Error, limit int) ([]byte, error) {
	b, cut, err := shrink(limit, func() ([]byte, error) { return marshalNoEscape(ev) }, &ev.Detail, &ev.Trigger, &ev.Metadata)
	if cut {
		ev.Truncated = true
		b, err = marshalNoEscape(ev)
	}
	if err == nil && len(b) > limit && len(ev.Message) > minKeep {
		ev.Message = ev.Message[:minKeep] + "…"
		b, err = marshalNoEscape(ev)
	}
	return b, err
}

// encodeJob encodes a job record cut to fit limit: the echo of the trigger
// goes first (the input was already sent to fal from the trigger message
// itself), the metadata last.
func encodeJobFit(j *job, limit int) ([]byte, error) {
	enc := func() ([]byte, error) { return marshalNoEscape(j) }
	b, cut, err := shrink(limit, enc, &j.Trigger, &j.Metadata)
	if cut {
		j.Truncated = true
		b, err = enc()
	}
	return b, err
}
