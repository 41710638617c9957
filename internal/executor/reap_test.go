package executor

import (
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// group starts a command in a process group of its own, as the runtime
// starts containers, and reaps it when it ends.
func group(t *testing.T, script string) (*exec.Cmd, chan struct{}) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-done })
	return cmd, done
}

func statStart(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[19]
}

func pidFile(t *testing.T, runDir, pod, name string, pid int, start string) string {
	t.Helper()
	dir := filepath.Join(runDir, "pods", pod, "pids")
	os.MkdirAll(dir, 0o755)
	f := filepath.Join(dir, name+".pid")
	if err := os.WriteFile(f, []byte(fmt.Sprintf("%d %s\n", pid, start)), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestReapEarlierRuns(t *testing.T) {
	runs := filepath.Join(t.TempDir(), "executors", "km-executor-1", "runs")
	old, own := filepath.Join(runs, "old"), filepath.Join(runs, "own")
	os.MkdirAll(own, 0o755)

	plain, plainDone := group(t, "sleep 300")
	stubborn, stubbornDone := group(t, `trap "" TERM; while true; do sleep 0.05; done`)
	stranger, strangerDone := group(t, "sleep 300")
	mine, mineDone := group(t, "sleep 300")
	pidFile(t, old, "u1", "web", plain.Process.Pid, statStart(t, plain.Process.Pid))
	pidFile(t, old, "u1", "side", stubborn.Process.Pid, statStart(t, stubborn.Process.Pid))
	// The pid was reused by someone else since: the start time differs.
	pidFile(t, old, "u2", "c", stranger.Process.Pid, "1")
	ownFile := pidFile(t, own, "u3", "c", mine.Process.Pid, statStart(t, mine.Process.Pid))

	n := ReapEarlierRuns(own, 300*time.Millisecond, log.New(io.Discard, "", 0))
	if n != 2 {
		t.Errorf("ended %d groups, want 2", n)
	}
	for name, done := range map[string]chan struct{}{"plain": plainDone, "TERM-ignoring": stubbornDone} {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("the %s container of the earlier run still runs", name)
		}
	}
	for name, done := range map[string]chan struct{}{"stranger": strangerDone, "own run's": mineDone} {
		select {
		case <-done:
			t.Errorf("the %s process was ended", name)
		default:
		}
	}
	if _, err := os.Stat(ownFile); err != nil {
		t.Errorf("the own run's PID file: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(old, "pods", "*", "pids", "*.pid")); len(left) != 0 {
		t.Errorf("PID files of the earlier run left: %v", left)
	}
}

func TestReapOutsideMesosLayout(t *testing.T) {
	dir := t.TempDir()
	p, done := group(t, "sleep 300")
	pidFile(t, filepath.Join(dir, "sibling"), "u", "c", p.Process.Pid, statStart(t, p.Process.Pid))
	if n := ReapEarlierRuns(filepath.Join(dir, "sandbox"), time.Second, log.New(io.Discard, "", 0)); n != 0 {
		t.Errorf("ended %d groups outside a runs directory", n)
	}
	select {
	case <-done:
		t.Error("a process outside the Mesos layout was ended")
	default:
	}
}
