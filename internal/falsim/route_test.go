package falsim

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseRoute(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		method string
		path   string
		want   route
	}{
		{"submit two segments", "POST", "/fal-ai/fast-sdxl", route{kind: routeSubmit, model: "fal-ai/fast-sdxl", app: "fal-ai/fast-sdxl"}},
		{"submit with path", "POST", "/fal-ai/flux/dev", route{kind: routeSubmit, model: "fal-ai/flux/dev", app: "fal-ai/flux"}},
		{"submit deep path", "POST", "/fal-ai/kling-video/v1.6/standard/text-to-video", route{kind: routeSubmit, model: "fal-ai/kling-video/v1.6/standard/text-to-video", app: "fal-ai/kling-video"}},
		{"submit workflow", "POST", "/workflows/alice/my-flow/step", route{kind: routeSubmit, model: "workflows/alice/my-flow/step", app: "workflows/alice/my-flow"}},
		{"submit comfy", "POST", "/comfy/alice/flow", route{kind: routeSubmit, model: "comfy/alice/flow", app: "comfy/alice/flow"}},
		{"submit legacy id", "POST", "/12345-my-app", route{kind: routeSubmit, model: "12345/my-app", app: "12345/my-app"}},
		{"submit trailing slash", "POST", "/fal-ai/flux/dev/", route{kind: routeSubmit, model: "fal-ai/flux/dev", app: "fal-ai/flux"}},
		{"submit path named requests", "POST", "/fal-ai/flux/requests/x", route{kind: routeSubmit, model: "fal-ai/flux/requests/x", app: "fal-ai/flux"}},
		{"workflow too short", "POST", "/workflows/alice", route{kind: routeNotFound}},
		{"single segment", "POST", "/flux", route{kind: routeNotFound}},
		{"bad characters", "POST", "/fal-ai/fl ux", route{kind: routeNotFound}},
		{"result", "GET", "/fal-ai/flux/requests/abc", route{kind: routeResult, app: "fal-ai/flux", requestID: "abc"}},
		{"result trailing slash", "GET", "/fal-ai/flux/requests/abc/", route{kind: routeResult, app: "fal-ai/flux", requestID: "abc"}},
		{"status", "GET", "/fal-ai/flux/requests/abc/status", route{kind: routeStatus, app: "fal-ai/flux", requestID: "abc"}},
		{"status trailing slash", "GET", "/fal-ai/flux/requests/abc/status/", route{kind: routeStatus, app: "fal-ai/flux", requestID: "abc"}},
		{"status stream", "GET", "/fal-ai/flux/requests/abc/status/stream", route{kind: routeStatusStream, app: "fal-ai/flux", requestID: "abc"}},
		{"cancel", "PUT", "/fal-ai/flux/requests/abc/cancel", route{kind: routeCancel, app: "fal-ai/flux", requestID: "abc"}},
		{"workflow status", "GET", "/workflows/alice/my-flow/requests/abc/status", route{kind: routeStatus, app: "workflows/alice/my-flow", requestID: "abc"}},
		{"cancel wrong method", "GET", "/fal-ai/flux/requests/abc/cancel", route{kind: routeMethodNotAllowed, allow: "PUT"}},
		{"status wrong method", "PUT", "/fal-ai/flux/requests/abc/status", route{kind: routeMethodNotAllowed, allow: "GET"}},
		{"unknown queue op", "GET", "/fal-ai/flux/requests/abc/logs", route{kind: routeNotFound}},
		{"get on a model", "GET", "/fal-ai/flux/dev", route{kind: routeMethodNotAllowed, allow: "POST"}},
		{"run", "POST", "/run/fal-ai/flux/dev", route{kind: routeRun, model: "fal-ai/flux/dev", app: "fal-ai/flux"}},
		{"run stream", "POST", "/run/fal-ai/llavav15-13b/stream", route{kind: routeRunStream, model: "fal-ai/llavav15-13b", app: "fal-ai/llavav15-13b"}},
		{"run stream with path", "POST", "/run/fal-ai/flux/schnell/stream", route{kind: routeRunStream, model: "fal-ai/flux/schnell", app: "fal-ai/flux"}},
		{"run model named stream", "POST", "/run/fal-ai/stream", route{kind: routeRun, model: "fal-ai/stream", app: "fal-ai/stream"}},
		{"run nothing", "POST", "/run", route{kind: routeNotFound}},
		{"jwks", "GET", "/.well-known/jwks.json", route{kind: routeJWKS}},
		{"files", "GET", "/files/penguin/x_0.png", route{kind: routeFiles, file: "penguin/x_0.png"}},
		{"files head", "HEAD", "/files/penguin/x_0.png", route{kind: routeFiles, file: "penguin/x_0.png"}},
		{"stats", "GET", "/_sim/stats", route{kind: routeStats}},
		{"reset", "POST", "/_sim/reset", route{kind: routeReset}},
		{"reset wrong method", "GET", "/_sim/reset", route{kind: routeMethodNotAllowed, allow: "POST"}},
		{"faults put", "PUT", "/_sim/faults", route{kind: routeFaults}},
		{"sim request", "GET", "/_sim/requests/abc", route{kind: routeSimRequest, requestID: "abc"}},
		{"alpha jwks", "GET", "/alpha/.well-known/jwks.json", route{kind: routeJWKSAlpha}},
		{"alpha other", "GET", "/alpha/x/requests/abc", route{kind: routeResult, app: "alpha/x", requestID: "abc"}},
		{"pricing", "GET", "/v1/models/pricing", route{kind: routePricing}},
		{"pricing wrong method", "POST", "/v1/models/pricing", route{kind: routeMethodNotAllowed, allow: "GET"}},
		{"v1 model", "POST", "/v1/models", route{kind: routeSubmit, model: "v1/models", app: "v1/models"}},
		{"root", "GET", "/", route{kind: routeNotFound}},
		{"empty segment", "POST", "/fal-ai//flux", route{kind: routeNotFound}},
		{"dot dot", "POST", "/fal-ai/../flux", route{kind: routeNotFound}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, parseRoute(tc.method, tc.path))
		})
	}
}

