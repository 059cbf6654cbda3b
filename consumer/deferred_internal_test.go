package consumer

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDeferredTimersQueue(t *testing.T) {
	t.Parallel()
	var d deferredTimers
	t0 := time.Unix(1_000_000, 0)
	for i := range 10 {
		require.True(t, d.push(deferredTimer{id: fmt.Sprint(i), at: t0.Add(time.Duration(i) * time.Second).UnixNano()}))
	}
	require.Empty(t, d.due(t0.Add(-time.Second)), "nothing due before its time")
	got := d.due(t0.Add(3 * time.Second))
	require.Len(t, got, 4, "due at or before now, in order")
	for i, tm := range got {
		require.Equal(t, fmt.Sprint(i), tm.id)
	}
	require.Equal(t, 6, d.len())
	// Pushing after pops keeps the order.
	require.True(t, d.push(deferredTimer{id: "late", at: t0.Add(20 * time.Second).UnixNano()}))
	rest := d.due(time.Time{})
	require.Len(t, rest, 7, "a zero time takes everything")
	require.Equal(t, "4", rest[0].id)
	require.Equal(t, "late", rest[6].id)
	require.Zero(t, d.len())
}

func TestDeferredTimersAreBounded(t *testing.T) {
	t.Parallel()
	var d deferredTimers
	for i := range deferredMax {
		require.True(t, d.push(deferredTimer{id: fmt.Sprint(i)}))
	}
	require.False(t, d.push(deferredTimer{id: "over"}), "full: the caller arms the timer itself")
	all := d.due(time.Time{})
	require.Len(t, all, deferredMax)
	for i, tm := range all {
		if tm.id != fmt.Sprint(i) {
			require.Failf(t, "out of order", "entry %d is %s", i, tm.id)
		}
	}
	require.Zero(t, d.len())
	require.True(t, d.push(deferredTimer{id: "again"}))
	require.Equal(t, "again", d.due(time.Time{})[0].id)
}
