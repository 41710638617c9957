package executor_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// containerProcesses lists the processes whose working directory names
// the pod's UID: its containers.
func containerProcesses(uid string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd")); err == nil && strings.Contains(cwd, uid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestOrphansOfAnEarlierExecutorRunEnd: the agent ends an executor's
// containers when the executor dies (as Mesos' containerizer does), but a
// container that outlived both (the agent was down too, or it escaped its
// mark) is ended by the next executor the agent starts, before it runs
// anything. The orphan here is planted: a process group with a PID file
// in an earlier run's sandbox, as the runtime writes them.
func TestOrphansOfAnEarlierExecutorRunEnd(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	mk := func(name string) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{container("c", "sleep 3600")}}}
		if _, err := c.client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, name+" Running", 60*time.Second, func() bool {
			p := c.pod(t, name)
			return p != nil && p.Status.Phase == corev1.PodRunning
		})
	}
	mk("first")
	uid := string(c.pod(t, "first").UID)
	var pidFiles []string
	all, _ := filepath.Glob(filepath.Join(c.agentDir, "slaves", "*", "frameworks", "*", "executors", "*", "runs", "*", "pods", uid, "pids", "c.pid"))
	for _, f := range all {
		if !strings.Contains(f, "/runs/latest/") { // Mesos' link to the newest run
			pidFiles = append(pidFiles, f)
		}
	}
	if len(pidFiles) != 1 {
		t.Fatalf("the running container's PID file: %v", pidFiles)
	}
	runs := filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(pidFiles[0])))))

	orphan := exec.Command("sh", "-c", `trap "" TERM; while true; do sleep 0.1; done`)
	orphan.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { orphan.Wait(); close(ended) }()
	defer syscall.Kill(-orphan.Process.Pid, syscall.SIGKILL)
	stat, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(orphan.Process.Pid), "stat"))
	start := strings.Fields(string(stat)[strings.LastIndexByte(string(stat), ')')+1:])[19]
	dir := filepath.Join(runs, "crashed-run", "pods", "some-pod", "pids")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "c.pid"), []byte(strconv.Itoa(orphan.Process.Pid)+" "+start+"\n"), 0o644)

	// The executor dies hard; the agent ends its containers and the next
	// pod gets a new executor run, which ends the orphan.
	var executor int
	for _, s := range ownedProcesses(c.agentDir) {
		b, _ := os.ReadFile(filepath.Join("/proc", s, "cmdline"))
		if strings.Contains(string(b), "executor\x00") {
			executor, _ = strconv.Atoi(s)
		}
	}
	if executor == 0 {
		t.Fatal("no km executor process found")
	}
	syscall.Kill(executor, syscall.SIGKILL)
	waitFor(t, "first Failed after its executor died", 60*time.Second, func() bool {
		p := c.pod(t, "first")
		return p != nil && p.Status.Phase == corev1.PodFailed
	})
	if len(containerProcesses(uid)) != 0 {
		t.Errorf("the agent left the dead executor's container running: %v", containerProcesses(uid))
	}
	select {
	case <-ended:
		t.Fatal("the planted orphan ended before a new executor started: the check below would prove nothing")
	default:
	}
	mk("next")
	select {
	case <-ended:
	case <-time.After(30 * time.Second):
		t.Fatal("the new executor did not end the orphan of the earlier run")
	}
}
