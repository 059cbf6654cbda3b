package main

import (
	"context"
	"fmt"
	"time"

	"github.com/falbridge/falbridge/internal/falsim"
)

// simStats are the simulator's counters (its /_sim/stats).
type simStats = falsim.Stats

// falCalls counts the HTTP calls a client made to fal.
func falCalls(s simStats) int64 {
	return s.Submits + s.StatusCalls + s.StatusStreams + s.ResultCalls + s.Cancels + s.SyncRuns + s.Streams
}

// connz is the part of nats-server's /connz the bench reads.
type connz struct {
	Connections []connInfo `json:"connections"`
}

// connInfo is one connection of /connz: in_msgs are the messages the
// client sent, out_msgs those the server delivered to it.
type connInfo struct {
	CID     uint64 `json:"cid"`
	Name    string `json:"name"`
	InMsgs  int64  `json:"in_msgs"`
	OutMsgs int64  `json:"out_msgs"`
}

// varz is the part of nats-server's /varz the bench reads.
type varz struct {
	InMsgs  int64 `json:"in_msgs"`
	OutMsgs int64 `json:"out_msgs"`
}

// msgCount is what one client sent to the server (the server's in_msgs of
// its connections) and what the server delivered to it (out_msgs).
type msgCount struct{ sent, received int64 }

// snapshot is every counter at one instant.
type snapshot struct {
	at   time.Time
	cpu  map[string]float64 // process name → CPU seconds
	sim  simStats
	sut  msgCount // connections named like the system under test
	varz varz
}

func (st *stack) snapshot(ctx context.Context) (snapshot, error) {
	s := snapshot{at: time.Now(), cpu: map[string]float64{}}
	for _, p := range []*proc{st.sut, st.nats, st.sim} {
		c, err := cpuSeconds(p.pid())
		if err != nil {
			return s, err
		}
		s.cpu[p.name] = c
	}
	if err := st.getJSON(ctx, st.simURL+"/_sim/stats", &s.sim); err != nil {
		return s, err
	}
	var cz connz
	if err := st.getJSON(ctx, st.monURL+"/connz?limit=4096", &cz); err != nil {
		return s, err
	}
	s.sut = sumConns(cz, st.sutName)
	if err := st.getJSON(ctx, st.monURL+"/varz", &s.varz); err != nil {
		return s, err
	}
	return s, nil
}

// sumConns adds up the counters of the open connections named name.
// Connections that closed are not listed; the systems under test keep
// theirs open for the whole run.
func sumConns(cz connz, name string) msgCount {
	var m msgCount
	for _, c := range cz.Connections {
		if c.Name == name {
			m.sent += c.InMsgs
			m.received += c.OutMsgs
		}
	}
	return m
}

// totalCPU is the CPU of the three processes together.
func (s snapshot) totalCPU() float64 {
	var t float64
	for _, c := range s.cpu {
		t += c
	}
	return t
}

// gauge reads one unlabelled gauge (e.g. go_goroutines) from falbridge's
// Prometheus text at /metrics.
func (st *stack) gauge(ctx context.Context, name string) (float64, error) {
	body, err := st.getText(ctx, st.adminURL+"/metrics")
	if err != nil {
		return 0, err
	}
	v, ok := parseGauge(body, name)
	if !ok {
		return 0, fmt.Errorf("metric %s not in /metrics", name)
	}
	return v, nil
}
