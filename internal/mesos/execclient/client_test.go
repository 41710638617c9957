package execclient

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
	"github.com/k8sm/k8sm/internal/mesos/uuid"
)

const (
	recFW    = "d9097ce5-55bd-48f9-a8ba-fe84abe1c220-0010"
	recAgent = "d9097ce5-55bd-48f9-a8ba-fe84abe1c220-S0"
)

var encodings = []codec.Encoding{codec.JSON, codec.Protobuf}

func testConfig(fa *fakeAgent, checkpoint bool) Config {
	return Config{
		FrameworkID: recFW, ExecutorID: "e-py", AgentID: recAgent, AgentURL: fa.url(),
		Checkpoint: checkpoint, RecoveryTimeout: time.Minute, SubscriptionBackoffMax: 2 * time.Second,
		Encoding: fa.enc, Clock: newFakeClock(),
	}
}

// run is a Run in the background; the test ends it (and waits for it)
// before it returns.
type run struct {
	cancel context.CancelFunc
	errc   chan error
	err    error
	ended  bool
}

func startRun(t *testing.T, c *Client, h Handler) *run {
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{cancel: cancel, errc: make(chan error, 1)}
	go func() { r.errc <- c.Run(ctx, h) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// wait waits for Run to return by itself.
func (r *run) wait(t *testing.T) error {
	t.Helper()
	if r.ended {
		return r.err
	}
	select {
	case r.err = <-r.errc:
		r.ended = true
		return r.err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
		return nil
	}
}

// stop cancels Run and waits for it, which must then return nil.
func (r *run) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	if err := r.wait(t); err != nil && !r.ended {
		t.Errorf("Run after cancel: %v", err)
	}
}

func ackOf(st *mesospb.TaskStatus) *executorpb.Event {
	return &executorpb.Event{Type: executorpb.Event_ACKNOWLEDGED.Enum(), Acknowledged: &executorpb.Event_Acknowledged{TaskId: st.TaskId, Uuid: st.Uuid}}
}

func status(task string, state mesospb.TaskState) *mesospb.TaskStatus {
	return &mesospb.TaskStatus{TaskId: &mesospb.TaskID{Value: proto.String(task)}, State: state.Enum()}
}

func taskIDs(tasks []*mesospb.TaskInfo) []string {
	var out []string
	for _, t := range tasks {
		out = append(out, t.GetTaskId().GetValue())
	}
	return out
}

// TestRecordedSessions replays both recorded executor sessions of a real
// Mesos 1.11 agent (e-py: LAUNCH, UPDATEs, MESSAGE both ways; e-py-kill:
// KILL and SHUTDOWN): the fake agent sends the recorded events (verbatim in
// JSON) each once the executor made the calls that preceded it, the handler
// makes the calls the recorded executor made, and the calls must be the
// recorded ones.
func TestRecordedSessions(t *testing.T) {
	sessions, _ := executorRecording(t)
	for _, enc := range encodings {
		for _, sess := range sessions {
			recSub := recordedCall(t, sess.subscribe.body)
			t.Run(enc.String()+"/"+recSub.GetExecutorId().GetValue(), func(t *testing.T) { replay(t, enc, sess) })
		}
	}
}

func replay(t *testing.T, enc codec.Encoding, sess recSession) {
	recSub := recordedCall(t, sess.subscribe.body)
	if got := sess.subscribe.header.Get("Accept"); got != "application/json" {
		t.Fatalf("recorded SUBSCRIBE Accept %q", got)
	}
	type scripted struct {
		afterEvents int
		call        *executorpb.Call
	}
	var script []scripted
	var events [][]byte
	var callsBefore []int // per event: how many scripted calls precede it
	for _, st := range sess.steps {
		if st.event != nil {
			callsBefore = append(callsBefore, len(script))
			events = append(events, st.event)
			continue
		}
		if st.req.status/100 != 2 {
			continue // the recorder's deliberately invalid calls: TestRecordedRefusals
		}
		script = append(script, scripted{afterEvents: len(events), call: recordedCall(t, st.req.body)})
	}
	if len(script) < 2 || len(events) < 5 {
		t.Fatalf("recording: %d calls, %d events", len(script), len(events))
	}

	fa := newFakeAgent(t, enc)
	nonSubscribe := func() int {
		fa.mu.Lock()
		defer fa.mu.Unlock()
		return len(fa.calls) - fa.subs
	}
	fa.subscribe = func(n int, s *agentStream) {
		if n > 0 {
			t.Errorf("SUBSCRIBE #%d: the client resubscribed", n+1)
			return
		}
		for i, ev := range events {
			if !s.waitFor(func() bool { return nonSubscribe() >= callsBefore[i] }) {
				return
			}
			s.sendRecorded(ev)
		}
		s.hold()
	}
	cfg := testConfig(fa, false)
	cfg.ExecutorID = recSub.GetExecutorId().GetValue()
	c := New(cfg)
	var uuids [][]byte // the recorded ones, so that the recorded ACKNOWLEDGEDs match
	for _, s := range script {
		if s.call.GetType() == executorpb.Call_UPDATE {
			uuids = append(uuids, s.call.GetUpdate().GetStatus().GetUuid())
		}
	}
	c.newUUID = func() []byte {
		u := uuids[0]
		uuids = uuids[1:]
		return u
	}

	var got []*executorpb.Event
	finished := make(chan struct{})
	h := HandlerFuncs{
		OnEvent: func(ctx context.Context, ev *executorpb.Event) {
			got = append(got, ev)
			for _, s := range script {
				if s.afterEvents != len(got) {
					continue
				}
				var err error
				switch s.call.GetType() {
				case executorpb.Call_UPDATE:
					st := proto.Clone(s.call.GetUpdate().GetStatus()).(*mesospb.TaskStatus)
					st.Uuid, st.Source = nil, nil // the client's job
					err = c.Update(ctx, st)
				case executorpb.Call_MESSAGE:
					err = c.Message(ctx, s.call.GetMessage().GetData())
				default:
					t.Errorf("unexpected recorded call %v", s.call)
				}
				if err != nil {
					t.Errorf("%s: %v", s.call.GetType(), err)
				}
			}
			if len(got) == len(events) {
				close(finished)
			}
		},
		OnDisconnected: func(err error) { t.Errorf("disconnected: %v", err) },
	}
	r := startRun(t, c, h)
	select {
	case <-finished:
	case err := <-r.errc:
		t.Fatalf("Run ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("only %d of %d events delivered", len(got), len(events))
	}
	if tasks, updates := c.Unacknowledged(); len(tasks) != 0 || len(updates) != 0 {
		t.Errorf("after every update was acknowledged: tasks %v, updates %v", taskIDs(tasks), updates)
	}
	r.stop(t)

	for i, ev := range got {
		if want := recordedEvent(t, events[i]); !proto.Equal(ev, want) {
			t.Errorf("event %d: got %v\nwant %v", i+1, ev, want)
		}
	}
	subs := fa.callsOf(executorpb.Call_SUBSCRIBE)
	if len(subs) != 1 || !proto.Equal(subs[0], recSub) {
		t.Fatalf("SUBSCRIBE %v\nwant %v", subs, recSub)
	}
	fa.mu.Lock()
	calls := fa.calls[1:]
	fa.mu.Unlock()
	if len(calls) != len(script) {
		t.Fatalf("%d calls after SUBSCRIBE, recorded %d", len(calls), len(script))
	}
	for i, call := range calls {
		want := script[i].call
		if st := call.GetUpdate().GetStatus(); st != nil {
			if st.GetExecutorId().GetValue() != cfg.ExecutorID || st.GetAgentId().GetValue() != recAgent || st.Timestamp == nil ||
				!uuid.Valid(st.GetUuid()) || st.GetSource() != mesospb.TaskStatus_SOURCE_EXECUTOR {
				t.Errorf("UPDATE %d lacks what the client fills in: %v", i, st)
			}
			// The recorded executor left these to the agent.
			st.ExecutorId, st.AgentId, st.Timestamp = nil, nil, nil
		}
		if !proto.Equal(call, want) {
			t.Errorf("call %d:\n got %v\nwant %v", i+1, call, want)
		}
	}
}

// TestRecordedRefusals answers the client with what the real agent answered
// the recorder's invalid calls: the error carries the agent's text, a
// refused UPDATE is not kept, and a refused SUBSCRIBE ends Run at once even
// when the framework checkpoints.
func TestRecordedRefusals(t *testing.T) {
	sessions, extra := executorRecording(t)
	var refusals []*recRequest
	for _, s := range sessions {
		for _, st := range s.steps {
			if st.req != nil && st.req.status/100 == 4 {
				refusals = append(refusals, st.req)
			}
		}
	}
	refusals = append(refusals, extra...)
	seen := 0
	for _, rec := range refusals {
		if rec.respBody == "" || rec.status/100 != 4 {
			continue
		}
		seen++
		t.Run(rec.title, func(t *testing.T) {
			fa := newFakeAgent(t, codec.JSON)
			refuseSubscribe := strings.Contains(rec.body, `"SUBSCRIBE"`)
			first := true
			fa.subscribe = func(n int, s *agentStream) {
				s.send(subscribedEvent())
				s.hold()
			}
			if refuseSubscribe {
				fa.subscribe = nil
				fa.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					fa.mu.Lock()
					fa.subs++
					fa.mu.Unlock()
					http.Error(w, rec.respBody, rec.status)
				})
			}
			fa.answer = func(call *executorpb.Call) (int, string) {
				if first {
					first = false
					return rec.status, rec.respBody
				}
				return http.StatusAccepted, ""
			}
			c := New(testConfig(fa, true))
			r := startRun(t, c, HandlerFuncs{})
			if refuseSubscribe {
				err := r.wait(t)
				var se *StatusError
				if !errors.As(err, &se) || se.Code != rec.status || !strings.Contains(err.Error(), strings.TrimSpace(rec.respBody)) || errors.Is(err, ErrAgentGone) {
					t.Fatalf("Run: %v; want the agent's %d %q", err, rec.status, rec.respBody)
				}
				fa.mu.Lock()
				defer fa.mu.Unlock()
				if fa.subs != 1 {
					t.Fatalf("%d SUBSCRIBEs after a refusal", fa.subs)
				}
				return
			}
			waitFor(t, "subscription", c.isSubscribed)
			err := c.Update(context.Background(), status("t-py", mesospb.TaskState_TASK_RUNNING))
			var se *StatusError
			if !errors.As(err, &se) || se.Code != rec.status || se.Call != "UPDATE" || !strings.Contains(err.Error(), strings.TrimSpace(rec.respBody)) || errors.Is(err, ErrPending) {
				t.Fatalf("Update: %v; want the agent's %d %q", err, rec.status, rec.respBody)
			}
			if _, updates := c.Unacknowledged(); len(updates) != 0 {
				t.Fatalf("a refused update is kept: %v", updates)
			}
			if err := c.Message(context.Background(), []byte("x")); err != nil {
				t.Fatalf("Message after the refusal: %v", err)
			}
		})
	}
	if seen < 6 {
		t.Fatalf("only %d recorded refusals", seen)
	}
}

