// Package agent is km's built-in Mesos agent (`km mesos agent`). It
// registers with km's master over the master-agent protocol (agentpb),
// launches executors as child processes in Mesos-style sandboxes with the
// environment Mesos gives them, serves the Mesos v1 executor API
// (POST /api/v1/executor) with Mesos 1.11's answers, fetches CommandInfo
// URIs, forwards status updates reliably (per task in order, retried until
// the framework acknowledges), runs command tasks under a command executor,
// checkpoints what it runs so that a restarted agent recovers the executors
// of checkpointing frameworks, and makes sure no process outlives its
// executor or the agent.
package agent

import (
	"context"
	"encoding/json"
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

// OwnerEnv is set in every executor's environment (and so inherited by what
// executors start) to the agent's work dir. It is the one variable km's agent
// adds to what Mesos gives executors: with it the agent finds the processes
// that left their executor's process group (setsid, double fork) when it
// stops, and a restarted agent finds those a crashed predecessor left.
// Processes of one executor run are found by their MESOS_DIRECTORY.
// Executors that build their children's environment from scratch should
// pass both on.
const OwnerEnv = "KM_MESOS_AGENT_WORK_DIR"

// Defaults of the agent flags (Mesos' src/slave/constants.hpp and flags.cpp).
const (
	DefaultPort                          = 5051
	DefaultExecutorShutdownGracePeriod   = 5 * time.Second
	DefaultExecutorRegistrationTimeout   = time.Minute
	DefaultExecutorReregistrationTimeout = 2 * time.Second
	DefaultRecoveryTimeout               = 15 * time.Minute
	DefaultStatusUpdateRetryMin          = 10 * time.Second
	DefaultStatusUpdateRetryMax          = 10 * time.Minute
	DefaultExecutorHeartbeatInterval     = 30 * time.Minute
	DefaultRegistrationBackoffFactor     = time.Second
	DefaultRegistrationBackoffMax        = 15 * time.Second
	// Mesos caps --executor_reregistration_timeout at 15 s.
	maxExecutorReregistrationTimeout = 15 * time.Second
)

// Config holds the agent's flags. Zero values take the Mesos defaults.
type Config struct {
	Master      string // host:port of the master (--master, required)
	IP          string // listen address (--ip, 127.0.0.1)
	Port        int    // --port (5051)
	AdvertiseIP string // address executors and the master use (--advertise_ip, default --ip)
	Hostname    string // --hostname (default: the name of the advertised IP, else the IP)
	Resources   string // --resources, Mesos syntax; what is not given is detected
	Attributes  string // --attributes
	DefaultRole string // --default_role ("*")
	WorkDir     string // --work_dir (required)

	ExecutorShutdownGracePeriod   time.Duration // 5s
	ExecutorRegistrationTimeout   time.Duration // 1min
	ExecutorReregistrationTimeout time.Duration // 2s (at most 15s)
	RecoveryTimeout               time.Duration // 15min
	StatusUpdateRetryMin          time.Duration // 10s
	StatusUpdateRetryMax          time.Duration // 10min
	ExecutorHeartbeatInterval     time.Duration // 30min
	RegistrationBackoffFactor     time.Duration // 1s
	RegistrationBackoffMax        time.Duration // 15s
	// ExecutorEnv is added to every executor's environment
	// (--executor_environment_variables).
	ExecutorEnv map[string]string
	// KMBinary runs the built-in command executor
	// (`<KMBinary> mesos command-executor`); default: this binary.
	KMBinary string

	Logger *log.Logger // default: discard
	Clock  Clock       // default: the real clock
}

func (c *Config) complete() error {
	if c.Master == "" {
		return errors.New("--master is required: the host:port of the km mesos master, e.g. --master=127.0.0.1:5050")
	}
	c.Master = strings.TrimSuffix(strings.TrimPrefix(c.Master, "http://"), "/")
	if host, port, err := net.SplitHostPort(c.Master); err != nil || host == "" || !validPort(port) {
		return fmt.Errorf("--master=%q is not host:port of the master; write e.g. --master=127.0.0.1:5050", c.Master)
	}
	if c.WorkDir == "" {
		return errors.New("--work_dir is required: the directory for sandboxes and the agent's checkpoints, e.g. --work_dir=/var/lib/km/agent")
	}
	if c.IP == "" {
		c.IP = "127.0.0.1"
	}
	if net.ParseIP(c.IP) == nil {
		return fmt.Errorf("--ip=%q is not an IP address; write e.g. --ip=127.0.0.1", c.IP)
	}
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("--port=%d is not a port number (1-65535)", c.Port)
	}
	if c.AdvertiseIP == "" {
		c.AdvertiseIP = c.IP
		if ip := net.ParseIP(c.IP); ip.IsUnspecified() {
			c.AdvertiseIP = "127.0.0.1"
		}
	}
	if net.ParseIP(c.AdvertiseIP) == nil {
		return fmt.Errorf("--advertise_ip=%q is not an IP address", c.AdvertiseIP)
	}
	if c.DefaultRole == "" {
		c.DefaultRole = "*"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ExecutorShutdownGracePeriod, DefaultExecutorShutdownGracePeriod)
	def(&c.ExecutorRegistrationTimeout, DefaultExecutorRegistrationTimeout)
	def(&c.ExecutorReregistrationTimeout, DefaultExecutorReregistrationTimeout)
	def(&c.RecoveryTimeout, DefaultRecoveryTimeout)
	def(&c.StatusUpdateRetryMin, DefaultStatusUpdateRetryMin)
	def(&c.StatusUpdateRetryMax, DefaultStatusUpdateRetryMax)
	def(&c.ExecutorHeartbeatInterval, DefaultExecutorHeartbeatInterval)
	def(&c.RegistrationBackoffFactor, DefaultRegistrationBackoffFactor)
	def(&c.RegistrationBackoffMax, DefaultRegistrationBackoffMax)
	if c.ExecutorReregistrationTimeout > maxExecutorReregistrationTimeout {
		return fmt.Errorf("--executor_reregistration_timeout=%v is longer than Mesos allows (%v)", c.ExecutorReregistrationTimeout, maxExecutorReregistrationTimeout)
	}
	if c.StatusUpdateRetryMax < c.StatusUpdateRetryMin {
		c.StatusUpdateRetryMax = c.StatusUpdateRetryMin
	}
	if c.RegistrationBackoffMax < c.RegistrationBackoffFactor {
		c.RegistrationBackoffMax = c.RegistrationBackoffFactor
	}
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
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	return nil
}

func validPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n <= 65535
}

// Agent is the built-in Mesos agent.
type Agent struct {
	cfg     Config
	clock   Clock
	log     *log.Logger
	total   resources.Resources
	attrs   []*mesospb.Attribute
	client  *http.Client // calls to the master
	started time.Time

	mu         sync.Mutex
	agentID    string
	masterInfo *mesospb.MasterInfo
	// connected: REGISTERED arrived on the current stream; status updates
	// flow only then.
	connected bool
	// recovering: checkpointed executors still have time to re-subscribe;
	// the agent registers with the master only after that.
	recovering   bool
	recoveryHold bool // recovery waits for hung executors to be gone
	// terminating: the agent is shutting down.
	terminating bool
	frameworks  map[string]*framework
	completedFw []*framework
	sum         *updateManager
	// deferred calls go to the master once it has registered the agent
	// (EXECUTOR_EXITED of executors found dead at recovery).
	deferred []deferredCall
	metrics  counters

	regWake       chan struct{} // register again now
	cancelSession context.CancelFunc
	resetSession  bool          // cancelSession was called to register again
	sumKick       chan struct{} // the status update manager has news
	recoveryDone  chan struct{}
	wg            sync.WaitGroup // goroutines that watch executor processes
}

// New checks the configuration (bad flags stop the agent with a message that
// quotes the bad part), detects what --resources leaves out and prepares the
// work dir. Run (or Serve) recovers the checkpointed state and starts the
// agent.
func New(cfg Config) (*Agent, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(cfg.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("--work_dir=%q: %v", cfg.WorkDir, err)
	}
	cfg.WorkDir = abs
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("--work_dir=%q cannot be created: %v; choose a writable directory", cfg.WorkDir, err)
	}
	total, err := AgentResources(cfg.Resources, cfg.DefaultRole, cfg.WorkDir)
	if err != nil {
		return nil, err
	}
	attrs, err := resources.ParseAttributes(cfg.Attributes)
	if err != nil {
		return nil, fmt.Errorf("--attributes=%q: %v", cfg.Attributes, err)
	}
	if cfg.Hostname == "" {
		cfg.Hostname = lookupHostname(cfg.AdvertiseIP)
	}
	a := &Agent{
		cfg:     cfg,
		clock:   cfg.Clock,
		log:     cfg.Logger,
		total:   total,
		attrs:   attrs,
		client:  &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute}},
		started: cfg.Clock.Now(),

		frameworks:   map[string]*framework{},
		sum:          newUpdateManager(cfg.StatusUpdateRetryMin, cfg.StatusUpdateRetryMax),
		regWake:      make(chan struct{}, 1),
		sumKick:      make(chan struct{}, 1),
		recoveryDone: make(chan struct{}),
	}
	a.agentID = a.readLatestAgentID()
	return a, nil
}

