package falclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http/httptest"
	"time"

	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/internal/falsim"
)

// Submit a job to the queue, wait for it, read its status and fetch the
// result. The simulator stands in for fal; against fal itself, leave out
// the URL options and set FAL_KEY.
func ExampleClient_Submit() {
	sim, err := falsim.New(falsim.Config{Latency: 20 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()
	defer sim.Close()

	c, err := falclient.New(
		falclient.WithKey("my-key-id:my-key-secret"),
		falclient.WithQueueURL(srv.URL),
		falclient.WithRunURL(srv.URL+"/run"),
		falclient.WithJWKSURL(srv.URL+"/.well-known/jwks.json"),
	)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	const model = "fal-ai/flux/dev"

	sub, err := c.Submit(ctx, model, map[string]any{"prompt": "a red fox in snow", "output_format": "png"}, falclient.SubmitOptions{})
	if err != nil {
		log.Fatal(err)
	}
	// Wait for completion (a webhook, see Verifier, avoids holding a stream).
	if _, err := c.StatusStream(ctx, model, sub.RequestID, false, nil); err != nil {
		log.Fatal(err)
	}
	st, err := c.Status(ctx, model, sub.RequestID, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.State, "failed:", st.Error != "", "logs:", len(st.Logs) > 0)

	out, err := c.Result(ctx, model, sub.RequestID)
	if err != nil {
		log.Fatal(err)
	}
	var res struct {
		Images []struct {
			ContentType string `json:"content_type"`
		} `json:"images"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		log.Fatal(err)
	}
	fmt.Println("images:", len(res.Images), res.Images[0].ContentType)
	// Output:
	// COMPLETED failed: false logs: true
	// images: 1 image/png
}
