package publisher_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/publisher"
)

func TestTerminalPattern(t *testing.T) {
	t.Parallel()
	cases := []struct{ results, errs, want string }{
		{"fal.results", "fal.errors", "fal.*"},
		{"a.b.res", "a.b.err", "a.b.*"},
		{"res", "err", "*"},
		{"a.res", "err", ""}, // different shapes: two reads, and only the dedupe window guards
	}
	for _, tc := range cases {
		got := publisher.Subjects{ResultsPrefix: tc.results, ErrorsPrefix: tc.errs}.TerminalPattern()
		require.Equal(t, tc.want, got, "%s / %s", tc.results, tc.errs)
	}
}

// TestLookup reads each part of a job from where falbridge keeps it, and
// reports a forged event instead of returning it.
func TestLookup(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	kv, err := b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: publisher.JobsBucketDefault, Storage: jetstream.MemoryStorage})
	require.NoError(t, err)
	s := b.pub.Subjects()

	_, err = b.pub.Lookup(ctx, "not an id")
	require.ErrorIs(t, err, publisher.ErrInvalidID)

	j, err := b.pub.Lookup(ctx, "nobody")
	require.NoError(t, err)
	require.False(t, j.Known())

	// Published, not taken yet: only the trigger stream knows it.
	id, _, err := b.pub.Publish(ctx, &publisher.Trigger{ModelID: "fal-ai/flux/dev", Input: []byte(`{"prompt":"x"}`)})
	require.NoError(t, err)
	j, err = b.pub.Lookup(ctx, id)
	require.NoError(t, err)
	require.True(t, j.Waiting)
	require.Nil(t, j.Record)
	require.True(t, j.Known())

	// Claimed, progressing, then ended with a result.
	_, err = kv.Put(ctx, "job-1", []byte(`{"v":2,"id":"job-1","state":"done","outcome":"result","model_id":"fal-ai/flux/dev","mode":"queue","metadata":{"k":"v"},"trigger":{"model_id":"fal-ai/flux/dev"},"truncated":true,"received_at":"2026-12-02T12:00:00Z","deadline":"2026-12-02T13:00:00Z"}`))
	require.NoError(t, err)
	b.publishEvent(t, s.Status("job-1"), publisher.Status{ID: "job-1", State: publisher.StateInProgress})
	b.publishEvent(t, s.Result("job-1"), publisher.Result{ID: "job-1", ModelID: "fal-ai/flux/dev", Output: []byte(`{"images":[]}`)})
	j, err = b.pub.Lookup(ctx, "job-1")
	require.NoError(t, err)
	require.False(t, j.Waiting)
	require.Equal(t, "done", j.Record.State)
	require.JSONEq(t, `{"k":"v"}`, string(j.Record.Metadata))
	require.JSONEq(t, `{"model_id":"fal-ai/flux/dev"}`, string(j.Record.Trigger))
	require.True(t, j.Record.Truncated)
	require.NotNil(t, j.Result)
	require.Equal(t, "job-1", j.Result.ID)
	require.Nil(t, j.Error)
	require.Equal(t, publisher.StateInProgress, j.LastStatus.State)

	// An error event is found by the same single read.
	b.publishEvent(t, s.Error("job-2"), publisher.Error{ID: "job-2", Code: publisher.CodeCanceled, Message: "canceled"})
	res, ev, err := b.pub.Outcome(ctx, "job-2")
	require.NoError(t, err)
	require.Nil(t, res)
	require.Equal(t, publisher.CodeCanceled, ev.Code)

	// A result on job-3's subject that names another job is forged.
	// It is left out, and said; what else is known still comes.
	b.publishEvent(t, s.Result("job-3"), publisher.Result{ID: "job-1"})
	b.publishEvent(t, s.Status("job-3"), publisher.Status{ID: "job-3", State: publisher.StateInQueue})
	j, err = b.pub.Lookup(ctx, "job-3")
	require.ErrorIs(t, err, publisher.ErrEventIDMismatch)
	require.ErrorContains(t, err, `carries id "job-1"`)
	require.Nil(t, j.Result)
	require.Equal(t, publisher.StateInQueue, j.LastStatus.State)
	b.publishEvent(t, s.Status("job-4"), publisher.Status{ID: "job-1", State: publisher.StateInProgress})
	j, err = b.pub.Lookup(ctx, "job-4")
	require.ErrorIs(t, err, publisher.ErrEventIDMismatch)
	require.False(t, j.Known())
}

// TestOutcomeUnlikeShapedPrefixes: with result and error prefixes of
// different lengths no one pattern matches both; both subjects are read.
func TestOutcomeUnlikeShapedPrefixes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	_, err := b.js.CreateStream(ctx, jetstream.StreamConfig{Name: "OUT", Subjects: []string{"app.done.>", "failed.>"}})
	require.NoError(t, err)
	pub, err := publisher.New(b.js, publisher.WithSubjects(publisher.Subjects{ResultsPrefix: "app.done", ErrorsPrefix: "failed", ResultsStream: "OUT"}))
	require.NoError(t, err)
	b.publishEvent(t, "failed.j1", publisher.Error{ID: "j1", Code: publisher.CodeTimeout})
	res, ev, err := pub.Outcome(ctx, "j1")
	require.NoError(t, err)
	require.Nil(t, res)
	require.Equal(t, publisher.CodeTimeout, ev.Code)
	b.publishEvent(t, "app.done.j2", publisher.Result{ID: "j2"})
	res, ev, err = pub.Outcome(ctx, "j2")
	require.NoError(t, err)
	require.Nil(t, ev)
	require.Equal(t, "j2", res.ID)
	res, ev, err = pub.Outcome(ctx, "j3")
	require.NoError(t, err)
	require.Nil(t, res)
	require.Nil(t, ev)
}
