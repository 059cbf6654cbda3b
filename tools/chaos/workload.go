package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// echoModel returns its input, so a result can be checked against the
// trigger it claims to answer.
const echoModel = "workflows/falsim/echo"

// Designed failures: the simulator completes the run with this error.
var failKinds = []string{"content_policy_violation", "internal_server_error", "no_media_generated"}

// Latencies in ms: most short, a tail of long runs that outlive faults.
var latencies = []int{20, 50, 100, 200, 300, 500, 800, 1000, 1500, 2500, 4000, 8000}

// spec is one trigger and what the simulator was told to do with it.
type spec struct {
	ID        string
	LatencyMS int
	Fail      string // "" = a run that completes
	Body      []byte
	Published bool
}

func makeSpecs(prefix string, n int, seed uint64) []*spec {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([]*spec, n)
	for i := range n {
		s := &spec{ID: fmt.Sprintf("%s-%05d", prefix, i), LatencyMS: latencies[rng.IntN(len(latencies))]}
		if rng.IntN(8) == 0 {
			s.Fail = failKinds[rng.IntN(len(failKinds))]
		}
		ctl := map[string]any{"latency_ms": s.LatencyMS}
		if s.Fail != "" {
			ctl["fail"] = s.Fail
		}
		s.Body, _ = json.Marshal(map[string]any{
			"id": s.ID, "model_id": echoModel,
			"input":    map[string]any{"chaos_id": s.ID, "_sim": ctl},
			"metadata": map[string]any{"chaos": true},
		})
		out[i] = s
	}
	return out
}

// publish sends every trigger, spread over spread, each with its id as
// Nats-Msg-Id so that a retry after a lost ack is deduplicated. Bounded:
// each trigger gets at most 40 attempts.
func publish(ctx context.Context, js jetstream.JetStream, specs []*spec, spread time.Duration) {
	const workers = 8
	gap := spread / time.Duration(max(len(specs), 1))
	ch := make(chan *spec)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for s := range ch {
				for range 40 {
					actx, cancel := context.WithTimeout(ctx, 3*time.Second)
					_, err := js.Publish(actx, "fal.requests.chaos", s.Body, jetstream.WithMsgID(s.ID))
					cancel()
					if err == nil {
						s.Published = true
						break
					}
					if ctx.Err() != nil {
						break
					}
					time.Sleep(250 * time.Millisecond)
				}
			}
		})
	}
	t := time.NewTicker(max(gap, time.Microsecond))
	defer t.Stop()
	for _, s := range specs {
		select {
		case ch <- s:
		case <-ctx.Done():
		}
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	close(ch)
	wg.Wait()
}

// event is one terminal event read back from the results stream.
type event struct {
	Seq       uint64          `json:"seq"`
	Subject   string          `json:"subject"`
	Kind      string          `json:"kind"` // result or error
	RequestID string          `json:"request_id"`
	Code      string          `json:"code,omitempty"`
	Message   string          `json:"message,omitempty"`
	Output    json.RawMessage `json:"output,omitempty"`
	Raw       json.RawMessage `json:"raw"`
}

func streamMsgs(ctx context.Context, js jetstream.JetStream, name string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	return s.CachedInfo().State.Msgs, nil
}

// readResults reads the whole results stream with an ordered consumer.
func readResults(ctx context.Context, js jetstream.JetStream, results string) (map[string][]event, int, error) {
	total, err := streamMsgs(ctx, js, results)
	if err != nil {
		return nil, 0, fmt.Errorf("results stream: %w", err)
	}
	out := map[string][]event{}
	if total == 0 {
		return out, 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, results, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, 0, fmt.Errorf("ordered consumer: %w", err)
	}
	read := 0
	for uint64(read) < total {
		batch, err := c.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			if ctx.Err() != nil {
				return out, read, fmt.Errorf("read results: %w", err)
			}
			continue
		}
		for m := range batch.Messages() {
			read++
			md, _ := m.Metadata()
			subj := m.Subject()
			parts := strings.Split(subj, ".")
			id := parts[len(parts)-1]
			ev := event{Subject: subj, Raw: append(json.RawMessage(nil), m.Data()...)}
			if md != nil {
				ev.Seq = md.Sequence.Stream
			}
			var body struct {
				RequestID string          `json:"request_id"`
				Code      string          `json:"code"`
				Message   string          `json:"message"`
				Output    json.RawMessage `json:"output"`
			}
			_ = json.Unmarshal(m.Data(), &body)
			ev.RequestID, ev.Code, ev.Message, ev.Output = body.RequestID, body.Code, body.Message, body.Output
			ev.Kind = "result"
			if strings.Contains(subj, ".errors.") || m.Headers().Get("Falbridge-Event") == "error" {
				ev.Kind = "error"
			}
			out[id] = append(out[id], ev)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() != nil {
			return out, read, fmt.Errorf("read results: %w", err)
		}
	}
	return out, read, nil
}

// readRecords returns every job record, by trigger id.
func readRecords(ctx context.Context, js jetstream.JetStream, bucket string) (map[string]json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", bucket, err)
	}
	defer func() { _ = w.Stop() }()
	out := map[string]json.RawMessage{}
	for {
		select {
		case e := <-w.Updates():
			if e == nil {
				return out, nil // caught up
			}
			out[e.Key()] = append(json.RawMessage(nil), e.Value()...)
		case <-ctx.Done():
			return out, fmt.Errorf("watch %s: %w", bucket, ctx.Err())
		}
	}
}
