package publisher_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/natstest"
	"github.com/falbridge/falbridge/publisher"
)

type testBundle struct {
	js       jetstream.JetStream
	pub      *publisher.Publisher
	requests jetstream.Stream
	results  jetstream.Stream
	status   jetstream.Stream
}

// setup starts an embedded NATS with the three falbridge streams (as the
// consumer would provision them) and returns a Publisher on it.
func setup(t *testing.T) *testBundle {
	t.Helper()
	srv := natstest.Run(t)
	js, err := jetstream.New(srv.Connect(t))
	require.NoError(t, err)
	ctx := t.Context()
	b := &testBundle{js: js}
	b.requests, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       publisher.RequestsStreamDefault,
		Subjects:   []string{publisher.RequestsSubjectDefault},
		Retention:  jetstream.WorkQueuePolicy,
		Duplicates: 2 * time.Minute,
	})
	require.NoError(t, err)
	b.results, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     publisher.ResultsStreamDefault,
		Subjects: []string{publisher.ResultsPrefixDefault + ".>", publisher.ErrorsPrefixDefault + ".>"},
	})
	require.NoError(t, err)
	b.status, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:     publisher.StatusStreamDefault,
		Subjects: []string{publisher.StatusPrefixDefault + ".>"},
		MaxAge:   time.Hour,
	})
	require.NoError(t, err)
	b.pub, err = publisher.New(js)
	require.NoError(t, err)
	return b
}

// publishEvent publishes v as JSON on subject and returns its stream sequence.
func (b *testBundle) publishEvent(t *testing.T, subject string, v any) uint64 {
	t.Helper()
	data, err := json.Marshal(v)
	require.NoError(t, err)
	ack, err := b.js.Publish(t.Context(), subject, data)
	require.NoError(t, err)
	return ack.Sequence
}

// consumers returns the number of consumers on stream.
func consumers(t *testing.T, s jetstream.Stream) int {
	t.Helper()
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	return info.State.Consumers
}

func TestNew(t *testing.T) {
	t.Parallel()
	_, err := publisher.New(nil)
	require.ErrorIs(t, err, publisher.ErrInvalidOption)

	b := setup(t)
	_, err = publisher.New(b.js, publisher.WithSubjects(publisher.Subjects{ResultsPrefix: "bad.*"}))
	require.ErrorIs(t, err, publisher.ErrInvalidOption)

	p, err := publisher.New(b.js, publisher.WithSubjects(publisher.Subjects{ResultsPrefix: "app.out"}))
	require.NoError(t, err)
	want := publisher.DefaultSubjects()
	want.ResultsPrefix = "app.out"
	require.Equal(t, want, p.Subjects())
}

func TestPublish(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()

	tr := &publisher.Trigger{ModelID: "fal-ai/flux/dev", Input: json.RawMessage(`{"prompt":"a cat","seed":18446744073709551617}`)}
	id, ack, err := b.pub.Publish(ctx, tr)
	require.NoError(t, err)
	require.True(t, publisher.ValidID(id), id)
	require.Empty(t, tr.ID, "Publish must not modify the trigger")
	require.Equal(t, publisher.RequestsStreamDefault, ack.Stream)
	require.False(t, ack.Duplicate)

	msg, err := b.requests.GetMsg(ctx, ack.Sequence)
	require.NoError(t, err)
	require.Equal(t, "fal.requests."+id, msg.Subject)
	require.Equal(t, id, msg.Header.Get(jetstream.MsgIDHeader))
	got, err := publisher.DecodeTrigger(msg.Data)
	require.NoError(t, err)
	require.Equal(t, id, got.ID)
	require.Equal(t, "fal-ai/flux/dev", got.ModelID)
	require.JSONEq(t, `{"prompt":"a cat","seed":18446744073709551617}`, string(got.Input))
	require.Contains(t, string(got.Input), "18446744073709551617")

	// Two publishes get two different ids.
	id2, _, err := b.pub.Publish(ctx, tr)
	require.NoError(t, err)
	require.NotEqual(t, id, id2)
}

func TestPublishDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	tr := &publisher.Trigger{ID: "dup-1", ModelID: "m"}

	id, ack1, err := b.pub.Publish(ctx, tr)
	require.NoError(t, err)
	require.Equal(t, "dup-1", id)
	require.False(t, ack1.Duplicate)

	_, ack2, err := b.pub.Publish(ctx, tr)
	require.NoError(t, err)
	require.True(t, ack2.Duplicate)
	require.Equal(t, ack1.Sequence, ack2.Sequence)

	info, err := b.requests.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(1), info.State.Msgs)

	// An empty input is sent as {}.
	msg, err := b.requests.GetMsg(ctx, ack1.Sequence)
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"dup-1","model_id":"m","input":{}}`, string(msg.Data))
}

func TestPublishInvalid(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name    string
		trigger *publisher.Trigger
		field   string
	}{
		{"nil", nil, ""},
		{"no model", &publisher.Trigger{ID: "x"}, "model_id"},
		{"bad id", &publisher.Trigger{ID: "a.b", ModelID: "m"}, "id"},
		{"input not object", &publisher.Trigger{ModelID: "m", Input: json.RawMessage(`[1]`)}, "input"},
		{"input not JSON", &publisher.Trigger{ModelID: "m", Input: json.RawMessage(`{`)}, "input"},
		{"metadata not JSON", &publisher.Trigger{ModelID: "m", Metadata: json.RawMessage(`{`)}, "metadata"},
		{"bad mode", &publisher.Trigger{ModelID: "m", Mode: "later"}, "mode"},
		{"negative timeout", &publisher.Trigger{ModelID: "m", Timeout: publisher.Duration(-time.Second)}, "timeout"},
		{"wildcard result subject", &publisher.Trigger{ModelID: "m", ResultSubject: "a.>"}, "result_subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, ack, err := b.pub.Publish(t.Context(), tt.trigger)
			require.Nil(t, ack)
			require.ErrorIs(t, err, publisher.ErrInvalidTrigger)
			te, ok := errors.AsType[*publisher.TriggerError](err)
			require.True(t, ok)
			require.Equal(t, tt.field, te.Field, "error: %v", err)
		})
	}
	info, err := b.requests.Info(t.Context())
	require.NoError(t, err)
	require.Zero(t, info.State.Msgs)
}

func TestPublishCustomSubjects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	_, err := b.js.CreateStream(ctx, jetstream.StreamConfig{Name: "JOBS", Subjects: []string{"jobs.in.*"}})
	require.NoError(t, err)
	p, err := publisher.New(b.js, publisher.WithSubjects(publisher.Subjects{Requests: "jobs.in.*"}))
	require.NoError(t, err)
	_, ack, err := p.Publish(ctx, &publisher.Trigger{ID: "c1", ModelID: "m"})
	require.NoError(t, err)
	require.Equal(t, "JOBS", ack.Stream)
}

func TestPublishNoStream(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	js, err := jetstream.New(srv.Connect(t))
	require.NoError(t, err)
	p, err := publisher.New(js)
	require.NoError(t, err)
	id, _, err := p.Publish(t.Context(), &publisher.Trigger{ID: "lost", ModelID: "m"})
	require.Equal(t, "lost", id)
	require.ErrorIs(t, err, jetstream.ErrNoStreamResponse)
	require.ErrorContains(t, err, "publish lost: ")
}

func TestAwait(t *testing.T) {
	t.Parallel()
	result := func(id string) *publisher.Result {
		return &publisher.Result{
			ID: id, ModelID: "fal-ai/flux/dev", RequestID: "req-" + id,
			Output:      json.RawMessage(`{"images":[{"url":"https://x/1.png"}],"seed":18446744073709551617}`),
			ReceivedAt:  time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
			CompletedAt: time.Date(2025, 1, 2, 3, 4, 9, 0, time.UTC),
			Attempts:    1,
		}
	}

	t.Run("result published before", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		// Noise: other ids, and a status event of the same id.
		b.publishEvent(t, "fal.results.other", result("other"))
		b.publishEvent(t, "fal.errors.other", &publisher.Error{ID: "other", Code: publisher.CodeFalError})
		b.publishEvent(t, "fal.status.j1", &publisher.Status{ID: "j1", State: publisher.StateInQueue})
		want := result("j1")
		b.publishEvent(t, "fal.results.j1", want)

		got, err := b.pub.Await(t.Context(), "j1")
		require.NoError(t, err)
		require.Equal(t, want, got)
		require.Contains(t, string(got.Output), "18446744073709551617")
		require.Zero(t, consumers(t, b.results), "Await must delete its consumer")
	})

	t.Run("result published after", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		type res struct {
			r   *publisher.Result
			err error
		}
		done := make(chan res, 1)
		go func() {
			r, err := b.pub.Await(t.Context(), "j2")
			done <- res{r, err}
		}()
		// Publish only once Await's consumer exists.
		require.Eventually(t, func() bool { return consumers(t, b.results) == 1 }, 5*time.Second, 5*time.Millisecond)
		b.publishEvent(t, "fal.results.other", result("other"))
		want := result("j2")
		b.publishEvent(t, "fal.results.j2", want)
		select {
		case got := <-done:
			require.NoError(t, got.err)
			require.Equal(t, want, got.r)
		case <-time.After(10 * time.Second):
			t.Fatal("Await did not return")
		}
		require.Zero(t, consumers(t, b.results))
	})

	t.Run("error event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ev := &publisher.Error{
			ID: "j3", ModelID: "fal-ai/flux/dev", Code: publisher.CodeValidationError,
			Message: "prompt: field required", Detail: json.RawMessage(`[{"loc":["body","prompt"]}]`),
			Attempts: 1, Trigger: json.RawMessage(`{"model_id":"fal-ai/flux/dev"}`),
			At: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		}
		b.publishEvent(t, "fal.errors.j3", ev)

		got, err := b.pub.Await(t.Context(), "j3")
		require.Nil(t, got)
		require.EqualError(t, err, "fal job j3: validation_error: prompt: field required")
		e, ok := errors.AsType[*publisher.Error](err)
		require.True(t, ok)
		require.Equal(t, ev, e)
		require.ErrorIs(t, err, &publisher.Error{Code: publisher.CodeValidationError})
	})

	t.Run("ctx timeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.publishEvent(t, "fal.results.other", result("other"))
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		got, err := b.pub.Await(ctx, "j4")
		require.Nil(t, got)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorContains(t, err, "await j4: ")
		require.Zero(t, consumers(t, b.results))
	})

	t.Run("ctx canceled", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() {
			_, err := b.pub.Await(ctx, "j5")
			done <- err
		}()
		require.Eventually(t, func() bool { return consumers(t, b.results) == 1 }, 5*time.Second, 5*time.Millisecond)
		cancel()
		select {
		case err := <-done:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(10 * time.Second):
			t.Fatal("Await ignored the canceled ctx")
		}
		require.Zero(t, consumers(t, b.results))
	})

	t.Run("invalid id", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.pub.Await(t.Context(), "a.>")
		require.ErrorIs(t, err, publisher.ErrInvalidID)
	})

	// #11: a forged event on the victim's subject (another trigger's result
	// published there, or a hand-made one without id) is not the victim's.
	t.Run("forged events are skipped", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.publishEvent(t, "fal.results.victim", result("attacker"))
		b.publishEvent(t, "fal.results.victim", &publisher.Result{Output: json.RawMessage(`{"x":1}`)})
		b.publishEvent(t, "fal.errors.victim", &publisher.Error{ID: "attacker", Code: publisher.CodeFalError})
		want := result("victim")
		b.publishEvent(t, "fal.results.victim", want)
		got, err := b.pub.Await(t.Context(), "victim")
		require.NoError(t, err)
		require.Equal(t, want, got)
	})

	t.Run("undecodable event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.js.Publish(t.Context(), "fal.results.j6", []byte("not json"))
		require.NoError(t, err)
		_, err = b.pub.Await(t.Context(), "j6")
		require.ErrorContains(t, err, "await j6: decode result event")
	})

	t.Run("no results stream", func(t *testing.T) {
		t.Parallel()
		srv := natstest.Run(t)
		js, err := jetstream.New(srv.Connect(t))
		require.NoError(t, err)
		p, err := publisher.New(js)
		require.NoError(t, err)
		_, err = p.Await(t.Context(), "j7")
		require.ErrorIs(t, err, jetstream.ErrStreamNotFound)
	})
}

// collect ranges over seq until n events were seen (or an error), then
// breaks out of the loop.
func collect(t *testing.T, seq func(func(publisher.Event, error) bool), n int) []publisher.Event {
	t.Helper()
	var got []publisher.Event
	for ev, err := range seq {
		require.NoError(t, err)
		got = append(got, ev)
		if len(got) == n {
			break
		}
	}
	return got
}

func subjectsOf(evs []publisher.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Subject
	}
	return out
}

func TestWatch(t *testing.T) {
	t.Parallel()

	t.Run("from sequence", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.publishEvent(t, "fal.results.a", &publisher.Result{ID: "a"})
		s2 := b.publishEvent(t, "fal.errors.b", &publisher.Error{ID: "b", Code: publisher.CodeTimeout})
		b.publishEvent(t, "fal.results.c", &publisher.Result{ID: "c"})

		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		got := collect(t, b.pub.Watch(ctx, "fal.results.>", publisher.FromSequence(s2)), 1)
		require.Equal(t, []string{"fal.results.c"}, subjectsOf(got))
		require.Equal(t, "c", got[0].Result.ID)
		require.Equal(t, "c", got[0].ID())
		require.Equal(t, publisher.ResultsStreamDefault, got[0].Stream)
		require.Equal(t, uint64(3), got[0].Sequence)

		got = collect(t, b.pub.Watch(ctx, "", publisher.FromSequence(s2)), 2)
		require.Equal(t, []string{"fal.errors.b", "fal.results.c"}, subjectsOf(got))
		require.Equal(t, publisher.CodeTimeout, got[0].Error.Code)
		require.Nil(t, got[0].Result)
		require.Zero(t, consumers(t, b.results))
		require.Zero(t, consumers(t, b.status))
	})

	t.Run("from time", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.publishEvent(t, "fal.status.a", &publisher.Status{ID: "a", State: publisher.StateInQueue})
		s2 := b.publishEvent(t, "fal.status.a", &publisher.Status{ID: "a", State: publisher.StateInProgress})
		stored, err := b.status.GetMsg(t.Context(), s2)
		require.NoError(t, err)

		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		got := collect(t, b.pub.Watch(ctx, "fal.status.a", publisher.FromTime(stored.Time)), 1)
		require.Equal(t, publisher.StateInProgress, got[0].Status.State)
		require.Equal(t, s2, got[0].Sequence)
		require.Equal(t, publisher.StatusStreamDefault, got[0].Stream)
		require.True(t, stored.Time.Equal(got[0].Time))
	})

	t.Run("from start across both streams", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.publishEvent(t, "fal.status.x", &publisher.Status{ID: "x", State: publisher.StateInQueue})
		b.publishEvent(t, "fal.results.y", &publisher.Result{ID: "y"})
		b.publishEvent(t, "fal.results.x", &publisher.Result{ID: "x"})

		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		got := collect(t, b.pub.Watch(ctx, "fal.*.x", publisher.FromStart()), 2)
		require.ElementsMatch(t, []string{"fal.status.x", "fal.results.x"}, subjectsOf(got))
		require.Zero(t, consumers(t, b.results))
		require.Zero(t, consumers(t, b.status))
	})

	t.Run("new messages only by default", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.publishEvent(t, "fal.results.old", &publisher.Result{ID: "old"})

		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		events := make(chan publisher.Event)
		go func() {
			defer close(events)
			for ev, err := range b.pub.Watch(ctx, "") {
				if err != nil {
					return
				}
				select {
				case events <- ev:
				case <-ctx.Done():
					return
				}
			}
		}()
		// The watch starts at some point; publish until an event arrives.
		var first publisher.Event
		require.Eventually(t, func() bool {
			b.publishEvent(t, "fal.results.new", &publisher.Result{ID: "new"})
			select {
			case first = <-events:
				return true
			case <-time.After(20 * time.Millisecond):
				return false
			}
		}, 5*time.Second, time.Millisecond)
		require.Equal(t, "new", first.ID())
		cancel()
		for range events {
		}
	})

	t.Run("early break releases resources", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for range 5 {
			b.publishEvent(t, "fal.results.r", &publisher.Result{ID: "r"})
			b.publishEvent(t, "fal.status.r", &publisher.Status{ID: "r", State: publisher.StateInProgress})
		}
		n := 0
		for _, err := range b.pub.Watch(t.Context(), "", publisher.FromStart()) {
			require.NoError(t, err)
			n++
			if n == 3 {
				break
			}
		}
		require.Equal(t, 3, n)
		require.Zero(t, consumers(t, b.results))
		require.Zero(t, consumers(t, b.status))
	})

	t.Run("ctx done ends the loop", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		for _, err := range b.pub.Watch(ctx, "") {
			require.NoError(t, err)
			t.Fatal("no event expected")
		}
		require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
		require.Zero(t, consumers(t, b.results))
	})

	t.Run("forged event is yielded with ErrEventIDMismatch", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.publishEvent(t, "fal.results.victim", &publisher.Result{ID: "attacker"})
		b.publishEvent(t, "fal.status.victim", &publisher.Status{State: publisher.StateInQueue})
		b.publishEvent(t, "fal.results.victim", &publisher.Result{ID: "victim"})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		var errs []error
		var ids []string
		for ev, err := range b.pub.Watch(ctx, "", publisher.FromStart()) {
			errs = append(errs, err)
			if err != nil {
				require.Nil(t, ev.Result, "a forged event is not decoded for the caller")
				require.Nil(t, ev.Status)
				require.NotEmpty(t, ev.Data)
			} else {
				ids = append(ids, ev.Result.ID)
			}
			if len(errs) == 3 {
				break
			}
		}
		// The two streams interleave in any order: count.
		mismatched := 0
		for _, err := range errs {
			if err != nil {
				require.ErrorIs(t, err, publisher.ErrEventIDMismatch)
				mismatched++
			}
		}
		require.Equal(t, 2, mismatched)
		require.Equal(t, []string{"victim"}, ids)
	})

	t.Run("undecodable event is yielded with its error", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.js.Publish(t.Context(), "fal.status.bad", []byte("{"))
		require.NoError(t, err)
		b.publishEvent(t, "fal.status.good", &publisher.Status{ID: "good"})
		var evs []publisher.Event
		var errs []error
		for ev, err := range b.pub.Watch(t.Context(), "fal.status.>", publisher.FromStart()) {
			evs, errs = append(evs, ev), append(errs, err)
			if len(evs) == 2 {
				break
			}
		}
		require.ErrorContains(t, errs[0], "decode status event on fal.status.bad")
		require.Equal(t, []byte("{"), evs[0].Data)
		require.Nil(t, evs[0].Status)
		require.NoError(t, errs[1])
		require.Equal(t, "good", evs[1].Status.ID)
	})

	t.Run("errors", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tests := []struct {
			filter string
			want   error
			text   string
		}{
			{"a..b", nil, "invalid subject filter"},
			{"fal.requests.>", publisher.ErrNoStream, ""},
		}
		for _, tt := range tests {
			n := 0
			for ev, err := range b.pub.Watch(t.Context(), tt.filter) {
				n++
				require.Zero(t, ev.Subject)
				if tt.want != nil {
					require.ErrorIs(t, err, tt.want)
				}
				require.ErrorContains(t, err, tt.text)
			}
			require.Equal(t, 1, n, tt.filter)
		}
	})

	t.Run("no status stream", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		require.NoError(t, b.js.DeleteStream(t.Context(), publisher.StatusStreamDefault))
		b.publishEvent(t, "fal.results.z", &publisher.Result{ID: "z"})
		got := collect(t, b.pub.Watch(t.Context(), "", publisher.FromStart()), 1)
		require.Equal(t, "z", got[0].ID())
	})

	t.Run("connection closed", func(t *testing.T) {
		t.Parallel()
		srv := natstest.Run(t)
		nc := srv.Connect(t, nats.NoReconnect())
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "FAL_RESULTS", Subjects: []string{"fal.results.>"}})
		require.NoError(t, err)
		p, err := publisher.New(js)
		require.NoError(t, err)
		_, err = js.Publish(t.Context(), "fal.results.q", []byte(`{"id":"q"}`))
		require.NoError(t, err)
		var errs []error
		for _, err := range p.Watch(t.Context(), "", publisher.FromStart()) {
			if err == nil {
				nc.Close() // the next read fails
				continue
			}
			errs = append(errs, err)
		}
		require.Len(t, errs, 1)
	})
}
