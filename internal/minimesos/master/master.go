// Package master is km's built-in Mesos master: the Mesos v1 scheduler API
// (POST /api/v1/scheduler) with Mesos 1.11's status codes, events and
// behaviour (DRF offers, filters, task validation, status update forwarding,
// reconciliation, failover, agent health), the agent side of km's
// master-agent protocol (agentpb), and the operator endpoints /health,
// /state and /metrics/snapshot.
//
// All state lives in one structure guarded by one mutex. Time comes from a
// Clock and periodic work (allocation, timeouts, pings) happens in Tick, so
// that tests drive the master step by step; Run calls Tick on a ticker.
package master

import (
	"context"
	"encoding/binary"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/mesos/uuid"
)

// Version is what the master reports as its Mesos version: the release whose
// behaviour it follows.
const Version = "1.11.0"

// Clock is the master's view of time.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Config holds the master's flags. Zero values take Mesos' defaults.
type Config struct {
	// Hostname and IP/Port are what the master advertises (MasterInfo).
	Hostname string
	IP       string
	Port     int

	AllocationInterval time.Duration // --allocation_interval, 1s
	// OfferTimeout rescinds offers held longer; 0 (Mesos' default) never.
	OfferTimeout           time.Duration
	HeartbeatInterval      time.Duration // 15s
	AgentPingTimeout       time.Duration // --agent_ping_timeout, 15s
	MaxAgentPingTimeouts   int           // --max_agent_ping_timeouts, 5
	AgentReregisterTimeout time.Duration // --agent_reregister_timeout, 10min
	// MaxCompletedFrameworks and MaxCompletedTasksPerFramework bound what
	// /state keeps of the past.
	MaxCompletedFrameworks        int
	MaxCompletedTasksPerFramework int
	// Registry, when set, keeps the admitted agents across master restarts
	// (Mesos' registry), so that a restarted master knows which agents may
	// come back. Nil keeps nothing.
	Registry Registry

	Clock  Clock
	Logger *log.Logger
}

func (c *Config) setDefaults() {
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.IP == "" {
		c.IP = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = 5050
	}
	if c.AllocationInterval <= 0 {
		c.AllocationInterval = time.Second
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 15 * time.Second
	}
	if c.AgentPingTimeout <= 0 {
		c.AgentPingTimeout = 15 * time.Second
	}
	if c.MaxAgentPingTimeouts <= 0 {
		c.MaxAgentPingTimeouts = 5
	}
	if c.AgentReregisterTimeout <= 0 {
		c.AgentReregisterTimeout = 10 * time.Minute
	}
	if c.MaxCompletedFrameworks <= 0 {
		c.MaxCompletedFrameworks = 50
	}
	if c.MaxCompletedTasksPerFramework <= 0 {
		c.MaxCompletedTasksPerFramework = 1000
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = log.Default()
	}
}

// Master is the built-in Mesos master.
type Master struct {
	cfg  Config
	info *mesospb.MasterInfo
	id   string

	mu sync.Mutex
	st *state

	startTime time.Time
}

// New makes a master. It does nothing until requests arrive and Tick (or
// Run) is called.
func New(cfg Config) (*Master, error) {
	cfg.setDefaults()
	id := newUUID()
	m := &Master{cfg: cfg, id: id, startTime: cfg.Clock.Now()}
	m.info = &mesospb.MasterInfo{
		Id:       proto.String(id),
		Ip:       proto.Uint32(packIP(cfg.IP)),
		Port:     proto.Uint32(uint32(cfg.Port)),
		Pid:      proto.String(fmt.Sprintf("master@%s:%d", cfg.IP, cfg.Port)),
		Hostname: proto.String(cfg.Hostname),
		Version:  proto.String(Version),
		Address: &mesospb.Address{
			Hostname: proto.String(cfg.Hostname),
			Ip:       proto.String(cfg.IP),
			Port:     proto.Int32(int32(cfg.Port)),
		},
		Capabilities: []*mesospb.MasterInfo_Capability{
			{Type: mesospb.MasterInfo_Capability_AGENT_UPDATE.Enum()},
			{Type: mesospb.MasterInfo_Capability_AGENT_DRAINING.Enum()},
		},
	}
	m.st = newState(m)
	if cfg.Registry != nil {
		admitted, err := cfg.Registry.Load()
		if err != nil {
			return nil, fmt.Errorf("reading the master's registry: %w", err)
		}
		m.st.recoverAgents(admitted)
	}
	return m, nil
}

