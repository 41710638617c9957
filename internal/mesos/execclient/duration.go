package execclient

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// durationUnit is one of stout's Duration units, smallest first.
type durationUnit struct {
	name string
	ns   int64
}

var durationUnits = [...]durationUnit{
	{"ns", 1},
	{"us", int64(time.Microsecond)},
	{"ms", int64(time.Millisecond)},
	{"secs", int64(time.Second)},
	{"mins", int64(time.Minute)},
	{"hrs", int64(time.Hour)},
	{"days", 24 * int64(time.Hour)},
	{"weeks", 7 * 24 * int64(time.Hour)},
}

const unitList = "ns, us, ms, secs, mins, hrs, days or weeks"

// ParseDuration reads a Mesos duration string, as the agent writes them into
// an executor's environment ("5secs", "15mins", "1.5hrs"): what stout's
// Duration::parse accepts, that is decimal digits with at most one '.', then
// one of the units ns, us, ms, secs, mins, hrs, days, weeks, with nothing
// before, between or after (no sign, no exponent, no spaces).
//
// stout multiplies in floating point and truncates; this parser computes
// exactly and rounds to the nearest nanosecond, so that "0.1secs" is exactly
// 100ms and every string FormatDuration prints reads back to the same value.
// Values beyond time.Duration's range (about 292 years) are an error, where
// stout's arithmetic would silently overflow.
func ParseDuration(s string) (time.Duration, error) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unitName := s[:i], s[i:]
	if num == "" {
		if strings.HasPrefix(s, "-") {
			return 0, fmt.Errorf("%q is not a Mesos duration: Mesos durations are never negative", s)
		}
		return 0, fmt.Errorf("%q is not a Mesos duration: expected a number followed by a unit (%s), e.g. 5secs", s, unitList)
	}
	intPart, frac, _ := strings.Cut(num, ".")
	if strings.Contains(frac, ".") {
		return 0, fmt.Errorf("%q is not a Mesos duration: %q has more than one decimal point", s, num)
	}
	if intPart == "" && frac == "" {
		return 0, fmt.Errorf("%q is not a Mesos duration: %q has no digits", s, num)
	}
	if unitName == "" {
		return 0, fmt.Errorf("%q is not a Mesos duration: the unit is missing (%s), e.g. %ssecs", s, unitList, num)
	}
	var unit int64
	for _, u := range durationUnits {
		if u.name == unitName {
			unit = u.ns
		}
	}
	if unit == 0 {
		return 0, fmt.Errorf("%q is not a Mesos duration: unknown unit %q (use %s)", s, unitName, unitList)
	}
	digits := strings.TrimLeft(intPart+frac, "0")
	if digits == "" {
		return 0, nil
	}
	// ns = round(digits * unit / 10^len(frac)), exactly.
	n, _ := new(big.Int).SetString(digits, 10) // digits are all 0-9, cannot fail
	n.Mul(n, big.NewInt(unit))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
	q, r := n.QuoRem(n, den, new(big.Int))
	if r.Lsh(r, 1).Cmp(den) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, fmt.Errorf("%q is out of range: a duration can be at most %s (about 292 years)", s, FormatDuration(time.Duration(1<<63-1)))
	}
	return time.Duration(q.Int64()), nil
}

// FormatDuration prints d as Mesos (stout's operator<<) does, so that km's
// agent sets the same environment as a Mesos agent: the unit is the largest
// that d reaches ("5secs", "15mins", "2weeks"), unless d is not a whole
// number of it but is one of the next smaller unit, which is then used
// ("90mins", "1500ms", "10days"); otherwise the value is fractional with 15
// significant digits ("1.025mins" for 61.5 seconds).
//
// Where stout's 15 digits would not say d exactly ("1.50833333333333mins"),
// this prints the largest unit in which d is a whole number instead
// ("90500ms"), so that ParseDuration(FormatDuration(d)) == d for every d >= 0.
// Negative durations get a leading '-' as in stout, though no Mesos parser
// reads them back.
func FormatDuration(d time.Duration) string {
	if d < 0 {
		if d == -d { // math.MinInt64 has no positive counterpart
			return "-" + strconv.FormatUint(uint64(1)<<63, 10) + "ns"
		}
		return "-" + FormatDuration(-d)
	}
	ns := int64(d)
	i := 0
	for i+1 < len(durationUnits) && ns >= durationUnits[i+1].ns {
		i++
	}
	u := durationUnits[i]
	if ns%u.ns == 0 {
		return strconv.FormatInt(ns/u.ns, 10) + u.name
	}
	if smaller := durationUnits[i-1]; ns%smaller.ns == 0 { // i > 0 here: everything is a whole number of ns
		return strconv.FormatInt(ns/smaller.ns, 10) + smaller.name
	}
	s := strconv.FormatFloat(float64(ns)/float64(u.ns), 'g', 15, 64)
	if exactly(s, u.ns, ns) {
		return s + u.name
	}
	for j := i - 1; ; j-- {
		if ns%durationUnits[j].ns == 0 {
			return strconv.FormatInt(ns/durationUnits[j].ns, 10) + durationUnits[j].name
		}
	}
}

// exactly reports whether the plain decimal s times unit is exactly ns, with
// no rounding by whichever parser reads it (stout truncates, ParseDuration
// rounds).
func exactly(s string, unit, ns int64) bool {
	intPart, frac, _ := strings.Cut(s, ".")
	n, ok := new(big.Int).SetString(intPart+frac, 10)
	if !ok {
		return false // an exponent: not a form Mesos parses
	}
	n.Mul(n, big.NewInt(unit))
	den := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil)
	q, r := n.QuoRem(n, den, new(big.Int))
	return r.Sign() == 0 && q.IsInt64() && q.Int64() == ns
}
