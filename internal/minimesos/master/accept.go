package master

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

// accept applies an ACCEPT call (Mesos' Master::accept): offers are
// validated as a set, then each operation in order; invalid tasks get the
// TaskStatus Mesos sends, valid ones go to the agent; what the operations
// do not use returns to the pool under the call's filter.
func (s *state) accept(fw *framework, acc *schedulerpb.Call_Accept) {
	now := s.now()
	offers, offerErr := s.validateOffers(fw, acc.GetOfferIds())
	if offerErr != "" {
		// Every task of the call is lost or dropped; the valid offers of
		// the call are recovered without a filter.
		for _, o := range offers {
			s.removeOffer(o, false)
		}
		for _, op := range acc.GetOperations() {
			for _, ti := range launchedTasks(op) {
				st := &mesospb.TaskStatus{
					TaskId:  ti.GetTaskId(),
					State:   fw.lostOr(mesospb.TaskState_TASK_DROPPED).Enum(),
					Message: proto.String("Task launched with invalid offers: " + offerErr),
					Source:  mesospb.TaskStatus_SOURCE_MASTER.Enum(),
					Reason:  mesospb.TaskStatus_REASON_INVALID_OFFERS.Enum(),
					AgentId: ti.GetAgentId(),
				}
				s.sendUpdate(fw, st)
			}
		}
		return
	}
	a := offers[0].agent
	role := offers[0].role
	// The pool the operations draw from: the union of the offers, taken
	// back from the offers now.
	var pool resources.Resources
	for _, o := range offers {
		pool = resources.Add(pool, o.res)
		s.removeOffer(o, false)
	}
	// removeOffer gave the resources back to the agent; the tasks launched
	// below take theirs from the agent again.
	pool = resources.WithAllocationRole(pool, role)
	for _, op := range acc.GetOperations() {
		switch op.GetType() {
		case mesospb.Offer_Operation_LAUNCH:
			for _, ti := range op.GetLaunch().GetTaskInfos() {
				pool = s.launch(fw, a, role, pool, ti, nil, now)
			}
		case mesospb.Offer_Operation_LAUNCH_GROUP:
			pool = s.launchGroup(fw, a, role, pool, op.GetLaunchGroup(), now)
		default:
			// Reservations and volumes are not supported by km's master;
			// say so instead of pretending.
			s.m.cfg.Logger.Printf("framework %s: offer operation %s is not supported by km's built-in master; ignored", fw.id, op.GetType())
		}
	}
	s.addFilter(fw, role, a, resources.WithAllocationRole(pool, ""), acc.GetFilters(), now)
	s.metrics.offersAccepted += len(offers)
}

func launchedTasks(op *mesospb.Offer_Operation) []*mesospb.TaskInfo {
	switch op.GetType() {
	case mesospb.Offer_Operation_LAUNCH:
		return op.GetLaunch().GetTaskInfos()
	case mesospb.Offer_Operation_LAUNCH_GROUP:
		return op.GetLaunchGroup().GetTaskGroup().GetTasks()
	}
	return nil
}

// validateOffers checks the offers of one ACCEPT: they exist, belong to the
// framework, are on one agent, share one allocation role and appear once.
// It returns the valid offers found, and the reason the set is invalid.
func (s *state) validateOffers(fw *framework, ids []*mesospb.OfferID) ([]*offer, string) {
	var out []*offer
	seen := map[string]bool{}
	if len(ids) == 0 {
		return nil, "No offers specified"
	}
	for _, id := range ids {
		v := id.GetValue()
		if seen[v] {
			return out, "Offer " + v + " appears more than once"
		}
		seen[v] = true
		o := s.offers[v]
		if o == nil {
			return out, "Offer " + v + " is no longer valid"
		}
		if o.fw != fw {
			return out, "Offer " + v + " has invalid framework " + o.fw.id + " while framework " + fw.id + " is expected"
		}
		if len(out) > 0 && out[0].agent != o.agent {
			return append(out, o), "Aggregated offers must belong to one single agent. Offer " + v + " uses agent " + o.agent.id + " and offer " + out[0].id + " uses agent " + out[0].agent.id
		}
		if len(out) > 0 && out[0].role != o.role {
			return append(out, o), "Aggregated offers must be allocated to the same role. Offer " + v + " uses role " + o.role + " and offer " + out[0].id + " uses role " + out[0].role
		}
		out = append(out, o)
	}
	return out, ""
}