func subscribedEvent() *executorpb.Event {
	return &executorpb.Event{Type: executorpb.Event_SUBSCRIBED.Enum(), Subscribed: &executorpb.Event_Subscribed{
		ExecutorInfo:  &mesospb.ExecutorInfo{ExecutorId: &mesospb.ExecutorID{Value: proto.String("e-py")}},
		FrameworkInfo: &mesospb.FrameworkInfo{User: proto.String("root"), Name: proto.String("recorder"), Id: &mesospb.FrameworkID{Value: proto.String(recFW)}},
		AgentInfo:     &mesospb.AgentInfo{Hostname: proto.String("localhost"), Id: &mesospb.AgentID{Value: proto.String(recAgent)}},
	}}
}

// recordedLaunch is the LAUNCH of task t-py the real agent sent, and one of
// another task made from it.
func recordedLaunches(t *testing.T) (tpy, other *executorpb.Event) {
	sessions, _ := executorRecording(t)
	for _, raw := range sessions[0].events() {
		if ev := recordedEvent(t, raw); ev.GetType() == executorpb.Event_LAUNCH {
			other = proto.Clone(ev).(*executorpb.Event)
			other.Launch.Task.TaskId.Value = proto.String("t-2")
			return ev, other
		}
	}
	t.Fatal("no LAUNCH recorded")
	return nil, nil
}

