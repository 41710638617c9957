// Package agent is km's built-in Mesos agent: it registers with km's
// master (agentpb), launches executors as child processes in sandboxes with
// the environment Mesos gives them, serves the Mesos v1 executor API
// (POST /api/v1/executor), fetches CommandInfo URIs, forwards status
// updates reliably (in order per task, retried until acknowledged), runs
// command tasks under a command executor, and makes sure no process
// outlives its executor.
package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
)

// Version is the Mesos release whose agent behaviour km follows.
const Version = "1.11.0"

// OwnerEnv marks every process the agent starts (and, through inheritance,
// what they start): its value is the agent's work dir. A restarted agent
// finds and ends processes left behind by a crashed predecessor with it.
// ContainerEnv marks the processes of one executor run (its container ID),
// so that what an executor started in other process groups dies with it.
// Executors that set their children's environment must pass both on.
const (
	OwnerEnv     = "KM_MESOS_AGENT_WORK_DIR"
	ContainerEnv = "KM_MESOS_CONTAINER"
)

// Config holds the agent's flags.
type Config struct {
	Master      string // host:port of the master
	IP          string
	Port        int
	AdvertiseIP string
	Hostname    string
	Resources   string
	Attributes  string
	DefaultRole string
	WorkDir     string

	ExecutorShutdownGracePeriod   time.Duration // 5s
	ExecutorRegistrationTimeout   time.Duration // 1min
	ExecutorReregistrationTimeout time.Duration // 2s
	RecoveryTimeout               time.Duration // 15min
	StatusUpdateRetryMin          time.Duration // 10s
	StatusUpdateRetryMax          time.Duration // 10min
	ExecutorHeartbeat             time.Duration // 30min
	RegistrationBackoffMax        time.Duration // 15s
	// ExecutorEnv is added to every executor's environment
	// (--executor_environment_variables).
	ExecutorEnv map[string]string
	// KMBinary runs the built-in command executor; default: this binary.
	KMBinary string

	Logger *log.Logger
}

func (c *Config) setDefaults() error {
	if c.Master == "" {
		return errors.New("--master is required (host:port of the Mesos master, e.g. 127.0.0.1:5050)")
	}
	if c.WorkDir == "" {
		return errors.New("--work_dir is required (where sandboxes and the agent's checkpoints live)")
	}
	if c.IP == "" {
		c.IP = "127.0.0.1"
	}
	if net.ParseIP(c.IP) == nil {
		return fmt.Errorf("--ip %q is not an IP address", c.IP)
	}
	if c.Port == 0 {
		c.Port = 5051
	}
	if c.AdvertiseIP == "" {
		c.AdvertiseIP = c.IP
	}
	if c.Hostname == "" {
		c.Hostname = c.AdvertiseIP
	}
	if c.DefaultRole == "" {
		c.DefaultRole = "*"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ExecutorShutdownGracePeriod, 5*time.Second)
	def(&c.ExecutorRegistrationTimeout, time.Minute)
	def(&c.ExecutorReregistrationTimeout, 2*time.Second)
	def(&c.RecoveryTimeout, 15*time.Minute)
	def(&c.StatusUpdateRetryMin, 10*time.Second)
	def(&c.StatusUpdateRetryMax, 10*time.Minute)
	def(&c.ExecutorHeartbeat, 30*time.Minute)
	def(&c.RegistrationBackoffMax, 15*time.Second)
	if c.KMBinary == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("cannot find the km binary for the command executor: %v", err)
		}
		c.KMBinary = exe
	}
	if c.Logger == nil {
		c.Logger = log.New(io.Discard, "", 0)
	}
	return nil
}

// DefaultResources is what the agent offers when --resources is not given:
// the machine's cpus, its memory less 1 GB (at least 1 GB), 10 GB of disk
// and ports [31000-32000], as Mesos estimates them.
func DefaultResources() string {
	mem := 1024.0
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					mem = kb/1024 - 1024
				}
			}
		}
	}
	if mem < 1024 {
		mem = 1024
	}
	return fmt.Sprintf("cpus:%d;mem:%d;disk:10240;ports:[31000-32000]", runtime.NumCPU(), int(mem))
}

// Agent is the built-in Mesos agent.
type Agent struct {
	cfg   Config
	total resources.Resources
	attrs []*mesospb.Attribute

	mu         sync.Mutex
	agentID    string
	masterInfo *mesospb.MasterInfo
	registered bool
	frameworks map[string]*framework
	sum        *statusUpdateManager
	// completed keeps the last finished executors for /state.
	completed []*executor
	stopping  bool

	httpClient *http.Client
	wake       chan struct{} // re-register now
}

type framework struct {
	info      *mesospb.FrameworkInfo
	executors map[string]*executor
	// shuttingDown: SHUTDOWN_FRAMEWORK received; forget it once its
	// executors are gone.
	shuttingDown bool
}

