// Package resources is Mesos resource and attribute math: parsing the
// agent flag syntax ("cpus:4;mem:4096;ports:[31000-32000]", "cpus(k8s):2",
// "rack:r1;zone:a"), and adding, subtracting, comparing and allocating
// scalars, ranges and sets with roles and reservations, as Mesos'
// Resources class does.
package resources

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// Resources is a list of Mesos resources. Two entries are the same
// resource (and merge) when name, type, role, reservations, allocation
// role and the disk/revocable/shared/provider markers match, as in Mesos'
// Resources::addable. Scalars are kept at Mesos' precision of 0.001, so
// that adding and subtracting is exact.
type Resources = []*mesospb.Resource

// Key identifies a resource for merging: everything but its value.
func Key(r *mesospb.Resource) string {
	var b strings.Builder
	b.WriteString(r.GetName())
	b.WriteByte('|')
	b.WriteString(strconv.Itoa(int(r.GetType())))
	b.WriteByte('|')
	role := r.GetRole()
	if role == "" {
		role = "*"
	}
	b.WriteString(role)
	for _, rv := range r.GetReservations() {
		b.WriteString("|rv:")
		b.WriteString(rv.GetRole())
		b.WriteByte('/')
		b.WriteString(rv.GetPrincipal())
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(int(rv.GetType())))
	}
	if rv := r.GetReservation(); rv != nil {
		b.WriteString("|r:")
		b.WriteString(rv.GetPrincipal())
	}
	if a := r.AllocationInfo; a != nil {
		b.WriteString("|a:")
		b.WriteString(a.GetRole())
	}
	if d := r.Disk; d != nil {
		db, _ := proto.MarshalOptions{Deterministic: true}.Marshal(d)
		b.WriteString("|d:")
		b.Write(db)
	}
	if r.Revocable != nil {
		b.WriteString("|revocable")
	}
	if r.Shared != nil {
		b.WriteString("|shared")
	}
	if p := r.ProviderId; p != nil {
		b.WriteString("|p:")
		b.WriteString(p.GetValue())
	}
	return b.String()
}

// Round rounds a scalar to Mesos' precision of 0.001.
func Round(v float64) float64 { return math.Round(v*1000) / 1000 }

func clone(r *mesospb.Resource) *mesospb.Resource { return proto.Clone(r).(*mesospb.Resource) }

// Add returns a + b, merging entries that are the same resource.
func Add(a, b Resources) Resources {
	out := make(Resources, 0, len(a)+len(b))
	idx := make(map[string]int, len(a)+len(b))
	for _, list := range []Resources{a, b} {
		for _, r := range list {
			if IsEmptyResource(r) {
				continue
			}
			k := Key(r)
			if i, ok := idx[k]; ok {
				merge(out[i], r, true)
				continue
			}
			idx[k] = len(out)
			out = append(out, clone(r))
		}
	}
	return out
}

// Subtract returns a - b. What b holds beyond a is ignored, as Mesos'
// operator-= does; use Contains first where that matters.
func Subtract(a, b Resources) Resources {
	out := make(Resources, 0, len(a))
	idx := make(map[string]int, len(a))
	for _, r := range a {
		k := Key(r)
		if i, ok := idx[k]; ok {
			merge(out[i], r, true)
			continue
		}
		idx[k] = len(out)
		out = append(out, clone(r))
	}
	for _, r := range b {
		if i, ok := idx[Key(r)]; ok {
			merge(out[i], r, false)
		}
	}
	kept := out[:0]
	for _, r := range out {
		if !IsEmptyResource(r) {
			kept = append(kept, r)
		}
	}
	return kept
}

func merge(into, r *mesospb.Resource, add bool) {
	switch into.GetType() {
	case mesospb.Value_SCALAR:
		v := into.GetScalar().GetValue()
		if add {
			v += r.GetScalar().GetValue()
		} else {
			v -= r.GetScalar().GetValue()
		}
		v = Round(v)
		if v < 0 {
			v = 0
		}
		into.Scalar = &mesospb.Value_Scalar{Value: proto.Float64(v)}
	case mesospb.Value_RANGES:
		if add {
			into.Ranges = ToRanges(Union(FromRanges(into.GetRanges()), FromRanges(r.GetRanges())))
		} else {
			into.Ranges = ToRanges(Minus(FromRanges(into.GetRanges()), FromRanges(r.GetRanges())))
		}
	case mesospb.Value_SET:
		items := map[string]bool{}
		for _, i := range into.GetSet().GetItem() {
			items[i] = true
		}
		for _, i := range r.GetSet().GetItem() {
			items[i] = add
		}
		out := make([]string, 0, len(items))
		for i, ok := range items {
			if ok {
				out = append(out, i)
			}
		}
		sort.Strings(out)
		into.Set = &mesospb.Value_Set{Item: out}
	}
}

