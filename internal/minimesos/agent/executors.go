package agent

import (
	"context"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/uuid"
	"github.com/k8sm/k8sm/internal/minimesos/eventstream"
)

// Mesos gives the command executor this much on top of its task
// (DEFAULT_EXECUTOR_CPUS, DEFAULT_EXECUTOR_MEM).
const (
	commandExecutorCPUs = 0.1
	commandExecutorMem  = 32
)

// How much history the operator endpoints keep.
const (
	maxCompletedExecutors  = 150 // per framework, Mesos' default
	maxCompletedTasks      = 200 // per executor
	maxCompletedFrameworks = 50
	maxStatusesPerTask     = 20
)

type executorState int

const (
	// registering: being fetched and started, started but not subscribed,
	// or recovered from a checkpoint and not re-subscribed yet. Tasks wait
	// in the queue.
	registering executorState = iota
	running
	// terminating: SHUTDOWN sent (or the agent gave up on it); its process
	// group is killed when the grace period ends.
	terminating
	terminated
)

func (s executorState) String() string {
	return [...]string{"REGISTERING", "RUNNING", "TERMINATING", "TERMINATED"}[s]
}

type framework struct {
	id          string
	info        *mesospb.FrameworkInfo
	executors   map[string]*executor
	completed   []*executor
	terminating bool // SHUTDOWN_FRAMEWORK: its executors are going away
}

func (fw *framework) checkpoint() bool { return fw.info.GetCheckpoint() }

func (fw *framework) capable(c mesospb.FrameworkInfo_Capability_Type) bool {
	for _, x := range fw.info.GetCapabilities() {
		if x.GetType() == c {
			return true
		}
	}
	return false
}

// lostOr is state for partition-aware frameworks, TASK_LOST for the others,
// as Mesos answers them.
func (fw *framework) lostOr(state mesospb.TaskState) mesospb.TaskState {
	if fw.capable(mesospb.FrameworkInfo_Capability_PARTITION_AWARE) {
		return state
	}
	return mesospb.TaskState_TASK_LOST
}

type executor struct {
	fw          *framework
	id          string
	info        *mesospb.ExecutorInfo
	command     bool // the built-in command executor of one command task
	containerID string
	dir         string // sandbox
	pid         int    // also its process group
	user        string // run as this user ("" = the agent's)
	state       executorState
	recovered   bool // from a checkpoint: not a child of this agent process
	stream      *eventstream.Stream
	queue       []launchItem // waiting for SUBSCRIBE, in arrival order
	tasks       map[string]*task
	completed   []*task
	// everSentTask: a LAUNCH went out (Mesos shuts down an executor whose
	// every queued task was killed before it got one).
	everSentTask bool
	// pending is why the agent ends the executor, for its tasks' updates.
	pending      *termination
	launchCancel context.CancelFunc
	regTimer     Timer
	stopTimer    Timer
	exited       chan struct{} // closed once its termination is handled
	exitStatus   int
	startedAt    time.Time
}

type launchItem struct {
	task  *mesospb.TaskInfo
	group *mesospb.TaskGroupInfo
}

func (l launchItem) tasks() []*mesospb.TaskInfo {
	if l.group != nil {
		return l.group.GetTasks()
	}
	return []*mesospb.TaskInfo{l.task}
}

func (l launchItem) has(taskID string) bool {
	for _, t := range l.tasks() {
		if t.GetTaskId().GetValue() == taskID {
			return true
		}
	}
	return false
}

type task struct {
	info     *mesospb.TaskInfo
	state    mesospb.TaskState
	statuses []*mesospb.TaskStatus
	queued   bool // not yet given to the executor
}

type termination struct {
	state   mesospb.TaskState
	reason  mesospb.TaskStatus_Reason
	message string
}

func isTerminal(s mesospb.TaskState) bool {
	switch s {
	case mesospb.TaskState_TASK_FINISHED, mesospb.TaskState_TASK_FAILED, mesospb.TaskState_TASK_KILLED,
		mesospb.TaskState_TASK_ERROR, mesospb.TaskState_TASK_LOST, mesospb.TaskState_TASK_DROPPED, mesospb.TaskState_TASK_GONE:
		return true
	}
	return false
}

