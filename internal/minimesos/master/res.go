package master

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// Resources is a list of Mesos resources. The operations below treat two
// entries as the same resource when name, type, role, reservations,
// allocation role and the disk/revocable/shared/provider markers match (as
// Mesos' Resources::addable does), and keep scalars at Mesos' precision of
// 0.001.
type Resources = []*mesospb.Resource

// identity is the part of a resource that must match for two entries to
// merge.
func identity(r *mesospb.Resource) string {
	c := proto.Clone(r).(*mesospb.Resource)
	c.Scalar, c.Ranges, c.Set = nil, nil, nil
	if c.GetRole() == "*" {
		c.Role = nil
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	return string(b)
}

func roundScalar(v float64) float64 { return math.Round(v*1000) / 1000 }

func cloneRes(r *mesospb.Resource) *mesospb.Resource { return proto.Clone(r).(*mesospb.Resource) }

// add returns a + b.
func add(a, b Resources) Resources {
	out := make(Resources, 0, len(a)+len(b))
	idx := map[string]int{}
	for _, list := range []Resources{a, b} {
		for _, r := range list {
			if resEmpty(r) {
				continue
			}
			k := identity(r)
			i, ok := idx[k]
			if !ok {
				idx[k] = len(out)
				out = append(out, cloneRes(r))
				continue
			}
			merge(out[i], r, +1)
		}
	}
	return out
}

// subtract returns a - b; what b holds beyond a is ignored (Mesos'
// operator-=).
func subtract(a, b Resources) Resources {
	out := make(Resources, 0, len(a))
	for _, r := range a {
		out = append(out, cloneRes(r))
	}
	for _, r := range b {
		k := identity(r)
		for _, o := range out {
			if identity(o) == k {
				merge(o, r, -1)
				break
			}
		}
	}
	kept := out[:0]
	for _, r := range out {
		if !resEmpty(r) {
			kept = append(kept, r)
		}
	}
	return kept
}

func merge(into, r *mesospb.Resource, sign float64) {
	switch into.GetType() {
	case mesospb.Value_SCALAR:
		v := roundScalar(into.GetScalar().GetValue() + sign*r.GetScalar().GetValue())
		if v < 0 {
			v = 0
		}
		into.Scalar = &mesospb.Value_Scalar{Value: proto.Float64(v)}
	case mesospb.Value_RANGES:
		if sign > 0 {
			into.Ranges = rangesUnion(into.GetRanges(), r.GetRanges())
		} else {
			into.Ranges = rangesMinus(into.GetRanges(), r.GetRanges())
		}
	case mesospb.Value_SET:
		items := map[string]bool{}
		for _, i := range into.GetSet().GetItem() {
			items[i] = true
		}
		for _, i := range r.GetSet().GetItem() {
			items[i] = sign > 0
		}
		var out []string
		for i, ok := range items {
			if ok {
				out = append(out, i)
			}
		}
		sort.Strings(out)
		into.Set = &mesospb.Value_Set{Item: out}
	}
}

func resEmpty(r *mesospb.Resource) bool {
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

func isEmpty(rs Resources) bool {
	for _, r := range rs {
		if !resEmpty(r) {
			return false
		}
	}
	return true
}

// contains reports whether b ⊆ a.
func contains(a, b Resources) bool {
	for _, r := range b {
		if resEmpty(r) {
			continue
		}
		k := identity(r)
		var have *mesospb.Resource
		for _, o := range a {
			if identity(o) == k {
				have = o
				break
			}
		}
		if have == nil {
			return false
		}
		switch r.GetType() {
		case mesospb.Value_SCALAR:
			if roundScalar(have.GetScalar().GetValue()-r.GetScalar().GetValue()) < 0 {
				return false
			}
		case mesospb.Value_RANGES:
			if len(rangesMinus(r.GetRanges(), have.GetRanges()).GetRange()) > 0 {
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

func equalResources(a, b Resources) bool { return contains(a, b) && contains(b, a) }

type span struct{ b, e uint64 }

func spans(r *mesospb.Value_Ranges) []span {
	var out []span
	for _, x := range r.GetRange() {
		out = append(out, span{x.GetBegin(), x.GetEnd()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].b < out[j].b })
	var merged []span
	for _, s := range out {
		if n := len(merged); n > 0 && s.b <= merged[n-1].e+1 {
			if s.e > merged[n-1].e {
				merged[n-1].e = s.e
			}
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

func toRanges(ss []span) *mesospb.Value_Ranges {
	out := &mesospb.Value_Ranges{}
	for _, s := range ss {
		out.Range = append(out.Range, &mesospb.Value_Range{Begin: proto.Uint64(s.b), End: proto.Uint64(s.e)})
	}
	return out
}

func rangesUnion(a, b *mesospb.Value_Ranges) *mesospb.Value_Ranges {
	all := &mesospb.Value_Ranges{Range: append(append([]*mesospb.Value_Range{}, a.GetRange()...), b.GetRange()...)}
	return toRanges(spans(all))
}

func rangesMinus(a, b *mesospb.Value_Ranges) *mesospb.Value_Ranges {
	out := spans(a)
	for _, cut := range spans(b) {
		var next []span
		for _, s := range out {
			if cut.e < s.b || cut.b > s.e {
				next = append(next, s)
				continue
			}
			if cut.b > s.b {
				next = append(next, span{s.b, cut.b - 1})
			}
			if cut.e < s.e {
				next = append(next, span{cut.e + 1, s.e})
			}
		}
		out = next
	}
	return toRanges(out)
}

func scalar(rs Resources, name string) float64 {
	v := 0.0
	for _, r := range rs {
		if r.GetName() == name && r.GetType() == mesospb.Value_SCALAR {
			v += r.GetScalar().GetValue()
		}
	}
	return roundScalar(v)
}

// reservationRole is the role a resource is reserved for ("*" when not).
func reservationRole(r *mesospb.Resource) string {
	if n := len(r.GetReservations()); n > 0 {
		return r.GetReservations()[n-1].GetRole()
	}
	return r.GetRole()
}

// allocatableTo is what of free may be offered to role: unreserved
// resources and those reserved for the role.
func allocatableTo(free Resources, role string) Resources {
	var out Resources
	for _, r := range free {
		if rr := reservationRole(r); rr == "*" || rr == role {
			out = append(out, r)
		}
	}
	return out
}

// withAllocationRole sets (or, with "", clears) allocation_info.role.
func withAllocationRole(rs Resources, role string) Resources {
	out := make(Resources, 0, len(rs))
	for _, r := range rs {
		c := cloneRes(r)
		if role == "" {
			c.AllocationInfo = nil
		} else {
			c.AllocationInfo = &mesospb.Resource_AllocationInfo{Role: proto.String(role)}
		}
		out = append(out, c)
	}
	return out
}

func allocationRole(rs Resources) string {
	for _, r := range rs {
		if role := r.GetAllocationInfo().GetRole(); role != "" {
			return role
		}
	}
	return ""
}

// normalizeRoles writes the role "*" on unreserved resources, as Mesos
// shows them to frameworks without RESERVATION_REFINEMENT.
func normalizeRoles(rs Resources) Resources {
	out := make(Resources, 0, len(rs))
	for _, r := range rs {
		c := cloneRes(r)
		if c.Role == nil && len(c.GetReservations()) == 0 {
			c.Role = proto.String("*")
		}
		out = append(out, c)
	}
	return add(nil, out)
}

func unreserved(rs Resources) Resources {
	return allocatableTo(rs, "*")
}

func reservedByRole(rs Resources) map[string]Resources {
	out := map[string]Resources{}
	for _, r := range rs {
		if role := reservationRole(r); role != "*" {
			out[role] = append(out[role], r)
		}
	}
	return out
}

// describe renders resources as Mesos does in its messages:
// "cpus(allocated: *):100; mem(allocated: *):32".
func describe(rs Resources) string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		var annot []string
		if role := reservationRole(r); role != "*" && role != "" {
			annot = append(annot, "reservations: [("+role+")]")
		}
		if ar := r.GetAllocationInfo().GetRole(); ar != "" {
			annot = append(annot, "allocated: "+ar)
		}
		name := r.GetName()
		if len(annot) > 0 {
			name += "(" + strings.Join(annot, ", ") + ")"
		}
		parts = append(parts, name+":"+valueString(r))
	}
	return strings.Join(parts, "; ")
}

func valueString(r *mesospb.Resource) string {
	switch r.GetType() {
	case mesospb.Value_SCALAR:
		return fmt.Sprint(r.GetScalar().GetValue())
	case mesospb.Value_RANGES:
		return rangesString(r.GetRanges())
	case mesospb.Value_SET:
		return "{" + strings.Join(r.GetSet().GetItem(), ",") + "}"
	}
	return ""
}

func rangesString(rs *mesospb.Value_Ranges) string {
	var parts []string
	for _, s := range spans(rs) {
		parts = append(parts, fmt.Sprintf("%d-%d", s.b, s.e))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// summarize totals resources by name, as the operator endpoints show them.
func summarize(rs Resources) map[string]any {
	out := map[string]any{}
	rangesByName := map[string]*mesospb.Value_Ranges{}
	for _, r := range rs {
		switch r.GetType() {
		case mesospb.Value_SCALAR:
			v, _ := out[r.GetName()].(float64)
			out[r.GetName()] = roundScalar(v + r.GetScalar().GetValue())
		case mesospb.Value_RANGES:
			rangesByName[r.GetName()] = rangesUnion(rangesByName[r.GetName()], r.GetRanges())
		case mesospb.Value_SET:
			out[r.GetName()] = "{" + strings.Join(r.GetSet().GetItem(), ",") + "}"
		}
	}
	for name, rr := range rangesByName {
		out[name] = rangesString(rr)
	}
	return out
}

func joinStrings(s []string, sep string) string { return strings.Join(s, sep) }

func sortStrings(s []string) { sort.Strings(s) }
