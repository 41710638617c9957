// Package local is `km local`: the whole system on one machine. It starts
// km etcd, km apiserver, km controller-manager, km mesos master, N km mesos
// agents and km scheduler as child processes of the km binary, each with
// its log file in the data dir, restarts a component that dies (with
// backoff), and stops everything in order on SIGINT or SIGTERM.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k8sm/k8sm/internal/mesos/masterstate"
	"github.com/k8sm/k8sm/internal/minimesos/agent"
)

// Config of a local cluster.
type Config struct {
	KM              string // the km binary
	DataDir         string
	Agents          int
	AgentResources  string
	AgentAttributes string
	Network         Network   // where the agents live; nil: Loopback
	Out             io.Writer // progress lines for the user
}

// Ports km local uses (the defaults of each component).
const (
	EtcdPort       = 2379
	EtcdPeerPort   = 2380
	APIServerPort  = 6443
	CMPort         = 10257
	MasterPort     = 5050
	SchedulerPort  = 10251
	AgentPort      = 5051
	KubeletAPIPort = 10250
)

// Cluster is a running local cluster.
type Cluster struct {
	cfg     Config
	lock    *os.File
	network Network
	mu      sync.Mutex
	procs   []*proc
	wg      sync.WaitGroup
}

type proc struct {
	name    string
	argv    []string
	log     string
	cmd     *exec.Cmd
	done    chan struct{}
	stopped bool
}

// lockDataDir refuses a data dir another km local uses, naming its PID.
func lockDataDir(dir string) (*os.File, error) {
	f, err := lockFile(filepath.Join(dir, "km-local.pid"), "the data dir "+dir)
	if err != nil && !errors.Is(err, errLocked) {
		return nil, fmt.Errorf("cannot write in the data dir %s: %v; choose another with --data-dir", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%v, or choose another --data-dir", err)
	}
	return f, nil
}

var errLocked = errors.New("in use")

type lockedError struct{ msg string }

func (e *lockedError) Error() string        { return e.msg }
func (e *lockedError) Is(target error) bool { return target == errLocked }

// lockFile takes an exclusive flock on path and writes our PID in it; the
// lock goes with the process, so a killed km local leaves nothing held.
func lockFile(path, what string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		return nil, &lockedError{fmt.Sprintf("%s is in use by another km local (pid %s): stop it first", what, strings.TrimSpace(string(b)))}
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

func checkPort(ip string, port int, what string) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port %d on %s, which km local's %s needs, is already in use: stop what uses it (another km local? see ss -ltnp) and run km local again", port, ip, what)
	}
	return ln.Close()
}