// grace is the executor's shutdown grace period: its ExecutorInfo's, else
// --executor_shutdown_grace_period.
func (a *Agent) grace(ei *mesospb.ExecutorInfo) time.Duration {
	if g := ei.GetShutdownGracePeriod(); g != nil && g.GetNanoseconds() >= 0 {
		return time.Duration(g.GetNanoseconds())
	}
	return a.cfg.ExecutorShutdownGracePeriod
}

func (e *executor) liveTasks() int {
	n := 0
	for _, t := range e.tasks {
		if !isTerminal(t.state) {
			n++
		}
	}
	return n
}

func sortedTaskIDs(m map[string]*task) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// commandExecutorInfo is the ExecutorInfo Mesos makes for a command task
// (slave.cpp getExecutorInfo): executor ID = task ID, a name describing the
// command, the task's URIs, environment, labels, discovery and user, and a
// grace period that leaves the command executor time to escalate its kill
// policy.
func (a *Agent) commandExecutorInfo(fi *mesospb.FrameworkInfo, t *mesospb.TaskInfo) *mesospb.ExecutorInfo {
	cmd := t.GetCommand()
	name := "(Task: " + t.GetTaskId().GetValue() + ") "
	if cmd.GetShell() {
		if cmd.Value == nil {
			name += "(Command: NO COMMAND)"
		} else if v := cmd.GetValue(); len(v) > 15 {
			name += "(Command: sh -c '" + v[:12] + "...')"
		} else {
			name += "(Command: sh -c '" + v + "')"
		}
	} else {
		if cmd.Value == nil {
			name += "(Command: NO EXECUTABLE)"
		} else if args := cmd.GetValue() + ", " + strings.Join(cmd.GetArguments(), ", "); len(args) > 15 {
			name += "(Command: [" + args[:12] + "...])"
		} else {
			name += "(Command: [" + args + "])"
		}
	}
	ei := &mesospb.ExecutorInfo{
		ExecutorId:  &mesospb.ExecutorID{Value: proto.String(t.GetTaskId().GetValue())},
		FrameworkId: fi.GetId(),
		Name:        proto.String("Command Executor " + name),
		Source:      proto.String(t.GetTaskId().GetValue()),
		Command: &mesospb.CommandInfo{
			Uris:        cmd.GetUris(),
			Environment: cmd.GetEnvironment(),
			Shell:       proto.Bool(false),
			Value:       proto.String(a.cfg.KMBinary),
			Arguments:   []string{a.cfg.KMBinary, "mesos", "command-executor"},
			User:        cmd.User,
		},
		Container: t.GetContainer(),
		Labels:    t.GetLabels(),
		Discovery: t.GetDiscovery(),
		Resources: resources.Resources{
			resources.ScalarResource("cpus", commandExecutorCPUs, "*"),
			resources.ScalarResource("mem", commandExecutorMem, "*"),
		},
	}
	if role := resources.AllocationRole(t.GetResources()); role != "" {
		ei.Resources = resources.WithAllocationRole(ei.Resources, role)
	}
	if g := t.GetKillPolicy().GetGracePeriod(); g != nil {
		ei.ShutdownGracePeriod = &mesospb.DurationInfo{Nanoseconds: proto.Int64(g.GetNanoseconds() + int64(2*time.Second))}
	}
	return ei
}

// frameworkLocked finds or adds a framework, taking the newest
// FrameworkInfo.
func (a *Agent) frameworkLocked(fi *mesospb.FrameworkInfo) *framework {
	id := fi.GetId().GetValue()
	fw := a.frameworks[id]
	switch {
	case fw == nil:
		fw = &framework{id: id, info: fi, executors: map[string]*executor{}}
		a.frameworks[id] = fw
	case !proto.Equal(fw.info, fi):
		fw.info = fi
	default:
		return fw
	}
	a.checkpointFrameworkLocked(fw)
	return fw
}

