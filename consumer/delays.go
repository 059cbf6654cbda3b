package consumer

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
)

// delays is the one retry policy of the engine: exponential from min to
// max with ±20 % jitter, built on backoff/v4. Every wait the pool asks the
// server for (a Nak delay, a pause between KV writes) comes from a delays
// value made from config, never from a formula of its own.
type delays struct {
	min, max time.Duration
}

// after is the wait before attempt number attempt (1 is the first retry),
// never less than floor (fal's Retry-After, say).
func (d delays) after(attempt int, floor time.Duration) time.Duration {
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(d.min),
		backoff.WithMaxInterval(d.max),
		backoff.WithRandomizationFactor(0.2),
		backoff.WithMultiplier(2),
		backoff.WithMaxElapsedTime(0),
	)
	next := d.min
	for range min(max(attempt, 1), 64) {
		next = b.NextBackOff()
		if next >= d.max {
			break
		}
	}
	return max(next, floor)
}

// jittered spreads a fixed interval over [d, d×1.2], so that many jobs armed
// together do not come due in lockstep.
func jittered(d time.Duration) time.Duration {
	return d + time.Duration(rand.Int64N(int64(d)/5+1))
}

// natsDelays paces retries after NATS errors (a KV write, a publish).
var natsDelays = delays{min: 100 * time.Millisecond, max: 10 * time.Second}

// marshalNoEscape encodes v as JSON without HTML escaping: a prompt full of
// markup stays the size it was (json.Marshal turns each '<' into 6 bytes).
func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
