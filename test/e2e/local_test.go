// Package e2e drives `km local` the way a user does: the built km binary
// on a temporary data dir, and the real kubectl (/usr/bin/kubectl) against
// it. It is the project's proof that the parts work together.
//
// The suite needs root (km local gives each agent a network namespace so
// that services' HostIP:HostPort endpoints work) and the fixed ports of
// km local (6443, 2379, 5050, ...), so only one such suite runs at a time.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/k8sm/k8sm/internal/testing/kmbinary"
)

const kubectlPath = "/usr/bin/kubectl"

// cluster is one run of `km local` as a child process.
type cluster struct {
	t       testing.TB
	km      string
	dataDir string
	cmd     *exec.Cmd
	out     *syncBuffer
	exited  chan struct{}
	exitErr error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func requireLocalPrerequisites(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("km local end-to-end suite: not in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("km local end-to-end suite: needs root for the agents' network namespaces (run make test as root)")
	}
	if _, err := os.Stat(kubectlPath); err != nil {
		t.Fatalf("the end-to-end suite drives the real kubectl at %s: %v (install kubectl there)", kubectlPath, err)
	}
	return kmbinary.Path(t)
}

// startLocal runs km local and returns once it printed its ready line.
func startLocal(t testing.TB, km, dataDir string, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, km: km, dataDir: dataDir, out: &syncBuffer{}, exited: make(chan struct{})}
	args := append([]string{"local", "--data-dir", dataDir, "--agents", "2", "--agent-network", "netns"}, extra...)
	c.cmd = exec.Command(km, args...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting km local: %v", err)
	}
	go func() { c.exitErr = c.cmd.Wait(); close(c.exited) }()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			c.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-c.exited:
			case <-time.After(3 * time.Minute):
				c.cmd.Process.Kill()
			}
		}
		if t.Failed() {
			c.dumpLogs()
		}
	})
	deadline := time.After(5 * time.Minute)
	for !strings.Contains(c.out.String(), "km local is ready") {
		select {
		case <-c.exited:
			t.Fatalf("km local exited before it was ready (%v):\n%s", c.exitErr, c.out.String())
		case <-deadline:
			t.Fatalf("km local not ready after 5 minutes:\n%s", c.out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	return c
}

// stop sends SIGTERM, as Ctrl-C would, and waits for km local to exit.
func (c *cluster) stop(t testing.TB) { t.Helper(); c.stopWith(t, syscall.SIGTERM) }

// stopWith stops km local with sig and waits for it to exit.
func (c *cluster) stopWith(t testing.TB, sig syscall.Signal) {
	t.Helper()
	c.cmd.Process.Signal(sig)
	select {
	case <-c.exited:
	case <-time.After(3 * time.Minute):
		t.Fatalf("km local still running 3 minutes after SIGTERM:\n%s", c.out.String())
	}
	if c.exitErr != nil {
		t.Fatalf("km local exited with %v after SIGTERM:\n%s", c.exitErr, c.out.String())
	}
}

func (c *cluster) dumpLogs() {
	c.t.Logf("km local's output:\n%s", c.out.String())
	logs, _ := filepath.Glob(filepath.Join(c.dataDir, "logs", "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		c.t.Logf("--- tail of %s:\n%s", l, b)
	}
}

// kubectl runs the real kubectl against the cluster; a failure fails the test.
func (c *cluster) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.tryKubectl(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) tryKubectl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, kubectlPath, append([]string{"--kubeconfig", filepath.Join(c.dataDir, "kubeconfig")}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

func (c *cluster) pods(t *testing.T) []corev1.Pod {
	t.Helper()
	var list corev1.PodList
	out := c.kubectl(t, "get", "pods", "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("kubectl get pods -o json: %v\n%s", err, out)
	}
	return list.Items
}

// eventually polls cond until it holds; on timeout it fails with cond's
// last word on what it saw.
func eventually(t *testing.T, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, saw := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v; last seen: %s", what, d, saw)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func prefixed(pods []corev1.Pod, prefix string) []corev1.Pod {
	var r []corev1.Pod
	for _, p := range pods {
		if strings.HasPrefix(p.Name, prefix) {
			r = append(r, p)
		}
	}
	return r
}

// running keeps the pods that run and are Ready.
func running(pods []corev1.Pod) []corev1.Pod {
	var r []corev1.Pod
	for _, p := range pods {
		if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				r = append(r, p)
			}
		}
	}
	return r
}

func summary(pods []corev1.Pod) string {
	var b strings.Builder
	for _, p := range pods {
		fmt.Fprintf(&b, "%s=%s@%s(%s %s) ", p.Name, p.Status.Phase, p.Spec.NodeName, p.Status.Reason, p.Status.Message)
	}
	return b.String()
}

// wantRunning waits until the named pods (prefix: count) run.
func (c *cluster) wantRunning(t *testing.T, d time.Duration, want map[string]int) []corev1.Pod {
	t.Helper()
	var last []corev1.Pod
	eventually(t, d, fmt.Sprintf("pods running %v", want), func() (bool, string) {
		last = c.pods(t)
		for prefix, n := range want {
			if got := len(running(prefixed(last, prefix))); got != n {
				return false, summary(last)
			}
		}
		return true, ""
	})
	return last
}

// processesOf lists the PIDs of a pod's container processes: the executor
// starts each container in a directory named after the pod's UID.
func processesOf(uid string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err == nil && strings.Contains(cwd, uid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// mainProcessesOf lists a pod's containers' own processes, leaving out
// their children (a shell loop's sleep comes and goes).
func mainProcessesOf(uid string) []int {
	all := processesOf(uid)
	in := map[int]bool{}
	for _, pid := range all {
		in[pid] = true
	}
	var main []int
	for _, pid := range all {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 {
			if ppid, _ := strconv.Atoi(f[1]); !in[ppid] {
				main = append(main, pid)
			}
		}
	}
	return main
}

// processesUnder lists processes whose command line or working directory
// names dir: what km local started and left behind.
func processesUnder(dir string) []string {
	var left []string
	self := strconv.Itoa(os.Getpid())
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == self {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if bytes.Contains(cmdline, []byte(dir)) || strings.HasPrefix(cwd, dir) {
			left = append(left, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return left
}

// agentPID finds the km mesos agent process of agent-N (inside `ip netns exec`).
func agentPID(t *testing.T, dataDir, name string) int {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) > 2 && filepath.Base(args[0]) == "km" && args[1] == "mesos" && args[2] == "agent" &&
			strings.Contains(string(b), filepath.Join(dataDir, "agents", name)+"\x00") {
			return pid
		}
	}
	t.Fatalf("no km mesos agent process for %s", name)
	return 0
}

func httpGet(url string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}

// endpoints reads `kubectl get endpoints NAME` as HostIP:HostPort pairs.
func (c *cluster) endpoints(t *testing.T, name string) []string {
	t.Helper()
	out, err := c.tryKubectl("get", "endpoints", name, "-o", "json")
	if err != nil {
		return nil
	}
	var ep corev1.Endpoints
	if err := json.Unmarshal([]byte(out), &ep); err != nil {
		t.Fatalf("kubectl get endpoints %s -o json: %v\n%s", name, err, out)
	}
	var r []string
	for _, s := range ep.Subsets {
		for _, a := range s.Addresses {
			for _, p := range s.Ports {
				r = append(r, net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	return r
}

// wantEndpoints waits for n endpoints of the service and curls each.
func (c *cluster) wantEndpoints(t *testing.T, name string, n int) []string {
	t.Helper()
	var eps []string
	eventually(t, 2*time.Minute, fmt.Sprintf("%d endpoints of service %s that answer", n, name), func() (bool, string) {
		eps = c.endpoints(t, name)
		if len(eps) != n {
			return false, fmt.Sprint(eps)
		}
		for _, ep := range eps {
			if !strings.HasPrefix(ep, "198.18.0.") {
				return false, "endpoint not on an agent's address: " + ep
			}
			body, err := httpGet("http://" + ep + "/")
			if err != nil {
				return false, err.Error()
			}
			if !strings.Contains(body, "Directory listing") {
				return false, "unexpected answer from " + ep + ": " + body
			}
		}
		return true, ""
	})
	return eps
}

func examplesDir(t *testing.T) string {
	dir, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLocalRefusesBadInput: every mistake stops km local with a message
// that says what to change, before anything starts.
func TestLocalRefusesBadInput(t *testing.T) {
	km := kmbinary.Path(t)
	if testing.Short() {
		t.Skip("starts km local")
	}
	dir := t.TempDir()
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"zero agents", []string{"--agents", "0"}, "--agents 0: give 1 to"},
		{"bad resources", []string{"--agent-resources", "cpus:two"}, "--agent-resources"},
		{"bad attributes", []string{"--agent-attributes", "rack"}, "--agent-attributes"},
		{"bad network", []string{"--agent-network", "bridge"}, "use auto, netns or loopback"},
		{"unknown flag", []string{"--agent", "3"}, "unknown flag: --agent"},
		{"unwritable data dir", []string{"--data-dir", "/proc/km-local"}, "choose a writable one with --data-dir"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"local", "--data-dir", filepath.Join(dir, "d")}, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, km, args...).CombinedOutput()
			if err == nil {
				t.Fatalf("km %s succeeded; want an error saying %q:\n%s", strings.Join(args, " "), tc.want, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("km %s: %s\nwant a message containing %q", strings.Join(args, " "), out, tc.want)
			}
		})
	}
	t.Run("port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:2380")
		if err != nil {
			t.Skipf("port 2380 is taken already (%v); cannot stage the conflict", err)
		}
		defer ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, km, "local", "--data-dir", filepath.Join(dir, "p"), "--agent-network", "loopback").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "port 2380 on 127.0.0.1, which km local's etcd peers needs, is already in use") {
			t.Fatalf("km local with port 2380 taken: %v\n%s", err, out)
		}
	})
}

// TestLocalCluster is the user's session: start, apply every example,
// look, curl, scale, delete, lose an agent, restart, stop.
func TestLocalCluster(t *testing.T) {
	km := requireLocalPrerequisites(t)
	dataDir := t.TempDir()
	examples := examplesDir(t)

	c := startLocal(t, km, dataDir)
	outer := t // the restarted cluster belongs to the whole test, not to the subtest that starts it
	for _, want := range []string{"etcd", "kube-apiserver", "controller-manager", "mesos master", "mesos agents       2 registered", "km scheduler", "nodes              2 Ready", "export KUBECONFIG=" + filepath.Join(dataDir, "kubeconfig")} {
		if !strings.Contains(c.out.String(), want) {
			t.Errorf("km local's output lacks %q:\n%s", want, c.out.String())
		}
	}

	t.Run("second km local on the same data dir refuses", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, km, "local", "--data-dir", dataDir).CombinedOutput()
		want := fmt.Sprintf("in use by another km local (pid %d)", c.cmd.Process.Pid)
		if err == nil || !strings.Contains(string(out), want) {
			t.Fatalf("second km local: %v\n%s\nwant %q", err, out, want)
		}
	})

	c.kubectl(t, "apply", "-f", examples)
	pods := c.wantRunning(t, 4*time.Minute, map[string]int{"hello": 1, "web-": 2, "ticker-": 3, "fixed-port": 1, "wildcard-port": 1})

	t.Run("get pods -o wide", func(t *testing.T) {
		out := c.kubectl(t, "get", "pods", "-o", "wide", "--no-headers")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 8 {
			t.Fatalf("want 8 pods:\n%s", out)
		}
		for _, l := range lines {
			f := strings.Fields(l)
			// NAME READY STATUS RESTARTS AGE IP NODE ...
			if len(f) < 7 || f[1] != "1/1" || f[2] != "Running" || !strings.HasPrefix(f[5], "198.18.0.") || !strings.HasPrefix(f[6], "agent-") {
				t.Errorf("pod line %q: want READY 1/1, Running, an agent's IP and an agent's name", l)
			}
		}
	})

	t.Run("logs", func(t *testing.T) {
		var hello corev1.Pod
		for _, p := range pods {
			if p.Name == "hello" {
				hello = p
			}
		}
		eventually(t, time.Minute, "kubectl logs hello", func() (bool, string) {
			out, _ := c.tryKubectl("logs", "hello")
			return strings.Contains(out, "hello from hello on "+hello.Spec.NodeName), out
		})
	})

	t.Run("service endpoints answer at HostIP:HostPort", func(t *testing.T) {
		c.wantEndpoints(t, "web", 2)
	})

	t.Run("exec and port-forward", func(t *testing.T) {
		web := running(prefixed(c.pods(t), "web-"))[0]
		port := web.Annotations["k8s.mesosphere.io/port_TCP_8080"]
		if out := c.kubectl(t, "exec", web.Name, "--", "sh", "-c", "echo port=$PORT"); strings.TrimSpace(out) != "port="+port {
			t.Errorf("kubectl exec %s -- echo $PORT: %q, want port=%s", web.Name, out, port)
		}
		// port-forward to the container port reaches the server on its
		// host port.
		pf := exec.Command(kubectlPath, "--kubeconfig", filepath.Join(dataDir, "kubeconfig"), "port-forward", "pod/"+web.Name, ":8080")
		stdout, _ := pf.StdoutPipe()
		var stderr syncBuffer
		pf.Stderr = &stderr
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { pf.Process.Kill(); pf.Wait() }()
		lines := make(chan string, 8)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		var local string
		select {
		case l := <-lines:
			// "Forwarding from 127.0.0.1:NNNNN -> 8080"
			if f := strings.Fields(l); len(f) >= 3 && strings.HasPrefix(f[2], "127.0.0.1:") {
				local = f[2]
			}
		case <-time.After(time.Minute):
		}
		if local == "" {
			t.Fatalf("kubectl port-forward printed no address; stderr: %s", stderr.String())
		}
		body, err := httpGet("http://" + local + "/")
		if err != nil || !strings.Contains(body, "Directory listing") {
			t.Fatalf("GET through kubectl port-forward %s: %v %q; kubectl: %s", local, err, body, stderr.String())
		}
	})

	t.Run("kubectl run -i attaches", func(t *testing.T) {
		// kubectl run -i makes a pod with stdin (stdinOnce), waits for it
		// and attaches: stdin goes in, the output comes back, --rm cleans up.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		run := exec.CommandContext(ctx, kubectlPath, "--kubeconfig", filepath.Join(dataDir, "kubeconfig"), "run", "attachme", "-i", "--rm",
			"--restart=Never", "--image=busybox", "--command", "--", "sh", "-c", "read x; echo got $x")
		run.Stdin = strings.NewReader("through attach\n")
		out, err := run.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "got through attach") {
			t.Fatalf("kubectl run -i: %v\n%s", err, out)
		}
		eventually(t, time.Minute, "attachme removed by --rm", func() (bool, string) {
			out, err := c.tryKubectl("get", "pod", "attachme")
			return err != nil && strings.Contains(out, "NotFound"), out
		})
	})

	t.Run("host ports", func(t *testing.T) {
		for _, p := range running(c.pods(t)) {
			switch p.Name {
			case "fixed-port":
				if _, err := httpGet("http://" + p.Status.HostIP + ":31080/"); err != nil {
					t.Errorf("fixed-port at %s:31080: %v", p.Status.HostIP, err)
				}
			case "wildcard-port":
				port := p.Annotations["k8s.mesosphere.io/port_TCP_8080"]
				if port == "" {
					t.Fatalf("wildcard-port has no k8s.mesosphere.io/port_TCP_8080 annotation: %v", p.Annotations)
				}
				if _, err := httpGet("http://" + p.Status.HostIP + ":" + port + "/"); err != nil {
					t.Errorf("wildcard-port at %s:%s: %v", p.Status.HostIP, port, err)
				}
			}
		}
	})

	t.Run("scale a replication controller up and down", func(t *testing.T) {
		c.kubectl(t, "scale", "rc", "web", "--replicas=3")
		c.wantRunning(t, 2*time.Minute, map[string]int{"web-": 3})
		c.wantEndpoints(t, "web", 3)
		before := running(prefixed(c.pods(t), "web-"))
		c.kubectl(t, "scale", "rc", "web", "--replicas=1")
		after := c.wantRunning(t, 2*time.Minute, map[string]int{"web-": 1})
		c.wantEndpoints(t, "web", 1)
		kept := running(prefixed(after, "web-"))[0].UID
		for _, p := range before {
			if p.UID == kept {
				continue
			}
			eventually(t, time.Minute, "processes of scaled-down pod "+p.Name+" end", func() (bool, string) {
				left := processesOf(string(p.UID))
				return len(left) == 0, fmt.Sprint(left)
			})
		}
	})

	t.Run("delete a pod and its processes end", func(t *testing.T) {
		var uid string
		for _, p := range c.pods(t) {
			if p.Name == "hello" {
				uid = string(p.UID)
			}
		}
		if len(processesOf(uid)) == 0 {
			t.Fatalf("no process of pod hello (uid %s) to watch", uid)
		}
		c.kubectl(t, "delete", "pod", "hello", "--wait=true", "--timeout=90s")
		eventually(t, time.Minute, "processes of the deleted pod hello end", func() (bool, string) {
			left := processesOf(uid)
			return len(left) == 0, fmt.Sprint(left)
		})
	})

	t.Run("an agent process killed comes back with its pods", func(t *testing.T) {
		// Mesos semantics: executors outlive their agent, and the agent
		// restarted (by km local's supervision) recovers them.
		pods := running(c.pods(t))
		node := pods[0].Spec.NodeName
		var onNode []corev1.Pod
		containers := map[types.UID][]int{}
		for _, p := range pods {
			if p.Spec.NodeName == node {
				onNode = append(onNode, p)
				containers[p.UID] = mainProcessesOf(string(p.UID))
			}
		}
		logPath := filepath.Join(dataDir, "logs", node+".log")
		before, _ := os.ReadFile(logPath)
		pid := agentPID(t, dataDir, node)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, node+" restarted by km local and its executor re-subscribed", func() (bool, string) {
			b, _ := os.ReadFile(logPath)
			since := string(b[min(len(before), len(b)):])
			return strings.Contains(c.out.String(), node+" exited") && strings.Contains(since, "re-subscribed"), since
		})
		eventually(t, time.Minute, "node "+node+" Ready", func() (bool, string) {
			out, _ := c.tryKubectl("get", "node", node, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}")
			return out == "True", out
		})
		now := c.pods(t)
		for _, p := range onNode {
			ok := false
			for _, q := range running(now) {
				ok = ok || q.UID == p.UID
			}
			if !ok {
				t.Errorf("pod %s on %s not running after its agent restarted: %s", p.Name, node, summary(now))
			}
			if got := mainProcessesOf(string(p.UID)); fmt.Sprint(got) != fmt.Sprint(containers[p.UID]) {
				t.Errorf("pod %s's processes were %v before the agent was killed, %v after; want the same ones", p.Name, containers[p.UID], got)
			}
		}
	})

	t.Run("an agent lost: its pods are replaced on the other", func(t *testing.T) {
		web := running(prefixed(c.pods(t), "web-"))[0]
		lost := web.Spec.NodeName
		pid := agentPID(t, dataDir, lost)
		// A stopped agent answers nothing, as a dead machine: the master
		// removes it after its ping timeouts (10 s in km local).
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		resumed := false
		defer func() {
			if !resumed {
				syscall.Kill(pid, syscall.SIGCONT)
			}
		}()
		var now []corev1.Pod
		eventually(t, 3*time.Minute, "web and ticker replaced away from "+lost, func() (bool, string) {
			now = c.pods(t)
			for _, prefix := range []string{"web-", "ticker-"} {
				want := map[string]int{"web-": 1, "ticker-": 3}[prefix]
				r := running(prefixed(now, prefix))
				if len(r) != want {
					return false, summary(now)
				}
				for _, p := range r {
					if p.Spec.NodeName == lost {
						return false, summary(now)
					}
				}
			}
			return true, ""
		})
		// The lost web pod is Failed with a reason, never silently gone.
		for _, p := range now {
			if p.UID == web.UID && (p.Status.Phase != corev1.PodFailed || p.Status.Reason == "") {
				t.Errorf("the lost pod %s: phase %s reason %q; want Failed with a reason", p.Name, p.Status.Phase, p.Status.Reason)
			}
		}
		c.wantEndpoints(t, "web", 1)
		syscall.Kill(pid, syscall.SIGCONT)
		resumed = true
		// The master tells the removed agent to shut its executors down;
		// it registers again and its node becomes Ready.
		eventually(t, 2*time.Minute, "processes of the lost pod "+web.Name+" end after its agent comes back", func() (bool, string) {
			left := processesOf(string(web.UID))
			return len(left) == 0, fmt.Sprint(left)
		})
		eventually(t, 2*time.Minute, "node "+lost+" Ready again", func() (bool, string) {
			out, _ := c.tryKubectl("get", "node", lost, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}")
			return out == "True", out
		})
	})

	t.Run("restart keeps every object", func(t *testing.T) {
		c.stop(t)
		if left := processesUnder(dataDir); len(left) > 0 {
			t.Fatalf("processes left after km local stopped:\n%s", strings.Join(left, "\n"))
		}
		assertNoNetwork(t)
		c = startLocal(outer, km, dataDir)
		for _, obj := range []string{"rc/web", "service/web", "deployment/ticker"} {
			c.kubectl(t, "get", obj)
		}
		c.wantRunning(t, 4*time.Minute, map[string]int{"web-": 1, "ticker-": 3})
		c.wantEndpoints(t, "web", 1)
		// Bare pods cannot outlive their executors: each is Running again
		// or Failed with a reason, never gone.
		now := c.pods(t)
		for _, name := range []string{"fixed-port", "wildcard-port"} {
			found := false
			for _, p := range now {
				if p.Name != name {
					continue
				}
				found = true
				if p.Status.Phase != corev1.PodRunning && (p.Status.Phase != corev1.PodFailed || p.Status.Reason == "") {
					eventually(t, time.Minute, name+" Running or Failed with a reason", func() (bool, string) {
						for _, q := range c.pods(t) {
							if q.Name == name {
								return q.Status.Phase == corev1.PodRunning || (q.Status.Phase == corev1.PodFailed && q.Status.Reason != ""), summary([]corev1.Pod{q})
							}
						}
						return false, name + " gone"
					})
				}
			}
			if !found {
				t.Errorf("pod %s lost across the restart: %s", name, summary(now))
			}
		}
	})

	t.Run("stop leaves nothing behind", func(t *testing.T) {
		c.stop(t)
		if !strings.Contains(c.out.String(), "km local: stopped") {
			t.Errorf("km local's output lacks its stopped line:\n%s", c.out.String())
		}
		if left := processesUnder(dataDir); len(left) > 0 {
			t.Fatalf("processes left after km local stopped:\n%s", strings.Join(left, "\n"))
		}
		assertNoNetwork(t)
	})
}