// New validates the configuration (bad --resources stop the agent with a
// message that quotes the bad part) and prepares the work dir.
func New(cfg Config) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.Resources == "" {
		cfg.Resources = DefaultResources()
	}
	total, err := resources.Parse(cfg.Resources, cfg.DefaultRole)
	if err != nil {
		return nil, fmt.Errorf("--resources: %v", err)
	}
	if resources.Ports(total) == nil && !strings.Contains(cfg.Resources, "ports") {
		// Mesos adds the default port range when none is given.
		total = resources.Add(total, resources.Resources{resources.RangesResource("ports", []resources.Range{{Begin: 31000, End: 32000}}, cfg.DefaultRole)})
	}
	attrs, err := resources.ParseAttributes(cfg.Attributes)
	if err != nil {
		return nil, fmt.Errorf("--attributes: %v", err)
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("--work_dir %s cannot be created: %v", cfg.WorkDir, err)
	}
	abs, err := filepath.Abs(cfg.WorkDir)
	if err != nil {
		return nil, err
	}
	cfg.WorkDir = abs
	a := &Agent{
		cfg:        cfg,
		total:      total,
		attrs:      attrs,
		frameworks: map[string]*framework{},
		httpClient: &http.Client{Timeout: 30 * time.Second},
		wake:       make(chan struct{}, 1),
	}
	a.sum = newStatusUpdateManager(a)
	a.agentID = a.loadAgentID()
	return a, nil
}

// Endpoint is ip:port where executors and the master reach the agent.
func (a *Agent) Endpoint() string {
	return net.JoinHostPort(a.cfg.AdvertiseIP, strconv.Itoa(a.cfg.Port))
}

// ID is the agent's ID once registered ("" before).
func (a *Agent) ID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.agentID
}

func (a *Agent) agentInfo() *mesospb.AgentInfo {
	info := &mesospb.AgentInfo{
		Hostname:   proto.String(a.cfg.Hostname),
		Port:       proto.Int32(int32(a.cfg.Port)),
		Resources:  a.total,
		Attributes: a.attrs,
	}
	if a.agentID != "" {
		info.Id = &mesospb.AgentID{Value: proto.String(a.agentID)}
	}
	return info
}

// Run serves the executor API and the operator endpoints, keeps the agent
// registered with the master, and on ctx's end shuts every executor down
// (SHUTDOWN, grace period, then the whole process group) before returning.
func (a *Agent) Run(ctx context.Context) error {
	a.cleanupOrphans()
	addr := net.JoinHostPort(a.cfg.IP, strconv.Itoa(a.cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %v (is another agent running there? choose another address with --ip/--port)", addr, err)
	}
	return a.Serve(ctx, ln)
}

// Serve is Run on a listener the caller made.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 30 * time.Second}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()
	regDone := make(chan struct{})
	go func() {
		defer close(regDone)
		a.registrationLoop(ctx)
	}()
	go a.sum.run(ctx)

	var err error
	select {
	case <-ctx.Done():
	case err = <-srvDone:
	}
	a.cfg.Logger.Printf("agent stopping: shutting down every executor")
	a.shutdownAll("the agent is shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	<-regDone
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Handler serves the agent's HTTP API.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/executor", a.serveExecutorAPI)
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/slave(1)/health", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/state", a.serveState)
	mux.HandleFunc("/state.json", a.serveState)
	mux.HandleFunc("/slave(1)/state", a.serveState)
	mux.HandleFunc("/metrics/snapshot", a.serveMetrics)
	return mux
}

// ---------------------------------------------------------------------------
// Checkpointed agent ID (work_dir/meta/slaves/latest), as Mesos keeps it.

func (a *Agent) idFile() string { return filepath.Join(a.cfg.WorkDir, "meta", "slaves", "latest") }

func (a *Agent) loadAgentID() string {
	b, err := os.ReadFile(a.idFile())
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func (a *Agent) saveAgentID(id string) {
	if err := os.MkdirAll(filepath.Dir(a.idFile()), 0o755); err != nil {
		a.cfg.Logger.Printf("cannot checkpoint the agent ID: %v", err)
		return
	}
	tmp := a.idFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err == nil {
		os.Rename(tmp, a.idFile())
	}
}

func (a *Agent) forgetAgentID() { os.Remove(a.idFile()) }

// ---------------------------------------------------------------------------
// Processes: no orphans.

// killGroup ends a process group: SIGKILL to -pgid.
func killGroup(pgid int) {
	if pgid > 1 {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// ownedProcesses finds the processes that carry this agent's owner mark in
// their environment.
func (a *Agent) ownedProcesses() []int { return markedProcesses(OwnerEnv + "=" + a.cfg.WorkDir) }

// killContainer ends every process of an executor run, whatever its
// process group.
func killContainer(containerID string) {
	for _, pid := range markedProcesses(ContainerEnv + "=" + containerID) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// markedProcesses finds the processes whose environment holds kv.
func markedProcesses(kv string) []int {
	mark := []byte(kv + "\x00")
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		env = append(env, 0)
		if bytes.Contains(env, mark) {
			out = append(out, pid)
		}
	}
	return out
}

// cleanupOrphans ends processes a previous (crashed) agent of this work dir
// left behind. km's agent does not reattach to old executors: their tasks
// are reported lost by the master when the agent re-registers without them.
func (a *Agent) cleanupOrphans() {
	pids := a.ownedProcesses()
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if len(pids) > 0 {
		a.cfg.Logger.Printf("ended %d processes left by an earlier agent of %s", len(pids), a.cfg.WorkDir)
	}
}
