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
	// '[' in the agent's work dir: a glob over it would find nothing.
	runs := filepath.Join(t.TempDir(), "work[1]", "slaves", "a", "frameworks", "f", "executors", "km-executor-1", "runs")
	old, own := filepath.Join(runs, "old"), filepath.Join(runs, "own")
	os.MkdirAll(own, 0o755)
	// Mesos' link to the newest run, which is ours.
	if err := os.Symlink(own, filepath.Join(runs, "latest")); err != nil {
		t.Fatal(err)
	}

	plain, plainDone := group(t, "sleep 300")
	stubborn, stubbornDone := group(t, `trap "" TERM; while true; do sleep 0.05; done`)
	stranger, strangerDone := group(t, "sleep 300")
	mine, mineDone := group(t, "sleep 300")
	pidFile(t, old, "u1", "web", plain.Process.Pid, statStart(t, plain.Process.Pid))
	pidFile(t, old, "u1", "side", stubborn.Process.Pid, statStart(t, stubborn.Process.Pid))
	// The pid was reused by someone else since: the start time differs.
	pidFile(t, old, "u2", "c", stranger.Process.Pid, "1")
	// Garbage, and a pid that is not there.
	garbage := pidFile(t, old, "u2", "g", 0, "")
	os.WriteFile(garbage, []byte("0 0\n"), 0o644)
	pidFile(t, old, "u2", "dead", 1<<22, "5")
	ownFile := pidFile(t, own, "u3", "c", mine.Process.Pid, statStart(t, mine.Process.Pid))

	var logs strings.Builder
	const grace = 500 * time.Millisecond
	begin := time.Now()
	n, err := ReapEarlierRuns(own, grace, log.New(&logs, "", 0))
	took := time.Since(begin)
	if err != nil || n != 2 {
		t.Errorf("ended %d groups (%v), want 2", n, err)
	}
	for name, done := range map[string]chan struct{}{"plain": plainDone, "TERM-ignoring": stubbornDone} {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the %s container of the earlier run still runs", name)
		}
	}
	// The plain one went on SIGTERM; the one that ignores it was killed,
	// and only after the grace period.
	if sig := plain.ProcessState.Sys().(syscall.WaitStatus).Signal(); sig != syscall.SIGTERM {
		t.Errorf("the plain container ended by %v, want SIGTERM", sig)
	}
	if sig := stubborn.ProcessState.Sys().(syscall.WaitStatus).Signal(); sig != syscall.SIGKILL {
		t.Errorf("the TERM-ignoring container ended by %v, want SIGKILL", sig)
	}
	if took < grace {
		t.Errorf("SIGKILL after %v, before the grace period of %v", took, grace)
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
	if left := pidFiles(old); len(left) != 0 {
		t.Errorf("PID files of the earlier run left: %v", left)
	}
	want := []string{
		fmt.Sprintf("ending container process group %d left by an earlier executor run old: u1/side", stubborn.Process.Pid),
		fmt.Sprintf("ending container process group %d left by an earlier executor run old: u1/web", plain.Process.Pid),
		fmt.Sprintf("container process group %d outlived SIGTERM by %v: killed", stubborn.Process.Pid, grace),
	}
	if got := strings.Split(strings.TrimSpace(logs.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("log:\n%s\nwant:\n%s", logs.String(), strings.Join(want, "\n"))
	}

	// The own run named by Mesos' link is still the own run.
	if n, err := ReapEarlierRuns(filepath.Join(runs, "latest"), grace, log.New(io.Discard, "", 0)); n != 0 || err != nil {
		t.Errorf("through the latest link: ended %d groups (%v)", n, err)
	}
	select {
	case <-mineDone:
		t.Error("the own run's container was ended through the latest link")
	default:
	}
}

func TestReapOutsideMesosLayout(t *testing.T) {
	dir := t.TempDir()
	p, done := group(t, "sleep 300")
	pidFile(t, filepath.Join(dir, "sibling"), "u", "c", p.Process.Pid, statStart(t, p.Process.Pid))
	if n, err := ReapEarlierRuns(filepath.Join(dir, "sandbox"), time.Second, log.New(io.Discard, "", 0)); n != 0 || err != nil {
		t.Errorf("ended %d groups (%v) outside a runs directory", n, err)
	}
	select {
	case <-done:
		t.Error("a process outside the Mesos layout was ended")
	default:
	}
}