// runTask is the master's RUN_TASK: a task for a custom executor (started
// if not running) or a command task for the command executor.
func (a *Agent) runTask(fi *mesospb.FrameworkInfo, t *mesospb.TaskInfo) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ei, command := t.GetExecutor(), false
	if ei == nil {
		ei, command = a.commandExecutorInfo(fi, t), true
	}
	a.runLocked(fi, ei, command, launchItem{task: t})
}

// runTaskGroup is the master's RUN_TASK_GROUP (LAUNCH_GROUP to the
// executor).
func (a *Agent) runTaskGroup(fi *mesospb.FrameworkInfo, ei *mesospb.ExecutorInfo, g *mesospb.TaskGroupInfo) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.runLocked(fi, ei, false, launchItem{group: g})
}

func (a *Agent) runLocked(fi *mesospb.FrameworkInfo, ei *mesospb.ExecutorInfo, command bool, item launchItem) {
	fwID := fi.GetId().GetValue()
	if a.terminating {
		a.log.Printf("ignoring tasks of framework %s: the agent is shutting down", fwID)
		return
	}
	fw := a.frameworkLocked(fi)
	if fw.terminating {
		a.log.Printf("ignoring tasks of framework %s: it is shutting down", fwID)
		return
	}
	ei = proto.Clone(ei).(*mesospb.ExecutorInfo)
	if ei.FrameworkId == nil {
		ei.FrameworkId = fi.GetId()
	}
	e := fw.executors[ei.GetExecutorId().GetValue()]
	fail := func(state mesospb.TaskState, reason mesospb.TaskStatus_Reason, msg string) {
		for _, t := range item.tasks() {
			st := a.agentStatusLocked(t.GetTaskId(), ei.GetExecutorId(), state, reason, msg)
			a.statusUpdateLocked(fw, st, nil, t)
		}
		a.maybeRemoveFrameworkLocked(fw)
	}
	if e != nil && e.state >= terminating {
		fail(fw.lostOr(mesospb.TaskState_TASK_DROPPED), mesospb.TaskStatus_REASON_EXECUTOR_TERMINATED, "Executor terminating")
		return
	}
	if e == nil && ei.GetType() == mesospb.ExecutorInfo_DEFAULT && ei.Command == nil {
		fail(mesospb.TaskState_TASK_FAILED, mesospb.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED,
			"km's agent has no default executor: give the task group a custom executor (ExecutorInfo type CUSTOM with a command)")
		return
	}
	if e == nil {
		e = a.newExecutorLocked(fw, ei, command)
	}
	for _, t := range item.tasks() {
		e.tasks[t.GetTaskId().GetValue()] = &task{info: t, state: mesospb.TaskState_TASK_STAGING, queued: true}
		a.checkpointTaskLocked(e, t)
	}
	if e.state == running && e.stream != nil {
		a.deliverLocked(e, item)
		return
	}
	e.queue = append(e.queue, item)
}

// deliverLocked sends LAUNCH (or LAUNCH_GROUP) to a subscribed executor.
func (a *Agent) deliverLocked(e *executor, item launchItem) {
	for _, ti := range item.tasks() {
		if t := e.tasks[ti.GetTaskId().GetValue()]; t != nil {
			t.queued = false
		}
	}
	e.everSentTask = true
	if item.group != nil {
		e.stream.Send(&executorpb.Event{Type: executorpb.Event_LAUNCH_GROUP.Enum(), LaunchGroup: &executorpb.Event_LaunchGroup{TaskGroup: item.group}})
		return
	}
	e.stream.Send(&executorpb.Event{Type: executorpb.Event_LAUNCH.Enum(), Launch: &executorpb.Event_Launch{Task: item.task}})
}