// IsEmptyResource is true for a zero scalar, no ranges or an empty set.
func IsEmptyResource(r *mesospb.Resource) bool {
	switch r.GetType() {
	case mesospb.Value_SCALAR:
		return r.GetScalar().GetValue() <= 0
	case mesospb.Value_RANGES:
		return len(r.GetRanges().GetRange()) == 0
	case mesospb.Value_SET:
		return len(r.GetSet().GetItem()) == 0
	}
	return true
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

// Contains reports whether b ⊆ a.
func Contains(a, b Resources) bool {
	if len(b) == 0 {
		return true
	}
	sum := make(map[string]*mesospb.Resource, len(a))
	for _, r := range a {
		k := Key(r)
		if have, ok := sum[k]; ok {
			c := clone(have)
			merge(c, r, true)
			sum[k] = c
		} else {
			sum[k] = r
		}
	}
	need := map[string]*mesospb.Resource{}
	for _, r := range b {
		if IsEmptyResource(r) {
			continue
		}
		k := Key(r)
		if n, ok := need[k]; ok {
			c := clone(n)
			merge(c, r, true)
			need[k] = c
		} else {
			need[k] = r
		}
	}
	for k, r := range need {
		have := sum[k]
		if have == nil {
			return false
		}
		switch r.GetType() {
		case mesospb.Value_SCALAR:
			if Round(have.GetScalar().GetValue()-r.GetScalar().GetValue()) < 0 {
				return false
			}
		case mesospb.Value_RANGES:
			if len(Minus(FromRanges(r.GetRanges()), FromRanges(have.GetRanges()))) > 0 {
				return false
			}
		case mesospb.Value_SET:
			items := map[string]bool{}
			for _, i := range have.GetSet().GetItem() {
				items[i] = true
			}
			for _, i := range r.GetSet().GetItem() {
				if !items[i] {
					return false
				}
			}
		}
	}
	return true
}

// Equal is mutual containment.
func Equal(a, b Resources) bool { return Contains(a, b) && Contains(b, a) }

// Scalar totals a scalar resource over all roles.
func Scalar(rs Resources, name string) float64 {
	v := 0.0
	for _, r := range rs {
		if r.GetName() == name && r.GetType() == mesospb.Value_SCALAR {
			v += r.GetScalar().GetValue()
		}
	}
	return Round(v)
}

// Ports returns the free port ranges of rs (all roles), coalesced.
func Ports(rs Resources) []Range {
	var out []Range
	for _, r := range rs {
		if r.GetName() == "ports" && r.GetType() == mesospb.Value_RANGES {
			out = Union(out, FromRanges(r.GetRanges()))
		}
	}
	return out
}

// ReservationRole is the role a resource is reserved for ("*" when not).
func ReservationRole(r *mesospb.Resource) string {
	if n := len(r.GetReservations()); n > 0 {
		return r.GetReservations()[n-1].GetRole()
	}
	if r.GetRole() == "" {
		return "*"
	}
	return r.GetRole()
}

// AllocatableTo is what of rs may be offered to role: unreserved resources
// and those reserved for the role.
func AllocatableTo(rs Resources, role string) Resources {
	var out Resources
	for _, r := range rs {
		if rr := ReservationRole(r); rr == "*" || rr == role {
			out = append(out, r)
		}
	}
	return out
}

// Flatten moves every resource to role (dropping reservations and
// allocation), merging what then becomes the same resource.
func Flatten(rs Resources, role string) Resources {
	out := make(Resources, 0, len(rs))
	for _, r := range rs {
		c := clone(r)
		c.Role = proto.String(role)
		c.Reservation = nil
		c.Reservations = nil
		c.AllocationInfo = nil
		out = append(out, c)
	}
	return Add(nil, out)
}

// WithAllocationRole sets (or, with "", clears) allocation_info.role.
func WithAllocationRole(rs Resources, role string) Resources {
	out := make(Resources, 0, len(rs))
	for _, r := range rs {
		c := clone(r)
		if role == "" {
			c.AllocationInfo = nil
		} else {
			c.AllocationInfo = &mesospb.Resource_AllocationInfo{Role: proto.String(role)}
		}
		out = append(out, c)
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

// Normalize writes role "*" on unreserved resources (as Mesos shows them
// to frameworks without RESERVATION_REFINEMENT) and merges duplicates.
func Normalize(rs Resources) Resources {
	out := make(Resources, 0, len(rs))
	for _, r := range rs {
		c := clone(r)
		if c.Role == nil && len(c.GetReservations()) == 0 {
			c.Role = proto.String("*")
		}
		out = append(out, c)
	}
	return Add(nil, out)
}

// Unreserved is the unreserved part of rs.
func Unreserved(rs Resources) Resources { return AllocatableTo(rs, "*") }

// ReservedByRole groups the reserved resources by role.
func ReservedByRole(rs Resources) map[string]Resources {
	out := map[string]Resources{}
	for _, r := range rs {
		if role := ReservationRole(r); role != "*" {
			out[role] = append(out[role], r)
		}
	}
	return out
}

// Describe renders resources as Mesos does in its messages:
// "cpus(allocated: *):100; mem(allocated: *):32".
func Describe(rs Resources) string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		var annot []string
		if role := ReservationRole(r); role != "*" {
			annot = append(annot, "reservations: [("+role+")]")
		}
		if ar := r.GetAllocationInfo().GetRole(); ar != "" {
			annot = append(annot, "allocated: "+ar)
		}
		name := r.GetName()
		if len(annot) > 0 {
			name += "(" + strings.Join(annot, ", ") + ")"
		}
		parts = append(parts, name+":"+ValueString(r))
	}
	return strings.Join(parts, "; ")
}

// String renders resources in the agent flag syntax that Parse reads:
// "cpus(*):4; mem(*):4096; ports(*):[31000-32000]".
func String(rs Resources) string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		parts = append(parts, r.GetName()+"("+ReservationRole(r)+"):"+ValueString(r))
	}
	return strings.Join(parts, "; ")
}

