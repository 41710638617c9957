package scheduler

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/k8sm/k8sm/internal/minimesos/master"
)

// BenchmarkSchedule10kPods1kAgents schedules 10,000 pods (100m cpu, 128Mi)
// created by 16 parallel clients onto 1,000 simulated agents (8 cpus,
// 32 GiB each) through the real apiserver, the built-in master and the
// scheduler, and reports pods per second from creation to TASK_RUNNING,
// p50/p99 latency, and the agents used against the lower bound
// (docs/peer-benchmark.md has kube-scheduler's figures on the same setup).
//
//	KM_BINARY=$PWD/bin/km go test ./internal/scheduler/ -run '^$' -bench Schedule10k -benchtime 1x -timeout 30m
func BenchmarkSchedule10kPods1kAgents(b *testing.B) {
	benchSchedule(b, 10000, 1000)
}

func benchSchedule(b *testing.B, pods, agents int) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b, agents, "cpus:8;mem:32768;ports:[31000-32000]", func(c *master.Config) {
			// Mesos' defaults: one allocation a second, pings every 15 s.
			c.AllocationInterval = time.Second
			c.AgentPingTimeout = 15 * time.Second
			c.MaxAgentPingTimeouts = 5
		})
		var mu sync.Mutex
		created := make(map[string]time.Time, pods)
		running := make(map[string]time.Time, pods)
		done := make(chan struct{})
		e.sched.onRunning = func(key string) {
			mu.Lock()
			if _, ok := running[key]; !ok {
				running[key] = time.Now()
				if len(running) == pods {
					close(done)
				}
			}
			mu.Unlock()
		}
		cfg := e.cp.Config()
		cfg.QPS, cfg.Burst = 5000, 5000
		client := kubernetes.NewForConfigOrDie(cfg)
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		work := make(chan int, pods)
		for j := 0; j < pods; j++ {
			work <- j
		}
		close(work)
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range work {
					p := testPod(fmt.Sprintf("bench-%05d", j), "100m")
					p.Spec.Containers[0].Resources.Requests[corev1.ResourceMemory] = resource.MustParse("128Mi")
					mu.Lock()
					created["default/"+p.Name] = time.Now()
					mu.Unlock()
					if _, err := client.CoreV1().Pods("default").Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
						b.Errorf("create: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		select {
		case <-done:
		case <-time.After(20 * time.Minute):
			mu.Lock()
			b.Fatalf("only %d of %d pods running after 20 minutes", len(running), pods)
		}
		elapsed := time.Since(start)
		b.StopTimer()
		var lat []float64
		mu.Lock()
		for k, r := range running {
			lat = append(lat, r.Sub(created[k]).Seconds())
		}
		mu.Unlock()
		sort.Float64s(lat)
		// Bindings go on beside the launches: count agents once every
		// pod is bound.
		used := map[string]bool{}
		waitUntil(b, "every pod bound", func() bool {
			list, err := e.client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{})
			if err != nil {
				return false
			}
			used = map[string]bool{}
			bound := 0
			for _, p := range list.Items {
				if p.Spec.NodeName != "" {
					used[p.Spec.NodeName] = true
					bound++
				}
			}
			return bound == pods
		})
		// No agent holds more than it has: the master's accounting agrees.
		if cpus := e.master.UsedCPUs(); cpus > 8*float64(agents) || cpus < float64(pods)*0.1 {
			b.Fatalf("master accounts %v cpus used for %d pods", cpus, pods)
		}
		// Lower bound: total cpu (pods plus one executor per agent used)
		// over an agent's cpus.
		lower := (float64(pods)*0.1 + 0.25*float64(len(used))) / 8
		b.ReportMetric(float64(pods)/elapsed.Seconds(), "pods/s")
		b.ReportMetric(lat[len(lat)/2], "p50-s")
		b.ReportMetric(lat[len(lat)*99/100], "p99-s")
		b.ReportMetric(float64(len(used)), "agents-used")
		b.ReportMetric(lower, "agents-lower-bound")
		e.close()
	}
}