// TestResubscribeCarriesUnacknowledged: the connection is cut in the middle
// of an event; the next SUBSCRIBE carries the task with no acknowledged
// update and the update not acknowledged, and not the acknowledged ones.
func TestResubscribeCarriesUnacknowledged(t *testing.T) {
	for _, enc := range encodings {
		t.Run(enc.String(), func(t *testing.T) {
			launch, launch2 := recordedLaunches(t)
			fa := newFakeAgent(t, enc)
			fa.wantAuth = "Bearer tok3n"
			updates := func() []*mesospb.TaskStatus {
				var out []*mesospb.TaskStatus
				for _, c := range fa.callsOf(executorpb.Call_UPDATE) {
					out = append(out, c.GetUpdate().GetStatus())
				}
				return out
			}
			fa.subscribe = func(n int, s *agentStream) {
				s.send(subscribedEvent())
				if n > 0 {
					// The agent is back: it acknowledges what it got.
					for _, u := range fa.callsOf(executorpb.Call_SUBSCRIBE)[n].GetSubscribe().GetUnacknowledgedUpdates() {
						s.send(ackOf(u.GetStatus()))
					}
					s.hold()
					return
				}
				s.send(launch)
				s.send(launch2)
				if !s.waitFor(func() bool { return len(updates()) == 1 }) {
					return
				}
				s.send(ackOf(updates()[0])) // RUNNING of t-py
				if !s.waitFor(func() bool { return len(updates()) == 2 }) {
					return
				}
				s.raw([]byte("120\n{\"type\":\"ACKNOW")) // the FINISHED's ACKNOWLEDGED, cut
				s.cut()
			}
			cfg := testConfig(fa, true)
			cfg.AuthToken = "tok3n"
			c := New(cfg)
			var mu sync.Mutex
			var disconnects []error
			h := HandlerFuncs{
				OnEvent: func(ctx context.Context, ev *executorpb.Event) {
					switch ev.GetType() {
					case executorpb.Event_LAUNCH:
						if ev.GetLaunch().GetTask().GetTaskId().GetValue() == "t-py" {
							if err := c.Update(ctx, status("t-py", mesospb.TaskState_TASK_RUNNING)); err != nil {
								t.Errorf("Update: %v", err)
							}
						}
					case executorpb.Event_ACKNOWLEDGED:
						if len(updates()) == 1 {
							if err := c.Update(ctx, status("t-py", mesospb.TaskState_TASK_FINISHED)); err != nil {
								t.Errorf("Update: %v", err)
							}
						}
					}
				},
				OnDisconnected: func(err error) {
					mu.Lock()
					disconnects = append(disconnects, err)
					mu.Unlock()
				},
			}
			startRun(t, c, h)
			waitFor(t, "the second SUBSCRIBE", func() bool { return len(fa.callsOf(executorpb.Call_SUBSCRIBE)) == 2 })
			subs := fa.callsOf(executorpb.Call_SUBSCRIBE)
			if first := subs[0].GetSubscribe(); len(first.GetUnacknowledgedTasks())+len(first.GetUnacknowledgedUpdates()) != 0 {
				t.Fatalf("first SUBSCRIBE carries %v", first)
			}
			re := subs[1].GetSubscribe()
			if ids := taskIDs(re.GetUnacknowledgedTasks()); len(ids) != 1 || ids[0] != "t-2" {
				t.Errorf("resubscribe tasks %v; want t-2 only (t-py has an acknowledged update)", ids)
			} else if !proto.Equal(re.GetUnacknowledgedTasks()[0], launch2.GetLaunch().GetTask()) {
				t.Errorf("resent task %v\nwant %v", re.GetUnacknowledgedTasks()[0], launch2.GetLaunch().GetTask())
			}
			sent := updates()
			if ru := re.GetUnacknowledgedUpdates(); len(ru) != 1 || !proto.Equal(ru[0].GetStatus(), sent[1]) {
				t.Errorf("resubscribe updates %v; want the FINISHED exactly as sent: %v", ru, sent[1])
			}
			mu.Lock()
			if len(disconnects) != 1 || !strings.Contains(disconnects[0].Error(), "broke off") {
				t.Errorf("disconnects %v", disconnects)
			}
			mu.Unlock()
			// The agent acknowledges the FINISHED after the resubscription.
			waitFor(t, "the acknowledgement", func() bool { _, u := c.Unacknowledged(); return len(u) == 0 })
			if tasks, _ := c.Unacknowledged(); len(taskIDs(tasks)) != 1 {
				t.Errorf("tasks %v", taskIDs(tasks))
			}
		})
	}
}

