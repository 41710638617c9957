package agent

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

func recordedTaskEnv(t *testing.T) map[string]string {
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
		case strings.HasPrefix(l, "--- sandbox 'stdout' (the output of env | sort"):
			in = true
		case in && l == "":
			return env
		case in:
			k, v, _ := strings.Cut(l, "=")
			env[k] = v
		}
	}
	t.Fatal("no command task environment in the recording")
	return nil
}

// Command tasks run under the command executor (a process of its own, with
// executor ID = task ID) and report what Mesos' command executor reports.
func TestCommandExecutor(t *testing.T) {
	m := newFakeMaster(t)
	a := startAgent(t, testConfig(t, m, t.TempDir()))
	waitFor(t, "registered", a.Registered)
	plain := frameworkInfo("fw")
	killing := frameworkInfo("fw-killing", mesospb.FrameworkInfo_Capability_TASK_KILLING_STATE)
	run := func(fw *mesospb.FrameworkInfo, id string, ci *mesospb.CommandInfo, mutate ...func(*mesospb.TaskInfo)) {
		task := taskInfo(id, a.ID())
		task.Command = ci
		for _, f := range mutate {
			f(task)
		}
		m.send(runTaskEvent(fw, task))
	}
	sh := func(s string) *mesospb.CommandInfo { return &mesospb.CommandInfo{Value: proto.String(s)} }
	run(plain, "t-echo", sh("echo hi"))
	run(plain, "t-exit", sh("exit 3"))
	run(plain, "t-args", &mesospb.CommandInfo{Shell: proto.Bool(false), Value: proto.String("echo"), Arguments: []string{"echo", "a", "b"}})
	run(plain, "t-env", sh("env | sort"), func(ti *mesospb.TaskInfo) { ti.Resources = resources.WithAllocationRole(ti.Resources, "*") })
	run(plain, "t-sleep", sh("sleep 60"))
	run(killing, "t-killing", sh("sleep 60"))
	run(plain, "t-stubborn", sh("trap '' TERM; sleep 60; sleep 60"), func(ti *mesospb.TaskInfo) {
		ti.KillPolicy = &mesospb.KillPolicy{GracePeriod: &mesospb.DurationInfo{Nanoseconds: proto.Int64(int64(500 * time.Millisecond))}}
	})

	sandbox := func(fw, id string) string {
		return filepath.Join(a.dir, "slaves", a.ID(), "frameworks", fw, "executors", id, "runs", "latest")
	}
	states := func(id string) []string {
		var out []string
		for _, st := range m.updates(id) {
			out = append(out, st.GetState().String())
		}
		return out
	}
	fin := m.waitUpdate(t, "t-echo", mesospb.TaskState_TASK_FINISHED)
	if got := strings.Join(states("t-echo"), " "); got != "TASK_STARTING TASK_RUNNING TASK_FINISHED" {
		t.Errorf("t-echo: %s", got)
	}
	if fin.GetMessage() != "Command exited with status 0" || fin.GetSource() != mesospb.TaskStatus_SOURCE_EXECUTOR ||
		fin.GetExecutorId().GetValue() != "t-echo" || fin.GetContainerStatus().GetExecutorPid() == 0 || fin.Reason != nil {
		t.Errorf("TASK_FINISHED %v", fin)
	}
	if b, _ := os.ReadFile(filepath.Join(sandbox("fw", "t-echo"), "stdout")); string(b) != "hi\n" {
		t.Errorf("stdout %q", b)
	}
	if st := m.waitUpdate(t, "t-exit", mesospb.TaskState_TASK_FAILED); st.GetMessage() != "Command exited with status 3" || st.GetSource() != mesospb.TaskStatus_SOURCE_EXECUTOR {
		t.Errorf("t-exit %v", st)
	}
	m.waitUpdate(t, "t-args", mesospb.TaskState_TASK_FINISHED)
	if b, _ := os.ReadFile(filepath.Join(sandbox("fw", "t-args"), "stdout")); string(b) != "a b\n" {
		t.Errorf("shell=false stdout %q", b)
	}

	// The task's environment is the recorded one.
	m.waitUpdate(t, "t-env", mesospb.TaskState_TASK_FINISHED)
	b, _ := os.ReadFile(filepath.Join(sandbox("fw", "t-env"), "stdout"))
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
	}
	want := recordedTaskEnv(t)
	for k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("task environment lacks %s", k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok && k != OwnerEnv {
			t.Errorf("task environment has %s=%s, which Mesos does not give", k, got[k])
		}
	}
	if got["MESOS_ALLOCATION_ROLE"] != "*" || got["MESOS_EXECUTOR_ID"] != "t-env" {
		t.Errorf("task environment %v", got)
	}

	// Kills: SIGTERM → TASK_KILLED "Command terminated with signal
	// Terminated"; TASK_KILLING first for a framework that has the
	// capability; a command that ignores SIGTERM gets SIGKILL after its
	// kill policy's grace period.
	kill := func(fw, id string) {
		m.waitUpdate(t, id, mesospb.TaskState_TASK_RUNNING)
		m.send(&agentpb.Event{Type: agentpb.Event_KILL_TASK.Enum(), KillTask: &agentpb.Event_KillTask{
			FrameworkId: &mesospb.FrameworkID{Value: proto.String(fw)}, TaskId: &mesospb.TaskID{Value: proto.String(id)}}})
	}
	kill("fw", "t-sleep")
	kill("fw-killing", "t-killing")
	start := time.Now()
	kill("fw", "t-stubborn")
	if st := m.waitUpdate(t, "t-sleep", mesospb.TaskState_TASK_KILLED); st.GetMessage() != "Command terminated with signal Terminated" {
		t.Errorf("t-sleep %v", st)
	}
	if got := strings.Join(states("t-sleep"), " "); got != "TASK_STARTING TASK_RUNNING TASK_KILLED" {
		t.Errorf("t-sleep: %s (no TASK_KILLING without the capability)", got)
	}
	m.waitUpdate(t, "t-killing", mesospb.TaskState_TASK_KILLED)
	if got := strings.Join(states("t-killing"), " "); got != "TASK_STARTING TASK_RUNNING TASK_KILLING TASK_KILLED" {
		t.Errorf("t-killing: %s", got)
	}
	if st := m.waitUpdate(t, "t-stubborn", mesospb.TaskState_TASK_KILLED); st.GetMessage() != "Command terminated with signal Killed" || time.Since(start) < 500*time.Millisecond {
		t.Errorf("t-stubborn %v after %v", st, time.Since(start))
	}

	// No FAILURE for the command executor: once every command executor's
	// end is handled, the master has heard no EXECUTOR_EXITED.
	waitFor(t, "command executors gone", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, fw := range append(append([]*framework{}, a.completedFw...), a.frameworks["fw"], a.frameworks["fw-killing"]) {
			if fw == nil {
				continue
			}
			if len(fw.executors) > 0 {
				return false
			}
			for _, e := range fw.completed {
				select {
				case <-e.exited:
				default:
					return false
				}
			}
		}
		return true
	})
	for _, c := range m.snapshot() {
		if c.GetType() == agentpb.Call_EXECUTOR_EXITED {
			t.Errorf("EXECUTOR_EXITED for a command executor: %v", c)
		}
	}
}

