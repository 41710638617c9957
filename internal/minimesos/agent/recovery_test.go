package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

// When the master's stream breaks, the agent registers again with its ID
// and everything it runs, then resends the updates not acknowledged.
func TestReregistrationReportsWhatRunsAndResendsUpdates(t *testing.T) {
	m := newFakeMaster(t)
	m.autoAck = false
	a := startAgent(t, testConfig(t, m, t.TempDir()))
	waitFor(t, "registered", a.Registered)
	task := taskInfo("t-1", a.ID())
	task.Executor = fakeExecutorInfo(t, "e-1", "normal")
	m.send(runTaskEvent(frameworkInfo("fw"), task))
	running := m.waitUpdate(t, "t-1", mesospb.TaskState_TASK_RUNNING)

	m.breakStream()
	reg := m.waitRegistrations(t, 2)[1]
	r := reg.GetRegister()
	if reg.GetAgentId().GetValue() != "fake-S1" || len(r.GetFrameworks()) != 1 || r.GetFrameworks()[0].GetId().GetValue() != "fw" ||
		len(r.GetExecutors()) != 1 || r.GetExecutors()[0].GetExecutorId().GetValue() != "e-1" || len(r.GetTasks()) != 1 {
		t.Fatalf("re-registration %v", reg)
	}
	rt := r.GetTasks()[0]
	if rt.GetTaskId().GetValue() != "t-1" || rt.GetState() != mesospb.TaskState_TASK_RUNNING || rt.GetExecutorId().GetValue() != "e-1" ||
		rt.GetFrameworkId().GetValue() != "fw" || rt.GetStatusUpdateState() != mesospb.TaskState_TASK_RUNNING || !bytes.Equal(rt.GetStatusUpdateUuid(), running.GetUuid()) {
		t.Fatalf("reported task %v", rt)
	}
	_, regAt := m.waitCall(t, "the second REGISTER", func(c *agentpb.Call) bool { return c == reg })
	waitFor(t, "resent after the registration", func() bool {
		for i, c := range m.snapshot() {
			if i > regAt && c.GetType() == agentpb.Call_STATUS_UPDATE && bytes.Equal(c.GetStatusUpdate().GetStatus().GetUuid(), running.GetUuid()) {
				return true
			}
		}
		return false
	})
	m.send(ackEvent("fw", running))
	waitFor(t, "the update stream drained", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.sum.pendingCount() == 0
	})
}

