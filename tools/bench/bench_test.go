package main

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		stat    string
		want    float64
		wantErr bool
	}{
		{"plain", "1234 (falbridge) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 130 0 0 20 0 12 0 5000 1000 200", 3.80, false},
		{"name with spaces and parens", "99 (a (b) c) R 1 99 99 0 -1 0 0 0 0 0 7 3 0 0 20 0", 0.10, false},
		{"truncated", "99 (x) R 1 2", 0, true},
		{"no name", "99 x R", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseStatCPU([]byte(tc.stat))
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.InDelta(t, tc.want, got, 1e-9)
		})
	}
}

func TestParseStatusMem(t *testing.T) {
	t.Parallel()
	rss, hwm, err := parseStatusMem(strings.NewReader("Name:\tfalbridge\nVmHWM:\t   43600 kB\nVmRSS:\t   41000 kB\nThreads:\t9\n"))
	require.NoError(t, err)
	require.Equal(t, int64(41000), rss)
	require.Equal(t, int64(43600), hwm)
	_, _, err = parseStatusMem(strings.NewReader("Name:\tzombie\n"))
	require.Error(t, err)
}

func TestPercentileAndMedian(t *testing.T) {
	t.Parallel()
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"p50 nearest rank", percentile(xs, 50), 5},
		{"p99", percentile(xs, 99), 10},
		{"p0 is the minimum", percentile(xs, 0), 1},
		{"median even", median(xs), 5.5},
		{"median odd", median([]float64{3, 1, 2}), 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, tc.got)
		})
	}
	require.True(t, math.IsNaN(percentile(nil, 50)))
	require.True(t, math.IsNaN(median(nil)))
	require.Equal(t, []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}, xs, "inputs are not reordered")
}

func TestSteadyRate(t *testing.T) {
	t.Parallel()
	// 100 results, one every 10 ms after a slow start: the steady window
	// must see 100/s whatever the start.
	base := time.Unix(1000, 0)
	var arr []time.Time
	for i := range 100 {
		arr = append(arr, base.Add(5*time.Second+time.Duration(i)*10*time.Millisecond))
	}
	require.InDelta(t, 100, steadyRate(arr, 0.2, 0.8), 1e-6)
	require.True(t, math.IsNaN(steadyRate(arr[:5], 0.2, 0.8)))
}

func TestParseGauge(t *testing.T) {
	t.Parallel()
	text := "# HELP go_goroutines Number of goroutines.\n# TYPE go_goroutines gauge\ngo_goroutines 262\ngo_goroutines_other 1\n"
	v, ok := parseGauge(text, "go_goroutines")
	require.True(t, ok)
	require.Equal(t, 262.0, v)
	_, ok = parseGauge(text, "go_threads")
	require.False(t, ok)
}

func TestSumConns(t *testing.T) {
	t.Parallel()
	cz := connz{Connections: []connInfo{
		{CID: 1, Name: "falbridge", InMsgs: 10, OutMsgs: 20},
		{CID: 2, Name: "bench-harness", InMsgs: 1000, OutMsgs: 1000},
		{CID: 3, Name: "falbridge", InMsgs: 5, OutMsgs: 1},
	}}
	require.Equal(t, msgCount{sent: 15, received: 21}, sumConns(cz, "falbridge"))
}

func TestCell(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		xs   []float64
		prec int
		want string
	}{
		{"none", nil, 1, "—"},
		{"one", []float64{1.234}, 2, "1.23"},
		{"several with range", []float64{3, 1, 2}, 0, "2 (1–3)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, cell(tc.xs, tc.prec))
		})
	}
}
