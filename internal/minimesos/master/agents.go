package master

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
	"github.com/k8sm/k8sm/internal/minimesos/eventstream"
)

// Registry keeps the IDs of admitted agents across master restarts, as
// Mesos' registry does, so that a restarted master waits for them
// (--agent_reregister_timeout) and answers reconciliation accordingly.
type Registry interface {
	Load() ([]string, error)
	Save(agentIDs []string) error
}

// register handles an agent's REGISTER: a new agent gets an ID; a known or
// recovered one re-registers with what it runs; a removed one is told to
// shut down. On success REGISTERED is queued on st (before anything the
// re-registration makes the master send) and nil is returned; otherwise the
// returned event (SHUTDOWN or ERROR) is the only one the stream gets.
func (s *state) register(call *agentpb.Call, st *eventstream.Stream) *agentpb.Event {
	now := s.now()
	reg := call.GetRegister()
	id := call.GetAgentId().GetValue()
	if id == "" {
		id = reg.GetAgentInfo().GetId().GetValue()
	}
	if id != "" {
		if _, removed := s.unreachable[id]; removed {
			// Mesos refuses agents it removed: they must shut down their
			// tasks (the frameworks were told those are lost) and come
			// back as new agents.
			s.m.cfg.Logger.Printf("agent %s (%s) was removed and came back; telling it to shut down", id, reg.GetAgentInfo().GetHostname())
			return &agentpb.Event{
				Type:     agentpb.Event_SHUTDOWN.Enum(),
				Shutdown: &agentpb.Event_Shutdown{Message: proto.String("Agent " + id + " was removed by the master (unreachable); kill its tasks and register as a new agent")},
			}
		}
	}
	total, err := agentResources(reg.GetAgentInfo())
	if err != "" {
		return &agentpb.Event{Type: agentpb.Event_ERROR.Enum(), Error: &agentpb.Event_Error{Message: proto.String(err)}}
	}
	a := s.agents[id]
	if a == nil {
		if id == "" {
			id = fmt.Sprintf("%s-S%d", s.m.id, s.agentSeq)
			s.agentSeq++
		}
		a = &agent{
			id:           id,
			tasks:        map[string]map[string]*task{},
			executors:    map[string]map[string]*executor{},
			frameworks:   map[string]bool{},
			registeredAt: now,
		}
		s.agents[id] = a
		delete(s.recovered, id)
		s.metrics.agentsRegistered++
		s.saveRegistry()
	} else {
		a.reregistered = now
		if a.stream != nil && a.stream != st {
			a.stream.Close()
		}
	}
	info := proto.Clone(reg.GetAgentInfo()).(*mesospb.AgentInfo)
	info.Id = &mesospb.AgentID{Value: proto.String(id)}
	a.info = info
	a.endpoint = reg.GetEndpoint()
	a.version = reg.GetVersion()
	a.caps = reg.GetCapabilities()
	a.stream = st
	a.lastPong = now
	a.missedPings = 0
	a.total = total
	st.Send(&agentpb.Event{
		Type: agentpb.Event_REGISTERED.Enum(),
		Registered: &agentpb.Event_Registered{
			AgentId:            &mesospb.AgentID{Value: proto.String(id)},
			MasterInfo:         s.m.info,
			PingTimeoutSeconds: proto.Float64(s.cfg.AgentPingTimeout.Seconds()),
			MaxPingTimeouts:    proto.Uint32(uint32(s.cfg.MaxAgentPingTimeouts)),
		},
	})
	s.reconcileAgentState(a, reg)
	// New resources: allocate at once rather than at the next tick.
	s.allocate(s.now())
	return nil
}

// agentResources are the agent's total resources, unreserved ones with role
// "*" as Mesos offers them.
func agentResources(info *mesospb.AgentInfo) (resources.Resources, string) {
	r := resources.WithAllocationRole(info.GetResources(), "")
	if resources.Scalar(r, "cpus") <= 0 && resources.Scalar(r, "mem") <= 0 {
		// Mesos never offers such an agent; say why it is useless.
		return nil, "agent " + info.GetHostname() + " has neither cpus nor mem; start it with --resources (e.g. cpus:2;mem:4096)"
	}
	return resources.Normalize(r), ""
}

