package resources

import (
	"errors"
	"slices"
	"testing"
)

func TestAllocate(t *testing.T) {
	offer := WithAllocationRole(mustParse(t, "cpus(k8s):2;cpus:4;mem:1024;mem(k8s):512;gpus:{g0,g1,g2};ports:[31000-31010];disk(other):5"), "k8s")
	for _, tc := range []struct {
		want, taken, rest string
	}{
		// The wanted role's reservation first, then unreserved resources.
		{"cpus(k8s):3;mem(k8s):100",
			"cpus(allocated: k8s)(reservations: [(STATIC,k8s)]):2; cpus(allocated: k8s):1; mem(allocated: k8s)(reservations: [(STATIC,k8s)]):100",
			"cpus(*):3; mem(*):1024; mem(k8s):412; gpus(*):{g0, g1, g2}; ports(*):[31000-31010]; disk(other):5"},
		// Unreserved wanted: unreserved first, then reservations.
		{"cpus:5",
			"cpus(allocated: k8s):4; cpus(allocated: k8s)(reservations: [(STATIC,k8s)]):1",
			"cpus(k8s):1; mem(*):1024; mem(k8s):512; gpus(*):{g0, g1, g2}; ports(*):[31000-31010]; disk(other):5"},
		{"gpus:{g1};ports:[31005-31006];disk:5",
			"gpus(allocated: k8s):{g1}; ports(allocated: k8s):[31005-31006]; disk(allocated: k8s)(reservations: [(STATIC,other)]):5",
			"cpus(k8s):2; cpus(*):4; mem(*):1024; mem(k8s):512; gpus(*):{g0, g2}; ports(*):[31000-31004, 31007-31010]"},
		{"", "{}", "cpus(k8s):2; cpus(*):4; mem(*):1024; mem(k8s):512; gpus(*):{g0, g1, g2}; ports(*):[31000-31010]; disk(other):5"},
	} {
		taken, rest, err := Allocate(offer, mustParse(t, tc.want))
		if err != nil {
			t.Errorf("Allocate(%s): %v", tc.want, err)
			continue
		}
		if got := Describe(taken); got != tc.taken {
			t.Errorf("Allocate(%s) took %s\nwant %s", tc.want, got, tc.taken)
		}
		if got := String(rest); got != tc.rest {
			t.Errorf("Allocate(%s) left %s\nwant %s", tc.want, got, tc.rest)
		}
		if AllocationRole(rest) != "k8s" || !Equal(Add(taken, rest), offer) {
			t.Errorf("Allocate(%s): taken + rest is not the offer", tc.want)
		}
	}
	for _, tc := range []struct{ want, err string }{
		{"cpus:7", "not enough cpus: 7 wanted, 6 offered (cpus(allocated: k8s)(reservations: [(STATIC,k8s)]):2; cpus(allocated: k8s):4)"},
		{"cpus:1;mem:2000", "not enough mem: 2000 wanted, 1536 offered (mem(allocated: k8s):1024; mem(allocated: k8s)(reservations: [(STATIC,k8s)]):512)"},
		{"gpus:{g1,g7}", "gpus {g7} are not in the offered sets (gpus(allocated: k8s):{g0, g1, g2})"},
		{"ports:[80-80,31000-31000]", "ports [80-80] are not in the offered ranges [31000-31010]"},
		{"eth:1", "not enough eth: 1 wanted, 0 offered (none)"},
	} {
		taken, rest, err := Allocate(offer, mustParse(t, tc.want))
		if err == nil || err.Error() != tc.err {
			t.Errorf("Allocate(%s):\n got %v\nwant %s", tc.want, err, tc.err)
		}
		if taken != nil || !Equal(rest, offer) {
			t.Errorf("Allocate(%s) failed but took %s", tc.want, String(taken))
		}
	}
}

