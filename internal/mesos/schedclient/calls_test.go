package schedclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// Each typed call sends what the recording shows a real Mesos accepted, in
// both encodings (the fake master decodes the body in the encoding of the
// Content-Type and compares it with the recorded JSON body).
func TestCallsMatchRecordedRequests(t *testing.T) {
	recorded := recordedRequests(t, "scheduler-json-session.txt")
	events := decodeAll(t, codec.JSON, jsonStream(t, "scheduler-json-session.txt", "PART A", "stream"))
	id := events[0].GetSubscribed().GetFrameworkId().GetValue()
	agent := id[:len(id)-len("-0000")] + "-S0"
	offer := func(n int) string { return fmt.Sprintf("%s-O%d", id[:len(id)-len("-0000")], n) }
	// The updates the recording acknowledged, in order.
	var updates []*mesospb.TaskStatus
	for _, ev := range events {
		if st := ev.GetUpdate().GetStatus(); st.GetUuid() != nil {
			updates = append(updates, st)
		}
	}
	launch := recorded["ACCEPT offer with LAUNCH of command task t-echo ('echo hi; sleep 2')"]

	cases := []struct {
		title string
		do    func(c *Client) error
	}{
		{"DECLINE with filters refuse_seconds=3600", func(c *Client) error { return c.Decline(ctx(), []string{offer(0)}, Filters(time.Hour)) }},
		{"REVIVE (clears the decline filter; offers should come back within the 1 s allocation interval)", func(c *Client) error { return c.Revive(ctx()) }},
		{"SUPPRESS", func(c *Client) error { return c.Suppress(ctx()) }},
		{"DECLINE (refuse_seconds=0) the offer held while suppressed", func(c *Client) error { return c.Decline(ctx(), []string{offer(1)}, Filters(0)) }},
		{"ACCEPT offer with LAUNCH of command task t-echo ('echo hi; sleep 2')", func(c *Client) error {
			ops := launch.GetAccept().GetOperations()
			return c.Accept(ctx(), []string{offer(2)}, []*mesospb.Offer_Operation{LaunchOperation(ops[0].GetLaunch().GetTaskInfos()...)}, launch.GetAccept().GetFilters())
		}},
		{"ACKNOWLEDGE t-echo TASK_STARTING", func(c *Client) error { return c.Acknowledge(ctx(), updates[0]) }},
		{"ACKNOWLEDGE t-echo TASK_RUNNING", func(c *Client) error { return c.Acknowledge(ctx(), updates[1]) }},
		{"ACKNOWLEDGE t-echo TASK_FINISHED", func(c *Client) error { return c.Acknowledge(ctx(), updates[2]) }},
		{"RECONCILE explicit: unknown task id WITH agent_id", func(c *Client) error {
			return c.Reconcile(ctx(), []ReconcileTask{{TaskID: "no-such-task", AgentID: agent}})
		}},
		{"RECONCILE explicit: unknown task id WITHOUT agent_id", func(c *Client) error {
			return c.Reconcile(ctx(), []ReconcileTask{{TaskID: "no-such-task-2"}})
		}},
		{"RECONCILE implicit (empty task list)", func(c *Client) error { return c.Reconcile(ctx(), nil) }},
		{"KILL of an unknown task", func(c *Client) error { return c.Kill(ctx(), "no-such-task-3", agent, 0) }},
		{"TEARDOWN", func(c *Client) error { return c.Teardown(ctx()) }},
	}
	for _, enc := range []codec.Encoding{codec.JSON, codec.Protobuf} {
		t.Run(enc.String(), func(t *testing.T) {
			fm := newFakeMaster(t, enc)
			fm.subscribe = func(n int, s *stream) {
				s.ok()
				s.send(events[0])
				s.hold()
			}
			r := startClient(t, testConfig(enc, fm.addr()))
			r.waitEvent(schedulerpb.Event_SUBSCRIBED)
			for i, tc := range cases {
				want := recorded[tc.title]
				if want == nil {
					t.Fatalf("no recorded request %q", tc.title)
				}
				if err := tc.do(r.c); err != nil {
					t.Fatalf("%s: %v", tc.title, err)
				}
				got := fm.requests()[i+1].call
				if !proto.Equal(got, want) {
					t.Errorf("%s:\n got %v\nwant %v", tc.title, got, want)
				}
			}
		})
	}
}

