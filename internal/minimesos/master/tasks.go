package master

import (
	"bytes"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

// sendUpdate sends an UPDATE event, stamping the time as Mesos does.
func (s *state) sendUpdate(fw *framework, st *mesospb.TaskStatus) {
	if st.Timestamp == nil {
		st.Timestamp = proto.Float64(float64(s.now().UnixNano()) / 1e9)
	}
	s.metrics.countUpdate(st)
	s.sendFramework(fw, &schedulerpb.Event{
		Type:   schedulerpb.Event_UPDATE.Enum(),
		Update: &schedulerpb.Event_Update{Status: st},
	})
}

// masterStatus builds a status the master generates itself (no uuid: it is
// not retried and must not be acknowledged).
func (s *state) masterStatus(t *task, state mesospb.TaskState, reason mesospb.TaskStatus_Reason, msg string) *mesospb.TaskStatus {
	return &mesospb.TaskStatus{
		TaskId:     t.t.TaskId,
		State:      state.Enum(),
		Message:    proto.String(msg),
		Source:     mesospb.TaskStatus_SOURCE_MASTER.Enum(),
		Reason:     reason.Enum(),
		AgentId:    t.t.AgentId,
		ExecutorId: t.t.ExecutorId,
		Timestamp:  proto.Float64(float64(s.now().UnixNano()) / 1e9),
	}
}

// applyStatus records a task's new state; a terminal state frees its
// resources at once (Mesos does not wait for the acknowledgement).
func (s *state) applyStatus(t *task, st *mesospb.TaskStatus) {
	t.latest = st
	t.t.State = st.State
	t.t.StatusUpdateState = st.State
	t.t.StatusUpdateUuid = st.Uuid
	// Keep a short history, as /state shows it.
	slim := proto.Clone(st).(*mesospb.TaskStatus)
	slim.Data = nil
	t.t.Statuses = append(t.t.Statuses, slim)
	if len(t.t.Statuses) > 10 {
		t.t.Statuses = t.t.Statuses[len(t.t.Statuses)-10:]
	}
	if t.unreachable && st.GetState() != mesospb.TaskState_TASK_UNREACHABLE && st.GetState() != mesospb.TaskState_TASK_LOST {
		t.unreachable = false
	}
	if isTerminal(st.GetState()) && !t.terminalReceived {
		t.terminalReceived = true
		if a := s.agents[t.agent]; a != nil && a.tasks[t.fw.id][t.t.GetTaskId().GetValue()] == t {
			a.free = resources.Add(a.free, t.res)
		}
		t.fw.allocated.sub(t.role, t.res)
		s.metrics.countTerminal(st.GetState())
	}
}

// forgetTask removes a task from the master (after the acknowledgement of
// its terminal update, or when its framework goes away).
func (s *state) forgetTask(t *task) {
	id := t.t.GetTaskId().GetValue()
	if t.fw.tasks[id] == t {
		delete(t.fw.tasks, id)
		t.fw.completedTasks = append(t.fw.completedTasks, t.t)
		if n := len(t.fw.completedTasks) - s.cfg.MaxCompletedTasksPerFramework; n > 0 {
			t.fw.completedTasks = t.fw.completedTasks[n:]
		}
	}
	if a := s.agents[t.agent]; a != nil && a.tasks[t.fw.id][id] == t {
		delete(a.tasks[t.fw.id], id)
	}
}

// statusUpdate handles an update an agent forwards: record it, forward it
// to the framework with its uuid. Duplicates (agent retries) are forwarded
// again: delivery is at least once.
func (s *state) statusUpdate(a *agent, up *agentpb.Call_StatusUpdate) {
	st := proto.Clone(up.GetStatus()).(*mesospb.TaskStatus)
	if st.AgentId == nil {
		st.AgentId = &mesospb.AgentID{Value: proto.String(a.id)}
	}
	fw := s.frameworks[up.GetFrameworkId().GetValue()]
	t := a.tasks[up.GetFrameworkId().GetValue()][st.GetTaskId().GetValue()]
	if t != nil {
		// The master tracks the newest state separately from what the
		// agent delivers in order (status_update_state).
		if !t.terminalReceived || isTerminal(st.GetState()) {
			s.applyStatus(t, st)
		}
	}
	if fw == nil {
		return // the agent retries until the framework is back or gone
	}
	if !fw.partitionAware {
		switch st.GetState() {
		case mesospb.TaskState_TASK_DROPPED, mesospb.TaskState_TASK_UNREACHABLE, mesospb.TaskState_TASK_GONE,
			mesospb.TaskState_TASK_GONE_BY_OPERATOR, mesospb.TaskState_TASK_UNKNOWN:
			st.State = mesospb.TaskState_TASK_LOST.Enum()
		}
	}
	if !fw.killingState && st.GetState() == mesospb.TaskState_TASK_KILLING {
		return
	}
	s.sendUpdate(fw, st)
}

// acknowledge forwards a framework's ACKNOWLEDGE to the agent and removes a
// task whose terminal update is acknowledged.
func (s *state) acknowledge(fw *framework, ack *schedulerpb.Call_Acknowledge) {
	a := s.agents[ack.GetAgentId().GetValue()]
	if a == nil {
		return
	}
	id := ack.GetTaskId().GetValue()
	if t := a.tasks[fw.id][id]; t != nil && t.terminalReceived && bytes.Equal(t.t.GetStatusUpdateUuid(), ack.GetUuid()) {
		s.forgetTask(t)
	}
	s.sendAgent(a, &agentpb.Event{
		Type: agentpb.Event_ACKNOWLEDGE.Enum(),
		Acknowledge: &agentpb.Event_Acknowledge{
			FrameworkId: fwID(fw.id),
			TaskId:      ack.GetTaskId(),
			Uuid:        ack.GetUuid(),
		},
	})
}

// reconcile answers RECONCILE (Mesos' Master::reconcile, §5.4).
func (s *state) reconcile(fw *framework, tasks []*schedulerpb.Call_Reconcile_Task) {
	s.metrics.reconciliations++
	if len(tasks) == 0 {
		for _, t := range fw.tasks {
			s.sendUpdate(fw, s.reconciled(fw, t))
		}
		return
	}
	for _, rt := range tasks {
		if st := s.explicitReconcile(fw, rt.GetTaskId(), rt.GetAgentId()); st != nil {
			s.sendUpdate(fw, st)
		}
	}
}

// reconciled is a known task's latest state as reconciliation reports it:
// no uuid, no data, reason RECONCILIATION.
func (s *state) reconciled(fw *framework, t *task) *mesospb.TaskStatus {
	st := proto.Clone(t.latest).(*mesospb.TaskStatus)
	st.Uuid = nil
	st.Data = nil
	st.Message = proto.String("Reconciliation: Latest task state")
	st.Source = mesospb.TaskStatus_SOURCE_MASTER.Enum()
	st.Reason = mesospb.TaskStatus_REASON_RECONCILIATION.Enum()
	st.Timestamp = proto.Float64(float64(s.now().UnixNano()) / 1e9)
	st.Healthy = nil
	if !fw.partitionAware && st.GetState() == mesospb.TaskState_TASK_UNREACHABLE {
		st.State = mesospb.TaskState_TASK_LOST.Enum()
	}
	return st
}

// explicitReconcile answers for one task; nil means no answer (the agent
// may still re-register after a master failover: the framework retries).
func (s *state) explicitReconcile(fw *framework, taskID *mesospb.TaskID, agentID *mesospb.AgentID) *mesospb.TaskStatus {
	if t := fw.tasks[taskID.GetValue()]; t != nil && (agentID == nil || agentID.GetValue() == t.agent) {
		return s.reconciled(fw, t)
	}
	unknown := func(state mesospb.TaskState, msg string, withAgent bool) *mesospb.TaskStatus {
		st := &mesospb.TaskStatus{
			TaskId:  taskID,
			State:   fw.lostOr(state).Enum(),
			Message: proto.String(msg),
			Source:  mesospb.TaskStatus_SOURCE_MASTER.Enum(),
			Reason:  mesospb.TaskStatus_REASON_RECONCILIATION.Enum(),
		}
		if withAgent {
			st.AgentId = agentID
		}
		return st
	}
	if agentID == nil {
		if len(s.recovered) > 0 {
			return nil
		}
		return unknown(mesospb.TaskState_TASK_UNKNOWN, "Reconciliation: Task is unknown", false)
	}
	id := agentID.GetValue()
	if _, ok := s.recovered[id]; ok {
		return nil
	}
	if _, ok := s.agents[id]; ok {
		return unknown(mesospb.TaskState_TASK_GONE, "Reconciliation: Task is unknown to the agent", true)
	}
	if when, ok := s.unreachable[id]; ok {
		st := unknown(mesospb.TaskState_TASK_UNREACHABLE, "Reconciliation: Task is unreachable", true)
		st.UnreachableTime = &mesospb.TimeInfo{Nanoseconds: proto.Int64(when.UnixNano())}
		return st
	}
	return unknown(mesospb.TaskState_TASK_UNKNOWN, "Reconciliation: Task is unknown", true)
}

// kill handles KILL: forward to the agent; an unknown task is answered as
// explicit reconciliation would.
func (s *state) kill(fw *framework, k *schedulerpb.Call_Kill) {
	t := fw.tasks[k.GetTaskId().GetValue()]
	if t == nil || t.terminalReceived {
		if st := s.explicitReconcile(fw, k.GetTaskId(), k.GetAgentId()); st != nil && t == nil {
			s.sendUpdate(fw, st)
		} else if t != nil {
			s.sendUpdate(fw, s.reconciled(fw, t))
		}
		return
	}
	a := s.agents[t.agent]
	if a == nil || a.stream == nil {
		// The agent is away; it will be told when it re-registers, or its
		// tasks are marked lost when it is removed.
		return
	}
	s.sendAgent(a, &agentpb.Event{
		Type: agentpb.Event_KILL_TASK.Enum(),
		KillTask: &agentpb.Event_KillTask{
			FrameworkId: fwID(fw.id),
			TaskId:      k.GetTaskId(),
			KillPolicy:  k.GetKillPolicy(),
		},
	})
}

func (s *state) shutdownExecutor(fw *framework, sd *schedulerpb.Call_Shutdown) {
	a := s.agents[sd.GetAgentId().GetValue()]
	if a == nil {
		return
	}
	s.sendAgent(a, &agentpb.Event{
		Type: agentpb.Event_SHUTDOWN_EXECUTOR.Enum(),
		ShutdownExecutor: &agentpb.Event_ShutdownExecutor{
			FrameworkId: fwID(fw.id),
			ExecutorId:  sd.GetExecutorId(),
		},
	})
}

func (s *state) frameworkToExecutor(fw *framework, msg *schedulerpb.Call_Message) {
	a := s.agents[msg.GetAgentId().GetValue()]
	if a == nil {
		return // best effort, as in Mesos
	}
	s.metrics.messagesToExecutors++
	s.sendAgent(a, &agentpb.Event{
		Type: agentpb.Event_FRAMEWORK_MESSAGE.Enum(),
		FrameworkMessage: &agentpb.Event_FrameworkMessage{
			FrameworkId: fwID(fw.id),
			ExecutorId:  msg.GetExecutorId(),
			Data:        msg.GetData(),
		},
	})
}

func (s *state) executorToFramework(a *agent, msg *agentpb.Call_FrameworkMessage) {
	fw := s.frameworks[msg.GetFrameworkId().GetValue()]
	if fw == nil {
		return
	}
	s.metrics.messagesToFrameworks++
	s.sendFramework(fw, &schedulerpb.Event{
		Type: schedulerpb.Event_MESSAGE.Enum(),
		Message: &schedulerpb.Event_Message{
			AgentId:    &mesospb.AgentID{Value: proto.String(a.id)},
			ExecutorId: msg.GetExecutorId(),
			Data:       msg.GetData(),
		},
	})
}

// executorExited frees the executor and tells the framework (FAILURE),
// except for the built-in command executor (executor ID = task ID of a
// command task), as Mesos does.
func (s *state) executorExited(a *agent, ee *agentpb.Call_ExecutorExited) {
	fwid := ee.GetFrameworkId().GetValue()
	execID := ee.GetExecutorId().GetValue()
	_, custom := a.executors[fwid][execID]
	s.removeExecutor(a, fwid, execID)
	fw := s.frameworks[fwid]
	if fw == nil || !custom {
		return
	}
	s.sendFramework(fw, &schedulerpb.Event{
		Type: schedulerpb.Event_FAILURE.Enum(),
		Failure: &schedulerpb.Event_Failure{
			AgentId:    &mesospb.AgentID{Value: proto.String(a.id)},
			ExecutorId: ee.GetExecutorId(),
			Status:     proto.Int32(ee.GetStatus()),
		},
	})
}

func nowSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }
