package falclient_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/falclient"
)

func TestParseWebhook(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		body    string
		want    *falclient.Webhook
		wantErr bool
	}{
		{
			name: "ok with big seed, python separators",
			body: `{"request_id": "123e", "gateway_request_id": "123e", "status": "OK", "payload": {"images": [{"url": "https://v3.fal.media/files/x.png"}], "seed": 196619188014358660}, "error": null}`,
			want: &falclient.Webhook{RequestID: "123e", GatewayRequestID: "123e", Status: falclient.WebhookOK,
				Payload: json.RawMessage(`{"images": [{"url": "https://v3.fal.media/files/x.png"}], "seed": 196619188014358660}`)},
		},
		{
			name: "error 422",
			body: `{"request_id":"r","gateway_request_id":"g","status":"ERROR","error":"Invalid status code: 422","payload":{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"value_error.missing"}]}}`,
			want: &falclient.Webhook{RequestID: "r", GatewayRequestID: "g", Status: falclient.WebhookError, Error: strPtr("Invalid status code: 422"),
				Payload: json.RawMessage(`{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"value_error.missing"}]}`)},
		},
		{
			name: "payload null with payload_error",
			body: `{"request_id":"c97b","gateway_request_id":"c97b","status":"ERROR","error":"Invalid status code: 404","payload":null,"payload_error":"Response payload is not JSON serializable."}`,
			want: &falclient.Webhook{RequestID: "c97b", GatewayRequestID: "c97b", Status: falclient.WebhookError, Error: strPtr("Invalid status code: 404"),
				PayloadError: "Response payload is not JSON serializable."},
		},
		{
			name: "extra fields and missing optional ones",
			body: `{"request_id":"r","status":"IN_QUEUE","extra":{"a":[1,2]},"gateway_request_id":7}`,
			want: &falclient.Webhook{RequestID: "r", GatewayRequestID: "7", Status: "IN_QUEUE"},
		},
		{name: "missing request_id", body: `{"status":"OK","payload":{}}`, wantErr: true},
		{name: "empty request_id", body: `{"request_id":"","status":"OK"}`, wantErr: true},
		{name: "numeric request_id", body: `{"request_id":5,"status":"OK"}`, wantErr: true},
		{name: "missing status", body: `{"request_id":"r"}`, wantErr: true},
		{name: "array", body: `[{"request_id":"r","status":"OK"}]`, wantErr: true},
		{name: "truncated", body: `{"request_id":"r","status":"OK","payload":{`, wantErr: true},
		{name: "empty", body: ``, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := falclient.ParseWebhook([]byte(tt.body))
			if tt.wantErr {
				require.ErrorIs(t, err, falclient.ErrWebhookPayload)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestWebhookErr(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   string
		is     []error
		code   int
		field  string
		msg    string
		isNil  bool
		apiErr bool
	}{
		{name: "ok", body: `{"request_id":"r","status":"OK","payload":{}}`, isNil: true},
		{name: "422", body: `{"request_id":"r","status":"ERROR","error":"Invalid status code: 422","payload":{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"value_error.missing"}]}}`,
			is: []error{falclient.ErrValidation}, code: 422, field: "prompt", msg: "field required", apiErr: true},
		{name: "404 payload_error", body: `{"request_id":"r","status":"ERROR","error":"Invalid status code: 404","payload":null,"payload_error":"not serializable"}`,
			is: []error{falclient.ErrNotFound}, code: 404, msg: "Invalid status code: 404 (payload_error: not serializable)", apiErr: true},
		{name: "cancelled", body: `{"request_id":"r","status":"ERROR","error":"Invalid status code: 499","payload":{"detail":"Request cancelled","error_type":"client_cancelled"}}`,
			is: []error{falclient.ErrCanceled}, code: 499, msg: "Request cancelled", apiErr: true},
		{name: "timeout", body: `{"request_id":"r","status":"ERROR","error":"Invalid status code: 504","payload":{"detail":"Request timed out","error_type":"request_timeout"}}`,
			is: []error{falclient.ErrTimeout}, code: 504, msg: "Request timed out", apiErr: true},
		{name: "500", body: `{"request_id":"r","status":"ERROR","error":"Invalid status code: 500","payload":{"detail":[{"loc":["body"],"msg":"Internal error","type":"internal_server_error"}]}}`,
			is: []error{falclient.ErrUpstream}, code: 500, msg: "Internal error", apiErr: true},
		{name: "no code", body: `{"request_id":"r","status":"ERROR","error":"something odd","payload":null}`, code: 0, msg: "something odd", apiErr: true},
		{name: "unknown status", body: `{"request_id":"r","status":"IN_QUEUE"}`, is: []error{falclient.ErrWebhookPayload}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, err := falclient.ParseWebhook([]byte(tt.body))
			require.NoError(t, err)
			err = w.Err()
			if tt.isNil {
				require.NoError(t, err)
				require.True(t, w.Terminal())
				return
			}
			require.Error(t, err)
			for _, target := range tt.is {
				require.ErrorIs(t, err, target)
			}
			var ae *falclient.APIError
			require.Equal(t, tt.apiErr, errors.As(err, &ae))
			if !tt.apiErr {
				require.False(t, w.Terminal())
				return
			}
			require.Equal(t, "webhook", ae.Op)
			require.Equal(t, tt.code, ae.StatusCode)
			require.Equal(t, "r", ae.RequestID)
			require.Equal(t, tt.msg, ae.Message)
			if tt.field != "" {
				require.Equal(t, tt.field, ae.Details[0].Field())
			}
			require.False(t, falclient.IsRetryable(err))
		})
	}
}

// jwks serves a JWKS of the current keys and counts fetches.
type jwks struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []ed25519.PublicKey
	padded  bool
	status  int
	raw     string
	fetches atomic.Int64
}