func (fw *framework) lostOr(aware mesospb.TaskState) mesospb.TaskState {
	if fw.partitionAware {
		return aware
	}
	return mesospb.TaskState_TASK_LOST
}

// launch validates one task and, if valid, records it as STAGING and sends
// it to the agent. It returns what is left of the pool.
func (s *state) launch(fw *framework, a *agent, role string, pool resources.Resources, ti *mesospb.TaskInfo, group *mesospb.ExecutorInfo, now time.Time) resources.Resources {
	ti = proto.Clone(ti).(*mesospb.TaskInfo)
	if msg := s.validateTask(fw, a, role, pool, ti); msg != "" {
		s.taskError(fw, ti, mesospb.TaskStatus_REASON_TASK_INVALID, msg)
		return pool
	}
	s.fillExecutorFramework(fw, ti.GetExecutor())
	need, newExec := s.taskNeeds(fw, a, role, ti.GetResources(), ti.GetExecutor())
	pool = resources.Subtract(pool, need)
	t := s.addTask(fw, a, role, ti, newExec)
	s.sendAgent(a, &agentpb.Event{
		Type:    agentpb.Event_RUN_TASK.Enum(),
		RunTask: &agentpb.Event_RunTask{FrameworkInfo: fw.info, Task: ti},
	})
	a.frameworks[fw.id] = true
	_ = t
	return pool
}

// launchGroup validates a task group as a whole: one invalid task fails
// them all (REASON_TASK_GROUP_INVALID), as in Mesos.
func (s *state) launchGroup(fw *framework, a *agent, role string, pool resources.Resources, lg *mesospb.Offer_Operation_LaunchGroup, now time.Time) resources.Resources {
	ex := proto.Clone(lg.GetExecutor()).(*mesospb.ExecutorInfo)
	s.fillExecutorFramework(fw, ex)
	tasks := lg.GetTaskGroup().GetTasks()
	fail := func(msg string) resources.Resources {
		for _, ti := range tasks {
			s.taskError(fw, ti, mesospb.TaskStatus_REASON_TASK_GROUP_INVALID, msg)
		}
		return pool
	}
	if len(tasks) == 0 {
		return fail("Task group is empty")
	}
	if ex.GetType() == mesospb.ExecutorInfo_DEFAULT && ex.Command != nil {
		return fail("'ExecutorInfo.command' must not be set for 'DEFAULT' executor")
	}
	if ex.GetType() != mesospb.ExecutorInfo_DEFAULT && ex.Command == nil {
		return fail("'ExecutorInfo.command' must be set for 'CUSTOM' executor")
	}
	if ex.GetContainer().GetType() == mesospb.ContainerInfo_DOCKER {
		return fail("Docker ContainerInfo is not supported on the executor")
	}
	var all resources.Resources
	ids := map[string]bool{}
	for _, ti := range tasks {
		if ti.Executor != nil {
			return fail("'TaskInfo.executor' must not be set")
		}
		if ids[ti.GetTaskId().GetValue()] {
			return fail("Duplicate task ID " + ti.GetTaskId().GetValue() + " in the task group")
		}
		ids[ti.GetTaskId().GetValue()] = true
		if msg := s.validateTaskBasics(fw, a, role, ti); msg != "" {
			return fail(msg)
		}
		all = resources.Add(all, resources.WithAllocationRole(ti.GetResources(), role))
	}
	if msg := s.validateExecutor(fw, a, ex); msg != "" {
		return fail(msg)
	}
	need, newExec := s.taskNeeds(fw, a, role, all, ex)
	if !resources.Contains(pool, need) {
		return fail(fmt.Sprintf("Total resources %s required by task group and its executor are more than available %s", resources.Describe(need), resources.Describe(pool)))
	}
	pool = resources.Subtract(pool, need)
	for i, ti := range tasks {
		ti = proto.Clone(ti).(*mesospb.TaskInfo)
		ti.Executor = ex
		s.addTask(fw, a, role, ti, newExec && i == 0)
	}
	s.sendAgent(a, &agentpb.Event{
		Type: agentpb.Event_RUN_TASK_GROUP.Enum(),
		RunTaskGroup: &agentpb.Event_RunTaskGroup{
			FrameworkInfo: fw.info,
			ExecutorInfo:  ex,
			TaskGroup:     lg.GetTaskGroup(),
		},
	})
	a.frameworks[fw.id] = true
	return pool
}

