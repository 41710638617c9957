package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// The agent checkpoints under work_dir/meta, in Mesos' layout:
//
//	meta/boot_id
//	meta/slaves/latest -> <agent id>              the agent ID, reused on restart
//	meta/slaves/<agent>/slave.info                AgentInfo
//	  frameworks/<fw>/framework.info              FrameworkInfo
//	    executors/<exec>/executor.info            ExecutorInfo
//	    executors/<exec>/command_executor         marker: the command executor of a task
//	      runs/<container>/pids/forked.pid        the executor's pid (= process group)
//	      runs/<container>/completed              marker: the executor terminated
//	        tasks/<task>/task.info                TaskInfo
//	        tasks/<task>/task.updates             the task's status update stream
//
// The executor's pid is kept for every framework, so that a restarted agent
// can kill what an earlier one left; tasks and updates only for frameworks
// that checkpoint (FrameworkInfo.checkpoint), whose executors survive an
// agent restart. Files hold protobuf (or JSON for the update streams) and
// are replaced atomically.

func (a *Agent) metaDir() string { return filepath.Join(a.cfg.WorkDir, "meta") }

func (a *Agent) agentMeta(id string) string {
	return filepath.Join(a.metaDir(), "slaves", pathComponent(id))
}

func (a *Agent) frameworkMeta(fw string) string {
	return filepath.Join(a.agentMeta(a.agentID), "frameworks", pathComponent(fw))
}

func (a *Agent) executorMeta(fw, exec string) string {
	return filepath.Join(a.frameworkMeta(fw), "executors", pathComponent(exec))
}

func (a *Agent) runMeta(e *executor) string {
	return filepath.Join(a.executorMeta(e.fw.id, e.id), "runs", e.containerID)
}

func (a *Agent) taskMeta(e *executor, task string) string {
	return filepath.Join(a.runMeta(e), "tasks", pathComponent(task))
}

func (a *Agent) taskUpdatesFile(e *executor, task string) string {
	return filepath.Join(a.taskMeta(e, task), "task.updates")
}

// writeAtomic replaces a file, so that a crash leaves the old or the new
// content, never a part.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (a *Agent) writeProto(path string, m proto.Message) {
	b, err := proto.MarshalOptions{AllowPartial: true, Deterministic: true}.Marshal(m)
	if err == nil {
		err = writeAtomic(path, b)
	}
	if err != nil {
		a.log.Printf("cannot checkpoint %s: %v (the state it holds is not recovered after an agent restart)", path, err)
	}
}

func readProto(path string, m proto.Message) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return proto.UnmarshalOptions{AllowPartial: true, DiscardUnknown: true}.Unmarshal(b, m)
}

func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

// readLatestAgentID is the checkpointed agent ID ("" when there is none).
func (a *Agent) readLatestAgentID() string {
	latest := filepath.Join(a.metaDir(), "slaves", "latest")
	if target, err := os.Readlink(latest); err == nil {
		return filepath.Base(target)
	}
	return ""
}

// checkpointAgentLocked keeps the agent's ID (and info) for its next start.
func (a *Agent) checkpointAgentLocked() {
	if a.agentID == "" {
		return
	}
	dir := a.agentMeta(a.agentID)
	a.writeProto(filepath.Join(dir, "slave.info"), a.agentInfoLocked())
	latest := filepath.Join(a.metaDir(), "slaves", "latest")
	if target, err := os.Readlink(latest); err != nil || filepath.Base(target) != filepath.Base(dir) {
		tmp := latest + ".tmp"
		os.Remove(tmp)
		err := os.Symlink(filepath.Base(dir), tmp)
		if err == nil {
			err = os.Rename(tmp, latest)
		}
		if err != nil {
			a.log.Printf("cannot checkpoint the agent ID in %s: %v (a restarted agent will register as a new one)", latest, err)
		}
	}
	if err := writeAtomic(filepath.Join(a.metaDir(), "boot_id"), []byte(bootID()+"\n")); err != nil {
		a.log.Printf("cannot checkpoint the boot ID: %v", err)
	}
}

// forgetCheckpointsLocked drops the agent's ID and every checkpoint: the
// master removed the agent, which comes back as a new one.
func (a *Agent) forgetCheckpointsLocked() {
	if err := os.RemoveAll(a.metaDir()); err != nil {
		a.log.Printf("cannot remove the checkpoints in %s: %v", a.metaDir(), err)
	}
}

func (a *Agent) checkpointFrameworkLocked(fw *framework) {
	if a.agentID != "" {
		a.writeProto(filepath.Join(a.frameworkMeta(fw.id), "framework.info"), fw.info)
	}
}