func newJWKS(tb testing.TB, keys ...ed25519.PublicKey) *jwks {
	tb.Helper()
	j := &jwks{keys: keys, status: 200}
	j.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.raw != "" {
			writeJSON(w, j.status, j.raw)
			return
		}
		type jwk struct {
			Kty string `json:"kty"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Kid string `json:"kid"`
		}
		set := struct {
			Keys []jwk `json:"keys"`
		}{Keys: []jwk{{Kty: "RSA", Crv: "", X: "ignored", Kid: "rsa"}}}
		for i, k := range j.keys {
			x := base64.RawURLEncoding.EncodeToString(k)
			if j.padded {
				x = base64.URLEncoding.EncodeToString(k)
			}
			set.Keys = append(set.Keys, jwk{Kty: "OKP", Crv: "Ed25519", X: x, Kid: strconv.Itoa(i)})
		}
		b, _ := json.Marshal(set)
		writeJSON(w, j.status, string(b))
	}))
	tb.Cleanup(j.Close)
	return j
}

func (j *jwks) set(keys ...ed25519.PublicKey) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.keys = keys
}

func newKey(tb testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(tb, err)
	return pub, priv
}

// signed returns the headers of a webhook signed by priv.
func signed(priv ed25519.PrivateKey, rid, uid string, ts time.Time, body []byte) http.Header {
	sum := sha256.Sum256(body)
	tsText := strconv.FormatInt(ts.Unix(), 10)
	msg := rid + "\n" + uid + "\n" + tsText + "\n" + hex.EncodeToString(sum[:])
	sig := ed25519.Sign(priv, []byte(msg))
	h := http.Header{}
	h.Set("X-Fal-Webhook-Request-Id", rid)
	h.Set("X-Fal-Webhook-User-Id", uid)
	h.Set("X-Fal-Webhook-Timestamp", tsText)
	h.Set("X-Fal-Webhook-Signature", hex.EncodeToString(sig))
	return h
}

func newVerifier(tb testing.TB, url string, now func() time.Time) *falclient.Verifier {
	tb.Helper()
	v, err := falclient.NewVerifier(falclient.VerifierOptions{JWKSURL: url, Now: now})
	require.NoError(tb, err)
	return v
}

func TestVerifier(t *testing.T) {
	t.Parallel()
	pub, priv := newKey(t)
	_, otherPriv := newKey(t)
	other2Pub, _ := newKey(t)
	now := time.Unix(1_736_510_400, 0)
	clock := func() time.Time { return now }
	body := []byte(`{"request_id": "rid-1", "status": "OK", "payload": {"seed": 196619188014358660}}`)
	good := signed(priv, "rid-1", "user-1", now, body)
	with := func(mod func(h http.Header)) http.Header {
		h := good.Clone()
		mod(h)
		return h
	}
	tests := []struct {
		name   string
		h      http.Header
		body   []byte
		ok     bool
		reason string
	}{
		{name: "valid", h: good, body: body, ok: true},
		{name: "valid 4m old", h: signed(priv, "rid-1", "user-1", now.Add(-4*time.Minute), body), body: body, ok: true},
		{name: "valid 4m ahead", h: signed(priv, "rid-1", "user-1", now.Add(4*time.Minute), body), body: body, ok: true},
		{name: "stale", h: signed(priv, "rid-1", "user-1", now.Add(-6*time.Minute), body), body: body, reason: "beyond"},
		{name: "future", h: signed(priv, "rid-1", "user-1", now.Add(6*time.Minute), body), body: body, reason: "beyond"},
		{name: "tampered body", h: good, body: append([]byte(nil), append(body[:len(body)-1:len(body)-1], ' ', '}')...), reason: "no key"},
		{name: "re-serialised body", h: good, body: []byte(`{"request_id":"rid-1","status":"OK","payload":{"seed":196619188014358660}}`), reason: "no key"},
		{name: "wrong key", h: signed(otherPriv, "rid-1", "user-1", now, body), body: body, reason: "no key"},
		{name: "request id swapped", h: with(func(h http.Header) { h.Set("X-Fal-Webhook-Request-Id", "rid-2") }), body: body, reason: "no key"},
		{name: "user id swapped", h: with(func(h http.Header) { h.Set("X-Fal-Webhook-User-Id", "user-2") }), body: body, reason: "no key"},
		{name: "missing request id", h: with(func(h http.Header) { h.Del("X-Fal-Webhook-Request-Id") }), body: body, reason: "missing header X-Fal-Webhook-Request-Id"},
		{name: "missing user id", h: with(func(h http.Header) { h.Del("X-Fal-Webhook-User-Id") }), body: body, reason: "missing header X-Fal-Webhook-User-Id"},
		{name: "missing timestamp", h: with(func(h http.Header) { h.Del("X-Fal-Webhook-Timestamp") }), body: body, reason: "missing header X-Fal-Webhook-Timestamp"},
		{name: "missing signature", h: with(func(h http.Header) { h.Del("X-Fal-Webhook-Signature") }), body: body, reason: "missing header X-Fal-Webhook-Signature"},
		{name: "timestamp not a number", h: with(func(h http.Header) { h.Set("X-Fal-Webhook-Timestamp", "soon") }), body: body, reason: "not decimal"},
		{name: "timestamp in ms", h: with(func(h http.Header) { h.Set("X-Fal-Webhook-Timestamp", strconv.FormatInt(now.UnixMilli(), 10)) }), body: body, reason: "beyond"},
		{name: "bad hex", h: with(func(h http.Header) { h.Set("X-Fal-Webhook-Signature", strings.Repeat("zz", 64)) }), body: body, reason: "not hex"},
		{name: "odd hex", h: with(func(h http.Header) { h.Set("X-Fal-Webhook-Signature", good.Get("X-Fal-Webhook-Signature")[1:]) }), body: body, reason: "not hex"},
		{name: "short signature", h: with(func(h http.Header) { h.Set("X-Fal-Webhook-Signature", good.Get("X-Fal-Webhook-Signature")[:126]) }), body: body, reason: "63 bytes"},
		{name: "long signature", h: with(func(h http.Header) { h.Set("X-Fal-Webhook-Signature", good.Get("X-Fal-Webhook-Signature")+"00") }), body: body, reason: "65 bytes"},
		{name: "base64 signature", h: with(func(h http.Header) {
			raw, _ := hex.DecodeString(good.Get("X-Fal-Webhook-Signature"))
			h.Set("X-Fal-Webhook-Signature", base64.StdEncoding.EncodeToString(raw))
		}), body: body, reason: "not hex"},
	}
	for _, padded := range []bool{false, true} {
		t.Run(fmt.Sprintf("padded=%v", padded), func(t *testing.T) {
			t.Parallel()
			j := newJWKS(t, other2Pub, pub)
			j.padded = padded
			v := newVerifier(t, j.URL, clock)
			t.Run("cases", func(t *testing.T) {
				for _, tt := range tests {
					t.Run(tt.name, func(t *testing.T) {
						t.Parallel()
						rid, err := v.Verify(context.Background(), tt.h, tt.body)
						if tt.ok {
							require.NoError(t, err)
							require.Equal(t, "rid-1", rid)
							return
						}
						require.ErrorIs(t, err, falclient.ErrWebhookSignature)
						require.NotErrorIs(t, err, falclient.ErrJWKS)
						require.Contains(t, err.Error(), tt.reason)
						require.Empty(t, rid)
					})
				}
			})
			// One fetch, plus at most one refetch for all the bad signatures.
			require.LessOrEqual(t, j.fetches.Load(), int64(2))
		})
	}
}

func TestVerifierRotation(t *testing.T) {
	t.Parallel()
	pub1, priv1 := newKey(t)
	pub2, priv2 := newKey(t)
	_, priv3 := newKey(t)
	j := newJWKS(t, pub1)
	v := newVerifier(t, j.URL, nil)
	ctx := context.Background()
	body := []byte(`{"request_id":"r","status":"OK"}`)

	_, err := v.Verify(ctx, signed(priv1, "r", "u", time.Now(), body), body)
	require.NoError(t, err)
	_, err = v.Verify(ctx, signed(priv1, "r", "u", time.Now(), body), body)
	require.NoError(t, err)
	require.EqualValues(t, 1, j.fetches.Load(), "keys are cached")

	j.set(pub2) // rotation: an unknown key triggers exactly one refetch
	_, err = v.Verify(ctx, signed(priv2, "r", "u", time.Now(), body), body)
	require.NoError(t, err)
	require.EqualValues(t, 2, j.fetches.Load())
	_, err = v.Verify(ctx, signed(priv2, "r", "u", time.Now(), body), body)
	require.NoError(t, err)
	require.EqualValues(t, 2, j.fetches.Load())

	// Within RefetchInterval of that refetch, unknown keys trigger none.
	_, err = v.Verify(ctx, signed(priv3, "r", "u", time.Now(), body), body)
	require.ErrorIs(t, err, falclient.ErrWebhookSignature)
	require.EqualValues(t, 2, j.fetches.Load())

	// A storm of badly signed webhooks on a fresh verifier: one initial
	// fetch and exactly one refetch, shared by all.
	j2 := newJWKS(t, pub2)
	v2 := newVerifier(t, j2.URL, nil)
	_, err = v2.Verify(ctx, signed(priv2, "r", "u", time.Now(), body), body)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v2.Verify(ctx, signed(priv3, "r", "u", time.Now(), body), body)
			if !errors.Is(err, falclient.ErrWebhookSignature) || errors.Is(err, falclient.ErrJWKS) {
				t.Errorf("bad signature accepted or odd error: %v", err)
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, 2, j2.fetches.Load())
	_, err = v2.Verify(ctx, signed(priv2, "r", "u", time.Now(), body), body)
	require.NoError(t, err, "good webhooks still verify")
	require.EqualValues(t, 2, j2.fetches.Load())

	// Many concurrent webhooks signed by a freshly rotated key: all verify
	// (late arrivals use the keys a peer just refetched), with one refetch.
	j3 := newJWKS(t, pub1)
	v3 := newVerifier(t, j3.URL, nil)
	_, err = v3.Verify(ctx, signed(priv1, "r", "u", time.Now(), body), body)
	require.NoError(t, err)
	j3.set(pub2)
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = v3.Verify(ctx, signed(priv2, "r", "u", time.Now(), body), body)
		}()
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	require.EqualValues(t, 2, j3.fetches.Load())
}

func TestVerifierCacheTTL(t *testing.T) {
	t.Parallel()
	pub, priv := newKey(t)
	j := newJWKS(t, pub)
	var mu sync.Mutex
	now := time.Unix(1_736_510_400, 0)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	v, err := falclient.NewVerifier(falclient.VerifierOptions{JWKSURL: j.URL, Now: clock, CacheTTL: time.Hour})
	require.NoError(t, err)
	body := []byte(`{}`)
	ctx := context.Background()
	_, err = v.Verify(ctx, signed(priv, "r", "u", clock(), body), body)
	require.NoError(t, err)
	advance(59 * time.Minute)
	_, err = v.Verify(ctx, signed(priv, "r", "u", clock(), body), body)
	require.NoError(t, err)
	require.EqualValues(t, 1, j.fetches.Load())
	advance(2 * time.Minute)
	_, err = v.Verify(ctx, signed(priv, "r", "u", clock(), body), body)
	require.NoError(t, err)
	require.EqualValues(t, 2, j.fetches.Load())

	// Expired and the JWKS is down: the stale keys still verify.
	advance(2 * time.Hour)
	j.mu.Lock()
	j.status = 500
	j.mu.Unlock()
	_, err = v.Verify(ctx, signed(priv, "r", "u", clock(), body), body)
	require.NoError(t, err)
	require.EqualValues(t, 3, j.fetches.Load())
}

func TestVerifierJWKSErrors(t *testing.T) {
	t.Parallel()
	_, priv := newKey(t)
	body := []byte(`{}`)
	tests := []struct {
		name   string
		status int
		raw    string
	}{
		{"server error", 500, `{"detail":"down"}`},
		{"not JSON", 200, `<html>`},
		{"no Ed25519 key", 200, `{"keys":[{"kty":"RSA","n":"x","e":"AQAB"},{"kty":"OKP","crv":"X25519","x":"AAAA"}]}`},
		{"bad x", 200, `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"!!!"},{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j := newJWKS(t)
			j.status, j.raw = tt.status, tt.raw
			v := newVerifier(t, j.URL, nil)
			_, err := v.Verify(context.Background(), signed(priv, "r", "u", time.Now(), body), body)
			require.ErrorIs(t, err, falclient.ErrWebhookSignature)
			require.ErrorIs(t, err, falclient.ErrJWKS)
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		v := newVerifier(t, "http://127.0.0.1:1/.well-known/jwks.json", nil)
		_, err := v.Verify(context.Background(), signed(priv, "r", "u", time.Now(), body), body)
		require.ErrorIs(t, err, falclient.ErrJWKS)
	})
}

