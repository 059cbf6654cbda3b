package falclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/falclient"
)

func TestAPIErrorIs(t *testing.T) {
	t.Parallel()
	all := []error{
		falclient.ErrUnauthorized, falclient.ErrNotFound, falclient.ErrValidation, falclient.ErrRateLimited,
		falclient.ErrUpstream, falclient.ErrTimeout, falclient.ErrCanceled, falclient.ErrStreamingUnsupported,
		falclient.ErrAlreadyCompleted, falclient.ErrBadRequest, falclient.ErrAmbiguousSubmit,
	}
	tests := []struct {
		name      string
		err       falclient.APIError
		is        []error
		retryable bool
	}{
		{"400", falclient.APIError{Op: "submit", StatusCode: 400}, []error{falclient.ErrBadRequest}, false},
		{"401", falclient.APIError{Op: "status", StatusCode: 401}, []error{falclient.ErrUnauthorized}, false},
		{"403", falclient.APIError{Op: "status", StatusCode: 403}, []error{falclient.ErrUnauthorized}, false},
		{"404", falclient.APIError{Op: "status", StatusCode: 404}, []error{falclient.ErrNotFound}, false},
		{"404 stream", falclient.APIError{Op: "stream", StatusCode: 404}, []error{falclient.ErrNotFound, falclient.ErrStreamingUnsupported}, false},
		{"405 stream", falclient.APIError{Op: "stream", StatusCode: 405}, []error{falclient.ErrBadRequest, falclient.ErrStreamingUnsupported}, false},
		{"405", falclient.APIError{Op: "run", StatusCode: 405}, []error{falclient.ErrBadRequest}, false},
		{"408", falclient.APIError{Op: "status", StatusCode: 408}, []error{falclient.ErrBadRequest}, true},
		{"409", falclient.APIError{Op: "status", StatusCode: 409}, []error{falclient.ErrBadRequest}, true},
		{"422", falclient.APIError{Op: "result", StatusCode: 422}, []error{falclient.ErrValidation}, false},
		{"422 retryable header", falclient.APIError{Op: "result", StatusCode: 422, Retryable: boolPtr(true)}, []error{falclient.ErrValidation}, true},
		{"429", falclient.APIError{Op: "submit", StatusCode: 429}, []error{falclient.ErrRateLimited}, true},
		{"499", falclient.APIError{Op: "result", StatusCode: 499}, []error{falclient.ErrCanceled}, false},
		{"client_cancelled type", falclient.APIError{Op: "result", StatusCode: 400, ErrorType: "client_cancelled"}, []error{falclient.ErrCanceled}, false},
		{"cancel already completed", falclient.APIError{Op: "cancel", StatusCode: 400, Message: "ALREADY_COMPLETED"}, []error{falclient.ErrAlreadyCompleted, falclient.ErrBadRequest}, false},
		{"already completed only for cancel", falclient.APIError{Op: "status", StatusCode: 400, Message: "ALREADY_COMPLETED"}, []error{falclient.ErrBadRequest}, false},
		{"500", falclient.APIError{Op: "status", StatusCode: 500}, []error{falclient.ErrUpstream}, true},
		{"500 not retryable", falclient.APIError{Op: "status", StatusCode: 500, Retryable: boolPtr(false)}, []error{falclient.ErrUpstream}, false},
		{"500 stored result", falclient.APIError{Op: "result", StatusCode: 500, Body: json.RawMessage(`{"detail":[]}`)}, []error{falclient.ErrUpstream}, false},
		{"500 result nginx", falclient.APIError{Op: "result", StatusCode: 500}, []error{falclient.ErrUpstream}, true},
		{"502", falclient.APIError{Op: "status", StatusCode: 502}, []error{falclient.ErrUpstream}, true},
		{"503", falclient.APIError{Op: "status", StatusCode: 503}, []error{falclient.ErrUpstream}, true},
		{"503 retryable false", falclient.APIError{Op: "status", StatusCode: 503, Retryable: boolPtr(false)}, []error{falclient.ErrUpstream}, false},
		{"504 gateway", falclient.APIError{Op: "status", StatusCode: 504}, []error{falclient.ErrUpstream}, true},
		{"504 user timeout", falclient.APIError{Op: "result", StatusCode: 504, TimeoutType: "user"}, []error{falclient.ErrTimeout}, false},
		{"504 request_timeout", falclient.APIError{Op: "result", StatusCode: 504, ErrorType: "request_timeout"}, []error{falclient.ErrTimeout}, true},
		{"504 startup_timeout", falclient.APIError{Op: "result", StatusCode: 504, ErrorType: "startup_timeout"}, []error{falclient.ErrTimeout}, true},
		{"504 generation_timeout", falclient.APIError{Op: "result", StatusCode: 504, ErrorType: "generation_timeout"}, []error{falclient.ErrTimeout}, true},
		{"webhook 422", falclient.APIError{Op: "webhook", StatusCode: 422}, []error{falclient.ErrValidation}, false},
		{"webhook 503", falclient.APIError{Op: "webhook", StatusCode: 503}, []error{falclient.ErrUpstream}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := tt.err
			wrapped := fmt.Errorf("outer: %w", &e)
			for _, target := range all {
				want := false
				for _, w := range tt.is {
					want = want || w == target
				}
				require.Equal(t, want, errors.Is(wrapped, target), "errors.Is(%v, %v)", &e, target)
			}
			require.Equal(t, tt.retryable, falclient.IsRetryable(wrapped))
			var ae *falclient.APIError
			require.ErrorAs(t, wrapped, &ae)
		})
	}
}