func (s *state) fillExecutorFramework(fw *framework, ex *mesospb.ExecutorInfo) {
	if ex != nil && ex.FrameworkId == nil {
		ex.FrameworkId = fwID(fw.id)
	}
}

// taskNeeds is what a task takes from the pool: its resources, plus its
// executor's when that executor is not running on the agent yet.
func (s *state) taskNeeds(fw *framework, a *agent, role string, taskRes resources.Resources, ex *mesospb.ExecutorInfo) (resources.Resources, bool) {
	need := resources.WithAllocationRole(taskRes, role)
	if ex == nil {
		return need, false
	}
	if _, running := a.executors[fw.id][ex.GetExecutorId().GetValue()]; running {
		return need, false
	}
	return resources.Add(need, resources.WithAllocationRole(ex.GetResources(), role)), true
}

// validateTask is Mesos' task validation for LAUNCH, in its order, with its
// messages.
func (s *state) validateTask(fw *framework, a *agent, role string, pool resources.Resources, ti *mesospb.TaskInfo) string {
	if msg := s.validateTaskBasics(fw, a, role, ti); msg != "" {
		return msg
	}
	if (ti.Executor == nil) == (ti.Command == nil) {
		return "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
	}
	if ex := ti.GetExecutor(); ex != nil {
		if ex.GetType() == mesospb.ExecutorInfo_DEFAULT {
			return "'ExecutorInfo.type' must be 'CUSTOM' for a task launched with LAUNCH; use LAUNCH_GROUP for the 'DEFAULT' executor"
		}
		if ex.Command == nil {
			return "'ExecutorInfo.command' must be set for 'CUSTOM' executor"
		}
		if msg := s.validateExecutor(fw, a, ex); msg != "" {
			return msg
		}
	}
	need, _ := s.taskNeeds(fw, a, role, ti.GetResources(), ti.GetExecutor())
	if !resources.Contains(pool, need) {
		return fmt.Sprintf("Total resources %s required by task and its executor is more than available %s", resources.Describe(need), resources.Describe(pool))
	}
	return ""
}

func (s *state) validateTaskBasics(fw *framework, a *agent, role string, ti *mesospb.TaskInfo) string {
	id := ti.GetTaskId().GetValue()
	if msg := validateID(id); msg != "" {
		return msg
	}
	if _, dup := fw.tasks[id]; dup {
		return "Task has duplicate ID: " + id
	}
	if ti.GetAgentId().GetValue() != a.id {
		return "Task uses invalid agent " + ti.GetAgentId().GetValue() + " while agent " + a.id + " is expected"
	}
	if len(ti.GetResources()) == 0 {
		return "Task uses no resources"
	}
	for _, r := range ti.GetResources() {
		if ar := r.GetAllocationInfo().GetRole(); ar != "" && ar != role {
			return "Task resource " + r.GetName() + " is allocated to role " + ar + " but the offers are allocated to role " + role
		}
	}
	return ""
}

// validateExecutor: one ExecutorInfo per executor ID on an agent.
func (s *state) validateExecutor(fw *framework, a *agent, ex *mesospb.ExecutorInfo) string {
	if msg := validateID(ex.GetExecutorId().GetValue()); msg != "" {
		return "Executor ID: " + msg
	}
	if f := ex.GetFrameworkId().GetValue(); f != "" && f != fw.id {
		return "ExecutorInfo has an invalid FrameworkID (Actual: " + f + " vs Expected: " + fw.id + ")"
	}
	if running, ok := a.executors[fw.id][ex.GetExecutorId().GetValue()]; ok {
		filled := proto.Clone(ex).(*mesospb.ExecutorInfo)
		s.fillExecutorFramework(fw, filled)
		if !sameExecutor(running.info, filled) {
			return "ExecutorInfo is not compatible with existing ExecutorInfo with same ExecutorID"
		}
	}
	return ""
}

// sameExecutor compares what Mesos compares (type, ID, data, resources,
// command, framework, name, source, container, discovery).
func sameExecutor(a, b *mesospb.ExecutorInfo) bool {
	norm := func(e *mesospb.ExecutorInfo) *mesospb.ExecutorInfo {
		c := proto.Clone(e).(*mesospb.ExecutorInfo)
		c.Resources = nil
		c.Labels = nil
		c.ShutdownGracePeriod = nil
		return c
	}
	return proto.Equal(norm(a), norm(b)) &&
		resources.Equal(resources.WithAllocationRole(a.GetResources(), ""), resources.WithAllocationRole(b.GetResources(), ""))
}