// TestVerifierTwoHosts: fal's keys are published on two hosts and it is not
// said which is authoritative (fal-protocol §11.5). A key verifies if either
// set holds it; one host down is no failure; both down fails closed.
func TestVerifierTwoHosts(t *testing.T) {
	t.Parallel()
	pubA, privA := newKey(t)
	pubB, privB := newKey(t)
	body := []byte(`{"request_id":"r"}`)
	tests := []struct {
		name           string
		current, alpha int // HTTP status of each host
		priv           ed25519.PrivateKey
		ok             bool
	}{
		{"key on the current host", 200, 200, privA, true},
		{"key on the old host only", 200, 200, privB, true},
		{"current host down", 503, 200, privB, true},
		{"old host down", 200, 503, privA, true},
		{"key only on the host that is down", 200, 503, privB, false},
		{"both down", 503, 503, privA, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cur, old := newJWKS(t, pubA), newJWKS(t, pubB)
			old.padded = true // fal serves some keys with "=" padding
			cur.status, old.status = tt.current, tt.alpha
			v, err := falclient.NewVerifier(falclient.VerifierOptions{JWKSURLs: []string{cur.URL, old.URL}})
			require.NoError(t, err)
			rid, err := v.Verify(context.Background(), signed(tt.priv, "r", "u", time.Now(), body), body)
			if tt.ok {
				require.NoError(t, err)
				require.Equal(t, "r", rid)
			} else {
				require.ErrorIs(t, err, falclient.ErrWebhookSignature)
			}
			if tt.current != 200 && tt.alpha != 200 {
				require.ErrorIs(t, err, falclient.ErrJWKS)
				require.Contains(t, err.Error(), cur.URL, "the error names each host that failed")
				require.Contains(t, err.Error(), old.URL)
			}
			require.Positive(t, cur.fetches.Load())
			require.Positive(t, old.fetches.Load())
		})
	}
}

