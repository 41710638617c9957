package agent

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
)

type counters struct {
	executorsLaunched        int
	executorsTerminated      int
	validUpdates             int
	invalidUpdates           int
	validFrameworkMessages   int
	invalidFrameworkMessages int
}

// resourcesJSON totals resources as Mesos' /state does: cpus, mem, disk and
// gpus always, ranges as "[a-b]".
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

// statusJSON is a TaskStatus as /state lists it.
func statusJSON(st *mesospb.TaskStatus) map[string]any {
	out := map[string]any{"state": st.GetState().String(), "timestamp": st.GetTimestamp()}
	if cs := st.GetContainerStatus(); cs != nil {
		if b, err := codec.MarshalJSON(cs); err == nil {
			out["container_status"] = json.RawMessage(b)
		}
	}
	return out
}

func (a *Agent) taskJSONLocked(fw *framework, e *executor, t *task) map[string]any {
	execID := ""
	if !e.command {
		execID = e.id
	}
	role := resources.AllocationRole(t.info.GetResources())
	if role == "" {
		role = "*"
	}
	statuses := []any{}
	for _, st := range t.statuses {
		statuses = append(statuses, statusJSON(st))
	}
	return map[string]any{
		"id": t.info.GetTaskId().GetValue(), "name": t.info.GetName(), "framework_id": fw.id, "executor_id": execID,
		"slave_id": a.agentID, "state": t.state.String(), "resources": resourcesJSON(t.info.GetResources()),
		"role": role, "statuses": statuses,
	}
}

// executorResourcesLocked is what an executor holds: its own resources and
// those of its tasks that have not ended.
func executorResources(e *executor) resources.Resources {
	r := resources.WithAllocationRole(e.info.GetResources(), "")
	for _, t := range e.tasks {
		if !isTerminal(t.state) {
			r = resources.Add(r, resources.WithAllocationRole(t.info.GetResources(), ""))
		}
	}
	return r
}

func (a *Agent) executorJSONLocked(fw *framework, e *executor) map[string]any {
	tasks, queued, completed := []any{}, []any{}, []any{}
	for _, id := range sortedTaskIDs(e.tasks) {
		t := e.tasks[id]
		switch {
		case t.queued:
			queued = append(queued, a.taskJSONLocked(fw, e, t))
		default:
			tasks = append(tasks, a.taskJSONLocked(fw, e, t))
		}
	}
	for _, t := range e.completed {
		completed = append(completed, a.taskJSONLocked(fw, e, t))
	}
	role := resources.AllocationRole(e.info.GetResources())
	if role == "" {
		role = "*"
	}
	return map[string]any{
		"id": e.id, "name": e.info.GetName(), "source": e.info.GetSource(),
		"container": e.containerID, "directory": e.dir,
		"resources": resourcesJSON(executorResources(e)), "role": role,
		"tasks": tasks, "queued_tasks": queued, "completed_tasks": completed,
	}
}

func (a *Agent) frameworkJSONLocked(fw *framework) map[string]any {
	execs, done := []any{}, []any{}
	ids := make([]string, 0, len(fw.executors))
	for id := range fw.executors {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		execs = append(execs, a.executorJSONLocked(fw, fw.executors[id]))
	}
	for _, e := range fw.completed {
		done = append(done, a.executorJSONLocked(fw, e))
	}
	roles := fw.info.GetRoles()
	if len(roles) == 0 {
		roles = []string{fw.info.GetRole()}
		if roles[0] == "" {
			roles[0] = "*"
		}
	}
	return map[string]any{
		"id": fw.id, "name": fw.info.GetName(), "user": fw.info.GetUser(),
		"failover_timeout": fw.info.GetFailoverTimeout(), "checkpoint": fw.info.GetCheckpoint(),
		"hostname": fw.info.GetHostname(), "roles": roles,
		"executors": execs, "completed_executors": done,
	}
}

func (a *Agent) flagsLocked() map[string]string {
	env := ""
	if len(a.cfg.ExecutorEnv) > 0 {
		b, _ := json.Marshal(a.cfg.ExecutorEnv)
		env = string(b)
	}
	f := map[string]string{
		"master": a.cfg.Master, "ip": a.cfg.IP, "port": strconv.Itoa(a.cfg.Port), "advertise_ip": a.cfg.AdvertiseIP,
		"hostname": a.cfg.Hostname, "resources": a.cfg.Resources, "attributes": a.cfg.Attributes,
		"default_role": a.cfg.DefaultRole, "work_dir": a.cfg.WorkDir,
		"executor_shutdown_grace_period":   formatDuration(a.cfg.ExecutorShutdownGracePeriod),
		"executor_registration_timeout":    formatDuration(a.cfg.ExecutorRegistrationTimeout),
		"executor_reregistration_timeout":  formatDuration(a.cfg.ExecutorReregistrationTimeout),
		"recovery_timeout":                 formatDuration(a.cfg.RecoveryTimeout),
		"status_update_retry_interval_min": formatDuration(a.cfg.StatusUpdateRetryMin),
		"registration_backoff_factor":      formatDuration(a.cfg.RegistrationBackoffFactor),
		"executor_environment_variables":   env,
		"launcher":                         "posix", "recover": "reconnect", "http_command_executor": "false",
	}
	return f
}