func assertNoNetwork(t *testing.T) {
	t.Helper()
	if _, err := net.InterfaceByName("km0"); err == nil {
		t.Errorf("bridge km0 left after km local stopped")
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "km-agent-") {
			t.Errorf("network namespace %s left after km local stopped", e.Name())
		}
	}
}

// TestLocalLoopback: without network namespaces (not root, or
// --agent-network loopback) the agents take 127.0.1.N and pods run there.
func TestLocalLoopback(t *testing.T) {
	if testing.Short() {
		t.Skip("km local end-to-end suite: not in -short mode")
	}
	if _, err := os.Stat(kubectlPath); err != nil {
		t.Fatalf("the end-to-end suite drives the real kubectl at %s: %v (install kubectl there)", kubectlPath, err)
	}
	km := kmbinary.Path(t)
	dataDir := t.TempDir()
	c := startLocal(t, km, dataDir, "--agent-network", "loopback")
	if !strings.Contains(c.out.String(), "agent-1..agent-2 on 127.0.1.1..127.0.1.2 (loopback)") {
		t.Errorf("km local's output does not say where the agents are:\n%s", c.out.String())
	}
	c.kubectl(t, "apply", "-f", filepath.Join(examplesDir(t), "pod.yaml"), "-f", filepath.Join(examplesDir(t), "host-ports.yaml"))
	pods := c.wantRunning(t, 3*time.Minute, map[string]int{"hello": 1, "wildcard-port": 1})
	for _, p := range pods {
		if p.Status.Phase == corev1.PodRunning && !strings.HasPrefix(p.Status.HostIP, "127.0.1.") {
			t.Errorf("pod %s runs on %q, want an agent's 127.0.1.N", p.Name, p.Status.HostIP)
		}
		if p.Name == "wildcard-port" {
			port := p.Annotations["k8s.mesosphere.io/port_TCP_8080"]
			eventually(t, time.Minute, "wildcard-port answers on its host port", func() (bool, string) {
				_, err := httpGet("http://" + p.Status.HostIP + ":" + port + "/")
				return err == nil, fmt.Sprint(err)
			})
		}
	}
	eventually(t, time.Minute, "kubectl logs hello", func() (bool, string) {
		out, _ := c.tryKubectl("logs", "hello")
		return strings.Contains(out, "hello from hello on agent-"), out
	})
	// An agent that is down when km local stops cannot shut its executors
	// down (they outlive it, waiting to be recovered); km local ends them.
	var hello corev1.Pod
	for _, p := range pods {
		if p.Name == "hello" {
			hello = p
		}
	}
	if len(processesOf(string(hello.UID))) == 0 {
		t.Fatal("no process of pod hello: the leftover check below would prove nothing")
	}
	syscall.Kill(agentPID(t, dataDir, hello.Spec.NodeName), syscall.SIGKILL)
	// A closed terminal stops it in order too.
	c.stopWith(t, syscall.SIGHUP)
	if !strings.Contains(c.out.String(), "km local: stopped") {
		t.Errorf("km local did not stop in order on SIGHUP:\n%s", c.out.String())
	}
	if left := processesUnder(dataDir); len(left) > 0 {
		t.Fatalf("processes left after km local stopped:\n%s", strings.Join(left, "\n"))
	}
}