// TestReconnectThrough503: after the connection drops the agent answers
// 503 while it recovers; the client retries with waits of at most
// SUBSCRIPTION_BACKOFF_MAX, and updates made while it is disconnected,
// before or after the SUBSCRIBE was built, reach the agent.
func TestReconnectThrough503(t *testing.T) {
	fa := newFakeAgent(t, codec.JSON)
	var c *Client
	fa.subscribe = func(n int, s *agentStream) {
		if n == 1 {
			// Made after the SUBSCRIBE left, before SUBSCRIBED: in no
			// SUBSCRIBE, so it must go out as an UPDATE.
			c.Update(context.Background(), status("t-py", mesospb.TaskState_TASK_FINISHED))
		}
		s.send(subscribedEvent())
		if n == 0 {
			return // dropped cleanly
		}
		s.hold()
	}
	attempts := 0
	inner := fa.srv.Config.Handler
	fa.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fa.mu.Lock()
		refuse := fa.subs == 1 && attempts < 3
		if refuse {
			attempts++
		}
		fa.mu.Unlock()
		if refuse {
			http.Error(w, "Agent has not finished recovery", http.StatusServiceUnavailable)
			return
		}
		inner.ServeHTTP(w, r)
	})
	cfg := testConfig(fa, true)
	clock := cfg.Clock.(*fakeClock)
	c = New(cfg)
	var queued error
	startRun(t, c, HandlerFuncs{OnDisconnected: func(error) {
		queued = c.Update(context.Background(), status("t-py", mesospb.TaskState_TASK_RUNNING))
	}})
	waitFor(t, "the UPDATE after SUBSCRIBED", func() bool { return len(fa.callsOf(executorpb.Call_UPDATE)) == 1 })
	if !errors.Is(queued, ErrNotSubscribed) || !errors.Is(queued, ErrPending) {
		t.Errorf("Update while disconnected: %v", queued)
	}
	subs := fa.callsOf(executorpb.Call_SUBSCRIBE)
	fa.mu.Lock()
	refused := attempts
	fa.mu.Unlock()
	if len(subs) != 2 || refused != 3 {
		t.Fatalf("%d SUBSCRIBEs taken, %d refused with 503", len(subs), refused)
	}
	if u := subs[1].GetSubscribe().GetUnacknowledgedUpdates(); len(u) != 1 || u[0].GetStatus().GetState() != mesospb.TaskState_TASK_RUNNING {
		t.Errorf("resubscription carries %v; want the RUNNING made while disconnected", u)
	}
	if st := fa.callsOf(executorpb.Call_UPDATE)[0].GetUpdate().GetStatus(); st.GetState() != mesospb.TaskState_TASK_FINISHED {
		t.Errorf("UPDATE %v", st)
	}
	if _, u := c.Unacknowledged(); len(u) != 2 {
		t.Errorf("unacknowledged %v", u)
	}
	waits := clock.recorded()
	if len(waits) != 4 {
		t.Errorf("waits %v; want one before each of 4 attempts", waits)
	}
	for _, w := range waits {
		if w <= 0 || w > 2*time.Second {
			t.Errorf("wait %v outside (0, SUBSCRIPTION_BACKOFF_MAX]", w)
		}
	}
}

