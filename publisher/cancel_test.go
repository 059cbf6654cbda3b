package publisher_test

import (
	"encoding/json"
	"testing"

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