// ValueString renders a resource's value in Mesos' syntax.
func ValueString(r *mesospb.Resource) string {
	switch r.GetType() {
	case mesospb.Value_SCALAR:
		return strconv.FormatFloat(r.GetScalar().GetValue(), 'f', -1, 64)
	case mesospb.Value_RANGES:
		return RangesString(FromRanges(r.GetRanges()))
	case mesospb.Value_SET:
		return "{" + strings.Join(r.GetSet().GetItem(), ",") + "}"
	}
	return ""
}

// Summarize totals resources by name as Mesos' operator endpoints show
// them: scalars as numbers, ranges and sets as strings.
func Summarize(rs Resources) map[string]any {
	out := map[string]any{}
	ranges := map[string][]Range{}
	for _, r := range rs {
		switch r.GetType() {
		case mesospb.Value_SCALAR:
			v, _ := out[r.GetName()].(float64)
			out[r.GetName()] = Round(v + r.GetScalar().GetValue())
		case mesospb.Value_RANGES:
			ranges[r.GetName()] = Union(ranges[r.GetName()], FromRanges(r.GetRanges()))
		case mesospb.Value_SET:
			out[r.GetName()] = "{" + strings.Join(r.GetSet().GetItem(), ",") + "}"
		}
	}
	for name, rr := range ranges {
		out[name] = RangesString(rr)
	}
	return out
}

// ScalarResource builds a scalar resource of role ("" means "*").
func ScalarResource(name string, v float64, role string) *mesospb.Resource {
	if role == "" {
		role = "*"
	}
	return &mesospb.Resource{Name: proto.String(name), Type: mesospb.Value_SCALAR.Enum(),
		Scalar: &mesospb.Value_Scalar{Value: proto.Float64(Round(v))}, Role: proto.String(role)}
}

// RangesResource builds a ranges resource of role ("" means "*").
func RangesResource(name string, rs []Range, role string) *mesospb.Resource {
	if role == "" {
		role = "*"
	}
	return &mesospb.Resource{Name: proto.String(name), Type: mesospb.Value_RANGES.Enum(),
		Ranges: ToRanges(Coalesce(rs)), Role: proto.String(role)}
}

// SetResource builds a set resource of role ("" means "*").
func SetResource(name string, items []string, role string) *mesospb.Resource {
	if role == "" {
		role = "*"
	}
	s := append([]string(nil), items...)
	sort.Strings(s)
	return &mesospb.Resource{Name: proto.String(name), Type: mesospb.Value_SET.Enum(),
		Set: &mesospb.Value_Set{Item: s}, Role: proto.String(role)}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