// TestRecoveryTimeout: the agent never comes back; the client gives up once
// MESOS_RECOVERY_TIMEOUT has passed since the disconnection.
func TestRecoveryTimeout(t *testing.T) {
	for _, name := range []string{"503", "unreachable"} {
		t.Run(name, func(t *testing.T) {
			fa := newFakeAgent(t, codec.JSON)
			fa.subscribe = func(n int, s *agentStream) {
				if n > 0 {
					t.Errorf("SUBSCRIBE #%d taken", n+1)
				}
				s.send(subscribedEvent())
			}
			inner := fa.srv.Config.Handler
			var mu sync.Mutex
			tries := 0
			fa.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				tries++
				n := tries
				mu.Unlock()
				if n > 1 {
					if name == "unreachable" {
						if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
							conn.Close() // no answer at all
						}
						return
					}
					http.Error(w, "Agent has not finished recovery", http.StatusServiceUnavailable)
					return
				}
				inner.ServeHTTP(w, r)
			})
			cfg := testConfig(fa, true)
			clock := cfg.Clock.(*fakeClock)
			err := startRun(t, New(cfg), HandlerFuncs{}).wait(t)
			if !errors.Is(err, ErrRecoveryTimeout) || !errors.Is(err, ErrAgentGone) || errors.Is(err, ErrNoCheckpoint) ||
				!strings.Contains(err.Error(), "MESOS_RECOVERY_TIMEOUT=1mins") {
				t.Fatalf("Run: %v", err)
			}
			if name == "503" && !strings.Contains(err.Error(), "Agent has not finished recovery") {
				t.Errorf("the last failure is not in %q", err)
			}
			var total time.Duration
			for _, w := range clock.recorded() {
				if w > 2*time.Second {
					t.Errorf("wait %v > SUBSCRIPTION_BACKOFF_MAX", w)
				}
				total += w
			}
			if total != time.Minute {
				t.Errorf("gave up after %v of waiting; want the recovery timeout, 1m", total)
			}
			if len(clock.recorded()) < 30 {
				t.Errorf("only %d attempts in a minute with waits of at most 2s", len(clock.recorded()))
			}
		})
	}
}

