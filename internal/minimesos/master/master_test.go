package master

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

const agentRes = "cpus:4;mem:4096;disk:1000;ports:[31000-32000]"

var encodings = []codec.Encoding{codec.JSON, codec.Protobuf}

// The status codes and texts are the ones a real Mesos 1.11 master answered
// (testdata/mesos-recordings/scheduler-errors.txt).
func TestSchedulerEndpointErrorsAsMesos(t *testing.T) {
	h := newHarness(t, Config{})
	sub := `{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "root", "name": "recorder", "roles": ["*"], "capabilities": [{"type": "MULTI_ROLE"}, {"type": "PARTITION_AWARE"}]}}}`
	s := h.subscribe(codec.JSON, frameworkInfo("running", mesospb.FrameworkInfo_Capability_MULTI_ROLE))
	fwid := `{"value": "` + s.id + `"}`
	for _, c := range []struct {
		name, method, ct, body string
		headers                map[string]string
		code                   int
		want                   string
	}{
		{"GET", "GET", "", "", nil, 405, "405 Method Not Allowed. Expecting one of { 'POST' }, but received 'GET'."},
		{"no content type", "POST", "", sub, nil, 400, "Expecting 'Content-Type' to be present"},
		{"text/plain", "POST", "text/plain", sub, nil, 415, "Expecting 'Content-Type' of application/json or application/x-protobuf"},
		{"charset", "POST", "application/json; charset=utf-8", sub, nil, 415, "Expecting 'Content-Type' of application/json or application/x-protobuf"},
		{"malformed JSON", "POST", "application/json", `{"type": "SUBSCRIBE", "subscribe": {`, nil, 400, "Failed to parse body into JSON: "},
		{"empty body", "POST", "application/json", ``, nil, 400, "Failed to parse body into JSON: "},
		{"not an object", "POST", "application/json", `[1,2,3]`, nil, 400, "Failed to convert JSON into Call protobuf: Expecting a JSON object"},
		{"missing user", "POST", "application/json", `{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "recorder"}}}`, nil, 400,
			"Failed to convert JSON into Call protobuf: Missing required fields: subscribe.framework_info.user"},
		{"no subscribe", "POST", "application/json", `{"type": "SUBSCRIBE"}`, nil, 400, "Failed to validate scheduler::Call: Expecting 'subscribe' to be present"},
		{"unknown type", "POST", "application/json", `{"type": "FOO"}`, nil, 400, "Failed to validate scheduler::Call: Expecting 'type' to be present"},
		{"user is a number", "POST", "application/json", `{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": 5, "name": "x"}}}`, nil, 400,
			"Failed to convert JSON into Call protobuf: Not expecting a JSON number for field 'user'"},
		{"Accept text/html", "POST", "application/json", sub, map[string]string{"Accept": "text/html"}, 406, ""},
		{"stream id on subscribe", "POST", "application/json", sub, map[string]string{streamIDHeader: "x"}, 400, ""},
		{"unknown framework", "POST", "application/json", `{"type": "TEARDOWN", "framework_id": {"value": "no-such-framework"}}`,
			map[string]string{streamIDHeader: "0cfbc6dc-b33d-4cfe-80ed-dffc04ba1690"}, 400, "Framework cannot be found"},
		{"no framework_id", "POST", "application/json", `{"type": "REVIVE"}`, nil, 400, "Failed to validate scheduler::Call: Expecting 'framework_id' to be present"},
		{"no stream id", "POST", "application/json", `{"type": "REVIVE", "framework_id": ` + fwid + `}`, nil, 400,
			"All non-subscribe calls should include the 'Mesos-Stream-Id' header"},
		{"wrong stream id", "POST", "application/json", `{"type": "REVIVE", "framework_id": ` + fwid + `}`,
			map[string]string{streamIDHeader: "not-a-uuid"}, 400,
			"The stream ID 'not-a-uuid' included in this request didn't match the stream ID currently associated with framework ID " + s.id},
		{"short uuid", "POST", "application/json", `{"type": "ACKNOWLEDGE", "framework_id": ` + fwid + `, "acknowledge": {"agent_id": {"value": "x-S0"}, "task_id": {"value": "t"}, "uuid": "YWJj"}}`,
			map[string]string{streamIDHeader: s.stream.streamID}, 400, "Failed to validate scheduler::Call: Not a valid UUID"},
		{"uuid version 0", "POST", "application/json", `{"type": "ACKNOWLEDGE", "framework_id": ` + fwid + `, "acknowledge": {"agent_id": {"value": "x-S0"}, "task_id": {"value": "t"}, "uuid": "By/xOqX6BlypqbeilpkvHg=="}}`,
			map[string]string{streamIDHeader: s.stream.streamID}, 400, "Failed to validate scheduler::Call: Not a valid UUID"},
		{"ack unknown task", "POST", "application/json", `{"type": "ACKNOWLEDGE", "framework_id": ` + fwid + `, "acknowledge": {"agent_id": {"value": "x-S0"}, "task_id": {"value": "t"}, "uuid": "` + "Q4+9scagQMmg5SEgyMIJ7g==" + `"}}`,
			map[string]string{streamIDHeader: s.stream.streamID}, 202, ""},
		{"revive with Accept text/html", "POST", "application/json", `{"type": "REVIVE", "framework_id": ` + fwid + `}`,
			map[string]string{streamIDHeader: s.stream.streamID, "Accept": "text/html"}, 202, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(c.method, h.srv.URL+"/api/v1/scheduler", strings.NewReader(c.body))
			if c.ct != "" {
				req.Header.Set("Content-Type", c.ct)
			}
			for k, v := range c.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := new(strings.Builder)
			_, _ = io.Copy(buf, resp.Body)
			if resp.StatusCode != c.code {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, c.code, buf)
			}
			if c.want != "" && !strings.HasPrefix(buf.String(), c.want) {
				t.Fatalf("body %q, want %q", buf, c.want)
			}
			if c.code == 405 && resp.Header.Get("Allow") != "POST" {
				t.Fatalf("Allow header %q", resp.Header.Get("Allow"))
			}
		})
	}
}

