package resources

import (
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// Scalars are computed in thousandths, as Mesos does (values.cpp
// convertToFixed): 0.1 added ten times is exactly 1, and what was added
// can be subtracted again without drift. Up to maxScalar a float64 holds
// every thousandth, so Parse accepts no more. Sums may grow beyond it
// (cluster totals), up to maxFixed thousandths where they saturate; only
// larger values (or NaN) are invalid.
const (
	maxScalar = float64(1<<53) / 1000
	maxFixed  = int64(4e18) // twice fits an int64: a+b cannot overflow
)

// Round rounds a scalar to Mesos' precision of 0.001.
func Round(v float64) float64 {
	if n, ok := toFixed(v); ok {
		return fromFixed(n)
	}
	return v
}

// toFixed converts v to thousandths; ok is false for NaN and values
// beyond maxFixed thousandths either way.
func toFixed(v float64) (n int64, ok bool) {
	if !(v >= -float64(maxFixed)/1000 && v <= float64(maxFixed)/1000) { // also false for NaN
		return 0, false
	}
	return int64(math.Round(v * 1000)), true
}

// addFixed is a+b for valid amounts, saturating at maxFixed.
func addFixed(a, b int64) int64 { return min(a+b, maxFixed) }

// fromFixed is the float64 nearest to n/1000 (a single correctly rounded
// division), so equal amounts always print the same.
func fromFixed(n int64) float64 { return float64(n) / 1000 }

func formatScalar(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// Range is an inclusive range of values [Begin, End], such as ports.
type Range struct{ Begin, End uint64 }

// Coalesce sorts ranges and merges overlapping and adjacent ones; inverted
// ranges (Begin > End) are empty and dropped. The result is a new slice.
func Coalesce(rs []Range) []Range {
	if len(rs) == 0 {
		return nil
	}
	return coalesceInPlace(append([]Range(nil), rs...))
}

// coalesceInPlace is Coalesce reusing rs.
func coalesceInPlace(rs []Range) []Range {
	if isCoalesced(rs) {
		return rs
	}
	slices.SortFunc(rs, func(a, b Range) int {
		switch {
		case a.Begin < b.Begin:
			return -1
		case a.Begin > b.Begin:
			return 1
		}
		return 0
	})
	out := rs[:0]
	for _, r := range rs {
		if r.Begin > r.End {
			continue
		}
		if n := len(out); n > 0 && (r.Begin <= out[n-1].End || r.Begin-1 == out[n-1].End) {
			out[n-1].End = max(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

// isCoalesced: sorted, none inverted, none touching the next one.
func isCoalesced(rs []Range) bool {
	for i, r := range rs {
		if r.Begin > r.End {
			return false
		}
		if i > 0 && (rs[i-1].End == math.MaxUint64 || r.Begin <= rs[i-1].End+1) {
			return false
		}
	}
	return true
}

// Union is a ∪ b, coalesced.
func Union(a, b []Range) []Range {
	out := make([]Range, 0, len(a)+len(b))
	return coalesceInPlace(append(append(out, a...), b...))
}

// Minus is a \ b, coalesced. Inputs need not be coalesced.
func Minus(a, b []Range) []Range {
	return minus(nil, coalesceIfNeeded(a), coalesceIfNeeded(b))
}

// Intersect is a ∩ b, coalesced. Inputs need not be coalesced.
func Intersect(a, b []Range) []Range {
	return intersect(nil, coalesceIfNeeded(a), coalesceIfNeeded(b))
}

func coalesceIfNeeded(rs []Range) []Range {
	if isCoalesced(rs) {
		return rs
	}
	return Coalesce(rs)
}

// minus appends a \ b to dst; a and b are coalesced, and so is the result.
// One pass over both, as both are sorted.
func minus(dst, a, b []Range) []Range {
	j := 0
	for _, r := range a {
		for j < len(b) && b[j].End < r.Begin {
			j++
		}
		begin, usedUp := r.Begin, false
		for k := j; k < len(b) && b[k].Begin <= r.End; k++ {
			if b[k].Begin > begin {
				dst = append(dst, Range{begin, b[k].Begin - 1})
			}
			if b[k].End >= r.End {
				usedUp = true
				break
			}
			begin = b[k].End + 1
		}
		if !usedUp {
			dst = append(dst, Range{begin, r.End})
		}
	}
	return dst
}

// intersect appends a ∩ b to dst; a and b are coalesced.
func intersect(dst, a, b []Range) []Range {
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		lo, hi := max(a[i].Begin, b[j].Begin), min(a[i].End, b[j].End)
		if lo <= hi {
			dst = append(dst, Range{lo, hi})
		}
		if a[i].End < b[j].End {
			i++
		} else {
			j++
		}
	}
	return dst
}

// subsetRanges reports whether b ⊆ a; both are coalesced, so each range
// of b must lie inside a single range of a.
func subsetRanges(a, b []Range) bool {
	i := 0
	for _, r := range b {
		for i < len(a) && a[i].End < r.Begin {
			i++
		}
		if i == len(a) || a[i].Begin > r.Begin || a[i].End < r.End {
			return false
		}
	}
	return true
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

// Count is how many values the ranges hold (overlaps counted once),
// at most math.MaxUint64 (the full range holds one more).
func Count(rs []Range) uint64 {
	var n uint64
	for _, r := range coalesceIfNeeded(rs) {
		d := r.End - r.Begin // one less than the size, which may not fit
		if n+d < n || n+d == math.MaxUint64 {
			return math.MaxUint64
		}
		n += d + 1
	}
	return n
}

// RangesString renders ranges as Mesos does: "[31000-32000, 33000-33010]".
func RangesString(rs []Range) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, r := range rs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatUint(r.Begin, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatUint(r.End, 10))
	}
	b.WriteByte(']')
	return b.String()
}

// FromRanges reads a Mesos ranges value, coalesced and sorted (a new slice).
func FromRanges(v *mesospb.Value_Ranges) []Range {
	return readRanges(nil, v)
}

// readRanges appends v's ranges to dst and coalesces what it appended.
// Callers pass a stack buffer to keep the hot paths free of allocations.
func readRanges(dst []Range, v *mesospb.Value_Ranges) []Range {
	n := len(dst)
	dst = slices.Grow(dst, len(v.GetRange()))
	for _, r := range v.GetRange() {
		dst = append(dst, Range{r.GetBegin(), r.GetEnd()})
	}
	c := coalesceInPlace(dst[n:])
	return dst[:n+len(c)]
}

// rangesCoalesced tells whether a ranges value is already in the form the
// package keeps, without copying it.
func rangesCoalesced(v *mesospb.Value_Ranges) bool {
	rs := v.GetRange()
	for i, r := range rs {
		b, e := r.GetBegin(), r.GetEnd()
		if b > e {
			return false
		}
		if i > 0 {
			pe := rs[i-1].GetEnd()
			if pe == math.MaxUint64 || b <= pe+1 {
				return false
			}
		}
	}
	return true
}

// ToRanges writes ranges as a Mesos value.
func ToRanges(rs []Range) *mesospb.Value_Ranges {
	v := &mesospb.Value_Ranges{}
	fillRanges(v, rs, nil)
	return v
}

// rangeBox holds a Value_Range and its two fields in one allocation
// (proto2 fields are pointers: three allocations otherwise).
type rangeBox struct {
	m          mesospb.Value_Range
	begin, end uint64
}

// fillRanges writes rs into v. Ranges that are in reuse (coalesced, as
// the package keeps them) are shared rather than built again: taking one
// port out of 200 ranges builds two, not 201.
func fillRanges(v *mesospb.Value_Ranges, rs []Range, reuse []*mesospb.Value_Range) {
	if len(rs) == 0 {
		return
	}
	v.Range = make([]*mesospb.Value_Range, len(rs))
	missing, j := 0, 0
	for i, r := range rs {
		for j < len(reuse) && reuse[j].GetEnd() < r.Begin {
			j++
		}
		if j < len(reuse) && reuse[j].GetBegin() == r.Begin && reuse[j].GetEnd() == r.End {
			v.Range[i] = reuse[j]
		} else {
			missing++
		}
	}
	if missing == 0 {
		return
	}
	boxes := make([]rangeBox, missing)
	for i, r := range rs {
		if v.Range[i] != nil {
			continue
		}
		b := &boxes[len(boxes)-missing]
		missing--
		b.begin, b.end = r.Begin, r.End
		b.m.Begin, b.m.End = &b.begin, &b.end
		v.Range[i] = &b.m
	}
}

// Sets are kept sorted without duplicates, so that they compare and merge
// in one pass.

func setSorted(items []string) bool {
	for i := 1; i < len(items); i++ {
		if items[i-1] >= items[i] {
			return false
		}
	}
	return true
}

// sortedSet returns items sorted without duplicates, reusing items when
// they already are.
func sortedSet(items []string) []string {
	if setSorted(items) {
		return items
	}
	s := slices.Clone(items)
	slices.Sort(s)
	return slices.Compact(s)
}

func setUnion(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] < b[j]:
			out = append(out, a[i])
			i++
		case a[i] > b[j]:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i, j = i+1, j+1
		}
	}
	return append(append(out, a[i:]...), b[j:]...)
}

func setMinus(a, b []string) []string {
	out := make([]string, 0, len(a))
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j < len(b) && b[j] == x {
			continue
		}
		out = append(out, x)
	}
	return out
}

func setIntersect(a, b []string) []string {
	var out []string
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j < len(b) && b[j] == x {
			out = append(out, x)
		}
	}
	return out
}

func setSubset(a, b []string) bool { // b ⊆ a
	i := 0
	for _, x := range b {
		for i < len(a) && a[i] < x {
			i++
		}
		if i == len(a) || a[i] != x {
			return false
		}
	}
	return true
}

func setString(items []string) string { return "{" + strings.Join(items, ", ") + "}" }
