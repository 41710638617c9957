package master

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
	"github.com/k8sm/k8sm/internal/minimesos/eventstream"
)

// subscribe registers a framework or fails it over to a new stream. It
// returns the event to send first (SUBSCRIBED, or ERROR when the framework
// was removed), after which an ERROR ends the stream.
func (s *state) subscribe(call *schedulerpb.Call, st *eventstream.Stream) (first *schedulerpb.Event, ok bool) {
	now := s.now()
	info := proto.Clone(call.GetSubscribe().GetFrameworkInfo()).(*mesospb.FrameworkInfo)
	id := info.GetId().GetValue()
	if id != "" && s.removedFrameworks[id] {
		return errorEvent("Framework has been removed"), false
	}
	fw := s.frameworks[id]
	if fw == nil {
		if id == "" {
			id = fmt.Sprintf("%s-%04d", s.m.id, s.frameworkSeq)
			s.frameworkSeq++
			info.Id = &mesospb.FrameworkID{Value: proto.String(id)}
		}
		// An ID the master does not know is accepted: after a master
		// failover, frameworks re-subscribe with the IDs they had.
		fw = &framework{
			id:           id,
			offers:       map[string]*offer{},
			tasks:        map[string]*task{},
			executors:    map[string]map[string]*mesospb.ExecutorInfo{},
			filters:      map[filterKey]*filter{},
			registeredAt: now,
			suppressed:   map[string]bool{},
		}
		s.frameworks[id] = fw
		s.metrics.frameworksSubscribed++
		// Tasks that agents reported for this framework before it came back.
		s.adoptAgentTasks(fw)
	} else {
		fw.reregisteredAt = now
		if fw.stream != nil {
			// One stream per framework: the old one learns why it ends.
			old := fw.stream
			fw.stream = nil
			old.Send(errorEvent("Framework failed over"))
			old.Close()
		}
		// Outstanding offers are void: silently recovered on failover to
		// a new connection (Mesos' _failoverFramework).
		for _, o := range fw.offers {
			s.removeOffer(o, false)
		}
	}
	s.applyFrameworkInfo(fw, info)
	fw.suppressed = map[string]bool{}
	for _, r := range call.GetSubscribe().GetSuppressedRoles() {
		fw.suppressed[r] = true
	}
	fw.stream = st
	fw.disconnectedAt = time.Time{}
	fw.lastHeartbeat = now
	st.Send(&schedulerpb.Event{
		Type: schedulerpb.Event_SUBSCRIBED.Enum(),
		Subscribed: &schedulerpb.Event_Subscribed{
			FrameworkId:              &mesospb.FrameworkID{Value: proto.String(fw.id)},
			HeartbeatIntervalSeconds: proto.Float64(s.cfg.HeartbeatInterval.Seconds()),
			MasterInfo:               s.m.info,
		},
	})
	// Mesos sends a first heartbeat at once.
	st.Send(schedEvent(schedulerpb.Event_HEARTBEAT))
	// Agents learn the new FrameworkInfo (and that the framework is back).
	for _, a := range s.agents {
		if a.frameworks[fw.id] {
			s.sendAgent(a, &agentpb.Event{
				Type:            agentpb.Event_UPDATE_FRAMEWORK.Enum(),
				UpdateFramework: &agentpb.Event_UpdateFramework{FrameworkInfo: fw.info},
			})
		}
	}
	return nil, true
}

// applyFrameworkInfo takes the roles and capabilities of a (re)subscription.
// user and checkpoint changes on re-subscription are ignored, as in Mesos.
func (s *state) applyFrameworkInfo(fw *framework, info *mesospb.FrameworkInfo) {
	if fw.info != nil {
		info.User = fw.info.User
		info.Checkpoint = fw.info.Checkpoint
	}
	fw.info = info
	fw.partitionAware, fw.multiRole, fw.killingState = false, false, false
	for _, c := range info.GetCapabilities() {
		switch c.GetType() {
		case mesospb.FrameworkInfo_Capability_PARTITION_AWARE:
			fw.partitionAware = true
		case mesospb.FrameworkInfo_Capability_MULTI_ROLE:
			fw.multiRole = true
		case mesospb.FrameworkInfo_Capability_TASK_KILLING_STATE:
			fw.killingState = true
		}
	}
	if fw.multiRole {
		fw.roles = append([]string(nil), info.GetRoles()...)
	} else {
		fw.roles = []string{info.GetRole()} // deprecated field, default "*"
	}
}

func errorEvent(msg string) *schedulerpb.Event {
	return &schedulerpb.Event{
		Type:  schedulerpb.Event_ERROR.Enum(),
		Error: &schedulerpb.Event_Error{Message: proto.String(msg)},
	}
}

// disconnectFramework handles the end of a framework's stream (only if st
// is still its current stream): offers are recovered and the failover
// timeout starts.
func (s *state) disconnectFramework(fw *framework, st *eventstream.Stream) {
	if fw.stream != st || st == nil {
		return
	}
	fw.stream = nil
	st.Close()
	fw.disconnectedAt = s.now()
	for _, o := range fw.offers {
		s.removeOffer(o, false)
	}
	if fw.info.GetFailoverTimeout() <= 0 {
		s.removeFramework(fw)
	}
}

