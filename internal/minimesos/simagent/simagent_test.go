package simagent

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/schedclient"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/minimesos/master"
)

// 200 simulated agents register with a real master; a task launched on one
// of them runs, and a kill ends it.
func TestSimulatedAgents(t *testing.T) {
	m, _ := master.New(master.Config{AllocationInterval: 50 * time.Millisecond})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	p, err := New(Config{Master: srv.Listener.Addr().String(), Count: 200, Resources: "cpus:8;mem:32768;ports:[31000-32000]", Attributes: "rack:r1"})
	if err != nil {
		t.Fatal(err)
	}
	go p.Run(ctx)
	deadline := time.Now().Add(30 * time.Second)
	for p.Registered() < 200 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 200 registered", p.Registered())
		}
		time.Sleep(20 * time.Millisecond)
	}

	updates := make(chan *mesospb.TaskStatus, 10)
	offers := make(chan *mesospb.Offer, 1000)
	cl, _ := schedclient.New(schedclient.Config{Masters: []string{srv.Listener.Addr().String()}, Encoding: codec.Protobuf,
		FrameworkInfo: &mesospb.FrameworkInfo{User: proto.String("root"), Name: proto.String("bench")}})
	go cl.Run(ctx, schedclient.HandlerFuncs{OnEvent: func(ctx context.Context, ev *schedulerpb.Event) {
		switch ev.GetType() {
		case schedulerpb.Event_OFFERS:
			for _, o := range ev.GetOffers().GetOffers() {
				offers <- o
			}
		case schedulerpb.Event_UPDATE:
			cl.Acknowledge(ctx, ev.GetUpdate().GetStatus())
			updates <- ev.GetUpdate().GetStatus()
		}
	}})
	o := <-offers
	res, _ := resources.Parse("cpus:1;mem:128", "*")
	task := &mesospb.TaskInfo{Name: proto.String("t"), TaskId: &mesospb.TaskID{Value: proto.String("t1")}, AgentId: o.AgentId,
		Resources: res, Command: &mesospb.CommandInfo{Value: proto.String("true")}}
	if err := cl.Accept(ctx, []string{o.GetId().GetValue()}, []*mesospb.Offer_Operation{schedclient.LaunchOperation(task)}, nil); err != nil {
		t.Fatal(err)
	}
	if st := <-updates; st.GetState() != mesospb.TaskState_TASK_RUNNING || st.GetTaskId().GetValue() != "t1" {
		t.Fatalf("got %v", st)
	}
	if p.RunningTasks() != 1 {
		t.Fatalf("%d running", p.RunningTasks())
	}
	cl.Kill(ctx, "t1", "", 0)
	if st := <-updates; st.GetState() != mesospb.TaskState_TASK_KILLED {
		t.Fatalf("got %v", st)
	}
}
