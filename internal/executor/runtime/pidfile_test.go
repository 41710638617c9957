package runtime

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
		{"  77\t0 ", 77, 0, ""},
		{"4194304 9", 4194304, 9, ""},
		{"", 0, 0, "want"},
		{"1 5", 0, 0, "bad pid"}, // kill(-1) is every process
		{"0 5", 0, 0, "bad pid"}, // kill(-0) is our own group
		{"-3 5", 0, 0, "bad pid"},
		{"4194305 5", 0, 0, "bad pid"},    // above PID_MAX_LIMIT
		{"4294967298 5", 0, 0, "bad pid"}, // would wrap to 2 as a 32-bit pid_t
		{"12 -1", 0, 0, "bad start time"},
		{"12 18446744073709551616", 0, 0, "bad start time"},
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

func TestParseStat(t *testing.T) {
	// Fields 4 to 24; 5 (the group) is 2 and 22 (the start time) 777.
	rest := "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 20 21"
	for _, comm := range []string{"(sh)", "(a b) (c))", "()", "(x) Z 9 9 9)"} {
		got, err := parseStat([]byte(fmt.Sprintf("42 %s S %s", comm, rest)))
		if want := (procStat{state: 'S', pgrp: 2, start: 777}); err != nil || got != want {
			t.Errorf("comm %s: %+v %v, want %+v", comm, got, err, want)
		}
	}
	for _, bad := range []string{"42 (sh) S 1 2", "42 sh S " + rest, "42 (sh) S " + strings.Replace(rest, " 2 ", " x ", 1), "42 (sh) S " + strings.Replace(rest, "777", "-7", 1), "42 (sh) SS " + rest} {
		if st, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("%q parsed: %+v", bad, st)
		}
	}
	// And the real thing.
	st, err := readStat(strconv.Itoa(os.Getpid()))
	if err != nil || st.pgrp != syscall.Getpgrp() || st.start == 0 {
		t.Errorf("own stat: %+v %v, want pgrp %d", st, err, syscall.Getpgrp())
	}
}

// A group whose processes are all zombies (ended, not yet reaped by their
// parent) has ended: EndGroups neither waits for it nor SIGKILLs it.
func TestEndGroupsTakesZombiesForEnded(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	// Left unreaped, the group is a zombie after SIGTERM.
	begin := time.Now()
	killed := EndGroups([]int{cmd.Process.Pid}, 5*time.Second)
	if len(killed) != 0 || time.Since(begin) > 4*time.Second {
		t.Fatalf("a zombie group: killed %v after %v", killed, time.Since(begin))
	}
	if err := cmd.Wait(); err == nil || cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Fatalf("ended by %v, want SIGTERM", cmd.ProcessState)
	}
}

func FuzzParsePIDFile(f *testing.F) {
	for _, s := range []string{"1234 56789\n", "", "1 2 3", "99999999999999999999 1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pid, start, err := ParsePIDFile(b)
		if err == nil {
			if pid <= 1 || pid > maxPID {
				t.Fatalf("%q: pid %d accepted", b, pid)
			}
			again, start2, err := ParsePIDFile([]byte(fmt.Sprintf("%d %d", pid, start)))
			if err != nil || again != pid || start2 != start {
				t.Fatalf("%q: no round trip", b)
			}
		}
		// /proc is read with the same care: no input may panic it.
		parseStat(b)
	})
}
