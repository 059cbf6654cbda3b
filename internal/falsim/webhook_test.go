package falsim_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/internal/falsim"
)

// delivered is one webhook request as the receiver saw it.
type delivered struct {
	header http.Header
	body   []byte
	at     time.Time
}

// receiver is a webhook endpoint. respond decides the answer to attempt n
// (from 1); nil answers 200.
type receiver struct {
	url      string
	got      chan delivered
	attempts atomic.Int64
}

func newReceiver(t *testing.T, respond func(n int64, w http.ResponseWriter)) *receiver {
	t.Helper()
	rc := &receiver{got: make(chan delivered, 64)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := rc.attempts.Add(1)
		rc.got <- delivered{header: r.Header.Clone(), body: body, at: time.Now()}
		if respond != nil {
			respond(n, w)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	rc.url = srv.URL + "/fal/webhook?job=abc"
	return rc
}

func (rc *receiver) next(t *testing.T) delivered {
	t.Helper()
	select {
	case d := <-rc.got:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no webhook delivered")
		return delivered{}
	}
}

// verifyWebhook checks a delivery as fal-protocol §5.2 says a receiver
// must: keys from the JWKS URL, four headers, timestamp window, raw body.
func verifyWebhook(t *testing.T, jwksURL string, h http.Header, body []byte) error {
	t.Helper()
	resp, err := http.Get(jwksURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	var jwks struct {
		Keys []struct{ Kty, Crv, X, Kid string } `json:"keys"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&jwks))
	require.NotEmpty(t, jwks.Keys)

	rid, uid, ts, sigHex := h.Get("X-Fal-Webhook-Request-Id"), h.Get("X-Fal-Webhook-User-Id"), h.Get("X-Fal-Webhook-Timestamp"), h.Get("X-Fal-Webhook-Signature")
	if rid == "" || uid == "" || ts == "" || sigHex == "" {
		return errors.New("missing header")
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || time.Since(time.Unix(secs, 0)).Abs() > 5*time.Minute {
		return errors.New("bad timestamp")
	}
	sig, err := hex.DecodeString(sigHex)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return errors.New("bad signature encoding")
	}
	sum := sha256.Sum256(body)
	msg := []byte(strings.Join([]string{rid, uid, ts, hex.EncodeToString(sum[:])}, "\n"))
	for _, k := range jwks.Keys {
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			continue
		}
		pub, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.X, "="))
		require.NoError(t, err)
		if len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, msg, sig) {
			return nil
		}
	}
	return errors.New("no key verifies")
}

func webhookPath(model, hook string) string {
	return "/" + model + "?fal_webhook=" + url.QueryEscape(hook)
}

func TestWebhookSigned(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	rc := newReceiver(t, nil)
	tests := []struct {
		name   string
		input  map[string]any
		status string
		err    string
	}{
		{"ok", map[string]any{"prompt": "a fox", "seed": json.Number("196619188014358660"), "_sim": sim(5, "")}, "OK", ""},
		{"model error", map[string]any{"prompt": "x", "_sim": sim(5, falsim.FailContentPolicy)}, "ERROR", "Invalid status code: 422"},
	}
	for _, tc := range tests {
		r := b.do(http.MethodPost, webhookPath("fal-ai/flux/schnell", rc.url), tc.input, "Authorization", "Key user-42:secret")
		require.Equal(t, http.StatusOK, r.code, "%s", r.body)
		rid := r.json(t)["request_id"].(string)
		d := rc.next(t)

		require.NoError(t, verifyWebhook(t, b.ts.JWKSURL, d.header, d.body), tc.name)
		require.Equal(t, rid, d.header.Get("X-Fal-Webhook-Request-Id"))
		require.Equal(t, "user-42", d.header.Get("X-Fal-Webhook-User-Id"))
		require.Equal(t, "application/json", d.header.Get("Content-Type"))
		require.True(t, bytes.HasPrefix(d.body, []byte(`{"error": `)), "sorted keys: %s", d.body)
		require.True(t, bytes.HasSuffix(d.body, []byte(`, "request_id": "`+rid+`", "status": "`+tc.status+`"}`)), "python spacing, sorted keys: %s", d.body)
		require.Contains(t, string(d.body), `, "gateway_request_id": "`+rid+`", "payload": {`)

		var hook struct {
			RequestID string          `json:"request_id"`
			Status    string          `json:"status"`
			Payload   json.RawMessage `json:"payload"`
			Error     *string         `json:"error"`
		}
		require.NoError(t, json.Unmarshal(d.body, &hook))
		require.Equal(t, tc.status, hook.Status)
		if tc.err == "" {
			require.Nil(t, hook.Error)
			require.Contains(t, string(hook.Payload), `"seed": 196619188014358660`, "big seeds stay exact")
		} else {
			require.Equal(t, tc.err, *hook.Error)
			require.Contains(t, string(hook.Payload), `"type": "content_policy_violation"`)
		}
		// The payload is the result, byte for byte up to spacing.
		res := b.do(http.MethodGet, "/fal-ai/flux/requests/"+rid, nil)
		require.JSONEq(t, string(res.body), string(hook.Payload))

		tampered := bytes.Replace(d.body, []byte(tc.status), []byte("OKAY"), 1)
		require.Error(t, verifyWebhook(t, b.ts.JWKSURL, d.header, tampered), "the signature covers the raw body")
	}
	require.Eventually(t, func() bool { return b.ts.Stats().WebhooksSent == 2 }, 10*time.Second, 2*time.Millisecond)
	require.Len(t, b.ts.PublicKey(), ed25519.PublicKeySize)
}

func TestWebhookRetries(t *testing.T) {
	t.Parallel()
	t.Run("until answered", func(t *testing.T) {
		t.Parallel()
		b := setup(t, falsim.Config{WebhookRetryDelay: 5 * time.Millisecond})
		rc := newReceiver(t, func(n int64, w http.ResponseWriter) {
			switch n {
			case 1:
				w.WriteHeader(http.StatusInternalServerError)
			case 2:
				// No answer at all: drop the connection.
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
			default:
				w.WriteHeader(http.StatusNoContent)
			}
		})
		r := b.do(http.MethodPost, webhookPath("fal-ai/flux/schnell", rc.url), map[string]any{"prompt": "x", "_sim": sim(0, "")})
		require.Equal(t, http.StatusOK, r.code)
		first, second, third := rc.next(t), rc.next(t), rc.next(t)
		require.Equal(t, first.body, third.body, "a retry resends the same body")
		require.Equal(t, first.body, second.body)
		require.NoError(t, verifyWebhook(t, b.ts.JWKSURL, third.header, third.body))
		require.GreaterOrEqual(t, third.at.Sub(second.at), 10*time.Millisecond, "the delay doubles")
		require.Eventually(t, func() bool {
			st := b.ts.Stats()
			return st.WebhooksSent == 1 && st.WebhooksFailed == 2
		}, 10*time.Second, 2*time.Millisecond)
	})
	t.Run("gives up when the result expires", func(t *testing.T) {
		t.Parallel()
		b := setup(t, falsim.Config{WebhookRetries: 100, WebhookRetryDelay: 10 * time.Millisecond, Retention: 50 * time.Millisecond})
		rc := newReceiver(t, func(_ int64, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
		r := b.do(http.MethodPost, webhookPath("fal-ai/flux/schnell", rc.url), map[string]any{"prompt": "x", "_sim": sim(0, "")}, "X-Fal-Store-IO", "0")
		require.Equal(t, http.StatusOK, r.code)
		require.Eventually(t, func() bool { return rc.attempts.Load() >= 3 }, 10*time.Second, 2*time.Millisecond)
		time.Sleep(200 * time.Millisecond)
		require.LessOrEqual(t, rc.attempts.Load(), int64(4), "no retry is due after the result's 50ms retention")
	})
	t.Run("gives up", func(t *testing.T) {
		t.Parallel()
		b := setup(t, falsim.Config{WebhookRetries: 2, WebhookRetryDelay: time.Millisecond})
		rc := newReceiver(t, func(_ int64, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
		r := b.do(http.MethodPost, webhookPath("fal-ai/flux/schnell", rc.url), map[string]any{"prompt": "x", "_sim": sim(0, "")})
		require.Equal(t, http.StatusOK, r.code)
		require.Eventually(t, func() bool { return b.ts.Stats().WebhooksFailed == 3 }, 10*time.Second, 2*time.Millisecond)
		require.Equal(t, int64(3), rc.attempts.Load(), "1 attempt + 2 retries")
		require.Zero(t, b.ts.Stats().WebhooksSent)
	})
}

func TestWebhookFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		faults falsim.Faults
		check  func(t *testing.T, b *testBundle, rc *receiver, submittedAt time.Time)
	}{
		{"dropped", falsim.Faults{WebhookDropRate: 1}, func(t *testing.T, b *testBundle, rc *receiver, _ time.Time) {
			require.Eventually(t, func() bool { return b.ts.Stats().WebhooksDropped == 1 }, 10*time.Second, 2*time.Millisecond)
			// The drop is decided at completion, so nothing is pending now.
			require.Zero(t, rc.attempts.Load())
			require.Zero(t, b.ts.Stats().WebhooksSent)
		}},
		{"duplicated", falsim.Faults{WebhookDuplicateRate: 1}, func(t *testing.T, b *testBundle, rc *receiver, _ time.Time) {
			one, two := rc.next(t), rc.next(t)
			require.Equal(t, one.body, two.body)
			require.Equal(t, one.header.Get("X-Fal-Webhook-Request-Id"), two.header.Get("X-Fal-Webhook-Request-Id"))
			require.Eventually(t, func() bool { return b.ts.Stats().WebhooksSent == 2 }, 10*time.Second, 2*time.Millisecond)
		}},
		{"bad signature", falsim.Faults{WebhookBadSignatureRate: 1}, func(t *testing.T, b *testBundle, rc *receiver, _ time.Time) {
			d := rc.next(t)
			require.EqualError(t, verifyWebhook(t, b.ts.JWKSURL, d.header, d.body), "no key verifies")
			require.Equal(t, int64(1), b.ts.Stats().WebhooksBadSignature)
		}},
		{"delayed", falsim.Faults{WebhookDelay: 150 * time.Millisecond}, func(t *testing.T, b *testBundle, rc *receiver, submittedAt time.Time) {
			d := rc.next(t)
			require.GreaterOrEqual(t, d.at.Sub(submittedAt), 150*time.Millisecond)
			require.NoError(t, verifyWebhook(t, b.ts.JWKSURL, d.header, d.body))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, falsim.Config{Faults: tc.faults})
			rc := newReceiver(t, nil)
			at := time.Now()
			r := b.do(http.MethodPost, webhookPath("fal-ai/flux/schnell", rc.url), map[string]any{"prompt": "x", "_sim": sim(0, "")})
			require.Equal(t, http.StatusOK, r.code)
			tc.check(t, b, rc, at)
		})
	}
}

func TestWebhookURLValidated(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	for _, hook := range []string{"ftp://x/y", "/relative", "http://"} {
		r := b.do(http.MethodPost, webhookPath("fal-ai/flux/schnell", hook), map[string]any{"prompt": "x"})
		require.Equal(t, http.StatusBadRequest, r.code, hook)
	}
	require.Zero(t, b.ts.Stats().Submits)
}

func TestWebhookOnCancelAndReset(t *testing.T) {
	t.Parallel()
	b := setup(t, falsim.Config{})
	rc := newReceiver(t, nil)
	r := b.do(http.MethodPost, webhookPath("fal-ai/flux/dev", rc.url), map[string]any{"prompt": "x", "_sim": sim(60000, "")})
	s := r.json(t)
	require.Equal(t, http.StatusAccepted, b.do(http.MethodPut, s["cancel_url"].(string), nil).code)
	d := rc.next(t)
	require.Contains(t, string(d.body), `"error": "Invalid status code: 499"`)

	// A reset forgets jobs without telling anyone.
	r = b.do(http.MethodPost, webhookPath("fal-ai/flux/dev", rc.url), map[string]any{"prompt": "x", "_sim": sim(60000, "")})
	require.Equal(t, http.StatusOK, r.code)
	b.ts.Reset()
	require.Equal(t, int64(1), rc.attempts.Load())
}