func ctx() context.Context { return context.Background() }

// The calls the recording has no example of.
func TestOtherCalls(t *testing.T) {
	for _, enc := range []codec.Encoding{codec.JSON, codec.Protobuf} {
		t.Run(enc.String(), func(t *testing.T) {
			fm := newFakeMaster(t, enc)
			r := startClient(t, testConfig(enc, fm.addr()))
			r.waitEvent(schedulerpb.Event_SUBSCRIBED)
			c := r.c
			fid := &mesospb.FrameworkID{Value: proto.String("fw-1")}
			agent := &mesospb.AgentID{Value: proto.String("a1")}
			exec := &mesospb.ExecutorID{Value: proto.String("e1")}
			task := &mesospb.TaskInfo{Name: proto.String("t"), TaskId: &mesospb.TaskID{Value: proto.String("t")}, AgentId: agent}
			policy := &mesospb.KillPolicy{GracePeriod: &mesospb.DurationInfo{Nanoseconds: proto.Int64(int64(3 * time.Second))}}
			cases := []struct {
				do   func() error
				want *schedulerpb.Call
			}{
				{func() error { return c.Revive(ctx(), "web", "batch") }, &schedulerpb.Call{Type: schedulerpb.Call_REVIVE.Enum(), Revive: &schedulerpb.Call_Revive{Roles: []string{"web", "batch"}}}},
				{func() error { return c.Suppress(ctx(), "web") }, &schedulerpb.Call{Type: schedulerpb.Call_SUPPRESS.Enum(), Suppress: &schedulerpb.Call_Suppress{Roles: []string{"web"}}}},
				{func() error { return c.Kill(ctx(), "t1", "", 3*time.Second) }, &schedulerpb.Call{Type: schedulerpb.Call_KILL.Enum(), Kill: &schedulerpb.Call_Kill{TaskId: &mesospb.TaskID{Value: proto.String("t1")}, KillPolicy: policy}}},
				{func() error { return c.KillWithPolicy(ctx(), "t1", "a1", policy) }, &schedulerpb.Call{Type: schedulerpb.Call_KILL.Enum(), Kill: &schedulerpb.Call_Kill{TaskId: &mesospb.TaskID{Value: proto.String("t1")}, AgentId: agent, KillPolicy: policy}}},
				{func() error { return c.Message(ctx(), "a1", "e1", []byte("hi\x00")) }, &schedulerpb.Call{Type: schedulerpb.Call_MESSAGE.Enum(), Message: &schedulerpb.Call_Message{AgentId: agent, ExecutorId: exec, Data: []byte("hi\x00")}}},
				{func() error { return c.Message(ctx(), "a1", "e1", nil) }, &schedulerpb.Call{Type: schedulerpb.Call_MESSAGE.Enum(), Message: &schedulerpb.Call_Message{AgentId: agent, ExecutorId: exec, Data: []byte{}}}},
				{func() error { return c.Shutdown(ctx(), "a1", "e1") }, &schedulerpb.Call{Type: schedulerpb.Call_SHUTDOWN.Enum(), Shutdown: &schedulerpb.Call_Shutdown{AgentId: agent, ExecutorId: exec}}},
				{func() error {
					return c.Accept(ctx(), []string{"o1", "o2"}, []*mesospb.Offer_Operation{LaunchGroupOperation(&mesospb.ExecutorInfo{ExecutorId: exec}, task)}, nil)
				}, &schedulerpb.Call{Type: schedulerpb.Call_ACCEPT.Enum(), Accept: &schedulerpb.Call_Accept{
					OfferIds: []*mesospb.OfferID{{Value: proto.String("o1")}, {Value: proto.String("o2")}},
					Operations: []*mesospb.Offer_Operation{{Type: mesospb.Offer_Operation_LAUNCH_GROUP.Enum(), LaunchGroup: &mesospb.Offer_Operation_LaunchGroup{
						Executor: &mesospb.ExecutorInfo{ExecutorId: exec}, TaskGroup: &mesospb.TaskGroupInfo{Tasks: []*mesospb.TaskInfo{task}}}}},
				}}},
				// A generic call with a framework ID of its own keeps it
				// (conformance tests of a master send wrong ones).
				{func() error {
					return c.Call(ctx(), &schedulerpb.Call{Type: schedulerpb.Call_REVIVE.Enum(), FrameworkId: &mesospb.FrameworkID{Value: proto.String("other")}})
				}, &schedulerpb.Call{Type: schedulerpb.Call_REVIVE.Enum(), FrameworkId: &mesospb.FrameworkID{Value: proto.String("other")}}},
			}
			for i, tc := range cases {
				if err := tc.do(); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if tc.want.FrameworkId == nil {
					tc.want.FrameworkId = fid
				}
				if got := fm.requests()[i+1].call; !proto.Equal(got, tc.want) {
					t.Errorf("call %d:\n got %v\nwant %v", i, got, tc.want)
				}
			}
		})
	}
}