// expireFrameworks tears down frameworks disconnected for longer than their
// failover_timeout.
func (s *state) expireFrameworks(now time.Time) {
	for _, id := range s.sortedFrameworkIDs() {
		fw := s.frameworks[id]
		if fw.stream != nil || fw.disconnectedAt.IsZero() {
			continue
		}
		timeout := time.Duration(fw.info.GetFailoverTimeout() * float64(time.Second))
		if now.Sub(fw.disconnectedAt) >= timeout {
			s.m.cfg.Logger.Printf("framework %s (%s) did not come back within its failover timeout of %v; tearing it down", fw.id, fw.info.GetName(), timeout)
			s.removeFramework(fw)
		}
	}
}

// removeFramework tears a framework down (TEARDOWN or failover timeout): its
// tasks are killed by the agents, its offers recovered, and it can never
// subscribe again.
func (s *state) removeFramework(fw *framework) {
	now := s.now()
	if fw.stream != nil {
		fw.stream.Close()
		fw.stream = nil
	}
	for _, o := range fw.offers {
		s.removeOffer(o, false)
	}
	for _, a := range s.agents {
		if a.frameworks[fw.id] || len(a.tasks[fw.id]) > 0 || len(a.executors[fw.id]) > 0 {
			s.sendAgent(a, &agentpb.Event{
				Type:              agentpb.Event_SHUTDOWN_FRAMEWORK.Enum(),
				ShutdownFramework: &agentpb.Event_ShutdownFramework{FrameworkId: fwID(fw.id)},
			})
		}
	}
	for _, t := range fw.tasks {
		if !t.terminalReceived {
			st := s.masterStatus(t, mesospb.TaskState_TASK_KILLED, mesospb.TaskStatus_REASON_FRAMEWORK_REMOVED, "Framework "+fw.id+" removed")
			s.applyStatus(t, st)
		}
		s.forgetTask(t)
	}
	for agentID, execs := range fw.executors {
		if a := s.agents[agentID]; a != nil {
			for execID := range execs {
				s.removeExecutor(a, fw.id, execID)
			}
		}
	}
	fw.unregisteredAt = now
	delete(s.frameworks, fw.id)
	s.removedFrameworks[fw.id] = true
	s.completedFrameworks = append(s.completedFrameworks, fw)
	if n := len(s.completedFrameworks) - s.cfg.MaxCompletedFrameworks; n > 0 {
		s.completedFrameworks = s.completedFrameworks[n:]
	}
	s.metrics.frameworksRemoved++
}

// adoptAgentTasks links tasks that agents reported (on re-registration after
// a master restart) to a framework that re-subscribes.
func (s *state) adoptAgentTasks(fw *framework) {
	for _, a := range s.agents {
		for _, t := range a.tasks[fw.id] {
			t.fw = fw
			fw.tasks[t.t.GetTaskId().GetValue()] = t
			fw.allocated.add(t.role, t.res)
		}
		for execID, e := range a.executors[fw.id] {
			if fw.executors[a.id] == nil {
				fw.executors[a.id] = map[string]*mesospb.ExecutorInfo{}
			}
			fw.executors[a.id][execID] = e.info
			fw.allocated.add(e.role, e.res)
		}
	}
}

func fwID(id string) *mesospb.FrameworkID { return &mesospb.FrameworkID{Value: proto.String(id)} }

// updateFramework applies UPDATE_FRAMEWORK: principal, user and checkpoint
// cannot change; offers of roles the framework leaves are rescinded.
func (s *state) updateFramework(fw *framework, up *schedulerpb.Call_UpdateFramework) string {
	info := proto.Clone(up.GetFrameworkInfo()).(*mesospb.FrameworkInfo)
	if info.GetPrincipal() != fw.info.GetPrincipal() {
		return "Updating 'FrameworkInfo.principal' is unsupported"
	}
	if info.GetUser() != fw.info.GetUser() {
		return "Updating 'FrameworkInfo.user' is unsupported"
	}
	if info.GetCheckpoint() != fw.info.GetCheckpoint() {
		return "Updating 'FrameworkInfo.checkpoint' is unsupported"
	}
	s.applyFrameworkInfo(fw, info)
	keep := map[string]bool{}
	for _, r := range fw.roles {
		keep[r] = true
	}
	for _, o := range fw.offers {
		if !keep[o.role] {
			s.removeOffer(o, true)
		}
	}
	fw.suppressed = map[string]bool{}
	for _, r := range up.GetSuppressedRoles() {
		fw.suppressed[r] = true
	}
	for _, a := range s.agents {
		if a.frameworks[fw.id] {
			s.sendAgent(a, &agentpb.Event{
				Type:            agentpb.Event_UPDATE_FRAMEWORK.Enum(),
				UpdateFramework: &agentpb.Event_UpdateFramework{FrameworkInfo: fw.info},
			})
		}
	}
	return ""
}
