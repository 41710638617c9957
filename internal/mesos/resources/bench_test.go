package resources

import "testing"

// agentSized is what one agent offers in a real cluster: unreserved and
// reserved scalars, a fragmented port range, allocated to a role (the
// offers of MULTI_ROLE frameworks carry allocation_info).
func agentSized(b *testing.B) (offer, task Resources) {
	offer = WithAllocationRole(mustParse(b, "cpus:32;mem:262144;disk:1000000;ports:[31000-31999,32001-32500,33000-34000];cpus(k8s):8;mem(k8s):65536;gpus:{g0,g1,g2,g3}"), "k8s")
	task = WithAllocationRole(mustParse(b, "cpus(k8s):0.25;mem:512;cpus:0.5;ports:[31005-31005,32100-32101]"), "k8s")
	return offer, task
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
