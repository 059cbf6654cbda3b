package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsNode is one nats-server process with fixed ports, so that a restart
// comes back where clients and routes expect it.
type natsNode struct {
	name      string
	port      int
	conf, log string
	proc      *proc
	env       *env
}

func (n *natsNode) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

// newNATS writes the configs of size nodes (1 = a single server, 3 = a
// JetStream cluster on loopback) under dir.
func newNATS(e *env, size int) ([]*natsNode, error) {
	ports, err := freePorts(2 * size)
	if err != nil {
		return nil, err
	}
	nodes := make([]*natsNode, size)
	for i := range size {
		n := &natsNode{name: fmt.Sprintf("n%d", i+1), port: ports[i], env: e}
		n.conf = filepath.Join(e.dir, n.name+".conf")
		n.log = filepath.Join(e.dir, n.name+".log")
		var b strings.Builder
		fmt.Fprintf(&b, "server_name: %s\nlisten: 127.0.0.1:%d\n", n.name, n.port)
		fmt.Fprintf(&b, "jetstream { store_dir: %q, max_memory_store: 256MB, max_file_store: 4GB }\n", filepath.Join(e.dir, n.name+"-js"))
		if size > 1 {
			var routes []string
			for j := range size {
				if j != i {
					routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[size+j]))
				}
			}
			// no_advertise: clients keep to the URLs they were given, so a
			// replica behind the partition proxy cannot route around it.
			fmt.Fprintf(&b, "cluster { name: chaos, listen: 127.0.0.1:%d, no_advertise: true, routes: [%s] }\n", ports[size+i], strings.Join(routes, ", "))
		}
		if err := os.WriteFile(n.conf, []byte(b.String()), 0o644); err != nil {
			return nil, err
		}
		nodes[i] = n
	}
	return nodes, nil
}

func (n *natsNode) start() error {
	p, err := n.env.procs.start(n.name, n.log, nil, n.env.bin("nats-server"), "-c", n.conf)
	if err != nil {
		return err
	}
	n.proc = p
	// Bounded wait for the client port.
	for range 100 {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.port), 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited at start (see %s)", n.name, n.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s: port %d not open", n.name, n.port)
}

func (n *natsNode) up() bool { return n.proc != nil && !n.proc.exited() }

// jsReady waits until JetStream can place a stream on replicas nodes: a
// meta leader answering is not enough, the peers must be known too ("no
// suitable peers for placement" otherwise). It creates and deletes a probe
// stream.
func jsReady(ctx context.Context, js jetstream.JetStream, replicas int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := js.CreateOrUpdateStream(actx, jetstream.StreamConfig{Name: "CHAOS_PROBE", Subjects: []string{"chaos.probe"},
			Replicas: replicas, Storage: jetstream.MemoryStorage})
		if err == nil {
			err = js.DeleteStream(actx, "CHAOS_PROBE")
		}
		acancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jetstream not ready: %w", err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// connect opens the harness's own connection to every node, reconnecting
// forever (the harness outlives node restarts).
func connect(nodes []*natsNode) (*nats.Conn, error) {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.url()
	}
	return nats.Connect(strings.Join(urls, ","), nats.Name("chaos-harness"), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.RetryOnFailedConnect(true), nats.Timeout(2*time.Second))
}

// streamLeader names the node that leads stream (empty when unknown).
func streamLeader(ctx context.Context, js jetstream.JetStream, stream string) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return ""
	}
	info := s.CachedInfo()
	if info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}