func TestOffersDeclineReviveSuppress(t *testing.T) {
	for _, enc := range encodings {
		t.Run(enc.String(), func(t *testing.T) {
			h := newHarness(t, Config{})
			a := h.registerAgent(agentInfo("agent-1", agentRes))
			s := h.subscribe(enc, frameworkInfo("f", mesospb.FrameworkInfo_Capability_MULTI_ROLE, mesospb.FrameworkInfo_Capability_PARTITION_AWARE))
			offers := s.offers()
			if len(offers) != 1 {
				t.Fatalf("want one offer for one agent, got %d", len(offers))
			}
			o := offers[0]
			if o.GetAgentId().GetValue() != a.id || o.GetAllocationInfo().GetRole() != "*" {
				t.Fatalf("offer %v", o)
			}
			if got := resources.Scalar(o.GetResources(), "cpus"); got != 4 {
				t.Fatalf("offered cpus %v", got)
			}
			for _, r := range o.GetResources() {
				if r.GetAllocationInfo().GetRole() != "*" {
					t.Fatalf("MULTI_ROLE offers carry allocation_info on every resource: %v", r)
				}
			}
			// DECLINE for an hour: no offers on later cycles.
			s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_DECLINE.Enum(), Decline: &schedulerpb.Call_Decline{
				OfferIds: offerIDs(o), Filters: &mesospb.Filters{RefuseSeconds: proto.Float64(3600)}}})
			h.tick(2 * time.Second)
			h.tick(2 * time.Second)
			s.stream.none(isType(schedulerpb.Event_OFFERS))
			// REVIVE clears the filter: offers come back at once.
			s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_REVIVE.Enum()})
			o = s.offers()[0]
			// SUPPRESS, decline without a filter: nothing while suppressed.
			s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_SUPPRESS.Enum()})
			s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_DECLINE.Enum(), Decline: &schedulerpb.Call_Decline{
				OfferIds: offerIDs(o), Filters: &mesospb.Filters{RefuseSeconds: proto.Float64(0)}}})
			h.tick(2 * time.Second)
			s.stream.none(isType(schedulerpb.Event_OFFERS))
			s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_REVIVE.Enum()})
			s.offers()
		})
	}
}

func TestDefaultDeclineFilterAndSubsetRule(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.registerAgent(agentInfo("agent-1", agentRes))
	s := h.subscribe(codec.JSON, frameworkInfo("f"))
	o := s.offers()[0]
	if o.AllocationInfo != nil || o.GetResources()[0].AllocationInfo != nil {
		t.Fatalf("frameworks without MULTI_ROLE get no allocation_info: %v", o)
	}
	// DECLINE with no filters: the default is 5 s.
	s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_DECLINE.Enum(), Decline: &schedulerpb.Call_Decline{OfferIds: offerIDs(o)}})
	h.tick(4 * time.Second)
	s.stream.none(isType(schedulerpb.Event_OFFERS))
	h.tick(1100 * time.Millisecond)
	o = s.offers()[0]
	// Accept part of the offer with a long filter: the rest is refused,
	// until the task frees its resources (more than was refused).
	task := commandTask("t1", a.id, "cpus:1;mem:128")
	call := launch(offerIDs(o), task)
	call.Accept.Filters = &mesospb.Filters{RefuseSeconds: proto.Float64(3600)}
	s.mustCall(call)
	a.next(agentpb.Event_RUN_TASK)
	h.tick(2 * time.Second)
	s.stream.none(isType(schedulerpb.Event_OFFERS))
	uuid := a.status(s.id, "t1", mesospb.TaskState_TASK_FINISHED)
	if st := s.update(); st.GetState() != mesospb.TaskState_TASK_FINISHED || string(st.GetUuid()) != string(uuid) {
		t.Fatalf("update %v", st)
	}
	h.tick(time.Second)
	if got := resources.Scalar(s.offers()[0].GetResources(), "cpus"); got != 4 {
		t.Fatalf("freed resources break the filter: offered %v cpus", got)
	}
}

