package executor_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/k8sm/k8sm/internal/executor/runtime"
	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/schedclient"
	"github.com/k8sm/k8sm/internal/minimesos/agent"
	"github.com/k8sm/k8sm/internal/minimesos/master"
	"github.com/k8sm/k8sm/internal/scheduler"
	"github.com/k8sm/k8sm/internal/scheduler/podtask"
	"github.com/k8sm/k8sm/internal/testing/controlplane"
	"github.com/k8sm/k8sm/internal/testing/kmbinary"
)

func quiet(prefix string) *log.Logger {
	if testing.Verbose() {
		return log.New(os.Stderr, prefix+": ", log.Lmicroseconds)
	}
	return log.New(io.Discard, "", 0)
}

// cluster: the real control plane, the built-in master, one real agent
// that starts `km executor` as a child process, and the scheduler.
type cluster struct {
	cp       *controlplane.ControlPlane
	client   kubernetes.Interface
	agentDir string
	sched    *scheduler.Scheduler
	stopAll  func()
	stopAgt  func()
}

func startCluster(t *testing.T) *cluster {
	if testing.Short() {
		t.Skip("runs the whole system")
	}
	km := kmbinary.Path(t)
	cp := controlplane.Start(t, controlplane.Options{})
	m, err := master.New(master.Config{AllocationInterval: 200 * time.Millisecond, Logger: quiet("master")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	go m.Run(ctx)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, err := agent.New(agent.Config{Master: srv.Listener.Addr().String(), IP: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port,
		Hostname: "agent-1", Resources: "cpus:4;mem:4096;ports:[31000-31100]", WorkDir: dir, KMBinary: km,
		ExecutorShutdownGracePeriod: 10 * time.Second, StatusUpdateRetryMin: time.Second, Logger: quiet("agent")})
	if err != nil {
		t.Fatal(err)
	}
	actx, acancel := context.WithCancel(context.Background())
	agentDone := make(chan struct{})
	go func() { a.Serve(actx, ln); close(agentDone) }()

	cfg := scheduler.DefaultConfig()
	cfg.Masters = []string{srv.Listener.Addr().String()}
	cfg.Executor = podtask.ExecutorConfig{Command: km, Args: []string{"executor", "--kubeconfig", filepath.Join(cp.CertDir, "executor.kubeconfig"), "--restart-backoff=1s"},
		CPUs: 0.1, MemMB: 64, ShutdownGracePeriod: 10 * time.Second}
	cfg.InitialPodBackoff = 200 * time.Millisecond
	client := cp.Client()
	s := scheduler.New(cfg, client, nil, quiet("scheduler"))
	mc, err := schedclient.New(schedclient.Config{Masters: cfg.Masters, Encoding: codec.JSON, FrameworkInfo: cfg.FrameworkInfo("", "test")})
	if err != nil {
		t.Fatal(err)
	}
	s.SetMesos(mc)
	sctx, scancel := context.WithCancel(context.Background())
	go s.Run(sctx)
	go mc.Run(sctx, s)
	c := &cluster{cp: cp, client: client, agentDir: dir, sched: s}
	c.stopAgt = func() {
		acancel()
		select {
		case <-agentDone:
		case <-time.After(30 * time.Second):
		}
	}
	c.stopAll = func() {
		scancel()
		c.stopAgt()
		cancel()
		srv.Close()
	}
	t.Cleanup(c.stopAll)
	return c
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) pod(t *testing.T, name string) *corev1.Pod {
	p, err := c.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	return p
}

func container(name string, script string) corev1.Container {
	return corev1.Container{Name: name, Image: "busybox", Command: []string{"sh", "-c", script},
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("32Mi")}}}
}