// Calls refused by the master surface its status and words; calls that
// cannot be right are refused before they go out.
func TestCallErrors(t *testing.T) {
	fm := newFakeMaster(t, codec.JSON)
	fm.call = func(r *request, w http.ResponseWriter) {
		switch r.call.GetType() {
		case schedulerpb.Call_REVIVE:
			http.Error(w, "Framework is not subscribed", http.StatusForbidden)
		case schedulerpb.Call_DECLINE:
			http.Error(w, "Failed to validate scheduler::Call: Expecting 'decline' to be present", http.StatusBadRequest)
		case schedulerpb.Call_SUPPRESS:
			w.Header().Set("Location", "//127.0.0.1:1/api/v1/scheduler")
			w.WriteHeader(http.StatusTemporaryRedirect) // to a closed port
		default:
			w.WriteHeader(http.StatusAccepted)
		}
	}
	r := startClient(t, testConfig(codec.JSON, fm.addr()))
	r.waitEvent(schedulerpb.Event_SUBSCRIBED)

	err := r.c.Revive(ctx())
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 403 || se.Body != "Framework is not subscribed" || se.Call != schedulerpb.Call_REVIVE || se.Master != fm.addr() {
		t.Fatalf("REVIVE: %#v", err)
	}
	if !IsNotSubscribed(err) || !strings.Contains(err.Error(), "answered REVIVE with 403 Forbidden: Framework is not subscribed (the framework is not subscribed") {
		t.Errorf("REVIVE: %v", err)
	}
	err = r.c.Decline(ctx(), []string{"o"}, nil)
	if !errors.As(err, &se) || se.Code != 400 || !strings.Contains(err.Error(), "400 Bad Request: Failed to validate scheduler::Call: Expecting 'decline' to be present") || IsNotSubscribed(err) {
		t.Errorf("DECLINE: %v", err)
	}
	if err := r.c.Suppress(ctx()); err == nil || !strings.Contains(err.Error(), "SUPPRESS: cannot reach the Mesos master at 127.0.0.1:1") {
		t.Errorf("SUPPRESS redirected to a closed port: %v", err)
	}

	for name, tc := range map[string]struct {
		err  error
		want string
	}{
		"ack without uuid": {r.c.Acknowledge(ctx(), &mesospb.TaskStatus{TaskId: &mesospb.TaskID{Value: proto.String("t")}, State: mesospb.TaskState_TASK_LOST.Enum()}), `TASK_LOST update of task "t" has no uuid`},
		"ack short uuid":   {r.c.Acknowledge(ctx(), &mesospb.TaskStatus{Uuid: []byte("abc"), AgentId: &mesospb.AgentID{Value: proto.String("a")}}), "uuid of 3 bytes"},
		"ack no agent":     {r.c.Acknowledge(ctx(), &mesospb.TaskStatus{Uuid: make([]byte, 16)}), "has no agent_id"},
		"ack nil":          {r.c.Acknowledge(ctx(), nil), "needs the TaskStatus"},
		"kill no task":     {r.c.Kill(ctx(), "", "a", 0), "KILL needs a task ID"},
		"subscribe":        {r.c.Call(ctx(), &schedulerpb.Call{Type: schedulerpb.Call_SUBSCRIBE.Enum()}), "SUBSCRIBE is made by Run"},
		"untyped":          {r.c.Call(ctx(), &schedulerpb.Call{}), "needs a Call with a type"},
		"update nil":       {r.c.UpdateFramework(ctx(), nil, nil), "needs a FrameworkInfo"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, tc.err, tc.want)
		}
	}
	if n := len(fm.requests()); n != 4 {
		t.Errorf("%d requests reached the master, want SUBSCRIBE, REVIVE, DECLINE, SUPPRESS", n)
	}
}

