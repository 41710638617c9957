package master

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
)

// The operator endpoints answer GET in the JSON shapes of Mesos 1.11's
// /state, /frameworks, /slaves and /tasks (testdata/mesos-recordings), so
// tools written for Mesos, and km's own node handling, can read them.

func (m *Master) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

func (m *Master) serveVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, map[string]any{"version": Version, "build_date": "", "build_time": 0.0, "build_user": "km"})
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

func secs(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// resourcesJSON renders resources as Mesos' operator endpoints do: scalars
// summed by name (cpus, mem, disk, gpus always present), ranges and sets as
// strings.
func resourcesJSON(r resources.Resources) map[string]any {
	out := map[string]any{"cpus": 0.0, "mem": 0.0, "disk": 0.0, "gpus": 0.0}
	for name, v := range resources.Summarize(r) {
		out[name] = v
	}
	return out
}

func rawJSON(b []byte, err error) json.RawMessage {
	if err != nil {
		return json.RawMessage("null")
	}
	return json.RawMessage(b)
}

func (s *state) taskJSON(t *mesospb.Task, role string) map[string]any {
	statuses := []any{}
	for _, st := range t.GetStatuses() {
		e := map[string]any{"state": st.GetState().String(), "timestamp": st.GetTimestamp()}
		if st.ContainerStatus != nil {
			e["container_status"] = rawJSON(codec.MarshalJSON(st.ContainerStatus))
		}
		statuses = append(statuses, e)
	}
	out := map[string]any{
		"id":           t.GetTaskId().GetValue(),
		"name":         t.GetName(),
		"framework_id": t.GetFrameworkId().GetValue(),
		"executor_id":  t.GetExecutorId().GetValue(),
		"slave_id":     t.GetAgentId().GetValue(),
		"state":        t.GetState().String(),
		"resources":    resourcesJSON(resources.WithAllocationRole(t.GetResources(), "")),
		"role":         role,
		"statuses":     statuses,
	}
	if t.Labels != nil {
		out["labels"] = rawJSON(codec.MarshalJSON(t.Labels))
	}
	if t.Container != nil {
		out["container"] = rawJSON(codec.MarshalJSON(t.Container))
	}
	return out
}

func (s *state) frameworkJSON(fw *framework, active bool) map[string]any {
	caps := []string{}
	for _, c := range fw.info.GetCapabilities() {
		caps = append(caps, c.GetType().String())
	}
	var used, offered resources.Resources
	tasks, unreachable := []any{}, []any{}
	for _, id := range sortedKeys(fw.tasks) {
		t := fw.tasks[id]
		if t.unreachable {
			unreachable = append(unreachable, s.taskJSON(t.t, t.role))
			continue
		}
		tasks = append(tasks, s.taskJSON(t.t, t.role))
		if !t.terminalReceived {
			used = resources.Add(used, t.res)
		}
	}
	completed := []any{}
	for _, t := range fw.completedTasks {
		completed = append(completed, s.taskJSON(t, ""))
	}
	offers := []any{}
	for _, id := range sortedKeys(fw.offers) {
		o := fw.offers[id]
		plain := resources.WithAllocationRole(o.res, "")
		offered = resources.Add(offered, plain)
		offers = append(offers, map[string]any{
			"id": o.id, "framework_id": fw.id, "slave_id": o.agent.id,
			"allocation_info": map[string]any{"role": o.role},
			"resources":       resourcesJSON(plain),
		})
	}
	executors := []any{}
	for _, agentID := range sortedKeys(fw.executors) {
		for _, execID := range sortedKeys(fw.executors[agentID]) {
			ex := fw.executors[agentID][execID]
			executors = append(executors, map[string]any{
				"executor_id":  execID,
				"name":         ex.GetName(),
				"framework_id": fw.id,
				"slave_id":     agentID,
				"resources":    resourcesJSON(resources.WithAllocationRole(ex.GetResources(), "")),
			})
			used = resources.Add(used, resources.WithAllocationRole(ex.GetResources(), ""))
		}
	}
	roles := fw.roles
	if roles == nil {
		roles = []string{}
	}
	return map[string]any{
		"id":                fw.id,
		"name":              fw.info.GetName(),
		"pid":               "",
		"used_resources":    resourcesJSON(used),
		"offered_resources": resourcesJSON(offered),
		"resources":         resourcesJSON(resources.Add(used, offered)),
		"capabilities":      caps,
		"hostname":          fw.info.GetHostname(),
		"webui_url":         fw.info.GetWebuiUrl(),
		"principal":         fw.info.GetPrincipal(),
		"active":            active && fw.stream != nil,
		"connected":         fw.stream != nil,
		"recovered":         false,
		"user":              fw.info.GetUser(),
		"failover_timeout":  fw.info.GetFailoverTimeout(),
		"checkpoint":        fw.info.GetCheckpoint(),
		"registered_time":   secs(fw.registeredAt),
		"reregistered_time": secs(fw.reregisteredAt),
		"unregistered_time": secs(fw.unregisteredAt),
		"roles":             roles,
		"tasks":             tasks,
		"unreachable_tasks": unreachable,
		"completed_tasks":   completed,
		"offers":            offers,
		"executors":         executors,
	}
}

func (s *state) agentJSON(a *agent) map[string]any {
	attrs := map[string]any{}
	for _, at := range a.info.GetAttributes() {
		switch at.GetType() {
		case mesospb.Value_SCALAR:
			attrs[at.GetName()] = at.GetScalar().GetValue()
		case mesospb.Value_TEXT:
			attrs[at.GetName()] = at.GetText().GetValue()
		case mesospb.Value_RANGES:
			attrs[at.GetName()] = resources.AttributeString(at)
		case mesospb.Value_SET:
			attrs[at.GetName()] = "{" + strings.Join(at.GetSet().GetItem(), ",") + "}"
		}
	}
	var offered resources.Resources
	for _, o := range s.offers {
		if o.agent == a {
			offered = resources.Add(offered, resources.WithAllocationRole(o.res, ""))
		}
	}
	used := resources.Subtract(resources.Subtract(a.total, a.free), offered)
	reserved := map[string]any{}
	for role, r := range resources.ReservedByRole(a.total) {
		reserved[role] = resourcesJSON(r)
	}
	caps := []string{}
	for _, c := range a.caps {
		caps = append(caps, c.GetType().String())
	}
	host, port := splitHostPort(a.endpoint, int(a.info.GetPort()))
	return map[string]any{
		"id":                   a.id,
		"hostname":             a.info.GetHostname(),
		"port":                 port,
		"attributes":           attrs,
		"pid":                  "slave(1)@" + host + ":" + itoa(port),
		"registered_time":      secs(a.registeredAt),
		"reregistered_time":    secs(a.reregistered),
		"resources":            resourcesJSON(a.total),
		"used_resources":       resourcesJSON(used),
		"offered_resources":    resourcesJSON(offered),
		"reserved_resources":   reserved,
		"unreserved_resources": resourcesJSON(resources.Unreserved(a.total)),
		"active":               a.stream != nil,
		"deactivated":          false,
		"version":              a.version,
		"capabilities":         caps,
	}
}

func (m *Master) stateJSON() map[string]any {
	s := m.st
	slaves := []any{}
	for _, id := range s.sortedAgentIDs() {
		slaves = append(slaves, s.agentJSON(s.agents[id]))
	}
	frameworks := []any{}
	for _, id := range s.sortedFrameworkIDs() {
		frameworks = append(frameworks, s.frameworkJSON(s.frameworks[id], true))
	}
	completed := []any{}
	for _, fw := range s.completedFrameworks {
		completed = append(completed, s.frameworkJSON(fw, false))
	}
	recovered := []any{}
	for _, id := range sortedKeys(s.recovered) {
		recovered = append(recovered, map[string]any{"id": id})
	}
	active := 0
	for _, a := range s.agents {
		if a.stream != nil {
			active++
		}
	}
	pid := m.info.GetPid()
	return map[string]any{
		"version":            Version,
		"build_date":         "",
		"build_time":         0.0,
		"build_user":         "km",
		"start_time":         secs(m.startTime),
		"elected_time":       secs(m.startTime),
		"id":                 m.id,
		"pid":                pid,
		"hostname":           m.cfg.Hostname,
		"capabilities":       []string{"AGENT_UPDATE", "AGENT_DRAINING"},
		"activated_slaves":   float64(active),
		"deactivated_slaves": float64(len(s.agents) - active),
		"unreachable_slaves": float64(len(s.unreachable)),
		"leader":             pid,
		"leader_info": map[string]any{
			"id": m.id, "pid": pid, "port": m.cfg.Port, "hostname": m.cfg.Hostname,
		},
		"flags": map[string]any{
			"allocation_interval":     m.cfg.AllocationInterval.String(),
			"agent_ping_timeout":      m.cfg.AgentPingTimeout.String(),
			"max_agent_ping_timeouts": itoa(m.cfg.MaxAgentPingTimeouts),
			"offer_timeout":           m.cfg.OfferTimeout.String(),
			"port":                    itoa(m.cfg.Port),
			"ip":                      m.cfg.IP,
		},
		"slaves":                  slaves,
		"recovered_slaves":        recovered,
		"frameworks":              frameworks,
		"completed_frameworks":    completed,
		"orphan_tasks":            []any{},
		"unregistered_frameworks": []any{},
	}
}

func onlyGET(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET")
		httpError(w, http.StatusMethodNotAllowed, "405 Method Not Allowed. Expecting one of { 'GET' }, but received '"+r.Method+"'.")
		return false
	}
	return true
}

