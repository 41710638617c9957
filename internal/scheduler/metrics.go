package scheduler

import (
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// metrics are the scheduler's Prometheus metrics, written out by hand (the
// text format is simple and keeps client libraries out of the binary's
// hot path).
type metrics struct {
	podsQueued       atomic.Int64
	launched         atomic.Int64
	bound            atomic.Int64
	kills            atomic.Int64
	failedScheduling atomic.Int64
	offersReceived   atomic.Int64
	offersDeclined   atomic.Int64
	reconciliations  atomic.Int64

	queueWait        *histogram
	launchToRunning  *histogram
	podsPerOffer     *histogram
	placementSeconds *histogram

	mu      sync.Mutex
	updates map[string]int64
}

func newMetrics() *metrics {
	secs := []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	return &metrics{
		queueWait:        newHistogram(secs),
		launchToRunning:  newHistogram(secs),
		podsPerOffer:     newHistogram([]float64{1, 2, 4, 8, 16, 32, 64, 128}),
		placementSeconds: newHistogram(secs),
		updates:          map[string]int64{},
	}
}

func (m *metrics) countUpdate(st *mesospb.TaskStatus) {
	m.mu.Lock()
	m.updates[fmt.Sprintf(`state=%q,reason=%q`, st.GetState().String(), st.GetReason().String())]++
	m.mu.Unlock()
}

type histogram struct {
	mu      sync.Mutex
	bounds  []float64
	counts  []int64
	sum     float64
	samples int64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]int64, len(bounds))}
}

func (h *histogram) observe(v float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, b := range h.bounds {
		if v <= b {
			h.counts[i]++
		}
	}
	h.sum += v
	h.samples++
}

func (h *histogram) write(w io.Writer, name, help string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	for i, b := range h.bounds {
		fmt.Fprintf(w, "%s_bucket{le=\"%g\"} %d\n", name, b, h.counts[i])
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %g\n%s_count %d\n", name, h.samples, name, h.sum, name, h.samples)
}

func counter(w io.Writer, name, help string, v int64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
}

func (s *Scheduler) writeMetrics(w io.Writer, queueLen, offersHeld, tasks int) {
	m := s.metrics
	fmt.Fprintf(w, "# HELP km_scheduler_queue_length Pods waiting for a place.\n# TYPE km_scheduler_queue_length gauge\nkm_scheduler_queue_length %d\n", queueLen)
	fmt.Fprintf(w, "# HELP km_scheduler_offers_held Mesos offers held.\n# TYPE km_scheduler_offers_held gauge\nkm_scheduler_offers_held %d\n", offersHeld)
	fmt.Fprintf(w, "# HELP km_scheduler_tasks Tasks the scheduler tracks.\n# TYPE km_scheduler_tasks gauge\nkm_scheduler_tasks %d\n", tasks)
	counter(w, "km_scheduler_pods_queued_total", "Pods that entered the queue.", m.podsQueued.Load())
	counter(w, "km_scheduler_tasks_launched_total", "Tasks launched.", m.launched.Load())
	counter(w, "km_scheduler_pods_bound_total", "Pods bound.", m.bound.Load())
	counter(w, "km_scheduler_kills_total", "Tasks killed.", m.kills.Load())
	counter(w, "km_scheduler_failed_scheduling_total", "FailedScheduling reports.", m.failedScheduling.Load())
	counter(w, "km_scheduler_offers_received_total", "Offers received.", m.offersReceived.Load())
	counter(w, "km_scheduler_offers_declined_total", "Offers declined.", m.offersDeclined.Load())
	counter(w, "km_scheduler_reconciliations_total", "Reconciliations requested.", m.reconciliations.Load())
	m.queueWait.write(w, "km_scheduler_queue_wait_seconds", "Time from queueing a pod to launching its task.")
	m.launchToRunning.write(w, "km_scheduler_launch_to_running_seconds", "Time from launching a task to TASK_RUNNING.")
	m.podsPerOffer.write(w, "km_scheduler_pods_per_accept", "Tasks launched by one ACCEPT.")
	m.placementSeconds.write(w, "km_scheduler_placement_seconds", "Duration of one placement pass.")
	m.mu.Lock()
	keys := make([]string, 0, len(m.updates))
	for k := range m.updates {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(w, "# HELP km_scheduler_status_updates_total Mesos status updates by state and reason.\n# TYPE km_scheduler_status_updates_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(w, "km_scheduler_status_updates_total{%s} %d\n", k, m.updates[k])
	}
	m.mu.Unlock()
}