// reconcileAgentState rebuilds what runs on an agent from its
// registration: tasks the master knows stay, tasks it did not know (master
// restart) are adopted; tasks the master knew but the agent no longer runs
// are lost. Free resources are recomputed.
func (s *state) reconcileAgentState(a *agent, reg *agentpb.Call_Register) {
	reported := map[string]map[string]*mesospb.Task{}
	for _, t := range reg.GetTasks() {
		f := t.GetFrameworkId().GetValue()
		if reported[f] == nil {
			reported[f] = map[string]*mesospb.Task{}
		}
		reported[f][t.GetTaskId().GetValue()] = t
	}
	infos := map[string]*mesospb.FrameworkInfo{}
	for _, fi := range reg.GetFrameworks() {
		infos[fi.GetId().GetValue()] = fi
	}
	// Offers on this agent are void: its resources are recomputed.
	for _, o := range s.offers {
		if o.agent == a {
			s.removeOffer(o, true)
		}
	}
	// Tasks the master knows on this agent that the agent does not report.
	for fid, tasks := range a.tasks {
		for tid, t := range tasks {
			if reported[fid][tid] != nil || t.terminalReceived {
				continue
			}
			// A launch that never reached the agent (its stream broke, or the
			// agent restarted): answered as the agent answers reconciliation
			// of a task it does not know.
			fw := t.fw
			st := s.masterStatus(t, fw.lostOr(mesospb.TaskState_TASK_DROPPED), mesospb.TaskStatus_REASON_RECONCILIATION, "Reconciliation: task unknown to the agent")
			st.Source = mesospb.TaskStatus_SOURCE_AGENT.Enum()
			s.applyStatus(t, st)
			s.sendUpdate(fw, st)
			s.forgetTask(t)
		}
	}
	// Adopt executors and tasks the master does not know (after its own
	// restart), with their roles from allocation_info when present.
	for _, ex := range reg.GetExecutors() {
		fid := ex.GetFrameworkId().GetValue()
		if a.executors[fid][ex.GetExecutorId().GetValue()] != nil {
			continue
		}
		role := resources.AllocationRole(ex.GetResources())
		if role == "" {
			role = frameworkRole(infos[fid])
		}
		if a.executors[fid] == nil {
			a.executors[fid] = map[string]*executor{}
		}
		a.executors[fid][ex.GetExecutorId().GetValue()] = &executor{info: ex, res: resources.WithAllocationRole(ex.GetResources(), ""), role: role}
		if fw := s.frameworks[fid]; fw != nil {
			if fw.executors[a.id] == nil {
				fw.executors[a.id] = map[string]*mesospb.ExecutorInfo{}
			}
			fw.executors[a.id][ex.GetExecutorId().GetValue()] = ex
			fw.allocated.add(role, resources.WithAllocationRole(ex.GetResources(), ""))
		}
		a.frameworks[fid] = true
	}
	// Frameworks that were removed: the agent must shut them down (it missed
	// the message, or the master restarted in between).
	for fid := range reported {
		if s.removedFrameworks[fid] {
			s.sendAgent(a, &agentpb.Event{
				Type:              agentpb.Event_SHUTDOWN_FRAMEWORK.Enum(),
				ShutdownFramework: &agentpb.Event_ShutdownFramework{FrameworkId: fwID(fid)},
			})
			delete(reported, fid)
		}
	}
	for fid, tasks := range reported {
		for tid, rt := range tasks {
			if a.tasks[fid][tid] != nil || isTerminal(rt.GetState()) {
				continue
			}
			role := resources.AllocationRole(rt.GetResources())
			if role == "" {
				role = frameworkRole(infos[fid])
			}
			t := &task{agent: a.id, role: role, res: resources.WithAllocationRole(rt.GetResources(), ""), t: proto.Clone(rt).(*mesospb.Task)}
			t.latest = &mesospb.TaskStatus{TaskId: rt.TaskId, State: rt.State, Source: mesospb.TaskStatus_SOURCE_AGENT.Enum(), AgentId: &mesospb.AgentID{Value: proto.String(a.id)}, ExecutorId: rt.ExecutorId}
			if n := len(rt.GetStatuses()); n > 0 {
				t.latest = proto.Clone(rt.GetStatuses()[n-1]).(*mesospb.TaskStatus)
			}
			if a.tasks[fid] == nil {
				a.tasks[fid] = map[string]*task{}
			}
			a.tasks[fid][tid] = t
			a.frameworks[fid] = true
			fw := s.frameworks[fid]
			if fw == nil {
				// The framework has not re-subscribed yet; keep the task
				// with a placeholder framework so it can be found, and link
				// it when the framework returns (adoptAgentTasks).
				fw = s.placeholderFramework(fid, infos[fid])
			}
			t.fw = fw
			if fw.tasks[tid] == nil {
				fw.tasks[tid] = t
				fw.allocated.add(role, t.res)
			}
		}
	}
	// Free = total - live tasks - executors.
	free := a.total
	for _, tasks := range a.tasks {
		for _, t := range tasks {
			if !t.terminalReceived {
				free = resources.Subtract(free, t.res)
			}
		}
	}
	for _, execs := range a.executors {
		for _, e := range execs {
			free = resources.Subtract(free, e.res)
		}
	}
	a.free = free
}