// Start brings the cluster up and returns once it is ready: every
// component healthy, N Nodes Ready, the default service account there.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	if cfg.Agents <= 0 || cfg.Agents > maxAgents {
		return nil, fmt.Errorf("--agents %d: give 1 to %d agents", cfg.Agents, maxAgents)
	}
	if cfg.Network == nil {
		cfg.Network = Loopback{}
	}
	nw := cfg.Network
	host := nw.HostIP()
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("cannot create the data dir %s: %v; choose a writable one with --data-dir", cfg.DataDir, err)
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	c := &Cluster{cfg: cfg, lock: lock}
	ok := false
	defer func() {
		if !ok {
			c.Stop()
		}
	}()
	// Ports first: a busy port must not cost the running km local its
	// network.
	for _, p := range []struct {
		ip   string
		port int
		what string
	}{
		{"127.0.0.1", EtcdPort, "etcd"}, {"127.0.0.1", EtcdPeerPort, "etcd peers"},
		{"127.0.0.1", APIServerPort, "kube-apiserver"}, {"127.0.0.1", CMPort, "controller-manager"},
		{"127.0.0.1", MasterPort, "Mesos master"}, {"127.0.0.1", SchedulerPort, "km scheduler"},
	} {
		if err := checkPort(p.ip, p.port, p.what); err != nil {
			return nil, err
		}
	}
	if _, isLoopback := nw.(Loopback); isLoopback {
		for i := 1; i <= cfg.Agents; i++ {
			if err := checkPort(nw.AgentIP(i), AgentPort, fmt.Sprintf("agent-%d", i)); err != nil {
				return nil, err
			}
			if err := checkPort(nw.AgentIP(i), KubeletAPIPort, fmt.Sprintf("agent-%d's kubelet API", i)); err != nil {
				return nil, err
			}
		}
	}
	if err := nw.Setup(cfg.Agents); err != nil {
		return nil, err
	}
	c.network = nw
	if host != "127.0.0.1" {
		for _, p := range []struct {
			port int
			what string
		}{{APIServerPort, "kube-apiserver"}, {MasterPort, "Mesos master"}, {SchedulerPort, "km scheduler"}} {
			if err := checkPort(host, p.port, p.what); err != nil {
				return nil, err
			}
		}
	}
	certDir := filepath.Join(cfg.DataDir, "certs")
	if out, err := exec.Command(cfg.KM, "certs", "--cert-dir", certDir,
		"--apiserver-url", fmt.Sprintf("https://%s:%d", host, APIServerPort), "--apiserver-ip", "10.96.0.1,"+host).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("making certificates: %v: %s", err, out)
	}
	kubeconfig := filepath.Join(cfg.DataDir, "kubeconfig")
	if b, err := os.ReadFile(filepath.Join(certDir, "admin.kubeconfig")); err == nil {
		os.WriteFile(kubeconfig, b, 0o600)
	}
	say := func(format string, args ...any) { fmt.Fprintf(cfg.Out, format+"\n", args...) }

	c.start("etcd", cfg.KM, "etcd", "--data-dir", filepath.Join(cfg.DataDir, "etcd"))
	if err := waitFor(ctx, 60*time.Second, c, func() bool { return httpOK("http://127.0.0.1:2379/health") }); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	say("etcd               healthy on 127.0.0.1:%d", EtcdPort)
	c.start("apiserver", cfg.KM, "apiserver", "--cert-dir", certDir, "--bind-address", host)
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	rc.WarningHandler = rest.NoWarnings{}
	client := kubernetes.NewForConfigOrDie(rc)
	if err := waitFor(ctx, 120*time.Second, c, func() bool {
		b, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(b) == "ok"
	}); err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	say("kube-apiserver     healthy on https://%s:%d", host, APIServerPort)
	c.start("controller-manager", cfg.KM, "controller-manager", "--cert-dir", certDir)
	if err := waitFor(ctx, 120*time.Second, c, func() bool {
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}); err != nil {
		return nil, fmt.Errorf("controller-manager: %w", err)
	}
	say("controller-manager healthy (default service account present)")
	c.start("mesos-master", cfg.KM, "mesos", "master", "--ip", host, "--work_dir", filepath.Join(cfg.DataDir, "master"),
		"--agent_ping_timeout", "2secs", "--max_agent_ping_timeouts", "5", "--agent_reregister_timeout", "1mins")
	if err := waitFor(ctx, 60*time.Second, c, func() bool { return httpOK(fmt.Sprintf("http://%s:%d/health", host, MasterPort)) }); err != nil {
		return nil, fmt.Errorf("mesos master: %w", err)
	}
	say("mesos master       healthy on %s:%d", host, MasterPort)
	for i := 1; i <= cfg.Agents; i++ {
		name := fmt.Sprintf("agent-%d", i)
		args := []string{cfg.KM, "mesos", "agent", "--master", fmt.Sprintf("%s:%d", host, MasterPort), "--ip", nw.AgentIP(i),
			"--port", strconv.Itoa(AgentPort), "--hostname", name, "--work_dir", c.agentWorkDir(i),
			"--resources", cfg.AgentResources, "--executor_shutdown_grace_period", "30secs"}
		if cfg.AgentAttributes != "" {
			args = append(args, "--attributes", cfg.AgentAttributes)
		}
		c.start(name, nw.Command(i, args)...)
	}
	if err := waitFor(ctx, 60*time.Second, c, func() bool { return activeAgents(ctx, host) == cfg.Agents }); err != nil {
		return nil, fmt.Errorf("mesos agents: %w (%d of %d registered)", err, activeAgents(ctx, host), cfg.Agents)
	}
	say("mesos agents       %d registered: %s", cfg.Agents, nw.Describe(cfg.Agents))
	c.start("scheduler", cfg.KM, "scheduler", "--mesos-master", fmt.Sprintf("%s:%d", host, MasterPort),
		"--kubeconfig", filepath.Join(certDir, "scheduler.kubeconfig"), "--km-path", cfg.KM,
		"--executor-kubeconfig", filepath.Join(certDir, "executor.kubeconfig"), "--mesos-encoding", "protobuf",
		// The agents fetch the executor's kubeconfig from the scheduler.
		"--address", fmt.Sprintf("%s:%d", host, SchedulerPort))
	if err := waitFor(ctx, 60*time.Second, c, func() bool { return httpOK(fmt.Sprintf("http://%s:%d/healthz", host, SchedulerPort)) }); err != nil {
		return nil, fmt.Errorf("km scheduler: %w", err)
	}
	say("km scheduler       healthy on %s:%d", host, SchedulerPort)
	if err := waitFor(ctx, 120*time.Second, c, func() bool { return readyNodes(ctx, client) >= cfg.Agents }); err != nil {
		return nil, fmt.Errorf("nodes: %w (%d of %d Ready)", err, readyNodes(ctx, client), cfg.Agents)
	}
	say("nodes              %d Ready", cfg.Agents)
	say("km local is ready. Use it with:\n  export KUBECONFIG=%s", kubeconfig)
	ok = true
	return c, nil
}

// probe is the one HTTP client of the health polls (one connection pool,
// not one per poll).
var probe = &http.Client{Timeout: 2 * time.Second}

