package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/consumer"
	"github.com/falbridge/falbridge/internal/natstest"
	"github.com/falbridge/falbridge/publisher"
)

// scaleJobs is the bucket size the render budget is measured at.
const scaleJobs = 10_000

// renderBudget is the most a page may take with scaleJobs jobs stored.
const renderBudget = 200 * time.Millisecond

// TestPagesAtScale fills the bucket and the streams with scaleJobs jobs
// (each record written twice, a result or error event each, two status
// events each, 2 % still pending) and times every page through the
// handler: the median of five must stay under renderBudget. The windows
// read by sequence make the cost independent of the bucket's size.
func TestPagesAtScale(t *testing.T) {
	t.Parallel()
	srv := natstest.Run(t)
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := consumer.Provision(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	c, err := New(Config{NATS: nc, JetStream: js, Bridge: cfg})
	if err != nil {
		t.Fatal(err)
	}

	fillStart := time.Now()
	subj := c.subjects
	kvSubj := c.kvPrefix
	models := []string{"fal-ai/flux/schnell", "fal-ai/flux/dev", "fal-ai/kling-video/v2/master/text-to-video", "fal-ai/recraft-v3"}
	codes := []publisher.Code{publisher.CodeInvalidModel, publisher.CodeValidationError, publisher.CodeTimeout, publisher.CodeFalError}
	base := time.Now().Add(-2 * time.Hour)
	var acks []jetstream.PubAckFuture
	flush := func() {
		select {
		case <-js.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal("fill: publishes not acknowledged")
		}
		for _, a := range acks {
			select {
			case <-a.Ok():
			case err := <-a.Err():
				t.Fatalf("fill: %v", err)
			}
		}
		acks = acks[:0]
	}
	pub := func(subject string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		a, err := js.PublishAsync(subject, b)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	// Records go out as consumer writes them: with the state header.
	pubRecord := func(rec publisher.JobInfo) {
		b, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		a, err := js.PublishMsgAsync(&nats.Msg{Subject: kvSubj + rec.ID, Data: b, Header: nats.Header{publisher.StateHeader: []string{rec.State}}})
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	var sampleDone, sampleErr string
	for i := range scaleJobs {
		id := fmt.Sprintf("job-%05d", i)
		model := models[i%len(models)]
		at := base.Add(time.Duration(i) * 500 * time.Millisecond)
		trig := json.RawMessage(fmt.Sprintf(`{"id":%q,"model_id":%q,"input":{"prompt":"a red fox in snow, number %d","num_images":2},"metadata":{"tenant":"t%d"}}`, id, model, i, i%7))
		rec := publisher.JobInfo{ID: id, State: "submitted", ModelID: model, Mode: "queue", RequestID: "req-" + id,
			Metadata: json.RawMessage(fmt.Sprintf(`{"tenant":"t%d"}`, i%7)), Trigger: trig, Attempts: 1, Webhook: true,
			ReceivedAt: at, SubmittedAt: at.Add(10 * time.Millisecond), Deadline: at.Add(time.Hour)}
		pubRecord(rec)
		q := 3
		pub(subj.Status(id), publisher.Status{ID: id, RequestID: rec.RequestID, State: publisher.StateInQueue, QueuePosition: &q, At: at})
		pub(subj.Status(id), publisher.Status{ID: id, RequestID: rec.RequestID, State: publisher.StateInProgress,
			Logs: json.RawMessage(`[{"message":"step 1/4","level":"INFO"}]`), At: at.Add(time.Second)})
		if i%50 == 49 {
			pubRecord(rec) // still pending
		} else if i%12 == 5 {
			rec.State, rec.Outcome, rec.CompletedAt = "done", string(codes[i%len(codes)]), at.Add(2*time.Second)
			pubRecord(rec)
			pub(subj.Error(id), publisher.Error{ID: id, ModelID: model, RequestID: rec.RequestID, Code: codes[i%len(codes)],
				Message: "fal said no", Detail: json.RawMessage(`[{"loc":["body","prompt"],"msg":"too long"}]`), Attempts: 1, Trigger: trig, At: rec.CompletedAt})
			sampleErr = id
		} else {
			rec.State, rec.Outcome, rec.CompletedAt = "done", "result", at.Add(2*time.Second)
			pubRecord(rec)
			out := json.RawMessage(fmt.Sprintf(`{"images":[{"url":"http://127.0.0.1:1/files/%s_0.png","content_type":"image/png","width":1024,"height":768},{"url":"http://127.0.0.1:1/files/%s_1.png","content_type":"image/png","width":1024,"height":768}],"seed":%d}`, id, id, i))
			pub(subj.Result(id), publisher.Result{ID: id, ModelID: model, RequestID: rec.RequestID, Output: out,
				Metadata: rec.Metadata, ReceivedAt: at, SubmittedAt: rec.SubmittedAt, CompletedAt: rec.CompletedAt, Attempts: 1})
			if i < scaleJobs/2 {
				sampleDone = id
			}
		}
		// Well under the async publish window (4,000 by default): past it
		// PublishAsync stalls, and under load fails after 200ms.
		if len(acks) >= 1000 {
			flush()
		}
	}
	flush()
	kvs, err := js.Stream(ctx, c.kvStream)
	if err != nil {
		t.Fatal(err)
	}
	if n := kvs.CachedInfo().State.Msgs; n != scaleJobs {
		t.Fatalf("bucket holds %d records, want %d", n, scaleJobs)
	}
	res, _ := js.Stream(ctx, cfg.Streams.Results)
	mid := res.CachedInfo().State.LastSeq / 2
	t.Logf("filled %d jobs (%d KV records, %d result/error events) in %s", scaleJobs, kvs.CachedInfo().State.Msgs, res.CachedInfo().State.Msgs, time.Since(fillStart).Round(time.Millisecond))

	budget := renderBudget * raceSlowdown
	if raceSlowdown > 1 {
		t.Logf("race detector on: budget %s (%s × %d); run without -race for the figure of record", budget, renderBudget, raceSlowdown)
	}
	h := c.Handler()
	pages := []string{
		Prefix,
		Prefix + "jobs",
		Prefix + fmt.Sprintf("jobs?before=%d", mid),
		Prefix + "jobs/" + sampleDone,
		Prefix + "jobs/" + sampleErr,
		Prefix + "errors",
	}
	for _, p := range pages {
		var took []time.Duration
		for range 5 {
			req := httptest.NewRequest(http.MethodGet, p, nil)
			rw := httptest.NewRecorder()
			start := time.Now()
			h.ServeHTTP(rw, req)
			took = append(took, time.Since(start))
			if rw.Code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", p, rw.Code, rw.Body.String())
			}
		}
		slices.Sort(took)
		t.Logf("GET %-32s min %-10s median %-10s max %s", p, took[0].Round(10*time.Microsecond), took[2].Round(10*time.Microsecond), took[4].Round(10*time.Microsecond))
		if took[2] > budget {
			t.Errorf("GET %s: median %s over the %s budget with %d jobs", p, took[2], budget, scaleJobs)
		}
	}
}
