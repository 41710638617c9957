// Package pods runs pods as the kubelet does: init containers in order,
// then the containers, restarts by restartPolicy with the kubelet's
// backoff (CrashLoopBackOff), probes, graceful termination with preStop
// hooks, and the pod status (phase, conditions, container statuses) that
// the executor writes to the apiserver.
package pods

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k8sm/k8sm/internal/executor/runtime"
)

// Config is what pods need from their executor.
type Config struct {
	Runtime runtime.Runtime
	// Dir is where pods live: <Dir>/<pod uid>/{logs,containers}.
	Dir    string
	HostIP string
	Lookup Lookup
	// BaseEnv goes into every container (the agent's process markers,
	// PATH...).
	BaseEnv map[string]string
	// InitialBackoff and MaxBackoff are the restart backoff (10s, 5m).
	InitialBackoff, MaxBackoff time.Duration
	MaxLogBytes                int64
	// Changed is called (from any goroutine) when the pod's status changed.
	Changed func(*Pod)
	// Event records an event on the pod.
	Event func(pod *corev1.Pod, eventType, reason, message string)
}

// Pod is one running pod.
type Pod struct {
	cfg  Config
	spec *corev1.Pod

	mu         sync.Mutex
	startTime  metav1.Time
	init       []*container
	containers []*container
	// initialized: every init container succeeded.
	initialized bool
	// failed is why the pod cannot run (bad spec, init failure).
	failed      string
	failReason  string
	terminating bool
	done        bool
	doneCh      chan struct{}
	cancel      context.CancelFunc
	ctx         context.Context
}

// container is the state of one container of the pod.
type container struct {
	spec      *corev1.Container
	init      bool
	restarts  int32
	ready     bool
	started   bool // startup probe passed (or none)
	running   runtime.Container
	runID     string
	startedAt metav1.Time
	state     corev1.ContainerState
	last      corev1.ContainerState
	// finished: will not run again.
	finished bool
	live     chan struct{} // closed when liveness says restart
}

// UID of the pod.
func (p *Pod) UID() string { return string(p.spec.UID) }

// Spec is the pod as launched.
func (p *Pod) Spec() *corev1.Pod { return p.spec }

// Done is closed once every container ended for good.
func (p *Pod) Done() <-chan struct{} { return p.doneCh }

// Start validates and runs a pod.
func Start(cfg Config, pod *corev1.Pod) *Pod {
	if cfg.InitialBackoff <= 0 {
		cfg.InitialBackoff = 10 * time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pod{cfg: cfg, spec: pod, startTime: metav1.Now(), doneCh: make(chan struct{}), ctx: ctx, cancel: cancel}
	for i := range pod.Spec.InitContainers {
		c := &container{spec: &pod.Spec.InitContainers[i], init: true}
		c.state.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
		p.init = append(p.init, c)
	}
	for i := range pod.Spec.Containers {
		c := &container{spec: &pod.Spec.Containers[i]}
		c.state.Waiting = &corev1.ContainerStateWaiting{Reason: "PodInitializing"}
		p.containers = append(p.containers, c)
	}
	if msg := validate(pod); msg != "" {
		p.failed, p.failReason = msg, "InvalidPodSpec"
		p.event(corev1.EventTypeWarning, "Failed", msg)
		p.finish()
		return p
	}
	go p.run()
	if d := pod.Spec.ActiveDeadlineSeconds; d != nil {
		go p.enforceDeadline(time.Duration(*d) * time.Second)
	}
	return p
}

// DeadlineExceeded is the reason of a pod that ran past its
// activeDeadlineSeconds, with the kubelet's words for it.
const (
	DeadlineExceeded        = "DeadlineExceeded"
	deadlineExceededMessage = "Pod was active on the node longer than the specified deadline"
)

// enforceDeadline does what the kubelet's active deadline handler does:
// once the pod has been active for activeDeadlineSeconds (counted from its
// start on this node), it is failed with reason DeadlineExceeded and its
// containers are stopped with the pod's grace period; none restarts.
func (p *Pod) enforceDeadline(d time.Duration) {
	t := time.NewTimer(time.Until(p.startTime.Add(d)))
	defer t.Stop()
	select {
	case <-p.doneCh:
		return
	case <-t.C:
	}
	p.mu.Lock()
	if p.done || p.terminating {
		p.mu.Unlock()
		return
	}
	p.failed, p.failReason = deadlineExceededMessage, DeadlineExceeded
	p.mu.Unlock()
	p.event(corev1.EventTypeNormal, DeadlineExceeded, deadlineExceededMessage)
	p.changed()
	p.Terminate(p.graceFromSpec())
}

// validate refuses what the process runtime cannot run, with what to
// change.
func validate(pod *corev1.Pod) string {
	all := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, c := range all {
		if len(c.Command) == 0 {
			return fmt.Sprintf("container %q has no command: km's process runtime runs the container's command on the agent and pulls no image (%q is not run); set command (and args)", c.Name, c.Image)
		}
		for _, pr := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
			if pr != nil && pr.Exec == nil && pr.HTTPGet == nil && pr.TCPSocket == nil {
				return fmt.Sprintf("container %q has a probe without exec, httpGet or tcpSocket (grpc probes are not supported by km's process runtime); give the probe one of them", c.Name)
			}
		}
	}
	return ""
}

