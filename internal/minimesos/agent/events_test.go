package agent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

// Validation and answers of the executor API beyond the recording, from
// Mesos' source (src/common/validation.cpp, src/slave/http.cpp).
func TestExecutorAPIValidation(t *testing.T) {
	a, err := New(Config{Master: "127.0.0.1:1", WorkDir: t.TempDir(), Resources: "cpus:1;mem:128"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	upd := func(status string) string {
		return `{"type": "UPDATE", "framework_id": {"value": "fw"}, "executor_id": {"value": "e"}, "update": {"status": ` + status + `}}`
	}
	for _, c := range []struct {
		name, ct, body string
		recovering     bool
		code           int
		want           string
	}{
		{"executor ID mismatch", "application/json", upd(`{"task_id": {"value": "t"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR", "executor_id": {"value": "other"}, "uuid": "8AxwNM3lTCCPgFrPNvYdGg=="}`), false, 400,
			"Failed to validate Executor::Call: ExecutorID in Call: e does not match ExecutorID in TaskStatus: other"},
		{"source", "application/json", upd(`{"task_id": {"value": "t"}, "state": "TASK_RUNNING", "source": "SOURCE_AGENT", "uuid": "8AxwNM3lTCCPgFrPNvYdGg=="}`), false, 400,
			"Failed to validate Executor::Call: Received Call from executor e of framework fw with invalid source, expecting 'SOURCE_EXECUTOR'"},
		{"no uuid checked before STAGING", "application/json", upd(`{"task_id": {"value": "t"}, "state": "TASK_STAGING", "source": "SOURCE_EXECUTOR"}`), false, 400,
			"Failed to validate Executor::Call: Expecting 'uuid' to be present"},
		{"no type", "application/json", `{"framework_id": {"value": "fw"}, "executor_id": {"value": "e"}}`, false, 400,
			"Failed to validate Executor::Call: Expecting 'type' to be present"},
		{"no executor_id", "application/json", `{"type": "HEARTBEAT", "framework_id": {"value": "fw"}}`, false, 400,
			"Failed to convert JSON into Call protobuf: "},
		{"bad protobuf", "application/x-protobuf", "\xff\xff", false, 400, "Failed to parse body into Call protobuf"},
		{"heartbeat of anyone", "application/json", `{"type": "HEARTBEAT", "framework_id": {"value": "x"}, "executor_id": {"value": "y"}}`, true, 202, ""},
		{"recovering", "application/json", upd(`{"task_id": {"value": "t"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR", "uuid": "8AxwNM3lTCCPgFrPNvYdGg=="}`), true, 503,
			"Agent has not finished recovery"},
		{"subscribe while recovering", "application/json", `{"type": "SUBSCRIBE", "framework_id": {"value": "fw"}, "executor_id": {"value": "e"}, "subscribe": {}}`, true, 400,
			"Framework cannot be found"},
	} {
		a.mu.Lock()
		a.recovering = c.recovering
		a.mu.Unlock()
		code, body := post(t, srv.URL+"/api/v1/executor", c.ct, c.body)
		if code != c.code || !strings.HasPrefix(body, c.want) {
			t.Errorf("%s: %d %q, want %d %q", c.name, code, body, c.code, c.want)
		}
	}
}

// PING gets a PONG with its sequence; subscribed executors get HEARTBEATs
// (in the encoding they accept);
// a task group reaches the executor as LAUNCH_GROUP; UPDATE_FRAMEWORK
// takes; SHUTDOWN_FRAMEWORK shuts its executors down without forwarding
// their tasks' updates (the framework is gone) and forgets it.
func TestMasterEventsAndFrameworkLifecycle(t *testing.T) {
	m := newFakeMaster(t)
	cfg := testConfig(t, m, t.TempDir())
	cfg.ExecutorHeartbeatInterval = 100 * time.Millisecond
	a := startAgent(t, cfg)
	waitFor(t, "registered", a.Registered)

	m.send(&agentpb.Event{Type: agentpb.Event_PING.Enum(), Ping: &agentpb.Event_Ping{Sequence: proto.Uint64(7)}})
	pong, _ := m.waitCall(t, "PONG", func(c *agentpb.Call) bool { return c.GetType() == agentpb.Call_PONG })
	if pong.GetPong().GetSequence() != 7 || pong.GetAgentId().GetValue() != a.ID() {
		t.Errorf("PONG %v", pong)
	}

	// Heartbeats, on a subscription the test makes for a silent executor.
	silent := taskInfo("t-silent", a.ID())
	silent.Executor = &mesospb.ExecutorInfo{ExecutorId: &mesospb.ExecutorID{Value: proto.String("e-silent")}, Command: &mesospb.CommandInfo{Value: proto.String("sleep 30")}}
	m.send(runTaskEvent(frameworkInfo("fw-silent"), silent))
	waitFor(t, "the executor", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.frameworks["fw-silent"] != nil
	})
	// (In protobuf, which the executor asks for.)
	er := subscribe(t, a.url("/api/v1/executor"), `{"type": "SUBSCRIBE", "framework_id": {"value": "fw-silent"}, "executor_id": {"value": "e-silent"}, "subscribe": {}}`, "application/x-protobuf")
	if ct := er.resp.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		t.Errorf("stream in %q", ct)
	}
	er.next(t, executorpb.Event_SUBSCRIBED)
	er.next(t, executorpb.Event_LAUNCH)
	er.next(t, executorpb.Event_HEARTBEAT)

	// A task group.
	fi := frameworkInfo("fw")
	group := &mesospb.TaskGroupInfo{Tasks: []*mesospb.TaskInfo{taskInfo("t-a", a.ID()), taskInfo("t-b", a.ID())}}
	m.send(&agentpb.Event{Type: agentpb.Event_RUN_TASK_GROUP.Enum(), RunTaskGroup: &agentpb.Event_RunTaskGroup{
		FrameworkInfo: fi, ExecutorInfo: fakeExecutorInfo(t, "e-group", "normal"), TaskGroup: group}})
	m.waitUpdate(t, "t-a", mesospb.TaskState_TASK_RUNNING)
	m.waitUpdate(t, "t-b", mesospb.TaskState_TASK_RUNNING)

	renamed := proto.Clone(fi).(*mesospb.FrameworkInfo)
	renamed.Name = proto.String("renamed")
	m.send(&agentpb.Event{Type: agentpb.Event_UPDATE_FRAMEWORK.Enum(), UpdateFramework: &agentpb.Event_UpdateFramework{FrameworkInfo: renamed}})
	waitFor(t, "the new FrameworkInfo", func() bool {
		resp, err := http.Get(a.url("/state"))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct {
			Frameworks []struct{ ID, Name string } `json:"frameworks"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		for _, f := range st.Frameworks {
			if f.ID == "fw" && f.Name == "renamed" {
				return true
			}
		}
		return false
	})

	m.send(&agentpb.Event{Type: agentpb.Event_SHUTDOWN_FRAMEWORK.Enum(), ShutdownFramework: &agentpb.Event_ShutdownFramework{FrameworkId: fi.Id}})
	m.waitCall(t, "EXECUTOR_EXITED", func(c *agentpb.Call) bool {
		return c.GetType() == agentpb.Call_EXECUTOR_EXITED && c.GetExecutorExited().GetExecutorId().GetValue() == "e-group"
	})
	waitFor(t, "the framework forgotten", func() bool {
		code, body := post(t, a.url("/api/v1/executor"), "application/json", `{"type": "MESSAGE", "framework_id": {"value": "fw"}, "executor_id": {"value": "e-group"}, "message": {"data": "aGk="}}`)
		return code == 400 && body == "Framework cannot be found"
	})
	for _, id := range []string{"t-a", "t-b"} {
		if ups := m.updates(id); len(ups) != 1 {
			t.Errorf("%s: updates forwarded after the framework's shutdown: %v", id, ups)
		}
	}
}

// A kill of one task of a group queued for an executor that has not
// subscribed kills the whole group, as Mesos does.
func TestKillOfAQueuedGroup(t *testing.T) {
	m := newFakeMaster(t)
	a := startAgent(t, testConfig(t, m, t.TempDir()))
	waitFor(t, "registered", a.Registered)
	group := &mesospb.TaskGroupInfo{Tasks: []*mesospb.TaskInfo{taskInfo("t-a", a.ID()), taskInfo("t-b", a.ID())}}
	m.send(&agentpb.Event{Type: agentpb.Event_RUN_TASK_GROUP.Enum(), RunTaskGroup: &agentpb.Event_RunTaskGroup{
		FrameworkInfo: frameworkInfo("fw"), TaskGroup: group,
		ExecutorInfo: &mesospb.ExecutorInfo{ExecutorId: &mesospb.ExecutorID{Value: proto.String("e")}, Command: &mesospb.CommandInfo{Value: proto.String("sleep 30")}}}})
	m.send(&agentpb.Event{Type: agentpb.Event_KILL_TASK.Enum(), KillTask: &agentpb.Event_KillTask{
		FrameworkId: &mesospb.FrameworkID{Value: proto.String("fw")}, TaskId: &mesospb.TaskID{Value: proto.String("t-b")}}})
	for _, id := range []string{"t-a", "t-b"} {
		st := m.waitUpdate(t, id, mesospb.TaskState_TASK_KILLED)
		if st.GetReason() != mesospb.TaskStatus_REASON_TASK_KILLED_DURING_LAUNCH || st.GetMessage() != "A task within the task group was killed before delivery to the executor" {
			t.Errorf("%s: %v", id, st)
		}
	}
}
