package executor_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKamikazeEndsIdleExecutors: the scheduler's /debug/actions/kamikaze
// (k8sm's) reaches the executor as a Mesos MESSAGE; an executor with pods
// stays, an idle one exits, and the next pod starts a new one.
func TestKamikazeEndsIdleExecutors(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	api := httptest.NewServer(c.sched.Handler())
	defer api.Close()
	kamikaze := func() string {
		resp, err := http.Post(api.URL+"/debug/actions/kamikaze", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "on 1 of 1 agents") {
			t.Fatalf("kamikaze: %s: %s", resp.Status, b)
		}
		return string(b)
	}
	running := func(name string) func() bool {
		return func() bool {
			p := c.pod(t, name)
			return p != nil && p.Status.Phase == corev1.PodRunning
		}
	}
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{container("c", "sleep 3600")}}}
	}

	if _, err := c.client.CoreV1().Pods("default").Create(ctx, pod("busy"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "busy Running", 60*time.Second, running("busy"))
	executors := ownedProcesses(c.agentDir)
	kamikaze()
	// The executor runs a pod: it says so in its log, and stays.
	waitFor(t, "the busy executor ignores kamikaze", 30*time.Second, func() bool {
		logs, _ := filepath.Glob(filepath.Join(c.agentDir, "slaves", "*", "frameworks", "*", "executors", "*", "runs", "*", "stderr"))
		for _, l := range logs {
			if b, _ := os.ReadFile(l); strings.Contains(string(b), "kamikaze ignored: pods run here") {
				return true
			}
		}
		return false
	})
	if p := c.pod(t, "busy"); p == nil || p.Status.Phase != corev1.PodRunning {
		t.Fatalf("busy after kamikaze: %+v", p)
	}
	if now := ownedProcesses(c.agentDir); len(now) < len(executors) {
		t.Fatalf("processes before kamikaze %v, after %v: the busy executor must stay", executors, now)
	}

	zero := int64(0)
	if err := c.client.CoreV1().Pods("default").Delete(ctx, "busy", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "busy gone", 60*time.Second, func() bool { return c.pod(t, "busy") == nil })
	// The executor ends a deleted pod's task just after the pod object
	// is gone: kamikaze again until it has nothing left to run.
	last := time.Time{}
	waitFor(t, "the idle executor exited", 30*time.Second, func() bool {
		if time.Since(last) > 2*time.Second {
			kamikaze()
			last = time.Now()
		}
		return len(ownedProcesses(c.agentDir)) == 0
	})

	// The next pod gets a new executor.
	if _, err := c.client.CoreV1().Pods("default").Create(ctx, pod("next"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "next Running on a new executor", 60*time.Second, running("next"))
}
