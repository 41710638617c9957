package master

import (
	"net/http"
	"strings"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// metrics are the master counters /metrics/snapshot reports, under Mesos'
// names.
type metrics struct {
	frameworksSubscribed int
	frameworksRemoved    int
	agentsRegistered     int
	agentsRemoved        int
	offersSent           int
	offersDeclined       int
	offersAccepted       int
	offersRescinded      int
	invalidTasks         int
	tasksStaging         int
	reconciliations      int
	messagesToExecutors  int
	messagesToFrameworks int
	allocationRuns       int
	allocationNanos      int64
	calls                map[string]int
	updates              map[string]int
	terminal             map[string]int
}

func (mt *metrics) countCall(t schedulerpb.Call_Type) {
	if mt.calls == nil {
		mt.calls = map[string]int{}
	}
	mt.calls[strings.ToLower(t.String())]++
}

func (mt *metrics) countUpdate(st *mesospb.TaskStatus) {
	if mt.updates == nil {
		mt.updates = map[string]int{}
	}
	mt.updates[strings.ToLower(st.GetSource().String())+"/"+strings.ToLower(st.GetState().String())]++
}

func (mt *metrics) countTerminal(s mesospb.TaskState) {
	if mt.terminal == nil {
		mt.terminal = map[string]int{}
	}
	mt.terminal[strings.ToLower(s.String())]++
}

func (m *Master) serveMetrics(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	m.mu.Lock()
	s := m.st
	mt := &s.metrics
	out := map[string]any{}
	f := func(k string, v int) { out[k] = float64(v) }
	active, inactive := 0, 0
	for _, a := range s.agents {
		if a.stream != nil {
			active++
		} else {
			inactive++
		}
	}
	connected, disconnected := 0, 0
	for _, fw := range s.frameworks {
		if fw.stream != nil {
			connected++
		} else {
			disconnected++
		}
	}
	running, staging, starting, killing, unreachable := 0, 0, 0, 0, 0
	var total, used resources.Resources
	for _, a := range s.agents {
		total = resources.Add(total, a.total)
		used = resources.Add(used, resources.Subtract(a.total, a.free))
	}
	for _, fw := range s.frameworks {
		for _, t := range fw.tasks {
			switch t.t.GetState() {
			case mesospb.TaskState_TASK_RUNNING:
				running++
			case mesospb.TaskState_TASK_STAGING:
				staging++
			case mesospb.TaskState_TASK_STARTING:
				starting++
			case mesospb.TaskState_TASK_KILLING:
				killing++
			case mesospb.TaskState_TASK_UNREACHABLE:
				unreachable++
			}
		}
	}
	out["master/elected"] = 1.0
	out["master/uptime_secs"] = m.cfg.Clock.Now().Sub(m.startTime).Seconds()
	f("master/slaves_active", active)
	f("master/slaves_inactive", inactive)
	f("master/slaves_connected", active)
	f("master/slaves_disconnected", inactive)
	f("master/slaves_unreachable", len(s.unreachable))
	f("master/slave_registrations", mt.agentsRegistered)
	f("master/slave_removals", mt.agentsRemoved)
	f("master/frameworks_active", connected)
	f("master/frameworks_connected", connected)
	f("master/frameworks_disconnected", disconnected)
	f("master/frameworks_inactive", disconnected)
	f("master/outstanding_offers", len(s.offers))
	f("master/messages_decline_offers", mt.offersDeclined)
	f("master/messages_launch_tasks", mt.offersAccepted)
	f("master/messages_framework_to_executor", mt.messagesToExecutors)
	f("master/messages_executor_to_framework", mt.messagesToFrameworks)
	f("master/messages_reconcile_tasks", mt.reconciliations)
	f("master/invalid_status_updates", 0)
	f("master/tasks_running", running)
	f("master/tasks_staging", staging)
	f("master/tasks_starting", starting)
	f("master/tasks_killing", killing)
	f("master/tasks_unreachable", unreachable)
	for _, st := range []string{"task_finished", "task_failed", "task_killed", "task_lost", "task_error", "task_dropped", "task_gone"} {
		f("master/tasks_"+strings.TrimPrefix(st, "task_"), mt.terminal[st])
	}
	for k, v := range mt.calls {
		f("master/messages_scheduler_calls/"+k, v)
	}
	for k, v := range mt.updates {
		f("master/task_updates/"+k, v)
	}
	for _, name := range []string{"cpus", "mem", "disk", "gpus"} {
		t, u := resources.Scalar(total, name), resources.Scalar(used, name)
		out["master/"+name+"_total"] = t
		out["master/"+name+"_used"] = u
		if t > 0 {
			out["master/"+name+"_percent"] = u / t
		} else {
			out["master/"+name+"_percent"] = 0.0
		}
	}
	f("allocator/mesos/allocation_runs", mt.allocationRuns)
	if mt.allocationRuns > 0 {
		out["allocator/mesos/allocation_run_ms"] = float64(mt.allocationNanos) / 1e6 / float64(mt.allocationRuns)
	}
	f("master/offers_sent", mt.offersSent)
	f("master/offers_rescinded", mt.offersRescinded)
	f("master/invalid_tasks", mt.invalidTasks)
	m.mu.Unlock()
	writeJSON(w, out)
}
