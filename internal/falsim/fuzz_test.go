package falsim

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzValidate feeds arbitrary submit bodies (the "_sim" object included)
// to every model's validator: no panic, params always returned, and a
// valid input renders an output that is JSON.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{
		`{"prompt":"x"}`, `{}`, ``, `[`, `null`, `{"prompt":"x","image_size":{"width":1,"height":2}}`,
		`{"prompt":"x","_sim":{"latency_ms":1,"fail":"runner_disconnected","fail_attempts":2,"cancel":"ignore","sign_gateway_id":true}}`,
		`{"prompt":"x","_sim":{"cancel":"maybe","fail_attempts":-1,"sign_gateway_id":"yes"}}`,
		`{"image_url":"data:image/png;base64,AA==","prompt":"d","max_tokens":9}`, `{"seed":17454220438242315174,"prompt":"p"}`,
	} {
		f.Add(s)
	}
	ids := ModelIDs()
	f.Fuzz(func(t *testing.T, body string) {
		for _, id := range ids {
			m := catalog[id]
			p, details := m.validate([]byte(body))
			if p == nil {
				t.Fatalf("%s %q: nil params", id, body)
			}
			if details != nil {
				if !json.Valid(detailBody(details)) {
					t.Fatalf("%s %q: detail body is not JSON", id, body)
				}
				continue
			}
			if p.ctl.cancel != "" && p.ctl.cancel != CancelHonour && p.ctl.cancel != CancelIgnore {
				t.Fatalf("%s %q: cancel %q accepted", id, body, p.ctl.cancel)
			}
			out := m.output(p, outputBuilder{base: "http://h", requestID: "r", seed: 1 << 63})
			if !json.Valid(out) {
				t.Fatalf("%s %q: output %s is not JSON", id, body, out)
			}
		}
	})
}

// FuzzWebhookBody checks that any result body the simulator could store
// becomes a webhook body that is JSON, keeps the payload's value, and
// has its keys sorted.
func FuzzWebhookBody(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[{"d":"é","c":null}]}`, `{"seed":17454220438242315174}`, `{"detail":"x"}`, `"s"`, `[]`} {
		f.Add(s, 200)
	}
	f.Fuzz(func(t *testing.T, payload string, code int) {
		if !json.Valid([]byte(payload)) {
			return // results are JSON the simulator made itself
		}
		body := webhookBody("rid", "gw", code, []byte(payload))
		var hook struct {
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(body, &hook); err != nil {
			t.Fatalf("body %s: %v", body, err)
		}
		if !bytes.HasPrefix(body, []byte(`{"error": `)) {
			t.Fatalf("keys not sorted: %s", body)
		}
		var a, b any
		dec := json.NewDecoder(bytes.NewReader([]byte(payload)))
		dec.UseNumber()
		if dec.Decode(&a) != nil {
			return
		}
		dec = json.NewDecoder(bytes.NewReader(hook.Payload))
		dec.UseNumber()
		if err := dec.Decode(&b); err != nil {
			t.Fatalf("payload %s: %v", hook.Payload, err)
		}
		if string(mustMarshal(a)) != string(mustMarshal(b)) {
			t.Fatalf("payload changed: %s → %s", payload, hook.Payload)
		}
	})
}

// FuzzMediaLifetime reads arbitrary X-Fal-Object-Lifecycle-Preference
// values: no panic, never a negative lifetime.
func FuzzMediaLifetime(f *testing.F) {
	for _, s := range []string{`{"expiration_duration_seconds":3600}`, `{"expiration_duration_seconds":-1}`, `{"expiration_duration_seconds":1e300}`, `[]`, `{`, ``, `{"initial_acl":{"default":"allow"}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if d := mediaLifetime(v); d < 0 {
			t.Fatalf("%q: lifetime %s", v, d)
		}
	})
}
