package resources

import (
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

func TestAddSubtract(t *testing.T) {
	for _, tc := range []struct{ a, b, sum, diff string }{
		{"cpus:4;mem:4096;ports:[31000-32000]", "cpus:0.1;mem:32;ports:[31000-31000,31500-31600]",
			"cpus(*):4.1; mem(*):4128; ports(*):[31000-32000]",
			"cpus(*):3.9; mem(*):4064; ports(*):[31001-31499, 31601-32000]"},
		// Roles keep resources apart.
		{"cpus:1;cpus(k8s):2", "cpus(k8s):0.5;cpus(web):1",
			"cpus(*):1; cpus(k8s):2.5; cpus(web):1",
			"cpus(*):1; cpus(k8s):1.5"},
		// What b has beyond a is dropped (Mesos' operator-=).
		{"cpus:1;ports:[1-5]", "cpus:2;ports:[4-9];mem:3",
			"cpus(*):3; ports(*):[1-9]; mem(*):3",
			"ports(*):[1-3]"},
		{"gpus:{a,b,c}", "gpus:{b,d}", "gpus(*):{a, b, c, d}", "gpus(*):{a, c}"},
		{"", "cpus:1", "cpus(*):1", ""},
		{"cpus:1", "", "cpus(*):1", "cpus(*):1"},
		// Fixed point: no drift.
		{"cpus:0.3", "cpus:0.1", "cpus(*):0.4", "cpus(*):0.2"},
	} {
		a, b := mustParse(t, tc.a), mustParse(t, tc.b)
		if got := String(Add(a, b)); got != tc.sum {
			t.Errorf("%s + %s = %s, want %s", tc.a, tc.b, got, tc.sum)
		}
		if got := String(Subtract(a, b)); got != tc.diff {
			t.Errorf("%s - %s = %s, want %s", tc.a, tc.b, got, tc.diff)
		}
	}

	// 0.1 added ten times is exactly 1, and taken away again exactly 0.
	var sum Resources
	tenth := mustParse(t, "cpus:0.1")
	for i := 0; i < 10; i++ {
		sum = Add(sum, tenth)
	}
	if Cpus(sum) != 1 || sum[0].GetScalar().GetValue() != 1 {
		t.Fatalf("fixed point: %v", Cpus(sum))
	}
	for i := 0; i < 10; i++ {
		sum = Subtract(sum, tenth)
	}
	if len(sum) != 0 {
		t.Fatalf("left after subtracting: %s", String(sum))
	}
}

// Arguments are never modified, and unchanged messages are shared.
func TestNoMutation(t *testing.T) {
	a := mustParse(t, "cpus:4;mem:4096;ports:[31000-32000];gpus:{a,b}")
	b := mustParse(t, "cpus:1;ports:[31000-31000];gpus:{a}")
	ac, bc := clone(a), clone(b)
	sum, diff := Add(a, b), Subtract(a, b)
	Flatten(a, "x")
	WithAllocationRole(a, "x")
	Normalize(a)
	Allocate(a, b)
	AllocatePorts(a, []uint64{31001}, 3)
	for i := range a {
		if !proto.Equal(a[i], ac[i]) {
			t.Fatalf("a changed: %v", a[i])
		}
	}
	for i := range b {
		if !proto.Equal(b[i], bc[i]) {
			t.Fatalf("b changed: %v", b[i])
		}
	}
	if diff[1] != a[1] { // mem, untouched
		t.Errorf("unchanged resource copied")
	}
	if &sum[0] == &a[0] {
		t.Errorf("result slice is the argument")
	}
}

func clone(rs Resources) Resources {
	out := make(Resources, len(rs))
	for i, r := range rs {
		out[i] = proto.Clone(r).(*mesospb.Resource)
	}
	return out
}

func TestSubtractChecked(t *testing.T) {
	a := WithAllocationRole(mustParse(t, "cpus:4;mem:4096;ports:[31000-32000]"), "*")
	rest, err := SubtractChecked(a, WithAllocationRole(mustParse(t, "cpus:1;ports:[31000-31009]"), "*"))
	if err != nil || String(rest) != "cpus(*):3; mem(*):4096; ports(*):[31010-32000]" {
		t.Fatalf("%s %v", String(rest), err)
	}
	for _, tc := range []struct {
		b    Resources
		want string
	}{
		{WithAllocationRole(mustParse(t, "cpus:3;cpus:2"), "*"),
			"cpus(allocated: *):5 wanted, but only cpus(allocated: *):4 is there"},
		{WithAllocationRole(mustParse(t, "ports:[80-80]"), "*"),
			"ports(allocated: *):[80-80] wanted, but only ports(allocated: *):[31000-32000] is there"},
		{mustParse(t, "cpus:1"), // no allocation info: another resource
			"cpus:1 wanted, but there is no cpus of that kind"},
		{WithAllocationRole(mustParse(t, "gpus:{a}"), "*"),
			"gpus(allocated: *):{a} wanted, but there is no gpus of that kind"},
	} {
		got, err := SubtractChecked(a, tc.b)
		if err == nil || err.Error() != tc.want {
			t.Errorf("SubtractChecked(%s):\n got %v\nwant %s", Describe(tc.b), err, tc.want)
		}
		if !Equal(got, a) {
			t.Errorf("a changed on error")
		}
	}
}

func TestContainsEqual(t *testing.T) {
	a := mustParse(t, "cpus:4;mem:4096;ports:[31000-32000];gpus:{a,b}")
	for _, tc := range []struct {
		b    string
		want bool
	}{
		{"", true},
		{"cpus:4", true},
		{"cpus:4.001", false},
		{"cpus:2;cpus:2", true},
		{"cpus:2;cpus:2.001", false},
		{"cpus(k8s):1", false},
		{"ports:[31000-31000,32000-32000]", true},
		{"ports:[30999-31000]", false},
		{"gpus:{b}", true},
		{"gpus:{c}", false},
		{"disk:1", false},
		{"cpus:0", true}, // empty
	} {
		if got := Contains(a, mustParse(t, tc.b)); got != tc.want {
			t.Errorf("Contains(a, %s) = %v", tc.b, got)
		}
	}
	// Unnormalized lists total up: two entries of one kind on either side.
	two := Resources{ScalarResource("cpus", 1, ""), ScalarResource("cpus", 1, "")}
	if !Contains(two, mustParse(t, "cpus:2")) || Contains(two, mustParse(t, "cpus:2.5")) || !Equal(two, mustParse(t, "cpus:2")) {
		t.Errorf("unnormalized totals")
	}
	split := Resources{RangesResource("ports", []Range{{1, 5}}, ""), RangesResource("ports", []Range{{6, 9}}, "")}
	if !Contains(split, mustParse(t, "ports:[3-8]")) || !Contains(mustParse(t, "ports:[1-9]"), split) {
		t.Errorf("ranges split over two entries")
	}
	// Allocation roles keep resources apart.
	if Contains(WithAllocationRole(a, "x"), a) || Contains(a, WithAllocationRole(a, "x")) || !Equal(WithAllocationRole(a, "x"), WithAllocationRole(a, "x")) {
		t.Fatal("allocated resources are not unallocated ones")
	}
	if Equal(a, mustParse(t, "cpus:4")) || !Equal(a, Add(nil, a)) || !Equal(nil, Resources{}) {
		t.Fatal("Equal")
	}
}

// Values off Mesos' grid, unsorted ranges and sets, duplicates and
// invalid entries, as they may come off the wire.
func TestUnnormalizedInput(t *testing.T) {
	wire := Resources{
		ScalarResource("cpus", 1, ""),
		{Name: proto.String("cpus"), Type: mesospb.Value_SCALAR.Enum(), Scalar: &mesospb.Value_Scalar{Value: proto.Float64(0.10000000001)}},
		{Name: proto.String("ports"), Type: mesospb.Value_RANGES.Enum(), Ranges: &mesospb.Value_Ranges{Range: []*mesospb.Value_Range{
			{Begin: proto.Uint64(10), End: proto.Uint64(20)}, {Begin: proto.Uint64(1), End: proto.Uint64(5)},
			{Begin: proto.Uint64(6), End: proto.Uint64(9)}, {Begin: proto.Uint64(30), End: proto.Uint64(25)}}}},
		{Name: proto.String("gpus"), Type: mesospb.Value_SET.Enum(), Set: &mesospb.Value_Set{Item: []string{"b", "a", "b"}}},
		{Name: proto.String("mem"), Type: mesospb.Value_SCALAR.Enum(), Scalar: &mesospb.Value_Scalar{Value: proto.Float64(-5)}}, // invalid
		{Name: proto.String("bad"), Type: mesospb.Value_TEXT.Enum()},                                                            // invalid
		{Type: mesospb.Value_SCALAR.Enum(), Scalar: &mesospb.Value_Scalar{Value: proto.Float64(1)}},                             // no name
		nil,
	}
	n := Add(nil, wire)
	if got := String(n); got != "cpus(*):1.1; ports(*):[1-20]; gpus(*):{a, b}" {
		t.Fatalf("normalized: %s", got)
	}
	if !Equal(n, wire) || !Contains(wire, n) || IsEmpty(wire) || !IsEmpty(wire[4:]) {
		t.Fatalf("wire and normalized differ")
	}
	if String(Subtract(wire, mustParse(t, "ports:[1-19]"))) != "cpus(*):1.1; ports(*):[20-20]; gpus(*):{a, b}" {
		t.Fatalf("subtract from wire")
	}
}

func TestAtomicResources(t *testing.T) {
	vol := func(id string, mb float64) *mesospb.Resource {
		r := ScalarResource("disk", mb, "k8s")
		r.Disk = &mesospb.Resource_DiskInfo{Persistence: &mesospb.Resource_DiskInfo_Persistence{Id: proto.String(id)},
			Volume: &mesospb.Volume{ContainerPath: proto.String("data"), Mode: mesospb.Volume_RW.Enum()}}
		return r
	}
	shared := func() *mesospb.Resource {
		r := vol("s", 10)
		r.Shared = &mesospb.Resource_SharedInfo{}
		return r
	}
	mount := func(root string) *mesospb.Resource {
		r := ScalarResource("disk", 100, "")
		r.Disk = &mesospb.Resource_DiskInfo{Source: &mesospb.Resource_DiskInfo_Source{Type: mesospb.Resource_DiskInfo_Source_MOUNT.Enum(),
			Mount: &mesospb.Resource_DiskInfo_Source_Mount{Root: proto.String(root)}}}
		return r
	}
	a := Resources{vol("v1", 10), vol("v2", 10), mount("/mnt/a"), mount("/mnt/a"), shared(), shared()}
	sum := Add(nil, a)
	if len(sum) != 6 {
		t.Fatalf("atomic resources merged: %s", Describe(sum))
	}
	if got := Describe(sum[:1]); got != "disk(reservations: [(STATIC,k8s)])[v1:data]:10" {
		t.Errorf("Describe volume: %s", got)
	}
	if got := Describe(sum[2:3]); got != "disk[MOUNT:/mnt/a]:100" {
		t.Errorf("Describe mount: %s", got)
	}
	if got := Describe(sum[4:5]); got != "disk(reservations: [(STATIC,k8s)])[s:data]<SHARED>:10" {
		t.Errorf("Describe shared: %s", got)
	}
	// A part of a volume is not the volume.
	if Contains(a, Resources{vol("v1", 5)}) || !Contains(a, Resources{vol("v1", 10)}) {
		t.Error("volume contains")
	}
	// Copies are counted.
	if !Contains(a, Resources{shared(), shared()}) || Contains(a, Resources{shared(), shared(), shared()}) {
		t.Error("shared copies")
	}
	rest := Subtract(a, Resources{shared(), mount("/mnt/a"), vol("v1", 5)})
	if len(rest) != 4 || !Contains(rest, Resources{vol("v1", 10), shared(), mount("/mnt/a")}) || Contains(rest, Resources{shared(), shared()}) {
		t.Errorf("subtract atomic: %s", Describe(rest))
	}
}

func TestFlattenFilters(t *testing.T) {
	rs := mustParse(t, "cpus(a):1;cpus(b):2;cpus:0.5;mem(a):10;ports(a):[1-5];ports:[6-9];gpus(eng/web):{x}")
	if got := String(Flatten(rs, "*")); got != "cpus(*):3.5; mem(*):10; ports(*):[1-9]; gpus(*):{x}" {
		t.Errorf("Flatten: %s", got)
	}
	if got := String(Flatten(rs, "k8s")); got != "cpus(k8s):3.5; mem(k8s):10; ports(k8s):[1-9]; gpus(k8s):{x}" {
		t.Errorf("Flatten k8s: %s", got)
	}
	// Allocation stays: what is allocated to a role is not what is not.
	if got := Describe(Flatten(Add(WithAllocationRole(mustParse(t, "cpus(a):1"), "a"), mustParse(t, "cpus(b):2")), "")); got != "cpus(allocated: a):1; cpus:2" {
		t.Errorf("Flatten allocated: %s", got)
	}
	for _, tc := range []struct {
		got  Resources
		want string
	}{
		{Named(rs, "cpus"), "cpus(a):1; cpus(b):2; cpus(*):0.5"},
		{ReservedTo(rs, "a"), "cpus(a):1; mem(a):10; ports(a):[1-5]"},
		{Unreserved(rs), "cpus(*):0.5; ports(*):[6-9]"},
		{AllocatableTo(rs, "b"), "cpus(b):2; cpus(*):0.5; ports(*):[6-9]"},
		{AllocatableTo(rs, "eng/web/api"), "cpus(*):0.5; ports(*):[6-9]; gpus(eng/web):{x}"},
		{AllocatableTo(rs, "eng/webx"), "cpus(*):0.5; ports(*):[6-9]"},
		{Filter(rs, func(r *mesospb.Resource) bool { return r.GetType() == mesospb.Value_RANGES }), "ports(a):[1-5]; ports(*):[6-9]"},
		{ReservedByRole(rs)["eng/web"], "gpus(eng/web):{x}"},
	} {
		if s := String(tc.got); s != tc.want {
			t.Errorf("got %s, want %s", s, tc.want)
		}
	}
	if Cpus(rs) != 3.5 || Mem(rs) != 10 || Disk(rs) != 0 || Scalar(rs, "gpus") != 0 || RangesString(Ports(rs)) != "[1-9]" {
		t.Errorf("getters: %v %v %v %v", Cpus(rs), Mem(rs), Disk(rs), Ports(rs))
	}
}

func TestAllocationInfo(t *testing.T) {
	rs := mustParse(t, "cpus:1;mem:2")
	alloc := WithAllocationRole(rs, "web")
	if AllocationRole(alloc) != "web" || AllocationRole(rs) != "" || alloc[0].GetAllocationInfo().GetRole() != "web" {
		t.Fatal("allocation role")
	}
	if again := WithAllocationRole(alloc, "web"); again[0] != alloc[0] {
		t.Error("unchanged resources copied")
	}
	if back := WithAllocationRole(alloc, ""); !Equal(back, rs) || back[0].AllocationInfo != nil {
		t.Error("clearing the allocation role")
	}
	if got := Describe(alloc); got != "cpus(allocated: web):1; mem(allocated: web):2" {
		t.Errorf("Describe: %s", got)
	}
	// Normalize names the role of unreserved resources.
	bare := []*mesospb.Resource{{Name: proto.String("cpus"), Type: mesospb.Value_SCALAR.Enum(), Scalar: &mesospb.Value_Scalar{Value: proto.Float64(1)}}}
	if n := Normalize(bare); n[0].Role == nil || n[0].GetRole() != "*" || bare[0].Role != nil {
		t.Error("Normalize")
	}
}

func TestDescribe(t *testing.T) {
	dyn := ScalarResource("cpus", 1, "k8s")
	dyn.Reservation = &mesospb.Resource_ReservationInfo{Principal: proto.String("ops"),
		Labels: &mesospb.Labels{Labels: []*mesospb.Label{{Key: proto.String("k"), Value: proto.String("v")}, {Key: proto.String("x")}}}}
	refined := ScalarResource("mem", 2, "")
	refined.Role = nil
	refined.Reservations = []*mesospb.Resource_ReservationInfo{
		{Type: mesospb.Resource_ReservationInfo_STATIC.Enum(), Role: proto.String("eng")},
		{Type: mesospb.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String("eng/web"), Principal: proto.String("p")}}
	rev := WithAllocationRole(Resources{ScalarResource("cpus", 0.5, "")}, "*")[0]
	rev.Revocable = &mesospb.Resource_RevocableInfo{}
	if got := Describe(Resources{dyn, refined, rev}); got != "cpus(reservations: [(DYNAMIC,k8s,ops,{k: v, x})]):1; "+
		"mem(reservations: [(STATIC,eng),(DYNAMIC,eng/web,p)]):2; cpus(allocated: *){REV}:0.5" {
		t.Errorf("Describe: %s", got)
	}
	if Describe(nil) != "{}" || String(nil) != "" {
		t.Error("empty")
	}
	if got := String(Resources{dyn, refined}); got != "cpus(k8s):1; mem(eng/web):2" {
		t.Errorf("String: %s", got)
	}
	// A dynamic reservation is not the static one of the same role.
	if Contains(Resources{dyn}, mustParse(t, "cpus(k8s):1")) {
		t.Error("dynamic and static reservations merged")
	}
	sum := Summarize(mustParse(t, "cpus:1;cpus(a):0.5;ports:[1-2];ports(a):[3-4];gpus:{a};gpus(x):{b}"))
	if !reflect.DeepEqual(sum, map[string]any{"cpus": 1.5, "ports": "[1-4]", "gpus": "{a, b}"}) {
		t.Errorf("Summarize: %v", sum)
	}
}

func TestRanges(t *testing.T) {
	rs := []Range{{10, 20}, {1, 3}, {4, 5}, {30, 29}, {15, 25}}
	if got := RangesString(Coalesce(rs)); got != "[1-5, 10-25]" {
		t.Errorf("Coalesce: %s", got)
	}
	if got := RangesString(Minus([]Range{{1, 10}, {20, 30}}, []Range{{0, 1}, {5, 6}, {10, 22}, {30, 30}})); got != "[2-4, 7-9, 23-29]" {
		t.Errorf("Minus: %s", got)
	}
	if got := RangesString(Intersect([]Range{{1, 10}, {20, 30}}, []Range{{5, 25}})); got != "[5-10, 20-25]" {
		t.Errorf("Intersect: %s", got)
	}
	if got := RangesString(Union([]Range{{1, 2}}, []Range{{3, 3}, {7, 8}})); got != "[1-3, 7-8]" {
		t.Errorf("Union: %s", got)
	}
	const top = ^uint64(0)
	if got := RangesString(Minus([]Range{{0, top}}, []Range{{0, 0}, {top, top}})); got != "[1-18446744073709551614]" {
		t.Errorf("Minus at the ends: %s", got)
	}
	if got := Coalesce([]Range{{top, top}, {0, top}}); len(got) != 1 || got[0] != (Range{0, top}) {
		t.Errorf("Coalesce at the top: %v", got)
	}
	if Count([]Range{{1, 5}, {3, 7}}) != 7 || !InRanges(12, rs) || InRanges(8, rs) {
		t.Error("Count/InRanges")
	}
	if Count([]Range{{0, top}}) != top || Count([]Range{{0, top - 1}}) != top || Count([]Range{{1, top}, {0, 0}}) != top || Count([]Range{{5, 4}}) != 0 {
		t.Error("Count near the top")
	}
	if len(FromRanges(ToRanges(nil))) != 0 || len(Coalesce(nil)) != 0 {
		t.Error("empty")
	}
}

// copyMeta must copy every field of Resource but the value: a schema
// regenerated with a new field fails here until copyMeta knows it.
func TestCopyMetaKnowsEveryField(t *testing.T) {
	known := map[string]bool{"ProviderId": true, "Name": true, "Type": true, "Role": true, "AllocationInfo": true,
		"Reservation": true, "Reservations": true, "Disk": true, "Revocable": true, "Shared": true,
		"Scalar": true, "Ranges": true, "Set": true}
	typ := reflect.TypeOf(mesospb.Resource{})
	for i := 0; i < typ.NumField(); i++ {
		if f := typ.Field(i); f.IsExported() && !known[f.Name] {
			t.Errorf("copyMeta does not know Resource.%s", f.Name)
		}
	}
	full := &mesospb.Resource{ProviderId: &mesospb.ResourceProviderID{Value: proto.String("p")}, Name: proto.String("disk"),
		Type: mesospb.Value_SCALAR.Enum(), Role: proto.String("r"), AllocationInfo: &mesospb.Resource_AllocationInfo{Role: proto.String("r")},
		Reservation: &mesospb.Resource_ReservationInfo{Principal: proto.String("x")}, Disk: &mesospb.Resource_DiskInfo{},
		Revocable: &mesospb.Resource_RevocableInfo{}, Shared: &mesospb.Resource_SharedInfo{}}
	var c mesospb.Resource
	copyMeta(&c, full)
	c.Scalar = full.Scalar
	if !proto.Equal(&c, full) {
		t.Errorf("copyMeta lost something: %v", &c)
	}
	if !strings.Contains(Describe(Resources{full}), "disk(allocated: r)(reservations: [(DYNAMIC,r,x)])[]{REV}<SHARED>:0") {
		t.Errorf("Describe: %s", Describe(Resources{full}))
	}
}