// serveState is GET /state in the shape of Mesos' agent /state
// (testdata/mesos-recordings/agent-state.json).
func (a *Agent) serveState(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	fwIDs := make([]string, 0, len(a.frameworks))
	for id := range a.frameworks {
		fwIDs = append(fwIDs, id)
	}
	sort.Strings(fwIDs)
	frameworks, completed := []any{}, []any{}
	var allocated resources.Resources
	for _, id := range fwIDs {
		fw := a.frameworks[id]
		frameworks = append(frameworks, a.frameworkJSONLocked(fw))
		for _, e := range fw.executors {
			allocated = resources.Add(allocated, executorResources(e))
		}
	}
	for _, fw := range a.completedFw {
		completed = append(completed, a.frameworkJSONLocked(fw))
	}
	attrs := map[string]any{}
	for _, at := range a.attrs {
		if at.GetType() == mesospb.Value_SCALAR {
			attrs[at.GetName()] = at.GetScalar().GetValue()
		} else {
			attrs[at.GetName()] = resources.AttributeString(at)
		}
	}
	reserved, reservedFull := map[string]any{}, map[string]any{}
	for role, rs := range resources.ReservedByRole(a.total) {
		if role == "*" {
			continue
		}
		reserved[role] = resourcesJSON(rs)
		full := []json.RawMessage{}
		for _, x := range rs {
			if b, err := codec.MarshalJSON(x); err == nil {
				full = append(full, b)
			}
		}
		reservedFull[role] = full
	}
	unreserved := resources.Unreserved(a.total)
	unreservedFull := []json.RawMessage{}
	for _, x := range unreserved {
		if b, err := codec.MarshalJSON(x); err == nil {
			unreservedFull = append(unreservedFull, b)
		}
	}
	master := ""
	if a.masterInfo != nil {
		master = a.masterInfo.GetHostname()
	}
	allocJSON := resourcesJSON(allocated)
	delete(allocJSON, "ports")
	out := map[string]any{
		"version": Version, "build_date": "", "build_time": 0.0, "build_user": "km",
		"start_time": float64(a.started.UnixNano()) / 1e9, "id": a.agentID, "pid": a.PID(), "hostname": a.cfg.Hostname,
		"capabilities":                   []string{"MULTI_ROLE"},
		"resources":                      resourcesJSON(a.total),
		"reserved_resources":             reserved,
		"unreserved_resources":           resourcesJSON(unreserved),
		"reserved_resources_full":        reservedFull,
		"unreserved_resources_full":      unreservedFull,
		"reserved_resources_allocated":   map[string]any{},
		"unreserved_resources_allocated": allocJSON,
		"resource_providers":             []any{},
		"attributes":                     attrs,
		"master_hostname":                master,
		"log_dir":                        "",
		"flags":                          a.flagsLocked(),
		"frameworks":                     frameworks,
		"completed_frameworks":           completed,
	}
	a.mu.Unlock()
	writeJSON(w, out)
}

func (a *Agent) serveFlags(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	f := a.flagsLocked()
	a.mu.Unlock()
	writeJSON(w, map[string]any{"flags": f})
}

// serveMetrics is GET /metrics/snapshot with Mesos' slave/* names.
func (a *Agent) serveMetrics(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	states := map[mesospb.TaskState]int{}
	execStates := map[executorState]int{}
	var used resources.Resources
	for _, fw := range a.frameworks {
		for _, e := range fw.executors {
			execStates[e.state]++
			used = resources.Add(used, executorResources(e))
			for _, t := range e.tasks {
				states[t.state]++
			}
		}
	}
	reg := 0.0
	if a.connected {
		reg = 1
	}
	recovering := 0.0
	if a.recovering {
		recovering = 1
	}
	m := map[string]float64{
		"slave/registered":                 reg,
		"slave/recovering":                 recovering,
		"slave/uptime_secs":                a.clock.Now().Sub(a.started).Seconds(),
		"slave/frameworks_active":          float64(len(a.frameworks)),
		"slave/executors_registering":      float64(execStates[registering]),
		"slave/executors_running":          float64(execStates[running]),
		"slave/executors_terminating":      float64(execStates[terminating]),
		"slave/executors_terminated":       float64(a.metrics.executorsTerminated),
		"slave/executors_launched":         float64(a.metrics.executorsLaunched),
		"slave/tasks_staging":              float64(states[mesospb.TaskState_TASK_STAGING]),
		"slave/tasks_starting":             float64(states[mesospb.TaskState_TASK_STARTING]),
		"slave/tasks_running":              float64(states[mesospb.TaskState_TASK_RUNNING]),
		"slave/tasks_killing":              float64(states[mesospb.TaskState_TASK_KILLING]),
		"slave/valid_status_updates":       float64(a.metrics.validUpdates),
		"slave/invalid_status_updates":     float64(a.metrics.invalidUpdates),
		"slave/valid_framework_messages":   float64(a.metrics.validFrameworkMessages),
		"slave/invalid_framework_messages": float64(a.metrics.invalidFrameworkMessages),
		"slave/status_updates_pending":     float64(a.sum.pendingCount()),
		"slave/cpus_total":                 resources.Scalar(a.total, "cpus"),
		"slave/cpus_used":                  resources.Scalar(used, "cpus"),
		"slave/mem_total":                  resources.Scalar(a.total, "mem"),
		"slave/mem_used":                   resources.Scalar(used, "mem"),
		"slave/disk_total":                 resources.Scalar(a.total, "disk"),
		"slave/disk_used":                  resources.Scalar(used, "disk"),
	}
	a.mu.Unlock()
	writeJSON(w, m)
}
