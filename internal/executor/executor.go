// Package executor is `km executor`: what a Mesos agent starts for km. It
// takes pods as Mesos tasks (the task's data is the pod), runs them as the
// kubelet does, reports task status to Mesos and pod status to the
// apiserver, and serves the kubelet API (logs) so that kubectl logs works.
package executor

import (
	"context"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/k8sm/k8sm/internal/executor/kubeletapi"
	"github.com/k8sm/k8sm/internal/executor/pods"
	"github.com/k8sm/k8sm/internal/executor/runtime"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

// TaskUpdater sends task status to Mesos (the executor client has it).
type TaskUpdater interface {
	Update(ctx context.Context, st *mesospb.TaskStatus) error
}

// Config of the executor.
type Config struct {
	Client  kubernetes.Interface
	Mesos   TaskUpdater
	Runtime runtime.Runtime
	// Sandbox is the executor's sandbox (MESOS_SANDBOX); pods live under
	// it.
	Sandbox string
	// HostIP is the agent's address (from MESOS_AGENT_ENDPOINT): the
	// pods' hostIP and podIP.
	HostIP   string
	NodeName string
	// RestartBackoff is the kubelet's initial restart backoff (10s).
	RestartBackoff time.Duration
	// IdleTimeout: an executor that runs no pod for this long exits
	// (k8sm's --suicide-timeout), so idle agents do not keep one; 0
	// keeps it forever. The next pod starts a new one.
	IdleTimeout time.Duration
	Logger      *log.Logger
}

// Executor runs the pods of its agent.
type Executor struct {
	cfg      Config
	recorder record.EventRecorder

	mu   sync.Mutex
	pods map[string]*running // by task ID
	// shutdown: SHUTDOWN received (or exiting idle), no new pods.
	shutdown bool
	// idleSince: when the last pod ended (zero while pods run).
	idleSince time.Time

	dirty chan string // task IDs whose pod status changed
	// done is closed when a SHUTDOWN has been carried out: the executor
	// process should exit.
	done     chan struct{}
	doneOnce sync.Once
}

// Done is closed once the agent's SHUTDOWN has been carried out, or the
// executor decided to exit idle.
func (e *Executor) Done() <-chan struct{} { return e.done }

type running struct {
	task   *mesospb.TaskInfo
	pod    *pods.Pod
	spec   *corev1.Pod
	killed bool
	// shutdown: killed because the executor was shut down, not for the
	// pod's own sake (the kubelet's graceful node shutdown).
	shutdown bool
	stateUp  mesospb.TaskState // last state sent to Mesos
	// over is closed once the pod's final status and the task's terminal
	// state are sent.
	over chan struct{}
}

// New makes an executor.
func New(cfg Config) *Executor {
	if cfg.Logger == nil {
		cfg.Logger = log.Default()
	}
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cfg.Client.CoreV1().Events("")})
	return &Executor{
		cfg:       cfg,
		recorder:  broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: cfg.NodeName}),
		pods:      map[string]*running{},
		dirty:     make(chan string, 4096),
		done:      make(chan struct{}),
		idleSince: time.Now(),
	}
}

// exitIfIdle ends the executor if it runs no pod, and tells whether it
// did. Taking the shutdown mark under the lock closes the race with a
// LAUNCH: a pod is either here (and the executor stays) or refused.
func (e *Executor) exitIfIdle(why string) bool {
	e.mu.Lock()
	if len(e.pods) > 0 || e.shutdown {
		e.mu.Unlock()
		return false
	}
	e.shutdown = true
	e.mu.Unlock()
	e.cfg.Logger.Printf("exiting: %s, and no pod runs here", why)
	e.doneOnce.Do(func() { close(e.done) })
	return true
}

// checkIdle exits once the executor has run no pod for IdleTimeout.
func (e *Executor) checkIdle(now time.Time) {
	if e.cfg.IdleTimeout <= 0 {
		return
	}
	e.mu.Lock()
	idle := len(e.pods) == 0 && !e.idleSince.IsZero() && now.Sub(e.idleSince) >= e.cfg.IdleTimeout
	e.mu.Unlock()
	if idle {
		e.exitIfIdle(fmt.Sprintf("idle for %v (--suicide-timeout)", e.cfg.IdleTimeout))
	}
}

