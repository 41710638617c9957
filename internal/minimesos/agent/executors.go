package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/execclient"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/uuid"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

type executorState int

const (
	// launching: the process is starting or has not subscribed yet; tasks
	// wait in the queue.
	launching executorState = iota
	running
	// terminating: SHUTDOWN sent, the process group dies after the grace
	// period.
	terminating
	terminated
)

type executor struct {
	fwID        string
	info        *mesospb.ExecutorInfo
	command     bool // the built-in command executor of one command task
	containerID string
	dir         string
	cmd         *exec.Cmd
	pid         int
	state       executorState
	stream      *eventStream
	// queued tasks (and groups) wait for the executor to subscribe.
	queued []queuedLaunch
	tasks  map[string]*task
	// shutdownReason is why the executor is being shut down ("" if not).
	shutdownReason string
	exited         chan struct{}
	exitStatus     int
	launchedAt     time.Time
}

type queuedLaunch struct {
	task  *mesospb.TaskInfo
	group *mesospb.TaskGroupInfo
}

type task struct {
	info   *mesospb.TaskInfo
	state  mesospb.TaskState
	latest *mesospb.TaskStatus
	// delivered to the executor (LAUNCH sent).
	delivered bool
}

func (t *task) toTask(fi *mesospb.FrameworkInfo, e *executor) *mesospb.Task {
	out := &mesospb.Task{
		Name:        t.info.Name,
		TaskId:      t.info.TaskId,
		FrameworkId: fi.GetId(),
		AgentId:     t.info.AgentId,
		State:       t.state.Enum(),
		Resources:   t.info.Resources,
		Labels:      t.info.Labels,
	}
	if !e.command {
		out.ExecutorId = e.info.ExecutorId
	}
	if t.latest != nil {
		out.Statuses = []*mesospb.TaskStatus{t.latest}
	}
	return out
}

func isTerminal(s mesospb.TaskState) bool {
	switch s {
	case mesospb.TaskState_TASK_FINISHED, mesospb.TaskState_TASK_FAILED, mesospb.TaskState_TASK_KILLED,
		mesospb.TaskState_TASK_ERROR, mesospb.TaskState_TASK_LOST, mesospb.TaskState_TASK_DROPPED, mesospb.TaskState_TASK_GONE:
		return true
	}
	return false
}

// commandExecutorInfo is the ExecutorInfo of the built-in command executor
// for a command task: executor ID = task ID, as Mesos does.
func (a *Agent) commandExecutorInfo(fi *mesospb.FrameworkInfo, t *mesospb.TaskInfo) *mesospb.ExecutorInfo {
	cmd := t.GetCommand()
	desc := cmd.GetValue()
	if !cmd.GetShell() {
		desc = strings.Join(cmd.GetArguments(), " ")
	}
	return &mesospb.ExecutorInfo{
		ExecutorId:  &mesospb.ExecutorID{Value: proto.String(t.GetTaskId().GetValue())},
		FrameworkId: fi.GetId(),
		Name:        proto.String(fmt.Sprintf("Command Executor (Task: %s) (Command: sh -c '%s')", t.GetTaskId().GetValue(), desc)),
		Command: &mesospb.CommandInfo{
			Value:     proto.String(a.cfg.KMBinary),
			Arguments: []string{a.cfg.KMBinary, "mesos", "command-executor"},
			Shell:     proto.Bool(false),
			// The task's URIs are fetched into the executor's sandbox,
			// where the command runs.
			Uris:        cmd.GetUris(),
			Environment: cmd.GetEnvironment(),
		},
	}
}

func (a *Agent) frameworkLocked(fi *mesospb.FrameworkInfo) *framework {
	id := fi.GetId().GetValue()
	fw := a.frameworks[id]
	if fw == nil {
		fw = &framework{info: fi, executors: map[string]*executor{}}
		a.frameworks[id] = fw
	} else {
		fw.info = fi
	}
	return fw
}

// runTask starts (or reuses) the task's executor and queues the task for
// it.
func (a *Agent) runTask(fi *mesospb.FrameworkInfo, t *mesospb.TaskInfo) {
	ei, command := t.GetExecutor(), false
	if ei == nil {
		ei, command = a.commandExecutorInfo(fi, t), true
	}
	a.launch(fi, ei, command, queuedLaunch{task: t}, []*mesospb.TaskInfo{t})
}