func TestLaunchUpdatesAcknowledgeReconcile(t *testing.T) {
	for _, enc := range encodings {
		t.Run(enc.String(), func(t *testing.T) {
			h := newHarness(t, Config{})
			a := h.registerAgent(agentInfo("agent-1", agentRes))
			s := h.subscribe(enc, frameworkInfo("f", mesospb.FrameworkInfo_Capability_MULTI_ROLE, mesospb.FrameworkInfo_Capability_PARTITION_AWARE))
			o := s.offers()[0]
			// Several tasks from one offer in one ACCEPT.
			var tasks []*mesospb.TaskInfo
			for _, id := range []string{"t1", "t2", "t3"} {
				tasks = append(tasks, commandTask(id, a.id, "cpus:1;mem:256"))
			}
			s.mustCall(launch(offerIDs(o), tasks...))
			for range tasks {
				run := a.next(agentpb.Event_RUN_TASK)
				if run.GetRunTask().GetFrameworkInfo().GetId().GetValue() != s.id {
					t.Fatalf("RUN_TASK without the framework: %v", run)
				}
			}
			// Implicit reconciliation shows them STAGING (Mesos sends no
			// STAGING update otherwise).
			s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_RECONCILE.Enum(), Reconcile: &schedulerpb.Call_Reconcile{}})
			for range tasks {
				st := s.update()
				if st.GetState() != mesospb.TaskState_TASK_STAGING || st.GetReason() != mesospb.TaskStatus_REASON_RECONCILIATION || st.Uuid != nil {
					t.Fatalf("reconciliation %v", st)
				}
			}
			uuid := a.status(s.id, "t1", mesospb.TaskState_TASK_RUNNING)
			st := s.update()
			if st.GetState() != mesospb.TaskState_TASK_RUNNING || string(st.GetUuid()) != string(uuid) || st.GetAgentId().GetValue() != a.id {
				t.Fatalf("update %v", st)
			}
			s.mustCall(ack(st))
			if got := a.next(agentpb.Event_ACKNOWLEDGE).GetAcknowledge(); string(got.GetUuid()) != string(uuid) || got.GetTaskId().GetValue() != "t1" {
				t.Fatalf("ack to agent %v", got)
			}
			// Explicit reconciliation: known, then unknown with and
			// without agent.
			s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_RECONCILE.Enum(), Reconcile: &schedulerpb.Call_Reconcile{Tasks: []*schedulerpb.Call_Reconcile_Task{
				{TaskId: &mesospb.TaskID{Value: proto.String("t1")}, AgentId: &mesospb.AgentID{Value: proto.String(a.id)}},
				{TaskId: &mesospb.TaskID{Value: proto.String("nope")}, AgentId: &mesospb.AgentID{Value: proto.String(a.id)}},
				{TaskId: &mesospb.TaskID{Value: proto.String("nope2")}},
			}}})
			want := []struct {
				state mesospb.TaskState
				msg   string
			}{
				{mesospb.TaskState_TASK_RUNNING, "Reconciliation: Latest task state"},
				{mesospb.TaskState_TASK_GONE, "Reconciliation: Task is unknown to the agent"},
				{mesospb.TaskState_TASK_UNKNOWN, "Reconciliation: Task is unknown"},
			}
			for _, w := range want {
				st := s.update()
				if st.GetState() != w.state || st.GetMessage() != w.msg || st.Uuid != nil || st.GetSource() != mesospb.TaskStatus_SOURCE_MASTER {
					t.Fatalf("got %v, want %v %q", st, w.state, w.msg)
				}
			}
			// Finished and acknowledged: the task is forgotten.
			uuid = a.status(s.id, "t1", mesospb.TaskState_TASK_FINISHED)
			s.mustCall(ack(s.update()))
			a.next(agentpb.Event_ACKNOWLEDGE)
			s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_RECONCILE.Enum(), Reconcile: &schedulerpb.Call_Reconcile{Tasks: []*schedulerpb.Call_Reconcile_Task{
				{TaskId: &mesospb.TaskID{Value: proto.String("t1")}, AgentId: &mesospb.AgentID{Value: proto.String(a.id)}}}}})
			if st := s.update(); st.GetState() != mesospb.TaskState_TASK_GONE {
				t.Fatalf("finished and acknowledged task: %v", st)
			}
			// KILL: known task goes to the agent; unknown is answered.
			s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_KILL.Enum(), Kill: &schedulerpb.Call_Kill{TaskId: &mesospb.TaskID{Value: proto.String("t2")}}})
			if k := a.next(agentpb.Event_KILL_TASK); k.GetKillTask().GetTaskId().GetValue() != "t2" {
				t.Fatalf("kill %v", k)
			}
			s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_KILL.Enum(), Kill: &schedulerpb.Call_Kill{
				TaskId: &mesospb.TaskID{Value: proto.String("no-such-task-3")}, AgentId: &mesospb.AgentID{Value: proto.String(a.id)}}})
			if st := s.update(); st.GetState() != mesospb.TaskState_TASK_GONE || st.GetTaskId().GetValue() != "no-such-task-3" {
				t.Fatalf("kill of unknown task: %v", st)
			}
		})
	}
}