func kubectl(t *testing.T, c *cluster, args ...string) string {
	t.Helper()
	out, err := exec.Command("/usr/bin/kubectl", append([]string{"--kubeconfig", c.cp.Kubeconfig()}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func ownedProcesses(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !strings.Contains(string(b), agent.OwnerEnv+"="+dir+"\x00") {
			continue
		}
		st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		s := string(st)
		if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) && s[i+2] == 'Z' {
			continue
		}
		out = append(out, e.Name())
	}
	return out
}

func TestPodsRunOnTheExecutor(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	grace := int64(5)
	web := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		InitContainers:                []corev1.Container{container("setup", "echo setting up; sleep 0.2")},
		Containers: []corev1.Container{
			container("main", `i=0; trap 'echo stopping; sleep 1; echo stopped >> $MARK; exit 0' TERM; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done`),
			container("side", "echo side up; sleep 3600"),
		}}}
	web.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "MARK", Value: filepath.Join(c.agentDir, "graceful.mark")}}
	if _, err := c.client.CoreV1().Pods("default").Create(ctx, web, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web Running and Ready", 90*time.Second, func() bool {
		p := c.pod(t, "web")
		if p == nil || p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) != 2 {
			return false
		}
		for _, cs := range p.Status.ContainerStatuses {
			if !cs.Ready || cs.State.Running == nil {
				return false
			}
		}
		return p.Status.InitContainerStatuses[0].State.Terminated != nil && p.Status.InitContainerStatuses[0].State.Terminated.Reason == "Completed" &&
			p.Status.HostIP == "127.0.0.1" && p.Status.PodIP == "127.0.0.1" && p.Status.StartTime != nil
	})
	// kubectl logs, through the apiserver and the executor's kubelet API.
	waitFor(t, "kubectl logs", 30*time.Second, func() bool {
		out, err := exec.Command("/usr/bin/kubectl", "--kubeconfig", c.cp.Kubeconfig(), "logs", "web", "-c", "main", "--tail=2").CombinedOutput()
		return err == nil && strings.Count(string(out), "tick ") == 2
	})
	if out := kubectl(t, c, "logs", "web", "-c", "setup"); !strings.Contains(out, "setting up") {
		t.Fatalf("init container log: %q", out)
	}
	// kubectl exec: the container's environment, stdin, the exit code.
	if out := kubectl(t, c, "exec", "web", "-c", "main", "--", "sh", "-c", "echo exec-ok $MARK"); !strings.Contains(out, "exec-ok "+filepath.Join(c.agentDir, "graceful.mark")) {
		t.Fatalf("kubectl exec: %q", out)
	}
	piped := exec.Command("/usr/bin/kubectl", "--kubeconfig", c.cp.Kubeconfig(), "exec", "-i", "web", "-c", "side", "--", "cat")
	piped.Stdin = strings.NewReader("through stdin\n")
	if out, err := piped.CombinedOutput(); err != nil || string(out) != "through stdin\n" {
		t.Fatalf("kubectl exec -i: %v %q", err, out)
	}
	failing := exec.Command("/usr/bin/kubectl", "--kubeconfig", c.cp.Kubeconfig(), "exec", "web", "-c", "main", "--", "sh", "-c", "exit 3")
	if out, err := failing.CombinedOutput(); failing.ProcessState == nil || failing.ProcessState.ExitCode() != 3 {
		t.Fatalf("kubectl exec of a command exiting 3: %v %q; want kubectl to exit 3", err, out)
	}
	// Straight to the kubelet API without the apiserver's certificate:
	// refused, as the kubelet refuses it.
	insecure := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if resp, err := insecure.Get("https://127.0.0.1:10250/containerLogs/default/web/main"); err != nil {
		t.Fatalf("kubelet API: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("kubelet API without a client certificate: %s, want 401", resp.Status)
		}
	}
	follow := exec.Command("/usr/bin/kubectl", "--kubeconfig", c.cp.Kubeconfig(), "logs", "-f", "web", "-c", "main", "--since=1s")
	out, _ := follow.StdoutPipe()
	follow.Start()
	buf := make([]byte, 4096)
	got := ""
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(got, "tick ") < 5 && time.Now().Before(deadline) {
		n, err := out.Read(buf)
		got += string(buf[:n])
		if err != nil {
			break
		}
	}
	follow.Process.Kill()
	follow.Wait()
	if strings.Count(got, "tick ") < 5 {
		t.Fatalf("kubectl logs -f streamed %q", got)
	}

	// Graceful deletion: the container gets SIGTERM and its grace period.
	start := time.Now()
	if err := c.client.CoreV1().Pods("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web removed", 60*time.Second, func() bool { return c.pod(t, "web") == nil })
	if b, err := os.ReadFile(filepath.Join(c.agentDir, "graceful.mark")); err != nil || !strings.Contains(string(b), "stopped") {
		t.Fatalf("the container did not finish its SIGTERM handler (%v) after %v", err, time.Since(start))
	}

	// A crashing container is restarted with backoff.
	crash := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "crash"}, Spec: corev1.PodSpec{Containers: []corev1.Container{container("c", "echo boom; exit 3")}}}
	crash.Namespace = "default"
	c.client.CoreV1().Pods("default").Create(ctx, crash, metav1.CreateOptions{})
	waitFor(t, "CrashLoopBackOff", 90*time.Second, func() bool {
		p := c.pod(t, "crash")
		if p == nil || len(p.Status.ContainerStatuses) == 0 {
			return false
		}
		cs := p.Status.ContainerStatuses[0]
		return cs.RestartCount >= 2 && cs.LastTerminationState.Terminated != nil && cs.LastTerminationState.Terminated.ExitCode == 3
	})

	// A failing readiness probe keeps the pod not Ready.
	notReady := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "notready", Namespace: "default"}, Spec: corev1.PodSpec{Containers: []corev1.Container{container("c", "sleep 3600")}}}
	notReady.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"false"}}}, PeriodSeconds: 1}
	c.client.CoreV1().Pods("default").Create(ctx, notReady, metav1.CreateOptions{})
	waitFor(t, "notready Running", 60*time.Second, func() bool {
		p := c.pod(t, "notready")
		return p != nil && p.Status.Phase == corev1.PodRunning
	})
	time.Sleep(3 * time.Second) // several probe periods
	if p := c.pod(t, "notready"); p.Status.ContainerStatuses[0].Ready {
		t.Fatalf("the readiness probe fails, yet the container is ready")
	}

	// A pod without a command fails with what to change.
	noCmd := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nocmd", Namespace: "default"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}}}
	c.client.CoreV1().Pods("default").Create(ctx, noCmd, metav1.CreateOptions{})
	waitFor(t, "nocmd Failed with a message", 60*time.Second, func() bool {
		p := c.pod(t, "nocmd")
		return p != nil && p.Status.Phase == corev1.PodFailed && strings.Contains(p.Status.Message, "has no command") && strings.Contains(p.Status.Message, "set command")
	})

	// A pod past its activeDeadlineSeconds is stopped and Failed with
	// reason DeadlineExceeded, as the kubelet does it, and Mesos hears
	// REASON_MAX_COMPLETION_TIME_REACHED.
	two := int64(2)
	late := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "late", Namespace: "default"}, Spec: corev1.PodSpec{ActiveDeadlineSeconds: &two,
		TerminationGracePeriodSeconds: &two, Containers: []corev1.Container{container("c", "sleep 3600")}}}
	c.client.CoreV1().Pods("default").Create(ctx, late, metav1.CreateOptions{})
	waitFor(t, "late Failed with reason DeadlineExceeded", 60*time.Second, func() bool {
		p := c.pod(t, "late")
		return p != nil && p.Status.Phase == corev1.PodFailed && p.Status.Reason == "DeadlineExceeded" &&
			len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Terminated != nil
	})
	metrics := httptest.NewServer(c.sched.Handler())
	defer metrics.Close()
	// schedulerHeard says whether the scheduler counted a task update
	// with these labels.
	schedulerHeard := func(labels string) func() bool {
		return func() bool {
			resp, err := http.Get(metrics.URL + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return strings.Contains(string(b), labels)
		}
	}
	waitFor(t, "TASK_FAILED with REASON_MAX_COMPLETION_TIME_REACHED reaches the scheduler", 30*time.Second,
		schedulerHeard(`state="TASK_FAILED",reason="REASON_MAX_COMPLETION_TIME_REACHED"`))

	// Memory over the limit: OOMKilled, where cgroups are writable.
	if runtime.NewProcess("km-probe").CgroupsEnforced() {
		hog := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hog", Namespace: "default"}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{container("hog", "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo ${#x}")}}}
		hog.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("50Mi")}
		c.client.CoreV1().Pods("default").Create(ctx, hog, metav1.CreateOptions{})
		waitFor(t, "hog OOMKilled", 90*time.Second, func() bool {
			p := c.pod(t, "hog")
			if p == nil || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Terminated == nil {
				return false
			}
			return p.Status.ContainerStatuses[0].State.Terminated.Reason == "OOMKilled"
		})
		// Mesos hears it as the containerizer says it.
		waitFor(t, "TASK_FAILED with REASON_CONTAINER_LIMITATION_MEMORY reaches the scheduler", 30*time.Second,
			schedulerHeard(`state="TASK_FAILED",reason="REASON_CONTAINER_LIMITATION_MEMORY"`))
	} else {
		t.Log("cgroups are not writable here: the OOMKilled check is skipped")
	}

	// The agent stops: no process of it, its executor or the pods is left.
	if len(ownedProcesses(c.agentDir)) == 0 {
		t.Fatal("no process carries the agent's mark: the check below would prove nothing")
	}
	var survivors []string
	if list, err := c.client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				survivors = append(survivors, p.Name)
			}
		}
	}
	if len(survivors) == 0 {
		t.Fatal("no pod runs before the agent stops: the shutdown status check below would prove nothing")
	}
	c.stopAgt()
	waitFor(t, "no process left", 20*time.Second, func() bool { return len(ownedProcesses(c.agentDir)) == 0 })
	// Its pods are Failed, saying why (not a failure of their own).
	for _, name := range survivors {
		var last string
		waitFor(t, name+" Failed as Terminated by the shutdown", 20*time.Second, func() bool {
			p := c.pod(t, name)
			if p == nil {
				return false
			}
			if last != string(p.Status.Phase)+p.Status.Reason {
				last = string(p.Status.Phase) + p.Status.Reason
				t.Logf("pod %s: %s %q %q", name, p.Status.Phase, p.Status.Reason, p.Status.Message)
			}
			return p.Status.Phase == corev1.PodFailed && p.Status.Reason == "Terminated" && strings.Contains(p.Status.Message, "executor was shut down")
		})
	}
}
