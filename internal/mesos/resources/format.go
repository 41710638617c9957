package resources

import (
	"strings"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// String renders resources in the agent flag syntax that Parse reads back:
// "cpus(*):4; mem(*):4096; ports(*):[31000-32000]". Only the reservation
// role is written: allocation info, reservation principals, disk and the
// other markers have no flag syntax (Describe shows them).
func String(rs Resources) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.GetName())
		b.WriteByte('(')
		b.WriteString(ReservationRole(r))
		b.WriteString("):")
		b.WriteString(ValueString(r))
	}
	return b.String()
}

// Describe renders resources as Mesos writes them in its logs and in the
// messages it sends frameworks (TASK_ERROR "Total resources ... required
// by task ... is more than available ..."), e.g.
// "cpus(allocated: *):100; disk(reservations: [(STATIC,k8s)]):10", and
// "{}" for none.
func Describe(rs Resources) string {
	if len(rs) == 0 {
		return "{}"
	}
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteString("; ")
		}
		describe(&b, r)
	}
	return b.String()
}

func describe(b *strings.Builder, r *mesospb.Resource) {
	b.WriteString(r.GetName())
	if a := r.AllocationInfo; a != nil {
		b.WriteString("(allocated: ")
		b.WriteString(a.GetRole())
		b.WriteByte(')')
	}
	if n := reservationDepth(r); n > 0 {
		b.WriteString("(reservations: [")
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			x := reservationAt(r, i)
			b.WriteByte('(')
			b.WriteString(x.typ.String())
			b.WriteByte(',')
			b.WriteString(x.role)
			if x.principal != "" {
				b.WriteByte(',')
				b.WriteString(x.principal)
			}
			if x.labels != nil {
				b.WriteString(",{")
				for j, l := range x.labels.GetLabels() {
					if j > 0 {
						b.WriteString(", ")
					}
					b.WriteString(l.GetKey())
					if l.Value != nil {
						b.WriteString(": ")
						b.WriteString(l.GetValue())
					}
				}
				b.WriteByte('}')
			}
			b.WriteByte(')')
		}
		b.WriteString("])")
	}
	if d := r.Disk; d != nil {
		b.WriteByte('[')
		if s := d.Source; s != nil {
			b.WriteString(s.GetType().String())
			switch {
			case s.Id != nil || s.Profile != nil:
				b.WriteString("(" + s.GetVendor() + "," + s.GetId() + "," + s.GetProfile() + ")")
			case s.GetMount().Root != nil:
				b.WriteString(":" + s.GetMount().GetRoot())
			case s.GetPath().Root != nil:
				b.WriteString(":" + s.GetPath().GetRoot())
			}
		}
		if p := d.Persistence; p != nil {
			if d.Source != nil {
				b.WriteByte(',')
			}
			b.WriteString(p.GetId())
		}
		if v := d.Volume; v != nil {
			b.WriteByte(':')
			if v.HostPath != nil {
				b.WriteString(v.GetHostPath() + ":")
			}
			b.WriteString(v.GetContainerPath())
			if v.HostPath != nil && v.Mode != nil {
				b.WriteString(":" + strings.ToLower(v.GetMode().String()))
			}
		}
		b.WriteByte(']')
	}
	if r.Revocable != nil {
		b.WriteString("{REV}")
	}
	if r.Shared != nil {
		b.WriteString("<SHARED>")
	}
	b.WriteByte(':')
	b.WriteString(ValueString(r))
}

// ValueString renders a resource's value in Mesos' syntax: "4", "0.5",
// "[31000-32000, 33000-33010]", "{a, b}". Values are shown normalized.
func ValueString(r *mesospb.Resource) string {
	switch r.GetType() {
	case mesospb.Value_SCALAR:
		return formatScalar(Round(r.GetScalar().GetValue()))
	case mesospb.Value_RANGES:
		if rangesCoalesced(r.GetRanges()) {
			var buf [16]Range
			return RangesString(appendRanges(buf[:0], r.GetRanges()))
		}
		return RangesString(FromRanges(r.GetRanges()))
	case mesospb.Value_SET:
		return setString(sortedSet(r.GetSet().GetItem()))
	}
	return ""
}

// Summarize totals resources by name as Mesos' operator endpoints show
// them (/state, /slaves): scalars as numbers, ranges and sets as strings.
func Summarize(rs Resources) map[string]any {
	out := map[string]any{}
	scalars := map[string]int64{}
	ranges := map[string][]Range{}
	sets := map[string][]string{}
	for _, r := range rs {
		if !valid(r) {
			continue
		}
		name := r.GetName()
		switch r.GetType() {
		case mesospb.Value_SCALAR:
			n, _ := toFixed(r.GetScalar().GetValue())
			scalars[name] = addFixed(scalars[name], n)
		case mesospb.Value_RANGES:
			ranges[name] = appendRanges(ranges[name], r.GetRanges())
		case mesospb.Value_SET:
			sets[name] = setUnion(sets[name], sortedSet(r.GetSet().GetItem()))
		}
	}
	for name, n := range scalars {
		out[name] = fromFixed(n)
	}
	for name, rr := range ranges {
		out[name] = RangesString(coalesceInPlace(rr))
	}
	for name, s := range sets {
		out[name] = setString(s)
	}
	return out
}

// AttributeString renders an attribute's value as Mesos does.
func AttributeString(a *mesospb.Attribute) string {
	switch a.GetType() {
	case mesospb.Value_SCALAR:
		return formatScalar(a.GetScalar().GetValue())
	case mesospb.Value_RANGES:
		return RangesString(FromRanges(a.GetRanges()))
	case mesospb.Value_SET:
		return setString(a.GetSet().GetItem())
	case mesospb.Value_TEXT:
		return a.GetText().GetValue()
	}
	return ""
}

// AttributesString renders attributes in the agent flag syntax that
// ParseAttributes reads back: "rack:r1;zone:a;level:2".
func AttributesString(as []*mesospb.Attribute) string {
	var b strings.Builder
	for i, a := range as {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(a.GetName())
		b.WriteByte(':')
		b.WriteString(AttributeString(a))
	}
	return b.String()
}
