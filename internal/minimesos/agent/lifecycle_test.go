package agent

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

// recordedEnv reads the executor environment a real Mesos agent gave the
// shell-script executor (testdata/mesos-recordings/executor-environment.txt).
func recordedEnv(t *testing.T) map[string]string {
	f, err := os.Open(recordings + "executor-environment.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "--- env.txt"):
			in = true
		case in && l == "":
			return env
		case in:
			k, v, _ := strings.Cut(l, "=")
			env[k] = v
		}
	}
	t.Fatal("no env.txt in the recording")
	return nil
}

func readEnvFile(t *testing.T, path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		env[k] = v
	}
	return env
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// A custom executor that never subscribes (the recording's shell script):
// it gets the environment and sandbox a real Mesos agent gives, and after
// --executor_registration_timeout it is destroyed, its task fails with
// REASON_EXECUTOR_REGISTRATION_TIMEOUT, and the master hears
// EXECUTOR_EXITED before the update (as in the recording).
func TestExecutorEnvironmentSandboxAndRegistrationTimeout(t *testing.T) {
	m := newFakeMaster(t)
	cfg := testConfig(t, m, t.TempDir())
	cfg.ExecutorShutdownGracePeriod = 5 * time.Second
	cfg.ExecutorRegistrationTimeout = 1500 * time.Millisecond
	cfg.ExecutorEnv = map[string]string{"FROM_FLAG": "flag"}
	a := startAgent(t, cfg)
	waitFor(t, "registered", a.Registered)

	script := `env | sort > "$MESOS_SANDBOX/env.txt"; echo "executor stdout line"; echo "executor stderr line" >&2; sleep 30`
	run := func(fw *mesospb.FrameworkInfo, execID, taskID string) string {
		task := taskInfo(taskID, a.ID())
		task.Executor = &mesospb.ExecutorInfo{
			Type: mesospb.ExecutorInfo_CUSTOM.Enum(), ExecutorId: &mesospb.ExecutorID{Value: proto.String(execID)},
			Command: &mesospb.CommandInfo{Value: proto.String(script), Environment: &mesospb.Environment{Variables: []*mesospb.Environment_Variable{
				{Name: proto.String("FROM_COMMAND"), Value: proto.String("command")}}}},
		}
		m.send(runTaskEvent(fw, task))
		latest := filepath.Join(a.dir, "slaves", a.ID(), "frameworks", fw.GetId().GetValue(), "executors", execID, "runs", "latest")
		waitFor(t, "env.txt", func() bool {
			b, err := os.ReadFile(filepath.Join(latest, "env.txt"))
			return err == nil && strings.Contains(string(b), "PWD=")
		})
		return latest
	}
	const fwID = "d9097ce5-55bd-48f9-a8ba-fe84abe1c220-0010"
	latest := run(frameworkInfo(fwID), "e-shell", "t-shellexec")
	ckLatest := run(&mesospb.FrameworkInfo{User: proto.String("root"), Name: proto.String("ck"), Id: &mesospb.FrameworkID{Value: proto.String("fw-ck")}, Checkpoint: proto.Bool(true)}, "e-ck", "t-ck")

	// The sandbox: runs/<container>, a `latest` link to it, stdout and
	// stderr files.
	sandbox, err := os.Readlink(latest)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`/slaves/fake-S1/frameworks/` + fwID + `/executors/e-shell/runs/[0-9a-f-]{36}$`).MatchString(sandbox) {
		t.Errorf("sandbox %s", sandbox)
	}
	waitFor(t, "stdout and stderr", func() bool {
		o, _ := os.ReadFile(filepath.Join(sandbox, "stdout"))
		e, _ := os.ReadFile(filepath.Join(sandbox, "stderr"))
		return string(o) == "executor stdout line\n" && string(e) == "executor stderr line\n"
	})

	// The environment: the recorded variables, no more (but for the
	// agent's mark and what the flag and the CommandInfo add).
	want := recordedEnv(t)
	got := readEnvFile(t, filepath.Join(sandbox, "env.txt"))
	extra := map[string]bool{OwnerEnv: true, "FROM_FLAG": true, "FROM_COMMAND": true}
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("executor environment lacks %s (recorded: %s)", k, want[k])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && !extra[k] {
			t.Errorf("executor environment has %s=%s, which Mesos does not give", k, got[k])
		}
	}
	for k, v := range map[string]string{
		"LIBPROCESS_IP": "127.0.0.1", "LIBPROCESS_PORT": "0", "MESOS_AGENT_ENDPOINT": a.Endpoint(), "MESOS_CHECKPOINT": "0",
		"MESOS_DIRECTORY": sandbox, "MESOS_SANDBOX": sandbox, "PWD": sandbox, "MESOS_EXECUTOR_ID": "e-shell",
		"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": want["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"], "MESOS_FRAMEWORK_ID": fwID,
		"MESOS_HTTP_COMMAND_EXECUTOR": "0", "MESOS_SLAVE_ID": "fake-S1", "MESOS_SLAVE_PID": "slave(1)@" + a.Endpoint(),
		"PATH": want["PATH"], "FROM_FLAG": "flag", "FROM_COMMAND": "command", OwnerEnv: a.dir,
	} {
		if got[k] != v {
			t.Errorf("%s=%q, want %q", k, got[k], v)
		}
	}
	// A checkpointing framework's executor also gets the recovery timeout
	// and the subscription backoff.
	ck := readEnvFile(t, filepath.Join(ckLatest, "env.txt"))
	if ck["MESOS_CHECKPOINT"] != "1" || ck["MESOS_RECOVERY_TIMEOUT"] != "15mins" || ck["MESOS_SUBSCRIPTION_BACKOFF_MAX"] != "2secs" {
		t.Errorf("checkpointing executor: %v", ck)
	}
	if _, ok := got["MESOS_RECOVERY_TIMEOUT"]; ok {
		t.Errorf("MESOS_RECOVERY_TIMEOUT without checkpointing")
	}

	// The registration timeout.
	failed, failedAt := m.waitCall(t, "TASK_FAILED", isUpdate("t-shellexec", mesospb.TaskState_TASK_FAILED))
	st := failed.GetStatusUpdate().GetStatus()
	if st.GetReason() != mesospb.TaskStatus_REASON_EXECUTOR_REGISTRATION_TIMEOUT || st.GetSource() != mesospb.TaskStatus_SOURCE_AGENT ||
		st.GetMessage() != "Executor did not register within 1500ms" || st.GetExecutorId().GetValue() != "e-shell" || len(st.GetUuid()) != 16 {
		t.Errorf("TASK_FAILED %v", st)
	}
	exited, exitedAt := m.waitCall(t, "EXECUTOR_EXITED", func(c *agentpb.Call) bool {
		return c.GetType() == agentpb.Call_EXECUTOR_EXITED && c.GetExecutorExited().GetExecutorId().GetValue() == "e-shell"
	})
	if exitedAt > failedAt || exited.GetExecutorExited().GetFrameworkId().GetValue() != fwID {
		t.Errorf("EXECUTOR_EXITED (call %d) should come before TASK_FAILED (call %d), as Mesos sends them", exitedAt, failedAt)
	}
	if n := len(markedProcesses("MESOS_DIRECTORY=" + sandbox)); n != 0 {
		t.Errorf("%d processes of the destroyed executor are alive", n)
	}
}

