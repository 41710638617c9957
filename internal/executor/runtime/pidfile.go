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

// ParsePIDFile reads "<pid> <start time>".
func ParsePIDFile(b []byte) (pid int, start uint64, err error) {
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, errors.New("want \"<pid> <start time>\"")
	}
	pid, err = strconv.Atoi(f[0])
	if err != nil || pid <= 1 {
		return 0, 0, fmt.Errorf("bad pid %q", f[0])
	}
	start, err = strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("bad start time %q", f[1])
	}
	return pid, start, nil
}

// parseStartTime takes the start time out of /proc/<pid>/stat. The
// command name (field 2) may hold spaces and ')', so fields are counted
// after its last ')'.
func parseStartTime(stat []byte) (uint64, error) {
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("no command name in stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); the start time is field 22.
	if len(f) < 20 {
		return 0, errors.New("stat too short")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	return parseStartTime(b)
}

// ReapPIDFiles ends the process groups the given PID files name, if their
// leader is still the process that wrote the file: SIGTERM, up to grace,
// then SIGKILL. The files are removed. It returns the groups it ended.
func ReapPIDFiles(files []string, grace time.Duration) []int {
	var groups []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		os.Remove(f)
		if err != nil {
			continue
		}
		pid, start, err := ParsePIDFile(b)
		if err != nil {
			continue
		}
		if now, err := startTime(pid); err != nil || now != start {
			continue // gone, or the pid is another process's now
		}
		syscall.Kill(-pid, syscall.SIGTERM)
		groups = append(groups, pid)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) && anyAlive(groups) {
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range groups {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	return groups
}

func anyAlive(groups []int) bool {
	for _, pid := range groups {
		// The group lives while any member does.
		if syscall.Kill(-pid, 0) == nil {
			return true
		}
	}
	return false
}
