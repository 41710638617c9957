package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// cgroups places containers in memory (and cpu) cgroups, v2 if the
// machine has the unified hierarchy mounted at /sys/fs/cgroup, else v1.
type cgroups struct {
	v2     bool
	memory string // v1: .../memory/<parent>; v2: /sys/fs/cgroup/<parent>
	cpu    string // v1 only
}

func writable(dir string) bool {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false
	}
	probe := filepath.Join(dir, "km-probe")
	if err := os.Mkdir(probe, 0o755); err != nil && !os.IsExist(err) {
		return false
	}
	os.Remove(probe)
	return true
}

// probeCgroups finds writable cgroups, or nil.
func probeCgroups(parent string) *cgroups {
	if parent == "" {
		parent = "km"
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dir := filepath.Join("/sys/fs/cgroup", parent)
		if writable(dir) {
			// Let children use the memory and cpu controllers.
			os.WriteFile(filepath.Join(filepath.Dir(dir), "cgroup.subtree_control"), []byte("+memory +cpu"), 0o644)
			os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu"), 0o644)
			return &cgroups{v2: true, memory: dir}
		}
		return nil
	}
	mem := filepath.Join("/sys/fs/cgroup/memory", parent)
	if !writable(mem) {
		return nil
	}
	cg := &cgroups{memory: mem}
	if cpu := filepath.Join("/sys/fs/cgroup/cpu", parent); writable(cpu) {
		cg.cpu = cpu
	}
	return cg
}

type containerCgroup struct {
	v2       bool
	dirs     []string
	memDir   string
	failBase int64
}

func (c *cgroups) create(id string, memLimit, cpuMillis int64) (*containerCgroup, error) {
	cc := &containerCgroup{v2: c.v2}
	mem := filepath.Join(c.memory, id)
	if err := os.MkdirAll(mem, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup %s: %v", mem, err)
	}
	cc.dirs = append(cc.dirs, mem)
	cc.memDir = mem
	if c.v2 {
		if memLimit > 0 {
			if err := os.WriteFile(filepath.Join(mem, "memory.max"), []byte(strconv.FormatInt(memLimit, 10)), 0o644); err != nil {
				return nil, fmt.Errorf("setting the memory limit: %v", err)
			}
			os.WriteFile(filepath.Join(mem, "memory.swap.max"), []byte("0"), 0o644)
		}
		if cpuMillis > 0 {
			os.WriteFile(filepath.Join(mem, "cpu.max"), []byte(fmt.Sprintf("%d 100000", cpuMillis*100)), 0o644)
		}
		return cc, nil
	}
	if memLimit > 0 {
		if err := os.WriteFile(filepath.Join(mem, "memory.limit_in_bytes"), []byte(strconv.FormatInt(memLimit, 10)), 0o644); err != nil {
			return nil, fmt.Errorf("setting the memory limit: %v", err)
		}
		os.WriteFile(filepath.Join(mem, "memory.memsw.limit_in_bytes"), []byte(strconv.FormatInt(memLimit, 10)), 0o644)
	}
	cc.failBase = readInt(filepath.Join(mem, "memory.failcnt"))
	if c.cpu != "" && cpuMillis > 0 {
		cpu := filepath.Join(c.cpu, id)
		if os.MkdirAll(cpu, 0o755) == nil {
			cc.dirs = append(cc.dirs, cpu)
			os.WriteFile(filepath.Join(cpu, "cpu.cfs_period_us"), []byte("100000"), 0o644)
			os.WriteFile(filepath.Join(cpu, "cpu.cfs_quota_us"), []byte(strconv.FormatInt(cpuMillis*100, 10)), 0o644)
		}
	}
	return cc, nil
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v
}

func (cc *containerCgroup) add(pid int) {
	for _, d := range cc.dirs {
		os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
	}
}

// oomKilled tells whether the kernel's OOM killer hit the cgroup.
func (cc *containerCgroup) oomKilled() bool {
	if cc.v2 {
		b, _ := os.ReadFile(filepath.Join(cc.memDir, "memory.events"))
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
				return true
			}
		}
		return false
	}
	b, _ := os.ReadFile(filepath.Join(cc.memDir, "memory.oom_control"))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "oom_kill" && f[1] != "0" {
			return true
		}
	}
	return false
}

func (cc *containerCgroup) killAll() {
	for _, d := range cc.dirs {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

func (cc *containerCgroup) remove() {
	for _, d := range cc.dirs {
		os.Remove(d)
	}
}
