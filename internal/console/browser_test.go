package console_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/falbridge/falbridge/config"
	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/internal/falsim/falsimtest"
	"github.com/falbridge/falbridge/internal/service"
	"github.com/falbridge/falbridge/publisher"
)

// artifactDir is where the browser test leaves its screenshots:
// $FALBRIDGE_TEST_ARTIFACTS, else bin/test-artifacts at the repository root.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("FALBRIDGE_TEST_ARTIFACTS")
	if dir == "" {
		var err error
		if dir, err = filepath.Abs(filepath.Join("..", "..", "bin", "test-artifacts")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// devService runs the service as `falbridge dev` does (config.Dev: console
// on, embedded NATS) against an in-process simulator, on loopback port 0.
func devService(t *testing.T, sim *falsimtest.Server, mod func(*config.Config)) service.Addrs {
	t.Helper()
	cfg := config.Dev()
	cfg.NATS.Embedded.Listen = "127.0.0.1:0"
	cfg.NATS.Embedded.StoreDir = t.TempDir()
	cfg.Webhook.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Fal.Key = "console-test:secret"
	cfg.Fal.QueueURL, cfg.Fal.RunURL, cfg.Fal.JWKSURLs = sim.QueueURL, sim.RunURL, []string{sim.JWKSURL}
	cfg.Shutdown.GracePeriod = 5 * time.Second
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan service.Addrs, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		done <- service.Run(ctx, cfg, service.Options{Logger: log, WebhookFromListener: true, Ready: func(a service.Addrs) { ready <- a }})
	}()
	var a service.Addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("service ended early: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("service not ready in 30s")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("service stop: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("service did not stop in 15s (a live feed held the admin listener?)")
		}
	})
	if (a.Console != "") != cfg.Admin.Console {
		t.Fatalf("admin.console %v, console URL %q", cfg.Admin.Console, a.Console)
	}
	return a
}

// TestBrowser is the console's acceptance test in a real browser: the live
// feed shows a good and a bad trigger as they happen, the good job's page
// shows its image decoded, and a retry of the bad job from the errors view
// publishes a new job linked to it.
func TestBrowser(t *testing.T) {
	t.Parallel()
	sim := falsimtest.New(t, falsim.Config{Latency: 400 * time.Millisecond})
	addrs := devService(t, sim, nil)
	br := startBrowser(t)
	art := artifactDir(t)

	nc, err := nats.Connect(addrs.NATS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := publisher.New(js)
	if err != nil {
		t.Fatal(err)
	}

	base := strings.TrimSuffix(addrs.Console, "/")
	br.navigate(t, base+"/jobs")
	br.waitFor(t, 10*time.Second, "the live feed to connect", `document.body.dataset.live === "open"`)

	suffix := fmt.Sprint(time.Now().UnixNano())
	good, bad := "good-"+suffix, "bad-"+suffix
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := pub.Publish(ctx, &publisher.Trigger{ID: good, ModelID: "fal-ai/flux/schnell",
		Input: json.RawMessage(`{"prompt":"a red fox in snow","num_images":1}`), Metadata: json.RawMessage(`{"tenant":"acme"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := pub.Publish(ctx, &publisher.Trigger{ID: bad, ModelID: "fal-ai//flux",
		Input: json.RawMessage(`{"prompt":"a red fox in snow"}`)}); err != nil {
		t.Fatal(err)
	}

	liveOutcome := func(id string) string {
		return fmt.Sprintf(`(document.querySelector('#live tr[data-id=%q] td:nth-child(7)') || {}).textContent`, id)
	}
	// Both appear live, the good one while it is still running.
	br.waitFor(t, 10*time.Second, "the good job to appear live before it ends",
		fmt.Sprintf(`document.querySelector('#live tr[data-id=%q]') !== null`, good))
	br.waitFor(t, 20*time.Second, "the bad job's error live", liveOutcome(bad)+` === "invalid_model"`)
	br.waitFor(t, 20*time.Second, "the good job's result live", liveOutcome(good)+` === "result"`)
	br.waitFor(t, 5*time.Second, "the tenant column", fmt.Sprintf(`document.querySelector('#live tr[data-id=%q] td:nth-child(3)').textContent === "acme"`, good))
	br.screenshot(t, filepath.Join(art, "console-live.png"))

	// The good job's page shows its image, decoded by the browser.
	br.navigate(t, base+"/jobs/"+good)
	br.waitFor(t, 10*time.Second, "the result image to be rendered",
		`document.images.length > 0 && [...document.images].every(i => i.complete && i.naturalWidth > 0)`)
	br.waitFor(t, 1*time.Second, "the fal request id", `document.getElementById("request-id").textContent.length > 0`)
	br.screenshot(t, filepath.Join(art, "console-job.png"))

	// Retry the bad one from the errors view: the new job links to it.
	br.navigate(t, base+"/errors")
	br.waitFor(t, 5*time.Second, "the bad job in the errors view",
		fmt.Sprintf(`document.querySelector('tr[data-id=%q] button.retry') !== null`, bad))
	if _, err := br.eval(ctx, fmt.Sprintf(`document.querySelector('tr[data-id=%q] button.retry').click()`, bad)); err != nil {
		t.Fatal(err)
	}
	br.waitFor(t, 20*time.Second, "the new job's page, linked to the bad one, with its own error",
		fmt.Sprintf(`location.pathname.startsWith("/console/jobs/") && !location.pathname.endsWith(%q) &&
			(document.querySelector("#retry-of a") || {}).textContent === %q &&
			(document.getElementById("error-code") || {}).textContent === "invalid_model"`, "/"+bad, bad))
	v, err := br.eval(ctx, `location.pathname.slice("/console/jobs/".length)`)
	if err != nil {
		t.Fatal(err)
	}
	var retried string
	if err := json.Unmarshal(v, &retried); err != nil || !publisher.ValidID(retried) || retried == bad {
		t.Fatalf("retry landed on %s", v)
	}
	// The errors view links both ways.
	br.navigate(t, base+"/errors")
	br.waitFor(t, 5*time.Second, "the errors view linking old and new",
		fmt.Sprintf(`document.querySelector('tr[data-id=%q] td:nth-child(5) a').textContent === %q &&
			document.querySelector('tr[data-id=%q] td:nth-child(4) a').textContent === %q`, bad, retried, retried, bad))
	br.screenshot(t, filepath.Join(art, "console-errors.png"))

	// And the retried trigger carries the link for any subscriber.
	_, err = pub.Await(ctx, retried)
	ev, ok := errors.AsType[*publisher.Error](err)
	if !ok || string(ev.Metadata) != fmt.Sprintf(`{"falbridge_retry_of":%q}`, bad) {
		t.Fatalf(`retried job's event: %v, want metadata {"falbridge_retry_of":%q}`, err, bad)
	}
}