// Calls before the first SUBSCRIBED fail at once, without a request.
func TestCallsBeforeSubscribed(t *testing.T) {
	fm := newFakeMaster(t, codec.JSON)
	c, err := New(testConfig(codec.JSON, fm.addr()))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, err := range []error{
		c.Accept(ctx(), []string{"o"}, nil, nil), c.Decline(ctx(), []string{"o"}, nil), c.Revive(ctx()),
		c.Suppress(ctx()), c.Kill(ctx(), "t", "", 0), c.Reconcile(ctx(), nil), c.Message(ctx(), "a", "e", nil),
		c.Shutdown(ctx(), "a", "e"), c.Teardown(ctx()), c.UpdateFramework(ctx(), testInfo(), nil),
	} {
		if !errors.Is(err, ErrNotSubscribed) || !strings.Contains(err.Error(), "not sent: not subscribed") {
			t.Errorf("%v, want ErrNotSubscribed", err)
		}
	}
	if time.Since(start) > time.Second || len(fm.requests()) != 0 {
		t.Errorf("calls before SUBSCRIBED were not refused at once")
	}
}

// Mesos closes the stream of a torn-down framework before answering 202
// (recorded): Run ends with ErrTornDown instead of resubscribing to a
// framework that is gone.
func TestTeardownEndsRun(t *testing.T) {
	fm := newFakeMaster(t, codec.Protobuf)
	closeStream := make(chan struct{})
	fm.subscribe = func(n int, s *stream) {
		s.ok()
		s.send(subscribedEvent("fw-1", 15))
		select {
		case <-closeStream:
		case <-fm.quit:
		}
	}
	streamClosed := make(chan struct{})
	fm.call = func(r *request, w http.ResponseWriter) {
		close(closeStream)
		<-streamClosed // the client saw the end of the stream first
		w.WriteHeader(http.StatusAccepted)
	}
	r := newRunning(t, testConfig(codec.Protobuf, fm.addr()))
	r.onDisconnected = func(error) {}
	r.start()
	r.waitEvent(schedulerpb.Event_SUBSCRIBED)
	waitDisc := make(chan error, 1)
	go func() { waitDisc <- r.c.Teardown(ctx()) }()
	// Run is waiting for TEARDOWN's answer before deciding; let it come.
	waitFor(t, "the stream to end on the client", func() bool { return !r.c.Subscribed() })
	close(streamClosed)
	if err := <-waitDisc; err != nil {
		t.Fatal(err)
	}
	if err := r.result(); !errors.Is(err, ErrTornDown) {
		t.Fatalf("Run returned %v, want ErrTornDown", err)
	}
	if err := r.disconnected(); !errors.Is(err, ErrTornDown) {
		t.Errorf("Disconnected(%v)", err)
	}
	if n := len(fm.subscribes()); n != 1 {
		t.Errorf("%d SUBSCRIBEs after TEARDOWN", n)
	}
}

