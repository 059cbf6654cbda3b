package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	api := func(status int, mut func(*falclient.APIError)) error {
		e := &falclient.APIError{Op: "submit", Model: "fal-ai/flux/dev", StatusCode: status, Message: "boom"}
		if mut != nil {
			mut(e)
		}
		return fmt.Errorf("wrapped: %w", e)
	}
	cases := []struct {
		name      string
		err       error
		code      publisher.Code
		retryable bool
		mention   string
	}{
		{name: "401", err: api(401, nil), code: publisher.CodeUnauthorized, mention: "key"},
		{name: "403", err: api(403, nil), code: publisher.CodeUnauthorized},
		{name: "404 unknown model", err: api(404, nil), code: publisher.CodeInvalidModel, mention: `"fal-ai/flux/dev"`},
		{name: "422 missing field", err: api(422, func(e *falclient.APIError) {
			e.Details = []falclient.ValidationDetail{{Loc: []any{"body", "prompt"}, Msg: "field required", Type: "missing"}}
		}), code: publisher.CodeValidationError, mention: `missing required input field "prompt"`},
		{name: "422 bad image", err: api(422, func(e *falclient.APIError) {
			e.Details = []falclient.ValidationDetail{{Loc: []any{"body", "image_url"}, Msg: "bad url", Type: "value_error", Input: json.RawMessage(`"ftp://x"`)}}
		}), code: publisher.CodeInvalidImageURL, mention: `"ftp://x"`},
		{name: "422 field", err: api(422, func(e *falclient.APIError) {
			e.Details = []falclient.ValidationDetail{{Loc: []any{"body", "image_size", "width"}, Msg: "too big", Type: "image_too_large"}}
		}), code: publisher.CodeValidationError, mention: `"image_size.width"`},
		{name: "429", err: api(429, func(e *falclient.APIError) { e.RetryAfter = 3 * time.Second }), code: publisher.CodeRateLimited, retryable: true},
		{name: "500", err: api(500, nil), code: publisher.CodeUpstreamError, retryable: true},
		{name: "503", err: api(503, nil), code: publisher.CodeUpstreamError, retryable: true},
		{name: "504 user timeout", err: api(504, func(e *falclient.APIError) { e.TimeoutType = "user" }), code: publisher.CodeTimeout},
		{name: "client gave up without an answer", err: fmt.Errorf("status: %w", errors.Join(falclient.ErrTimeout, context.DeadlineExceeded)), code: publisher.CodeUpstreamError, retryable: true, mention: "no answer from fal"},
		{name: "499", err: api(499, nil), code: publisher.CodeCanceled},
		{name: "400", err: api(400, nil), code: publisher.CodeFalError},
		{name: "ambiguous", err: fmt.Errorf("submit: %w", errors.Join(falclient.ErrAmbiguousSubmit, context.DeadlineExceeded)), code: publisher.CodeAmbiguousSubmit, mention: "second bill"},
		{name: "network", err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}, code: publisher.CodeUpstreamError, retryable: true},
		{name: "invalid model id", err: fmt.Errorf("%w: %q", falclient.ErrInvalidModelID, "a//b"), code: publisher.CodeInvalidModel},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := classify(tc.err, "fal-ai/flux/dev")
			require.Equal(t, tc.code, f.Code, f.Message)
			require.Equal(t, tc.retryable, f.Retryable)
			require.Contains(t, f.Message, tc.mention)
		})
	}
	require.Equal(t, 3*time.Second, classify(api(429, func(e *falclient.APIError) { e.RetryAfter = 3 * time.Second }), "m").RetryAfter)
}

func TestCheckImageURLs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		input string
		bad   bool
	}{
		{`{"prompt":"x"}`, false},
		{`{"image_url":"https://example.com/a.png"}`, false},
		{`{"image_url":"data:image/png;base64,AAAA"}`, false},
		{`{"image_url":"ftp://example.com/a.png"}`, true},
		{`{"image_url":"https://"}`, true},
		{`{"image_url":"https://exa mple.com/a.png"}`, true},
		{`{"image_url":42}`, true},
		{`{"image_urls":["https://a/b.png","nope"]}`, true},
		{`{"image_urls":"https://a/b.png"}`, true},
	}
	for _, tc := range cases {
		f := checkImageURLs(json.RawMessage(tc.input))
		require.Equal(t, tc.bad, f != nil, tc.input)
		if f != nil {
			require.Equal(t, publisher.CodeInvalidImageURL, f.Code)
		}
	}
}

func TestModelLabelsAreCapped(t *testing.T) {
	t.Parallel()
	var l modelLabels
	// Models seen only in refused or rejected triggers take no label.
	require.Equal(t, "other", l.label("made/up-0", false))
	for i := range maxModelLabels {
		require.Equal(t, fmt.Sprintf("m/%d", i), l.label(fmt.Sprintf("m/%d", i), true))
	}
	require.Equal(t, "other", l.label("made/up", true))
	require.Equal(t, "m/0", l.label("m/0", false), "known models keep their label")
	require.Equal(t, "invalid", l.label(strings.Repeat("x", maxModelLabelLen+1), true), "long ids are never a label")
	require.Equal(t, "invalid", l.label("fal-ai//flux", false), "malformed ids are invalid")
	require.Equal(t, "invalid", l.label("", false))
}