func (p *Pod) event(typ, reason, msg string) {
	if p.cfg.Event != nil {
		p.cfg.Event(p.spec, typ, reason, msg)
	}
}

func (p *Pod) changed() {
	if p.cfg.Changed != nil {
		p.cfg.Changed(p)
	}
}

func (p *Pod) finish() {
	p.mu.Lock()
	already := p.done
	p.done = true
	p.mu.Unlock()
	if !already {
		close(p.doneCh)
		p.cancel()
		p.changed()
	}
}

// workingDir is where a container's processes (and its exec'd commands
// and hooks) run: its workingDir, else a directory of its own.
func (p *Pod) workingDir(c *container) string {
	if c.spec.WorkingDir != "" {
		return c.spec.WorkingDir
	}
	return p.dir("containers", c.spec.Name)
}

// PIDDir is the directory of a pod's directory that holds its
// containers' PID files (see ReapEarlierRuns in the executor).
const PIDDir = "pids"

func (p *Pod) dir(parts ...string) string {
	return filepath.Join(append([]string{p.cfg.Dir, string(p.spec.UID)}, parts...)...)
}

// LogPath is the log file of a container's n-th run.
func (p *Pod) LogPath(name string, run int32) string {
	return p.dir("logs", name, strconv.Itoa(int(run))+".log")
}

// Restarts is how often a container was restarted.
func (p *Pod) Restarts(name string) (int32, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.findLocked(name); c != nil {
		return c.restarts, true
	}
	return 0, false
}

// findLocked is the init container or container of that name, or nil.
func (p *Pod) findLocked(name string) *container {
	for _, list := range [][]*container{p.init, p.containers} {
		for _, c := range list {
			if c.spec.Name == name {
				return c
			}
		}
	}
	return nil
}

// runningContainer is a container that runs now, for exec and attach; the
// error says which of the two it is not.
func (p *Pod) runningContainer(name string) (*container, runtime.Container, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.findLocked(name)
	if c == nil {
		return nil, nil, fmt.Errorf("container %q is not in pod %s/%s", name, p.spec.Namespace, p.spec.Name)
	}
	if c.running == nil {
		return nil, nil, fmt.Errorf("container %q of pod %s/%s is not running", name, p.spec.Namespace, p.spec.Name)
	}
	return c, c.running, nil
}

func (p *Pod) run() {
	defer p.finish()
	for _, c := range p.init {
		if !p.runInit(c) {
			return
		}
	}
	p.mu.Lock()
	p.initialized = true
	p.mu.Unlock()
	p.changed()
	var wg sync.WaitGroup
	for _, c := range p.containers {
		wg.Add(1)
		go func(c *container) {
			defer wg.Done()
			p.supervise(c)
		}(c)
	}
	wg.Wait()
}

// runInit runs an init container to success (restarting it on failure
// unless restartPolicy is Never).
func (p *Pod) runInit(c *container) bool {
	for attempt := 0; ; attempt++ {
		exit, ok := p.runOnce(c)
		if !ok {
			return false
		}
		if exit.Code == 0 && exit.Err == nil {
			p.mu.Lock()
			c.finished = true
			p.mu.Unlock()
			return true
		}
		if p.spec.Spec.RestartPolicy == corev1.RestartPolicyNever || p.isTerminating() {
			p.mu.Lock()
			p.failed, p.failReason = fmt.Sprintf("init container %q failed (exit code %d)", c.spec.Name, exit.Code), "InitContainerFailed"
			p.mu.Unlock()
			return false
		}
		if !p.backoff(c, attempt) {
			return false
		}
		p.restarted(c)
	}
}

// supervise runs a container and restarts it per the restart policy.
func (p *Pod) supervise(c *container) {
	for attempt := 0; ; attempt++ {
		exit, ok := p.runOnce(c)
		if !ok {
			return
		}
		policy := p.spec.Spec.RestartPolicy
		restart := !p.isTerminating() && (policy == corev1.RestartPolicyAlways || policy == "" ||
			policy == corev1.RestartPolicyOnFailure && (exit.Code != 0 || exit.Err != nil))
		if !restart {
			p.mu.Lock()
			c.finished = true
			p.mu.Unlock()
			p.changed()
			return
		}
		if exit.Code == 0 && exit.Err == nil && time.Since(exit.At) > 0 && c.runningLongEnough() {
			attempt = -1 // ran for a while: the backoff starts over
		}
		if !p.backoff(c, attempt) {
			return
		}
		p.restarted(c)
	}
}

