package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/internal/natstest"
	"github.com/falbridge/falbridge/publisher"
)

// falbridge limits shows each cap with its use and waiting jobs, the
// waiting jobs per tenant, model and priority, and the budgets; status of a
// waiting job names what it waits for.
func TestCLILimits(t *testing.T) {
	t.Parallel()
	d := startDev(t, "--limits.max_pending", "2", "--limits.max_pending_per_tenant", "1",
		"--spend.prices", "fal-ai/flux/schnell=0.01/image", "--spend.budgets", "global=5/day,tenant:t1=1/hour")
	url := d.natsURL
	long := `{"_sim":{"latency_ms":30000}}`
	for _, p := range []struct{ id, tenant, priority string }{
		{"lim-t1-run", "t1", ""}, {"lim-t2-run", "t2", ""},
		{"lim-t1-low", "t1", "low"}, {"lim-t1-high", "t1", "high"}, {"lim-t2-wait", "t2", ""},
	} {
		args := []string{"publish", "-m", "fal-ai/flux/schnell", "-p", "x", "--input", long, "--id", p.id, "--tenant", p.tenant}
		if p.priority != "" {
			args = append(args, "--priority", p.priority)
		}
		r := runCLI(t, url, args...)
		require.Equal(t, 0, r.code, r)
		if strings.HasSuffix(p.id, "-run") {
			// The two that run first, one per tenant.
			require.Eventually(t, func() bool {
				r := runCLI(t, url, "status", p.id, "--json")
				return r.code == 0 && strings.Contains(r.stdout, `"state":"submitted"`)
			}, 20*time.Second, 50*time.Millisecond)
		}
	}
	var info consumer.LimitsInfo
	require.Eventually(t, func() bool {
		r := runCLI(t, url, "limits", "--json")
		require.Equal(t, 0, r.code, r)
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &info), r)
		return len(info.Caps) > 0 && info.Caps[0].Waiting == 3
	}, 20*time.Second, 100*time.Millisecond)
	require.True(t, info.On)
	require.Equal(t, consumer.CapUse{Scope: "global", Cap: 2, Pending: 2, Waiting: 3}, info.Caps[0])
	require.Contains(t, info.Caps, consumer.CapUse{Scope: "tenant", Name: "t1", Cap: 1, Pending: 1, Waiting: 2})
	require.Contains(t, info.Caps, consumer.CapUse{Scope: "tenant", Name: "t2", Cap: 1, Pending: 1, Waiting: 1})
	require.Equal(t, []consumer.WaitingJobs{
		{Tenant: "t1", Model: "fal-ai/flux/schnell", Priority: "high", Jobs: 1},
		{Tenant: "t1", Model: "fal-ai/flux/schnell", Priority: "low", Jobs: 1},
		{Tenant: "t2", Model: "fal-ai/flux/schnell", Priority: "normal", Jobs: 1},
	}, info.Waiting)
	require.Len(t, info.Budgets, 2)
	g := info.Budgets[0]
	require.Equal(t, "global", g.Scope)
	require.InDelta(t, 5, g.Amount, 1e-9)
	require.InDelta(t, 0.02, g.Pending, 1e-9, "one unit of each pending job")
	require.True(t, g.ResetsAt.After(time.Now()) && g.ResetsAt.Sub(g.WindowStart) == 24*time.Hour, "%+v", g)
	require.Equal(t, "tenant:t1", info.Budgets[1].Scope)
	require.InDelta(t, 0.01, info.Budgets[1].Pending, 1e-9)
	require.Equal(t, time.Hour, info.Budgets[1].ResetsAt.Sub(info.Budgets[1].WindowStart))

	r := runCLI(t, url, "limits")
	require.Equal(t, 0, r.code, r)
	for _, want := range []string{
		"global (limits.max_pending)  2      2        3",
		"tenant t1                    1      1        2",
		"1        t1      fal-ai/flux/schnell  high",
		"global     5/day        0      0.02     ",
		"over a budget a job waits for the next window (spend.budget_policy wait)",
	} {
		require.Contains(t, r.stdout, want, r)
	}

	r = runCLI(t, url, "status", "lim-t1-high")
	require.Equal(t, 0, r.code, r)
	const reason = `limits.max_pending (2) and tenant "t1"'s cap (limits.max_pending_per_tenant 1)`
	require.Contains(t, r.stdout, "state     waiting\nwaits for "+reason+"\ntenant    t1  (priority high)\n", r)
	r = runCLI(t, url, "status", "lim-t1-high", "--json")
	require.Equal(t, 0, r.code, r)
	var st struct {
		WaitsFor string `json:"waits_for"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &st))
	require.Equal(t, reason, st.WaitsFor)

	// The waiting jobs cost nothing to cancel; the lanes empty.
	for _, id := range []string{"lim-t1-low", "lim-t1-high", "lim-t2-wait"} {
		r := runCLI(t, url, "cancel", id)
		require.Equal(t, 0, r.code, r)
	}
	r = runCLI(t, url, "limits", "--json")
	require.Equal(t, 0, r.code, r)
	info = consumer.LimitsInfo{}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &info))
	require.Empty(t, info.Waiting)
	require.EqualValues(t, 0, info.Caps[0].Waiting)
}

// Without an admission record (caps off) limits says so and exits 1.
func TestCLILimitsOff(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	js, err := jetstream.New(srv.Connect(t))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: publisher.JobsBucketDefault})
	require.NoError(t, err)
	r := runCLI(t, srv.ClientURL(), "limits")
	require.Equal(t, 1, r.code, r)
	require.Contains(t, r.stdout, "caps off")
	r = runCLI(t, srv.ClientURL(), "limits", "--json")
	require.Equal(t, 1, r.code, r)
	require.JSONEq(t, `{"on":false}`, r.stdout)
}
