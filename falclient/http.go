package falclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

const (
	contentJSON = "application/json"
	contentSSE  = "text/event-stream"
)

// call describes one HTTP operation (all its attempts).
type call struct {
	op      string
	model   string // as given by the caller; for errors and logs
	method  string
	url     string
	body    []byte // nil: no body
	accept  string
	header  http.Header   // extra headers, applied before the client's own
	timeout time.Duration // per attempt; 0 = none
	// stream: the timeout covers only the wait for the response headers.
	stream bool
	// attempt counts the attempts made so far, for the observer.
	attempt int
}

// exchange is one attempt in flight: a response whose body the caller
// reads, then closes with close.
type exchange struct {
	cl     *call
	resp   *http.Response
	cancel context.CancelCauseFunc
	timer  *time.Timer
	actx   context.Context
}

// close releases the attempt. A plain body is drained (at most 64 KiB,
// for at most drainTimeout) so that the connection can be reused; a stream
// is abandoned at once, since draining it could wait for the server's next
// event.
func (x *exchange) close() {
	if x.timer != nil {
		x.timer.Stop()
	}
	if x.cl.stream {
		x.cancel(errAbandoned)
	} else {
		guard := time.AfterFunc(drainTimeout, func() { x.cancel(errAbandoned) })
		_, _ = io.CopyN(io.Discard, x.resp.Body, maxDrain)
		guard.Stop()
	}
	_ = x.resp.Body.Close()
	x.cancel(nil)
}

// drainTimeout bounds the drain of a body before it is closed.
const drainTimeout = time.Second

// errAbandoned is the cancel cause of an attempt whose body is no longer
// wanted.
var errAbandoned = errors.New("falclient: response abandoned")

// stopTimer ends the per-attempt timeout (streams, once headers arrived).
func (x *exchange) stopTimer() {
	if x.timer != nil {
		x.timer.Stop()
	}
}

// countingReader reports, through full, when its last byte has been read:
// from then on the request may have reached the server in full.
type countingReader struct {
	r    *bytes.Reader
	full *atomic.Bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	if len(p) >= c.r.Len() {
		c.full.Store(true)
	}
	return c.r.Read(p)
}

// send performs one attempt and returns the response, whatever its status.
// Transport failures come back as *netError.
func (c *Client) send(ctx context.Context, cl *call) (*exchange, error) {
	if err := ctx.Err(); err != nil {
		return nil, &callerDoneError{op: cl.op, model: cl.model, ctx: context.Cause(ctx)}
	}
	actx, cancel := context.WithCancelCause(ctx)
	var timer *time.Timer
	if cl.timeout > 0 {
		d := cl.timeout
		timer = time.AfterFunc(d, func() { cancel(&attemptTimeoutError{d: d}) })
	}
	// Whether the request may have reached the server in full: the
	// transport reported it written (httptrace), or it read the last byte
	// of the body (which it does before sending it, so this flag is set
	// first even when the trace event comes late or the transport is not
	// an *http.Transport). A dial, DNS or TLS failure leaves both unset.
	var wroteOK, bodyFull atomic.Bool
	trace := &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if info.Err == nil {
				wroteOK.Store(true)
			}
		},
	}
	written := func() bool { return wroteOK.Load() || bodyFull.Load() }

	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(actx, trace), cl.method, cl.url, nil)
	if err != nil {
		cancel(nil)
		if timer != nil {
			timer.Stop()
		}
		return nil, &netError{op: cl.op, model: cl.model, err: fmt.Errorf("build request: %w", stripURLError(err)), permanent: true}
	}
	if cl.body != nil {
		body := cl.body
		req.ContentLength = int64(len(body))
		req.Body = io.NopCloser(&countingReader{r: bytes.NewReader(body), full: &bodyFull})
		req.GetBody = func() (io.ReadCloser, error) {
			return io.NopCloser(&countingReader{r: bytes.NewReader(body), full: &bodyFull}), nil
		}
		if len(body) == 0 {
			bodyFull.Store(true)
		}
	} else if cl.method != http.MethodGet {
		req.Body = http.NoBody
	}
	for k, vs := range cl.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	req.Header.Set("User-Agent", c.userAgent)
	if c.key != "" {
		req.Header.Set("Authorization", "Key "+string(c.key))
	}
	if cl.accept != "" {
		req.Header.Set("Accept", cl.accept)
	}
	if cl.body != nil {
		req.Header.Set("Content-Type", contentJSON)
	}

	cl.attempt++
	start := c.now()
	resp, err := c.hc.Do(req)
	if c.observe != nil {
		a := Attempt{Op: cl.op, Model: cl.model, Number: cl.attempt, Duration: c.now().Sub(start), Err: err}
		if resp != nil {
			a.StatusCode = resp.StatusCode
		}
		c.observe(a)
	}
	if err != nil {
		if timer != nil {
			timer.Stop()
		}
		ne := c.transportError(ctx, actx, cl, err, written())
		cancel(nil)
		return nil, ne
	}
	x := &exchange{cl: cl, resp: resp, cancel: cancel, timer: timer, actx: actx}
	if cl.stream {
		x.stopTimer()
	}
	return x, nil
}