// An executor that exits turns its live tasks into TASK_FAILED
// (REASON_EXECUTOR_TERMINATED, SOURCE_AGENT, the exit status in the
// message); the master hears EXECUTOR_EXITED with the wait status first.
func TestExecutorExitFailsItsTasks(t *testing.T) {
	m := newFakeMaster(t)
	a := startAgent(t, testConfig(t, m, t.TempDir()))
	waitFor(t, "registered", a.Registered)
	task := taskInfo("t-crash", a.ID())
	task.Executor = fakeExecutorInfo(t, "e-crash", "crash")
	m.send(runTaskEvent(frameworkInfo("fw"), task))
	m.waitUpdate(t, "t-crash", mesospb.TaskState_TASK_RUNNING)
	failed, failedAt := m.waitCall(t, "TASK_FAILED", isUpdate("t-crash", mesospb.TaskState_TASK_FAILED))
	st := failed.GetStatusUpdate().GetStatus()
	if st.GetReason() != mesospb.TaskStatus_REASON_EXECUTOR_TERMINATED || st.GetSource() != mesospb.TaskStatus_SOURCE_AGENT ||
		st.GetMessage() != "Executor terminated: exited with status 3" || st.GetExecutorId().GetValue() != "e-crash" {
		t.Errorf("TASK_FAILED %v", st)
	}
	exited, exitedAt := m.waitCall(t, "EXECUTOR_EXITED", func(c *agentpb.Call) bool { return c.GetType() == agentpb.Call_EXECUTOR_EXITED })
	if exitedAt > failedAt || exited.GetExecutorExited().GetStatus() != 3<<8 || exited.GetExecutorExited().GetExecutorId().GetValue() != "e-crash" {
		t.Errorf("EXECUTOR_EXITED %v (call %d, TASK_FAILED is call %d)", exited, exitedAt, failedAt)
	}
	// The executor is gone: the API does not know it anymore.
	code, body := post(t, a.url("/api/v1/executor"), "application/json",
		`{"type": "MESSAGE", "framework_id": {"value": "fw"}, "executor_id": {"value": "e-crash"}, "message": {"data": "aGk="}}`)
	if code != 400 || (body != "Executor cannot be found" && body != "Framework cannot be found") {
		t.Errorf("after exit: %d %q", code, body)
	}
}

