package agent

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
	"time"
)

// destroy kills an executor's container: its process group, then every
// process that carries its sandbox in MESOS_DIRECTORY (those that left the
// group with setsid or a double fork).
func (a *Agent) destroy(e *executor) {
	a.mu.Lock()
	pid, dir := e.pid, e.dir
	a.mu.Unlock()
	killGroup(pid)
	killMarked("MESOS_DIRECTORY=" + dir)
}

// killGroup SIGKILLs a process group and waits (briefly) until its members
// are gone.
func killGroup(pgid int) {
	if pgid <= 1 {
		return
	}
	syscall.Kill(-pgid, syscall.SIGKILL)
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(-pgid, 0) != nil || allZombies(groupMembers(pgid)) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killMarked SIGKILLs every process whose environment holds kv and waits
// (briefly) until they are gone.
func killMarked(kv string) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		pids := markedProcesses(kv)
		live := pids[:0]
		for _, pid := range pids {
			if !zombie(pid) {
				live = append(live, pid)
			}
		}
		if len(live) == 0 || time.Now().After(deadline) {
			return
		}
		for _, pid := range live {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// OwnedProcesses lists the live processes an agent of workDir started,
// directly or not: they carry its OwnerEnv mark (executors, and what they
// run). What runs an agent uses it to end what an agent left when none is
// left to do it.
func OwnedProcesses(workDir string) []int {
	var live []int
	for _, pid := range markedProcesses(OwnerEnv + "=" + workDir) {
		if !zombie(pid) {
			live = append(live, pid)
		}
	}
	return live
}

// markedProcesses are the processes (other than this one) whose environment
// holds kv exactly.
func markedProcesses(kv string) []int {
	mark := []byte(kv)
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if hasEnv(pid, mark) {
			out = append(out, pid)
		}
	}
	return out
}

func hasEnv(pid int, kv []byte) bool {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return false
	}
	for _, v := range bytes.Split(env, []byte{0}) {
		if bytes.Equal(v, kv) {
			return true
		}
	}
	return false
}

// envValue reads one variable of a process's environment.
func envValue(pid int, key string) (string, bool) {
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return "", false
	}
	prefix := []byte(key + "=")
	for _, v := range bytes.Split(env, []byte{0}) {
		if bytes.HasPrefix(v, prefix) {
			return string(v[len(prefix):]), true
		}
	}
	return "", false
}

// procStat returns the state letter and process group of a process.
func procStat(pid int) (state byte, pgrp int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name is in parentheses and may hold anything.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+2:])
	if len(f) < 3 {
		return 0, 0, false
	}
	pg, _ := strconv.Atoi(string(f[2]))
	return f[0][0], pg, true
}

func zombie(pid int) bool {
	s, _, ok := procStat(pid)
	return !ok || s == 'Z' || s == 'X'
}

// alive tells whether a process exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && err != syscall.EPERM {
		return false
	}
	return !zombie(pid)
}

func groupMembers(pgid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if _, pg, ok := procStat(pid); ok && pg == pgid {
			out = append(out, pid)
		}
	}
	return out
}

func allZombies(pids []int) bool {
	for _, p := range pids {
		if !zombie(p) {
			return false
		}
	}
	return true
}
