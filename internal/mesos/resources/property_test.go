package resources

import (
	"flag"
	"fmt"
	"maps"
	"math"
	"math/rand"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// Property tests against a model written without the package's code:
// resources as maps from an identity string to a number of thousandths,
// a set of ports or a set of items, with atomic resources counted.

// For a longer run: go test -run Propert -args -iterations=200000 -seed=$RANDOM
var (
	iterations = flag.Int("iterations", 4000, "cases per property test")
	seed       = flag.Int64("seed", 0, "added to the property tests' fixed seeds")
)

func newGen(n int64) gen { return gen{rand.New(rand.NewSource(n + *seed))} }

type model struct {
	scalars map[string]int64
	ranges  map[string]map[uint64]bool
	sets    map[string]map[string]bool
	atoms   map[string]int // identity and value
}

func newModel() *model {
	return &model{map[string]int64{}, map[string]map[uint64]bool{}, map[string]map[string]bool{}, map[string]int{}}
}

// modelKey is what makes two resources the same one, from the proto
// fields and Mesos' documentation, independently of sameKind.
func modelKey(r *mesospb.Resource) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%v", r.GetName(), r.GetType())
	switch {
	case len(r.GetReservations()) > 0:
		for _, x := range r.GetReservations() {
			fmt.Fprintf(&b, "|%v,%s,%s", x.GetType(), x.GetRole(), x.GetPrincipal())
		}
	case r.GetRole() != "*" && r.GetRole() != "" && r.Reservation != nil:
		fmt.Fprintf(&b, "|DYNAMIC,%s,%s", r.GetRole(), r.GetReservation().GetPrincipal())
	case r.GetRole() != "*" && r.GetRole() != "":
		fmt.Fprintf(&b, "|STATIC,%s,", r.GetRole())
	}
	if r.AllocationInfo != nil {
		fmt.Fprintf(&b, "|alloc=%s", r.GetAllocationInfo().GetRole())
	}
	if r.Disk != nil {
		d, _ := proto.MarshalOptions{Deterministic: true}.Marshal(r.Disk)
		fmt.Fprintf(&b, "|disk=%x", d)
	}
	if r.Revocable != nil {
		b.WriteString("|rev")
	}
	if r.Shared != nil {
		b.WriteString("|shared")
	}
	return b.String()
}

func modelValid(r *mesospb.Resource) bool {
	if r == nil || r.GetName() == "" {
		return false
	}
	switch r.GetType() {
	case mesospb.Value_SCALAR:
		v := r.GetScalar().GetValue()
		return !math.IsNaN(v) && math.Round(v*1000) >= 0 && v <= 4e15
	case mesospb.Value_RANGES, mesospb.Value_SET:
		return true
	}
	return false
}

func modelAtomic(r *mesospb.Resource) bool {
	return r.Shared != nil || r.GetDisk().GetPersistence() != nil
}

func modelOf(rs Resources) *model {
	m := newModel()
	for _, r := range rs {
		m.add(r)
	}
	return m
}

func (m *model) add(r *mesospb.Resource) {
	if !modelValid(r) {
		return
	}
	k := modelKey(r)
	if modelAtomic(r) {
		if v := valueKey(r); v != "" {
			m.atoms[k+"="+v]++
		}
		return
	}
	switch r.GetType() {
	case mesospb.Value_SCALAR:
		if n := int64(math.Round(r.GetScalar().GetValue() * 1000)); n > 0 {
			m.scalars[k] += n
		}
	case mesospb.Value_RANGES:
		for _, x := range r.GetRanges().GetRange() {
			for p := x.GetBegin(); p <= x.GetEnd(); p++ {
				if m.ranges[k] == nil {
					m.ranges[k] = map[uint64]bool{}
				}
				m.ranges[k][p] = true
			}
		}
	case mesospb.Value_SET:
		for _, x := range r.GetSet().GetItem() {
			if m.sets[k] == nil {
				m.sets[k] = map[string]bool{}
			}
			m.sets[k][x] = true
		}
	}
}

