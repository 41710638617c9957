package integration

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/schedclient"
	"github.com/k8sm/k8sm/internal/minimesos/agent"
)

// An executor that ignores SIGTERM and starts a process in a session of its
// own: after SHUTDOWN and the grace period, none of its processes is left.
// And when the agent stops, nothing it started is left either.
func TestNoProcessOutlivesItsExecutor(t *testing.T) {
	c := newCluster(t, masterDefaults())
	ra := c.addAgent("cpus:2;mem:1024")
	f := c.framework(codec.JSON, fwInfo("orphans"))
	launch := func(execID string) {
		o := f.takeOffer()
		task := commandTask("t-"+execID, o, "")
		task.Command = nil
		task.Executor = &mesospb.ExecutorInfo{
			ExecutorId:          &mesospb.ExecutorID{Value: proto.String(execID)},
			Command:             &mesospb.CommandInfo{Value: proto.String(`trap '' TERM; setsid sleep 300 & sleep 300`)},
			ShutdownGracePeriod: &mesospb.DurationInfo{Nanoseconds: proto.Int64(int64(time.Second))},
		}
		if err := f.c.Accept(context.Background(), []string{o.GetId().GetValue()}, []*mesospb.Offer_Operation{schedclient.LaunchOperation(task)}, schedclient.Filters(0)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "executor processes", func() bool { return len(processesWithEnv("MESOS_EXECUTOR_ID="+execID)) >= 3 })
	}
	launch("e-stubborn")
	start := time.Now()
	if err := f.c.Shutdown(context.Background(), ra.a.ID(), "e-stubborn"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every process of the executor gone", func() bool { return len(processesWithEnv("MESOS_EXECUTOR_ID=e-stubborn")) == 0 })
	if time.Since(start) < 900*time.Millisecond {
		t.Fatalf("killed before the grace period")
	}
	launch("e-second")
	ra.stop()
	if n := len(processesWithEnv(agent.OwnerEnv + "=" + ra.dir)); n != 0 {
		t.Fatalf("%d processes outlived the agent", n)
	}
}