func (a *Agent) runTaskGroup(fi *mesospb.FrameworkInfo, ei *mesospb.ExecutorInfo, g *mesospb.TaskGroupInfo) {
	a.launch(fi, ei, false, queuedLaunch{group: g}, g.GetTasks())
}

func (a *Agent) launch(fi *mesospb.FrameworkInfo, ei *mesospb.ExecutorInfo, command bool, q queuedLaunch, tasks []*mesospb.TaskInfo) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fw := a.frameworkLocked(fi)
	fw.shuttingDown = false
	e := fw.executors[ei.GetExecutorId().GetValue()]
	if e != nil && e.state >= terminating {
		// The old executor is on its way out; its ID is reused for a new
		// run once it is gone. Until then, the task cannot start.
		for _, t := range tasks {
			a.agentStatusLocked(fw.info.GetId().GetValue(), e, t, mesospb.TaskState_TASK_FAILED, mesospb.TaskStatus_REASON_EXECUTOR_TERMINATED,
				"Executor "+e.info.GetExecutorId().GetValue()+" is terminating; the task cannot be launched on it")
		}
		return
	}
	if e == nil {
		e = &executor{fwID: fi.GetId().GetValue(), info: ei, command: command, containerID: uuid.NewString(),
			tasks: map[string]*task{}, exited: make(chan struct{}), launchedAt: time.Now()}
		fw.executors[ei.GetExecutorId().GetValue()] = e
		for _, t := range tasks {
			e.tasks[t.GetTaskId().GetValue()] = &task{info: t, state: mesospb.TaskState_TASK_STAGING}
		}
		e.queued = append(e.queued, q)
		go a.startExecutor(fw.info, e)
		return
	}
	for _, t := range tasks {
		e.tasks[t.GetTaskId().GetValue()] = &task{info: t, state: mesospb.TaskState_TASK_STAGING}
	}
	if e.state == running && e.stream != nil {
		a.deliverLocked(e, q)
		return
	}
	e.queued = append(e.queued, q)
}

// deliverLocked sends a LAUNCH (or LAUNCH_GROUP) to a subscribed executor.
func (a *Agent) deliverLocked(e *executor, q queuedLaunch) {
	if q.task != nil {
		if t := e.tasks[q.task.GetTaskId().GetValue()]; t != nil {
			t.delivered = true
		}
		e.stream.Send(&executorpb.Event{Type: executorpb.Event_LAUNCH.Enum(), Launch: &executorpb.Event_Launch{Task: q.task}})
		return
	}
	for _, ti := range q.group.GetTasks() {
		if t := e.tasks[ti.GetTaskId().GetValue()]; t != nil {
			t.delivered = true
		}
	}
	e.stream.Send(&executorpb.Event{Type: executorpb.Event_LAUNCH_GROUP.Enum(), LaunchGroup: &executorpb.Event_LaunchGroup{TaskGroup: q.group}})
}

func (a *Agent) sandboxDir(fwID string, e *executor) string {
	return filepath.Join(a.cfg.WorkDir, "slaves", a.agentID, "frameworks", fwID, "executors", e.info.GetExecutorId().GetValue(), "runs", e.containerID)
}