func TestIsRetryableMisc(t *testing.T) {
	t.Parallel()
	require.False(t, falclient.IsRetryable(nil))
	require.False(t, falclient.IsRetryable(errors.New("x")))
	require.False(t, falclient.IsRetryable(context.Canceled))
	require.Equal(t, time.Duration(0), falclient.RetryAfter(errors.New("x")))
	require.Equal(t, 3*time.Second, falclient.RetryAfter(fmt.Errorf("w: %w", &falclient.APIError{StatusCode: 429, RetryAfter: 3 * time.Second})))
}

func TestAPIErrorMessage(t *testing.T) {
	t.Parallel()
	e := &falclient.APIError{
		Op: "result", Model: "fal-ai/flux/dev", StatusCode: 422, Message: "field required",
		Details: []falclient.ValidationDetail{
			{Loc: []any{"body", "prompt"}, Msg: "field required", Type: "missing"},
			{Loc: []any{"body", "image_size", "width"}, Msg: "too big", Type: "image_too_large"},
		},
		RequestID: "req-123",
	}
	require.Equal(t, "falclient: result fal-ai/flux/dev: HTTP 422 Unprocessable Entity: prompt: field required (and 1 more) (request_id req-123)", e.Error())

	e = &falclient.APIError{Op: "status", Model: "fal-ai/flux", StatusCode: 502, Message: "Bad Gateway"}
	require.Equal(t, "falclient: status fal-ai/flux: HTTP 502: Bad Gateway", e.Error())
}

func TestValidationDetailField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		loc  []any
		want string
	}{
		{[]any{"body", "image_size", "width"}, "image_size.width"},
		{[]any{"body", "prompt"}, "prompt"},
		{[]any{"body"}, ""},
		{nil, ""},
		{[]any{"body", "loras", float64(0), "path"}, "loras.0.path"},
		{[]any{"query", "x"}, "query.x"},
		{[]any{"prompt"}, "prompt"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, falclient.ValidationDetail{Loc: tt.loc}.Field(), "%v", tt.loc)
	}
	var d falclient.ValidationDetail
	require.NoError(t, json.Unmarshal([]byte(`{"loc":["body","loras",3,"scale"],"msg":"m","type":"t"}`), &d))
	require.Equal(t, "loras.3.scale", d.Field())
}

func boolPtr(b bool) *bool { return &b }