// A refused TEARDOWN leaves the framework alone: the client resubscribes.
func TestRefusedTeardownResubscribes(t *testing.T) {
	fm := newFakeMaster(t, codec.JSON)
	fm.call = func(r *request, w http.ResponseWriter) {
		fm.srv.CloseClientConnections() // the stream breaks, then:
		http.Error(w, "no", http.StatusInternalServerError)
	}
	r := startClient(t, testConfig(codec.JSON, fm.addr()))
	r.waitEvent(schedulerpb.Event_SUBSCRIBED)
	if err := r.c.Teardown(ctx()); err == nil {
		t.Fatal("TEARDOWN on a broken connection succeeded")
	}
	r.disconnected()
	r.waitEvent(schedulerpb.Event_SUBSCRIBED)
}

// UPDATE_FRAMEWORK is answered 200; later resubscriptions carry the new
// FrameworkInfo and suppressed roles.
func TestUpdateFramework(t *testing.T) {
	fm := newFakeMaster(t, codec.JSON)
	drop := make(chan struct{})
	fm.subscribe = func(n int, s *stream) {
		s.ok()
		s.send(subscribedEvent("fw-1", 15))
		if n == 0 {
			select {
			case <-drop:
			case <-fm.quit:
			}
			return
		}
		s.hold()
	}
	fm.call = func(r *request, w http.ResponseWriter) { w.WriteHeader(http.StatusOK) }
	r := startClient(t, testConfig(codec.JSON, fm.addr()))
	r.waitEvent(schedulerpb.Event_SUBSCRIBED)
	info := testInfo()
	info.Name = proto.String("renamed")
	info.Roles = []string{"web", "batch"}
	if err := r.c.UpdateFramework(ctx(), info, []string{"batch"}); err != nil {
		t.Fatal(err)
	}
	up := fm.requests()[1].call
	if up.GetUpdateFramework().GetFrameworkInfo().GetId().GetValue() != "fw-1" || up.GetFrameworkId().GetValue() != "fw-1" {
		t.Errorf("UPDATE_FRAMEWORK without the framework ID in both places: %v", up)
	}
	close(drop)
	r.disconnected()
	r.waitEvent(schedulerpb.Event_SUBSCRIBED)
	sub := fm.subscribes()[1].call.GetSubscribe()
	if sub.GetFrameworkInfo().GetName() != "renamed" || len(sub.GetFrameworkInfo().GetRoles()) != 2 || len(sub.GetSuppressedRoles()) != 1 {
		t.Errorf("resubscription does not carry the update: %v", sub)
	}
}

func TestHelpers(t *testing.T) {
	for d, want := range map[time.Duration]float64{0: 0, -time.Second: 0, 1500 * time.Millisecond: 1.5, 400 * 24 * time.Hour: 365 * 24 * 3600} {
		if got := Filters(d).GetRefuseSeconds(); got != want {
			t.Errorf("Filters(%v) = %v, want %v", d, got, want)
		}
	}
	// JSON of Filters(0) must carry the 0: without it Mesos reads its
	// default of 5 seconds.
	b, _ := codec.Marshal(codec.JSON, Filters(0))
	if string(b) != `{"refuse_seconds":0.0}` && string(b) != `{"refuse_seconds":0}` {
		t.Errorf("Filters(0) as JSON: %s", b)
	}
	task := &mesospb.TaskInfo{Name: proto.String("t")}
	if op := LaunchOperation(task, task); op.GetType() != mesospb.Offer_Operation_LAUNCH || len(op.GetLaunch().GetTaskInfos()) != 2 {
		t.Errorf("LaunchOperation: %v", op)
	}
	if !IsNotSubscribed(&StatusError{Code: 403}) || IsNotSubscribed(&StatusError{Code: 400}) || IsNotSubscribed(errors.New("x")) {
		t.Errorf("IsNotSubscribed")
	}
}
