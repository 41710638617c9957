package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A PID file names a container's process group by its leader's pid and
// the leader's start time (field 22 of /proc/<pid>/stat, in clock ticks
// since boot): a pid alone may have been reused by a stranger since.

func writePIDFile(path string, pid int) error {
	start, err := startTime(pid)
	if err != nil {
		return fmt.Errorf("pid file %s: %v", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("pid file %s: %v", path, err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(fmt.Sprintf("%d %d\n", pid, start)), 0o644); err != nil {
		return fmt.Errorf("pid file %s: %v", path, err)
	}
	return os.Rename(tmp, path)
}

// maxPID is Linux's PID_MAX_LIMIT: no pid is larger. Bounding it keeps
// -pid within the kernel's 32-bit pid_t, so a garbage file can never turn
// into a kill of another (or every) group.
const maxPID = 1 << 22

// ParsePIDFile reads "<pid> <start time>". Pids 0 and 1 are refused:
// kill(-0) is the caller's own group and kill(-1) is every process.
func ParsePIDFile(b []byte) (pid int, start uint64, err error) {
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, errors.New("want \"<pid> <start time>\"")
	}
	pid, err = strconv.Atoi(f[0])
	if err != nil || pid <= 1 || pid > maxPID {
		return 0, 0, fmt.Errorf("bad pid %q", f[0])
	}
	start, err = strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("bad start time %q", f[1])
	}
	return pid, start, nil
}

// procStat is what the runtime needs of /proc/<pid>/stat.
type procStat struct {
	state byte   // field 3: R, S, D, Z (zombie), ...
	pgrp  int    // field 5
	start uint64 // field 22, clock ticks since boot
}

// parseStat reads /proc/<pid>/stat. The command name (field 2) may hold
// spaces and ')', so fields are counted after its last ')'.
func parseStat(stat []byte) (procStat, error) {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, errors.New("no command name in stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3; the start time is field 22.
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, errors.New("stat too short or malformed")
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return procStat{}, fmt.Errorf("bad process group %q", f[2])
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("bad start time %q", f[19])
	}
	return procStat{state: f[0][0], pgrp: pgrp, start: start}, nil
}

func readStat(pid string) (procStat, error) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

func startTime(pid int) (uint64, error) {
	st, err := readStat(strconv.Itoa(pid))
	return st.start, err
}

// liveGroups lists the process groups that have a member that is not a
// zombie. kill(-pgid, 0) cannot tell: a zombie stays in its group until it
// is reaped, and the children of a dead executor's containers are reaped
// by the host's init, late or (in some containers) never.
func liveGroups() map[int]bool {
	live := map[int]bool{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if c := e.Name()[0]; c < '0' || c > '9' {
			continue
		}
		st, err := readStat(e.Name())
		if err != nil || st.state == 'X' {
			continue
		}
		if st.state == 'Z' {
			// A leader thread that exited shows Z while its other
			// threads run on.
			if tasks, _ := os.ReadDir(filepath.Join("/proc", e.Name(), "task")); len(tasks) < 2 {
				continue
			}
		}
		live[st.pgrp] = true
	}
	return live
}

// TakePIDFile reads and removes a PID file the runtime wrote. ok tells
// whether its process group still runs: the pid is alive and is still the
// process that wrote the file (same start time), not a stranger that got
// the pid since, and something in its group is not a zombie. A file that
// is garbage, or names a dead or reused pid, is just removed.
func TakePIDFile(path string) (pid int, ok bool) {
	b, err := os.ReadFile(path)
	os.Remove(path)
	if err != nil {
		return 0, false
	}
	pid, start, err := ParsePIDFile(b)
	if err != nil {
		return 0, false
	}
	if now, err := startTime(pid); err != nil || now != start {
		return 0, false
	}
	return pid, liveGroups()[pid]
}

// EndGroups ends the process groups led by pids: SIGTERM to all, up to
// grace for them to go, then SIGKILL to those still there, which it
// returns. Only groups seen alive get the SIGKILL: once a group is gone
// its number may be a stranger's.
func EndGroups(pids []int, grace time.Duration) (killed []int) {
	var alive []int
	for _, pid := range pids {
		if syscall.Kill(-pid, syscall.SIGTERM) == nil {
			alive = append(alive, pid)
		}
	}
	deadline := time.Now().Add(grace)
	for len(alive) > 0 {
		live := liveGroups()
		var left []int
		for _, pid := range alive {
			if live[pid] {
				left = append(left, pid)
			}
		}
		alive = left
		if len(alive) == 0 || !time.Now().Before(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range alive {
		if syscall.Kill(-pid, syscall.SIGKILL) == nil {
			killed = append(killed, pid)
		}
	}
	return killed
}
