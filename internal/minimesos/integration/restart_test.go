package integration

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/schedclient"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/minimesos/master"
)

// The master restarts (a new master process on the same address, knowing
// nothing): the agent re-registers with its ID and its running task, the
// framework fails over to the new master with its ID, and reconciliation
// finds the task still running.
func TestMasterRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	startMaster := func(ln net.Listener) (context.CancelFunc, chan struct{}) {
		m, err := master.New(master.Config{AllocationInterval: 100 * time.Millisecond, Logger: logger(t, "master")})
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: m.Handler()}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go m.Run(ctx)
		go func() { srv.Serve(ln); close(done) }()
		return func() { cancel(); srv.Close() }, done
	}
	stop1, done1 := startMaster(ln)
	c := &cluster{t: t, addr: addr}
	t.Cleanup(func() {
		for _, a := range c.agents {
			a.stop()
		}
	})
	ra := c.addAgent("cpus:2;mem:1024")
	info := fwInfo("restart")
	info.FailoverTimeout = proto.Float64(3600)
	info.Checkpoint = proto.Bool(true)
	f := c.framework(codec.JSON, info)
	o := f.takeOffer()
	if err := f.c.Accept(context.Background(), []string{o.GetId().GetValue()}, []*mesospb.Offer_Operation{
		schedclient.LaunchOperation(commandTask("t-survivor", o, "sleep 60"))}, nil); err != nil {
		t.Fatal(err)
	}
	f.waitEvent("RUNNING", taskState("t-survivor", mesospb.TaskState_TASK_RUNNING))
	agentID := ra.a.ID()

	stop1()
	<-done1
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("cannot listen again on %s: %v", addr, err)
	}
	stop2, done2 := startMaster(ln2)
	defer func() { stop2(); <-done2 }()

	// The framework resubscribes by itself (same ID); the agent
	// re-registers by itself (same ID, with its task).
	f.waitEvent("SUBSCRIBED again", func() func(*schedulerpb.Event) bool {
		n := 0
		return func(e *schedulerpb.Event) bool {
			if e.GetType() == schedulerpb.Event_SUBSCRIBED {
				n++
			}
			return n == 2
		}
	}())
	waitFor(t, "agent re-registered", func() bool {
		resp, err := http.Get("http://" + addr + "/slaves")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b := make([]byte, 1<<16)
		n, _ := resp.Body.Read(b)
		return n > 0 && contains(string(b[:n]), agentID)
	})
	if ra.a.ID() != agentID {
		t.Fatalf("agent ID changed: %s -> %s", agentID, ra.a.ID())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := f.c.Reconcile(context.Background(), []schedclient.ReconcileTask{{TaskID: "t-survivor", AgentID: agentID}}); err == nil {
			if f.count(func(e *schedulerpb.Event) bool {
				st := e.GetUpdate().GetStatus()
				return st.GetTaskId().GetValue() == "t-survivor" && st.GetState() == mesospb.TaskState_TASK_RUNNING && st.GetReason() == mesospb.TaskStatus_REASON_RECONCILIATION
			}) > 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the task is not reported running after the master restart")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