func (a *Agent) checkpointExecutorLocked(e *executor) {
	if a.agentID == "" {
		return
	}
	dir := a.executorMeta(e.fw.id, e.id)
	a.writeProto(filepath.Join(dir, "executor.info"), e.info)
	if e.command {
		writeAtomic(filepath.Join(dir, "command_executor"), nil)
	}
	os.MkdirAll(a.runMeta(e), 0o755)
}

func (a *Agent) checkpointPidLocked(e *executor) {
	if a.agentID == "" {
		return
	}
	if err := writeAtomic(filepath.Join(a.runMeta(e), "pids", "forked.pid"), []byte(strconv.Itoa(e.pid))); err != nil {
		a.log.Printf("cannot checkpoint the pid of executor %s: %v (a restarted agent could not kill it)", e.id, err)
	}
}

func (a *Agent) checkpointTaskLocked(e *executor, t *mesospb.TaskInfo) {
	if e.fw.checkpoint() && a.agentID != "" {
		a.writeProto(filepath.Join(a.taskMeta(e, t.GetTaskId().GetValue()), "task.info"), t)
	}
}

func (a *Agent) removeTaskCheckpointLocked(e *executor, task string) {
	os.RemoveAll(a.taskMeta(e, task))
}

func (a *Agent) markRunCompletedLocked(e *executor) {
	if a.agentID != "" && e.fw.checkpoint() {
		writeAtomic(filepath.Join(a.runMeta(e), "completed"), nil)
	}
}

// removeRunCheckpointLocked forgets an executor run that ended and has no
// task with updates pending.
func (a *Agent) removeRunCheckpointLocked(e *executor) {
	if a.agentID == "" {
		return
	}
	os.RemoveAll(a.runMeta(e))
	runs := filepath.Join(a.executorMeta(e.fw.id, e.id), "runs")
	if entries, err := os.ReadDir(runs); err == nil && len(entries) == 0 {
		os.RemoveAll(a.executorMeta(e.fw.id, e.id))
	}
}

func (a *Agent) removeFrameworkCheckpointLocked(fw *framework) {
	if a.agentID != "" {
		os.RemoveAll(a.frameworkMeta(fw.id))
	}
}

type streamCheckpoint struct {
	Pending    [][]byte `json:"pending"` // TaskStatus protobufs
	Latest     []byte   `json:"latest,omitempty"`
	Seen       [][]byte `json:"seen"`
	Terminated bool     `json:"terminated"`
}

// persistStreamLocked checkpoints a task's update stream (for frameworks
// that checkpoint), so that a restarted agent resends what the framework has
// not acknowledged.
func (a *Agent) persistStreamLocked(fw, task string) {
	s := a.sum.stream(fw, task)
	if s == nil || s.file == "" {
		return
	}
	var c streamCheckpoint
	for _, p := range s.pending {
		b, _ := proto.Marshal(p)
		c.Pending = append(c.Pending, b)
	}
	if s.latest != nil {
		c.Latest, _ = proto.Marshal(s.latest)
	}
	seen := make([]string, 0, len(s.seen))
	for id := range s.seen {
		seen = append(seen, id)
	}
	sort.Strings(seen)
	for _, id := range seen {
		c.Seen = append(c.Seen, []byte(id))
	}
	c.Terminated = s.terminated
	b, _ := json.Marshal(c)
	if err := writeAtomic(s.file, b); err != nil {
		a.log.Printf("cannot checkpoint the updates of task %s: %v", task, err)
	}
}