func frameworkRole(fi *mesospb.FrameworkInfo) string {
	if fi == nil {
		return "*"
	}
	if len(fi.GetRoles()) > 0 {
		return fi.GetRoles()[0]
	}
	return fi.GetRole()
}

// placeholderFramework stands for a framework an agent reports before the
// framework re-subscribes to a restarted master. It is disconnected, so it
// gets no offers; its failover timeout starts now.
func (s *state) placeholderFramework(id string, info *mesospb.FrameworkInfo) *framework {
	if info == nil {
		info = &mesospb.FrameworkInfo{User: proto.String("root"), Name: proto.String("unknown"), Id: fwID(id)}
	}
	fw := &framework{
		id:             id,
		offers:         map[string]*offer{},
		tasks:          map[string]*task{},
		executors:      map[string]map[string]*mesospb.ExecutorInfo{},
		filters:        map[filterKey]*filter{},
		suppressed:     map[string]bool{},
		registeredAt:   s.now(),
		disconnectedAt: s.now(),
	}
	s.applyFrameworkInfo(fw, proto.Clone(info).(*mesospb.FrameworkInfo))
	if fw.info.GetFailoverTimeout() <= 0 {
		// Never tear down what a restarted master merely has not heard
		// from yet: wait the agent re-registration window at least.
		fw.info.FailoverTimeout = proto.Float64(s.cfg.AgentReregisterTimeout.Seconds())
	}
	s.frameworks[id] = fw
	return fw
}

// pong records an agent's answer to a PING.
func (s *state) pong(a *agent) {
	a.lastPong = s.now()
	a.missedPings = 0
}

// checkAgents pings agents every --agent_ping_timeout and removes those
// that missed --max_agent_ping_timeouts pings in a row.
func (s *state) checkAgents(now time.Time) {
	for _, id := range s.sortedAgentIDs() {
		a := s.agents[id]
		if now.Sub(a.lastPing) < s.cfg.AgentPingTimeout {
			continue
		}
		if !a.lastPing.IsZero() && a.lastPong.Before(a.lastPing) {
			a.missedPings++
		}
		if a.missedPings >= s.cfg.MaxAgentPingTimeouts {
			s.m.cfg.Logger.Printf("agent %s (%s) missed %d pings of %v; removing it", a.id, a.info.GetHostname(), a.missedPings, s.cfg.AgentPingTimeout)
			s.removeAgent(a, now)
			continue
		}
		a.pingSeq++
		a.lastPing = now
		s.sendAgent(a, &agentpb.Event{Type: agentpb.Event_PING.Enum(), Ping: &agentpb.Event_Ping{Sequence: proto.Uint64(a.pingSeq)}})
	}
}