// AgentResources are the agent's total resources: --resources (Mesos
// syntax; unreserved ones get defaultRole), with cpus, mem, disk and ports
// that it does not name detected as Mesos does: every cpu, the memory less
// 1 GB (half of it below 2 GB), the work dir's file system less 5 GB (half
// of it below 10 GB) and ports [31000-32000].
func AgentResources(flag, defaultRole, workDir string) (resources.Resources, error) {
	if defaultRole == "" {
		defaultRole = "*"
	}
	given, err := resources.Parse(flag, defaultRole)
	if err != nil {
		return nil, fmt.Errorf("--resources=%q: %v", flag, err)
	}
	have := map[string]bool{}
	for _, r := range given {
		have[r.GetName()] = true
	}
	out := given
	if !have["cpus"] {
		out = append(out, resources.ScalarResource("cpus", float64(runtime.NumCPU()), defaultRole))
	}
	if !have["mem"] {
		out = append(out, resources.ScalarResource("mem", detectMemMB(), defaultRole))
	}
	if !have["disk"] {
		out = append(out, resources.ScalarResource("disk", detectDiskMB(workDir), defaultRole))
	}
	if !have["ports"] {
		out = append(out, resources.RangesResource("ports", []resources.Range{{Begin: 31000, End: 32000}}, defaultRole))
	}
	return out, nil
}

func detectMemMB() float64 {
	total := 0.0
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				if kb, err := strconv.ParseFloat(f[1], 64); err == nil {
					total = kb / 1024
				}
			}
		}
	}
	if total <= 0 {
		return 1024
	}
	if total >= 2048 {
		return float64(int(total - 1024))
	}
	return float64(int(total / 2))
}

func detectDiskMB(dir string) float64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 10240
	}
	total := float64(st.Blocks) * float64(st.Bsize) / (1 << 20)
	if total >= 10240 {
		return float64(int(total - 5120))
	}
	return float64(int(total / 2))
}

// lookupHostname is the name of ip as the resolver knows it (127.0.0.1 is
// "localhost", as a Mesos agent reports it), else ip itself.
func lookupHostname(ip string) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if names, err := net.DefaultResolver.LookupAddr(ctx, ip); err == nil && len(names) > 0 {
		if n := strings.TrimSuffix(names[0], "."); n != "" {
			return n
		}
	}
	return ip
}

// Endpoint is ip:port where executors and the master reach the agent.
func (a *Agent) Endpoint() string {
	return net.JoinHostPort(a.cfg.AdvertiseIP, strconv.Itoa(a.cfg.Port))
}

// Hostname is the name the agent reports (--hostname, or the one looked up).
func (a *Agent) Hostname() string { return a.cfg.Hostname }

// PID is the agent's libprocess PID, as executors get it (MESOS_SLAVE_PID).
func (a *Agent) PID() string { return "slave(1)@" + a.Endpoint() }

// ID is the agent's ID once registered (or recovered), "" before.
func (a *Agent) ID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.agentID
}

// Registered tells whether the master has (re-)registered the agent on the
// current connection.
func (a *Agent) Registered() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.connected
}

