package falsim_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/falbridge/falbridge/internal/falsim"
	"github.com/falbridge/falbridge/internal/falsim/falsimtest"
)

// benchInput completes as soon as it runs, so the benchmarks measure the
// simulator's own cost per request.
var benchInput = []byte(`{"prompt":"a fox","_sim":{"latency_ms":0}}`)

// BenchmarkSubmitStatusResult drives the full queue protocol over loopback
// HTTP: submit, poll status until COMPLETED, fetch the result. One op is
// one request's whole life (at least three HTTP calls).
func BenchmarkSubmitStatusResult(b *testing.B) {
	ts := falsimtest.New(b, falsim.Config{Retention: 0})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	defer client.CloseIdleConnections()
	call := func(method, url string, body []byte) (int, []byte) {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		req.Header.Set("Authorization", testKey)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, data
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			code, body := call(http.MethodPost, ts.URL+"/fal-ai/flux/schnell", benchInput)
			if code != http.StatusOK {
				b.Fatalf("submit: %d %s", code, body)
			}
			var s submitted
			if err := json.Unmarshal(body, &s); err != nil {
				b.Fatal(err)
			}
			for {
				code, _ = call(http.MethodGet, s.StatusURL, nil)
				if code == http.StatusOK {
					break
				}
			}
			if code, body = call(http.MethodGet, s.ResponseURL, nil); code != http.StatusOK {
				b.Fatalf("result: %d %s", code, body)
			}
		}
	})
	b.StopTimer()
	st := ts.Stats()
	b.ReportMetric(float64(st.Submits+st.StatusCalls+st.ResultCalls)/float64(b.N), "calls/op")
	b.ReportMetric(float64(st.Submits+st.StatusCalls+st.ResultCalls)/b.Elapsed().Seconds(), "calls/s")
}

// BenchmarkSubmitInProcess measures the engine without the network: a
// submit and a status read through ServeHTTP.
func BenchmarkSubmitInProcess(b *testing.B) {
	sim, err := falsim.New(falsim.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer sim.Close()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "http://sim/fal-ai/flux/schnell", bytes.NewReader(benchInput))
			req.Header.Set("Authorization", testKey)
			w := httptest.NewRecorder()
			sim.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatalf("submit: %d %s", w.Code, w.Body)
			}
			var s submitted
			if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
				b.Fatal(err)
			}
			req = httptest.NewRequest(http.MethodGet, s.StatusURL, nil)
			req.Header.Set("Authorization", testKey)
			w = httptest.NewRecorder()
			sim.ServeHTTP(w, req)
			if w.Code != http.StatusOK && w.Code != http.StatusAccepted {
				b.Fatalf("status: %d %s", w.Code, w.Body)
			}
		}
	})
}
