package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/k8sm/k8sm/internal/mesos/execclient"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// hostDefaultPath is the PATH Mesos' launcher gives a container whose
// environment has none.
const hostDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func pathComponent(id string) string {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return strings.NewReplacer("%", "%25", "/", "%2F", "\x00", "%00").Replace(id) + "%"
	}
	return id
}

// sandboxDir is work_dir/slaves/<agent>/frameworks/<fw>/executors/<exec>/runs/<container>,
// Mesos' layout.
func (a *Agent) sandboxDir(fw, exec, container string) string {
	return filepath.Join(a.cfg.WorkDir, "slaves", pathComponent(a.agentID), "frameworks", pathComponent(fw),
		"executors", pathComponent(exec), "runs", container)
}

// executorEnvLocked is the environment Mesos gives an executor (slave.cpp
// executorEnvironment, then the containerizer: MESOS_SANDBOX, the
// CommandInfo's variables, a default PATH), as
// testdata/mesos-recordings/executor-environment.txt shows it, plus
// --executor_environment_variables and the agent's OwnerEnv mark. Nothing
// else of the agent's environment is passed on, as in Mesos.
func (a *Agent) executorEnvLocked(e *executor) []string {
	env := map[string]string{}
	if ip := os.Getenv("LIBPROCESS_IP"); ip != "" {
		env["LIBPROCESS_IP"] = ip
	} else {
		env["LIBPROCESS_IP"] = a.cfg.IP
	}
	for k, v := range a.cfg.ExecutorEnv {
		env[k] = v
	}
	checkpoint := "0"
	if e.fw.checkpoint() {
		checkpoint = "1"
		env["MESOS_RECOVERY_TIMEOUT"] = formatDuration(a.cfg.RecoveryTimeout)
		env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = formatDuration(a.cfg.ExecutorReregistrationTimeout)
	}
	for k, v := range map[string]string{
		"LIBPROCESS_PORT":                      "0",
		"MESOS_FRAMEWORK_ID":                   e.fw.id,
		"MESOS_EXECUTOR_ID":                    e.id,
		"MESOS_DIRECTORY":                      e.dir,
		"MESOS_SLAVE_ID":                       a.agentID,
		"MESOS_SLAVE_PID":                      a.PID(),
		"MESOS_AGENT_ENDPOINT":                 a.Endpoint(),
		"MESOS_CHECKPOINT":                     checkpoint,
		"MESOS_HTTP_COMMAND_EXECUTOR":          "0",
		"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": formatDuration(a.grace(e.info)),
		"MESOS_SANDBOX":                        e.dir,
	} {
		env[k] = v
	}
	for _, v := range e.info.GetCommand().GetEnvironment().GetVariables() {
		if v.GetType() == mesospb.Environment_Variable_SECRET {
			a.log.Printf("executor %s: variable %s is a secret, which km's agent cannot resolve; it is left out", e.id, v.GetName())
			continue
		}
		env[v.GetName()] = v.GetValue()
	}
	if _, ok := env["PATH"]; !ok {
		env["PATH"] = hostDefaultPath
	}
	env[OwnerEnv] = a.cfg.WorkDir
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// formatDuration spells a duration as Mesos does ("5secs", "1mins").
func formatDuration(d time.Duration) string { return execclient.FormatDuration(d) }

// launchExecutor prepares the sandbox (with a `latest` link), fetches the
// URIs, starts the executor in its own process group with stdout and
// stderr files in the sandbox, waits for it, and cleans up after it: its
// process group and every process of its run are killed, so that nothing
// it started outlives it.
func (a *Agent) launchExecutor(ctx context.Context, e *executor, env []string) {
	dir := e.dir
	ci := e.info.GetCommand()
	fail := func(msg string) {
		if ctx.Err() != nil {
			a.executorTerminated(e, -1, "shut down before it started")
			return
		}
		a.log.Printf("executor %s of framework %s: %s", e.id, e.fw.id, msg)
		a.mu.Lock()
		if e.pending == nil {
			e.pending = &termination{mesospb.TaskState_TASK_FAILED, mesospb.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED, "Failed to launch container: " + msg}
		}
		a.mu.Unlock()
		a.executorTerminated(e, -1, msg)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		fail(fmt.Sprintf("cannot create the sandbox %s: %v", dir, err))
		return
	}
	latest := filepath.Join(filepath.Dir(dir), "latest")
	os.Remove(latest)
	if err := os.Symlink(dir, latest); err != nil {
		a.log.Printf("cannot link %s to the sandbox: %v", latest, err)
	}
	cred, err := a.credential(ci.GetUser())
	if err != nil {
		fail(err.Error())
		return
	}
	if err := fetchURIs(ctx, ci.GetUris(), dir); err != nil {
		fail(err.Error())
		return
	}
	stdout, err1 := os.OpenFile(filepath.Join(dir, "stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	stderr, err2 := os.OpenFile(filepath.Join(dir, "stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err := errors.Join(err1, err2); err != nil {
		fail("cannot create stdout and stderr in the sandbox: " + err.Error())
		return
	}
	defer stdout.Close()
	defer stderr.Close()
	if cred != nil {
		chownTree(dir, int(cred.Uid), int(cred.Gid))
	}
	cmd, err := command(ci, env)
	if err != nil {
		fail(err.Error())
		return
	}
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group: the agent kills the whole group, so nothing the
	// executor starts there outlives it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}

	a.mu.Lock()
	if e.state >= terminating {
		a.mu.Unlock()
		a.executorTerminated(e, -1, "shut down before it started")
		return
	}
	if err := cmd.Start(); err != nil {
		a.mu.Unlock()
		fail(fmt.Sprintf("cannot start the executor (%s): %v", describeCommand(ci), err))
		return
	}
	e.pid = cmd.Process.Pid
	a.checkpointPidLocked(e)
	e.regTimer = a.clock.AfterFunc(a.cfg.ExecutorRegistrationTimeout, func() { a.registrationTimedOut(e) })
	a.mu.Unlock()
	a.log.Printf("started executor %s of framework %s (pid %d) in %s", e.id, e.fw.id, e.pid, dir)

	err = cmd.Wait()
	a.destroy(e)
	status, how := waitStatus(cmd.ProcessState, err)
	a.executorTerminated(e, status, how)
}

// command builds the process of a CommandInfo: shell=true runs
// /bin/sh -c value; shell=false execs value with argv = arguments (value
// alone when there are none), looked up in the environment's PATH.
func command(ci *mesospb.CommandInfo, env []string) (*exec.Cmd, error) {
	if ci.GetShell() {
		if ci.Value == nil {
			return nil, errors.New("the CommandInfo has shell=true but no value: set the shell command in value")
		}
		return exec.Command("/bin/sh", "-c", ci.GetValue()), nil
	}
	if ci.GetValue() == "" {
		return nil, errors.New("the CommandInfo has shell=false but no value: set value to the program to run")
	}
	path := ci.GetValue()
	if !strings.Contains(path, "/") {
		found, err := lookPath(path, env)
		if err != nil {
			return nil, err
		}
		path = found
	}
	cmd := exec.Command(path)
	if args := ci.GetArguments(); len(args) > 0 {
		cmd.Args = append([]string(nil), args...)
	} else {
		cmd.Args = []string{ci.GetValue()}
	}
	return cmd, nil
}

func lookPath(name string, env []string) (string, error) {
	path := hostDefaultPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q is not in the executor's PATH (%s): give an absolute path or set PATH in CommandInfo.environment", name, path)
}

func describeCommand(ci *mesospb.CommandInfo) string {
	if ci.GetShell() {
		return "/bin/sh -c " + strconv.Quote(ci.GetValue())
	}
	return strconv.Quote(ci.GetValue())
}

// credential is how to run a CommandInfo.user: as that user when the agent
// is root and the user exists; when the agent is not root it cannot switch
// and runs the executor as itself, saying so.
func (a *Agent) credential(name string) (*syscall.Credential, error) {
	if name == "" {
		return nil, nil
	}
	if cur, err := user.Current(); err == nil && cur.Username == name {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		a.log.Printf("not running the executor as user %q: the agent is not root, so it runs as the agent's user", name)
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %q of the CommandInfo does not exist on this agent: create it or leave user unset", name)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	return cred, nil
}

func chownTree(dir string, uid, gid int) {
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, uid, gid)
		}
		return nil
	})
}

// waitStatus is the raw wait status Mesos reports in FAILURE (-1 when
// unknown) and Mesos' words for it ("exited with status 1",
// "terminated with signal Killed").
func waitStatus(ps *os.ProcessState, err error) (int, string) {
	if ps == nil {
		if err != nil {
			return -1, err.Error()
		}
		return -1, "exit status unknown"
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return -1, ps.String()
	}
	return int(ws), describeWaitStatus(ws)
}

func describeWaitStatus(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return "terminated with signal " + signalName(ws.Signal())
	}
	return fmt.Sprintf("exited with status %d", ws.ExitStatus())
}

// signalName spells a signal as strsignal does ("Terminated", "Killed").
func signalName(s syscall.Signal) string {
	n := s.String()
	if n == "" || strings.HasPrefix(n, "signal ") {
		return n
	}
	return strings.ToUpper(n[:1]) + n[1:]
}
