package consumer

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRecentJobsEvictsOldestAndKeepsDone(t *testing.T) {
	t.Parallel()
	c := newRecentJobs()
	for i := range recordsKept + 10 {
		c.put(&job{ID: fmt.Sprintf("j-%d", i), State: stateSubmitted, RequestID: "r"}, uint64(i+1))
	}
	_, _, ok := c.get("j-0")
	require.False(t, ok, "the oldest record is evicted")
	j, rev, ok := c.get(fmt.Sprintf("j-%d", recordsKept+9))
	require.True(t, ok)
	require.EqualValues(t, recordsKept+10, rev)
	j.State = stateDone // a copy: the cache is not changed through it
	again, _, _ := c.get(j.ID)
	require.Equal(t, stateSubmitted, again.State)

	c.put(&job{ID: "j-20", State: stateDone}, 0)
	require.True(t, c.isDone("j-20"))
	_, _, ok = c.get("j-20")
	require.False(t, ok, "a done job leaves the record cache for the done set")
	for i := range doneKept {
		c.put(&job{ID: fmt.Sprintf("d-%d", i), State: stateDone}, 0)
	}
	require.False(t, c.isDone("j-20"), "the done set is bounded too")
	require.True(t, c.isDone(fmt.Sprintf("d-%d", doneKept-1)))

	var none *recentJobs
	none.put(&job{ID: "x"}, 1)
	_, _, ok = none.get("x")
	require.False(t, ok)
	require.False(t, none.isDone("x"))
}
