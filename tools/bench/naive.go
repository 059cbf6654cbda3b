package main

// The naive worker: what a user writes first to bridge NATS and fal, the
// baseline falbridge is measured against. It is deliberately plain — one
// trigger per goroutine at a time, polling fal's status every 500 ms — but
// not careless: connections are kept alive (64 idle per host, not Go's
// default 2, which would open a new connection per call), results carry
// Nats-Msg-Id, and the trigger is acked only after its result is stored.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// naiveName is the NATS connection name of the naive worker: the harness
// counts its messages by it.
const naiveName = "naive-worker"

type naiveWorker struct {
	js      jetstream.JetStream
	http    *http.Client
	falBase string
	key     string
	poll    time.Duration
}

// runNaive is `bench naive`: it serves until SIGTERM.
func runNaive(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench naive", flag.ContinueOnError)
	natsURL := fs.String("nats", "", "NATS URL")
	falBase := fs.String("fal", "", "fal queue base URL")
	workers := fs.Int("workers", 64, "goroutines, one trigger each")
	poll := fs.Duration("poll", 500*time.Millisecond, "status poll interval")
	if err := fs.Parse(args); err != nil {
		return err
	}
	nc, err := nats.Connect(*natsURL, nats.Name(naiveName))
	if err != nil {
		return fmt.Errorf("naive: connect: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("naive: jetstream: %w", err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, "FAL_REQUESTS", jetstream.ConsumerConfig{
		Durable: "naive", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("naive: consumer: %w", err)
	}
	w := &naiveWorker{
		js:      js,
		http:    &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: *workers}},
		falBase: *falBase,
		key:     os.Getenv("FAL_KEY"),
		poll:    *poll,
	}
	fmt.Println("naive worker ready")
	var wg sync.WaitGroup
	for range *workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
				if err != nil {
					continue
				}
				for msg := range batch.Messages() {
					if err := w.handle(ctx, msg); err != nil {
						fmt.Fprintln(os.Stderr, "naive:", err)
						_ = msg.Nak()
						continue
					}
					_ = msg.Ack()
				}
			}
		})
	}
	wg.Wait()
	return nil
}

func (w *naiveWorker) handle(ctx context.Context, msg jetstream.Msg) error {
	var trig struct {
		ID      string          `json:"id"`
		ModelID string          `json:"model_id"`
		Input   json.RawMessage `json:"input"`
	}
	if err := json.Unmarshal(msg.Data(), &trig); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	var sub struct {
		RequestID   string `json:"request_id"`
		StatusURL   string `json:"status_url"`
		ResponseURL string `json:"response_url"`
	}
	if err := w.call(ctx, http.MethodPost, w.falBase+"/"+trig.ModelID, trig.Input, &sub); err != nil {
		return fmt.Errorf("submit: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(w.poll):
		}
		var st struct {
			Status string `json:"status"`
		}
		if err := w.call(ctx, http.MethodGet, sub.StatusURL, nil, &st); err != nil {
			return fmt.Errorf("status: %w", err)
		}
		if st.Status == "COMPLETED" {
			break
		}
	}
	var output json.RawMessage
	if err := w.call(ctx, http.MethodGet, sub.ResponseURL, nil, &output); err != nil {
		return fmt.Errorf("result: %w", err)
	}
	res, err := json.Marshal(map[string]any{"id": trig.ID, "model_id": trig.ModelID, "request_id": sub.RequestID, "output": output})
	if err != nil {
		return err
	}
	_, err = w.js.Publish(ctx, "fal.results."+trig.ID, res, jetstream.WithMsgID(trig.ID))
	return err
}

func (w *naiveWorker) call(ctx context.Context, method, url string, body []byte, out any) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Key "+w.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return errors.New(resp.Status + ": " + string(b))
	}
	return json.Unmarshal(b, out)
}
