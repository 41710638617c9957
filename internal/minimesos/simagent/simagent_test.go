package simagent

import (
	"bytes"
	"context"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
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

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type framework struct {
	cl *schedclient.Client

	mu      sync.Mutex
	ack     bool
	updates []*mesospb.TaskStatus
	offers  chan *mesospb.Offer
}

func (f *framework) statuses(task string) []*mesospb.TaskStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*mesospb.TaskStatus
	for _, st := range f.updates {
		if st.GetTaskId().GetValue() == task {
			out = append(out, st)
		}
	}
	return out
}

// Simulated agents register with a real master, which offers them; a
// launched task is reported TASK_RUNNING (SOURCE_EXECUTOR, with a uuid),
// resent until the framework acknowledges it, and a kill's TASK_KILLED
// waits behind it, as a real agent's status update manager has it.
func TestSimulatedAgents(t *testing.T) {
	m, _ := master.New(master.Config{AllocationInterval: 50 * time.Millisecond})
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go m.Run(ctx)
	const n = 300
	p, err := New(Config{Master: srv.Listener.Addr().String(), Count: n, Resources: "cpus:8;mem:32768;ports:[31000-32000]",
		Attributes: "rack:r1", HostnamePrefix: "sim-", RetryInterval: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go p.Run(ctx)
	waitFor(t, "every agent registered", func() bool { return p.Registered() == n })

	f := &framework{offers: make(chan *mesospb.Offer, 10*n)}
	f.cl, _ = schedclient.New(schedclient.Config{Masters: []string{srv.Listener.Addr().String()}, Encoding: codec.Protobuf,
		FrameworkInfo: &mesospb.FrameworkInfo{User: proto.String("root"), Name: proto.String("bench")}})
	go f.cl.Run(ctx, schedclient.HandlerFuncs{OnEvent: func(ctx context.Context, ev *schedulerpb.Event) {
		switch ev.GetType() {
		case schedulerpb.Event_OFFERS:
			for _, o := range ev.GetOffers().GetOffers() {
				f.offers <- o
			}
		case schedulerpb.Event_UPDATE:
			st := ev.GetUpdate().GetStatus()
			f.mu.Lock()
			f.updates = append(f.updates, st)
			ack := f.ack
			f.mu.Unlock()
			if ack {
				f.cl.Acknowledge(ctx, st)
			}
		}
	}})
	o := <-f.offers
	if !strings.HasPrefix(o.GetHostname(), "sim-") {
		t.Errorf("offer from %q", o.GetHostname())
	}
	res, _ := resources.Parse("cpus:1;mem:128", "*")
	task := &mesospb.TaskInfo{Name: proto.String("t"), TaskId: &mesospb.TaskID{Value: proto.String("t1")}, AgentId: o.AgentId,
		Resources: res, Command: &mesospb.CommandInfo{Value: proto.String("true")}}
	if err := f.cl.Accept(ctx, []string{o.GetId().GetValue()}, []*mesospb.Offer_Operation{schedclient.LaunchOperation(task)}, nil); err != nil {
		t.Fatal(err)
	}
	// Not acknowledged: resent, with the same uuid.
	waitFor(t, "TASK_RUNNING resent", func() bool { return len(f.statuses("t1")) >= 2 })
	first := f.statuses("t1")[0]
	if first.GetState() != mesospb.TaskState_TASK_RUNNING || first.GetSource() != mesospb.TaskStatus_SOURCE_EXECUTOR || len(first.GetUuid()) != 16 {
		t.Fatalf("first update %v", first)
	}
	for _, st := range f.statuses("t1") {
		if !bytes.Equal(st.GetUuid(), first.GetUuid()) {
			t.Fatalf("another update went out before the first was acknowledged: %v", st)
		}
	}
	if p.RunningTasks() != 1 || p.TasksOn(o.GetHostname()) != 1 {
		t.Fatalf("%d running", p.RunningTasks())
	}
	// The kill's TASK_KILLED waits until TASK_RUNNING is acknowledged.
	f.cl.Kill(ctx, "t1", o.GetAgentId().GetValue(), 0)
	waitFor(t, "the kill reached the agent", func() bool { return p.RunningTasks() == 0 })
	sent := len(f.statuses("t1"))
	waitFor(t, "TASK_RUNNING resent after the kill", func() bool { return len(f.statuses("t1")) >= sent+2 })
	for _, st := range f.statuses("t1") {
		if st.GetState() != mesospb.TaskState_TASK_RUNNING {
			t.Fatalf("%s overtook the unacknowledged TASK_RUNNING", st.GetState())
		}
	}
	f.mu.Lock()
	f.ack = true
	f.mu.Unlock()
	f.cl.Acknowledge(ctx, first)
	waitFor(t, "TASK_KILLED", func() bool {
		sts := f.statuses("t1")
		return sts[len(sts)-1].GetState() == mesospb.TaskState_TASK_KILLED
	})
	waitFor(t, "every update acknowledged", func() bool { return p.PendingUpdates() == 0 })
	if p.TasksOn(o.GetHostname()) != 0 {
		t.Errorf("the killed task is still counted")
	}
}

func TestBadConfig(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Master: "m:1", Count: 1, Resources: "cpus:four"}, `--resources="cpus:four": bad resource "cpus:four"`},
		{Config{Master: "m:1", Count: 1, Resources: "disk:10"}, "has neither cpus nor mem"},
		{Config{Master: "m:1", Count: 0, Resources: "cpus:1"}, "--count=0"},
		{Config{Count: 1, Resources: "cpus:1"}, "--master is required"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

// BenchmarkRegister5000 registers 5,000 simulated agents with a real master
// in one process and reports the memory they and the master hold.
func BenchmarkRegister5000(b *testing.B) {
	for i := 0; i < b.N; i++ {
		m, _ := master.New(master.Config{AllocationInterval: time.Second})
		srv := httptest.NewServer(m.Handler())
		ctx, cancel := context.WithCancel(context.Background())
		go m.Run(ctx)
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		p, _ := New(Config{Master: srv.Listener.Addr().String(), Count: 5000, Resources: "cpus:8;mem:32768;ports:[31000-32000]"})
		go p.Run(ctx)
		waitFor(b, "5000 agents registered", func() bool { return p.Registered() == 5000 })
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/5000/1024, "KiB/agent")
		b.ReportMetric(float64(runtime.NumGoroutine())/5000, "goroutines/agent")
		cancel()
		srv.CloseClientConnections()
		srv.Close()
	}
}