// transportError classifies a failed attempt: the caller's context ended,
// the attempt timed out, or the network failed; written says whether the
// request may have reached the server in full.
func (c *Client) transportError(ctx, actx context.Context, cl *call, err error, written bool) *netError {
	ne := &netError{op: cl.op, model: cl.model, err: stripURLError(err), written: written}
	switch {
	case ctx.Err() != nil:
		ne.callerDone = true
		ne.timeout = errors.Is(ctx.Err(), context.DeadlineExceeded)
		if cause := context.Cause(ctx); !errors.Is(ne.err, cause) {
			ne.err = fmt.Errorf("%w (%w)", ne.err, cause)
		}
	case actx.Err() != nil:
		var ate *attemptTimeoutError
		if cause := context.Cause(actx); errors.As(cause, &ate) {
			ne.timeout = true
			ne.err = fmt.Errorf("%w: %v", ate, ne.err)
		}
	}
	return ne
}

// bodyError classifies an error while reading a response body.
func (x *exchange) bodyError(ctx context.Context, c *Client, err error) error {
	if errors.Is(err, ErrResponseTooLarge) {
		return &netError{op: x.cl.op, model: x.cl.model, err: err, written: true, permanent: true}
	}
	return c.transportError(ctx, x.actx, x.cl, fmt.Errorf("read body: %w", err), true)
}

// stripURLError replaces a *url.Error (which quotes the full URL, query
// included) by "METHOD scheme://host/path: cause".
func stripURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	where := ue.URL
	if u, perr := url.Parse(ue.URL); perr == nil {
		where = u.Scheme + "://" + u.Host + u.EscapedPath()
	}
	return fmt.Errorf("%s %s: %w", strings.ToUpper(ue.Op), where, ue.Err)
}

// readCapped reads all of r, failing with ErrResponseTooLarge beyond limit.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrResponseTooLarge, limit)
	}
	return b, nil
}

// reply is a successful (2xx) answer read in full.
type reply struct {
	code   int
	header http.Header
	body   []byte
}

// doOnce performs one attempt and reads the answer: a *reply for 2xx, an
// *APIError for any other status, a *netError for transport failures.
func (c *Client) doOnce(ctx context.Context, cl *call) (*reply, error) {
	x, err := c.send(ctx, cl)
	if err != nil {
		return nil, err
	}
	defer x.close()
	if ok2xx(x.resp.StatusCode) {
		body, err := readCapped(x.resp.Body, c.maxBody)
		if err != nil {
			return nil, x.bodyError(ctx, c, err)
		}
		return &reply{code: x.resp.StatusCode, header: x.resp.Header, body: body}, nil
	}
	return nil, c.readAPIError(x)
}

// readAPIError reads (up to 1 MiB of) an error answer into an *APIError.
func (c *Client) readAPIError(x *exchange) *APIError {
	body, _ := io.ReadAll(io.LimitReader(x.resp.Body, maxErrorBody))
	return newAPIError(x.cl.op, x.cl.model, x.resp.StatusCode, x.resp.Header, c.scrub(body), c.now())
}

// scrub removes the API key (and its secret) from b, in case a server echoes
// it back.
func (c *Client) scrub(b []byte) []byte {
	if c.key == "" || len(b) == 0 {
		return b
	}
	for _, s := range []string{string(c.key), c.key.secret()} {
		if len(s) >= 6 && bytes.Contains(b, []byte(s)) {
			b = bytes.ReplaceAll(b, []byte(s), []byte("****"))
		}
	}
	return b
}

func ok2xx(code int) bool { return code >= 200 && code <= 299 }

// checkRedirect follows redirects of GETs, and of other methods only when
// they keep method and body (307, 308); at most 5.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return http.ErrUseLastResponse
	}
	if req.Method == http.MethodGet || req.Method == http.MethodHead {
		return nil
	}
	if req.Response != nil && (req.Response.StatusCode == http.StatusTemporaryRedirect || req.Response.StatusCode == http.StatusPermanentRedirect) {
		return nil
	}
	return http.ErrUseLastResponse
}

// validHeader reports whether k and v may be sent as a header.
func validHeader(k, v string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// copyHeader validates and copies extra headers given in an options struct.
func copyHeader(name string, h http.Header) (http.Header, error) {
	out := make(http.Header, len(h)+4)
	for k, vs := range h {
		ck := http.CanonicalHeaderKey(k)
		switch ck {
		case "Authorization", "Content-Type", "Content-Length", "Host", "Idempotency-Key", "X-Idempotency-Key":
			// The client's own, or (Idempotency-Key) headers that would let
			// net/http replay a POST on its own.
			continue
		}
		for _, v := range vs {
			if !validHeader(k, v) {
				return nil, invalid(name, "header %q has an invalid name or value", k)
			}
			out.Add(ck, v)
		}
	}
	return out, nil
}
