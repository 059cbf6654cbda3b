package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/falbridge/falbridge/falclient"
	"github.com/falbridge/falbridge/publisher"
)

// failure is what an error from fal means for a job: the error event's code,
// message and detail, and whether trying again later may help.
type failure struct {
	Code       publisher.Code
	Message    string
	Detail     json.RawMessage
	Retryable  bool
	RetryAfter time.Duration
}

// classify maps an error from falclient to a failure. It is the one place
// that decides which fal errors are worth another delivery.
func classify(err error, model string) failure {
	var apiErr *falclient.APIError
	hasAPI := errors.As(err, &apiErr)
	f := failure{Code: publisher.CodeFalError, Message: err.Error()}
	if hasAPI {
		if len(apiErr.Body) > 0 && json.Valid(apiErr.Body) {
			f.Detail = apiErr.Body
		}
		f.RetryAfter = apiErr.RetryAfter
	}
	switch {
	case errors.Is(err, falclient.ErrAmbiguousSubmit):
		f.Code = publisher.CodeAmbiguousSubmit
		f.Message = fmt.Sprintf("fal may or may not have accepted the submit of %q (%v); not retried, to avoid a second bill", model, errors.Unwrap(err))
	// Before ErrNotFound: fal answers a /stream call on a model without
	// one with a 404.
	case errors.Is(err, falclient.ErrStreamingUnsupported):
		f.Code = publisher.CodeStreamingUnsupported
		f.Message = fmt.Sprintf("model %q does not support streaming; use mode queue or sync", model)
	case errors.Is(err, falclient.ErrInvalidModelID):
		f.Code = publisher.CodeInvalidModel
		f.Message = err.Error()
	case errors.Is(err, falclient.ErrValidation):
		f.Code, f.Message = validationMessage(apiErr)
	case errors.Is(err, falclient.ErrNotFound):
		f.Code = publisher.CodeInvalidModel
		f.Message = fmt.Sprintf("unknown model %q: fal answered 404", model)
	case errors.Is(err, falclient.ErrUnauthorized):
		f.Code = publisher.CodeUnauthorized
		f.Message = "fal rejected the API key: " + apiMessage(apiErr, err)
	case errors.Is(err, falclient.ErrRateLimited):
		f.Code = publisher.CodeRateLimited
		f.Message = "fal is rate limiting requests: " + apiMessage(apiErr, err)
		f.Retryable = true
	case errors.Is(err, falclient.ErrTimeout) && hasAPI:
		// fal's own answer: a start timeout or a generation timeout.
		f.Code = publisher.CodeTimeout
		f.Message = "fal timed out: " + apiMessage(apiErr, err)
	case errors.Is(err, falclient.ErrTimeout):
		// Our call gave up without an answer: not the job's timeout.
		f.Code = publisher.CodeUpstreamError
		f.Message = "no answer from fal in time: " + err.Error()
		f.Retryable = true
	case errors.Is(err, falclient.ErrCanceled):
		f.Code = publisher.CodeCanceled
		f.Message = "the request was canceled at fal"
	case errors.Is(err, falclient.ErrUpstream):
		f.Code = publisher.CodeUpstreamError
		f.Message = "fal had a server error: " + apiMessage(apiErr, err)
		f.Retryable = true
	case hasAPI:
		f.Code = publisher.CodeFalError
		f.Message = "fal returned an error: " + apiMessage(apiErr, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		f.Code = publisher.CodeUpstreamError
		f.Message = "no answer from fal in time: " + err.Error()
		f.Retryable = true
	default:
		// Network trouble before fal answered (falclient already retried).
		f.Code = publisher.CodeUpstreamError
		f.Message = "cannot reach fal: " + err.Error()
		f.Retryable = true
	}
	return f
}

func apiMessage(apiErr *falclient.APIError, err error) string {
	if apiErr != nil && apiErr.Message != "" {
		return fmt.Sprintf("%s (HTTP %d)", apiErr.Message, apiErr.StatusCode)
	}
	return err.Error()
}

// validationMessage turns fal's per-field details into one sentence that
// names the fields, e.g. `missing required input field "prompt"`.
func validationMessage(apiErr *falclient.APIError) (publisher.Code, string) {
	if apiErr == nil || len(apiErr.Details) == 0 {
		msg := "fal rejected the input"
		if apiErr != nil && apiErr.Message != "" {
			msg += ": " + apiErr.Message
		}
		return publisher.CodeValidationError, msg
	}
	code := publisher.CodeValidationError
	parts := make([]string, 0, len(apiErr.Details))
	for _, d := range apiErr.Details {
		field := d.Field()
		switch {
		case d.Type == "missing" || d.Type == "value_error.missing" || d.Msg == "field required":
			parts = append(parts, fmt.Sprintf("missing required input field %q", field))
		case field == "image_url" || field == "image_urls" || strings.HasPrefix(field, "image_urls."):
			code = publisher.CodeInvalidImageURL
			parts = append(parts, fmt.Sprintf("invalid image URL %s in input field %q: %s", quoteInput(d.Input), field, d.Msg))
		case field == "":
			parts = append(parts, d.Msg)
		default:
			parts = append(parts, fmt.Sprintf("input field %q: %s", field, d.Msg))
		}
	}
	return code, strings.Join(parts, "; ")
}

// quoteInput renders the offending value fal echoed, quoted; "" when absent.
func quoteInput(raw json.RawMessage) string {
	if len(raw) == 0 {
		return `""`
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return fmt.Sprintf("%q", s)
	}
	return string(raw)
}

// checkImageURLs rejects image inputs that fal would refuse, before any fal
// call: each of image_url / image_urls must be an http(s) URL or a data: URI.
func checkImageURLs(input json.RawMessage) *failure {
	var fields map[string]json.RawMessage
	if json.Unmarshal(input, &fields) != nil {
		return nil
	}
	var urls []string
	if raw, ok := fields["image_url"]; ok {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return &failure{Code: publisher.CodeInvalidImageURL, Message: fmt.Sprintf("invalid image URL %s in input field \"image_url\": must be a string", string(raw))}
		}
		urls = append(urls, s)
	}
	if raw, ok := fields["image_urls"]; ok {
		var list []string
		if json.Unmarshal(raw, &list) != nil {
			return &failure{Code: publisher.CodeInvalidImageURL, Message: "invalid input field \"image_urls\": must be a list of URL strings"}
		}
		urls = append(urls, list...)
	}
	for _, u := range urls {
		if !validImageURL(u) {
			return &failure{Code: publisher.CodeInvalidImageURL, Message: fmt.Sprintf("invalid image URL %q: must be an absolute http(s) URL or a data: URI", u)}
		}
	}
	return nil
}

func validImageURL(u string) bool {
	switch {
	case strings.HasPrefix(u, "data:"):
		return strings.Contains(u, ",")
	case strings.HasPrefix(u, "https://"), strings.HasPrefix(u, "http://"):
		rest := u[strings.Index(u, "://")+3:]
		host, _, _ := strings.Cut(rest, "/")
		return host != "" && !strings.ContainsAny(u, " \t\r\n")
	}
	return false
}