// agentInfoLocked is the AgentInfo the agent registers with and gives its
// executors. Unreserved resources carry no role, as Mesos writes them.
func (a *Agent) agentInfoLocked() *mesospb.AgentInfo {
	res := make(resources.Resources, 0, len(a.total))
	for _, r := range a.total {
		c := proto.Clone(r).(*mesospb.Resource)
		if c.GetRole() == "*" {
			c.Role = nil
		}
		res = append(res, c)
	}
	info := &mesospb.AgentInfo{
		Hostname:   proto.String(a.cfg.Hostname),
		Port:       proto.Int32(int32(a.cfg.Port)),
		Resources:  res,
		Attributes: a.attrs,
	}
	if a.agentID != "" {
		info.Id = &mesospb.AgentID{Value: proto.String(a.agentID)}
	}
	return info
}

// Run listens on --ip:--port, then serves as Serve does. A port in use fails
// at once, naming the port and the flags that change it.
func (a *Agent) Run(ctx context.Context) error {
	addr := net.JoinHostPort(a.cfg.IP, strconv.Itoa(a.cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (port %d): %v; is another agent running there? choose another address with --ip/--port", addr, a.cfg.Port, err)
	}
	return a.Serve(ctx, ln)
}

// Serve recovers the checkpointed state (executors of checkpointing
// frameworks that are still alive get --executor_reregistration_timeout to
// re-subscribe; everything else of an earlier agent is killed), serves the
// executor API and the operator endpoints on ln, registers with the master
// and keeps registered. When ctx ends it shuts every executor down (SHUTDOWN,
// grace period, then the whole process group) and returns once no process
// of the agent is left.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	a.recover()

	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 30 * time.Second}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Serve(ln) }()

	loops, cancelLoops := context.WithCancel(context.Background())
	var loopsWG sync.WaitGroup
	loopsWG.Add(2)
	go func() {
		defer loopsWG.Done()
		a.forwardUpdates(loops)
	}()
	go func() {
		defer loopsWG.Done()
		select {
		case <-a.recoveryDone:
		case <-loops.Done():
			return
		}
		a.registrationLoop(loops)
	}()

	var err error
	select {
	case <-ctx.Done():
	case err = <-srvDone:
	}
	a.log.Printf("agent stopping: shutting down every executor")
	a.shutdownAll()
	// Tell the master how the tasks ended while it still listens: one
	// attempt per update that has not gone out yet.
	a.flushUpdates(2 * time.Second)
	cancelLoops()
	loopsWG.Wait()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	srv.Close()
	a.wg.Wait()
	// Whatever left its executor's process group and still carries the
	// agent's mark dies with the agent.
	killMarked(OwnerEnv + "=" + a.cfg.WorkDir)
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Handler serves the agent's HTTP API: the executor API and the operator
// endpoints (also under Mesos' /slave(1)/ prefix).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	health := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	}
	mux.HandleFunc("/api/v1/executor", a.serveExecutorAPI)
	mux.HandleFunc("/slave(1)/api/v1/executor", a.serveExecutorAPI)
	for _, prefix := range []string{"", "/slave(1)"} {
		mux.HandleFunc(prefix+"/health", health)
		mux.HandleFunc(prefix+"/state", a.serveState)
		mux.HandleFunc(prefix+"/state.json", a.serveState)
		mux.HandleFunc(prefix+"/flags", a.serveFlags)
	}
	mux.HandleFunc("/metrics/snapshot", a.serveMetrics)
	return mux
}

func (a *Agent) kickUpdates() {
	select {
	case a.sumKick <- struct{}{}:
	default:
	}
}

// wakeRegistration makes the agent register again now (the master said it
// does not know it).
func (a *Agent) wakeRegistration() {
	select {
	case a.regWake <- struct{}{}:
	default:
	}
	a.mu.Lock()
	cancel := a.cancelSession
	a.resetSession = cancel != nil
	a.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// ParseExecutorEnvironment reads --executor_environment_variables: a JSON
// object whose values are strings, as Mesos requires.
func ParseExecutorEnvironment(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, fmt.Errorf("--executor_environment_variables=%q is not a JSON object (%v); write e.g. '{\"PATH\": \"/bin:/usr/bin\"}'", s, err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		str, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("--executor_environment_variables: the value of %q is %v, not a string; quote it", k, v)
		}
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("--executor_environment_variables: %q is not a variable name", k)
		}
		out[k] = str
	}
	return out, nil
}