func httpOK(url string) bool {
	resp, err := probe.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// activeAgents counts the agents the master reports active.
func activeAgents(ctx context.Context, host string) int {
	agents, err := masterstate.Client{HTTP: probe}.Agents(ctx, &url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(MasterPort))})
	if err != nil {
		return 0
	}
	n := 0
	for _, a := range agents {
		if a.Active {
			n++
		}
	}
	return n
}

func readyNodes(ctx context.Context, client kubernetes.Interface) int {
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0
	}
	n := 0
	for _, node := range nodes.Items {
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				n++
			}
		}
	}
	return n
}

// waitFor polls cond; it fails early if ctx ends.
func waitFor(ctx context.Context, d time.Duration, c *Cluster, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy after %v; see the logs in %s", d, filepath.Join(c.cfg.DataDir, "logs"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// start launches a component and supervises it: a component that dies is
// restarted with backoff (1 s doubling to 30 s), and the restart is logged.
func (c *Cluster) start(name string, argv ...string) {
	p := &proc{name: name, argv: argv, log: filepath.Join(c.cfg.DataDir, "logs", name+".log")}
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.launch(p)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		backoff := time.Second
		for {
			<-p.done
			c.mu.Lock()
			stopped := p.stopped
			c.mu.Unlock()
			if stopped {
				return
			}
			fmt.Fprintf(c.cfg.Out, "km local: %s exited (%v); restarting it in %v (log: %s)\n", name, p.cmd.ProcessState, backoff, p.log)
			time.Sleep(backoff)
			if backoff < 30*time.Second {
				backoff *= 2
			}
			c.mu.Lock()
			stopped = p.stopped
			c.mu.Unlock()
			if stopped {
				return
			}
			c.launch(p)
		}
	}()
}

func (c *Cluster) launch(p *proc) {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		f = nil
	}
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	if f != nil {
		cmd.Stdout, cmd.Stderr = f, f
	}
	// No component outlives km local, even if km local is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	p.done = make(chan struct{})
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(c.cfg.Out, "km local: cannot start %s: %v\n", p.name, err)
		close(p.done)
		return
	}
	done := p.done
	go func() {
		cmd.Wait()
		if f != nil {
			f.Close()
		}
		close(done)
	}()
}

// Stop stops the components in order: the scheduler and the controllers,
// the agents (they shut their executors down), the master, the
// apiserver, etcd.
func (c *Cluster) Stop() {
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	for _, p := range procs {
		p.stopped = true
	}
	c.mu.Unlock()
	order := []string{"scheduler", "controller-manager", "agent-", "mesos-master", "apiserver", "etcd"}
	for _, prefix := range order {
		var group []*proc
		for _, p := range procs {
			if strings.HasPrefix(p.name, prefix) {
				group = append(group, p)
			}
		}
		for _, p := range group {
			if p.cmd != nil && p.cmd.Process != nil {
				p.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		for _, p := range group {
			select {
			case <-p.done:
			case <-time.After(45 * time.Second):
				p.cmd.Process.Kill()
				<-p.done
			}
		}
	}
	c.wg.Wait()
	c.endLeftovers()
	if c.network != nil {
		c.network.Teardown()
		c.network = nil
	}
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}

// endLeftovers ends what the agents left running. An agent that was
// down when km local stopped (killed, in its restart backoff) did not shut
// its executors down: Mesos executors outlive their agent on purpose,
// waiting for it to recover them. Nothing recovers them after km local
// stops, so they and their containers go: SIGTERM, 10 s, SIGKILL. They are
// found by the agent's own mark, and in network namespaces by the
// namespace (a process that cleared its environment is still in it).
func (c *Cluster) endLeftovers() {
	find := func() []int {
		pids := map[int]bool{}
		if c.network != nil {
			for _, pid := range c.network.Processes(c.cfg.Agents) {
				pids[pid] = true
			}
		}
		for i := 1; i <= c.cfg.Agents; i++ {
			for _, pid := range agent.OwnedProcesses(c.agentWorkDir(i)) {
				pids[pid] = true
			}
		}
		delete(pids, os.Getpid())
		var r []int
		for pid := range pids {
			r = append(r, pid)
		}
		return r
	}
	left := find()
	if len(left) == 0 {
		return
	}
	fmt.Fprintf(c.cfg.Out, "km local: ending %d processes the agents left (executors of an agent that was down): %v\n", len(left), left)
	for _, pid := range left {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(left) > 0 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		left = find()
	}
	for _, pid := range left {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// agentWorkDir is agent i's --work_dir.
func (c *Cluster) agentWorkDir(i int) string {
	return filepath.Join(c.cfg.DataDir, "agents", fmt.Sprintf("agent-%d", i))
}

// Kubeconfig is the admin kubeconfig of the cluster.
func (c *Cluster) Kubeconfig() string { return filepath.Join(c.cfg.DataDir, "kubeconfig") }
