package executor

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

type recordedUpdates struct {
	mu  sync.Mutex
	sts []*mesospb.TaskStatus
}

func (r *recordedUpdates) Update(_ context.Context, st *mesospb.TaskStatus) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sts = append(r.sts, st)
	return nil
}

func exited(e *Executor) bool {
	select {
	case <-e.Done():
		return true
	default:
		return false
	}
}

func TestIdleTimeout(t *testing.T) {
	e := New(Config{Client: fake.NewSimpleClientset(), Mesos: &recordedUpdates{}, IdleTimeout: time.Minute, Logger: log.New(io.Discard, "", 0)})
	start := e.idleSince
	e.checkIdle(start.Add(59 * time.Second))
	if exited(e) {
		t.Fatal("exited before the idle timeout")
	}
	// A pod arrives: however long it runs, the executor stays.
	e.mu.Lock()
	e.pods["t1"] = &running{}
	e.idleSince = time.Time{}
	e.mu.Unlock()
	e.checkIdle(start.Add(time.Hour))
	if exited(e) {
		t.Fatal("exited while a pod runs")
	}
	// The pod ends: the timeout counts from then.
	e.mu.Lock()
	delete(e.pods, "t1")
	e.idleSince = start.Add(time.Hour)
	e.mu.Unlock()
	e.checkIdle(start.Add(time.Hour + 30*time.Second))
	if exited(e) {
		t.Fatal("exited 30 s after its last pod ended, with a 1 min timeout")
	}
	e.checkIdle(start.Add(time.Hour + time.Minute))
	if !exited(e) {
		t.Fatal("still there a minute after its last pod ended")
	}
}

func TestNoIdleTimeout(t *testing.T) {
	e := New(Config{Client: fake.NewSimpleClientset(), Mesos: &recordedUpdates{}, Logger: log.New(io.Discard, "", 0)})
	e.checkIdle(e.idleSince.Add(1000 * time.Hour))
	if exited(e) {
		t.Fatal("IdleTimeout 0 must keep the executor")
	}
}

// TestKamikazeThenLaunch: once an idle executor decided to exit, a LAUNCH
// that crosses the decision is refused with a terminal state, not lost.
func TestKamikazeThenLaunch(t *testing.T) {
	up := &recordedUpdates{}
	e := New(Config{Client: fake.NewSimpleClientset(), Mesos: up, Logger: log.New(io.Discard, "", 0)})
	ctx := context.Background()
	e.Event(ctx, &executorpb.Event{Type: executorpb.Event_MESSAGE.Enum(), Message: &executorpb.Event_Message{Data: []byte("hello")}})
	if exited(e) {
		t.Fatal("exited on a message that is not kamikaze")
	}
	e.Event(ctx, &executorpb.Event{Type: executorpb.Event_MESSAGE.Enum(), Message: &executorpb.Event_Message{Data: []byte(podtask.KamikazeMessage)}})
	if !exited(e) {
		t.Fatal("an idle executor did not exit on kamikaze")
	}
	data, _ := json.Marshal(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u1"}})
	e.Event(ctx, &executorpb.Event{Type: executorpb.Event_LAUNCH.Enum(), Launch: &executorpb.Event_Launch{Task: &mesospb.TaskInfo{
		Name: proto.String("p"), TaskId: &mesospb.TaskID{Value: proto.String("t1")}, AgentId: &mesospb.AgentID{Value: proto.String("a1")}, Data: data}}})
	up.mu.Lock()
	defer up.mu.Unlock()
	if len(up.sts) != 1 || up.sts[0].GetState() != mesospb.TaskState_TASK_FAILED || !strings.Contains(up.sts[0].GetMessage(), "shutting down") {
		t.Fatalf("a LAUNCH after the executor decided to exit: updates %v, want one TASK_FAILED saying it is shutting down", up.sts)
	}
}