// executorEnv is the environment Mesos gives an executor (§4.3 and the
// recording of a real agent).
func (a *Agent) executorEnv(fi *mesospb.FrameworkInfo, e *executor) []string {
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	for k, v := range a.cfg.ExecutorEnv {
		env[k] = v
	}
	grace := a.cfg.ExecutorShutdownGracePeriod
	if g := e.info.GetShutdownGracePeriod(); g != nil {
		grace = time.Duration(g.GetNanoseconds())
	}
	checkpoint := "0"
	if fi.GetCheckpoint() {
		checkpoint = "1"
		env["MESOS_RECOVERY_TIMEOUT"] = execclient.FormatDuration(a.cfg.RecoveryTimeout)
		env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = execclient.FormatDuration(a.cfg.ExecutorReregistrationTimeout)
	}
	set := map[string]string{
		"MESOS_FRAMEWORK_ID":                   e.fwID,
		"MESOS_EXECUTOR_ID":                    e.info.GetExecutorId().GetValue(),
		"MESOS_DIRECTORY":                      e.dir,
		"MESOS_SANDBOX":                        e.dir,
		"MESOS_AGENT_ENDPOINT":                 a.Endpoint(),
		"MESOS_SLAVE_ID":                       a.ID(),
		"MESOS_SLAVE_PID":                      "slave(1)@" + a.Endpoint(),
		"MESOS_CHECKPOINT":                     checkpoint,
		"MESOS_HTTP_COMMAND_EXECUTOR":          "0",
		"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": execclient.FormatDuration(grace),
		"LIBPROCESS_IP":                        a.cfg.AdvertiseIP,
		"LIBPROCESS_PORT":                      "0",
		OwnerEnv:                               a.cfg.WorkDir,
		ContainerEnv:                           e.containerID,
	}
	for k, v := range set {
		env[k] = v
	}
	for _, v := range e.info.GetCommand().GetEnvironment().GetVariables() {
		if v.GetType() == mesospb.Environment_Variable_SECRET {
			continue // km's agent has no secret resolver
		}
		env[v.GetName()] = v.GetValue()
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// startExecutor fetches the URIs and starts the executor process in its
// own process group, with stdout and stderr files in its sandbox.
func (a *Agent) startExecutor(fi *mesospb.FrameworkInfo, e *executor) {
	a.mu.Lock()
	e.dir = a.sandboxDir(e.fwID, e)
	a.mu.Unlock()
	fail := func(reason mesospb.TaskStatus_Reason, msg string) {
		a.cfg.Logger.Printf("executor %s of framework %s: %s", e.info.GetExecutorId().GetValue(), e.fwID, msg)
		a.mu.Lock()
		for _, t := range e.tasks {
			a.agentStatusLocked(e.fwID, e, t.info, mesospb.TaskState_TASK_FAILED, reason, msg)
		}
		e.state = terminated
		a.removeExecutorLocked(e)
		a.mu.Unlock()
		close(e.exited)
	}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		fail(mesospb.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "cannot create the sandbox: "+err.Error())
		return
	}
	latest := filepath.Join(filepath.Dir(e.dir), "latest")
	os.Remove(latest)
	os.Symlink(e.dir, latest)
	if err := fetchURIs(context.Background(), e.info.GetCommand().GetUris(), e.dir); err != nil {
		fail(mesospb.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "Failed to fetch the executor's URIs: "+err.Error())
		return
	}
	stdout, err1 := os.Create(filepath.Join(e.dir, "stdout"))
	stderr, err2 := os.Create(filepath.Join(e.dir, "stderr"))
	if err1 != nil || err2 != nil {
		fail(mesospb.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, fmt.Sprintf("cannot create stdout/stderr in the sandbox: %v %v", err1, err2))
		return
	}
	cmdInfo := e.info.GetCommand()
	var cmd *exec.Cmd
	if cmdInfo.GetShell() {
		cmd = exec.Command("/bin/sh", "-c", cmdInfo.GetValue())
	} else {
		args := cmdInfo.GetArguments()
		cmd = exec.Command(cmdInfo.GetValue())
		if len(args) > 0 {
			cmd.Args = args
		}
	}
	cmd.Dir = e.dir
	cmd.Env = a.executorEnv(fi, e)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group: the agent ends the whole group, so nothing
	// the executor starts outlives it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		fail(mesospb.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, fmt.Sprintf("Failed to launch the executor %q: %v", cmdInfo.GetValue(), err))
		return
	}
	a.mu.Lock()
	e.cmd, e.pid = cmd, cmd.Process.Pid
	a.mu.Unlock()
	a.cfg.Logger.Printf("started executor %s of framework %s (pid %d) in %s", e.info.GetExecutorId().GetValue(), e.fwID, e.pid, e.dir)

	regTimer := time.AfterFunc(a.cfg.ExecutorRegistrationTimeout, func() { a.registrationTimedOut(e) })
	err := cmd.Wait()
	regTimer.Stop()
	stdout.Close()
	stderr.Close()
	// Whatever the executor started goes with it: its process group, and
	// processes it put in groups of their own.
	killGroup(e.pid)
	killContainer(e.containerID)
	status := 0
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			status = int(ws)
		}
	}
	a.executorExited(e, status, err)
}

