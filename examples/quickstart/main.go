// Command quickstart publishes one trigger with the publisher package,
// awaits its result, then replays the job's events. It is the README's Go
// example, verbatim; run it against `falbridge dev`:
//
//	go run ./examples/quickstart
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/publisher"
)

func main() {
	// falbridge dev listens on nats.DefaultURL (nats://127.0.0.1:4222).
	nc, err := nats.Connect(cmp.Or(os.Getenv("NATS_URL"), nats.DefaultURL))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	pub, err := publisher.New(js) // publisher.WithSubjects(…) for non-default names
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// Publish: validated, id assigned when empty, Nats-Msg-Id set to the id.
	id, _, err := pub.Publish(ctx, &publisher.Trigger{
		ModelID:  "fal-ai/flux/schnell",
		Input:    json.RawMessage(`{"prompt":"a red fox in snow","num_images":2}`),
		Metadata: json.RawMessage(`{"user":42}`),
		Progress: true, // live status events while it runs (one fal status stream)
	})
	if err != nil {
		log.Fatal(err)
	}

	// Await: the result, or the error event as a *publisher.Error. It reads
	// the stream, so a result published before this call is found too.
	res, err := pub.Await(ctx, id)
	var failed *publisher.Error
	switch {
	case errors.As(err, &failed):
		log.Fatalf("job %s failed: %s: %s", id, failed.Code, failed.Message)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Printf("result of %s: %s\n", id, res.Output)

	// Watch: this job's events, replayed from the start of the streams
	// (publisher.FromTime and FromSequence start elsewhere; without an
	// option only new events come). Results and status events live in two
	// streams with no order between them: stop at the result.
	for ev, err := range pub.Watch(ctx, "fal.*."+id, publisher.FromStart()) {
		if err != nil {
			log.Fatal(err)
		}
		if ev.Status != nil {
			fmt.Println("status", ev.Status.State)
			continue
		}
		fmt.Println("event on", ev.Subject)
		if ev.Result != nil || ev.Error != nil {
			break // the job's last event
		}
	}
}