func TestNonPartitionAwareFrameworksGetLost(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.registerAgent(agentInfo("agent-1", agentRes))
	s := h.subscribe(codec.JSON, frameworkInfo("f"))
	o := s.offers()[0]
	s.mustCall(launch(offerIDs(o), commandTask("t1", a.id, "cpus:1;mem:32")))
	// Re-using the consumed offer: TASK_LOST, REASON_INVALID_OFFERS.
	s.mustCall(launch(offerIDs(o), commandTask("t-reused-offer", a.id, "cpus:1;mem:32")))
	st := s.update()
	if st.GetState() != mesospb.TaskState_TASK_LOST || st.GetReason() != mesospb.TaskStatus_REASON_INVALID_OFFERS ||
		st.GetMessage() != "Task launched with invalid offers: Offer "+o.GetId().GetValue()+" is no longer valid" {
		t.Fatalf("got %v", st)
	}
	s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_RECONCILE.Enum(), Reconcile: &schedulerpb.Call_Reconcile{Tasks: []*schedulerpb.Call_Reconcile_Task{
		{TaskId: &mesospb.TaskID{Value: proto.String("nope")}, AgentId: &mesospb.AgentID{Value: proto.String(a.id)}},
		{TaskId: &mesospb.TaskID{Value: proto.String("nope2")}}}}})
	for i := 0; i < 2; i++ {
		if st := s.update(); st.GetState() != mesospb.TaskState_TASK_LOST {
			t.Fatalf("got %v", st)
		}
	}
}

func TestInvalidTasksAreAnsweredAsMesosDoes(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.registerAgent(agentInfo("agent-1", agentRes))
	s := h.subscribe(codec.JSON, frameworkInfo("f", mesospb.FrameworkInfo_Capability_MULTI_ROLE, mesospb.FrameworkInfo_Capability_PARTITION_AWARE))
	both := commandTask("t-both", a.id, "cpus:0.1;mem:32")
	both.Executor = &mesospb.ExecutorInfo{ExecutorId: &mesospb.ExecutorID{Value: proto.String("e")}, Command: &mesospb.CommandInfo{Value: proto.String("x")}}
	for _, c := range []struct {
		task   *mesospb.TaskInfo
		prefix string
	}{
		{commandTask("t-too-big", a.id, "cpus:100;mem:32"), "Total resources "},
		{commandTask("bad/id x", a.id, "cpus:1;mem:32"), "'bad/id x' contains invalid characters"},
		{commandTask("", a.id, "cpus:1;mem:32"), "ID must not be empty"},
		{both, "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"},
		{commandTask("t-other-agent", "other-S9", "cpus:1;mem:32"), "Task uses invalid agent other-S9"},
	} {
		o := s.offers()[0]
		s.mustCall(launch(offerIDs(o), c.task))
		st := s.update()
		if st.GetState() != mesospb.TaskState_TASK_ERROR || st.GetReason() != mesospb.TaskStatus_REASON_TASK_INVALID ||
			!strings.HasPrefix(st.GetMessage(), c.prefix) || st.GetSource() != mesospb.TaskStatus_SOURCE_MASTER {
			t.Fatalf("%s: got %v", c.task.GetTaskId().GetValue(), st)
		}
		// The unused offer comes back after the default 5 s filter.
		h.tick(6 * time.Second)
	}
	// Duplicate ID of a live task.
	o := s.offers()[0]
	s.mustCall(launch(offerIDs(o), commandTask("t-dup", a.id, "cpus:1;mem:32")))
	h.tick(6 * time.Second)
	o = s.offers()[0]
	s.mustCall(launch(offerIDs(o), commandTask("t-dup", a.id, "cpus:1;mem:32")))
	if st := s.update(); st.GetMessage() != "Task has duplicate ID: t-dup" {
		t.Fatalf("got %v", st)
	}
	// An offer that never existed: TASK_DROPPED for partition-aware.
	s.mustCall(launch([]*mesospb.OfferID{{Value: proto.String("no-such-offer-O999")}}, commandTask("t-fake-offer", a.id, "cpus:1;mem:32")))
	if st := s.update(); st.GetState() != mesospb.TaskState_TASK_DROPPED ||
		st.GetMessage() != "Task launched with invalid offers: Offer no-such-offer-O999 is no longer valid" {
		t.Fatalf("got %v", st)
	}
}