func (a *Agent) registrationTimedOut(e *executor) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e.state != launching {
		return
	}
	a.cfg.Logger.Printf("executor %s did not subscribe within %v; destroying it", e.info.GetExecutorId().GetValue(), a.cfg.ExecutorRegistrationTimeout)
	for _, t := range e.tasks {
		a.agentStatusLocked(e.fwID, e, t.info, mesospb.TaskState_TASK_FAILED, mesospb.TaskStatus_REASON_EXECUTOR_REGISTRATION_TIMEOUT,
			fmt.Sprintf("Executor did not register within %v", a.cfg.ExecutorRegistrationTimeout))
	}
	e.state = terminating
	killGroup(e.pid)
}

// executorExited turns the executor's live tasks into TASK_FAILED (or
// TASK_KILLED when it was being shut down) with REASON_EXECUTOR_TERMINATED
// and tells the master (FAILURE for custom executors).
func (a *Agent) executorExited(e *executor, status int, err error) {
	a.mu.Lock()
	how := describeExit(err)
	for _, t := range e.tasks {
		if isTerminal(t.state) {
			continue
		}
		state := mesospb.TaskState_TASK_FAILED
		msg := "Executor terminated: " + how
		if e.shutdownReason != "" {
			state = mesospb.TaskState_TASK_KILLED
			msg = "Executor shut down (" + e.shutdownReason + "): " + how
		}
		a.agentStatusLocked(e.fwID, e, t.info, state, mesospb.TaskStatus_REASON_EXECUTOR_TERMINATED, msg)
	}
	if e.stream != nil {
		e.stream.Close()
	}
	e.state = terminated
	e.exitStatus = status
	a.removeExecutorLocked(e)
	a.mu.Unlock()
	close(e.exited)
	a.cfg.Logger.Printf("executor %s of framework %s exited: %s", e.info.GetExecutorId().GetValue(), e.fwID, how)
	go a.sendToMaster(context.Background(), &agentpb.Call{
		Type: agentpb.Call_EXECUTOR_EXITED.Enum(),
		ExecutorExited: &agentpb.Call_ExecutorExited{
			FrameworkId: &mesospb.FrameworkID{Value: proto.String(e.fwID)},
			ExecutorId:  e.info.ExecutorId,
			Status:      proto.Int32(int32(status)),
		},
	})
}

func describeExit(err error) string {
	if err == nil {
		return "exited with status 0"
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			if ws.Signaled() {
				return "terminated by signal " + ws.Signal().String()
			}
			return fmt.Sprintf("exited with status %d", ws.ExitStatus())
		}
	}
	return err.Error()
}

func (a *Agent) removeExecutorLocked(e *executor) {
	fw := a.frameworks[e.fwID]
	if fw == nil {
		return
	}
	if fw.executors[e.info.GetExecutorId().GetValue()] == e {
		delete(fw.executors, e.info.GetExecutorId().GetValue())
	}
	a.completed = append(a.completed, e)
	if len(a.completed) > 100 {
		a.completed = a.completed[len(a.completed)-100:]
	}
	if fw.shuttingDown && len(fw.executors) == 0 {
		delete(a.frameworks, e.fwID)
	}
}

// agentStatusLocked records a status the agent itself generates and hands
// it to the status update manager.
func (a *Agent) agentStatusLocked(fwID string, e *executor, ti *mesospb.TaskInfo, state mesospb.TaskState, reason mesospb.TaskStatus_Reason, msg string) {
	st := &mesospb.TaskStatus{
		TaskId:    ti.TaskId,
		State:     state.Enum(),
		Message:   proto.String(msg),
		Source:    mesospb.TaskStatus_SOURCE_AGENT.Enum(),
		Reason:    reason.Enum(),
		AgentId:   ti.AgentId,
		Timestamp: proto.Float64(float64(time.Now().UnixNano()) / 1e9),
		Uuid:      uuid.New(),
	}
	if e != nil && !e.command {
		st.ExecutorId = e.info.ExecutorId
	}
	if e != nil {
		if t := e.tasks[ti.GetTaskId().GetValue()]; t != nil {
			t.state, t.latest = state, st
		}
	}
	a.sum.enqueueLocked(fwID, st)
}

