package execclient

import (
	"strings"
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	week := 7 * 24 * time.Hour
	for s, want := range map[string]time.Duration{
		// What Mesos agents write (executor-environment.txt, agent flags).
		"5secs": 5 * time.Second, "15mins": 15 * time.Minute, "2secs": 2 * time.Second,
		"1.5hrs": 90 * time.Minute, "100ms": 100 * time.Millisecond, "10us": 10 * time.Microsecond,
		"3ns": 3, "1days": 24 * time.Hour, "2weeks": 2 * week,
		// stout's number is lexical_cast<double> of [0-9.]+.
		"0ns": 0, "0.5secs": 500 * time.Millisecond, ".5secs": 500 * time.Millisecond, "1.secs": time.Second,
		"007mins": 7 * time.Minute, "0.1secs": 100 * time.Millisecond, "1.025mins": 61500 * time.Millisecond,
		"0.0000000001secs": 0, "0.0000000005secs": 1, // rounded to the nearest ns
		"15250weeks": 15250 * week, "9223372036854775807ns": 1<<63 - 1,
		"00000000000000000000000000000000001ns": 1,
	} {
		got, err := ParseDuration(s)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for s, why := range map[string]string{
		"":                      "expected a number followed by a unit",
		"5":                     "the unit is missing",
		"secs":                  "expected a number",
		"5 secs":                `unknown unit " secs"`,
		" 5secs":                "expected a number",
		"5secs ":                `unknown unit "secs "`,
		"5s":                    `unknown unit "s"`,
		"5sec":                  `unknown unit "sec"`,
		"5SECS":                 `unknown unit "SECS"`,
		"-5secs":                "never negative",
		"+5secs":                "expected a number",
		"1e3us":                 `unknown unit "e3us"`,
		"1.2.3secs":             "more than one decimal point",
		".secs":                 "no digits",
		"9223372036854775808ns": "out of range",
		"15251weeks":            "out of range",
		"5secs5":                `unknown unit "secs5"`,
		"inf secs":              "expected a number",
	} {
		_, err := ParseDuration(s)
		if err == nil || !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), strings.TrimSpace(s)) {
			t.Errorf("ParseDuration(%q) error %v; want one quoting the input and saying %q", s, err, why)
		}
	}
}

// What stout's operator<< prints: the unit the duration reaches, or the next
// smaller one if that gives a whole number, else 15 significant digits.
func TestFormatDurationAsMesos(t *testing.T) {
	week := 7 * 24 * time.Hour
	for d, want := range map[time.Duration]string{
		0:                               "0ns",
		999:                             "999ns",
		time.Microsecond:                "1us",
		1500 * time.Nanosecond:          "1500ns",
		100 * time.Millisecond:          "100ms",
		1500 * time.Microsecond:         "1500us",
		5 * time.Second:                 "5secs",
		2 * time.Second:                 "2secs",
		1500 * time.Millisecond:         "1500ms",
		90 * time.Second:                "90secs",
		15 * time.Minute:                "15mins",
		90 * time.Minute:                "90mins",
		36 * time.Hour:                  "36hrs",
		24 * time.Hour:                  "1days",
		10 * 24 * time.Hour:             "10days",
		2 * week:                        "2weeks",
		1500500 * time.Microsecond:      "1.5005secs", // neither whole secs nor whole ms
		61500 * time.Millisecond:        "1.025mins",
		90500 * time.Millisecond:        "90500ms", // 1.50833333333333mins would not read back
		week + time.Nanosecond:          "604800000000001ns",
		time.Duration(1<<63 - 1):        "9223372036854775807ns",
		-5 * time.Second:                "-5secs",
		time.Duration(-1 << 63):         "-9223372036854775808ns",
		15*time.Minute + 30*time.Second: "930secs",
		time.Hour + time.Second + time.Nanosecond: "3601000000001ns",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%d) = %q; want %q", int64(d), got, want)
		}
	}
}

func TestDurationRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 999, 1000, 1001, 1e9 + 1, 61500 * time.Millisecond, 1<<63 - 1, 1<<62 + 12345, 7 * 24 * time.Hour / 3} {
		checkRoundTrip(t, d)
	}
}

func checkRoundTrip(t *testing.T, d time.Duration) {
	t.Helper()
	s := FormatDuration(d)
	if d < 0 {
		if !strings.HasPrefix(s, "-") {
			t.Fatalf("FormatDuration(%d) = %q has no sign", int64(d), s)
		}
		return
	}
	back, err := ParseDuration(s)
	if err != nil || back != d {
		t.Fatalf("FormatDuration(%d) = %q reads back as %d, %v", int64(d), s, int64(back), err)
	}
}

// FuzzDuration: no input makes ParseDuration panic, every duration it
// accepts prints and reads back to itself, and so does every int64.
func FuzzDuration(f *testing.F) {
	for _, s := range []string{"5secs", "15mins", "2secs", "1.5hrs", "100ms", "10us", "3ns", "1days", "2weeks",
		"-3ms", "0ns", "1e3us", ".5secs", "1.2.3secs", "9223372036854775808ns", "15251weeks", "1.0000000005secs"} {
		f.Add(s, int64(0))
	}
	f.Add("", int64(1234567891))
	f.Add("", int64(-1<<63))
	f.Add("", int64(1<<63-1))
	f.Add("", int64(61500*time.Millisecond))
	f.Fuzz(func(t *testing.T, s string, n int64) {
		if d, err := ParseDuration(s); err == nil {
			if d < 0 {
				t.Fatalf("ParseDuration(%q) = %d: negative", s, int64(d))
			}
			checkRoundTrip(t, d)
		} else if err.Error() == "" {
			t.Fatalf("ParseDuration(%q): empty error", s)
		}
		checkRoundTrip(t, time.Duration(n))
	})
}