// TestNoCheckpointNoReconnect: without checkpointing a lost connection ends
// Run at once, saying so.
func TestNoCheckpointNoReconnect(t *testing.T) {
	sessions, _ := executorRecording(t)
	fa := newFakeAgent(t, codec.JSON)
	fa.subscribe = func(n int, s *agentStream) {
		s.sendRecorded(sessions[0].events()[0]) // SUBSCRIBED, then the agent goes away
	}
	disconnected := 0
	err := startRun(t, New(testConfig(fa, false)), HandlerFuncs{OnDisconnected: func(error) { disconnected++ }}).wait(t)
	if !errors.Is(err, ErrNoCheckpoint) || !errors.Is(err, ErrAgentGone) || errors.Is(err, ErrRecoveryTimeout) ||
		!strings.Contains(err.Error(), "lost the connection") || !strings.Contains(err.Error(), "closed the event stream after 1 events") {
		t.Fatalf("Run: %v", err)
	}
	if n := len(fa.callsOf(executorpb.Call_SUBSCRIBE)); n != 1 || disconnected != 1 {
		t.Fatalf("%d SUBSCRIBEs, %d disconnections", n, disconnected)
	}

	// An agent that is not there at all.
	fa.srv.Close()
	err = startRun(t, New(testConfig(fa, false)), HandlerFuncs{}).wait(t)
	if !errors.Is(err, ErrNoCheckpoint) || !strings.Contains(err.Error(), "cannot subscribe") || !strings.Contains(err.Error(), "cannot reach the Mesos agent") {
		t.Fatalf("Run: %v", err)
	}
}

// TestShutdown: SHUTDOWN is delivered, and a connection that ends after it
// is not reconnected even when checkpointing.
func TestShutdown(t *testing.T) {
	sessions, _ := executorRecording(t)
	kill := sessions[1].events() // e-py-kill: ... KILL, ACKNOWLEDGED, SHUTDOWN
	fa := newFakeAgent(t, codec.Protobuf)
	fa.subscribe = func(n int, s *agentStream) {
		s.sendRecorded(kill[0])
		s.sendRecorded(kill[len(kill)-1])
	}
	var got []executorpb.Event_Type
	err := startRun(t, New(testConfig(fa, true)), HandlerFuncs{OnEvent: func(_ context.Context, ev *executorpb.Event) {
		got = append(got, ev.GetType())
	}}).wait(t)
	if !errors.Is(err, ErrShutdown) || errors.Is(err, ErrAgentGone) {
		t.Fatalf("Run: %v", err)
	}
	if len(got) != 2 || got[1] != executorpb.Event_SHUTDOWN {
		t.Fatalf("events %v", got)
	}
	if n := len(fa.callsOf(executorpb.Call_SUBSCRIBE)); n != 1 {
		t.Fatalf("%d SUBSCRIBEs", n)
	}
}

