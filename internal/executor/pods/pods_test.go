package pods

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k8sm/k8sm/internal/executor/runtime"
	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

type lookup struct{ cms map[string]*corev1.ConfigMap }

func (l lookup) ConfigMap(ns, name string) (*corev1.ConfigMap, error) {
	if cm, ok := l.cms[name]; ok {
		return cm, nil
	}
	return nil, errors.New("not found")
}
func (l lookup) Secret(ns, name string) (*corev1.Secret, error) { return nil, errors.New("not found") }

func TestExpand(t *testing.T) {
	vars := map[string]string{"A": "1", "B": "two"}
	get := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	for in, want := range map[string]string{
		"$(A)-$(B)": "1-two", "$(NOPE)": "$(NOPE)", "$$(A)": "$(A)", "$x": "$x", "$(A": "$(A", "end$": "end$",
	} {
		if got := expand(in, get); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnvironment(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1", Labels: map[string]string{"app": "web"},
		Annotations: map[string]string{podtask.PortAnnotation(corev1.ProtocolTCP, 8080): "31005"}}, Spec: corev1.PodSpec{NodeName: "agent-1"}}
	c := &corev1.Container{Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		Env: []corev1.EnvVar{
			{Name: "GREETING", Value: "hello"},
			{Name: "MSG", Value: "$(GREETING) from $(POD)"},
			{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "CFG", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "k"}}},
		}}
	lk := lookup{cms: map[string]*corev1.ConfigMap{"cm": {Data: map[string]string{"k": "v"}}}}
	_, vars, err := Environment(pod, c, "192.0.2.7", map[string]string{"PATH": "/bin"}, lk)
	if err != nil {
		t.Fatal(err)
	}
	// MSG refers to POD, defined after it: left verbatim, as Kubernetes does.
	want := map[string]string{"MSG": "hello from $(POD)", "POD": "p", "APP": "web", "IP": "192.0.2.7", "CFG": "v",
		"KM_HOST_PORT_TCP_8080": "31005", "KM_HOST_PORT_HTTP": "31005", "PORT": "31005", "PATH": "/bin"}
	for k, v := range want {
		if vars[k] != v {
			t.Errorf("%s = %q, want %q", k, vars[k], v)
		}
	}
	c.Env = append(c.Env, corev1.EnvVar{Name: "X", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cm"}, Key: "missing"}}})
	if _, _, err := Environment(pod, c, "", nil, lk); err == nil || !strings.Contains(err.Error(), `key "missing" not found in configmap "cm"`) {
		t.Fatalf("got %v", err)
	}
}

type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) event(_ *corev1.Pod, typ, reason, msg string) {
	r.mu.Lock()
	r.events = append(r.events, reason+": "+msg)
	r.mu.Unlock()
}

func testConfig(t *testing.T, r *recorder) Config {
	return Config{Runtime: runtime.NewProcess("km-test"), Dir: t.TempDir(), HostIP: "127.0.0.1", Lookup: lookup{},
		BaseEnv: map[string]string{"PATH": os.Getenv("PATH")}, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 400 * time.Millisecond, Event: r.event}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func sh(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: "busybox", Command: []string{"sh", "-c", script}}
}

func TestPodLifecycle(t *testing.T) {
	r := &recorder{}
	cfg := testConfig(t, r)
	grace := int64(2)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1"}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		InitContainers:                []corev1.Container{sh("init", "echo init > $KM_TEST_OUT; exit 0")},
		Containers: []corev1.Container{
			sh("a", "echo started-a; sleep 300"),
			func() corev1.Container {
				c := sh("b", "trap 'echo got-term; exit 0' TERM; while true; do sleep 0.1; done")
				c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-e", "/nonexistent"}}}, PeriodSeconds: 1}
				return c
			}(),
		}}}
	cfg.BaseEnv["KM_TEST_OUT"] = cfg.Dir + "/init.out"
	p := Start(cfg, pod)
	waitFor(t, "Running", func() bool { return p.Phase() == corev1.PodRunning })
	st := p.Status("127.0.0.1")
	if st.InitContainerStatuses[0].State.Terminated == nil || st.InitContainerStatuses[0].State.Terminated.Reason != "Completed" {
		t.Fatalf("init status %+v", st.InitContainerStatuses)
	}
	if b, _ := os.ReadFile(cfg.Dir + "/init.out"); string(b) != "init\n" {
		t.Fatalf("init did not run: %q", b)
	}
	waitFor(t, "a ready", func() bool { return p.Status("").ContainerStatuses[0].Ready })
	// The failing readiness probe keeps b, and so the pod, not ready.
	time.Sleep(1500 * time.Millisecond)
	st = p.Status("")
	if st.ContainerStatuses[1].Ready || conditionTrue(st, corev1.PodReady) {
		t.Fatalf("b should not be ready: %+v", st.Conditions)
	}
	p.Terminate(2 * time.Second)
	if !strings.Contains(readLog(t, p, "b"), "got-term") {
		t.Fatalf("b did not get SIGTERM: %q", readLog(t, p, "b"))
	}
	<-p.Done()
	if p.Phase() != corev1.PodFailed {
		t.Fatalf("a pod killed whose container a ran until the SIGTERM: phase %v, want Failed", p.Phase())
	}
}

