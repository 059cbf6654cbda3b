package falclient

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNewAPIError(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		code    int
		header  map[string]string
		body    string
		want    APIError // Op/Model/StatusCode/Body filled in by the test
		rawBody bool
	}{
		{
			name: "format A",
			code: 422,
			body: `{"detail":[{"loc":["body","image_size","width"],"msg":"Image width must be at most 1024","type":"image_too_large","url":"https://docs.fal.ai/errors/#image_too_large","ctx":{"max_width":1024},"input":2048},{"loc":["body","prompt"],"msg":"field required","type":"missing"}]}`,
			want: APIError{Message: "Image width must be at most 1024", Details: []ValidationDetail{
				{Loc: []any{"body", "image_size", "width"}, Msg: "Image width must be at most 1024", Type: "image_too_large", URL: "https://docs.fal.ai/errors/#image_too_large", Ctx: json.RawMessage(`{"max_width":1024}`), Input: json.RawMessage(`2048`)},
				{Loc: []any{"body", "prompt"}, Msg: "field required", Type: "missing"},
			}},
			rawBody: true,
		},
		{
			name:    "detail plain string",
			code:    422,
			body:    `{"detail":"Prompt is too long"}`,
			want:    APIError{Message: "Prompt is too long", Details: []ValidationDetail{{Loc: []any{"body"}, Msg: "Prompt is too long", Type: "value_error"}}},
			rawBody: true,
		},
		{
			name:    "format B with header",
			code:    504,
			header:  map[string]string{"X-Fal-Error-Type": "request_timeout", "X-Fal-Request-Timeout-Type": "user", "X-Fal-Request-Id": "rid-1"},
			body:    `{"detail": "Request timed out", "error_type": "request_timeout"}`,
			want:    APIError{Message: "Request timed out", Details: []ValidationDetail{{Loc: []any{"body"}, Msg: "Request timed out", Type: "value_error"}}, ErrorType: "request_timeout", TimeoutType: "user", RequestID: "rid-1"},
			rawBody: true,
		},
		{
			name:    "body error_type wins over header",
			code:    503,
			header:  map[string]string{"X-Fal-Error-Type": "other"},
			body:    `{"detail":"Runner disconnected","error_type":"runner_disconnected"}`,
			want:    APIError{Message: "Runner disconnected", Details: []ValidationDetail{{Loc: []any{"body"}, Msg: "Runner disconnected", Type: "value_error"}}, ErrorType: "runner_disconnected"},
			rawBody: true,
		},
		{
			name:   "nginx HTML",
			code:   502,
			header: map[string]string{"Content-Type": "text/html"},
			body:   "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><center>nginx</center></body></html>",
			want:   APIError{Message: "Bad Gateway"},
		},
		{
			name:    "cancel status body",
			code:    400,
			body:    `{"status":"ALREADY_COMPLETED"}`,
			want:    APIError{Message: "ALREADY_COMPLETED"},
			rawBody: true,
		},
		{
			name:    "retry-after seconds and retryable",
			code:    429,
			header:  map[string]string{"Retry-After": "3", "X-Fal-Retryable": "true"},
			body:    `{"detail":"Rate limit exceeded"}`,
			want:    APIError{Message: "Rate limit exceeded", Details: []ValidationDetail{{Loc: []any{"body"}, Msg: "Rate limit exceeded", Type: "value_error"}}, RetryAfter: 3 * time.Second, Retryable: ptr(true)},
			rawBody: true,
		},
		{
			name:   "retry-after date",
			code:   503,
			header: map[string]string{"Retry-After": now.Add(90 * time.Second).Format(http.TimeFormat), "X-Fal-Retryable": "false"},
			body:   ``,
			want:   APIError{Message: "Service Unavailable", RetryAfter: 90 * time.Second, Retryable: ptr(false)},
		},
		{
			name:    "detail object",
			code:    400,
			body:    `{"detail":{"reason":"bad"}}`,
			want:    APIError{Message: `{"reason":"bad"}`},
			rawBody: true,
		},
		{
			name:    "json string body",
			code:    500,
			body:    `"boom"`,
			want:    APIError{Message: "boom"},
			rawBody: true,
		},
		{
			name:    "empty object",
			code:    500,
			body:    `{}`,
			want:    APIError{Message: "Internal Server Error"},
			rawBody: true,
		},
		{
			name:    "odd detail items",
			code:    422,
			body:    `{"detail":["just a string", 5]}`,
			want:    APIError{Message: "just a string", Details: []ValidationDetail{{Loc: []any{"body"}, Msg: "just a string", Type: "value_error"}, {Loc: []any{"body"}, Msg: "5", Type: "value_error"}}},
			rawBody: true,
		},
		{
			name: "truncated JSON",
			code: 500,
			body: `{"detail":"cut`,
			want: APIError{Message: "Internal Server Error"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			got := newAPIError(OpResult, "fal-ai/flux/dev", tt.code, h, []byte(tt.body), now)
			want := tt.want
			want.Op, want.Model, want.StatusCode = OpResult, "fal-ai/flux/dev", tt.code
			if tt.rawBody {
				want.Body = json.RawMessage(tt.body)
			}
			require.Equal(t, &want, got)
			require.Contains(t, got.Error(), "result fal-ai/flux/dev: HTTP ")
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 10, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"5", 5 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"1.5", 1500 * time.Millisecond},
		{"-3", 0},
		{"NaN", 0},
		{"soon", 0},
		{now.Add(10 * time.Second).Format(http.TimeFormat), 10 * time.Second},
		{now.Add(-10 * time.Second).Format(http.TimeFormat), 0},
		{"Fri, 10 Jan 2025 12:01:00 GMT", time.Minute},
		{"Friday, 10-Jan-25 12:01:00 GMT", time.Minute}, // RFC 850
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, parseRetryAfter(tt.in, now), tt.in)
	}
}

func ptr[T any](v T) *T { return &v }