// Run writes pod statuses until ctx ends.
func (e *Executor) Run(ctx context.Context) {
	pending := map[string]bool{}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case id := <-e.dirty:
			pending[id] = true
		case now := <-t.C:
			for id := range pending {
				e.syncStatus(ctx, id)
				delete(pending, id)
			}
			e.checkIdle(now)
		}
	}
}

// Event handles the agent's events (the execclient handler).
func (e *Executor) Event(ctx context.Context, ev *executorpb.Event) {
	switch ev.GetType() {
	case executorpb.Event_SUBSCRIBED:
		if n := ev.GetSubscribed().GetAgentInfo().GetHostname(); n != "" && e.cfg.NodeName == "" {
			e.cfg.NodeName = n
		}
	case executorpb.Event_LAUNCH:
		e.launch(ctx, ev.GetLaunch().GetTask())
	case executorpb.Event_LAUNCH_GROUP:
		for _, t := range ev.GetLaunchGroup().GetTaskGroup().GetTasks() {
			e.launch(ctx, t)
		}
	case executorpb.Event_KILL:
		var grace time.Duration = -1
		if g := ev.GetKill().GetKillPolicy().GetGracePeriod(); g != nil {
			grace = time.Duration(g.GetNanoseconds())
		}
		e.kill(ctx, ev.GetKill().GetTaskId().GetValue(), grace)
	case executorpb.Event_SHUTDOWN:
		e.Shutdown(ctx)
		e.doneOnce.Do(func() { close(e.done) })
	case executorpb.Event_MESSAGE:
		if data := string(ev.GetMessage().GetData()); data == podtask.KamikazeMessage {
			if !e.exitIfIdle("the scheduler said kamikaze") {
				e.cfg.Logger.Printf("kamikaze ignored: pods run here")
			}
		} else {
			e.cfg.Logger.Printf("ignoring a framework message of %d bytes: km's scheduler sends only %q", len(data), podtask.KamikazeMessage)
		}
	case executorpb.Event_ERROR:
		e.cfg.Logger.Printf("agent error: %s", ev.GetError().GetMessage())
	}
}

// Disconnected from the agent.
func (e *Executor) Disconnected(err error) {
	e.cfg.Logger.Printf("disconnected from the agent: %v", err)
}

func (e *Executor) update(ctx context.Context, t *mesospb.TaskInfo, state mesospb.TaskState, reason *mesospb.TaskStatus_Reason, msg string) {
	st := &mesospb.TaskStatus{TaskId: t.GetTaskId(), State: state.Enum(), AgentId: t.GetAgentId()}
	if msg != "" {
		st.Message = proto.String(msg)
	}
	st.Reason = reason
	if err := e.cfg.Mesos.Update(ctx, st); err != nil {
		e.cfg.Logger.Printf("sending %s of task %s: %v", state, t.GetTaskId().GetValue(), err)
	}
}

// baseEnv is what every container inherits from the executor: the agent's
// markers (so that no container outlives its executor) and PATH.
func baseEnv() map[string]string {
	out := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root"}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "KM_MESOS_") || k == "MESOS_DIRECTORY" || k == "MESOS_SANDBOX" || k == "PATH" || k == "HOME" {
			out[k] = v
		}
	}
	return out
}

type lookup struct{ c kubernetes.Interface }

func (l lookup) ConfigMap(ns, name string) (*corev1.ConfigMap, error) {
	return l.c.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
}

func (l lookup) Secret(ns, name string) (*corev1.Secret, error) {
	return l.c.CoreV1().Secrets(ns).Get(context.Background(), name, metav1.GetOptions{})
}