func conditionTrue(st corev1.PodStatus, t corev1.PodConditionType) bool {
	for _, c := range st.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func readLog(t *testing.T, p *Pod, name string) string {
	n, _ := p.Restarts(name)
	b, _ := os.ReadFile(p.LogPath(name, n))
	return string(b)
}

func TestCrashLoopBackOff(t *testing.T) {
	r := &recorder{}
	p := Start(testConfig(t, r), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "crash", UID: "uid-2"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{sh("c", "echo boom; exit 1")}}})
	defer p.Terminate(time.Second)
	waitFor(t, "restarts", func() bool { n, _ := p.Restarts("c"); return n >= 2 })
	waitFor(t, "CrashLoopBackOff", func() bool {
		st := p.Status("")
		w := st.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "CrashLoopBackOff" && st.ContainerStatuses[0].LastTerminationState.Terminated.ExitCode == 1
	})
	if p.Phase() != corev1.PodRunning {
		t.Fatalf("a crash-looping pod is Running, got %v", p.Phase())
	}
	// Killed while it waits out its backoff, it ends Failed: a pod that
	// will never run again is not Running.
	p.Terminate(time.Second)
	<-p.Done()
	if p.Phase() != corev1.PodFailed {
		t.Fatalf("a crash-looping pod killed: phase %v, want Failed", p.Phase())
	}
}

func TestRestartPolicyNeverAndInvalidPods(t *testing.T) {
	r := &recorder{}
	p := Start(testConfig(t, r), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "job", UID: "uid-3"},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{sh("ok", "exit 0"), sh("bad", "exit 2")}}})
	<-p.Done()
	if p.Phase() != corev1.PodFailed {
		t.Fatalf("phase %v", p.Phase())
	}
	p = Start(testConfig(t, r), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "noc", UID: "uid-4"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}}})
	<-p.Done()
	if p.Phase() != corev1.PodFailed || !strings.Contains(p.Message(), `container "web" has no command`) || !strings.Contains(p.Message(), "set command") {
		t.Fatalf("phase %v message %q", p.Phase(), p.Message())
	}
	p = Start(testConfig(t, r), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe", UID: "uid-5"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{func() corev1.Container {
			c := sh("c", "sleep 1")
			c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 1}}}
			return c
		}()}}})
	<-p.Done()
	if !strings.Contains(p.Message(), "probe without exec, httpGet or tcpSocket") {
		t.Fatalf("message %q", p.Message())
	}
}

func TestActiveDeadline(t *testing.T) {
	r := &recorder{}
	one := int64(1)
	p := Start(testConfig(t, r), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "late", UID: "uid-6"},
		Spec: corev1.PodSpec{ActiveDeadlineSeconds: &one, TerminationGracePeriodSeconds: &one,
			Containers: []corev1.Container{sh("c", "sleep 300")}}})
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		p.Terminate(time.Second)
		t.Fatal("a pod past its activeDeadlineSeconds still runs")
	}
	st := p.Status("")
	if st.Phase != corev1.PodFailed || st.Reason != "DeadlineExceeded" || st.Message != "Pod was active on the node longer than the specified deadline" {
		t.Fatalf("phase %v reason %q message %q", st.Phase, st.Reason, st.Message)
	}
	if cs := st.ContainerStatuses[0]; cs.State.Terminated == nil || cs.RestartCount != 0 {
		t.Fatalf("the container should be stopped, not restarted: %+v", cs)
	}
	r.mu.Lock()
	events := strings.Join(r.events, "\n")
	r.mu.Unlock()
	if !strings.Contains(events, "DeadlineExceeded: Pod was active on the node longer than the specified deadline") {
		t.Fatalf("no DeadlineExceeded event in %q", events)
	}

	// A pod that ends before its deadline keeps its own outcome.
	ten := int64(10)
	p = Start(testConfig(t, r), &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "quick", UID: "uid-7"},
		Spec: corev1.PodSpec{ActiveDeadlineSeconds: &ten, RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{sh("c", "exit 0")}}})
	<-p.Done()
	if st := p.Status(""); st.Phase != corev1.PodSucceeded || st.Reason != "" {
		t.Fatalf("phase %v reason %q", st.Phase, st.Reason)
	}
}

// specs records what the pod asks the runtime to start.
type specs struct {
	runtime.Runtime
	mu  sync.Mutex
	got []runtime.Spec
}

func (s *specs) Start(spec runtime.Spec) (runtime.Container, error) {
	s.mu.Lock()
	s.got = append(s.got, spec)
	s.mu.Unlock()
	return s.Runtime.Start(spec)
}

// Every container run, init containers' too, has a PID file in the pod's
// directory, for a later executor to end what a dead one left running.
func TestContainersHavePIDFiles(t *testing.T) {
	r := &recorder{}
	cfg := testConfig(t, r)
	rt := &specs{Runtime: cfg.Runtime}
	cfg.Runtime = rt
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-pid"}, Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{sh("init", "exit 0")},
		Containers:     []corev1.Container{sh("a", "sleep 300")}}}
	p := Start(cfg, pod)
	waitFor(t, "Running", func() bool { return p.Phase() == corev1.PodRunning })
	rt.mu.Lock()
	got := append([]runtime.Spec{}, rt.got...)
	rt.mu.Unlock()
	want := map[string]string{
		"init": filepath.Join(cfg.Dir, "uid-pid", PIDDir, "init.pid"),
		"a":    filepath.Join(cfg.Dir, "uid-pid", PIDDir, "a.pid"),
	}
	if len(got) != 2 || got[0].PIDFile != want["init"] || got[1].PIDFile != want["a"] {
		t.Fatalf("PID files %+v, want %v", got, want)
	}
	if _, err := os.Stat(want["init"]); !os.IsNotExist(err) {
		t.Errorf("the ended init container's PID file: %v", err)
	}
	if _, err := os.Stat(want["a"]); err != nil {
		t.Errorf("the running container's PID file: %v", err)
	}
	p.Terminate(time.Second)
	<-p.Done()
	if _, err := os.Stat(want["a"]); !os.IsNotExist(err) {
		t.Errorf("the PID file after the pod ended: %v", err)
	}
}
