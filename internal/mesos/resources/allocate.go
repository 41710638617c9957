package resources

import (
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// Allocate takes what one task wants out of an offer: amounts of scalars,
// specific ranges and specific set items (want's allocation info is
// ignored). Like Mesos' Resources::find it looks first in the reservation
// of each wanted resource (when reserved), then in unreserved resources,
// then in any other reservation, so a task for role "k8s" asking for
// cpus(k8s):3 uses its reserved cpus before the shared ones and still
// fits when only unreserved ones are left.
//
// taken keeps the roles, reservations and allocation info of the offer,
// as the resources of a TaskInfo must; rest is what remains for the next
// task. When the offer lacks something, the error says what, and rest is
// the offer unchanged.
func Allocate(offer, want Resources) (taken, rest Resources, err error) {
	rest = normalized(offer, 0)
	for _, w := range normalized(want, 0) {
		var short *shortage
		if taken, rest, short = allocate(taken, rest, w); short != nil {
			return nil, offer, notOffered(w, offer, short)
		}
	}
	return taken, rest, nil
}

// shortage is what allocate could not find of a ranges or set resource.
type shortage struct {
	ranges []Range
	set    []string
}

// allocate takes w out of rest (normalized, modified in place).
func allocate(taken, rest Resources, w *mesospb.Resource) (Resources, Resources, *shortage) {
	if atomic(w) {
		for i, x := range rest {
			if kindMatch(x, w) && sameReservations(x, w) && sameValue(x, w) {
				return append(taken, x), append(rest[:i], rest[i+1:]...), nil
			}
		}
		return nil, nil, &shortage{}
	}
	var (
		scalar   int64 // what is still wanted, by type
		ranges   []Range
		set      []string
		wantRole = ReservationRole(w)
	)
	// A port or item wanted twice (under two roles) is taken once.
	switch w.GetType() {
	case mesospb.Value_SCALAR:
		scalar, _ = toFixed(w.GetScalar().GetValue())
	case mesospb.Value_RANGES:
		ranges = FromRanges(w.GetRanges())
		for _, x := range taken {
			if kindMatch(x, w) {
				ranges = minus(nil, ranges, FromRanges(x.GetRanges()))
			}
		}
	default:
		set = sortedSet(w.GetSet().GetItem())
		for _, x := range taken {
			if kindMatch(x, w) {
				set = setMinus(set, x.GetSet().GetItem())
			}
		}
	}
	if scalar == 0 && len(ranges) == 0 && len(set) == 0 {
		return taken, rest, nil
	}
	// Preference: w's own reservation, unreserved, any other reservation.
	for pass := 0; pass < 3; pass++ {
		for i, x := range rest {
			if x == nil || atomic(x) || !kindMatch(x, w) {
				continue
			}
			role := ReservationRole(x)
			switch {
			case pass == 0 && (wantRole == "*" || role != wantRole),
				pass == 1 && role != "*",
				pass == 2 && (role == "*" || role == wantRole):
				continue
			}
			var part, left *mesospb.Resource
			switch x.GetType() {
			case mesospb.Value_SCALAR:
				have, _ := toFixed(x.GetScalar().GetValue())
				n := min(have, scalar)
				if n == 0 {
					continue
				}
				scalar -= n
				part = withScalar(x, n)
				if have > n {
					left = withScalar(x, have-n)
				}
			case mesospb.Value_RANGES:
				have := FromRanges(x.GetRanges())
				got := intersect(nil, have, ranges)
				if len(got) == 0 {
					continue
				}
				ranges = minus(nil, ranges, got)
				part = withRanges(x, got)
				if l := minus(nil, have, got); len(l) > 0 {
					left = withRanges(x, l)
				}
			default:
				have := sortedSet(x.GetSet().GetItem())
				got := setIntersect(have, set)
				if len(got) == 0 {
					continue
				}
				set = setMinus(set, got)
				part = withSet(x, got)
				if l := setMinus(have, got); len(l) > 0 {
					left = withSet(x, l)
				}
			}
			taken = addTo(taken, part)
			rest[i] = left // nil entries are removed below
			if scalar == 0 && len(ranges) == 0 && len(set) == 0 {
				return taken, compact(rest), nil
			}
		}
	}
	return nil, nil, &shortage{ranges, set}
}

func compact(rs Resources) Resources {
	out := rs[:0]
	for _, r := range rs {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

// notOffered explains what of w the offer lacks, with what it has of it.
func notOffered(w *mesospb.Resource, offer Resources, s *shortage) error {
	if atomic(w) {
		return fmt.Errorf("%s is not offered", Describe(Resources{w}))
	}
	var have Resources
	var ranges []Range
	for _, x := range offer {
		if named(x, w.GetName()) && kindMatch(x, w) && !atomic(x) {
			have = append(have, x)
			ranges = appendRanges(ranges, x.GetRanges())
		}
	}
	name := w.GetName()
	switch w.GetType() {
	case mesospb.Value_SCALAR:
		wanted, _ := toFixed(w.GetScalar().GetValue())
		return fmt.Errorf("not enough %s: %s wanted, %s offered (%s)", name,
			formatScalar(fromFixed(wanted)), formatScalar(Scalar(have, name)), describeOrNone(have))
	case mesospb.Value_RANGES:
		return fmt.Errorf("%s %s are not in the offered ranges %s", name, RangesString(s.ranges), RangesString(coalesceInPlace(ranges)))
	default:
		return fmt.Errorf("%s %s are not in the offered sets (%s)", name, setString(s.set), describeOrNone(have))
	}
}

func describeOrNone(rs Resources) string {
	if len(rs) == 0 {
		return "none"
	}
	return Describe(rs)
}

// rangesType is shared by the resources AllocatePorts builds, which are
// read-only like all others.
var rangesType = mesospb.Value_RANGES.Enum()

// PortError is a specific port that the offered ranges do not hold.
type PortError struct {
	Port    uint64
	Offered []Range
}

func (e *PortError) Error() string {
	return "port " + strconv.FormatUint(e.Port, 10) + " is not in the offered ranges " + RangesString(e.Offered)
}

// AllocatePorts takes host ports out of an offer's "ports": the specific
// ones in fixed, then n more, any that are free (the lowest, so that what
// remains stays in few ranges). A port is never given twice. ports holds
// fixed in its order, then the n others ascending; taken is the ports
// resources for the TaskInfo (keeping the offer's roles and allocation
// info, split by role when the ports come from several); rest is what
// remains of the offer. (An offer holds each port once, as Mesos never
// offers a port twice.) A specific port that is not offered is a
// *PortError; on any error rest is the offer unchanged.
func AllocatePorts(offer Resources, fixed []uint64, n int) (ports []uint64, taken, rest Resources, err error) {
	plain := &mesospb.Resource{Name: proto.String("ports"), Type: rangesType}
	var offered []Range
	for _, r := range offer {
		if kindMatch(r, plain) && !atomic(r) {
			offered = appendRanges(offered, r.GetRanges())
		}
	}
	offered = coalesceInPlace(offered)
	if n < 0 {
		n = 0
	}
	ports = make([]uint64, 0, len(fixed)+min(n, 64))
	var chosen []Range
	free := offered
	for _, p := range fixed {
		if !InRanges(p, free) {
			if InRanges(p, offered) {
				return nil, nil, offer, fmt.Errorf("port %d is asked for twice", p)
			}
			return nil, nil, offer, &PortError{Port: p, Offered: offered}
		}
		free = minus(nil, free, []Range{{p, p}})
		chosen = append(chosen, Range{p, p})
		ports = append(ports, p)
	}
	need := uint64(n)
	if free := Count(free); free < need {
		return nil, nil, offer, fmt.Errorf("%d more ports wanted but only %d are free in the offered ranges %s",
			n, free, RangesString(offered))
	}
	for _, r := range free {
		if need == 0 {
			break
		}
		end := r.End
		if end-r.Begin >= need {
			end = r.Begin + need - 1
		}
		chosen = append(chosen, Range{r.Begin, end})
		for p := r.Begin; ; p++ {
			ports = append(ports, p)
			if p == end {
				break
			}
		}
		need -= end - r.Begin + 1
	}
	if len(chosen) == 0 {
		return ports, nil, normalized(offer, 0), nil
	}
	plain.Ranges = ToRanges(coalesceInPlace(chosen))
	taken, rest, short := allocate(nil, normalized(offer, 0), plain)
	if short != nil { // cannot happen: chosen ⊆ offered
		return nil, nil, offer, notOffered(plain, offer, short)
	}
	return ports, taken, rest, nil
}