// An agent killed with SIGKILL and restarted on the same work dir recovers
// (Mesos' --recover=reconnect): it registers with its old ID once the
// executor of the checkpointing framework, still running, has re-subscribed,
// and resends that task's unacknowledged update; the executor of a
// framework that does not checkpoint is killed; a checkpointing executor
// that died meanwhile has its task failed; one that does not re-subscribe
// in time is killed and its task lost.
func TestRecoveryAfterAgentKilled(t *testing.T) {
	m := newFakeMaster(t)
	m.autoAck = false
	dir := t.TempDir()
	cfg := testConfig(t, m, dir)
	cfg.ExecutorRegistrationTimeout = time.Minute
	logger := cfg.Logger
	cfg.Logger = nil
	b, _ := json.Marshal(cfg)
	cfg.Logger = logger
	var stderr bytes.Buffer
	proc := exec.Command(testBinary(t), "run-agent")
	proc.Env = append(os.Environ(), "TEST_AGENT_CONFIG="+string(b))
	proc.Stderr = &stderr
	if err := proc.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		proc.Process.Kill()
		proc.Wait()
		if t.Failed() {
			t.Logf("first agent's log:\n%s", stderr.String())
		}
	}()
	m.waitRegistrations(t, 1)
	agentID := "fake-S1"

	ck := &mesospb.FrameworkInfo{User: proto.String("root"), Name: proto.String("ck"), Id: &mesospb.FrameworkID{Value: proto.String("fw-ck")}, Checkpoint: proto.Bool(true)}
	launch := func(fw *mesospb.FrameworkInfo, taskID string, ei *mesospb.ExecutorInfo) {
		task := taskInfo(taskID, agentID)
		task.Executor = ei
		m.send(runTaskEvent(fw, task))
	}
	launch(ck, "t-ck", fakeExecutorInfo(t, "e-ck", "normal"))
	launch(ck, "t-dies", fakeExecutorInfo(t, "e-dies", "normal"))
	launch(ck, "t-hung", &mesospb.ExecutorInfo{ExecutorId: &mesospb.ExecutorID{Value: proto.String("e-hung")}, Command: &mesospb.CommandInfo{Value: proto.String("sleep 60")}})
	// (An executor of a framework that does not checkpoint exits by itself
	// when it loses the agent; this one does not even subscribe.)
	launch(frameworkInfo("fw-nock"), "t-nock", &mesospb.ExecutorInfo{ExecutorId: &mesospb.ExecutorID{Value: proto.String("e-nock")}, Command: &mesospb.CommandInfo{Value: proto.String("sleep 60")}})
	running := m.waitUpdate(t, "t-ck", mesospb.TaskState_TASK_RUNNING)
	m.send(ackEvent("fw-ck", m.waitUpdate(t, "t-dies", mesospb.TaskState_TASK_RUNNING)))
	pid := func(fw, exec string) int {
		var p int
		waitFor(t, exec+"'s pid", func() bool {
			pattern := filepath.Join(dir, "meta", "slaves", agentID, "frameworks", fw, "executors", exec, "runs", "*", "pids", "forked.pid")
			matches, _ := filepath.Glob(pattern)
			if len(matches) != 1 {
				return false
			}
			b, _ := os.ReadFile(matches[0])
			p, _ = strconv.Atoi(string(b))
			return p > 0
		})
		return p
	}
	ckPid, diesPid, hungPid, nockPid := pid("fw-ck", "e-ck"), pid("fw-ck", "e-dies"), pid("fw-ck", "e-hung"), pid("fw-nock", "e-nock")
	waitFor(t, "the acknowledgement checkpointed", func() bool {
		matches, _ := filepath.Glob(filepath.Join(dir, "meta", "slaves", agentID, "frameworks", "fw-ck", "executors", "e-dies", "runs", "*", "tasks", "t-dies", "task.updates"))
		if len(matches) != 1 {
			return false
		}
		c, err := loadStream(matches[0])
		return err == nil && len(c.Pending) == 0
	})

	// The agent dies without a word; one executor dies too.
	proc.Process.Signal(syscall.SIGKILL)
	proc.Wait()
	syscall.Kill(diesPid, syscall.SIGKILL)
	waitFor(t, "e-dies gone", func() bool { return !alive(diesPid) })
	if !alive(ckPid) || !alive(nockPid) || !alive(hungPid) {
		t.Fatal("executors died with the agent")
	}

	before := len(m.registrations())
	start := time.Now()
	startAgent(t, cfg)
	reg := m.waitRegistrations(t, before+1)[before]
	if reg.GetAgentId().GetValue() != agentID {
		t.Fatalf("the restarted agent registered as %v", reg.GetAgentId())
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("registered %v after the start: before the hung executor's re-registration timeout (2s)", d)
	}
	r := reg.GetRegister()
	tasks := map[string]*mesospb.Task{}
	for _, tk := range r.GetTasks() {
		tasks[tk.GetTaskId().GetValue()] = tk
	}
	if tk := tasks["t-ck"]; tk == nil || tk.GetState() != mesospb.TaskState_TASK_RUNNING || tk.GetStatusUpdateState() != mesospb.TaskState_TASK_RUNNING {
		t.Errorf("t-ck in the registration: %v", tk)
	}
	if tasks["t-nock"] != nil {
		t.Errorf("a task of a framework that does not checkpoint was recovered: %v", tasks["t-nock"])
	}
	execs := map[string]bool{}
	for _, e := range r.GetExecutors() {
		execs[e.GetExecutorId().GetValue()] = true
	}
	if !execs["e-ck"] || execs["e-nock"] || execs["e-dies"] || execs["e-hung"] {
		t.Errorf("executors in the registration: %v", execs)
	}
	if !alive(ckPid) {
		t.Error("the checkpointing executor did not survive the agent's restart")
	}
	if alive(nockPid) || alive(hungPid) {
		t.Errorf("executors left running: e-nock %v, e-hung %v", alive(nockPid), alive(hungPid))
	}

	// The unacknowledged update is resent with its uuid.
	m.waitCall(t, "t-ck's RUNNING resent", func(c *agentpb.Call) bool {
		return c.GetType() == agentpb.Call_STATUS_UPDATE && bytes.Equal(c.GetStatusUpdate().GetStatus().GetUuid(), running.GetUuid()) &&
			len(m.registrations()) > before
	})
	dies := m.waitUpdate(t, "t-dies", mesospb.TaskState_TASK_FAILED)
	if dies.GetReason() != mesospb.TaskStatus_REASON_EXECUTOR_TERMINATED || dies.GetMessage() != "Executor terminated: it was not running when the agent recovered" {
		t.Errorf("t-dies %v", dies)
	}
	m.waitCall(t, "EXECUTOR_EXITED of e-dies", func(c *agentpb.Call) bool {
		return c.GetType() == agentpb.Call_EXECUTOR_EXITED && c.GetExecutorExited().GetExecutorId().GetValue() == "e-dies"
	})
	hung := m.waitUpdate(t, "t-hung", mesospb.TaskState_TASK_LOST)
	if hung.GetReason() != mesospb.TaskStatus_REASON_EXECUTOR_REREGISTRATION_TIMEOUT || hung.GetMessage() != "Executor did not reregister within 2secs" {
		t.Errorf("t-hung %v", hung)
	}

	// The recovered executor is live: a kill reaches it, and its answer
	// follows the acknowledged RUNNING.
	m.send(&agentpb.Event{Type: agentpb.Event_KILL_TASK.Enum(), KillTask: &agentpb.Event_KillTask{
		FrameworkId: &mesospb.FrameworkID{Value: proto.String("fw-ck")}, TaskId: &mesospb.TaskID{Value: proto.String("t-ck")}}})
	m.send(ackEvent("fw-ck", running))
	m.waitUpdate(t, "t-ck", mesospb.TaskState_TASK_KILLED)
}
