package publisher_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/publisher"
)

func ExampleDecodeTrigger() {
	// The flat shape of workflow tools: model inputs at the top level.
	body := []byte(`{"model_id": "fal-ai/flux/dev", "prompt": "a lighthouse at dusk",
		"image_size": "landscape_4_3", "seed": 18446744073709551615, "mode": "queue"}`)
	t, err := publisher.DecodeTrigger(body)
	if err != nil {
		fmt.Println(err)
		return
	}
	canonical, _ := json.Marshal(t)
	fmt.Println(string(canonical))

	// Errors name the field.
	_, err = publisher.DecodeTrigger([]byte(`{"prompt": "no model"}`))
	fmt.Println(err)
	fmt.Println(errors.Is(err, publisher.ErrInvalidTrigger))
	// Output:
	// {"model_id":"fal-ai/flux/dev","input":{"image_size":"landscape_4_3","prompt":"a lighthouse at dusk","seed":18446744073709551615},"mode":"queue"}
	// trigger: model_id: required
	// true
}

func ExamplePublisher_Await() {
	// An embedded NATS server, so that the example is self-contained.
	js, stop, err := startExampleServer()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	pub, err := publisher.New(js)
	if err != nil {
		fmt.Println(err)
		return
	}
	id, _, err := pub.Publish(ctx, &publisher.Trigger{
		ID:      "lighthouse-1",
		ModelID: "fal-ai/flux/schnell",
		Input:   json.RawMessage(`{"prompt":"a lighthouse at dusk"}`),
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	// Stand-in for falbridge, which would run the job at fal and publish
	// its result event.
	subjects := publisher.DefaultSubjects()
	result, _ := json.Marshal(publisher.Result{
		ID: id, ModelID: "fal-ai/flux/schnell", RequestID: "764cabcf-b745-4b3e-ae38-1200304cf45b",
		Output: json.RawMessage(`{"images":[{"url":"https://fal.media/files/lighthouse.png"}],"seed":42}`),
	})
	if _, err := js.Publish(ctx, subjects.Result(id), result); err != nil {
		fmt.Println(err)
		return
	}

	// Await finds the result even though it was published before the call.
	res, err := pub.Await(ctx, id)
	var failed *publisher.Error
	switch {
	case errors.As(err, &failed):
		fmt.Println("job failed:", failed.Code, failed.Message)
	case err != nil:
		fmt.Println(err)
	default:
		fmt.Println(res.ID, res.RequestID)
		fmt.Println(string(res.Output))
	}
	// Output:
	// lighthouse-1 764cabcf-b745-4b3e-ae38-1200304cf45b
	// {"images":[{"url":"https://fal.media/files/lighthouse.png"}],"seed":42}
}

// startExampleServer starts an embedded JetStream server on a random
// loopback port with the streams falbridge would provision, and returns a
// JetStream client and a function that stops everything.
func startExampleServer() (jetstream.JetStream, func(), error) {
	dir, err := os.MkdirTemp("", "publisher-example-")
	if err != nil {
		return nil, nil, err
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT,
		JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	ns.Start()
	var nc *nats.Conn
	stop := func() {
		if nc != nil {
			nc.Close()
		}
		ns.Shutdown()
		ns.WaitForShutdown()
		os.RemoveAll(dir)
	}
	if !ns.ReadyForConnections(10 * time.Second) {
		stop()
		return nil, nil, errors.New("nats server not ready")
	}
	if nc, err = nats.Connect(ns.ClientURL()); err != nil {
		stop()
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		stop()
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, cfg := range []jetstream.StreamConfig{
		{Name: publisher.RequestsStreamDefault, Subjects: []string{publisher.RequestsSubjectDefault}, Retention: jetstream.WorkQueuePolicy},
		{Name: publisher.ResultsStreamDefault, Subjects: []string{publisher.ResultsPrefixDefault + ".>", publisher.ErrorsPrefixDefault + ".>"}},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			stop()
			return nil, nil, err
		}
	}
	return js, stop, nil
}