func TestExecutorCompatibility(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.registerAgent(agentInfo("agent-1", agentRes))
	s := h.subscribe(codec.JSON, frameworkInfo("f", mesospb.FrameworkInfo_Capability_PARTITION_AWARE))
	exec := func(data string) *mesospb.ExecutorInfo {
		res, _ := parseTestResources("cpus:0.25;mem:64")
		return &mesospb.ExecutorInfo{
			ExecutorId: &mesospb.ExecutorID{Value: proto.String("km-executor")},
			Command:    &mesospb.CommandInfo{Value: proto.String("km executor")},
			Resources:  res, Data: []byte(data),
		}
	}
	withExec := func(id, data string) *mesospb.TaskInfo {
		t := commandTask(id, a.id, "cpus:0.5;mem:128")
		t.Command = nil
		t.Executor = exec(data)
		return t
	}
	o := s.offers()[0]
	s.mustCall(launch(offerIDs(o), withExec("p1", "v1"), withExec("p2", "v1")))
	a.next(agentpb.Event_RUN_TASK)
	a.next(agentpb.Event_RUN_TASK)
	h.tick(6 * time.Second)
	o = s.offers()[0]
	// The executor's resources were taken once: 4 - 2*0.5 - 0.25.
	if got := resources.Scalar(o.GetResources(), "cpus"); got != 2.75 {
		t.Fatalf("offered cpus %v, want 2.75", got)
	}
	if len(o.GetExecutorIds()) != 1 || o.GetExecutorIds()[0].GetValue() != "km-executor" {
		t.Fatalf("offer should name the running executor: %v", o.GetExecutorIds())
	}
	s.mustCall(launch(offerIDs(o), withExec("p3", "v2")))
	if st := s.update(); st.GetMessage() != "ExecutorInfo is not compatible with existing ExecutorInfo with same ExecutorID" {
		t.Fatalf("got %v", st)
	}
}

func TestFailoverAndRemoval(t *testing.T) {
	h := newHarness(t, Config{})
	h.registerAgent(agentInfo("agent-1", agentRes))
	fi := frameworkInfo("f", mesospb.FrameworkInfo_Capability_MULTI_ROLE)
	first := h.subscribe(codec.JSON, fi)
	first.offers()
	// A second subscription of the same framework fails the first over.
	second := h.subscribe(codec.JSON, fi)
	if second.id != first.id {
		t.Fatalf("failover changed the framework ID")
	}
	if ev := first.stream.next(isType(schedulerpb.Event_ERROR)); ev.GetError().GetMessage() != "Framework failed over" {
		t.Fatalf("got %v", ev)
	}
	first.stream.waitClosed()
	if code, body := first.call(&schedulerpb.Call{Type: schedulerpb.Call_REVIVE.Enum()}); code != 400 || !strings.Contains(body, "didn't match the stream ID") {
		t.Fatalf("old stream id: %d %s", code, body)
	}
	second.offers()
	second.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_REVIVE.Enum()})
	// failover_timeout 0: closing the stream removes the framework.
	second.stream.cancel()
	second.stream.waitClosed()
	waitFor(t, "framework removed", func() bool {
		h.m.mu.Lock()
		defer h.m.mu.Unlock()
		return h.m.st.removedFrameworks[second.id]
	})
	call := &schedulerpb.Call{Type: schedulerpb.Call_SUBSCRIBE.Enum(), FrameworkId: fi.Id, Subscribe: &schedulerpb.Call_Subscribe{FrameworkInfo: fi}}
	st, _, _ := openStream(t, h.srv.URL+"/api/v1/scheduler", codec.JSON, call, func() *schedulerpb.Event { return &schedulerpb.Event{} })
	if ev := st.next(nil); ev.GetError().GetMessage() != "Framework has been removed" {
		t.Fatalf("got %v", ev)
	}
	st.waitClosed()
}