func (c *container) runningLongEnough() bool {
	return c.last.Terminated != nil && c.last.Terminated.FinishedAt.Sub(c.last.Terminated.StartedAt.Time) > 10*time.Minute
}

// backoff waits before a restart: CrashLoopBackOff, doubling from the
// initial delay to the maximum. It returns false if the pod is stopping.
func (p *Pod) backoff(c *container, attempt int) bool {
	d := p.cfg.InitialBackoff
	for i := 0; i < attempt && d < p.cfg.MaxBackoff; i++ {
		d *= 2
	}
	if d > p.cfg.MaxBackoff {
		d = p.cfg.MaxBackoff
	}
	msg := fmt.Sprintf("back-off %v restarting failed container=%s pod=%s_%s(%s)", d.Round(time.Second), c.spec.Name, p.spec.Name, p.spec.Namespace, p.spec.UID)
	p.mu.Lock()
	c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: msg}}
	p.mu.Unlock()
	p.changed()
	p.event(corev1.EventTypeWarning, "BackOff", fmt.Sprintf("Back-off restarting failed container %s in pod %s_%s(%s)", c.spec.Name, p.spec.Name, p.spec.Namespace, p.spec.UID))
	select {
	case <-time.After(d):
		return !p.isTerminating()
	case <-p.ctx.Done():
		return false
	}
}

func (p *Pod) isTerminating() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.terminating
}

// runOnce runs one container once and waits for it. ok is false when the
// pod stops (or the container could not be started at all and will not
// be).
func (p *Pod) runOnce(c *container) (runtime.Exit, bool) {
	if p.isTerminating() {
		return runtime.Exit{}, false
	}
	env, vars, err := Environment(p.spec, c.spec, p.cfg.HostIP, p.cfg.BaseEnv, p.cfg.Lookup)
	if err != nil {
		p.mu.Lock()
		c.state = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}}
		p.mu.Unlock()
		p.changed()
		p.event(corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		// The kubelet retries until the ConfigMap or Secret exists.
		select {
		case <-time.After(p.cfg.InitialBackoff):
			return runtime.Exit{Code: 1, Err: err, At: time.Now()}, true
		case <-p.ctx.Done():
			return runtime.Exit{}, false
		}
	}
	dir := p.workingDir(c)
	p.mu.Lock()
	run := c.restarts
	c.runID = fmt.Sprintf("%s-%s-%d", p.spec.UID, c.spec.Name, run)
	p.mu.Unlock()
	spec := runtime.Spec{
		ID: c.runID, Argv: Command(c.spec, vars), Env: env, Dir: dir,
		LogPath: p.LogPath(c.spec.Name, run), MaxLogBytes: p.cfg.MaxLogBytes,
		PIDFile: p.dir(PIDDir, c.spec.Name+".pid"),
		Stdin:   c.spec.Stdin, TTY: c.spec.TTY,
	}
	if q, ok := c.spec.Resources.Limits[corev1.ResourceMemory]; ok {
		spec.MemoryLimit = q.Value()
	}
	if q, ok := c.spec.Resources.Limits[corev1.ResourceCPU]; ok {
		spec.CPUMillis = q.MilliValue()
	}
	rc, err := p.cfg.Runtime.Start(spec)
	if err != nil {
		now := metav1.Now()
		p.mu.Lock()
		c.state = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", Message: err.Error(), StartedAt: now, FinishedAt: now}}
		p.mu.Unlock()
		p.changed()
		p.event(corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return runtime.Exit{Code: 128, Err: err, At: time.Now()}, true
	}
	started := metav1.Now()
	p.mu.Lock()
	c.running = rc
	c.startedAt = started
	c.state = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}
	c.ready = false
	c.started = c.spec.StartupProbe == nil
	c.live = make(chan struct{})
	live := c.live
	p.mu.Unlock()
	p.changed()
	p.event(corev1.EventTypeNormal, "Started", "Container started")
	probeCtx, stopProbes := context.WithCancel(p.ctx)
	if !c.init {
		go p.probe(probeCtx, c, rc)
	}
	var exit runtime.Exit
	select {
	case <-rc.Done():
		exit = rc.Exit()
	case <-live:
		// Liveness failed: the kubelet kills and restarts the container.
		p.event(corev1.EventTypeNormal, "Killing", fmt.Sprintf("Container %s failed liveness probe, will be restarted", c.spec.Name))
		p.stopContainer(c, rc, p.probeGrace(c))
		exit = rc.Exit()
	}
	stopProbes()
	term := &corev1.ContainerStateTerminated{ExitCode: int32(exit.Code), StartedAt: started, FinishedAt: metav1.NewTime(exit.At),
		ContainerID: "km-process://" + c.runID}
	switch {
	case exit.OOMKilled:
		term.Reason = "OOMKilled"
	case exit.Code == 0:
		term.Reason = "Completed"
	default:
		term.Reason = "Error"
	}
	if exit.Signal != 0 {
		term.Signal = int32(exit.Signal)
	}
	p.mu.Lock()
	c.running = nil
	c.ready = false
	c.state = corev1.ContainerState{Terminated: term}
	c.last = corev1.ContainerState{Terminated: term}
	p.mu.Unlock()
	p.changed()
	if exit.OOMKilled {
		p.event(corev1.EventTypeWarning, "OOMKilled", fmt.Sprintf("Container %s was killed: it went over its memory limit", c.spec.Name))
	}
	return exit, true
}