func (a *Agent) newExecutorLocked(fw *framework, ei *mesospb.ExecutorInfo, command bool) *executor {
	e := &executor{
		fw: fw, id: ei.GetExecutorId().GetValue(), info: ei, command: command,
		containerID: uuid.NewString(), tasks: map[string]*task{}, exited: make(chan struct{}),
		startedAt: a.clock.Now(),
	}
	e.dir = a.sandboxDir(fw.id, e.id, e.containerID)
	fw.executors[e.id] = e
	a.metrics.executorsLaunched++
	ctx, cancel := context.WithCancel(context.Background())
	e.launchCancel = cancel
	a.checkpointExecutorLocked(e)
	env := a.executorEnvLocked(e)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.launchExecutor(ctx, e, env)
	}()
	return e
}

// agentStatusLocked makes a status update of the agent's own (SOURCE_AGENT)
// with a fresh uuid, as Mesos' createStatusUpdate does.
func (a *Agent) agentStatusLocked(taskID *mesospb.TaskID, execID *mesospb.ExecutorID, state mesospb.TaskState, reason mesospb.TaskStatus_Reason, msg string) *mesospb.TaskStatus {
	st := &mesospb.TaskStatus{
		TaskId:     taskID,
		State:      state.Enum(),
		Message:    proto.String(msg),
		Source:     mesospb.TaskStatus_SOURCE_AGENT.Enum(),
		Reason:     reason.Enum(),
		AgentId:    &mesospb.AgentID{Value: proto.String(a.agentID)},
		ExecutorId: execID,
		Timestamp:  proto.Float64(float64(a.clock.Now().UnixNano()) / 1e9),
		Uuid:       uuid.New(),
	}
	return st
}

// findTaskLocked finds a task among the framework's executors, live ones
// first.
func (fw *framework) findTask(taskID string) (*executor, *task) {
	for _, e := range fw.executors {
		if t := e.tasks[taskID]; t != nil {
			return e, t
		}
	}
	for i := len(fw.completed) - 1; i >= 0; i-- {
		if t := fw.completed[i].tasks[taskID]; t != nil {
			return fw.completed[i], t
		}
	}
	return nil, nil
}

// statusUpdateLocked hands an update (from an executor or the agent) to the
// status update manager, which forwards it to the master until the
// framework acknowledges it. The task takes the update's state at once (a
// terminal state frees its resources). It reports whether the update was
// taken; duplicates and updates after a terminal one are not.
// ti is the task when the agent does not know it yet (a launch refused).
func (a *Agent) statusUpdateLocked(fw *framework, st *mesospb.TaskStatus, e *executor, ti *mesospb.TaskInfo) bool {
	if fw.terminating {
		a.log.Printf("ignoring %s of task %s: framework %s is shutting down", st.GetState(), st.GetTaskId().GetValue(), fw.id)
		a.metrics.invalidUpdates++
		return false
	}
	taskID := st.GetTaskId().GetValue()
	var t *task
	if e != nil {
		t = e.tasks[taskID]
	} else {
		e, t = fw.findTask(taskID)
	}
	file := ""
	if fw.checkpoint() && e != nil && t != nil {
		file = a.taskUpdatesFile(e, taskID)
	}
	if ok, why := a.sum.add(fw.id, st, file); !ok {
		a.log.Printf("ignoring %s (uuid %s) of task %s of framework %s: %s", st.GetState(), uuid.String(st.GetUuid()), taskID, fw.id, why)
		return false
	}
	a.metrics.validUpdates++
	if t == nil && ti != nil {
		a.sum.attach(fw.id, taskID, ti)
	}
	if t != nil {
		t.state = st.GetState()
		t.statuses = append(t.statuses, st)
		if len(t.statuses) > maxStatusesPerTask {
			t.statuses = t.statuses[len(t.statuses)-maxStatusesPerTask:]
		}
		a.sum.attach(fw.id, taskID, t.info)
	}
	a.persistStreamLocked(fw.id, taskID)
	a.kickUpdates()
	return true
}