// launch starts the pod a task carries: TASK_STARTING at once,
// TASK_RUNNING when its containers run, a terminal state when it ends.
func (e *Executor) launch(ctx context.Context, t *mesospb.TaskInfo) {
	id := t.GetTaskId().GetValue()
	spec, err := podtask.PodFromTask(t.GetData())
	if err != nil {
		e.update(ctx, t, mesospb.TaskState_TASK_FAILED, nil, "km executor cannot run this task: "+err.Error()+" (tasks of km's scheduler carry their pod)")
		return
	}
	e.mu.Lock()
	if e.shutdown {
		e.mu.Unlock()
		e.update(ctx, t, mesospb.TaskState_TASK_FAILED, nil, "the executor is shutting down")
		return
	}
	if _, dup := e.pods[id]; dup {
		e.mu.Unlock()
		return // a resent LAUNCH
	}
	r := &running{task: t, spec: spec, over: make(chan struct{})}
	e.pods[id] = r
	e.idleSince = time.Time{}
	e.mu.Unlock()
	e.update(ctx, t, mesospb.TaskState_TASK_STARTING, nil, "")
	if spec.Spec.NodeName == "" {
		spec.Spec.NodeName = e.cfg.NodeName
	}
	r.pod = pods.Start(pods.Config{
		Runtime: e.cfg.Runtime, Dir: filepath.Join(e.cfg.Sandbox, "pods"), HostIP: e.cfg.HostIP,
		Lookup: lookup{e.cfg.Client}, BaseEnv: baseEnv(), InitialBackoff: e.cfg.RestartBackoff,
		Changed: func(*pods.Pod) {
			select {
			case e.dirty <- id:
			default:
			}
			e.taskProgress(ctx, id)
		},
		Event: func(p *corev1.Pod, typ, reason, msg string) { e.recorder.Event(p, typ, reason, msg) },
	}, spec)
	go func() {
		<-r.pod.Done()
		e.ended(ctx, id)
	}()
}

// taskProgress sends TASK_RUNNING once every container has started.
func (e *Executor) taskProgress(ctx context.Context, id string) {
	e.mu.Lock()
	r := e.pods[id]
	if r == nil || r.pod == nil || r.stateUp == mesospb.TaskState_TASK_RUNNING || r.killed {
		e.mu.Unlock()
		return
	}
	if r.pod.Phase() != corev1.PodRunning {
		e.mu.Unlock()
		return
	}
	r.stateUp = mesospb.TaskState_TASK_RUNNING
	e.mu.Unlock()
	e.update(ctx, r.task, mesospb.TaskState_TASK_RUNNING, nil, "")
}

// ended sends the task's terminal state and writes the pod's final status.
func (e *Executor) ended(ctx context.Context, id string) {
	e.mu.Lock()
	r := e.pods[id]
	e.mu.Unlock()
	if r == nil {
		return
	}
	e.syncStatus(ctx, id)
	phase := r.pod.Phase()
	switch {
	case r.killed:
		e.update(ctx, r.task, mesospb.TaskState_TASK_KILLED, nil, "pod killed")
	case phase == corev1.PodSucceeded:
		e.update(ctx, r.task, mesospb.TaskState_TASK_FINISHED, nil, "every container of the pod exited 0")
	default:
		msg := r.pod.Message()
		if msg == "" {
			msg = "the pod failed: a container exited non-zero and its restartPolicy does not restart it"
		}
		e.update(ctx, r.task, mesospb.TaskState_TASK_FAILED, failureReason(r.pod.Status(e.cfg.HostIP)), msg)
	}
	e.mu.Lock()
	delete(e.pods, id)
	if len(e.pods) == 0 {
		e.idleSince = time.Now()
	}
	e.mu.Unlock()
	close(r.over)
}

// failureReason is the Mesos reason of a failed pod's task, for the
// tools that read Mesos rather than Kubernetes: a container killed for
// its memory limit is REASON_CONTAINER_LIMITATION_MEMORY, as the Mesos
// containerizer reports it; a pod past its activeDeadlineSeconds is
// REASON_MAX_COMPLETION_TIME_REACHED; a plain non-zero exit has no reason, as with
// Mesos' command executor.
func failureReason(st corev1.PodStatus) *mesospb.TaskStatus_Reason {
	if st.Reason == pods.DeadlineExceeded {
		// Mesos' own name for a task ended at its max_completion_time.
		return mesospb.TaskStatus_REASON_MAX_COMPLETION_TIME_REACHED.Enum()
	}
	for _, cs := range append(append([]corev1.ContainerStatus{}, st.InitContainerStatuses...), st.ContainerStatuses...) {
		if t := cs.State.Terminated; t != nil && t.Reason == "OOMKilled" {
			return mesospb.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY.Enum()
		}
	}
	return nil
}