// killTask: to the executor if it has the task; a task still queued for an
// executor that has not subscribed is killed during launch.
func (a *Agent) killTask(fwID, taskID string, policy *mesospb.KillPolicy) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fw := a.frameworks[fwID]
	if fw == nil {
		return
	}
	for _, e := range fw.executors {
		t := e.tasks[taskID]
		if t == nil || isTerminal(t.state) {
			continue
		}
		if t.delivered && e.stream != nil {
			e.stream.Send(&executorpb.Event{Type: executorpb.Event_KILL.Enum(), Kill: &executorpb.Event_Kill{TaskId: t.info.TaskId, KillPolicy: policy}})
			return
		}
		// Not delivered yet: drop it from the queue.
		kept := e.queued[:0]
		for _, q := range e.queued {
			if q.task != nil && q.task.GetTaskId().GetValue() == taskID {
				continue
			}
			kept = append(kept, q)
		}
		e.queued = kept
		a.agentStatusLocked(fwID, e, t.info, mesospb.TaskState_TASK_KILLED, mesospb.TaskStatus_REASON_TASK_KILLED_DURING_LAUNCH, "Killed before delivery to the executor")
		live := false
		for _, o := range e.tasks {
			if !isTerminal(o.state) {
				live = true
			}
		}
		if !live {
			a.shutdownExecutorLocked(e, "its only task was killed during launch")
		}
		return
	}
}

func (a *Agent) shutdownExecutor(fwID, execID, reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if fw := a.frameworks[fwID]; fw != nil {
		if e := fw.executors[execID]; e != nil {
			a.shutdownExecutorLocked(e, reason)
		}
	}
}

// shutdownExecutorLocked sends SHUTDOWN and kills the process group after
// the grace period (the ExecutorInfo's, else the agent's).
func (a *Agent) shutdownExecutorLocked(e *executor, reason string) {
	if e.state >= terminating {
		return
	}
	e.state = terminating
	e.shutdownReason = reason
	grace := a.cfg.ExecutorShutdownGracePeriod
	if g := e.info.GetShutdownGracePeriod(); g != nil {
		grace = time.Duration(g.GetNanoseconds())
	}
	if e.stream != nil {
		e.stream.Send(&executorpb.Event{Type: executorpb.Event_SHUTDOWN.Enum()})
	}
	pid := e.pid
	exited := e.exited
	go func() {
		select {
		case <-exited:
		case <-time.After(grace):
			a.cfg.Logger.Printf("executor %s did not exit within its grace period of %v; killing its processes", e.info.GetExecutorId().GetValue(), grace)
			killGroup(pid)
			killContainer(e.containerID)
		}
	}()
	if pid == 0 {
		// Not started yet (fetching): it dies as soon as it starts.
		go func() {
			for i := 0; i < 100; i++ {
				a.mu.Lock()
				p := e.pid
				a.mu.Unlock()
				if p != 0 {
					killGroup(p)
					return
				}
				select {
				case <-exited:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
}

func (a *Agent) shutdownFramework(fwID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fw := a.frameworks[fwID]
	if fw == nil {
		return
	}
	fw.shuttingDown = true
	for _, e := range fw.executors {
		a.shutdownExecutorLocked(e, "the framework was removed")
	}
	if len(fw.executors) == 0 {
		delete(a.frameworks, fwID)
	}
	a.sum.dropFrameworkLocked(fwID)
}

// shutdownAll shuts every executor down and waits for them (grace period
// plus a little), then ends whatever carries this agent's mark.
func (a *Agent) shutdownAll(reason string) {
	a.mu.Lock()
	var waits []chan struct{}
	maxGrace := a.cfg.ExecutorShutdownGracePeriod
	for _, fw := range a.frameworks {
		for _, e := range fw.executors {
			a.shutdownExecutorLocked(e, reason)
			waits = append(waits, e.exited)
			if g := e.info.GetShutdownGracePeriod(); g != nil && time.Duration(g.GetNanoseconds()) > maxGrace {
				maxGrace = time.Duration(g.GetNanoseconds())
			}
		}
	}
	a.mu.Unlock()
	deadline := time.After(maxGrace + 3*time.Second)
	for _, w := range waits {
		select {
		case <-w:
		case <-deadline:
		}
	}
	for _, pid := range a.ownedProcesses() {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

func (a *Agent) messageToExecutor(fwID, execID string, data []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if fw := a.frameworks[fwID]; fw != nil {
		if e := fw.executors[execID]; e != nil && e.stream != nil {
			e.stream.Send(&executorpb.Event{Type: executorpb.Event_MESSAGE.Enum(), Message: &executorpb.Event_Message{Data: data}})
		}
	}
}
