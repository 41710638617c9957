package execclient

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Mesos duration units (stout's Duration), largest first.
var units = []struct {
	name string
	d    time.Duration
}{
	{"weeks", 7 * 24 * time.Hour},
	{"days", 24 * time.Hour},
	{"hrs", time.Hour},
	{"mins", time.Minute},
	{"secs", time.Second},
	{"ms", time.Millisecond},
	{"us", time.Microsecond},
	{"ns", time.Nanosecond},
}

// ParseDuration reads a Mesos duration string: a number and a unit among
// ns, us, ms, secs, mins, hrs, days, weeks ("5secs", "1.5hrs", "15mins").
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.' || t[i] == '-' || t[i] == '+' || t[i] == 'e' && i > 0 && i+1 < len(t) && (t[i+1] >= '0' && t[i+1] <= '9' || t[i+1] == '-')) {
		i++
	}
	num, unit := t[:i], t[i:]
	if num == "" {
		return 0, fmt.Errorf("%q is not a Mesos duration: expected a number and a unit (ns, us, ms, secs, mins, hrs, days, weeks), e.g. 5secs", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a Mesos duration: %q is not a number", s, num)
	}
	for _, u := range units {
		if u.name == unit {
			d := v * float64(u.d)
			if d > math.MaxInt64 || d < math.MinInt64 {
				return 0, fmt.Errorf("%q is not a Mesos duration: out of range", s)
			}
			return time.Duration(d), nil
		}
	}
	return 0, fmt.Errorf("%q is not a Mesos duration: unknown unit %q (use ns, us, ms, secs, mins, hrs, days or weeks)", s, unit)
}

// FormatDuration prints d as Mesos does: in the largest unit in which it is
// at least 1, possibly fractional ("5secs", "15mins", "1.5hrs").
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0ns"
	}
	abs := d
	if abs < 0 {
		abs = -abs
	}
	for _, u := range units {
		if abs >= u.d {
			if d%u.d == 0 {
				return strconv.FormatInt(int64(d/u.d), 10) + u.name
			}
			// A fraction is used only if it reads back exactly; otherwise
			// a smaller unit says it precisely.
			out := strconv.FormatFloat(float64(d)/float64(u.d), 'f', -1, 64) + u.name
			if back, err := ParseDuration(out); err == nil && back == d {
				return out
			}
		}
	}
	return strconv.FormatInt(int64(d), 10) + "ns"
}
