package publisher_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