// ID is the master's ID (new at every start, as in Mesos).
func (m *Master) ID() string { return m.id }

// Info is the MasterInfo sent in SUBSCRIBED.
func (m *Master) Info() *mesospb.MasterInfo { return proto.Clone(m.info).(*mesospb.MasterInfo) }

// Handler serves the master's HTTP API.
func (m *Master) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/scheduler", m.serveScheduler)
	mux.HandleFunc(AgentAPIPath, m.serveAgent)
	mux.HandleFunc("/health", m.serveHealth)
	mux.HandleFunc("/master/health", m.serveHealth)
	mux.HandleFunc("/state", m.serveState)
	mux.HandleFunc("/state.json", m.serveState)
	mux.HandleFunc("/master/state", m.serveState)
	mux.HandleFunc("/master/state.json", m.serveState)
	mux.HandleFunc("/frameworks", m.serveFrameworks)
	mux.HandleFunc("/slaves", m.serveSlaves)
	mux.HandleFunc("/tasks", m.serveTasks)
	mux.HandleFunc("/metrics/snapshot", m.serveMetrics)
	mux.HandleFunc("/version", m.serveVersion)
	return mux
}

// Tick does the master's periodic work at the clock's current time: expire
// filters, offers, failover timeouts and silent agents, send heartbeats and
// pings, and run an allocation cycle.
func (m *Master) Tick() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.tick(m.cfg.Clock.Now())
}

// Run calls Tick every allocation interval until ctx ends.
func (m *Master) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.AllocationInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			m.mu.Lock()
			m.st.closeAllStreams()
			m.mu.Unlock()
			return
		case <-t.C:
			m.Tick()
		}
	}
}

// Allocate runs one allocation cycle now (Mesos also allocates on events:
// new agents, recovered resources, revive).
func (m *Master) Allocate() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.allocate(m.cfg.Clock.Now())
}

// ListenAndServe serves the master on addr until ctx ends. A port in use is
// reported at once, naming the port.
func (m *Master) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (is another master running? choose another address with --ip/--port)", addr, err)
	}
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 30 * time.Second}
	go m.Run(ctx)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

func newUUID() string { return uuid.NewString() }

func newUUIDBytes() []byte { return uuid.New() }

func validUUID(b []byte) bool { return uuid.Valid(b) }

// packIP packs an IPv4 address as MasterInfo.ip does (network byte order
// read as a little-endian integer: 127.0.0.1 is 16777343).
func packIP(s string) uint32 {
	ip := net.ParseIP(s).To4()
	if ip == nil {
		return 0
	}
	return binary.LittleEndian.Uint32(ip)
}

func schedEvent(t schedulerpb.Event_Type) *schedulerpb.Event {
	return &schedulerpb.Event{Type: t.Enum()}
}

func itoa(i int) string { return strconv.Itoa(i) }

// UsedCPUs totals the cpus tasks and executors hold on all agents (for
// benchmarks and tests).
func (m *Master) UsedCPUs() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	used := 0.0
	for _, a := range m.st.agents {
		for _, tasks := range a.tasks {
			for _, t := range tasks {
				if !t.terminalReceived {
					used += resources.Scalar(t.res, "cpus")
				}
			}
		}
		for _, execs := range a.executors {
			for _, e := range execs {
				used += resources.Scalar(e.res, "cpus")
			}
		}
	}
	return used
}