func TestFailoverTimeoutKeepsTasksThenTearsDown(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.registerAgent(agentInfo("agent-1", agentRes))
	fi := frameworkInfo("f", mesospb.FrameworkInfo_Capability_MULTI_ROLE)
	fi.FailoverTimeout = proto.Float64(60)
	s := h.subscribe(codec.JSON, fi)
	s.mustCall(launch(offerIDs(s.offers()[0]), commandTask("t1", a.id, "cpus:1;mem:32")))
	a.next(agentpb.Event_RUN_TASK)
	s.stream.cancel()
	s.stream.waitClosed()
	h.tick(30 * time.Second)
	a.pong()
	// Within the timeout the framework comes back with its task.
	s2 := h.subscribe(codec.JSON, fi)
	if s2.id != s.id {
		t.Fatalf("new framework ID after failover")
	}
	s2.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_RECONCILE.Enum(), Reconcile: &schedulerpb.Call_Reconcile{}})
	if st := s2.update(); st.GetTaskId().GetValue() != "t1" || st.GetState() != mesospb.TaskState_TASK_STAGING {
		t.Fatalf("task lost over failover: %v", st)
	}
	s2.stream.cancel()
	s2.stream.waitClosed()
	waitFor(t, "framework disconnected", func() bool {
		h.m.mu.Lock()
		defer h.m.mu.Unlock()
		return h.m.st.frameworks[s.id].stream == nil
	})
	h.tick(61 * time.Second)
	if ev := a.next(agentpb.Event_SHUTDOWN_FRAMEWORK); ev.GetShutdownFramework().GetFrameworkId().GetValue() != s.id {
		t.Fatalf("got %v", ev)
	}
}

func TestAgentLossAndReturn(t *testing.T) {
	for _, aware := range []bool{false, true} {
		name := map[bool]string{false: "lost", true: "unreachable"}[aware]
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, Config{AgentPingTimeout: time.Second, MaxAgentPingTimeouts: 3})
			a := h.registerAgent(agentInfo("agent-1", agentRes))
			fi := frameworkInfo("f", mesospb.FrameworkInfo_Capability_MULTI_ROLE)
			if aware {
				fi.Capabilities = append(fi.Capabilities, &mesospb.FrameworkInfo_Capability{Type: mesospb.FrameworkInfo_Capability_PARTITION_AWARE.Enum()})
			}
			s := h.subscribe(codec.JSON, fi)
			o := s.offers()[0]
			task := commandTask("t1", a.id, "cpus:1;mem:32")
			call := launch(offerIDs(o), task)
			call.Accept.Filters = &mesospb.Filters{RefuseSeconds: proto.Float64(0)}
			s.mustCall(call)
			a.status(s.id, "t1", mesospb.TaskState_TASK_RUNNING)
			s.mustCall(ack(s.update()))
			h.tick(time.Second)
			held := s.offers()[0] // the rest of the agent
			// The agent answers pings for a while, then goes silent.
			for i := 0; i < 3; i++ {
				a.next(agentpb.Event_PING)
				a.pong()
				h.tick(time.Second)
			}
			for i := 0; i < 4; i++ {
				h.tick(time.Second)
			}
			want := mesospb.TaskState_TASK_LOST
			if aware {
				want = mesospb.TaskState_TASK_UNREACHABLE
			}
			st := s.update()
			if st.GetState() != want || st.GetReason() != mesospb.TaskStatus_REASON_AGENT_REMOVED || st.UnreachableTime == nil || st.Uuid != nil {
				t.Fatalf("got %v", st)
			}
			if ev := s.stream.next(isType(schedulerpb.Event_RESCIND)); ev.GetRescind().GetOfferId().GetValue() != held.GetId().GetValue() {
				t.Fatalf("rescind %v", ev)
			}
			if ev := s.stream.next(isType(schedulerpb.Event_FAILURE)); ev.GetFailure().GetAgentId().GetValue() != a.id || ev.GetFailure().ExecutorId != nil {
				t.Fatalf("failure %v", ev)
			}
			// Reconciling the task of a removed agent.
			s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_RECONCILE.Enum(), Reconcile: &schedulerpb.Call_Reconcile{Tasks: []*schedulerpb.Call_Reconcile_Task{
				{TaskId: &mesospb.TaskID{Value: proto.String("t1")}, AgentId: &mesospb.AgentID{Value: proto.String(a.id)}}}}})
			if st := s.update(); st.GetState() != want {
				t.Fatalf("reconcile after removal: %v", st)
			}
			// The removed agent comes back: it is told to shut down.
			_, ev := h.tryRegisterAgent(a.info)
			if ev.GetType() != agentpb.Event_SHUTDOWN {
				t.Fatalf("removed agent re-registering got %v", ev)
			}
		})
	}
}

