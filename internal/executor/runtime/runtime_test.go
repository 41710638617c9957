package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func wait(t *testing.T, c Container) Exit {
	t.Helper()
	select {
	case <-c.Done():
		return c.Exit()
	case <-time.After(30 * time.Second):
		t.Fatal("container did not end")
	}
	return Exit{}
}

func TestProcessRunsCommandsAndLogs(t *testing.T) {
	dir := t.TempDir()
	rt := NewProcess("km-test")
	log := filepath.Join(dir, "c.log")
	c, err := rt.Start(Spec{ID: "t1", Argv: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir, LogPath: log})
	if err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c); e.Code != 3 || e.Signal != 0 {
		t.Fatalf("exit %+v", e)
	}
	b, _ := os.ReadFile(log)
	if !strings.Contains(string(b), " stdout F out\n") || !strings.Contains(string(b), " stderr F err\n") {
		t.Fatalf("log %q", b)
	}
	if _, err := rt.Start(Spec{ID: "t2", LogPath: log}); err != ErrNoCommand {
		t.Fatalf("no command: %v", err)
	}
	if _, err := rt.Start(Spec{ID: "t3", Argv: []string{"no-such-binary"}, LogPath: log}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("missing binary: %v", err)
	}
}

func TestSignalReachesTheWholeGroup(t *testing.T) {
	dir := t.TempDir()
	rt := NewProcess("km-test")
	c, err := rt.Start(Spec{ID: "t4", Argv: []string{"sh", "-c", "sleep 300 & sleep 300"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir, LogPath: filepath.Join(dir, "l")})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	pgid := c.PID()
	c.Signal(syscall.SIGTERM)
	if e := wait(t, c); e.Signal != syscall.SIGTERM || e.Code != 143 {
		t.Fatalf("exit %+v", e)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(liveInGroup(pgid)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("processes %v of the group are alive after the container ended", liveInGroup(pgid))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// liveInGroup lists the processes of a group that are not zombies.
func liveInGroup(pgid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			pid, _ := strconv.Atoi(e.Name())
			out = append(out, pid)
		}
	}
	return out
}

func TestMemoryLimitOOMKilled(t *testing.T) {
	rt := NewProcess("km-test")
	if !rt.CgroupsEnforced() {
		t.Skip("cgroups are not writable on this machine: memory limits are not enforced here")
	}
	dir := t.TempDir()
	c, err := rt.Start(Spec{ID: "t5", Argv: []string{"sh", "-c", "x=$(head -c 300000000 /dev/zero | tr '\\0' a); echo ${#x}"},
		Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir, LogPath: filepath.Join(dir, "l"), MemoryLimit: 50 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c); !e.OOMKilled {
		t.Fatalf("a 300 MB allocation under a 50 MB limit: %+v", e)
	}
}

func TestLogRotation(t *testing.T) {
	dir := t.TempDir()
	l, err := openRotatingLog(filepath.Join(dir, "x.log"), 200)
	if err != nil {
		t.Fatal(err)
	}
	w := l.stream("stdout")
	for i := 0; i < 20; i++ {
		w.Write([]byte("0123456789012345678901234567890123456789\n"))
	}
	l.Close()
	st, _ := os.Stat(filepath.Join(dir, "x.log"))
	old, err := os.Stat(filepath.Join(dir, "x.log.1"))
	if err != nil || st.Size() > 200 || old.Size() > 200 {
		t.Fatalf("rotation: %v %v %v", st.Size(), old, err)
	}
}
