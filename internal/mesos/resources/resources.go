// Package resources is Mesos resource and attribute math: parsing the
// agent flag syntax ("cpus:4;mem:4096;ports:[31000-32000]", "cpus(k8s):2",
// "rack:r1;zone:a"), and adding, subtracting, comparing and allocating
// scalars, ranges and sets with roles and reservations, as Mesos'
// Resources class does.
//
// A master's allocator runs these operations for every agent every second
// and a scheduler for every pod it packs into an offer, so they work on
// the protobuf messages directly, without copying what does not change:
//
//   - Functions never modify their arguments, and the slices they return
//     are new; but the Resource messages in a result may be the very ones
//     given (or shared between results). Treat resources as read-only
//     values: to change one, build a new one (or proto.Clone it).
//   - Results are normalized: no empty entries, entries that are the same
//     resource merged, scalars on Mesos' 0.001 grid, ranges sorted and
//     coalesced, sets sorted without duplicates. Arguments need not be.
//   - Invalid entries (no name, TEXT type, negative, NaN or huge scalars)
//     count as empty and are dropped, as Mesos' Resources drops them.
package resources

import (
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// Resources is a list of Mesos resources, as offers, tasks and agents
// carry them. Two entries are the same resource (and merge) when name,
// type, reservation role(s), allocation role and the disk, revocable,
// shared and provider markers all match, as in Mesos' Resources::addable;
// pre-refinement reservations (role "k8s", reservation{principal}) and
// post-refinement ones (reservations [{STATIC|DYNAMIC, k8s}]) that say
// the same thing are the same.
type Resources = []*mesospb.Resource

// valid mirrors the parts of Mesos' Resources::validate that matter for
// the math.
func valid(r *mesospb.Resource) bool {
	if r.GetName() == "" {
		return false
	}
	switch r.GetType() {
	case mesospb.Value_SCALAR:
		n, ok := toFixed(r.GetScalar().GetValue())
		return ok && n >= 0
	case mesospb.Value_RANGES, mesospb.Value_SET:
		return true
	}
	return false
}

// IsEmptyResource is true for a zero scalar, no ranges, an empty set or
// an invalid resource.
func IsEmptyResource(r *mesospb.Resource) bool {
	if !valid(r) {
		return true
	}
	switch r.GetType() {
	case mesospb.Value_SCALAR:
		n, _ := toFixed(r.GetScalar().GetValue())
		return n == 0
	case mesospb.Value_RANGES:
		for _, x := range r.GetRanges().GetRange() {
			if x.GetBegin() <= x.GetEnd() {
				return false
			}
		}
		return true
	default:
		return len(r.GetSet().GetItem()) == 0
	}
}

// IsEmpty is true when nothing in rs has a quantity.
func IsEmpty(rs Resources) bool {
	for _, r := range rs {
		if !IsEmptyResource(r) {
			return false
		}
	}
	return true
}

// atomic resources are never merged nor split: shared resources (Mesos
// counts their copies; here each copy is an entry), persistent volumes
// and exclusive disks (MOUNT, BLOCK, RAW with an identity). They are
// added as separate entries and subtracted only by an identical one.
func atomic(r *mesospb.Resource) bool {
	if r.Shared != nil {
		return true
	}
	d := r.Disk
	if d == nil {
		return false
	}
	if d.Persistence != nil {
		return true
	}
	switch d.GetSource().GetType() {
	case mesospb.Resource_DiskInfo_Source_MOUNT, mesospb.Resource_DiskInfo_Source_BLOCK:
		return true
	case mesospb.Resource_DiskInfo_Source_RAW:
		return d.Source.Id != nil
	}
	return false
}

// sameKind reports whether x and y are the same resource apart from their
// value.
func sameKind(x, y *mesospb.Resource) bool {
	return x == y || kindMatch(x, y) && sameAllocation(x, y) && sameReservations(x, y)
}

// named is an inlined first test for the loops that look for a kind: most
// entries differ by name. It is false for nil entries.
func named(r *mesospb.Resource, name string) bool {
	return r != nil && r.Name != nil && *r.Name == name
}

// kindMatch compares what sameKind compares but the roles: name, type,
// and the disk, revocable, shared and provider markers. Cheap comparisons
// come first: most pairs differ by name.
func kindMatch(x, y *mesospb.Resource) bool {
	if x.GetName() != y.GetName() || x.GetType() != y.GetType() {
		return false
	}
	if x.Disk == nil && y.Disk == nil && x.Revocable == nil && y.Revocable == nil &&
		x.Shared == nil && y.Shared == nil && x.ProviderId == nil && y.ProviderId == nil {
		return true
	}
	return (x.Revocable == nil) == (y.Revocable == nil) &&
		(x.Shared == nil) == (y.Shared == nil) &&
		(x.ProviderId == nil) == (y.ProviderId == nil) &&
		x.GetProviderId().GetValue() == y.GetProviderId().GetValue() &&
		(x.Disk == nil) == (y.Disk == nil) &&
		(x.Disk == nil || proto.Equal(x.Disk, y.Disk))
}

func sameAllocation(x, y *mesospb.Resource) bool {
	xa, ya := x.AllocationInfo, y.AllocationInfo
	return (xa == nil) == (ya == nil) && (xa == nil || xa.GetRole() == ya.GetRole())
}

// identical is sameKind with equal values (for atomic resources).
func identical(x, y *mesospb.Resource) bool { return sameKind(x, y) && sameValue(x, y) }

func sameValue(x, y *mesospb.Resource) bool {
	switch x.GetType() {
	case mesospb.Value_SCALAR:
		a, _ := toFixed(x.GetScalar().GetValue())
		b, _ := toFixed(y.GetScalar().GetValue())
		return a == b
	case mesospb.Value_RANGES:
		var bx, by [8]Range
		a, b := readRanges(bx[:0], x.GetRanges()), readRanges(by[:0], y.GetRanges())
		return equalRanges(a, b)
	default:
		return slices.Equal(sortedSet(x.GetSet().GetItem()), sortedSet(y.GetSet().GetItem()))
	}
}

func equalRanges(a, b []Range) bool { return slices.Equal(a, b) }

// resv is one level of a reservation, whichever format carried it.
type resv struct {
	typ       mesospb.Resource_ReservationInfo_Type
	role      string
	principal string
	labels    *mesospb.Labels
}

// reservationDepth is how many reservations r carries: its post-refinement
// stack, or one for a pre-refinement role other than "*".
func reservationDepth(r *mesospb.Resource) int {
	if n := len(r.Reservations); n > 0 {
		return n
	}
	if role := r.GetRole(); role != "*" && role != "" {
		return 1
	}
	return 0
}

func reservationAt(r *mesospb.Resource, i int) resv {
	if len(r.Reservations) > 0 {
		x := r.Reservations[i]
		return resv{x.GetType(), x.GetRole(), x.GetPrincipal(), x.GetLabels()}
	}
	if x := r.Reservation; x != nil {
		return resv{mesospb.Resource_ReservationInfo_DYNAMIC, r.GetRole(), x.GetPrincipal(), x.GetLabels()}
	}
	return resv{mesospb.Resource_ReservationInfo_STATIC, r.GetRole(), "", nil}
}

func sameReservations(x, y *mesospb.Resource) bool {
	if len(x.Reservations) == 0 && len(y.Reservations) == 0 && x.Reservation == nil && y.Reservation == nil {
		return roleOf(x) == roleOf(y)
	}
	n := reservationDepth(x)
	if n != reservationDepth(y) {
		return false
	}
	for i := 0; i < n; i++ {
		a, b := reservationAt(x, i), reservationAt(y, i)
		if a.typ != b.typ || a.role != b.role || a.principal != b.principal {
			return false
		}
		if len(a.labels.GetLabels()) != 0 || len(b.labels.GetLabels()) != 0 {
			if !proto.Equal(a.labels, b.labels) {
				return false
			}
		}
	}
	return true
}

// roleOf is the pre-refinement role with "" read as "*".
func roleOf(r *mesospb.Resource) string {
	if role := r.GetRole(); role != "" {
		return role
	}
	return "*"
}

// ReservationRole is the role a resource is reserved for ("*" when not):
// the innermost of its reservations, or its pre-refinement role.
func ReservationRole(r *mesospb.Resource) string {
	if n := len(r.Reservations); n > 0 {
		return r.Reservations[n-1].GetRole()
	}
	return roleOf(r)
}

// Building messages. Values that change get a fresh message; the rest of
// the resource (name, role, reservations, allocation...) is shared with
// the resource it came from.

// scalarBox holds a Resource, its Scalar and the value in one allocation.
type scalarBox struct {
	r mesospb.Resource
	s mesospb.Value_Scalar
	v float64
}

// rangesBox does the same for a ranges resource with a single range, the
// common case for ports.
type rangesBox struct {
	r   mesospb.Resource
	v   mesospb.Value_Ranges
	one [1]*mesospb.Value_Range
	rb  rangeBox
}

type setBox struct {
	r mesospb.Resource
	v mesospb.Value_Set
}

// copyMeta copies everything but the value. A test checks that it knows
// every field of Resource, so that a regenerated schema cannot slip by.
func copyMeta(dst, src *mesospb.Resource) {
	dst.ProviderId = src.ProviderId
	dst.Name = src.Name
	dst.Type = src.Type
	dst.Role = src.Role
	dst.AllocationInfo = src.AllocationInfo
	dst.Reservation = src.Reservation
	dst.Reservations = src.Reservations
	dst.Disk = src.Disk
	dst.Revocable = src.Revocable
	dst.Shared = src.Shared
}

func withScalar(src *mesospb.Resource, n int64) *mesospb.Resource {
	b := &scalarBox{v: fromFixed(n)}
	copyMeta(&b.r, src)
	b.s.Value = &b.v
	b.r.Scalar = &b.s
	return &b.r
}

func withRanges(src *mesospb.Resource, rs []Range) *mesospb.Resource {
	if len(rs) == 1 {
		b := &rangesBox{}
		copyMeta(&b.r, src)
		b.rb.begin, b.rb.end = rs[0].Begin, rs[0].End
		b.rb.m.Begin, b.rb.m.End = &b.rb.begin, &b.rb.end
		b.one[0] = &b.rb.m
		b.v.Range = b.one[:]
		b.r.Ranges = &b.v
		return &b.r
	}
	b := &rangesBox{}
	copyMeta(&b.r, src)
	var reuse []*mesospb.Value_Range
	if rangesCoalesced(src.GetRanges()) {
		reuse = src.GetRanges().GetRange()
	}
	fillRanges(&b.v, rs, reuse)
	b.r.Ranges = &b.v
	return &b.r
}

func withSet(src *mesospb.Resource, items []string) *mesospb.Resource {
	b := &setBox{}
	copyMeta(&b.r, src)
	b.v.Item = items
	b.r.Set = &b.v
	return &b.r
}

// canonical returns r with its value in normal form: r itself when it
// already is (the common case: what this package produced).
func canonical(r *mesospb.Resource) *mesospb.Resource {
	switch r.GetType() {
	case mesospb.Value_SCALAR:
		v := r.GetScalar().GetValue()
		if n, _ := toFixed(v); fromFixed(n) != v {
			return withScalar(r, n)
		}
	case mesospb.Value_RANGES:
		if !rangesCoalesced(r.GetRanges()) {
			return withRanges(r, FromRanges(r.GetRanges()))
		}
	case mesospb.Value_SET:
		if items := r.GetSet().GetItem(); !setSorted(items) {
			return withSet(r, sortedSet(items))
		}
	}
	return r
}

// plus is x + y for two resources of the same kind.
func plus(x, y *mesospb.Resource) *mesospb.Resource {
	switch x.GetType() {
	case mesospb.Value_SCALAR:
		a, _ := toFixed(x.GetScalar().GetValue())
		b, _ := toFixed(y.GetScalar().GetValue())
		return withScalar(x, addFixed(a, b))
	case mesospb.Value_RANGES:
		var buf [16]Range
		rs := slices.Grow(buf[:0], len(x.GetRanges().GetRange())+len(y.GetRanges().GetRange()))
		rs = appendRanges(rs, x.GetRanges())
		rs = appendRanges(rs, y.GetRanges())
		return withRanges(x, coalesceInPlace(rs))
	default:
		return withSet(x, setUnion(sortedSet(x.GetSet().GetItem()), sortedSet(y.GetSet().GetItem())))
	}
}

// less is x - y for two resources of the same kind, nil when nothing
// remains. What y holds beyond x is ignored.
func less(x, y *mesospb.Resource) *mesospb.Resource {
	switch x.GetType() {
	case mesospb.Value_SCALAR:
		a, _ := toFixed(x.GetScalar().GetValue())
		b, _ := toFixed(y.GetScalar().GetValue())
		if a-b <= 0 {
			return nil
		}
		if b == 0 {
			return x
		}
		return withScalar(x, a-b)
	case mesospb.Value_RANGES:
		var bx, by, bo [16]Range
		a := readRanges(bx[:0], x.GetRanges())
		b := readRanges(by[:0], y.GetRanges())
		out := minus(slices.Grow(bo[:0], len(a)+len(b)), a, b)
		switch {
		case len(out) == 0:
			return nil
		case equalRanges(out, a):
			return x
		}
		return withRanges(x, out)
	default:
		a := sortedSet(x.GetSet().GetItem())
		out := setMinus(a, sortedSet(y.GetSet().GetItem()))
		switch {
		case len(out) == 0:
			return nil
		case len(out) == len(a):
			return x
		}
		return withSet(x, out)
	}
}

func appendRanges(dst []Range, v *mesospb.Value_Ranges) []Range {
	dst = slices.Grow(dst, len(v.GetRange()))
	for _, r := range v.GetRange() {
		dst = append(dst, Range{r.GetBegin(), r.GetEnd()})
	}
	return dst
}

// addTo adds r to the normalized list out.
func addTo(out Resources, r *mesospb.Resource) Resources {
	if IsEmptyResource(r) {
		return out
	}
	if !atomic(r) {
		name := r.GetName()
		for i, x := range out {
			if named(x, name) && sameKind(x, r) && !atomic(x) {
				out[i] = plus(x, r)
				return out
			}
		}
	}
	return append(out, canonical(r))
}

// subtractFrom takes r out of the normalized list out.
func subtractFrom(out Resources, r *mesospb.Resource) Resources {
	if IsEmptyResource(r) {
		return out
	}
	name := r.GetName()
	for i, x := range out {
		if !named(x, name) {
			continue
		}
		if atomic(r) || atomic(x) {
			if !identical(x, r) {
				continue
			}
			return append(out[:i], out[i+1:]...)
		}
		if !sameKind(x, r) {
			continue
		}
		if left := less(x, r); left != nil {
			out[i] = left
			return out
		}
		return append(out[:i], out[i+1:]...)
	}
	return out
}

// normalized returns rs in normal form, in a new slice.
func normalized(rs Resources, extra int) Resources {
	out := make(Resources, 0, len(rs)+extra)
	for _, r := range rs {
		out = addTo(out, r)
	}
	return out
}

// Add returns a + b.
func Add(a, b Resources) Resources {
	out := normalized(a, len(b))
	for _, r := range b {
		out = addTo(out, r)
	}
	return out
}

// Subtract returns a - b. What b holds beyond a is silently ignored, as
// Mesos' operator-= does (it cannot go below zero); use SubtractChecked
// where taking more than there is would be a bug.
func Subtract(a, b Resources) Resources {
	out := normalized(a, 0)
	for _, r := range b {
		out = subtractFrom(out, r)
	}
	return out
}

// SubtractChecked returns a - b, or an error naming what of b a lacks
// (and a unchanged) when a does not contain b.
func SubtractChecked(a, b Resources) (Resources, error) {
	if j := missing(a, b); j >= 0 {
		return a, shortfall(a, b, j)
	}
	return Subtract(a, b), nil
}

// Contains reports whether b ⊆ a: a - b would lose nothing of b.
func Contains(a, b Resources) bool { return missing(a, b) < 0 }

// Equal reports whether a and b hold the same resources (in any order and
// form: a list and its normalized form are equal).
func Equal(a, b Resources) bool { return Contains(a, b) && Contains(b, a) }

// missing returns the index in b of the first resource that a does not
// hold enough of, or -1. The entries of b of one kind are totalled, and
// so are those of a, so neither needs to be normalized. It allocates
// nothing for lists of the usual size (one entry per kind, few ranges).
func missing(a, b Resources) int {
next:
	for j, y := range b {
		if IsEmptyResource(y) {
			continue
		}
		name := y.GetName()
		for _, p := range b[:j] {
			if named(p, name) && sameGroup(p, y) && !IsEmptyResource(p) {
				continue next // y's group was checked with p
			}
		}
		if atomic(y) {
			var need, have int
			for _, z := range b[j:] {
				if named(z, name) && identical(z, y) {
					need++
				}
			}
			for _, x := range a {
				if named(x, name) && identical(x, y) {
					have++
				}
			}
			if have < need {
				return j
			}
			continue
		}
		switch y.GetType() {
		case mesospb.Value_SCALAR:
			var need, have int64
			for _, z := range b[j:] {
				if named(z, name) && sameGroup(z, y) && valid(z) {
					n, _ := toFixed(z.GetScalar().GetValue())
					need = addFixed(need, n)
				}
			}
			for _, x := range a {
				if named(x, name) && sameGroup(x, y) && valid(x) {
					n, _ := toFixed(x.GetScalar().GetValue())
					have = addFixed(have, n)
				}
			}
			if have < need {
				return j
			}
		case mesospb.Value_RANGES:
			var bn, bh [16]Range
			need, have := bn[:0], bh[:0]
			for _, z := range b[j:] {
				if named(z, name) && sameGroup(z, y) {
					need = appendRanges(need, z.GetRanges())
				}
			}
			for _, x := range a {
				if named(x, name) && sameGroup(x, y) {
					have = appendRanges(have, x.GetRanges())
				}
			}
			if !subsetRanges(coalesceInPlace(have), coalesceInPlace(need)) {
				return j
			}
		default:
			need, have := groupSet(b[j:], y), groupSet(a, y)
			if !setSubset(have, need) {
				return j
			}
		}
	}
	return -1
}

// sameGroup: x and y total up together in missing (non-atomic, same kind).
func sameGroup(x, y *mesospb.Resource) bool { return sameKind(x, y) && !atomic(x) }

// groupSet is the union of the sets of rs of y's kind; without copying
// when there is one, sorted.
func groupSet(rs Resources, y *mesospb.Resource) []string {
	var out []string
	n := 0
	for _, x := range rs {
		if named(x, y.GetName()) && sameGroup(x, y) && valid(x) {
			if n == 0 {
				out = sortedSet(x.GetSet().GetItem())
			} else {
				out = setUnion(out, sortedSet(x.GetSet().GetItem()))
			}
			n++
		}
	}
	return out
}

// shortfall explains why b[j] is not contained in a.
func shortfall(a, b Resources, j int) error {
	y := b[j]
	var need, have Resources
	same := func(x *mesospb.Resource) bool {
		return named(x, y.GetName()) && (atomic(y) && identical(x, y) || !atomic(y) && sameGroup(x, y))
	}
	for _, z := range b[j:] {
		if same(z) {
			need = addTo(need, z)
		}
	}
	for _, x := range a {
		if same(x) {
			have = addTo(have, x)
		}
	}
	if len(have) == 0 {
		return fmt.Errorf("%s wanted, but there is no %s of that kind", Describe(need), y.GetName())
	}
	return fmt.Errorf("%s wanted, but only %s is there", Describe(need), Describe(have))
}

// Flatten moves every resource to role ("*" or "" for unreserved),
// dropping its reservations and merging what then becomes the same
// resource, as Mesos' flatten did: useful to compare amounts whatever
// their roles. Allocation info, disk and the other markers stay.
func Flatten(rs Resources, role string) Resources {
	if role == "" {
		role = "*"
	}
	r0 := proto.String(role)
	out := make(Resources, 0, len(rs))
	for _, r := range rs {
		if IsEmptyResource(r) {
			continue
		}
		c := &mesospb.Resource{}
		copyMeta(c, r)
		c.Scalar, c.Ranges, c.Set = r.Scalar, r.Ranges, r.Set
		c.Role, c.Reservation, c.Reservations = r0, nil, nil
		out = addTo(out, c)
	}
	return out
}

// Filter returns the resources of rs for which keep is true.
func Filter(rs Resources, keep func(*mesospb.Resource) bool) Resources {
	out := make(Resources, 0, len(rs))
	for _, r := range rs {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// Named returns the resources of rs called name.
func Named(rs Resources, name string) Resources {
	return Filter(rs, func(r *mesospb.Resource) bool { return r.GetName() == name })
}

// ReservedTo returns the resources of rs reserved for role; "*" returns
// the unreserved ones.
func ReservedTo(rs Resources, role string) Resources {
	return Filter(rs, func(r *mesospb.Resource) bool { return ReservationRole(r) == role })
}

// Unreserved is the unreserved part of rs.
func Unreserved(rs Resources) Resources { return ReservedTo(rs, "*") }

// AllocatableTo is what of rs may be offered to role: unreserved
// resources and those reserved for the role or one of its ancestors
// (resources reserved for "eng" may go to "eng/web"), as in Mesos.
func AllocatableTo(rs Resources, role string) Resources {
	return Filter(rs, func(r *mesospb.Resource) bool { return allocatableTo(ReservationRole(r), role) })
}

func allocatableTo(reserved, role string) bool {
	return reserved == "*" || reserved == role ||
		len(role) > len(reserved) && role[len(reserved)] == '/' && role[:len(reserved)] == reserved
}

// ReservedByRole groups the reserved resources by reservation role.
func ReservedByRole(rs Resources) map[string]Resources {
	out := map[string]Resources{}
	for _, r := range rs {
		if role := ReservationRole(r); role != "*" {
			out[role] = append(out[role], r)
		}
	}
	return out
}

// Scalar totals a scalar resource over all roles and allocations.
func Scalar(rs Resources, name string) float64 {
	var n int64
	for _, r := range rs {
		if r.GetName() == name && r.GetType() == mesospb.Value_SCALAR && valid(r) {
			v, _ := toFixed(r.GetScalar().GetValue())
			n = addFixed(n, v)
		}
	}
	return fromFixed(n)
}

// Cpus is the total of "cpus".
func Cpus(rs Resources) float64 { return Scalar(rs, "cpus") }

// Mem is the total of "mem", in MB.
func Mem(rs Resources) float64 { return Scalar(rs, "mem") }

// Disk is the total of "disk", in MB.
func Disk(rs Resources) float64 { return Scalar(rs, "disk") }

// Ports returns the port ranges of rs (all roles), coalesced.
func Ports(rs Resources) []Range {
	var out []Range
	for _, r := range rs {
		if r.GetName() == "ports" && r.GetType() == mesospb.Value_RANGES {
			out = appendRanges(out, r.GetRanges())
		}
	}
	return coalesceInPlace(out)
}

// WithAllocationRole returns rs allocated to role (allocation_info.role),
// or with no allocation info when role is "": resources offered to
// MULTI_ROLE frameworks carry it, and must keep it in the operations the
// framework sends back.
func WithAllocationRole(rs Resources, role string) Resources {
	var info *mesospb.Resource_AllocationInfo
	out := make(Resources, len(rs))
	for i, r := range rs {
		if r == nil || role == "" && r.AllocationInfo == nil || role != "" && r.AllocationInfo != nil && r.AllocationInfo.GetRole() == role {
			out[i] = r
			continue
		}
		if info == nil && role != "" {
			info = &mesospb.Resource_AllocationInfo{Role: proto.String(role)}
		}
		c := &mesospb.Resource{}
		copyMeta(c, r)
		c.Scalar, c.Ranges, c.Set = r.Scalar, r.Ranges, r.Set
		c.AllocationInfo = info
		out[i] = c
	}
	return out
}

// AllocationRole is the allocation role of the first resource that has one.
func AllocationRole(rs Resources) string {
	for _, r := range rs {
		if role := r.GetAllocationInfo().GetRole(); role != "" {
			return role
		}
	}
	return ""
}

// Normalize writes role "*" on unreserved resources that have no role
// (as Mesos shows them to frameworks without RESERVATION_REFINEMENT) and
// returns the list in normal form.
func Normalize(rs Resources) Resources {
	var star *string
	out := make(Resources, 0, len(rs))
	for _, r := range rs {
		if r != nil && r.Role == nil && len(r.Reservations) == 0 {
			if star == nil {
				star = proto.String("*")
			}
			c := &mesospb.Resource{}
			copyMeta(c, r)
			c.Scalar, c.Ranges, c.Set = r.Scalar, r.Ranges, r.Set
			c.Role = star
			r = c
		}
		out = addTo(out, r)
	}
	return out
}

// ScalarResource builds a scalar resource of role ("" means "*"), rounded
// to Mesos' precision.
func ScalarResource(name string, v float64, role string) *mesospb.Resource {
	return &mesospb.Resource{Name: proto.String(name), Type: mesospb.Value_SCALAR.Enum(),
		Scalar: &mesospb.Value_Scalar{Value: proto.Float64(Round(v))}, Role: proto.String(orStar(role))}
}

// RangesResource builds a ranges resource of role ("" means "*").
func RangesResource(name string, rs []Range, role string) *mesospb.Resource {
	return &mesospb.Resource{Name: proto.String(name), Type: mesospb.Value_RANGES.Enum(),
		Ranges: ToRanges(Coalesce(rs)), Role: proto.String(orStar(role))}
}

// SetResource builds a set resource of role ("" means "*").
func SetResource(name string, items []string, role string) *mesospb.Resource {
	return &mesospb.Resource{Name: proto.String(name), Type: mesospb.Value_SET.Enum(),
		Set: &mesospb.Value_Set{Item: sortedSet(append([]string(nil), items...))}, Role: proto.String(orStar(role))}
}

func orStar(role string) string {
	if role == "" {
		return "*"
	}
	return role
}