// TestErrorEvent: ERROR events reach the handler (and the log).
func TestErrorEvent(t *testing.T) {
	fa := newFakeAgent(t, codec.JSON)
	fa.subscribe = func(n int, s *agentStream) {
		s.send(subscribedEvent())
		s.send(&executorpb.Event{Type: executorpb.Event_ERROR.Enum(), Error: &executorpb.Event_Error{Message: proto.String("bad call")}})
		s.hold()
	}
	got := make(chan string, 1)
	startRun(t, New(testConfig(fa, false)), HandlerFuncs{OnEvent: func(_ context.Context, ev *executorpb.Event) {
		if ev.GetType() == executorpb.Event_ERROR {
			got <- ev.GetError().GetMessage()
		}
	}})
	select {
	case m := <-got:
		if m != "bad call" {
			t.Fatalf("ERROR %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ERROR delivered")
	}
}

// TestGarbageOnTheStream: whatever the agent sends, Run ends with an error
// saying what was wrong, and nothing reaches the handler after it.
func TestGarbageOnTheStream(t *testing.T) {
	sub, _ := codec.MarshalJSON(subscribedEvent())
	subPB, _ := proto.Marshal(subscribedEvent())
	rec := func(s string) []byte { return recordio.Frame([]byte(s)) }
	for _, tc := range []struct {
		name        string
		enc         codec.Encoding
		contentType string
		body        []byte
		says        string
	}{
		{"not recordio", codec.JSON, "", []byte("x\n{}"), "not RecordIO-framed"},
		{"html error page", codec.JSON, "", []byte("<html>oops</html>"), "not RecordIO-framed"},
		{"zero length", codec.JSON, "", []byte("0\n"), "not RecordIO-framed"},
		{"huge length", codec.JSON, "", []byte("99999999999\n{"), "exceeds the limit"},
		{"not json", codec.JSON, "", rec("hello"), "event 1 from the agent is not a json executor Event"},
		{"json of the wrong shape", codec.JSON, "", rec(`{"type":"SUBSCRIBED","subscribed":[1]}`), "event 1"},
		{"launch without launch", codec.JSON, "", append(rec(string(sub)), rec(`{"type":"LAUNCH"}`)...), `event 2 from the agent: a LAUNCH event without its "launch" field`},
		{"launch without task", codec.JSON, "", append(rec(string(sub)), rec(`{"type":"LAUNCH","launch":{}}`)...), "event 2"},
		{"first event not SUBSCRIBED", codec.JSON, "", rec(`{"type":"HEARTBEAT"}`), "first event is HEARTBEAT"},
		{"cut in a record", codec.JSON, "", append(rec(string(sub)), []byte("50\n{\"type\"")...), "broke off before the end of event 2"},
		{"protobuf garbage", codec.Protobuf, "", rec("\xff\xff\xff"), "event 1 from the agent is not a protobuf executor Event"},
		{"protobuf, then bad length", codec.Protobuf, "", append(rec(string(subPB)), "12x\n"...), "not RecordIO-framed"},
		{"wrong content type", codec.JSON, "text/html", rec(string(sub)), `Content-Type "text/html"`},
		{"json answer to protobuf", codec.Protobuf, "application/json", rec(string(sub)), `where "application/x-protobuf" was asked for`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newFakeAgent(t, tc.enc)
			srv.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ct := tc.contentType
				if ct == "" {
					ct = tc.enc.MediaType()
				}
				w.Header().Set("Content-Type", ct)
				w.Write(tc.body)
			})
			c := New(testConfig(srv, false))
			var events []executorpb.Event_Type
			err := startRun(t, c, HandlerFuncs{OnEvent: func(_ context.Context, ev *executorpb.Event) { events = append(events, ev.GetType()) }}).wait(t)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("Run: %v; want it to say %q", err, tc.says)
			}
			if len(events) > 1 {
				t.Fatalf("events after garbage: %v", events)
			}
		})
	}
}

// TestSubscribeTimeout: an agent that takes the connection and never
// answers is one failed attempt, not a hang.
func TestSubscribeTimeout(t *testing.T) {
	fa := newFakeAgent(t, codec.JSON)
	fa.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-fa.done:
		}
	})
	cfg := testConfig(fa, false)
	cfg.SubscribeTimeout = 50 * time.Millisecond
	err := startRun(t, New(cfg), HandlerFuncs{}).wait(t)
	if !errors.Is(err, ErrNoCheckpoint) || !strings.Contains(err.Error(), "did not answer SUBSCRIBE with SUBSCRIBED within 50ms") {
		t.Fatalf("Run: %v", err)
	}
}

// TestCallsBeforeSubscription: before SUBSCRIBED nothing is sent; updates
// are kept for the SUBSCRIBE, messages are not; invalid updates are refused
// before they reach the agent.
func TestCallsBeforeSubscription(t *testing.T) {
	fa := newFakeAgent(t, codec.JSON)
	c := New(testConfig(fa, false))
	ctx := context.Background()
	err := c.Update(ctx, status("t", mesospb.TaskState_TASK_RUNNING))
	if !errors.Is(err, ErrNotSubscribed) || !errors.Is(err, ErrPending) || !strings.Contains(err.Error(), `TASK_RUNNING for task "t"`) {
		t.Fatalf("Update: %v", err)
	}
	if err := c.Message(ctx, []byte("x")); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("Message: %v", err)
	}
	if err := c.Heartbeat(ctx); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("Heartbeat: %v", err)
	}
	for _, bad := range []*mesospb.TaskStatus{
		nil,
		{State: mesospb.TaskState_TASK_RUNNING.Enum()},
		{TaskId: &mesospb.TaskID{Value: proto.String("t")}},
		status("t", mesospb.TaskState_TASK_STAGING),
	} {
		if err := c.Update(ctx, bad); err == nil || errors.Is(err, ErrPending) {
			t.Errorf("Update(%v): %v", bad, err)
		}
	}
	if _, u := c.Unacknowledged(); len(u) != 1 {
		t.Fatalf("kept %v", u)
	}
	fa.mu.Lock()
	n := len(fa.calls)
	fa.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d calls reached the agent", n)
	}

	// The kept update goes out with the first SUBSCRIBE; then calls work.
	startRun(t, c, HandlerFuncs{})
	waitFor(t, "subscription", c.isSubscribed)
	sub := fa.callsOf(executorpb.Call_SUBSCRIBE)[0].GetSubscribe()
	if len(sub.GetUnacknowledgedUpdates()) != 1 {
		t.Fatalf("SUBSCRIBE %v", sub)
	}
	if err := c.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Message(ctx, []byte("from-executor")); err != nil {
		t.Fatal(err)
	}
	if m := fa.callsOf(executorpb.Call_MESSAGE); len(m) != 1 || !bytes.Equal(m[0].GetMessage().GetData(), []byte("from-executor")) {
		t.Fatalf("MESSAGE %v", m)
	}
	if len(fa.callsOf(executorpb.Call_HEARTBEAT)) != 1 {
		t.Fatal("no HEARTBEAT")
	}
}