// kill terminates a pod with the kill policy's grace period (else the
// pod's deletion grace, else its terminationGracePeriodSeconds).
func (e *Executor) kill(ctx context.Context, id string, grace time.Duration) {
	e.mu.Lock()
	r := e.pods[id]
	if r != nil {
		r.killed = true
	}
	e.mu.Unlock()
	if r == nil {
		e.update(ctx, &mesospb.TaskInfo{TaskId: &mesospb.TaskID{Value: proto.String(id)}}, mesospb.TaskState_TASK_KILLED, nil, "no such pod on this executor")
		return
	}
	if grace < 0 {
		grace = 30 * time.Second
		if g := r.spec.Spec.TerminationGracePeriodSeconds; g != nil {
			grace = time.Duration(*g) * time.Second
		}
		if cur, err := e.cfg.Client.CoreV1().Pods(r.spec.Namespace).Get(ctx, r.spec.Name, metav1.GetOptions{}); err == nil && cur.DeletionGracePeriodSeconds != nil {
			grace = time.Duration(*cur.DeletionGracePeriodSeconds) * time.Second
		}
	}
	go r.pod.Terminate(grace)
}

// Shutdown kills every pod and waits for them.
func (e *Executor) Shutdown(ctx context.Context) {
	e.mu.Lock()
	e.shutdown = true
	var all []*running
	for _, r := range e.pods {
		r.killed = true
		r.shutdown = true
		all = append(all, r)
	}
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range all {
		wg.Add(1)
		go func(r *running) {
			defer wg.Done()
			grace := 30 * time.Second
			if g := r.spec.Spec.TerminationGracePeriodSeconds; g != nil {
				grace = time.Duration(*g) * time.Second
			}
			r.pod.Terminate(grace)
			// The executor exits after Shutdown: the pod's final status
			// and its task's terminal state go out first.
			select {
			case <-r.over:
			case <-ctx.Done():
			}
		}(r)
	}
	wg.Wait()
}

// Pods returns the running pods (for the kubelet API).
func (e *Executor) Pods() []*pods.Pod {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*pods.Pod
	for _, r := range e.pods {
		if r.pod != nil {
			out = append(out, r.pod)
		}
	}
	return out
}

// syncStatus writes a pod's status to the apiserver, as the kubelet's
// status manager does; a deleted pod whose containers are gone is removed
// for good.
func (e *Executor) syncStatus(ctx context.Context, id string) {
	e.mu.Lock()
	r := e.pods[id]
	e.mu.Unlock()
	if r == nil || r.pod == nil {
		return
	}
	status := r.pod.Status(e.cfg.HostIP)
	e.mu.Lock()
	shutdown := r.shutdown
	e.mu.Unlock()
	if shutdown && status.Phase == corev1.PodFailed && status.Reason == "" {
		// As the kubelet's graceful node shutdown says it: the pod did
		// not fail of itself, and its controller replaces it.
		status.Reason = "Terminated"
		status.Message = "the pod was terminated because its km executor was shut down (its Mesos agent stopped or the framework was removed)"
	}
	pods := e.cfg.Client.CoreV1().Pods(r.spec.Namespace)
	for attempt := 0; attempt < 3; attempt++ {
		cur, err := pods.Get(ctx, r.spec.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if err != nil {
			e.cfg.Logger.Printf("pod %s/%s: %v", r.spec.Namespace, r.spec.Name, err)
			return
		}
		if cur.UID != r.spec.UID {
			return
		}
		if cur.DeletionTimestamp != nil && (status.Phase == corev1.PodFailed || status.Phase == corev1.PodSucceeded) {
			zero := int64(0)
			uid := cur.UID
			pods.Delete(ctx, cur.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
			return
		}
		cur = cur.DeepCopy()
		if status.QOSClass == "" {
			status.QOSClass = cur.Status.QOSClass
		}
		cur.Status = status
		_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		if err == nil || !apierrors.IsConflict(err) {
			if err != nil {
				e.cfg.Logger.Printf("writing the status of pod %s/%s: %v", r.spec.Namespace, r.spec.Name, err)
			}
			return
		}
	}
}

// HostIPOf is the IP of an agent endpoint ("ip:port").
func HostIPOf(endpoint string) (string, error) {
	h, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		return "", fmt.Errorf("MESOS_AGENT_ENDPOINT %q is not ip:port", endpoint)
	}
	return h, nil
}

// Find returns a pod of this executor (the kubelet API's view).
func (e *Executor) Find(namespace, name string) kubeletapi.Pod {
	for _, p := range e.Pods() {
		if p.Namespace() == namespace && p.Name() == name {
			return p
		}
	}
	return nil
}
