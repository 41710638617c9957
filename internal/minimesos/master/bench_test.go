package master

import (
	"fmt"
	"io"
	"log"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
	"github.com/k8sm/k8sm/internal/minimesos/eventstream"
)

// benchCluster builds a master with agents and connected frameworks
// directly in its state (no HTTP), as the allocator sees them.
func benchCluster(b *testing.B, agents, frameworks int) (*Master, []*eventstream.Stream) {
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	m, err := New(Config{Clock: clock, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		b.Fatal(err)
	}
	res, _ := parseTestResources("cpus:8;mem:32768;disk:100000;ports:[31000-32000]")
	for i := 0; i < agents; i++ {
		info := &mesospb.AgentInfo{Hostname: proto.String(fmt.Sprintf("agent-%d", i)), Resources: res}
		st := eventstream.New(codec.Protobuf)
		go drain(st)
		if ev := m.st.register(&agentpb.Call{Type: agentpb.Call_REGISTER.Enum(), Register: &agentpb.Call_Register{AgentInfo: info, Endpoint: proto.String("127.0.0.1:5051")}}, st); ev != nil {
			b.Fatalf("register: %v", ev)
		}
	}
	var streams []*eventstream.Stream
	for i := 0; i < frameworks; i++ {
		fi := frameworkInfo(fmt.Sprintf("f%d", i), mesospb.FrameworkInfo_Capability_MULTI_ROLE)
		st := eventstream.New(codec.Protobuf)
		go drain(st)
		if _, ok := m.st.subscribe(subscribeCall(fi), st); !ok {
			b.Fatal("subscribe failed")
		}
		streams = append(streams, st)
	}
	return m, streams
}

// drain discards what a stream queues, as a fast reader would.
func drain(st *eventstream.Stream) {
	for {
		if _, closed := st.Take(); closed {
			return
		}
		<-st.Notify
	}
}

// BenchmarkAllocationCycle measures one allocation cycle that offers every
// agent of the cluster (the offers are taken back between cycles, as if
// declined with no filter). Mesos 1.8 publishes about 0.4 s for 5,000
// agents and 500 frameworks (docs/benchmarks.md).
func BenchmarkAllocationCycle(b *testing.B) {
	for _, c := range []struct{ agents, frameworks int }{{1000, 5}, {5000, 5}, {5000, 50}, {5000, 500}} {
		b.Run(fmt.Sprintf("agents=%d/frameworks=%d", c.agents, c.frameworks), func(b *testing.B) {
			m, _ := benchCluster(b, c.agents, c.frameworks)
			m.mu.Lock()
			defer m.mu.Unlock()
			s := m.st
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s.allocate(s.now())
				b.StopTimer()
				if len(s.offers) != c.agents {
					b.Fatalf("%d offers for %d agents", len(s.offers), c.agents)
				}
				for _, o := range s.offers {
					s.removeOffer(o, false)
				}
				b.StartTimer()
			}
		})
	}
}

func subscribeCall(fi *mesospb.FrameworkInfo) *schedulerpb.Call {
	return &schedulerpb.Call{Type: schedulerpb.Call_SUBSCRIBE.Enum(), Subscribe: &schedulerpb.Call_Subscribe{FrameworkInfo: fi}}
}
