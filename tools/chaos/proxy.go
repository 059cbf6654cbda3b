package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// httpClient is the harness's own client (probes, stats); short timeouts.
var httpClient = &http.Client{Timeout: 5 * time.Second}

func httpGetCode(ctx context.Context, url string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// proxyFaults are the faults the fal proxy injects on API calls (never on
// /_sim, /.well-known or /files). Rates are fractions drawn per call.
type proxyFaults struct {
	ResetBefore float64       // the connection is reset before the request reaches the simulator
	ResetAfter  float64       // the simulator handles the request, then the client's connection is reset
	Delay       float64       // the answer is delayed by DelayFor
	DelayFor    time.Duration //
	Blackhole   float64       // the request is held, unanswered, until the client gives up
}

// ledger is what fal saw, counted from outside by the fal proxy: every
// submit that reached the simulator and the request id it got, per trigger
// id (the "chaos_id" the harness puts in every input).
type ledger struct {
	mu        sync.Mutex
	accepted  map[string][]string // trigger id → request ids the simulator accepted
	seen      map[string]int      // trigger id → submit attempts that reached the proxy
	byRequest map[string]string   // request id → trigger id
}

func newLedger() *ledger {
	return &ledger{accepted: map[string][]string{}, seen: map[string]int{}, byRequest: map[string]string{}}
}

func (l *ledger) snapshot(id string) (accepted []string, seen int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.accepted[id]...), l.seen[id]
}

// falProxy stands between falbridge and the simulator.
type falProxy struct {
	target string // host:port of the simulator
	led    *ledger
	rt     http.RoundTripper
	faults atomic.Pointer[proxyFaults]
	stats  struct{ resetBefore, resetAfter, delayed, blackholed atomic.Int64 }
	stop   chan struct{} // closed at shutdown: releases black-holed requests
}

func newFalProxy(target string, led *ledger) *falProxy {
	p := &falProxy{target: target, led: led, stop: make(chan struct{}),
		rt: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second, ResponseHeaderTimeout: 2 * time.Minute}}
	p.faults.Store(&proxyFaults{})
	return p
}

func isAPI(path string) bool {
	return !strings.HasPrefix(path, "/_sim") && !strings.HasPrefix(path, "/.well-known") && !strings.HasPrefix(path, "/files")
}

// isSubmit reports a queue submit: POST {base}/{model_id}[/path].
func isSubmit(r *http.Request) bool {
	return r.Method == http.MethodPost && !strings.HasPrefix(r.URL.Path, "/run/") && !strings.Contains(r.URL.Path, "/requests/") && isAPI(r.URL.Path)
}

