package service

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/consumer"
)

// readyCheckEvery is how long one check of the streams and the job bucket
// answers /readyz. The probe is unauthenticated and each check costs five
// JetStream API calls, so a flood of probes must not become a flood of API
// calls (#11); a second is well below any probe period Kubernetes uses.
const readyCheckEvery = time.Second

// readiness answers /readyz: 200 while NATS is connected, every stream and
// the job bucket answer, and the pool is not draining; 503 with the reason
// otherwise. Draining and the connection are read on every request (they
// are local and cheap); the JetStream checks at most once per
// readyCheckEvery, by one request while the others wait for its answer.
type readiness struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	pool  *consumer.Pool
	cfg   config.Config
	now   func() time.Time
	every time.Duration

	mu        sync.Mutex
	checkedAt time.Time
	reason    string // "" = ready
}

func newReadiness(nc *nats.Conn, js jetstream.JetStream, pool *consumer.Pool, cfg config.Config) *readiness {
	return &readiness{nc: nc, js: js, pool: pool, cfg: cfg, now: time.Now, every: readyCheckEvery}
}

func (rd *readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reason := ""
	switch {
	case rd.pool != nil && rd.pool.Draining():
		reason = "draining"
	case !rd.nc.IsConnected():
		reason = "nats not connected"
	default:
		reason = rd.streams(r.Context())
	}
	if reason != "" {
		http.Error(w, "not ready: "+reason, http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ready\n")
}

// streams returns why the streams are not usable ("" if they are), from a
// check at most rd.every old.
func (rd *readiness) streams(ctx context.Context) string {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if now := rd.now(); !rd.checkedAt.IsZero() && now.Sub(rd.checkedAt) < rd.every {
		return rd.reason
	}
	// The check is not bound to one caller's request: waiting probes share it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	rd.reason = rd.check(ctx)
	rd.checkedAt = rd.now()
	return rd.reason
}

// check asks JetStream for every stream the pool reads or writes (triggers,
// results and errors, progress, poll timers) and the job bucket.
func (rd *readiness) check(ctx context.Context) string {
	for _, name := range []string{rd.cfg.Streams.Requests, rd.cfg.Streams.Results, rd.cfg.Streams.Status, rd.cfg.Streams.Pending} {
		if _, err := rd.js.Stream(ctx, name); err != nil {
			return "stream " + name + ": " + err.Error()
		}
	}
	if _, err := rd.js.KeyValue(ctx, rd.cfg.Streams.JobsBucket); err != nil {
		return "bucket " + rd.cfg.Streams.JobsBucket + ": " + err.Error()
	}
	return ""
}