func (m *Master) serveState(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	m.mu.Lock()
	v := m.stateJSON()
	m.mu.Unlock()
	writeJSON(w, v)
}

func (m *Master) serveFrameworks(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	m.mu.Lock()
	st := m.stateJSON()
	m.mu.Unlock()
	writeJSON(w, map[string]any{
		"frameworks":              st["frameworks"],
		"completed_frameworks":    st["completed_frameworks"],
		"unregistered_frameworks": st["unregistered_frameworks"],
	})
}

func (m *Master) serveSlaves(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	m.mu.Lock()
	st := m.stateJSON()
	m.mu.Unlock()
	writeJSON(w, map[string]any{"slaves": st["slaves"], "recovered_slaves": st["recovered_slaves"]})
}

func (m *Master) serveTasks(w http.ResponseWriter, r *http.Request) {
	if !onlyGET(w, r) {
		return
	}
	m.mu.Lock()
	tasks := []map[string]any{}
	for _, fid := range m.st.sortedFrameworkIDs() {
		fw := m.st.frameworks[fid]
		for _, id := range sortedKeys(fw.tasks) {
			tasks = append(tasks, m.st.taskJSON(fw.tasks[id].t, fw.tasks[id].role))
		}
	}
	m.mu.Unlock()
	sort.SliceStable(tasks, func(i, j int) bool { return tasks[i]["id"].(string) < tasks[j]["id"].(string) })
	writeJSON(w, map[string]any{"tasks": tasks})
}