func loadStream(file string) (*streamCheckpoint, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var c streamCheckpoint
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

func listDir(dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// recover rebuilds the agent's state from its checkpoints (Mesos'
// --recover=reconnect). Executors of checkpointing frameworks that still run
// get --executor_reregistration_timeout to re-subscribe; those that died
// while the agent was down have their live tasks failed; executors of
// frameworks that do not checkpoint are killed (their tasks were not
// checkpointed: the master finds them gone when the agent re-registers).
// Any other process an earlier agent of this work dir left is killed too.
// The agent registers with the master once recovery is over.
func (a *Agent) recover() {
	a.mu.Lock()
	a.recovering = true
	var dead []*executor
	keep := map[string]bool{} // sandboxes of executors that are recovered alive
	waiting := 0
	if a.agentID != "" {
		reboot := false
		if b, err := os.ReadFile(filepath.Join(a.metaDir(), "boot_id")); err == nil && strings.TrimSpace(string(b)) != bootID() {
			reboot = true
			a.log.Printf("the machine rebooted since the last checkpoint: no executor of before survived")
		}
		fwRoot := filepath.Join(a.agentMeta(a.agentID), "frameworks")
		for _, fwName := range listDir(fwRoot) {
			fi := &mesospb.FrameworkInfo{}
			if err := readProto(filepath.Join(fwRoot, fwName, "framework.info"), fi); err != nil || fi.GetId().GetValue() == "" {
				a.log.Printf("dropping the unreadable checkpoint of framework %s: %v", fwName, err)
				os.RemoveAll(filepath.Join(fwRoot, fwName))
				continue
			}
			fw := &framework{id: fi.GetId().GetValue(), info: fi, executors: map[string]*executor{}}
			a.frameworks[fw.id] = fw
			for _, execName := range listDir(filepath.Join(fwRoot, fwName, "executors")) {
				execDir := filepath.Join(fwRoot, fwName, "executors", execName)
				ei := &mesospb.ExecutorInfo{}
				if err := readProto(filepath.Join(execDir, "executor.info"), ei); err != nil {
					a.log.Printf("dropping the unreadable checkpoint of executor %s: %v", execName, err)
					os.RemoveAll(execDir)
					continue
				}
				for _, container := range listDir(filepath.Join(execDir, "runs")) {
					e := &executor{
						fw: fw, id: ei.GetExecutorId().GetValue(), info: ei, command: exists(filepath.Join(execDir, "command_executor")),
						containerID: container, tasks: map[string]*task{}, exited: make(chan struct{}),
						state: registering, recovered: true, everSentTask: true, startedAt: a.clock.Now(),
					}
					e.dir = a.sandboxDir(fw.id, e.id, container)
					runDir := a.runMeta(e)
					if b, err := os.ReadFile(filepath.Join(runDir, "pids", "forked.pid")); err == nil {
						e.pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
					}
					completed := exists(filepath.Join(runDir, "completed"))
					live := !reboot && !completed && alive(e.pid) && hasEnv(e.pid, []byte("MESOS_DIRECTORY="+e.dir))
					if !fw.checkpoint() {
						if live {
							a.log.Printf("killing executor %s of framework %s (pid %d): the framework does not checkpoint, so its executors do not survive an agent restart", e.id, fw.id, e.pid)
							killGroup(e.pid)
							killMarked("MESOS_DIRECTORY=" + e.dir)
						}
						os.RemoveAll(runDir)
						continue
					}
					a.recoverTasksLocked(e, runDir)
					switch {
					case live:
						fw.executors[e.id] = e
						keep[e.dir] = true
						waiting++
						a.log.Printf("recovered executor %s of framework %s (pid %d); it has %v to re-subscribe", e.id, fw.id, e.pid, a.cfg.ExecutorReregistrationTimeout)
					case !completed:
						fw.executors[e.id] = e
						dead = append(dead, e)
					default:
						e.state = terminated
						close(e.exited)
						if len(e.tasks) == 0 {
							os.RemoveAll(runDir)
							continue
						}
						fw.completed = append(fw.completed, e)
					}
				}
				if entries, err := os.ReadDir(filepath.Join(execDir, "runs")); err != nil || len(entries) == 0 {
					os.RemoveAll(execDir)
				}
			}
			if len(fw.executors) == 0 && len(fw.completed) == 0 && !a.sum.hasFramework(fw.id) {
				delete(a.frameworks, fw.id)
				os.RemoveAll(filepath.Join(fwRoot, fwName))
			}
		}
	}
	// What an earlier agent of this work dir left and nobody recovers: the
	// marked processes and their process groups.
	n := 0
	own := syscall.Getpgrp()
	for _, pid := range markedProcesses(OwnerEnv + "=" + a.cfg.WorkDir) {
		if dir, _ := envValue(pid, "MESOS_DIRECTORY"); keep[dir] || zombie(pid) {
			continue
		}
		if _, pg, ok := procStat(pid); ok && pg != own {
			syscall.Kill(-pg, syscall.SIGKILL)
		}
		syscall.Kill(pid, syscall.SIGKILL)
		n++
	}
	if n > 0 {
		a.log.Printf("killed %d processes an earlier agent of %s left behind", n, a.cfg.WorkDir)
	}
	for _, fw := range a.frameworks {
		for _, e := range fw.executors {
			if e.state == registering {
				e := e
				a.wg.Add(1)
				go func() {
					defer a.wg.Done()
					a.watchRecovered(e)
				}()
			}
		}
	}
	if waiting > 0 {
		a.clock.AfterFunc(a.cfg.ExecutorReregistrationTimeout, a.reregistrationTimedOut)
	}
	// Executors found dead are handled as if they had just exited; their
	// state is part of the recovery.
	for _, e := range dead {
		e.state = terminating
		e.pending = nil
	}
	a.mu.Unlock()
	for _, e := range dead {
		a.executorTerminated(e, -1, "it was not running when the agent recovered")
	}
	a.mu.Lock()
	a.maybeEndRecoveryLocked()
	a.mu.Unlock()
}

// recoverTasksLocked reads an executor run's tasks and their update
// streams back.
func (a *Agent) recoverTasksLocked(e *executor, runDir string) {
	for _, name := range listDir(filepath.Join(runDir, "tasks")) {
		dir := filepath.Join(runDir, "tasks", name)
		ti := &mesospb.TaskInfo{}
		if err := readProto(filepath.Join(dir, "task.info"), ti); err != nil {
			a.log.Printf("dropping the unreadable checkpoint of task %s: %v", name, err)
			os.RemoveAll(dir)
			continue
		}
		t := &task{info: ti, state: mesospb.TaskState_TASK_STAGING}
		id := ti.GetTaskId().GetValue()
		file := filepath.Join(dir, "task.updates")
		if c, err := loadStream(file); err == nil {
			s := &updateStream{key: streamKey{e.fw.id, id}, seen: map[string]bool{}, file: file, info: ti, terminated: c.Terminated}
			for _, b := range c.Pending {
				st := &mesospb.TaskStatus{}
				if proto.Unmarshal(b, st) == nil {
					s.pending = append(s.pending, st)
				}
			}
			if len(c.Latest) > 0 {
				st := &mesospb.TaskStatus{}
				if proto.Unmarshal(c.Latest, st) == nil {
					s.latest = st
					t.state = st.GetState()
					t.statuses = []*mesospb.TaskStatus{st}
				}
			}
			for _, id := range c.Seen {
				s.seen[string(id)] = true
			}
			if len(s.pending) > 0 || !s.terminated {
				a.sum.streams[s.key] = s
			}
			if s.terminated && len(s.pending) == 0 {
				// Acknowledged but not cleaned up before the crash.
				os.RemoveAll(dir)
				continue
			}
		}
		e.tasks[id] = t
	}
}

// watchRecovered follows a recovered executor, which is not a child of this
// process, until it exits.
func (a *Agent) watchRecovered(e *executor) {
	for {
		a.mu.Lock()
		pid, dir, done := e.pid, e.dir, e.state == terminated
		a.mu.Unlock()
		if done {
			return
		}
		if !alive(pid) || !hasEnv(pid, []byte("MESOS_DIRECTORY="+dir)) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.destroy(e)
	a.executorTerminated(e, -1, "exited (its exit status is unknown: an earlier agent started it)")
}

// reregistrationTimedOut ends recovery: recovered executors that did not
// re-subscribe in time are destroyed; their tasks become TASK_GONE
// (TASK_LOST for frameworks that are not partition-aware) with
// REASON_EXECUTOR_REREGISTRATION_TIMEOUT.
func (a *Agent) reregistrationTimedOut() {
	a.mu.Lock()
	var hung []*executor
	for _, fw := range a.frameworks {
		for _, e := range fw.executors {
			if e.recovered && e.state == registering {
				e.state = terminating
				e.pending = &termination{fw.lostOr(mesospb.TaskState_TASK_GONE), mesospb.TaskStatus_REASON_EXECUTOR_REREGISTRATION_TIMEOUT,
					"Executor did not reregister within " + formatDuration(a.cfg.ExecutorReregistrationTimeout)}
				hung = append(hung, e)
			}
		}
	}
	// Recovery ends once they are gone, so that the registration that
	// follows reports what really runs.
	a.recoveryHold = true
	a.mu.Unlock()
	var waits []chan struct{}
	for _, e := range hung {
		a.log.Printf("killing executor %s of framework %s: it did not re-subscribe within %v", e.id, e.fw.id, a.cfg.ExecutorReregistrationTimeout)
		a.destroy(e)
		waits = append(waits, e.exited)
	}
	deadline := time.After(10 * time.Second)
	for _, w := range waits {
		select {
		case <-w:
		case <-deadline:
		}
	}
	a.mu.Lock()
	a.recoveryHold = false
	a.endRecoveryLocked()
	a.mu.Unlock()
}

// maybeEndRecoveryLocked ends recovery once no recovered executor is still
// expected to re-subscribe.
func (a *Agent) maybeEndRecoveryLocked() {
	if !a.recovering || a.recoveryHold {
		return
	}
	for _, fw := range a.frameworks {
		for _, e := range fw.executors {
			if e.recovered && e.state == registering {
				return
			}
		}
	}
	a.endRecoveryLocked()
}

func (a *Agent) endRecoveryLocked() {
	if a.recovering {
		a.recovering = false
		close(a.recoveryDone)
	}
}