// validateID is Mesos' common ID validation (task and executor IDs).
func validateID(id string) string {
	if id == "" {
		return "ID must not be empty"
	}
	if len(id) > 255 {
		return "ID must not be greater than 255 characters"
	}
	if id == "." || id == ".." {
		return "'" + id + "' is disallowed"
	}
	if strings.ContainsAny(id, "/\\") || strings.ContainsFunc(id, func(r rune) bool {
		return r < 0x20 || r == 0x7f || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	}) {
		return "'" + id + "' contains invalid characters"
	}
	return ""
}

func (s *state) taskError(fw *framework, ti *mesospb.TaskInfo, reason mesospb.TaskStatus_Reason, msg string) {
	s.metrics.invalidTasks++
	s.sendUpdate(fw, &mesospb.TaskStatus{
		TaskId:  ti.GetTaskId(),
		State:   mesospb.TaskState_TASK_ERROR.Enum(),
		Message: proto.String(msg),
		Source:  mesospb.TaskStatus_SOURCE_MASTER.Enum(),
		Reason:  reason.Enum(),
		AgentId: ti.GetAgentId(),
	})
}

// addTask records a valid task as STAGING on the agent and the framework.
func (s *state) addTask(fw *framework, a *agent, role string, ti *mesospb.TaskInfo, newExecutor bool) *task {
	res := resources.WithAllocationRole(ti.GetResources(), "")
	t := &task{
		fw:    fw,
		agent: a.id,
		role:  role,
		res:   res,
		t: &mesospb.Task{
			Name:        ti.Name,
			TaskId:      ti.TaskId,
			FrameworkId: fwID(fw.id),
			AgentId:     ti.AgentId,
			State:       mesospb.TaskState_TASK_STAGING.Enum(),
			Resources:   resources.WithAllocationRole(ti.GetResources(), role),
			Labels:      ti.Labels,
			Discovery:   ti.Discovery,
			Container:   ti.Container,
			HealthCheck: ti.HealthCheck,
			KillPolicy:  ti.KillPolicy,
			User:        proto.String(fw.info.GetUser()),
			Limits:      ti.Limits,
		},
	}
	if ex := ti.GetExecutor(); ex != nil {
		t.t.ExecutorId = ex.ExecutorId
		if newExecutor {
			s.addExecutor(fw, a, role, ex)
		}
	}
	t.latest = &mesospb.TaskStatus{TaskId: ti.TaskId, State: mesospb.TaskState_TASK_STAGING.Enum(), Source: mesospb.TaskStatus_SOURCE_MASTER.Enum(), AgentId: ti.AgentId}
	fw.tasks[ti.GetTaskId().GetValue()] = t
	if a.tasks[fw.id] == nil {
		a.tasks[fw.id] = map[string]*task{}
	}
	a.tasks[fw.id][ti.GetTaskId().GetValue()] = t
	a.free = resources.Subtract(a.free, res)
	fw.allocated.add(role, res)
	s.metrics.tasksStaging++
	return t
}

func (s *state) addExecutor(fw *framework, a *agent, role string, ex *mesospb.ExecutorInfo) {
	res := resources.WithAllocationRole(ex.GetResources(), "")
	if a.executors[fw.id] == nil {
		a.executors[fw.id] = map[string]*executor{}
	}
	a.executors[fw.id][ex.GetExecutorId().GetValue()] = &executor{info: ex, res: res, role: role}
	if fw.executors[a.id] == nil {
		fw.executors[a.id] = map[string]*mesospb.ExecutorInfo{}
	}
	fw.executors[a.id][ex.GetExecutorId().GetValue()] = ex
	a.free = resources.Subtract(a.free, res)
	fw.allocated.add(role, res)
}

// removeExecutor frees an executor's resources (it exited or was shut
// down).
func (s *state) removeExecutor(a *agent, fwid, execID string) {
	e := a.executors[fwid][execID]
	if e == nil {
		return
	}
	delete(a.executors[fwid], execID)
	a.free = resources.Add(a.free, e.res)
	if fw := s.frameworks[fwid]; fw != nil {
		delete(fw.executors[a.id], execID)
		fw.allocated.sub(e.role, e.res)
	}
}