// FuzzRoute checks that the router is total and its answers consistent:
// no panic, API routes carry the ids they need, and the base app id is a
// prefix of the endpoint id.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{
		"/fal-ai/flux/dev", "/workflows/a/b/c", "/comfy/a", "/fal-ai/flux/requests/x/status/stream",
		"/run/fal-ai/llavav15-13b/stream", "/run/stream", "/12-x", "//", "/_sim/faults", "/files/", "/a/b/requests//cancel",
	} {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
			f.Add(m, s)
		}
	}
	f.Fuzz(func(t *testing.T, method, path string) {
		rt := parseRoute(method, path)
		switch rt.kind {
		case routeSubmit, routeRun, routeRunStream:
			if rt.model == "" || rt.app == "" || !strings.HasPrefix(rt.model, rt.app) {
				t.Fatalf("%s %q: model %q app %q", method, path, rt.model, rt.app)
			}
			if got := strings.Count(rt.app, "/"); got != 1 && got != 2 {
				t.Fatalf("%s %q: app %q has %d slashes", method, path, rt.app, got)
			}
			if method != http.MethodPost {
				t.Fatalf("%s %q routed to %d", method, path, rt.kind)
			}
		case routeStatus, routeStatusStream, routeResult, routeCancel:
			if rt.requestID == "" || rt.app == "" {
				t.Fatalf("%s %q: no request id or app", method, path)
			}
		case routeMethodNotAllowed:
			if rt.allow == "" {
				t.Fatalf("%s %q: 405 without Allow", method, path)
			}
		}
	})
}

func TestPyJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		{"object", `{"a":1,"b":[1,2]}`, `{"a": 1, "b": [1, 2]}`},
		{"separators in strings kept", `{"k":"a,b:c"}`, `{"k": "a,b:c"}`},
		{"escaped quote", `{"k":"say \"hi\", ok"}`, `{"k": "say \"hi\", ok"}`},
		{"non-ascii escaped", `{"k":"café"}`, `{"k": "caf\u00e9"}`},
		{"astral plane as surrogates", `{"k":"🦊"}`, `{"k": "\ud83e\udd8a"}`},
		{"big seed untouched", `{"seed":196619188014358660}`, `{"seed": 196619188014358660}`},
		{"null", `null`, `null`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := pyJSON(nil, []byte(tc.in))
			require.Equal(t, tc.want, string(got))
			var a, b any
			require.NoError(t, json.Unmarshal([]byte(tc.in), &a))
			require.NoError(t, json.Unmarshal(got, &b))
			require.Equal(t, a, b, "same value after re-spacing")
		})
	}
}

func TestWebhookBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		gateway string
		code    int
		payload string
		want    string
	}{
		{"ok, keys sorted at every level", "rid", 200, `{"seed":17454220438242315174,"images":[{"url":"u","content_type":"image/png"}]}`,
			`{"error": null, "gateway_request_id": "rid", "payload": {"images": [{"content_type": "image/png", "url": "u"}], "seed": 17454220438242315174}, "request_id": "rid", "status": "OK"}`},
		{"error after a server-side retry", "gw2", 422, `{"detail":[]}`,
			`{"error": "Invalid status code: 422", "gateway_request_id": "gw2", "payload": {"detail": []}, "request_id": "rid", "status": "ERROR"}`},
		{"no payload", "rid", 499, ``,
			`{"error": "Invalid status code: 499", "gateway_request_id": "rid", "payload": null, "request_id": "rid", "status": "ERROR"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, string(webhookBody("rid", tc.gateway, tc.code, []byte(tc.payload))))
		})
	}
}

func TestLane(t *testing.T) {
	t.Parallel()
	var l lane
	jobs := make([]*job, 200)
	for i := range jobs {
		jobs[i] = &job{seq: uint64(i + 1)}
		l.push(jobs[i])
	}
	require.Equal(t, 5, l.index(jobs[5]))
	require.True(t, l.remove(jobs[5]))
	require.False(t, l.remove(jobs[5]))
	require.Equal(t, -1, l.index(jobs[5]))
	require.Equal(t, 5, l.index(jobs[6]))
	for i := range 100 {
		if i == 5 {
			continue
		}
		require.Same(t, jobs[i], l.pop())
	}
	require.Equal(t, 0, l.index(jobs[100]), "positions count from 0 after compaction")
	require.Equal(t, 100, l.len())
}

func TestNewRequestID(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		id := newRequestID()
		require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, id)
		require.False(t, seen[id])
		seen[id] = true
	}
}
