package agent

import (
	"encoding/json"
	"net/http"
	"sort"
	"time"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
)

func resourcesJSON(r resources.Resources) map[string]any {
	out := map[string]any{"cpus": 0.0, "mem": 0.0, "disk": 0.0, "gpus": 0.0}
	for k, v := range resources.Summarize(r) {
		out[k] = v
	}
	return out
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

func (a *Agent) executorJSONLocked(e *executor, fi *mesospb.FrameworkInfo) map[string]any {
	tasks, queued, completed := []any{}, []any{}, []any{}
	var used resources.Resources
	for _, id := range sortedKeys(e.tasks) {
		t := e.tasks[id]
		execID := ""
		if !e.command {
			execID = e.info.GetExecutorId().GetValue()
		}
		tj := map[string]any{
			"id": id, "name": t.info.GetName(), "framework_id": e.fwID, "executor_id": execID,
			"slave_id": a.agentID, "state": t.state.String(),
			"resources": resourcesJSON(resources.WithAllocationRole(t.info.GetResources(), "")),
		}
		switch {
		case isTerminal(t.state):
			completed = append(completed, tj)
		case !t.delivered:
			queued = append(queued, tj)
		default:
			tasks = append(tasks, tj)
			used = resources.Add(used, resources.WithAllocationRole(t.info.GetResources(), ""))
		}
	}
	return map[string]any{
		"id": e.info.GetExecutorId().GetValue(), "name": e.info.GetName(), "source": "",
		"container": e.containerID, "directory": e.dir,
		"resources": resourcesJSON(resources.Add(used, resources.WithAllocationRole(e.info.GetResources(), ""))),
		"role":      "*", "tasks": tasks, "queued_tasks": queued, "completed_tasks": completed,
		"pid": e.pid,
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func (a *Agent) serveState(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	frameworks := []any{}
	for _, id := range sortedKeys(a.frameworks) {
		fw := a.frameworks[id]
		execs := []any{}
		for _, eid := range sortedKeys(fw.executors) {
			execs = append(execs, a.executorJSONLocked(fw.executors[eid], fw.info))
		}
		completedExecs := []any{}
		for _, e := range a.completed {
			if e.fwID == id {
				completedExecs = append(completedExecs, a.executorJSONLocked(e, fw.info))
			}
		}
		frameworks = append(frameworks, map[string]any{
			"id": id, "name": fw.info.GetName(), "user": fw.info.GetUser(),
			"failover_timeout": fw.info.GetFailoverTimeout(), "checkpoint": fw.info.GetCheckpoint(),
			"hostname": fw.info.GetHostname(), "roles": fw.info.GetRoles(),
			"executors": execs, "completed_executors": completedExecs,
		})
	}
	attrs := map[string]any{}
	for _, at := range a.attrs {
		if at.GetType() == mesospb.Value_SCALAR {
			attrs[at.GetName()] = at.GetScalar().GetValue()
		} else {
			attrs[at.GetName()] = resources.AttributeString(at)
		}
	}
	reserved := map[string]any{}
	for role, rs := range resources.ReservedByRole(a.total) {
		reserved[role] = resourcesJSON(rs)
	}
	master := ""
	if a.masterInfo != nil {
		master = a.masterInfo.GetHostname()
	}
	out := map[string]any{
		"version": Version, "build_date": "", "build_time": 0.0, "build_user": "km",
		"start_time": 0.0, "id": a.agentID, "pid": "slave(1)@" + a.Endpoint(), "hostname": a.cfg.Hostname,
		"capabilities":         []string{"MULTI_ROLE"},
		"resources":            resourcesJSON(a.total),
		"reserved_resources":   reserved,
		"unreserved_resources": resourcesJSON(resources.Unreserved(a.total)),
		"attributes":           attrs,
		"master_hostname":      master,
		"flags": map[string]any{
			"master": a.cfg.Master, "work_dir": a.cfg.WorkDir, "ip": a.cfg.IP, "port": a.cfg.Port,
			"resources": a.cfg.Resources, "attributes": a.cfg.Attributes,
			"executor_shutdown_grace_period": a.cfg.ExecutorShutdownGracePeriod.String(),
		},
		"frameworks":           frameworks,
		"completed_frameworks": []any{},
	}
	a.mu.Unlock()
	writeJSON(w, out)
}

func (a *Agent) serveMetrics(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	running, staging, execs := 0, 0, 0
	for _, fw := range a.frameworks {
		for _, e := range fw.executors {
			execs++
			for _, t := range e.tasks {
				switch t.state {
				case mesospb.TaskState_TASK_RUNNING:
					running++
				case mesospb.TaskState_TASK_STAGING, mesospb.TaskState_TASK_STARTING:
					staging++
				}
			}
		}
	}
	pending := 0
	for _, s := range a.sum.streams {
		pending += len(s.pending)
	}
	reg := 0.0
	if a.registered {
		reg = 1
	}
	a.mu.Unlock()
	writeJSON(w, map[string]any{
		"slave/registered":             reg,
		"slave/tasks_running":          float64(running),
		"slave/tasks_staging":          float64(staging),
		"slave/executors_running":      float64(execs),
		"slave/status_updates_pending": float64(pending),
		"slave/cpus_total":             resources.Scalar(a.total, "cpus"),
		"slave/mem_total":              resources.Scalar(a.total, "mem"),
		"slave/uptime_secs":            time.Since(startTime).Seconds(),
	})
}

var startTime = time.Now()
