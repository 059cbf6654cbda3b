package consumer

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/publisher"
)

// The job record the engine writes is read by tools through
// publisher.JobInfo: every field JobInfo names must come through under the
// same JSON name, so that the two cannot drift apart unnoticed.
func TestJobRecordReadsAsJobInfo(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	j := job{
		V: jobRecordVersion, ID: "job-1", State: stateRetry, ModelID: "fal-ai/flux/dev", Tenant: "team-a", Priority: "high",
		Mode: publisher.ModeQueue, RequestID: "rid-1", Outcome: "", Attempts: 3, Webhook: true, RetryReason: "fal is rate limiting",
		ReceivedAt: at, SubmittedAt: at.Add(time.Second), CompletedAt: at.Add(2 * time.Second), Deadline: at.Add(time.Hour),
		Metadata: json.RawMessage(`{"run":7}`), Trigger: json.RawMessage(`{"model_id":"fal-ai/flux/dev"}`), Truncated: true,
		CancelRequestedAt: at.Add(3 * time.Second),
	}
	b, err := json.Marshal(j)
	require.NoError(t, err)
	var info publisher.JobInfo
	require.NoError(t, json.Unmarshal(b, &info))
	require.Equal(t, publisher.JobInfo{
		ID: "job-1", State: "retry", ModelID: "fal-ai/flux/dev", Tenant: "team-a", Priority: "high", Mode: "queue",
		RequestID: "rid-1", Attempts: 3, Webhook: true, RetryReason: "fal is rate limiting",
		ReceivedAt: at, SubmittedAt: at.Add(time.Second), CompletedAt: at.Add(2 * time.Second), Deadline: at.Add(time.Hour),
		Metadata: json.RawMessage(`{"run":7}`), Trigger: json.RawMessage(`{"model_id":"fal-ai/flux/dev"}`), Truncated: true,
		CancelRequestedAt: at.Add(3 * time.Second),
	}, info)
	j.State, j.Outcome = stateDone, string(publisher.CodeTimeout)
	b, err = json.Marshal(j)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &info))
	require.Equal(t, "done", info.State)
	require.Equal(t, "timeout", info.Outcome)
}
