package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/masterstate"
	"github.com/k8sm/k8sm/internal/mesos/schedclient"
	"github.com/k8sm/k8sm/internal/minimesos/master"
	"github.com/k8sm/k8sm/internal/minimesos/simagent"
	"github.com/k8sm/k8sm/internal/scheduler/podtask"
	"github.com/k8sm/k8sm/internal/testing/controlplane"
)

// env is a real apiserver (and controller-manager), the built-in master,
// simulated agents and the scheduler, all but the apiserver in-process.
type env struct {
	t      testing.TB
	cp     *controlplane.ControlPlane
	client kubernetes.Interface
	master *master.Master
	addr   string
	agents *simagent.Pool
	cancel context.CancelFunc
	sched  *Scheduler
	schedC func()
	close  func()
}

func testLogger(prefix string) *log.Logger {
	if testing.Verbose() {
		return log.New(os.Stderr, prefix+": ", log.Lmicroseconds)
	}
	return log.New(io.Discard, "", 0)
}

func newEnv(t testing.TB, agents int, res string, mutate ...func(*master.Config)) *env {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	cp := controlplane.Start(t, controlplane.Options{})
	mcfg := master.Config{AllocationInterval: 100 * time.Millisecond, AgentPingTimeout: 300 * time.Millisecond,
		MaxAgentPingTimeouts: 3, Logger: testLogger("master")}
	for _, f := range mutate {
		f(&mcfg)
	}
	m, err := master.New(mcfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	go m.Run(ctx)
	pool, err := simagent.New(simagent.Config{Master: srv.Listener.Addr().String(), Count: agents, Resources: res,
		Attributes: "rack:r1", HostnamePrefix: "agent-", RetryInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go pool.Run(ctx)
	e := &env{t: t, cp: cp, client: cp.Client(), master: m, addr: srv.Listener.Addr().String(), agents: pool, cancel: cancel}
	e.close = func() {
		if e.schedC != nil {
			e.schedC()
			e.schedC = nil
		}
		cancel()
		srv.CloseClientConnections()
		srv.Close()
	}
	t.Cleanup(func() { e.close() })
	waitUntil(t, "agents registered", func() bool { return pool.Registered() == agents })
	e.startScheduler()
	return e
}

func (e *env) startScheduler() {
	cfg := DefaultConfig()
	cfg.Masters = []string{e.addr}
	cfg.Executor = podtask.ExecutorConfig{Command: "/bin/true", CPUs: 0.25, MemMB: 128}
	cfg.InitialPodBackoff = 200 * time.Millisecond
	cfg.MaxPodBackoff = 2 * time.Second
	cfg.NodeRenewInterval = time.Second
	cfg.HTTPAddress = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	id, err := LoadFrameworkID(ctx, e.client)
	if err != nil {
		e.t.Fatal(err)
	}
	s := New(cfg, e.client, nil, testLogger("scheduler"))
	mc, err := schedclient.New(schedclient.Config{Masters: cfg.Masters, Encoding: codec.Protobuf, FrameworkInfo: cfg.FrameworkInfo(id, "test"),
		MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	if err != nil {
		e.t.Fatal(err)
	}
	s.SetMesos(mc)
	s.SetAgentLister(AgentListerFunc(func(ctx context.Context) ([]masterstate.Agent, error) {
		if mc.Leader() == nil {
			return nil, errors.New("not subscribed")
		}
		return masterstate.Client{}.Agents(ctx, mc.Leader())
	}))
	done := make(chan struct{}, 2)
	go func() { s.Run(ctx); done <- struct{}{} }()
	go func() { mc.Run(ctx, s); done <- struct{}{} }()
	e.sched = s
	e.schedC = func() { cancel(); <-done; <-done }
}

func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("waited %v for %s", d, what)
	}
}

func testPod(name string, cpu string, ports ...corev1.ContainerPort) *corev1.Pod {
	c := corev1.Container{Name: "c", Image: "none", Command: []string{"sleep", "3600"}, Ports: ports}
	if cpu != "" {
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("64Mi")}
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}
}

func (e *env) create(p *corev1.Pod) *corev1.Pod {
	e.t.Helper()
	out, err := e.client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *env) get(name string) *corev1.Pod {
	p, err := e.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return p
}

func (e *env) waitBound(name string) *corev1.Pod {
	e.t.Helper()
	var p *corev1.Pod
	waitUntil(e.t, "pod "+name+" bound", func() bool { p = e.get(name); return p != nil && p.Spec.NodeName != "" })
	return p
}

func (e *env) waitUnschedulable(name, contains string) {
	e.t.Helper()
	waitUntil(e.t, "pod "+name+" reported unschedulable ("+contains+")", func() bool {
		p := e.get(name)
		if p == nil {
			return false
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable && strings.Contains(c.Message, contains) {
				return true
			}
		}
		return false
	})
	evs, _ := e.client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	for _, ev := range evs.Items {
		if ev.Reason == "FailedScheduling" && strings.Contains(ev.Message, contains) {
			return
		}
	}
	e.t.Fatalf("no FailedScheduling event for %s saying %q: %v", name, contains, evs.Items)
}

func TestSchedulerPlacesPodsAndReportsWhatCannotRun(t *testing.T) {
	e := newEnv(t, 3, "cpus:4;mem:8192;ports:[31000-31010]")
	// Several pods fit one agent: bin-pack puts them on one, from one offer.
	for i := 0; i < 4; i++ {
		e.create(testPod(fmt.Sprintf("small-%d", i), "500m", corev1.ContainerPort{Name: "http", ContainerPort: 8080}))
	}
	hosts := map[string]int{}
	for i := 0; i < 4; i++ {
		p := e.waitBound(fmt.Sprintf("small-%d", i))
		hosts[p.Spec.NodeName]++
		// Wildcard: the container port got a host port from the offer.
		hp := p.Annotations[podtask.PortNameAnnotation(corev1.ProtocolTCP, "http")]
		if hp < "31000" || hp > "31010" || p.Annotations[podtask.PortAnnotation(corev1.ProtocolTCP, 8080)] != hp {
			t.Fatalf("host port annotations %v", p.Annotations)
		}
		if p.Annotations[podtask.AnnotationTaskID] == "" || p.Annotations[podtask.AnnotationAgentID] == "" {
			t.Fatalf("task annotations missing: %v", p.Annotations)
		}
	}
	if len(hosts) != 1 {
		t.Fatalf("bin-pack spread 4 small pods over %v", hosts)
	}
	waitUntil(t, "tasks running", func() bool { return e.agents.RunningTasks() == 4 })
	// Fixed port mapping: the declared hostPort.
	fixed := testPod("fixed", "100m", corev1.ContainerPort{ContainerPort: 80, HostPort: 31005})
	fixed.Labels = map[string]string{podtask.LabelPortMapping: "fixed"}
	e.create(fixed)
	if p := e.waitBound("fixed"); p.Annotations[podtask.PortAnnotation(corev1.ProtocolTCP, 80)] != "31005" {
		t.Fatalf("fixed port: %v", p.Annotations)
	}

	// What cannot run is said at once, on the pod.
	e.create(testPod("too-big", "100"))
	e.waitUnschedulable("too-big", "Insufficient cpus")
	e.create(testPod("port-80", "100m", corev1.ContainerPort{ContainerPort: 80, HostPort: 80}))
	e.waitUnschedulable("port-80", "hostPort 80 of container \"c\" is outside the ports offered by every agent (31000-31010)")
	sel := testPod("selector", "100m")
	sel.Spec.NodeSelector = map[string]string{podtask.LabelAttributePrefix + "rack": "r9"}
	e.create(sel)
	e.waitUnschedulable("selector", "didn't match Pod's node affinity/selector")
	// The agents' attributes are node labels: a matching selector runs.
	ok := testPod("selector-ok", "100m")
	ok.Spec.NodeSelector = map[string]string{podtask.LabelAttributePrefix + "rack": "r1"}
	e.create(ok)
	e.waitBound("selector-ok")
	n, err := e.client.CoreV1().Nodes().Get(context.Background(), "agent-1", metav1.GetOptions{})
	if err != nil || n.Labels[podtask.LabelAttributePrefix+"rack"] != "r1" || n.Status.Capacity.Cpu().Value() != 4 {
		t.Fatalf("node of agent-1: %v %v", n, err)
	}

	// Deleting a pod kills its task; the pod goes away.
	before := e.agents.RunningTasks()
	if err := e.client.CoreV1().Pods("default").Delete(context.Background(), "small-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "task of small-0 killed", func() bool { return e.agents.RunningTasks() == before-1 })
	waitUntil(t, "pod small-0 removed", func() bool { return e.get("small-0") == nil })
}

func TestAgentLossAndSchedulerRestart(t *testing.T) {
	e := newEnv(t, 3, "cpus:2;mem:4096;ports:[31000-31010]")
	one := int32(1)
	tmpl := testPod("", "1500m")
	rc := &corev1.ReplicationController{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ReplicationControllerSpec{Replicas: &one, Selector: map[string]string{"app": "web"},
			Template: &corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: tmpl.Spec}}}
	if _, err := e.client.CoreV1().ReplicationControllers("default").Create(context.Background(), rc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var p *corev1.Pod
	waitUntil(t, "the RC's pod bound", func() bool {
		list, _ := e.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
		if list != nil && len(list.Items) == 1 && list.Items[0].Spec.NodeName != "" {
			p = &list.Items[0]
			return true
		}
		return false
	})
	survivor := e.create(testPod("survivor", "1500m"))
	survivor = e.waitBound("survivor")
	if p.Spec.NodeName == survivor.Spec.NodeName {
		t.Fatalf("two 1.5-cpu pods on one 2-cpu agent")
	}
	waitUntil(t, "both running", func() bool { return e.agents.RunningTasks() == 2 })

	// The scheduler restarts: same framework, no task lost or doubled.
	id := e.sched.mesos.FrameworkID()
	e.schedC()
	e.startScheduler()
	waitUntil(t, "resubscribed", func() bool { return e.sched.mesos.FrameworkID() == id })
	if n := e.agents.RunningTasks(); n != 2 {
		t.Fatalf("%d tasks after the scheduler restart", n)
	}

	// What an executor would have written: a running, ready container.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		running := e.get(p.Name).DeepCopy()
		running.Status.Phase = corev1.PodRunning
		running.Status.Conditions = append(running.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
		running.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: running.Spec.Containers[0].Name, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
		_, err := e.client.CoreV1().Pods("default").UpdateStatus(context.Background(), running, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// The RC pod's agent dies: its pod is marked Failed with the Mesos
	// reason, its container no longer counted ready, and the RC replaces
	// it on the agent that is left.
	e.agents.Kill(p.Spec.NodeName)
	waitUntil(t, "the lost pod marked Failed", func() bool {
		cur := e.get(p.Name)
		return cur != nil && cur.Status.Phase == corev1.PodFailed && cur.Status.Reason == "TaskLost" && strings.Contains(cur.Status.Message, "REASON_AGENT_REMOVED")
	})
	lost := e.get(p.Name)
	if cs := lost.Status.ContainerStatuses; len(cs) != 1 || cs[0].Ready || cs[0].State.Terminated == nil || cs[0].State.Terminated.Reason != "ContainerStatusUnknown" {
		t.Errorf("the lost pod's container status: %+v; want not ready, terminated with ContainerStatusUnknown", cs)
	}
	for _, c := range lost.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionFalse {
			t.Errorf("the lost pod's Ready condition: %+v; want False", c)
		}
	}
	waitUntil(t, "a replacement bound elsewhere", func() bool {
		list, _ := e.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
		for _, np := range list.Items {
			if np.Name != p.Name && np.Spec.NodeName != "" && np.Spec.NodeName != p.Spec.NodeName && np.Spec.NodeName != survivor.Spec.NodeName {
				return true
			}
		}
		return false
	})
	waitUntil(t, "node NotReady", func() bool {
		n, err := e.client.CoreV1().Nodes().Get(context.Background(), p.Spec.NodeName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status != corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
	if cur := e.get("survivor"); cur == nil || cur.Status.Phase == corev1.PodFailed {
		t.Fatalf("the survivor was touched: %v", cur)
	}
}

// An agent that joins while the scheduler has suppressed its offers (no
// pod waits) still becomes a Ready Node: the scheduler reads the master's
// agent list, since no offer will tell it.
func TestAgentJoiningWhileSuppressedBecomesNode(t *testing.T) {
	e := newEnv(t, 1, "cpus:2;mem:4096")
	suppressed := func() bool {
		ch := make(chan bool, 1)
		e.sched.do(func() { ch <- e.sched.st.suppressed })
		return <-ch
	}
	waitUntil(t, "offers suppressed", suppressed)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	late, err := simagent.New(simagent.Config{Master: e.addr, Count: 1, Resources: "cpus:3;mem:1024",
		Attributes: "rack:r2", HostnamePrefix: "late-", RetryInterval: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go late.Run(ctx)
	waitUntil(t, "Node late-1 Ready with the agent's resources", func() bool {
		n, err := e.client.CoreV1().Nodes().Get(context.Background(), "late-1", metav1.GetOptions{})
		if err != nil || n.Status.Capacity.Cpu().MilliValue() != 3000 {
			return false
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
	if !suppressed() {
		t.Fatal("the scheduler revived its offers to find the agent; it should have read the agent list")
	}
}