func TestOfferTimeoutRescinds(t *testing.T) {
	h := newHarness(t, Config{OfferTimeout: 10 * time.Second})
	h.registerAgent(agentInfo("agent-1", agentRes))
	s := h.subscribe(codec.JSON, frameworkInfo("f"))
	o := s.offers()[0]
	h.tick(5 * time.Second)
	s.stream.none(isType(schedulerpb.Event_RESCIND))
	h.tick(5 * time.Second)
	if ev := s.stream.next(isType(schedulerpb.Event_RESCIND)); ev.GetRescind().GetOfferId().GetValue() != o.GetId().GetValue() {
		t.Fatalf("got %v", ev)
	}
	// No filter after a timeout: offered again at the next cycle.
	h.tick(time.Second)
	s.offers()
}

func TestDRFSharesAgentsBetweenFrameworks(t *testing.T) {
	h := newHarness(t, Config{})
	for _, name := range []string{"a1", "a2", "a3", "a4"} {
		h.registerAgent(agentInfo(name, agentRes))
	}
	s1 := h.subscribe(codec.JSON, frameworkInfo("f1"))
	got1 := len(s1.offers())
	s2 := h.subscribe(codec.JSON, frameworkInfo("f2"))
	// f1 holds all four agents; f2 gets nothing until f1 declines.
	s2.stream.none(isType(schedulerpb.Event_OFFERS))
	if got1 != 4 {
		t.Fatalf("first framework got %d offers", got1)
	}
	// Both idle: the next cycle splits the cluster evenly.
	h.m.mu.Lock()
	for _, o := range h.m.st.offers {
		h.m.st.removeOffer(o, true)
	}
	h.m.mu.Unlock()
	h.tick(time.Second)
	n1, n2 := len(s1.offers()), len(s2.offers())
	if n1 != 2 || n2 != 2 {
		t.Fatalf("DRF split %d/%d, want 2/2", n1, n2)
	}
}

func TestMasterRestartAgentReregistersWithTasks(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.registerAgent(agentInfo("agent-1", agentRes))
	fi := frameworkInfo("f", mesospb.FrameworkInfo_Capability_PARTITION_AWARE)
	fi.FailoverTimeout = proto.Float64(3600)
	s := h.subscribe(codec.JSON, fi)
	s.mustCall(launch(offerIDs(s.offers()[0]), commandTask("t1", a.id, "cpus:1;mem:32")))
	a.status(s.id, "t1", mesospb.TaskState_TASK_RUNNING)
	s.update()

	// A new master (as after a restart) knows nothing; the agent
	// re-registers with its ID and its running task, the framework with
	// its ID.
	h2 := newHarness(t, Config{})
	task := &mesospb.Task{
		Name: proto.String("task t1"), TaskId: &mesospb.TaskID{Value: proto.String("t1")}, FrameworkId: fwID(s.id),
		AgentId: &mesospb.AgentID{Value: proto.String(a.id)}, State: mesospb.TaskState_TASK_RUNNING.Enum(),
	}
	task.Resources, _ = parseTestResources("cpus:1;mem:32")
	a2 := h2.registerAgent(a.info, task)
	if a2.id != a.id {
		t.Fatalf("agent ID changed over master restart: %s -> %s", a.id, a2.id)
	}
	s2 := h2.subscribe(codec.JSON, fi)
	if s2.id != s.id {
		t.Fatalf("framework ID changed over master restart")
	}
	s2.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_RECONCILE.Enum(), Reconcile: &schedulerpb.Call_Reconcile{Tasks: []*schedulerpb.Call_Reconcile_Task{
		{TaskId: &mesospb.TaskID{Value: proto.String("t1")}, AgentId: &mesospb.AgentID{Value: proto.String(a.id)}}}}})
	if st := s2.update(); st.GetState() != mesospb.TaskState_TASK_RUNNING {
		t.Fatalf("task after master restart: %v", st)
	}
	// Its resources are in use: the offer lacks them.
	if got := resources.Scalar(s2.offers()[0].GetResources(), "cpus"); got != 3 {
		t.Fatalf("offered %v cpus, want 3", got)
	}
}

