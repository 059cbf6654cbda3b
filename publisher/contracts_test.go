package publisher_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/natstest"
	"github.com/falbridge/falbridge/publisher"
)

// The cancel reply's wire form is part of the contract: scripts read it
// with plain `nats req`.
func TestCancelReplyWireForm(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(publisher.CancelReply{ID: "job-1", Status: publisher.CancelRequested, Message: "m"})
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"job-1","status":"cancel_requested","message":"m"}`, string(b))
	b, err = json.Marshal(publisher.CancelReply{ID: "job-1", Status: publisher.CancelCanceled})
	require.NoError(t, err)
	require.JSONEq(t, `{"id":"job-1","status":"canceled"}`, string(b), "no message: omitted")
	// The statuses as the README documents them.
	require.Equal(t, []string{"canceled", "cancel_requested", "already_done", "already_completed", "unknown", "error"},
		[]string{publisher.CancelCanceled, publisher.CancelRequested, publisher.CancelAlreadyDone,
			publisher.CancelAlreadyCompleted, publisher.CancelUnknown, publisher.CancelError})
}

func TestRejectedError(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 2, 12, 0, 0, 0, time.FixedZone("x", 3600))
	tests := []struct {
		name, body, trigger string
	}{
		{"JSON body echoed as is", `{"model_id":"m","x":1}`, `{"model_id":"m","x":1}`},
		{"not JSON: a JSON string", `{"model_id":`, `"{\"model_id\":"`},
		{"empty: no trigger", ``, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ev := publisher.RejectedError("job-1", publisher.CodeInvalidTrigger, "bad", []byte(tt.body), at)
			require.Equal(t, "job-1", ev.ID)
			require.Equal(t, publisher.CodeInvalidTrigger, ev.Code)
			require.Equal(t, "bad", ev.Message)
			require.Equal(t, tt.trigger, string(ev.Trigger))
			require.Equal(t, time.UTC, ev.At.Location())
			require.True(t, ev.At.Equal(at))
		})
	}
}

func TestLookupJob(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	js, err := jetstream.New(srv.Connect(t))
	require.NoError(t, err)
	ctx := context.Background()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "jobs_test", Storage: jetstream.MemoryStorage})
	require.NoError(t, err)

	_, err = publisher.LookupJob(ctx, js, "jobs_test", "nope")
	require.ErrorIs(t, err, publisher.ErrJobNotFound)
	require.ErrorContains(t, err, "nope")

	// A record as the engine writes it, with fields JobInfo does not name.
	rev, err := kv.Put(ctx, "job-1", []byte(`{"v":2,"id":"job-1","state":"submitted","model_id":"fal-ai/flux/dev","mode":"queue","request_id":"rid-1","attempts":1,"webhook":true,"owner":"x","w":"abc","received_at":"2026-12-02T12:00:00Z","deadline":"2026-12-02T13:00:00Z"}`))
	require.NoError(t, err)
	info, err := publisher.LookupJob(ctx, js, "jobs_test", "job-1")
	require.NoError(t, err)
	require.Equal(t, "submitted", info.State)
	require.Equal(t, "rid-1", info.RequestID)
	require.True(t, info.Webhook)
	require.Equal(t, rev, info.Revision)

	_, err = kv.Put(ctx, "job-2", []byte(`{not json`))
	require.NoError(t, err)
	_, err = publisher.LookupJob(ctx, js, "jobs_test", "job-2")
	require.ErrorContains(t, err, "decode job job-2")
	require.NotErrorIs(t, err, publisher.ErrJobNotFound)

	_, err = publisher.LookupJob(ctx, js, "no_such_bucket", "job-1")
	require.ErrorContains(t, err, `job bucket "no_such_bucket"`)
}
