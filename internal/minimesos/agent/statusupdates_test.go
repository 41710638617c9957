package agent

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/uuid"
)

func status(task string, s mesospb.TaskState) *mesospb.TaskStatus {
	return &mesospb.TaskStatus{TaskId: &mesospb.TaskID{Value: proto.String(task)}, State: s.Enum(), Uuid: uuid.New()}
}

// Per task, only the head is in flight; it is resent with exponential
// backoff (min doubling up to max) until acknowledged; then the next goes.
// Tasks do not wait for each other.
func TestUpdateManagerOrderAndRetry(t *testing.T) {
	m := newUpdateManager(10*time.Second, 40*time.Second)
	t0 := time.Unix(1000, 0)
	running, finished := status("t1", mesospb.TaskState_TASK_RUNNING), status("t1", mesospb.TaskState_TASK_FINISHED)
	other := status("t2", mesospb.TaskState_TASK_RUNNING)
	for _, st := range []*mesospb.TaskStatus{running, finished, other} {
		if ok, why := m.add("fw", st, ""); !ok {
			t.Fatal(why)
		}
	}
	uuids := func(out []outgoing) []string {
		var s []string
		for _, o := range out {
			s = append(s, o.st.GetTaskId().GetValue()+":"+o.st.GetState().String())
		}
		return s
	}
	if got := uuids(m.due(t0)); len(got) != 2 || got[0] != "t1:TASK_RUNNING" || got[1] != "t2:TASK_RUNNING" {
		t.Fatalf("first round %v", got)
	}
	if got := m.due(t0.Add(9 * time.Second)); len(got) != 0 {
		t.Fatalf("resent before the interval: %v", uuids(got))
	}
	if next, ok := m.next(); !ok || !next.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("next %v %v", next, ok)
	}
	// Retries at +10s, then +20s, then +40s (the max), then +40s again.
	at := t0
	for i, gap := range []time.Duration{10, 20, 40, 40} {
		at = at.Add(gap * time.Second)
		if got := uuids(m.due(at.Add(-time.Millisecond))); len(got) != 0 {
			t.Fatalf("retry %d early: %v", i, got)
		}
		if got := uuids(m.due(at)); len(got) != 2 || got[0] != "t1:TASK_RUNNING" {
			t.Fatalf("retry %d at +%v: %v", i, at.Sub(t0), got)
		}
	}
	// An acknowledgement of anything but the head changes nothing.
	if _, _, err := m.ack("fw", "t1", finished.GetUuid(), at); err == "" {
		t.Fatal("acknowledged an update that is not in flight")
	}
	if st, done, err := m.ack("fw", "t1", running.GetUuid(), at); err != "" || done || st != running {
		t.Fatalf("ack: %v %v %q", st, done, err)
	}
	// The next update goes at once, with the backoff reset.
	if got := uuids(m.due(at)); len(got) != 1 || got[0] != "t1:TASK_FINISHED" {
		t.Fatalf("after the ack %v", got)
	}
	if next, _ := m.next(); !next.Equal(at.Add(10 * time.Second)) {
		t.Fatalf("backoff not reset: next at %v", next.Sub(at))
	}
	if _, _, err := m.ack("fw", "t1", running.GetUuid(), at); err != "a duplicate acknowledgement" {
		t.Fatalf("duplicate ack: %q", err)
	}
	// The terminal update's acknowledgement ends the stream.
	if st, done, err := m.ack("fw", "t1", finished.GetUuid(), at); err != "" || !done || st != finished {
		t.Fatalf("terminal ack: %v %v %q", st, done, err)
	}
	if m.stream("fw", "t1") != nil {
		t.Fatal("the stream of an acknowledged terminal update is kept")
	}
	// After a re-registration every head goes again at once.
	m.resume()
	if got := uuids(m.due(at)); len(got) != 1 || got[0] != "t2:TASK_RUNNING" {
		t.Fatalf("after resume %v", got)
	}
}

// Duplicates (by uuid) and updates after a terminal one are refused.
func TestUpdateManagerRefuses(t *testing.T) {
	m := newUpdateManager(time.Second, time.Minute)
	running := status("t", mesospb.TaskState_TASK_RUNNING)
	if ok, _ := m.add("fw", running, ""); !ok {
		t.Fatal("refused")
	}
	if ok, why := m.add("fw", proto.Clone(running).(*mesospb.TaskStatus), ""); ok || why != "a duplicate of an update already received" {
		t.Fatalf("duplicate taken: %q", why)
	}
	m.add("fw", status("t", mesospb.TaskState_TASK_FAILED), "")
	if ok, why := m.add("fw", status("t", mesospb.TaskState_TASK_RUNNING), ""); ok || why != "the task already reached a terminal state (TASK_FAILED)" {
		t.Fatalf("update after terminal taken: %q", why)
	}
	if m.pendingCount() != 2 || !m.hasFramework("fw") {
		t.Fatalf("pending %d", m.pendingCount())
	}
	m.dropFramework("fw")
	if m.hasFramework("fw") || m.pendingCount() != 0 {
		t.Fatal("dropFramework kept streams")
	}
	if _, ok := m.next(); ok {
		t.Fatal("next with nothing pending")
	}
}
