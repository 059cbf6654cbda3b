package falclient

import (
	"bytes"
	"context"
	"io"
	"time"
)

// SetSleep replaces the client's backoff sleep (call before first use).
func SetSleep(c *Client, f func(ctx context.Context, d time.Duration) error) { c.sleep = f }

// KeyFromLookup is KeyFromEnv with an injected environment.
var KeyFromLookup = keyFromLookup

// SSEEvents parses an SSE stream with the package's reader.
func SSEEvents(data []byte, max int) ([][]byte, error) {
	r := newSSEReader(bytes.NewReader(data), max)
	var out [][]byte
	for {
		ev, err := r.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// SSEEventsChunked is SSEEvents reading through r (e.g. one byte at a time).
func SSEEventsChunked(r io.Reader, max int) ([][]byte, error) {
	s := newSSEReader(r, max)
	var out [][]byte
	for {
		ev, err := s.next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}