// SHUTDOWN_EXECUTOR: the executor gets SHUTDOWN; one that ignores it (and
// SIGTERM) is killed with its whole process group when its grace period
// ends, and so is what it started in a session of its own: no process
// outlives its executor.
func TestShutdownGracePeriodThenEverythingKilled(t *testing.T) {
	m := newFakeMaster(t)
	a := startAgent(t, testConfig(t, m, t.TempDir()))
	waitFor(t, "registered", a.Registered)
	task := taskInfo("t-stubborn", a.ID())
	task.Executor = fakeExecutorInfo(t, "e-stubborn", "stubborn")
	task.Executor.ShutdownGracePeriod = &mesospb.DurationInfo{Nanoseconds: proto.Int64(int64(1500 * time.Millisecond))}
	m.send(runTaskEvent(frameworkInfo("fw"), task))
	m.waitUpdate(t, "t-stubborn", mesospb.TaskState_TASK_RUNNING)
	sandbox, _ := os.Readlink(filepath.Join(a.dir, "slaves", a.ID(), "frameworks", "fw", "executors", "e-stubborn", "runs", "latest"))
	var pids []int
	waitFor(t, "the executor's children", func() bool {
		b, err := os.ReadFile(filepath.Join(sandbox, "children"))
		if err != nil {
			return false
		}
		pids = nil
		for _, f := range strings.Fields(string(b)) {
			p, _ := strconv.Atoi(f)
			pids = append(pids, p)
		}
		return len(pids) == 2
	})
	b, _ := os.ReadFile(filepath.Join(sandbox, "executor.pid"))
	execPid, _ := strconv.Atoi(string(b))
	pids = append(pids, execPid)
	if _, pg, _ := procStat(execPid); pg != execPid {
		t.Errorf("the executor is not the leader of its own process group (pgid %d)", pg)
	}
	if _, pg, _ := procStat(pids[1]); pg == execPid {
		t.Errorf("the setsid child is still in the executor's group")
	}

	start := time.Now()
	m.send(&agentpb.Event{Type: agentpb.Event_SHUTDOWN_EXECUTOR.Enum(), ShutdownExecutor: &agentpb.Event_ShutdownExecutor{
		FrameworkId: &mesospb.FrameworkID{Value: proto.String("fw")}, ExecutorId: &mesospb.ExecutorID{Value: proto.String("e-stubborn")}}})
	m.waitCall(t, "EXECUTOR_EXITED", func(c *agentpb.Call) bool { return c.GetType() == agentpb.Call_EXECUTOR_EXITED })
	if d := time.Since(start); d < 1400*time.Millisecond {
		t.Errorf("killed after %v, before its grace period of 1.5s", d)
	}
	for _, pid := range pids {
		if alive(pid) {
			t.Errorf("process %d outlived its executor", pid)
		}
	}
	if n := groupMembers(execPid); !allZombies(n) {
		t.Errorf("the executor's process group still has %v", n)
	}
	st := m.waitUpdate(t, "t-stubborn", mesospb.TaskState_TASK_FAILED)
	if st.GetReason() != mesospb.TaskStatus_REASON_EXECUTOR_TERMINATED || !strings.Contains(st.GetMessage(), "terminated with signal Killed") {
		t.Errorf("TASK_FAILED %v", st)
	}
}