// restarted counts a restart (the kubelet's restartCount), before the
// container runs again.
func (p *Pod) restarted(c *container) {
	p.mu.Lock()
	c.restarts++
	p.mu.Unlock()
}

func (p *Pod) probeGrace(c *container) time.Duration {
	if c.spec.LivenessProbe != nil && c.spec.LivenessProbe.TerminationGracePeriodSeconds != nil {
		return time.Duration(*c.spec.LivenessProbe.TerminationGracePeriodSeconds) * time.Second
	}
	return p.graceFromSpec()
}

func (p *Pod) graceFromSpec() time.Duration {
	if g := p.spec.Spec.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

// stopContainer runs the preStop hook, sends SIGTERM to the container's
// process group, and SIGKILL when the grace period is over (at least 2 s,
// as the kubelet).
func (p *Pod) stopContainer(c *container, rc runtime.Container, grace time.Duration) {
	if grace < 2*time.Second {
		grace = 2 * time.Second
	}
	deadline := time.Now().Add(grace)
	if h := c.spec.Lifecycle; h != nil && h.PreStop != nil && h.PreStop.Exec != nil {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		out, err := p.execIn(ctx, c, h.PreStop.Exec.Command)
		cancel()
		if err != nil {
			p.event(corev1.EventTypeWarning, "FailedPreStopHook", fmt.Sprintf("PreStopHook failed: %v: %s", err, out))
		}
	}
	p.event(corev1.EventTypeNormal, "Killing", "Stopping container "+c.spec.Name)
	rc.Signal(syscall.SIGTERM)
	select {
	case <-rc.Done():
	case <-time.After(time.Until(deadline)):
		rc.Signal(syscall.SIGKILL)
		<-rc.Done()
	}
}

// Terminate stops the pod: every running container gets the grace period
// (preStop, SIGTERM, SIGKILL), none restarts. It returns when all are gone.
func (p *Pod) Terminate(grace time.Duration) {
	p.mu.Lock()
	if p.done {
		p.mu.Unlock()
		return
	}
	p.terminating = true
	var running []*container
	var rcs []runtime.Container
	for _, c := range append(append([]*container{}, p.init...), p.containers...) {
		if c.running != nil {
			running = append(running, c)
			rcs = append(rcs, c.running)
		}
	}
	p.mu.Unlock()
	p.cancel() // wakes backoffs and probes
	var wg sync.WaitGroup
	for i, c := range running {
		wg.Add(1)
		go func(c *container, rc runtime.Container) {
			defer wg.Done()
			p.stopContainer(c, rc, grace)
		}(c, rcs[i])
	}
	wg.Wait()
	select {
	case <-p.doneCh:
	case <-time.After(5 * time.Second):
		p.finish()
	}
}

// execIn runs a command (hooks, exec probes) in a container's environment.
func (p *Pod) execIn(ctx context.Context, c *container, argv []string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	env, _, err := Environment(p.spec, c.spec, p.cfg.HostIP, p.cfg.BaseEnv, p.cfg.Lookup)
	if err != nil {
		return nil, err
	}
	dir := p.workingDir(c)
	os.MkdirAll(dir, 0o755)
	return runCommand(ctx, argv, env, dir)
}

// Running tells whether a container runs now.
func (p *Pod) Running(name string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.findLocked(name)
	return c != nil && c.running != nil
}

// Namespace of the pod.
func (p *Pod) Namespace() string { return p.spec.Namespace }

// Name of the pod.
func (p *Pod) Name() string { return p.spec.Name }