// valueKey is an atomic resource's value ("" when empty).
func valueKey(r *mesospb.Resource) string {
	sub := modelOf(Resources{{Name: r.Name, Type: r.Type, Scalar: r.Scalar, Ranges: r.Ranges, Set: r.Set}})
	if sub.empty() {
		return ""
	}
	return sub.String()
}

func (m *model) sub(o *model) *model {
	out := newModel()
	for k, v := range m.scalars {
		if v -= o.scalars[k]; v > 0 {
			out.scalars[k] = v
		}
	}
	for k, s := range m.ranges {
		for p := range s {
			if !o.ranges[k][p] {
				if out.ranges[k] == nil {
					out.ranges[k] = map[uint64]bool{}
				}
				out.ranges[k][p] = true
			}
		}
	}
	for k, s := range m.sets {
		for x := range s {
			if !o.sets[k][x] {
				if out.sets[k] == nil {
					out.sets[k] = map[string]bool{}
				}
				out.sets[k][x] = true
			}
		}
	}
	for k, n := range m.atoms {
		if n -= o.atoms[k]; n > 0 {
			out.atoms[k] = n
		}
	}
	return out
}

func (m *model) contains(o *model) bool {
	for k, v := range o.scalars {
		if m.scalars[k] < v {
			return false
		}
	}
	for k, s := range o.ranges {
		for p := range s {
			if !m.ranges[k][p] {
				return false
			}
		}
	}
	for k, s := range o.sets {
		for x := range s {
			if !m.sets[k][x] {
				return false
			}
		}
	}
	for k, n := range o.atoms {
		if m.atoms[k] < n {
			return false
		}
	}
	return true
}

func (m *model) empty() bool { return m.String() == "" }

