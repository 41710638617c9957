package resources

import (
	"fmt"
	"math/rand"
	"testing"
)

// agentSized is what one agent offers a MULTI_ROLE framework in a real
// cluster: unreserved and reserved scalars, ports, a set, all with
// allocation info; task is what one pod takes of it.
func agentSized(b *testing.B) (offer, task Resources) {
	offer = WithAllocationRole(mustParse(b, "cpus:32;mem:262144;disk:1000000;ports:[31000-31999,32001-32500,33000-34000];cpus(k8s):8;mem(k8s):65536;gpus:{g0,g1,g2,g3}"), "k8s")
	task = WithAllocationRole(mustParse(b, "cpus(k8s):0.25;mem:512;cpus:0.5;ports:[31005-31005,32100-32101]"), "k8s")
	return offer, task
}

// fragmented is an agent whose ports were handed out at random, 200
// ranges: the worst case for range math.
func fragmented(b *testing.B) (free, task Resources) {
	rng := rand.New(rand.NewSource(1))
	ports := []Range{{31000, 32999}}
	for len(ports) < 200 {
		p := uint64(31000 + rng.Intn(2000))
		ports = Minus(ports, []Range{{p, p}})
	}
	free = Add(mustParse(b, "cpus:32;mem:262144;disk:1000000"), Resources{RangesResource("ports", ports, "")})
	task = mustParse(b, fmt.Sprintf("cpus:0.5;mem:512;ports:[%d-%d]", ports[100].Begin, ports[100].Begin))
	return free, task
}

func BenchmarkAdd(b *testing.B) {
	offer, task := agentSized(b)
	b.ReportAllocs()
	for b.Loop() {
		Add(offer, task)
	}
}

func BenchmarkSubtract(b *testing.B) {
	offer, task := agentSized(b)
	b.ReportAllocs()
	for b.Loop() {
		Subtract(offer, task)
	}
}

func BenchmarkContains(b *testing.B) {
	offer, task := agentSized(b)
	b.ReportAllocs()
	for b.Loop() {
		if !Contains(offer, task) {
			b.Fatal("not contained")
		}
	}
}

// The allocator's refuse-filter test: is what the agent has now within
// what the framework refused (the same, typically)?
func BenchmarkContainsEqualLists(b *testing.B) {
	offer, _ := agentSized(b)
	refused := clone(offer)
	b.ReportAllocs()
	for b.Loop() {
		if !Contains(refused, offer) {
			b.Fatal("not contained")
		}
	}
}

func BenchmarkSubtractChecked(b *testing.B) {
	offer, task := agentSized(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := SubtractChecked(offer, task); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSubtractFragmentedPorts(b *testing.B) {
	free, task := fragmented(b)
	b.ReportAllocs()
	for b.Loop() {
		Subtract(free, task)
	}
}

func BenchmarkAddFragmentedPorts(b *testing.B) {
	free, task := fragmented(b)
	free = Subtract(free, task)
	b.ReportAllocs()
	for b.Loop() {
		Add(free, task)
	}
}

func BenchmarkWithAllocationRole(b *testing.B) {
	offer, _ := agentSized(b)
	plain := WithAllocationRole(offer, "")
	b.ReportAllocs()
	for b.Loop() {
		WithAllocationRole(plain, "k8s")
	}
}

// One pod from an offer: its cpus and mem, then two host ports.
func BenchmarkAllocatePod(b *testing.B) {
	offer, _ := agentSized(b)
	want := mustParse(b, "cpus(k8s):0.5;mem:512")
	b.ReportAllocs()
	for b.Loop() {
		_, rest, err := Allocate(offer, want)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, _, err := AllocatePorts(rest, []uint64{31080}, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// A scheduler packing an agent-sized offer: 60 pods, each from what the
// previous ones left. Reported per pod.
func BenchmarkPackOffer(b *testing.B) {
	offer, _ := agentSized(b)
	want := mustParse(b, "cpus:0.5;mem:2048")
	const pods = 60
	b.ReportAllocs()
	for b.Loop() {
		rest := offer
		for range pods {
			var err error
			if _, rest, err = Allocate(rest, want); err != nil {
				b.Fatal(err)
			}
			if _, _, rest, err = AllocatePorts(rest, nil, 2); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pods), "ns/pod")
}

// One allocation cycle of a master over 5,000 agents: what each may give
// the role, the refuse filter, and the offer taken out of what is free.
func BenchmarkAllocationCycle5000Agents(b *testing.B) {
	offer, _ := agentSized(b)
	base := WithAllocationRole(offer, "")
	agents := make([]Resources, 5000)
	refused := make([]Resources, len(agents))
	for i := range agents {
		agents[i] = Add(base, mustParse(b, fmt.Sprintf("cpus(other):%d", i%7)))
		if i%2 == 0 {
			refused[i] = AllocatableTo(agents[i], "k8s")
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		for i, free := range agents {
			avail := AllocatableTo(free, "k8s")
			if refused[i] != nil && Contains(refused[i], avail) {
				continue
			}
			o := WithAllocationRole(avail, "k8s")
			_ = Subtract(free, WithAllocationRole(o, ""))
		}
	}
}

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse("cpus:32;mem:262144;disk:1000000;ports:[31000-32000];cpus(k8s):8;gpus:{a,b}", "*"); err != nil {
			b.Fatal(err)
		}
	}
}