// removeAgent marks an agent unreachable (Mesos' __removeSlave): its tasks
// become TASK_UNREACHABLE (TASK_LOST for frameworks that are not
// partition-aware) with REASON_AGENT_REMOVED, its offers are rescinded and
// frameworks get FAILURE{agent_id}.
func (s *state) removeAgent(a *agent, now time.Time) {
	for _, o := range s.offers {
		if o.agent == a {
			s.removeOffer(o, true)
		}
	}
	for _, fid := range sortedKeys(a.tasks) {
		for _, tid := range sortedKeys(a.tasks[fid]) {
			t := a.tasks[fid][tid]
			if t.terminalReceived {
				s.forgetTask(t)
				continue
			}
			fw := t.fw
			st := s.masterStatus(t, fw.lostOr(mesospb.TaskState_TASK_UNREACHABLE), mesospb.TaskStatus_REASON_AGENT_REMOVED, "Agent "+a.info.GetHostname()+" removed: health check timed out")
			st.UnreachableTime = &mesospb.TimeInfo{Nanoseconds: proto.Int64(now.UnixNano())}
			if fw.partitionAware {
				// The task is kept as unreachable: reconciliation reports it.
				t.unreachable = true
				s.applyStatus(t, st)
				t.terminalReceived = true
			} else {
				s.applyStatus(t, st)
			}
			s.sendUpdate(fw, st)
			s.forgetTask(t)
		}
	}
	for fid, execs := range a.executors {
		for execID := range execs {
			s.removeExecutor(a, fid, execID)
		}
	}
	if a.stream != nil {
		a.stream.Send(&agentpb.Event{Type: agentpb.Event_SHUTDOWN.Enum(), Shutdown: &agentpb.Event_Shutdown{Message: proto.String("Agent removed by the master: health check timed out")}})
		a.stream.Close()
	}
	delete(s.agents, a.id)
	s.unreachable[a.id] = now
	s.metrics.agentsRemoved++
	s.saveRegistry()
	for _, fid := range s.sortedFrameworkIDs() {
		s.sendFramework(s.frameworks[fid], &schedulerpb.Event{
			Type:    schedulerpb.Event_FAILURE.Enum(),
			Failure: &schedulerpb.Event_Failure{AgentId: &mesospb.AgentID{Value: proto.String(a.id)}},
		})
	}
}

// agentStreamClosed: Mesos marks an agent whose connection broke as
// disconnected and rescinds its offers; removal waits for the ping timeouts.
func (s *state) agentStreamClosed(a *agent, st *eventstream.Stream) {
	if a.stream != st {
		return
	}
	a.stream = nil
	for _, o := range s.offers {
		if o.agent == a {
			s.removeOffer(o, true)
		}
	}
}

// recoverAgents takes the agents a previous master admitted.
func (s *state) recoverAgents(ids []string) {
	deadline := s.now().Add(s.cfg.AgentReregisterTimeout)
	for _, id := range ids {
		s.recovered[id] = deadline
	}
}

// expireRecoveredAgents: agents that did not re-register in time after a
// master restart are unreachable.
func (s *state) expireRecoveredAgents(now time.Time) {
	for id, deadline := range s.recovered {
		if !now.Before(deadline) {
			delete(s.recovered, id)
			s.unreachable[id] = now
			s.saveRegistry()
		}
	}
}

func (s *state) saveRegistry() {
	if s.cfg.Registry == nil {
		return
	}
	ids := make([]string, 0, len(s.agents)+len(s.recovered))
	for id := range s.agents {
		ids = append(ids, id)
	}
	for id := range s.recovered {
		ids = append(ids, id)
	}
	if err := s.cfg.Registry.Save(ids); err != nil {
		s.m.cfg.Logger.Printf("cannot save the master registry: %v", err)
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

func splitHostPort(endpoint string, defPort int) (string, int) {
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return endpoint, defPort
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return host, defPort
	}
	return host, p
}