// TestUpdateFields: what Update fills in, in both encodings.
func TestUpdateFields(t *testing.T) {
	for _, enc := range encodings {
		t.Run(enc.String(), func(t *testing.T) {
			fa := newFakeAgent(t, enc)
			cfg := testConfig(fa, false)
			cfg.AgentID = "" // learnt from SUBSCRIBED
			c := New(cfg)
			startRun(t, c, HandlerFuncs{})
			waitFor(t, "subscription", c.isSubscribed)
			in := status("t", mesospb.TaskState_TASK_RUNNING)
			in.Uuid = []byte("caller's uuid")
			in.Source = mesospb.TaskStatus_SOURCE_MASTER.Enum()
			in.ExecutorId = &mesospb.ExecutorID{Value: proto.String("someone else")}
			for i := 0; i < 2; i++ {
				if err := c.Update(context.Background(), in); err != nil {
					t.Fatal(err)
				}
			}
			if in.GetSource() != mesospb.TaskStatus_SOURCE_MASTER {
				t.Fatal("Update modified the caller's status")
			}
			ups := fa.callsOf(executorpb.Call_UPDATE)
			a, b := ups[0].GetUpdate().GetStatus(), ups[1].GetUpdate().GetStatus()
			for _, st := range []*mesospb.TaskStatus{a, b} {
				u := st.GetUuid()
				if len(u) != 16 || u[6]>>4 != 4 || u[8]>>6 != 2 || st.GetSource() != mesospb.TaskStatus_SOURCE_EXECUTOR ||
					st.GetExecutorId().GetValue() != "e-py" || st.GetAgentId().GetValue() != recAgent ||
					st.GetTimestamp() != float64(newFakeClock().Now().UnixNano())/1e9 {
					t.Errorf("status %v", st)
				}
			}
			if bytes.Equal(a.GetUuid(), b.GetUuid()) {
				t.Error("two updates with one uuid")
			}
			if _, kept := c.Unacknowledged(); len(kept) != 2 {
				t.Errorf("kept %d updates", len(kept))
			}
		})
	}
}

// TestUpdateKeptOnTransientFailure: an UPDATE that fails for a reason that
// can heal stays for the next SUBSCRIBE.
func TestUpdateKeptOnTransientFailure(t *testing.T) {
	for _, code := range []int{http.StatusServiceUnavailable, http.StatusForbidden, http.StatusInternalServerError} {
		fa := newFakeAgent(t, codec.JSON)
		fa.answer = func(*executorpb.Call) (int, string) { return code, "nope" }
		c := New(testConfig(fa, false))
		startRun(t, c, HandlerFuncs{})
		waitFor(t, "subscription", c.isSubscribed)
		err := c.Update(context.Background(), status("t", mesospb.TaskState_TASK_RUNNING))
		var se *StatusError
		if !errors.Is(err, ErrPending) || !errors.As(err, &se) || se.Code != code || !strings.Contains(err.Error(), "nope") {
			t.Errorf("%d: %v", code, err)
		}
		if _, kept := c.Unacknowledged(); len(kept) != 1 {
			t.Errorf("%d: kept %d", code, len(kept))
		}
	}
}

func TestRunMisuse(t *testing.T) {
	fa := newFakeAgent(t, codec.JSON)
	c := New(testConfig(fa, false))
	startRun(t, c, HandlerFuncs{})
	waitFor(t, "subscription", c.isSubscribed)
	if err := c.Run(context.Background(), HandlerFuncs{}); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v", err)
	}
	for _, cfg := range []Config{
		{ExecutorID: "e", AgentURL: fa.url()},
		{FrameworkID: "f", ExecutorID: "e", AgentURL: "127.0.0.1:5051"},
		{FrameworkID: "f", ExecutorID: "e", AgentURL: fa.url(), Encoding: 9},
	} {
		if err := New(cfg).Run(context.Background(), HandlerFuncs{}); err == nil || !strings.Contains(err.Error(), "Config.") {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
}
