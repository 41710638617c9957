// Package integration runs km's built-in master and agents in-process
// against each other, with executors as real child processes of the
// agents.
package integration

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/k8sm/k8sm/internal/minimesos/agent"
	"github.com/k8sm/k8sm/internal/minimesos/master"
	"github.com/k8sm/k8sm/internal/testing/kmbinary"
)

type cluster struct {
	t      *testing.T
	master *master.Master
	srv    *httptest.Server
	addr   string
	agents []*runningAgent
}

type runningAgent struct {
	a      *agent.Agent
	cancel context.CancelFunc
	done   chan error
	dir    string
}

func logger(t *testing.T, prefix string) *log.Logger {
	if testing.Verbose() {
		return log.New(os.Stderr, prefix+": ", log.Lmicroseconds)
	}
	return log.New(io.Discard, "", 0)
}

func newCluster(t *testing.T, cfg master.Config) *cluster {
	t.Helper()
	if cfg.AllocationInterval == 0 {
		cfg.AllocationInterval = 100 * time.Millisecond
	}
	cfg.Logger = logger(t, "master")
	m, err := master.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	go m.Run(ctx)
	c := &cluster{t: t, master: m, srv: srv, addr: srv.Listener.Addr().String()}
	t.Cleanup(func() {
		for _, a := range c.agents {
			a.stop()
		}
		cancel()
		srv.CloseClientConnections()
		srv.Close()
	})
	return c
}

// addAgent starts an agent on a free loopback port with the km binary as
// its command executor.
func (c *cluster) addAgent(resources string, mutate ...func(*agent.Config)) *runningAgent {
	c.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	dir := c.t.TempDir()
	cfg := agent.Config{
		Master: c.addr, IP: "127.0.0.1", Port: port, Hostname: "agent-" + strconv.Itoa(len(c.agents)+1),
		Resources: resources, WorkDir: dir, KMBinary: kmbinary.Path(c.t),
		ExecutorShutdownGracePeriod: 2 * time.Second, StatusUpdateRetryMin: 500 * time.Millisecond,
		Logger: logger(c.t, "agent"),
	}
	for _, f := range mutate {
		f(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{a: a, cancel: cancel, done: make(chan error, 1), dir: dir}
	go func() { ra.done <- a.Serve(ctx, ln) }()
	c.agents = append(c.agents, ra)
	waitFor(c.t, "agent registered", func() bool { return a.ID() != "" })
	return ra
}

func (ra *runningAgent) stop() {
	ra.cancel()
	select {
	case <-ra.done:
	case <-time.After(20 * time.Second):
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func get(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func masterDefaults() master.Config {
	return master.Config{AllocationInterval: 100 * time.Millisecond}
}

// link is a TCP relay between an agent and the master that the test can
// cut: what the agent sends after the cut never arrives, as when its
// machine dies, and the master only notices missed pings.
type link struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

func newLink(t *testing.T, target string) *link {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{ln: ln}
	t.Cleanup(l.Cut)
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			l.mu.Lock()
			if l.cut {
				in.Close()
				out.Close()
			} else {
				l.conns = append(l.conns, in, out)
				go func() { io.Copy(out, in); out.Close() }()
				go func() { io.Copy(in, out); in.Close() }()
			}
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *link) Addr() string { return l.ln.Addr().String() }

// Cut closes the relay's listener and every connection through it.
func (l *link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = true
	l.ln.Close()
	for _, c := range l.conns {
		c.Close()
	}
}
