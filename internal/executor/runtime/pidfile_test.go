package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPIDFileWhileRunning(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids", "c.pid")
	c, err := NewProcess("km-test").Start(Spec{ID: "pidfile", Argv: []string{"sleep", "300"}, Env: []string{"PATH=" + os.Getenv("PATH")},
		Dir: dir, LogPath: filepath.Join(dir, "c.log"), PIDFile: pidFile})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("no PID file while the container runs: %v", err)
	}
	pid, start, err := ParsePIDFile(b)
	want, _ := startTime(c.PID())
	if err != nil || pid != c.PID() || start != want || start == 0 {
		t.Fatalf("PID file %q: pid %d start %d (%v); want pid %d start %d", b, pid, start, err, c.PID(), want)
	}
	c.Signal(9)
	<-c.Done()
	if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
		t.Fatalf("PID file still there after the container ended: %v", err)
	}
}

func TestParsePIDFile(t *testing.T) {
	for _, tc := range []struct {
		in    string
		pid   int
		start uint64
		err   string
	}{
		{"1234 56789\n", 1234, 56789, ""},
		{"1234", 0, 0, "want"},
		{"1 5", 0, 0, "bad pid"}, // never init
		{"-3 5", 0, 0, "bad pid"},
		{"12 x", 0, 0, "bad start time"},
		{"12 5 7", 0, 0, "want"},
	} {
		pid, start, err := ParsePIDFile([]byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: %v, want an error with %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || pid != tc.pid || start != tc.start {
			t.Errorf("%q: %d %d %v", tc.in, pid, start, err)
		}
	}
}

func TestParseStartTime(t *testing.T) {
	rest := "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20"
	for _, comm := range []string{"(sh)", "(a b) (c))", "()"} {
		got, err := parseStartTime([]byte(fmt.Sprintf("42 %s %s", comm, rest)))
		if err != nil || got != 777 {
			t.Errorf("comm %s: %d %v, want 777", comm, got, err)
		}
	}
	if _, err := parseStartTime([]byte("42 (sh) S 1 2")); err == nil {
		t.Error("a short stat parsed")
	}
}

func FuzzParsePIDFile(f *testing.F) {
	for _, s := range []string{"1234 56789\n", "", "1 2 3", "99999999999999999999 1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pid, start, err := ParsePIDFile(b)
		if err == nil {
			if pid <= 1 {
				t.Fatalf("%q: pid %d accepted", b, pid)
			}
			again, start2, err := ParsePIDFile([]byte(fmt.Sprintf("%d %d", pid, start)))
			if err != nil || again != pid || start2 != start {
				t.Fatalf("%q: no round trip", b)
			}
		}
		parseStartTime(b)
	})
}