// Packing: tasks allocated one after the other from what is left never
// share anything, and together with the rest make up the offer.
func TestAllocatePacking(t *testing.T) {
	offer := WithAllocationRole(mustParse(t, "cpus:4;mem:4096;ports:[31000-31003]"), "*")
	rest := offer
	var all Resources
	var ports []uint64
	for i := 0; ; i++ {
		taken, r, err := Allocate(rest, mustParse(t, "cpus:0.3;mem:100"))
		if err != nil {
			if i != 13 { // 13 × 0.3 = 3.9 ≤ 4
				t.Fatalf("task %d: %v", i, err)
			}
			break
		}
		p, tp, r, err := AllocatePorts(r, nil, 1)
		if err != nil {
			if i < 4 {
				t.Fatalf("task %d: %v", i, err)
			}
			p, tp = nil, nil // out of ports: tasks without one
		}
		rest, ports = r, append(ports, p...)
		all = Add(all, Add(taken, tp))
	}
	if got := String(rest); got != "cpus(*):0.1; mem(*):2796" {
		t.Errorf("left %s", got)
	}
	if !slices.Equal(ports, []uint64{31000, 31001, 31002, 31003}) || !Equal(Add(all, rest), offer) {
		t.Errorf("ports %v; all %s", ports, Describe(all))
	}
}

func TestAllocatePorts(t *testing.T) {
	offer := WithAllocationRole(mustParse(t, "cpus:1;ports:[31000-31002,31005-31005];ports(k8s):[40000-40001]"), "k8s")
	ports, taken, rest, err := AllocatePorts(offer, []uint64{31005, 40001}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ports, []uint64{31005, 40001, 31000, 31001, 31002}) {
		t.Errorf("ports %v", ports)
	}
	if got := Describe(taken); got != "ports(allocated: k8s):[31000-31002, 31005-31005]; ports(allocated: k8s)(reservations: [(STATIC,k8s)]):[40001-40001]" {
		t.Errorf("taken %s", got)
	}
	if got := String(rest); got != "cpus(*):1; ports(k8s):[40000-40000]" {
		t.Errorf("rest %s", got)
	}

	// No ports wanted: nothing taken.
	if p, tk, r, err := AllocatePorts(offer, nil, 0); err != nil || len(p) != 0 || len(tk) != 0 || !Equal(r, offer) {
		t.Errorf("nothing wanted: %v %v %v", p, tk, err)
	}
	// Errors leave the offer as it was.
	for _, tc := range []struct {
		fixed []uint64
		n     int
		want  string
	}{
		{[]uint64{80}, 0, "port 80 is not in the offered ranges [31000-31002, 31005-31005, 40000-40001]"},
		{[]uint64{31001, 31001}, 0, "port 31001 is asked for twice"},
		{[]uint64{31000}, 6, "6 more ports wanted but only 5 are free in the offered ranges [31000-31002, 31005-31005, 40000-40001]"},
		{nil, 7, "7 more ports wanted but only 6 are free in the offered ranges [31000-31002, 31005-31005, 40000-40001]"},
		{nil, 1 << 40, "1099511627776 more ports wanted but only 6 are free in the offered ranges [31000-31002, 31005-31005, 40000-40001]"},
	} {
		p, tk, r, err := AllocatePorts(offer, tc.fixed, tc.n)
		if err == nil || err.Error() != tc.want || p != nil || tk != nil || !Equal(r, offer) {
			t.Errorf("AllocatePorts(%v, %d):\n got %v %v\nwant %s", tc.fixed, tc.n, p, err, tc.want)
		}
	}
	_, _, _, err = AllocatePorts(mustParse(t, "ports:[31000-32000]"), []uint64{80}, 0)
	var pe *PortError
	if !errors.As(err, &pe) || pe.Port != 80 || err.Error() != "port 80 is not in the offered ranges [31000-32000]" {
		t.Errorf("got %v", err)
	}
	if _, _, _, err := AllocatePorts(mustParse(t, "cpus:1"), nil, 1); err == nil || err.Error() != "1 more ports wanted but only 0 are free in the offered ranges []" {
		t.Errorf("no ports: %v", err)
	}
}