// acknowledge is the master's ACKNOWLEDGE: the framework has the update.
// The stream moves on; a task whose terminal update is acknowledged is
// complete.
func (a *Agent) acknowledge(fwID, taskID string, id []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st, done, err := a.sum.ack(fwID, taskID, id, a.clock.Now())
	if err != "" {
		a.log.Printf("acknowledgement of task %s of framework %s (uuid %s) ignored: %s", taskID, fwID, uuid.String(id), err)
		return
	}
	fw := a.frameworks[fwID]
	a.persistStreamLocked(fwID, taskID)
	if done && fw != nil && isTerminal(st.GetState()) {
		if e, t := fw.findTask(taskID); t != nil {
			delete(e.tasks, taskID)
			e.completed = append(e.completed, t)
			if len(e.completed) > maxCompletedTasks {
				e.completed = e.completed[len(e.completed)-maxCompletedTasks:]
			}
			a.removeTaskCheckpointLocked(e, taskID)
			if e.state == terminated && len(e.tasks) == 0 {
				a.removeRunCheckpointLocked(e)
			}
		}
		a.maybeRemoveFrameworkLocked(fw)
	}
	a.kickUpdates()
}

// killTask is the master's KILL_TASK (Mesos' Slave::killTask).
func (a *Agent) killTask(fwID, taskID string, policy *mesospb.KillPolicy) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fw := a.frameworks[fwID]
	if fw == nil || fw.terminating || a.terminating {
		a.log.Printf("ignoring the kill of task %s: framework %s is not running here", taskID, fwID)
		return
	}
	var e *executor
	var t *task
	for _, x := range fw.executors {
		if x.tasks[taskID] != nil {
			e, t = x, x.tasks[taskID]
		}
	}
	if e == nil {
		a.log.Printf("cannot kill task %s of framework %s: no executor of it runs here", taskID, fwID)
		st := a.agentStatusLocked(&mesospb.TaskID{Value: proto.String(taskID)}, nil, fw.lostOr(mesospb.TaskState_TASK_DROPPED),
			mesospb.TaskStatus_REASON_EXECUTOR_TERMINATED, "Cannot find executor")
		a.statusUpdateLocked(fw, st, nil, &mesospb.TaskInfo{Name: proto.String(taskID), TaskId: st.TaskId, AgentId: st.AgentId})
		return
	}
	switch {
	case e.state >= terminating:
		a.log.Printf("ignoring the kill of task %s: executor %s is %s", taskID, e.id, e.state)
	case t.queued:
		a.killQueuedLocked(e, taskID)
		if !e.everSentTask && len(e.queue) == 0 {
			a.log.Printf("shutting down executor %s of framework %s: every task queued for it was killed before delivery", e.id, fwID)
			a.shutdownExecutorLocked(e)
		}
	case isTerminal(t.state):
		a.log.Printf("ignoring the kill of task %s: it is already %s", taskID, t.state)
	case e.stream == nil:
		// A checkpointing framework's executor between two subscriptions:
		// Mesos drops the kill too; the framework retries it.
		a.log.Printf("dropping the kill of task %s: executor %s is not connected", taskID, e.id)
	default:
		e.stream.Send(&executorpb.Event{Type: executorpb.Event_KILL.Enum(), Kill: &executorpb.Event_Kill{TaskId: t.info.TaskId, KillPolicy: policy}})
	}
}

// killQueuedLocked ends a task (and the rest of its group) that never
// reached the executor: TASK_KILLED, REASON_TASK_KILLED_DURING_LAUNCH.
func (a *Agent) killQueuedLocked(e *executor, taskID string) {
	for i, item := range e.queue {
		if !item.has(taskID) {
			continue
		}
		e.queue = append(e.queue[:i:i], e.queue[i+1:]...)
		msg := "Killed before delivery to the executor"
		if item.group != nil {
			msg = "A task within the task group was killed before delivery to the executor"
		}
		for _, ti := range item.tasks() {
			st := a.agentStatusLocked(ti.TaskId, e.info.ExecutorId, mesospb.TaskState_TASK_KILLED, mesospb.TaskStatus_REASON_TASK_KILLED_DURING_LAUNCH, msg)
			if t := e.tasks[ti.GetTaskId().GetValue()]; t != nil {
				t.queued = false
			}
			a.statusUpdateLocked(e.fw, st, e, nil)
		}
		return
	}
}