// The agent's own SIGTERM (its context ending) shuts every executor down
// gracefully: a well-behaved executor gets SHUTDOWN and kills its task
// itself; nothing of the agent's is left afterwards (checked by stop).
func TestAgentStopShutsExecutorsDown(t *testing.T) {
	m := newFakeMaster(t)
	a := startAgent(t, testConfig(t, m, t.TempDir()))
	waitFor(t, "registered", a.Registered)
	for _, id := range []string{"1", "2"} {
		task := taskInfo("t-"+id, a.ID())
		task.Executor = fakeExecutorInfo(t, "e-"+id, map[string]string{"1": "normal", "2": "stubborn"}[id])
		m.send(runTaskEvent(frameworkInfo("fw"), task))
		m.waitUpdate(t, "t-"+id, mesospb.TaskState_TASK_RUNNING)
	}
	a.stop(t)
	// The executor that obeyed SHUTDOWN reported its task killed; the
	// stubborn one was killed, and its task reported failed on the way
	// out.
	if ups := m.updates("t-1"); ups[len(ups)-1].GetState() != mesospb.TaskState_TASK_KILLED {
		t.Errorf("t-1: %v", ups)
	}
	if ups := m.updates("t-2"); ups[len(ups)-1].GetState() != mesospb.TaskState_TASK_FAILED {
		t.Errorf("t-2: %v", ups)
	}
}

// The master's SHUTDOWN (it removed the agent): every executor is killed,
// the checkpointed ID forgotten, and the agent registers as a new agent.
func TestRemovedAgentStartsAfresh(t *testing.T) {
	m := newFakeMaster(t)
	a := startAgent(t, testConfig(t, m, t.TempDir()))
	waitFor(t, "registered", a.Registered)
	task := taskInfo("t-1", a.ID())
	task.Executor = fakeExecutorInfo(t, "e-1", "normal")
	m.send(runTaskEvent(frameworkInfo("fw"), task))
	m.waitUpdate(t, "t-1", mesospb.TaskState_TASK_RUNNING)
	m.mu.Lock()
	m.shutdown = true
	m.mu.Unlock()
	m.breakStream()
	regs := m.waitRegistrations(t, 3)
	if regs[1].GetAgentId().GetValue() != "fake-S1" || len(regs[1].GetRegister().GetTasks()) != 1 {
		t.Errorf("re-registration %v", regs[1])
	}
	if regs[2].AgentId != nil || len(regs[2].GetRegister().GetTasks()) != 0 || len(regs[2].GetRegister().GetFrameworks()) != 0 {
		t.Errorf("after SHUTDOWN the agent registers as a new one, got %v", regs[2])
	}
	waitFor(t, "the new ID", func() bool { return a.ID() == "fake-S2" })
	if n := len(markedProcesses("MESOS_EXECUTOR_ID=e-1")); n != 0 {
		t.Errorf("%d processes of the executor survived the agent's removal", n)
	}
	if target, _ := os.Readlink(filepath.Join(a.dir, "meta", "slaves", "latest")); filepath.Base(target) != "fake-S2" {
		t.Errorf("checkpointed ID %q", target)
	}
	if _, err := os.Stat(filepath.Join(a.dir, "meta", "slaves", "fake-S1")); !os.IsNotExist(err) {
		t.Errorf("the old agent's checkpoints are kept: %v", err)
	}
}
