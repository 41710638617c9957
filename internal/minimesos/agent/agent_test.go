package agent

import (
	"context"
	"log"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

// Bad flags stop the agent with a message that quotes the bad part and says
// what is expected.
func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Master: "m:1", WorkDir: dir, Resources: "cpus:four"}, `--resources="cpus:four": bad resource "cpus:four": value "four" is not a number; write e.g. cpus:4`},
		{Config{Master: "m:1", WorkDir: dir, Resources: "cpus:1;ports:[2-1]"}, `range "2-1" ends before it begins`},
		{Config{Master: "m:1", WorkDir: dir, Attributes: "rack"}, `--attributes="rack": bad attribute "rack": expected name:value`},
		{Config{WorkDir: dir}, "--master is required"},
		{Config{Master: "localhost", WorkDir: dir}, `--master="localhost" is not host:port`},
		{Config{Master: "m:1"}, "--work_dir is required"},
		{Config{Master: "m:1", WorkDir: dir, IP: "nope"}, `--ip="nope" is not an IP address`},
		{Config{Master: "m:1", WorkDir: dir, Port: 70000}, `--port=70000 is not a port number`},
		{Config{Master: "m:1", WorkDir: dir, ExecutorReregistrationTimeout: time.Minute}, `--executor_reregistration_timeout=1m0s is longer than Mesos allows (15s)`},
	} {
		_, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v): got %v, want %q", c.cfg, err, c.want)
		}
	}
	for s, want := range map[string]string{
		`{"A": 1}`: `the value of "A" is 1, not a string`,
		`[1]`:      `--executor_environment_variables="[1]" is not a JSON object`,
	} {
		if _, err := ParseExecutorEnvironment(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseExecutorEnvironment(%s): got %v, want %q", s, err, want)
		}
	}
	if env, err := ParseExecutorEnvironment(`{"A": "1"}`); err != nil || env["A"] != "1" {
		t.Errorf("got %v %v", env, err)
	}

	// A port in use fails at once, naming the port and the flags.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	a, err := New(Config{Master: "127.0.0.1:1", WorkDir: dir, Port: port, Resources: "cpus:1;mem:128"})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(port)) || !strings.Contains(err.Error(), "choose another address with --ip/--port") {
		t.Fatalf("got %v", err)
	}
}

// What --resources does not name is detected; what it names is kept.
func TestAgentResources(t *testing.T) {
	rs, err := AgentResources("cpus:3;gpus:1", "*", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := resources.Scalar(rs, "cpus"); got != 3 {
		t.Errorf("cpus %v", got)
	}
	if resources.Scalar(rs, "mem") < 512 || resources.Scalar(rs, "disk") <= 0 || resources.Scalar(rs, "gpus") != 1 {
		t.Errorf("detected resources: %s", resources.String(rs))
	}
	if got := resources.RangesString(resources.Ports(rs)); got != "[31000-32000]" {
		t.Errorf("ports %s", got)
	}
}

// The agent registers, checkpoints the ID the master gives it, registers
// again with it when the stream breaks (with backoff after a refusal, whose
// text it logs), and a restarted agent comes back with it.
func TestRegistrationKeepsTheCheckpointedID(t *testing.T) {
	m := newFakeMaster(t)
	m.refuse, m.refuseBody = 503, "not the leader yet"
	dir := t.TempDir()
	cfg := testConfig(t, m, dir)
	logs := &lockedBuffer{}
	cfg.Logger = log.New(logs, "", 0)
	a := startAgent(t, cfg)
	waitFor(t, "a refused registration retried", func() bool {
		n := 0
		for _, c := range m.snapshot() {
			if c.GetType() == agentpb.Call_REGISTER {
				n++
			}
		}
		return n >= 2
	})
	m.mu.Lock()
	m.refuse = 0
	m.mu.Unlock()
	reg := m.waitRegistrations(t, 1)[0]
	waitFor(t, "logged refusal", func() bool { return strings.Contains(logs.String(), "not the leader yet") })
	if reg.AgentId != nil {
		t.Fatalf("a new agent registers without an ID: %v", reg)
	}
	info := reg.GetRegister().GetAgentInfo()
	if info.GetHostname() != "agent-1" || int(info.GetPort()) != cfg.Port || reg.GetRegister().GetEndpoint() != a.Endpoint() {
		t.Fatalf("agent info %v endpoint %s", info, reg.GetRegister().GetEndpoint())
	}
	if got := resources.Scalar(info.GetResources(), "cpus"); got != 2 {
		t.Errorf("cpus %v", got)
	}
	if len(info.GetAttributes()) != 2 || info.GetAttributes()[0].GetText().GetValue() != "r1" {
		t.Errorf("attributes %v", info.GetAttributes())
	}
	waitFor(t, "registered", a.Registered)
	if a.ID() != "fake-S1" {
		t.Fatalf("ID %q", a.ID())
	}
	if target, err := os.Readlink(filepath.Join(dir, "meta", "slaves", "latest")); err != nil || filepath.Base(target) != "fake-S1" {
		t.Fatalf("checkpointed ID: %v %v", target, err)
	}

	m.breakStream()
	if reg := m.waitRegistrations(t, 2)[1]; reg.GetAgentId().GetValue() != "fake-S1" || reg.GetRegister().GetAgentInfo().GetId().GetValue() != "fake-S1" {
		t.Fatalf("re-registration without the ID: %v", reg)
	}

	a.stop(t)
	startAgent(t, cfg)
	if reg := m.waitRegistrations(t, 3)[2]; reg.GetAgentId().GetValue() != "fake-S1" {
		t.Fatalf("a restarted agent registers with its checkpointed ID, got %v", reg)
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 5: 15 * time.Second, 50: 15 * time.Second} {
		for i := 0; i < 20; i++ {
			if d := backoff(time.Second, 15*time.Second, n); d < want/2 || d > want {
				t.Fatalf("attempt %d: %v, want between %v and %v", n, d, want/2, want)
			}
		}
	}
}