// shutdownExecutor is the master's SHUTDOWN_EXECUTOR.
func (a *Agent) shutdownExecutor(fwID, execID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fw := a.frameworks[fwID]
	if fw == nil || fw.executors[execID] == nil {
		a.log.Printf("ignoring the shutdown of unknown executor %s of framework %s", execID, fwID)
		return
	}
	a.shutdownExecutorLocked(fw.executors[execID])
}

// shutdownExecutorLocked sends SHUTDOWN; when the grace period (the
// ExecutorInfo's, else the flag's) ends, the executor's whole process group
// is killed.
func (a *Agent) shutdownExecutorLocked(e *executor) {
	if e.state >= terminating {
		return
	}
	a.log.Printf("shutting down executor %s of framework %s", e.id, e.fw.id)
	e.state = terminating
	if e.stream != nil {
		e.stream.Send(&executorpb.Event{Type: executorpb.Event_SHUTDOWN.Enum()})
	}
	if e.launchCancel != nil {
		e.launchCancel() // a fetch in progress stops
	}
	grace := a.grace(e.info)
	e.stopTimer = a.clock.AfterFunc(grace, func() {
		a.mu.Lock()
		due := e.state == terminating
		a.mu.Unlock()
		if due {
			a.log.Printf("executor %s of framework %s did not exit within its grace period of %v: killing its processes", e.id, e.fw.id, grace)
			a.destroy(e)
		}
	})
}

// shutdownFramework is the master's SHUTDOWN_FRAMEWORK: its executors are
// shut down and its updates dropped (it cannot acknowledge them anymore).
func (a *Agent) shutdownFramework(fwID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fw := a.frameworks[fwID]
	if fw == nil {
		return
	}
	a.shutdownFrameworkLocked(fw)
}

func (a *Agent) shutdownFrameworkLocked(fw *framework) {
	a.log.Printf("shutting down framework %s", fw.id)
	fw.terminating = true
	a.sum.dropFramework(fw.id)
	for _, e := range fw.executors {
		e.queue = nil
		a.shutdownExecutorLocked(e)
	}
	a.maybeRemoveFrameworkLocked(fw)
}

// maybeRemoveFrameworkLocked forgets a framework with no executors and no
// unacknowledged updates.
func (a *Agent) maybeRemoveFrameworkLocked(fw *framework) {
	if len(fw.executors) > 0 || a.sum.hasFramework(fw.id) || a.frameworks[fw.id] != fw {
		return
	}
	delete(a.frameworks, fw.id)
	a.completedFw = append(a.completedFw, fw)
	if len(a.completedFw) > maxCompletedFrameworks {
		a.completedFw = a.completedFw[len(a.completedFw)-maxCompletedFrameworks:]
	}
	a.removeFrameworkCheckpointLocked(fw)
}

// registrationTimedOut: an executor that did not subscribe within
// --executor_registration_timeout is destroyed; its tasks fail with
// REASON_EXECUTOR_REGISTRATION_TIMEOUT.
func (a *Agent) registrationTimedOut(e *executor) {
	a.mu.Lock()
	if e.state != registering {
		a.mu.Unlock()
		return
	}
	a.log.Printf("executor %s of framework %s did not subscribe within %v: destroying it", e.id, e.fw.id, a.cfg.ExecutorRegistrationTimeout)
	e.state = terminating
	e.pending = &termination{mesospb.TaskState_TASK_FAILED, mesospb.TaskStatus_REASON_EXECUTOR_REGISTRATION_TIMEOUT,
		"Executor did not register within " + formatDuration(a.cfg.ExecutorRegistrationTimeout)}
	a.mu.Unlock()
	a.destroy(e)
}