func (m *model) String() string {
	var parts []string
	for k, v := range m.scalars {
		parts = append(parts, fmt.Sprintf("%s:%d", k, v))
	}
	for k, s := range m.ranges {
		parts = append(parts, fmt.Sprintf("%s:%v", k, slices.Sorted(maps.Keys(s))))
	}
	for k, s := range m.sets {
		parts = append(parts, fmt.Sprintf("%s:%v", k, slices.Sorted(maps.Keys(s))))
	}
	for k, n := range m.atoms {
		parts = append(parts, fmt.Sprintf("%s×%d", k, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

// checkNormal checks the form results are promised in.
func checkNormal(t *testing.T, what string, rs Resources) {
	t.Helper()
	for i, r := range rs {
		if IsEmptyResource(r) {
			t.Fatalf("%s: empty entry %v", what, r)
		}
		switch r.GetType() {
		case mesospb.Value_SCALAR:
			if v := r.GetScalar().GetValue(); v != float64(int64(math.Round(v*1000)))/1000 {
				t.Fatalf("%s: %v off Mesos' grid", what, v)
			}
		case mesospb.Value_RANGES:
			rr := r.GetRanges().GetRange()
			for j := range rr {
				if rr[j].GetBegin() > rr[j].GetEnd() || j > 0 && rr[j].GetBegin() <= rr[j-1].GetEnd()+1 {
					t.Fatalf("%s: ranges not coalesced: %v", what, r)
				}
			}
		case mesospb.Value_SET:
			if items := r.GetSet().GetItem(); !slices.IsSorted(items) || len(slices.Compact(slices.Clone(items))) != len(items) {
				t.Fatalf("%s: set not sorted: %v", what, items)
			}
		}
		for _, p := range rs[:i] {
			if !modelAtomic(r) && modelKey(p) == modelKey(r) {
				t.Fatalf("%s: %s twice", what, modelKey(r))
			}
		}
	}
}

// gen makes random resources of the kinds an agent, an offer or a task
// carries, in all the forms the wire allows.
type gen struct{ *rand.Rand }

func (g gen) pick(xs ...string) string { return xs[g.Intn(len(xs))] }

func (g gen) resource() *mesospb.Resource {
	var r *mesospb.Resource
	switch name := g.pick("cpus", "mem", "disk", "ports", "ports", "gpus"); name {
	case "ports":
		var rs []*mesospb.Value_Range
		for i := g.Intn(4); i >= 0; i-- {
			b := uint64(1 + g.Intn(60))
			rs = append(rs, &mesospb.Value_Range{Begin: proto.Uint64(b), End: proto.Uint64(b + uint64(g.Intn(12)) - 1)}) // some inverted
		}
		r = &mesospb.Resource{Name: proto.String(name), Type: mesospb.Value_RANGES.Enum(), Ranges: &mesospb.Value_Ranges{Range: rs}}
	case "gpus":
		var items []string
		for i := g.Intn(4); i > 0; i-- {
			items = append(items, g.pick("a", "b", "c", "d", "e"))
		}
		r = &mesospb.Resource{Name: proto.String(name), Type: mesospb.Value_SET.Enum(), Set: &mesospb.Value_Set{Item: items}}
	default:
		v := float64(g.Intn(5000)) / 1000
		switch g.Intn(10) {
		case 0:
			v += 0.0000001 // off the grid, as floats from elsewhere are
		case 1:
			v = -v // invalid
		case 2:
			v = 0
		}
		r = &mesospb.Resource{Name: proto.String(name), Type: mesospb.Value_SCALAR.Enum(), Scalar: &mesospb.Value_Scalar{Value: proto.Float64(v)}}
	}
	switch g.Intn(8) {
	case 0, 1, 2: // unreserved, role "*" or no role
		if g.Intn(2) == 0 {
			r.Role = proto.String("*")
		}
	case 3:
		r.Role = proto.String("k8s")
	case 4: // the same static reservation, post-refinement
		r.Reservations = []*mesospb.Resource_ReservationInfo{{Type: mesospb.Resource_ReservationInfo_STATIC.Enum(), Role: proto.String("k8s")}}
	case 5: // dynamic, pre-refinement
		r.Role = proto.String("k8s")
		r.Reservation = &mesospb.Resource_ReservationInfo{Principal: proto.String("ops")}
	case 6: // the same, post-refinement
		r.Reservations = []*mesospb.Resource_ReservationInfo{{Type: mesospb.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String("k8s"), Principal: proto.String("ops")}}
	case 7:
		r.Role = proto.String("eng/web")
	}
	if g.Intn(4) == 0 {
		r.AllocationInfo = &mesospb.Resource_AllocationInfo{Role: proto.String(g.pick("k8s", "*"))}
	}
	if r.GetType() == mesospb.Value_SCALAR && g.Intn(10) == 0 {
		r.Revocable = &mesospb.Resource_RevocableInfo{}
	}
	if r.GetName() == "disk" && g.Intn(5) == 0 { // a persistent volume, sometimes shared
		r.Disk = &mesospb.Resource_DiskInfo{Persistence: &mesospb.Resource_DiskInfo_Persistence{Id: proto.String(g.pick("v1", "v2"))}}
		if g.Intn(2) == 0 {
			r.Shared = &mesospb.Resource_SharedInfo{}
		}
	}
	return r
}

func (g gen) resources() Resources {
	var out Resources
	for i := g.Intn(9); i > 0; i-- {
		if g.Intn(40) == 0 {
			out = append(out, nil)
			continue
		}
		out = append(out, g.resource())
	}
	return out
}

func TestPropertiesAgainstModel(t *testing.T) {
	g := newGen(1)
	for i := 0; i < *iterations; i++ {
		a, b := g.resources(), g.resources()
		if i%3 == 0 { // make containment likely
			b = Subtract(a, g.resources())
		}
		ac, bc := clone(a), clone(b)
		ma, mb := modelOf(a), modelOf(b)

		sum, diff := Add(a, b), Subtract(a, b)
		checkNormal(t, "Add", sum)
		checkNormal(t, "Subtract", diff)
		if got, want := modelOf(sum).String(), modelOf(append(slices.Clone(a), b...)).String(); got != want {
			t.Fatalf("a+b:\n a=%s\n b=%s\n got  %s\n want %s", Describe(a), Describe(b), got, want)
		}
		if got, want := modelOf(diff).String(), ma.sub(mb).String(); got != want {
			t.Fatalf("a-b:\n a=%s\n b=%s\n got  %s\n want %s", Describe(a), Describe(b), got, want)
		}
		contained := Contains(a, b)
		if contained != ma.contains(mb) {
			t.Fatalf("Contains(a, b) = %v:\n a=%s\n b=%s", contained, Describe(a), Describe(b))
		}
		if eq := Equal(a, b); eq != (ma.String() == mb.String()) {
			t.Fatalf("Equal(a, b) = %v:\n a=%s\n b=%s", eq, Describe(a), Describe(b))
		}
		checkProperties(t, a, b, sum, diff, contained)
		for j := range a {
			if a[j] != nil && !proto.Equal(a[j], ac[j]) || b != nil && j < len(b) && b[j] != nil && !proto.Equal(b[j], bc[j]) {
				t.Fatalf("arguments modified")
			}
		}
	}
}

// checkProperties: the algebra the allocator relies on.
func checkProperties(t *testing.T, a, b, sum, diff Resources, contained bool) {
	t.Helper()
	if !Contains(sum, a) || !Contains(sum, b) {
		t.Fatalf("a+b does not contain a and b:\n a=%s\n b=%s", Describe(a), Describe(b))
	}
	if !Equal(sum, Add(b, a)) || !Equal(sum, Add(Add(nil, a), b)) {
		t.Fatalf("a+b is not b+a")
	}
	if !Contains(a, diff) {
		t.Fatalf("a-b is not in a")
	}
	// Subtract after add is identity when a and b share no port or item
	// (ranges and sets are sets: a port added twice is there once).
	if disjoint := Subtract(b, a); !Equal(Subtract(Add(a, disjoint), disjoint), a) && sharesNoValue(a, disjoint) {
		t.Fatalf("(a+b)-b != a:\n a=%s\n b=%s", Describe(a), Describe(disjoint))
	}
	// Contains is what SubtractChecked checks, and then nothing is lost.
	rest, err := SubtractChecked(a, b)
	if (err == nil) != contained {
		t.Fatalf("Contains = %v but SubtractChecked: %v", contained, err)
	}
	if contained && !Equal(Add(rest, b), a) {
		t.Fatalf("b ⊆ a but (a-b)+b != a:\n a=%s\n b=%s", Describe(a), Describe(b))
	}
	if !contained && !Equal(rest, a) {
		t.Fatalf("SubtractChecked failed but changed a")
	}
}

// sharesNoValue: no ports or set items of one kind in both (scalars and
// atomic resources always add and subtract back exactly).
func sharesNoValue(a, b Resources) bool {
	ma, mb := modelOf(a), modelOf(b)
	for k, s := range mb.ranges {
		for p := range s {
			if ma.ranges[k][p] {
				return false
			}
		}
	}
	for k, s := range mb.sets {
		for x := range s {
			if ma.sets[k][x] {
				return false
			}
		}
	}
	return true
}

// The identity the brief asks for, directly: with ranges and sets made
// disjoint, (a+b)-b is a, for any a and b.
func TestSubtractAfterAddIsIdentity(t *testing.T) {
	g := newGen(2)
	for i := 0; i < *iterations; i++ {
		a := g.resources()
		b := Subtract(g.resources(), Add(a, a)) // drops what a has of ports and items...
		if !sharesNoValue(a, b) {               // ...of the same kind only
			continue
		}
		if got := Subtract(Add(a, b), b); !Equal(got, a) {
			t.Fatalf("(a+b)-b != a:\n a=%s\n b=%s\n got %s", Describe(a), Describe(b), Describe(got))
		}
	}
}

// quantities strips what Allocate may choose freely (reservation and
// allocation) so that what was wanted and what was taken compare.
func quantities(rs Resources) *model { return modelOf(Flatten(WithAllocationRole(rs, ""), "*")) }

func TestAllocateProperties(t *testing.T) {
	g := newGen(3)
	for i := 0; i < *iterations; i++ {
		offer := g.resources()
		var want Resources
		for _, r := range g.resources() {
			if r != nil && r.Disk == nil && r.Revocable == nil {
				want = append(want, r)
			}
		}
		offerC := clone(offer)
		taken, rest, err := Allocate(offer, want)
		if err != nil {
			// Then the offer really lacks it: its non-revocable, non-volume
			// quantities do not cover the wanted ones.
			var plain Resources
			for _, r := range offer {
				if r != nil && r.Disk == nil && r.Revocable == nil {
					plain = append(plain, r)
				}
			}
			if quantities(plain).contains(quantities(want)) {
				t.Fatalf("Allocate failed although the offer has it: %v\n offer=%s\n want=%s", err, Describe(offer), Describe(want))
			}
			if !Equal(rest, offer) || taken != nil {
				t.Fatalf("failed Allocate changed the offer")
			}
			continue
		}
		checkNormal(t, "taken", taken)
		checkNormal(t, "rest", rest)
		if !Contains(offer, taken) || !Equal(Add(taken, rest), offer) {
			t.Fatalf("taken + rest != offer:\n offer=%s\n taken=%s\n rest=%s", Describe(offer), Describe(taken), Describe(rest))
		}
		if got, want := quantities(taken).String(), quantities(want).String(); got != want {
			t.Fatalf("took %s, wanted %s", got, want)
		}
		for j := range offer {
			if offer[j] != nil && !proto.Equal(offer[j], offerC[j]) {
				t.Fatalf("offer modified")
			}
		}
	}
}

// Ports allocated one task after the other from what is left: each is in
// the offer, none is given twice, and what the tasks carry is exactly the
// ports they were told.
func TestAllocatePortsProperties(t *testing.T) {
	g := newGen(4)
	for i := 0; i < *iterations/2; i++ {
		offer := distinctPorts(g.resources())
		offered := map[uint64]bool{}
		for _, p := range portList(offer) {
			offered[p] = true
		}
		given := map[uint64]bool{}
		rest := offer
		var all Resources
		for step := 0; step < 20; step++ {
			var fixed []uint64
			if g.Intn(2) == 0 {
				fixed = append(fixed, uint64(g.Intn(70)))
			}
			n := g.Intn(4)
			ports, taken, r, err := AllocatePorts(rest, fixed, n)
			if err != nil {
				if !Equal(r, rest) {
					t.Fatalf("failed AllocatePorts changed the offer")
				}
				free := len(portList(rest))
				if len(fixed) == 1 && (!offered[fixed[0]] || given[fixed[0]]) || free < len(fixed)+n {
					continue // a good reason
				}
				t.Fatalf("AllocatePorts(%v, %d) from %s: %v", fixed, n, Describe(rest), err)
			}
			if len(ports) != len(fixed)+n || !slices.Equal(ports[:len(fixed)], fixed) {
				t.Fatalf("ports %v for %v + %d", ports, fixed, n)
			}
			for _, p := range ports {
				if !offered[p] || given[p] {
					t.Fatalf("port %d: offered %v, given before %v", p, offered[p], given[p])
				}
				given[p] = true
			}
			if got := portList(taken); !slices.Equal(got, slices.Sorted(slices.Values(ports))) {
				t.Fatalf("taken %s for ports %v", Describe(taken), ports)
			}
			rest, all = r, Add(all, taken)
		}
		if !Equal(Add(all, rest), offer) {
			t.Fatalf("taken + rest != offer")
		}
	}
}

func portList(rs Resources) []uint64 {
	var out []uint64
	for _, r := range rs {
		if r != nil && r.GetName() == "ports" && r.Disk == nil && r.Revocable == nil && r.Shared == nil {
			for _, x := range r.GetRanges().GetRange() {
				for p := x.GetBegin(); p <= x.GetEnd() && x.GetBegin() <= x.GetEnd(); p++ {
					out = append(out, p)
				}
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// distinctPorts removes from each entry the ports of the entries before
// it: Mesos never offers a port twice.
func distinctPorts(rs Resources) Resources {
	var seen []Range
	out := make(Resources, 0, len(rs))
	for _, r := range rs {
		if r != nil && r.GetName() == "ports" {
			c := proto.Clone(r).(*mesospb.Resource)
			c.Ranges = ToRanges(Minus(FromRanges(r.GetRanges()), seen))
			seen = Union(seen, FromRanges(r.GetRanges()))
			r = c
		}
		out = append(out, r)
	}
	return out
}