// A kill of a task still queued for an executor that has not subscribed
// never reaches it: TASK_KILLED with REASON_TASK_KILLED_DURING_LAUNCH from
// the agent, and the executor, with nothing left to run, is shut down. A
// kill of a task no executor runs is answered TASK_LOST.
func TestKillBeforeDelivery(t *testing.T) {
	m := newFakeMaster(t)
	cfg := testConfig(t, m, t.TempDir())
	cfg.ExecutorShutdownGracePeriod = 100 * time.Millisecond
	a := startAgent(t, cfg)
	waitFor(t, "registered", a.Registered)
	task := taskInfo("t-queued", a.ID())
	task.Executor = &mesospb.ExecutorInfo{ExecutorId: &mesospb.ExecutorID{Value: proto.String("e-silent")}, Command: &mesospb.CommandInfo{Value: proto.String("sleep 30")}}
	m.send(runTaskEvent(frameworkInfo("fw"), task))
	for _, id := range []string{"t-queued", "t-unknown"} {
		m.send(&agentpb.Event{Type: agentpb.Event_KILL_TASK.Enum(), KillTask: &agentpb.Event_KillTask{
			FrameworkId: &mesospb.FrameworkID{Value: proto.String("fw")}, TaskId: &mesospb.TaskID{Value: proto.String(id)}}})
	}
	st := m.waitUpdate(t, "t-queued", mesospb.TaskState_TASK_KILLED)
	if st.GetReason() != mesospb.TaskStatus_REASON_TASK_KILLED_DURING_LAUNCH || st.GetSource() != mesospb.TaskStatus_SOURCE_AGENT ||
		st.GetMessage() != "Killed before delivery to the executor" || st.GetExecutorId().GetValue() != "e-silent" {
		t.Errorf("TASK_KILLED %v", st)
	}
	lost := m.waitUpdate(t, "t-unknown", mesospb.TaskState_TASK_LOST)
	if lost.GetReason() != mesospb.TaskStatus_REASON_EXECUTOR_TERMINATED || lost.GetMessage() != "Cannot find executor" {
		t.Errorf("TASK_LOST %v", lost)
	}
	m.waitCall(t, "the idle executor shut down", func(c *agentpb.Call) bool { return c.GetType() == agentpb.Call_EXECUTOR_EXITED })
}
