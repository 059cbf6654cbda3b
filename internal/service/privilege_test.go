package service

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/internal/falsim/falsimtest"
	"github.com/falbridge/falbridge/internal/natstest"
	"github.com/falbridge/falbridge/publisher"
)

// permissionsFile is the least-privilege NATS setup deploy/README documents.
const permissionsFile = "../../deploy/nats/permissions.conf"

// leastPrivilegeServer starts an embedded NATS whose users and permissions
// are exactly those of permissionsFile (the passwords it reads from the
// environment are given as config variables here).
func leastPrivilegeServer(t *testing.T) *natstest.Server {
	t.Helper()
	conf, err := os.ReadFile(permissionsFile)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "nats.conf")
	vars := "FALBRIDGE_NATS_PASSWORD: bridge-pw\nFALBRIDGE_PUBLISHER_PASSWORD: pub-pw\nFALBRIDGE_OPERATOR_PASSWORD: op-pw\n"
	require.NoError(t, os.WriteFile(path, append([]byte(vars), conf...), 0o600))
	opts, err := server.ProcessConfigFile(path)
	require.NoError(t, err)
	require.Len(t, opts.Users, 3)
	return natstest.Run(t, func(o *server.Options) { o.Users = opts.Users })
}

// violations connects as user and collects the permission violations the
// server reports to it.
func connectAs(t *testing.T, srv *natstest.Server, user, pw string) (*nats.Conn, <-chan error) {
	t.Helper()
	errs := make(chan error, 64)
	nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo(user, pw),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			select {
			case errs <- err:
			default:
			}
		}))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc, errs
}

// requireDenied publishes on subject and expects the server to refuse it.
func requireDenied(t *testing.T, nc *nats.Conn, errs <-chan error, subject string) {
	t.Helper()
	require.NoError(t, nc.Publish(subject, []byte(`{}`)))
	require.NoError(t, nc.Flush())
	select {
	case err := <-errs:
		require.True(t, errors.Is(err, nats.ErrPermissionViolation), "%s: %v", subject, err)
		require.Contains(t, err.Error(), subject)
	case <-time.After(5 * time.Second):
		t.Fatalf("publish to %s was not refused", subject)
	}
}

// #11, least privilege: falbridge runs with exactly the permissions
// deploy/nats/permissions.conf gives it; a trigger publisher cannot write
// results, job records, cancels or $JS.API, and its result_subject attacks
// end in an error event for the attacker only; an operator can cancel.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	srv := leastPrivilegeServer(t)
	sim := falsimtest.New(t, falsim.Config{Latency: 20 * time.Millisecond, Seed: 9, WebhookRetryDelay: 20 * time.Millisecond})
	r := runService(t, srv, sim, true, func(c *config.Config) {
		c.NATS.User, c.NATS.Password = "falbridge", "bridge-pw"
		c.Polling.SweepInterval = 200 * time.Millisecond
	})

	pnc, perrs := connectAs(t, srv, "publisher", "pub-pw")
	pjs, err := jetstream.New(pnc)
	require.NoError(t, err)
	pub, err := publisher.New(pjs)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()

	// The victim's job is running at fal while the attacks come in.
	copies, err := pnc.SubscribeSync("app.team.results")
	require.NoError(t, err)
	_, _, err = pub.Publish(ctx, &publisher.Trigger{ID: "victim", ModelID: "fal-ai/flux/schnell", ResultSubject: "app.team.results",
		Input: json.RawMessage(`{"prompt":"p","_sim":{"latency_ms":500}}`)})
	require.NoError(t, err)
	attacks := map[string]string{
		"forge-result": "fal.results.victim",
		"overwrite-kv": "$KV.fal_jobs.victim",
		"cancel":       "fal.cancel.victim",
	}
	for name, subj := range attacks {
		_, _, err := pub.Publish(ctx, &publisher.Trigger{ID: "attack-" + name, ModelID: "fal-ai/flux/schnell", ResultSubject: subj,
			Input: json.RawMessage(`{"prompt":"p"}`)})
		require.NoError(t, err, name)
	}
	for name := range attacks {
		_, err := pub.Await(ctx, "attack-"+name)
		var ev *publisher.Error
		require.ErrorAs(t, err, &ev, name)
		require.Equal(t, publisher.CodeInvalidTrigger, ev.Code, name)
		require.Contains(t, ev.Message, "result_subject", name)
	}
	res, err := pub.Await(ctx, "victim")
	require.NoError(t, err)
	require.Equal(t, "victim", res.ID)
	require.NotEmpty(t, res.RequestID)
	m, err := copies.NextMsg(10 * time.Second)
	require.NoError(t, err, "the allowed result_subject gets its copy")
	require.Contains(t, string(m.Data), `"victim"`)
	require.EqualValues(t, 1, sim.Stats().Submits, "no attack reached fal")

	// The same writes made directly are refused by the server.
	for _, subj := range []string{
		"fal.results.victim", "fal.errors.victim", "fal.status.victim",
		"$KV.fal_jobs.victim", "fal.cancel.victim", "falbridge.fal_pending.due.victim",
		"$JS.API.STREAM.PURGE.FAL_RESULTS", "$JS.API.STREAM.DELETE.FAL_REQUESTS",
		"$JS.API.CONSUMER.DELETE.FAL_REQUESTS.falbridge",
	} {
		requireDenied(t, pnc, perrs, subj)
	}

	// An operator cancels a running job: falbridge answers, though it may
	// only reply to requests it received.
	onc, _ := connectAs(t, srv, "operator", "op-pw")
	_, _, err = pub.Publish(ctx, &publisher.Trigger{ID: "long", ModelID: "fal-ai/flux/schnell",
		Input: json.RawMessage(`{"prompt":"p","_sim":{"latency_ms":30000}}`)})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return sim.Stats().Submits == 2 }, 10*time.Second, 10*time.Millisecond)
	reply, err := onc.Request("fal.cancel.long", nil, 10*time.Second)
	require.NoError(t, err, "falbridge answers the operator's cancel")
	require.Contains(t, string(reply.Data), `"long"`)
	_, err = pub.Await(ctx, "long")
	var ev *publisher.Error
	require.ErrorAs(t, err, &ev)
	require.Equal(t, publisher.CodeCanceled, ev.Code)

	// falbridge needed nothing more: the sweep ran, no permission error in
	// its logs.
	require.Eventually(t, func() bool { return strings.Contains(r.logs.String(), `"msg":"sweep"`) }, 10*time.Second, 20*time.Millisecond, "a sweep ran")
	logs := r.logs.String()
	require.NotContains(t, strings.ToLower(logs), "permission", logs)
	require.NotContains(t, logs, `"level":"ERROR"`, logs)
	require.NotContains(t, logs, "sweep failed", logs)
}