func TestNewVerifierInvalid(t *testing.T) {
	t.Parallel()
	for name, o := range map[string]falclient.VerifierOptions{
		"VerifierOptions.JWKSURL":         {JWKSURL: "not a url"},
		"VerifierOptions.JWKSURLs":        {JWKSURLs: []string{"https://keys.example.com/jwks.json", "/relative"}},
		"VerifierOptions.Tolerance":       {Tolerance: -1},
		"VerifierOptions.CacheTTL":        {CacheTTL: -1},
		"VerifierOptions.RefetchInterval": {RefetchInterval: -1},
	} {
		_, err := falclient.NewVerifier(o)
		require.ErrorIs(t, err, falclient.ErrInvalidOption, name)
		require.Contains(t, err.Error(), name)
	}
	v, err := falclient.NewVerifier(falclient.VerifierOptions{})
	require.NoError(t, err)
	require.NotNil(t, v)
}

func FuzzParseWebhook(f *testing.F) {
	for _, s := range []string{
		`{"request_id": "123e", "gateway_request_id": "123e", "status": "OK", "payload": {"seed": 196619188014358660}, "error": null}`,
		`{"request_id":"r","status":"ERROR","error":"Invalid status code: 422","payload":{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"value_error.missing"}]}}`,
		`{"request_id":"c97b","status":"ERROR","error":"Invalid status code: 404","payload":null,"payload_error":"x"}`,
		`{"request_id":"r","status":"ERROR","error":7,"payload":"detail"}`,
		`{"request_id":"r","status":"ERROR","payload":{"detail":"x","error_type":"request_timeout"}}`,
		`{}`, `[]`, `null`, ``, `{"request_id":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w, err := falclient.ParseWebhook(body)
		if err != nil {
			if !errors.Is(err, falclient.ErrWebhookPayload) {
				t.Fatalf("error %v does not wrap ErrWebhookPayload", err)
			}
			return
		}
		if w.RequestID == "" || w.Status == "" {
			t.Fatalf("accepted without request_id/status: %+v", w)
		}
		if w.Payload != nil && !json.Valid(w.Payload) {
			t.Fatalf("payload not JSON: %q", w.Payload)
		}
		err = w.Err()
		if (err == nil) != (w.Status == falclient.WebhookOK) {
			t.Fatalf("Err() = %v for status %q", err, w.Status)
		}
		if err != nil {
			_ = err.Error()
			_ = errors.Is(err, falclient.ErrTimeout)
			_ = falclient.IsRetryable(err)
		}
	})
}

func strPtr(s string) *string { return &s }