func TestTeardownAndStateEndpoints(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.registerAgent(agentInfo("agent-1", agentRes))
	s := h.subscribe(codec.JSON, frameworkInfo("f", mesospb.FrameworkInfo_Capability_MULTI_ROLE))
	s.mustCall(launch(offerIDs(s.offers()[0]), commandTask("t1", a.id, "cpus:1;mem:32")))
	a.status(s.id, "t1", mesospb.TaskState_TASK_RUNNING)
	s.update()

	get := func(path string) map[string]any {
		resp, err := http.Get(h.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return v
	}
	state := get("/state")
	slaves := state["slaves"].([]any)
	if len(slaves) != 1 || slaves[0].(map[string]any)["hostname"] != "agent-1" {
		t.Fatalf("slaves %v", slaves)
	}
	res := slaves[0].(map[string]any)["resources"].(map[string]any)
	if res["cpus"] != 4.0 || res["ports"] != "[31000-32000]" {
		t.Fatalf("agent resources as Mesos renders them: %v", res)
	}
	fws := state["frameworks"].([]any)
	tasks := fws[0].(map[string]any)["tasks"].([]any)
	if len(tasks) != 1 || tasks[0].(map[string]any)["state"] != "TASK_RUNNING" || tasks[0].(map[string]any)["slave_id"] != a.id {
		t.Fatalf("tasks %v", tasks)
	}
	metrics := get("/metrics/snapshot")
	if metrics["master/tasks_running"] != 1.0 || metrics["master/slaves_active"] != 1.0 || metrics["master/frameworks_active"] != 1.0 {
		t.Fatalf("metrics %v", metrics)
	}
	if resp, _ := http.Get(h.srv.URL + "/health"); resp.StatusCode != 200 {
		t.Fatalf("/health %d", resp.StatusCode)
	}

	s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_TEARDOWN.Enum()})
	if ev := a.next(agentpb.Event_SHUTDOWN_FRAMEWORK); ev.GetShutdownFramework().GetFrameworkId().GetValue() != s.id {
		t.Fatalf("got %v", ev)
	}
	s.stream.waitClosed()
	state = get("/state")
	if len(state["frameworks"].([]any)) != 0 || len(state["completed_frameworks"].([]any)) != 1 {
		t.Fatalf("after teardown: %v / %v", state["frameworks"], state["completed_frameworks"])
	}
}

func TestExecutorExitAndMessages(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.registerAgent(agentInfo("agent-1", agentRes))
	s := h.subscribe(codec.JSON, frameworkInfo("f"))
	task := commandTask("t1", a.id, "cpus:1;mem:32")
	task.Command = nil
	task.Executor = &mesospb.ExecutorInfo{ExecutorId: &mesospb.ExecutorID{Value: proto.String("e1")}, Command: &mesospb.CommandInfo{Value: proto.String("x")}}
	s.mustCall(launch(offerIDs(s.offers()[0]), task))
	a.next(agentpb.Event_RUN_TASK)
	// Scheduler → executor and back.
	s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_MESSAGE.Enum(), Message: &schedulerpb.Call_Message{
		AgentId: &mesospb.AgentID{Value: proto.String(a.id)}, ExecutorId: task.Executor.ExecutorId, Data: []byte("ping")}})
	if ev := a.next(agentpb.Event_FRAMEWORK_MESSAGE); string(ev.GetFrameworkMessage().GetData()) != "ping" {
		t.Fatalf("got %v", ev)
	}
	a.send(&agentpb.Call{Type: agentpb.Call_FRAMEWORK_MESSAGE.Enum(), FrameworkMessage: &agentpb.Call_FrameworkMessage{
		FrameworkId: fwID(s.id), ExecutorId: task.Executor.ExecutorId, Data: []byte("pong")}})
	if ev := s.stream.next(isType(schedulerpb.Event_MESSAGE)); string(ev.GetMessage().GetData()) != "pong" {
		t.Fatalf("got %v", ev)
	}
	// SHUTDOWN goes to the agent; the executor's exit becomes FAILURE.
	s.mustCall(&schedulerpb.Call{Type: schedulerpb.Call_SHUTDOWN.Enum(), Shutdown: &schedulerpb.Call_Shutdown{
		AgentId: &mesospb.AgentID{Value: proto.String(a.id)}, ExecutorId: task.Executor.ExecutorId}})
	a.next(agentpb.Event_SHUTDOWN_EXECUTOR)
	a.send(&agentpb.Call{Type: agentpb.Call_EXECUTOR_EXITED.Enum(), ExecutorExited: &agentpb.Call_ExecutorExited{
		FrameworkId: fwID(s.id), ExecutorId: task.Executor.ExecutorId, Status: proto.Int32(9)}})
	ev := s.stream.next(isType(schedulerpb.Event_FAILURE))
	if ev.GetFailure().GetExecutorId().GetValue() != "e1" || ev.GetFailure().GetStatus() != 9 {
		t.Fatalf("got %v", ev)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