// executorTerminated runs when an executor's process is gone (or never
// started). Its live tasks get TASK_FAILED with REASON_EXECUTOR_TERMINATED
// from SOURCE_AGENT (or what the agent ended it for); the master hears
// EXECUTOR_EXITED first (FAILURE for the framework; not for the command
// executor, as in Mesos), then the updates.
func (a *Agent) executorTerminated(e *executor, status int, how string) {
	a.mu.Lock()
	if e.state == terminated {
		a.mu.Unlock()
		return
	}
	for _, t := range []Timer{e.regTimer, e.stopTimer} {
		if t != nil {
			t.Stop()
		}
	}
	e.state = terminated
	e.exitStatus = status
	if e.stream != nil {
		e.stream.Close()
	}
	fw := e.fw
	var updates []*mesospb.TaskStatus
	if !fw.terminating {
		term := termination{mesospb.TaskState_TASK_FAILED, mesospb.TaskStatus_REASON_EXECUTOR_TERMINATED, ""}
		if e.pending != nil {
			term = *e.pending
		}
		msg := term.message
		if msg == "" {
			msg = "Executor terminated"
			if how != "" {
				msg += ": " + how
			}
		}
		for _, id := range sortedTaskIDs(e.tasks) {
			if t := e.tasks[id]; !isTerminal(t.state) {
				updates = append(updates, a.agentStatusLocked(t.info.TaskId, e.info.ExecutorId, term.state, term.reason, msg))
			}
		}
	}
	e.queue = nil
	if fw.executors[e.id] == e {
		delete(fw.executors, e.id)
	}
	fw.completed = append(fw.completed, e)
	if len(fw.completed) > maxCompletedExecutors {
		fw.completed = fw.completed[len(fw.completed)-maxCompletedExecutors:]
	}
	a.metrics.executorsTerminated++
	a.markRunCompletedLocked(e)
	connected := a.connected
	a.mu.Unlock()
	a.log.Printf("executor %s of framework %s terminated: %s", e.id, fw.id, how)

	if !e.command {
		call := executorExitedCall(fw.id, e.id, status)
		if !connected || !a.callMaster(call) {
			a.mu.Lock()
			a.deferred = append(a.deferred, deferredCall{call})
			a.mu.Unlock()
		}
	}
	a.mu.Lock()
	for _, st := range updates {
		a.statusUpdateLocked(fw, st, e, nil)
	}
	if len(e.tasks) == 0 {
		a.removeRunCheckpointLocked(e)
	}
	a.maybeRemoveFrameworkLocked(fw)
	a.maybeEndRecoveryLocked()
	a.mu.Unlock()
	// Only now: whoever waits for the executor finds its tasks' updates
	// queued.
	close(e.exited)
}

// shutdownAll shuts every executor down and waits until they are gone
// (their grace periods, then their process groups are killed).
func (a *Agent) shutdownAll() {
	a.mu.Lock()
	a.terminating = true
	var waits []chan struct{}
	longest := time.Duration(0)
	for _, fw := range a.frameworks {
		for _, e := range fw.executors {
			a.shutdownExecutorLocked(e)
			waits = append(waits, e.exited)
			if g := a.grace(e.info); g > longest {
				longest = g
			}
		}
	}
	a.mu.Unlock()
	a.waitExited(waits, longest+5*time.Second)
}

// waitExited waits for executors to be gone; those still there at the
// deadline are killed.
func (a *Agent) waitExited(waits []chan struct{}, limit time.Duration) {
	deadline := time.After(limit)
	for _, w := range waits {
		select {
		case <-w:
		case <-deadline:
			a.mu.Lock()
			var stuck []*executor
			for _, fw := range a.frameworks {
				for _, e := range fw.executors {
					stuck = append(stuck, e)
				}
			}
			a.mu.Unlock()
			for _, e := range stuck {
				a.destroy(e)
			}
			return
		}
	}
}

func (a *Agent) messageToExecutor(fwID, execID string, data []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fw := a.frameworks[fwID]
	if fw == nil || fw.executors[execID] == nil || fw.executors[execID].stream == nil {
		a.log.Printf("dropping a framework message for executor %s of framework %s: it is not subscribed here", execID, fwID)
		a.metrics.invalidFrameworkMessages++
		return
	}
	a.metrics.validFrameworkMessages++
	fw.executors[execID].stream.Send(&executorpb.Event{Type: executorpb.Event_MESSAGE.Enum(), Message: &executorpb.Event_Message{Data: data}})
}
