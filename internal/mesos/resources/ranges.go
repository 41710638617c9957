package resources

import (
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// Range is an inclusive range [Begin, End].
type Range struct{ Begin, End uint64 }

// FromRanges reads a Mesos ranges value, coalesced and sorted.
func FromRanges(r *mesospb.Value_Ranges) []Range {
	out := make([]Range, 0, len(r.GetRange()))
	for _, x := range r.GetRange() {
		b, e := x.GetBegin(), x.GetEnd()
		if b > e {
			continue // an inverted range is empty
		}
		out = append(out, Range{b, e})
	}
	return Coalesce(out)
}

// ToRanges writes ranges as a Mesos value.
func ToRanges(rs []Range) *mesospb.Value_Ranges {
	out := &mesospb.Value_Ranges{Range: make([]*mesospb.Value_Range, 0, len(rs))}
	for _, r := range rs {
		out.Range = append(out.Range, &mesospb.Value_Range{Begin: proto.Uint64(r.Begin), End: proto.Uint64(r.End)})
	}
	return out
}

// Coalesce sorts ranges and merges overlapping and adjacent ones.
func Coalesce(rs []Range) []Range {
	if len(rs) == 0 {
		return nil
	}
	s := append([]Range(nil), rs...)
	sort.Slice(s, func(i, j int) bool { return s[i].Begin < s[j].Begin })
	out := s[:1]
	for _, r := range s[1:] {
		last := &out[len(out)-1]
		if r.Begin <= last.End || (last.End != ^uint64(0) && r.Begin == last.End+1) {
			if r.End > last.End {
				last.End = r.End
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// Union is a ∪ b.
func Union(a, b []Range) []Range { return Coalesce(append(append([]Range(nil), a...), b...)) }

// Minus is a \ b.
func Minus(a, b []Range) []Range {
	out := Coalesce(a)
	for _, cut := range Coalesce(b) {
		next := out[:0:0]
		for _, s := range out {
			if cut.End < s.Begin || cut.Begin > s.End {
				next = append(next, s)
				continue
			}
			if cut.Begin > s.Begin {
				next = append(next, Range{s.Begin, cut.Begin - 1})
			}
			if cut.End < s.End {
				next = append(next, Range{cut.End + 1, s.End})
			}
		}
		out = next
	}
	return out
}

// InRanges tells whether p lies in one of rs.
func InRanges(p uint64, rs []Range) bool {
	for _, r := range rs {
		if p >= r.Begin && p <= r.End {
			return true
		}
	}
	return false
}

// Count is how many values the ranges hold.
func Count(rs []Range) uint64 {
	var n uint64
	for _, r := range Coalesce(rs) {
		n += r.End - r.Begin + 1
	}
	return n
}

// RangesString renders ranges as Mesos does: "[31000-32000, 33000-33010]".
func RangesString(rs []Range) string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		parts = append(parts, strconv.FormatUint(r.Begin, 10)+"-"+strconv.FormatUint(r.End, 10))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// PortError is a fixed port that the offered ranges do not hold.
type PortError struct {
	Port    uint64
	Offered []Range
}

func (e *PortError) Error() string {
	return "port " + strconv.FormatUint(e.Port, 10) + " is not in the offered ranges " + RangesString(e.Offered)
}

// AllocatePorts takes the fixed ports and any other n free ports from the
// "ports" of rs, never one twice. It returns the fixed ports followed by
// the n chosen ones, and what remains of rs.
func AllocatePorts(rs Resources, fixed []uint64, n int) ([]uint64, Resources, error) {
	free := Ports(rs)
	taken := make([]Range, 0, len(fixed)+n)
	out := make([]uint64, 0, len(fixed)+n)
	for _, p := range fixed {
		if !InRanges(p, free) {
			return nil, rs, &PortError{Port: p, Offered: Ports(rs)}
		}
		out = append(out, p)
		taken = append(taken, Range{p, p})
		free = Minus(free, []Range{{p, p}})
	}
	for _, r := range free {
		for p := r.Begin; p <= r.End && len(out) < len(fixed)+n; p++ {
			out = append(out, p)
			taken = append(taken, Range{p, p})
			if p == r.End {
				break
			}
		}
	}
	if len(out) < len(fixed)+n {
		return nil, rs, errorf("%d free ports wanted but only %d are offered (%s)", n, len(out)-len(fixed), RangesString(Ports(rs)))
	}
	// Take them from the ports resources, role by role.
	rest := make(Resources, 0, len(rs))
	remaining := Coalesce(taken)
	for _, r := range rs {
		if r.GetName() != "ports" || r.GetType() != mesospb.Value_RANGES {
			rest = append(rest, r)
			continue
		}
		have := FromRanges(r.GetRanges())
		left := Minus(have, remaining)
		remaining = Minus(remaining, have)
		if len(left) > 0 {
			c := clone(r)
			c.Ranges = ToRanges(left)
			rest = append(rest, c)
		}
	}
	return out, rest, nil
}