func (p *falProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, "proxy: read body", http.StatusBadRequest)
		return
	}
	f := *p.faults.Load()
	api := isAPI(r.URL.Path)
	submit := isSubmit(r)
	var chaosID string
	if submit {
		var in struct {
			ChaosID string `json:"chaos_id"`
		}
		_ = json.Unmarshal(body, &in)
		chaosID = in.ChaosID
		if chaosID != "" {
			p.led.mu.Lock()
			p.led.seen[chaosID]++
			p.led.mu.Unlock()
		}
	}
	if api {
		switch x := rand.Float64(); {
		case x < f.ResetBefore:
			p.stats.resetBefore.Add(1)
			reset(w)
			return
		case x < f.ResetBefore+f.Blackhole:
			p.stats.blackholed.Add(1)
			select {
			case <-r.Context().Done():
			case <-p.stop:
			case <-time.After(2 * time.Minute):
			}
			reset(w)
			return
		case x < f.ResetBefore+f.Blackhole+f.Delay:
			p.stats.delayed.Add(1)
			select {
			case <-r.Context().Done():
				return
			case <-time.After(f.DelayFor):
			}
		}
	}
	// The call to fal outlives the client: a falbridge killed after sending
	// a submit does not un-submit it, and the ledger must learn its
	// request id all the same.
	uctx, ucancel := context.WithTimeout(context.WithoutCancel(r.Context()), time.Minute)
	defer ucancel()
	out, err := http.NewRequestWithContext(uctx, r.Method, "http://"+p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	out.Host = r.Host // the simulator builds its status/response URLs from it: they stay on the proxy
	resp, err := p.rt.RoundTrip(out)
	if err != nil {
		reset(w)
		return
	}
	defer resp.Body.Close()
	var respBody []byte
	if submit {
		respBody, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode == http.StatusOK && chaosID != "" {
			var sr struct {
				RequestID string `json:"request_id"`
			}
			if json.Unmarshal(respBody, &sr) == nil && sr.RequestID != "" {
				p.led.mu.Lock()
				p.led.accepted[chaosID] = append(p.led.accepted[chaosID], sr.RequestID)
				p.led.byRequest[sr.RequestID] = chaosID
				p.led.mu.Unlock()
			}
		}
	}
	if api && rand.Float64() < f.ResetAfter {
		p.stats.resetAfter.Add(1)
		_, _ = io.Copy(io.Discard, resp.Body)
		reset(w)
		return
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	if respBody != nil {
		_, _ = w.Write(respBody)
		return
	}
	copyFlush(w, resp.Body)
}

// copyFlush copies an answer, flushing each chunk so that server-sent
// events pass through as they come.
func copyFlush(w http.ResponseWriter, r io.Reader) {
	fl, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// reset closes the client's connection with a TCP RST, without an answer.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	conn.Close()
}

// ingress is the one webhook URL that reaches any live replica, as a
// Kubernetes Service would: round robin, the next replica on a refused
// connection, 502 when none answers (fal retries).
type ingress struct {
	backends []string // host:port of each replica's webhook listener
	next     atomic.Uint64
	rt       http.RoundTripper
}

func newIngress(backends []string) *ingress {
	return &ingress{backends: backends, rt: &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 30 * time.Second,
		DialContext: (&net.Dialer{Timeout: time.Second}).DialContext}}
}

func (g *ingress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, "ingress: read body", http.StatusBadRequest)
		return
	}
	start := g.next.Add(1)
	for i := range len(g.backends) {
		b := g.backends[(int(start)+i)%len(g.backends)]
		out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+b+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			break
		}
		out.Header = r.Header.Clone()
		resp, err := g.rt.RoundTrip(out)
		if err != nil {
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				continue // that replica is down: as a Service's endpoints would, try another
			}
			http.Error(w, "ingress: "+err.Error(), http.StatusBadGateway)
			return
		}
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		resp.Body.Close()
		return
	}
	http.Error(w, "ingress: no replica", http.StatusBadGateway)
}

// tcpProxy forwards one listener to one target. While partitioned it
// forwards nothing (bytes wait, new connections are not dialed), as a
// network partition would; heal resumes the flow.
type tcpProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	gate   chan struct{} // closed while the link is up
	conns  map[net.Conn]struct{}
	closed bool
}

func newTCPProxy(listen, target string) (*tcpProxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	g := make(chan struct{})
	close(g)
	p := &tcpProxy{ln: ln, target: target, gate: g, conns: map[net.Conn]struct{}{}}
	go p.serve()
	return p, nil
}

func (p *tcpProxy) wait() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gate
}

func (p *tcpProxy) partition() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
		p.gate = make(chan struct{})
	default:
	}
}

func (p *tcpProxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.gate:
	default:
		close(p.gate)
	}
}

func (p *tcpProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *tcpProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *tcpProxy) handle(c net.Conn) {
	if !p.track(c) {
		c.Close()
		return
	}
	defer p.untrack(c)
	<-p.wait()
	u, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return
	}
	if !p.track(u) {
		u.Close()
		return
	}
	defer p.untrack(u)
	done := make(chan struct{}, 2)
	go func() { p.pipe(u, c); done <- struct{}{} }()
	go func() { p.pipe(c, u); done <- struct{}{} }()
	<-done
	// One side ended: closing both (deferred) ends the other pipe.
}

func (p *tcpProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			<-p.wait()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// close stops the listener and every connection; a partition is healed so
// that no pipe stays blocked.
func (p *tcpProxy) close() {
	p.ln.Close()
	p.heal()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

func httpNewGet(ctx context.Context, url string) (*http.Request, error) {
	return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
}
