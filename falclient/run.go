package falclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

// RunOptions are the optional parameters of [Client.Run] and
// [Client.Stream].
type RunOptions struct {
	StartTimeout     time.Duration // X-Fal-Request-Timeout in decimal seconds; 0 sends nothing
	ObjectExpiration time.Duration // X-Fal-Object-Lifecycle-Preference, as [SubmitOptions.ObjectExpiration]
	// MaxAttempts caps the attempts of this call below the client's
	// policy, as [SubmitOptions.MaxAttempts] does (0 keeps the policy).
	MaxAttempts int
	// Header holds extra headers; the same rules as [SubmitOptions.Header].
	Header http.Header
}

func (o RunOptions) build() (http.Header, error) {
	h, err := copyHeader("RunOptions.Header", o.Header)
	if err != nil {
		return nil, err
	}
	if err := setStartTimeout(h, "RunOptions.StartTimeout", o.StartTimeout); err != nil {
		return nil, err
	}
	if err := setObjectExpiration(h, "RunOptions.ObjectExpiration", o.ObjectExpiration); err != nil {
		return nil, err
	}
	if o.MaxAttempts < 0 {
		return nil, invalid("RunOptions.MaxAttempts", "must be ≥ 0 (got %d)", o.MaxAttempts)
	}
	return h, nil
}

// Run calls a model synchronously: POST {run}/{model}, and returns fal's
// output bytes untouched. Only ctx bounds the call (no per-attempt timeout).
// fal does not retry runs and a second run is a second bill, so Run retries
// only when the request was never written in full, or on 429 and 503
// answers. Other failures: an *APIError (see [APIError.Is]), or a network
// error (wrapping [ErrTimeout] and context.DeadlineExceeded if ctx's
// deadline passed). input is encoded as in [Client.Submit].
func (c *Client) Run(ctx context.Context, model string, input any, opts RunOptions) (json.RawMessage, error) {
	m, err := parseModel(OpRun, model)
	if err != nil {
		return nil, err
	}
	h, err := opts.build()
	if err != nil {
		return nil, err
	}
	body, err := encodeInput(OpRun, model, input)
	if err != nil {
		return nil, err
	}
	cl := &call{
		op: OpRun, model: model, method: http.MethodPost,
		url: c.runURL + "/" + m.String(), body: body, accept: contentJSON, header: h,
	}
	r := c.newRetrier(OpRun, model)
	r.max = opts.MaxAttempts
	for {
		rep, err := c.doOnce(ctx, cl)
		if err == nil {
			if !json.Valid(rep.body) {
				return nil, &netError{op: OpRun, model: model, written: true, permanent: true,
					err: fmt.Errorf("%w: output is not JSON (%d bytes)", ErrMalformedResponse, len(rep.body))}
			}
			return json.RawMessage(rep.body), nil
		}
		if again, ferr := r.again(ctx, err, retryRun(err)); !again {
			return nil, ferr
		}
	}
}

// Stream calls a model's streaming endpoint: POST {run}/{model}/stream
// ("/stream" is not appended when the id already ends with it), with
// Accept: text/event-stream. It calls onEvent (if not nil) with the data of
// every SSE event, in order, and returns the last one, which is the final
// output. A 2xx answer that is not an event stream is treated as a single
// event. If onEvent returns an error, Stream stops and returns it
// unchanged.
//
// A model without a /stream endpoint (404 or 405) returns an error wrapping
// [ErrStreamingUnsupported]. Retries are those of [Client.Run], and only
// before the stream starts; a stream that breaks returns the network error;
// one that ends without any event, or with an event that is not JSON, wraps
// [ErrMalformedResponse]. Only ctx bounds the call.
func (c *Client) Stream(ctx context.Context, model string, input any, opts RunOptions, onEvent func(json.RawMessage) error) (json.RawMessage, error) {
	m, err := parseModel(OpStream, model)
	if err != nil {
		return nil, err
	}
	h, err := opts.build()
	if err != nil {
		return nil, err
	}
	body, err := encodeInput(OpStream, model, input)
	if err != nil {
		return nil, err
	}
	path := m.String()
	if m.Path != "stream" && !strings.HasSuffix(m.Path, "/stream") {
		path += "/stream"
	}
	cl := &call{
		op: OpStream, model: model, method: http.MethodPost,
		url: c.runURL + "/" + path, body: body, accept: contentSSE, header: h, stream: true,
	}
	r := c.newRetrier(OpStream, model)
	r.max = opts.MaxAttempts
	var x *exchange
	for {
		x, err = c.send(ctx, cl)
		if err == nil && !ok2xx(x.resp.StatusCode) {
			err = c.readAPIError(x)
			x.close()
		}
		if err == nil {
			break
		}
		if again, ferr := r.again(ctx, err, retryRun(err)); !again {
			return nil, ferr
		}
	}
	defer x.close()

	emit := func(data []byte) error {
		if !json.Valid(data) {
			return &netError{op: OpStream, model: model, written: true, permanent: true,
				err: fmt.Errorf("%w: stream event is not JSON (%d bytes)", ErrMalformedResponse, len(data))}
		}
		if onEvent != nil {
			return onEvent(json.RawMessage(data))
		}
		return nil
	}
	if mt, _, _ := mime.ParseMediaType(x.resp.Header.Get("Content-Type")); mt != contentSSE {
		data, err := readCapped(x.resp.Body, c.maxBody)
		if err != nil {
			return nil, x.bodyError(ctx, c, err)
		}
		if err := emit(data); err != nil {
			return nil, err
		}
		return json.RawMessage(data), nil
	}
	sse := newSSEReader(x.resp.Body, int(min(c.maxBody, 1<<30)))
	var last []byte
	for {
		data, err := sse.next()
		if err == io.EOF {
			if last == nil {
				return nil, &netError{op: OpStream, model: model, written: true, permanent: true,
					err: fmt.Errorf("%w: stream ended without events", ErrMalformedResponse)}
			}
			return json.RawMessage(last), nil
		}
		if err != nil {
			return nil, x.bodyError(ctx, c, err)
		}
		if len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		if err := emit(data); err != nil {
			return nil, err
		}
		last = data
	}
}
