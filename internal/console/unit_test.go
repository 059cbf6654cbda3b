package console

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRetryBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		trigger   string
		truncated bool
		want      string // "" with wantErr
		wantErr   error
	}{
		{"no metadata", `{"id":"old","model_id":"m","input":{"p":1}}`, false,
			`{"id":"new","input":{"p":1},"metadata":{"falbridge_retry_of":"old"},"model_id":"m"}`, nil},
		{"no id", `{"model_id":"m","input":{}}`, false,
			`{"id":"new","input":{},"metadata":{"falbridge_retry_of":"old"},"model_id":"m"}`, nil},
		{"object metadata kept", `{"model_id":"m","metadata":{"tenant":"a","falbridge_retry_of":"older"}}`, false,
			`{"id":"new","metadata":{"falbridge_retry_of":"old","tenant":"a"},"model_id":"m"}`, nil},
		{"scalar metadata wrapped", `{"model_id":"m","metadata":"x<y"}`, false,
			`{"id":"new","metadata":{"falbridge_retry_of":"old","metadata":"x<y"},"model_id":"m"}`, nil},
		{"null metadata", `{"model_id":"m","metadata":null}`, false,
			`{"id":"new","metadata":{"falbridge_retry_of":"old"},"model_id":"m"}`, nil},
		{"workflow shape kept", `{"model":"m","input_params":{"prompt":"p"},"use_streaming":false}`, false,
			`{"id":"new","input_params":{"prompt":"p"},"metadata":{"falbridge_retry_of":"old"},"model":"m","use_streaming":false}`, nil},
		{"truncated", `{"model_id":"m"}`, true, "", errNotRetryable},
		{"missing", ``, false, "", errNotRetryable},
		{"a JSON string", `"not a trigger"`, false, "", errNotObject},
		{"broken", `{"model_id":`, false, "", errNotObject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := retryBody(json.RawMessage(tt.trigger), tt.truncated, "new", "old")
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.JSONEq(t, tt.want, string(got))
			require.NotContains(t, string(got), `\u003c`, "no HTML escaping in a republished trigger")
		})
	}
}

func TestFindMedia(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		output string
		want   []media
	}{
		{"fal images", `{"images":[{"url":"https://x/a.png","content_type":"image/png","width":1024,"height":768},{"url":"https://x/b.jpg"}],"seed":1}`,
			[]media{{Kind: "image", URL: "https://x/a.png", ContentType: "image/png", Width: 1024, Height: 768}, {Kind: "image", URL: "https://x/b.jpg"}}},
		{"video object", `{"video":{"url":"https://x/v","content_type":"video/mp4"}}`,
			[]media{{Kind: "video", URL: "https://x/v", ContentType: "video/mp4"}}},
		{"bare url strings", `{"audio_url":"http://x/s.mp3","page":"https://x/index.html"}`,
			[]media{{Kind: "audio", URL: "http://x/s.mp3"}}},
		{"javascript url refused", `{"image":{"url":"javascript:alert(1)","content_type":"image/png"}}`, nil},
		{"data url refused", `{"image":{"url":"data:image/png;base64,AAAA"}}`, nil},
		{"duplicates once", `{"a":{"url":"https://x/a.png"},"b":"https://x/a.png"}`, []media{{Kind: "image", URL: "https://x/a.png"}}},
		{"not json", `nope`, nil},
		{"no media", `{"text":"hello"}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, findMedia(json.RawMessage(tt.output)))
		})
	}
}

// FuzzFindMedia: fal's output is outside input; whatever it holds, the
// walk ends, stays bounded, and keeps only http(s) URLs.
func FuzzFindMedia(f *testing.F) {
	f.Add(`{"images":[{"url":"https://x/a.png","width":1}]}`)
	f.Add(`[[[[{"url":"http://h/v.mp4"}]]]]`)
	f.Add(`{"url":"javascript:x.png"}`)
	f.Fuzz(func(t *testing.T, s string) {
		got := findMedia(json.RawMessage(s))
		if len(got) > maxMedia {
			t.Fatalf("%d media", len(got))
		}
		for _, m := range got {
			if m.URL[:4] != "http" {
				t.Fatalf("kept %q", m.URL)
			}
		}
	})
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	tests := []struct {
		name  string
		token string
		set   func(*http.Request)
		want  int
	}{
		{"no token configured", "", func(*http.Request) {}, http.StatusNoContent},
		{"missing", "s3cret", func(*http.Request) {}, http.StatusUnauthorized},
		{"bearer", "s3cret", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }, http.StatusNoContent},
		{"bearer wrong", "s3cret", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cre") }, http.StatusUnauthorized},
		{"basic any user", "s3cret", func(r *http.Request) { r.SetBasicAuth("ops", "s3cret") }, http.StatusNoContent},
		{"basic wrong", "s3cret", func(r *http.Request) { r.SetBasicAuth("s3cret", "x") }, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &Console{token: tt.token}
			req := httptest.NewRequest(http.MethodGet, Prefix, nil)
			tt.set(req)
			rw := httptest.NewRecorder()
			c.authenticate(ok).ServeHTTP(rw, req)
			require.Equal(t, tt.want, rw.Code)
			if tt.want == http.StatusUnauthorized {
				require.Contains(t, rw.Header().Get("WWW-Authenticate"), "Basic")
			}
		})
	}
}
