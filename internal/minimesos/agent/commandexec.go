package agent

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/execclient"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
)

// Mesos' command executor escalates SIGTERM to SIGKILL after this long when
// neither the kill nor the task has a kill policy.
const defaultKillGracePeriod = 3 * time.Second

// RunCommandExecutor is the built-in command executor
// (`km mesos command-executor`, which the agent starts for a task that has
// a CommandInfo instead of an executor). Like Mesos' mesos-executor it runs
// the task's command in its own process group and reports TASK_STARTING,
// TASK_RUNNING, then TASK_FINISHED ("Command exited with status 0"),
// TASK_FAILED ("Command exited with status N") or, after a kill,
// TASK_KILLED ("Command terminated with signal Terminated"), with
// TASK_KILLING first for frameworks that understand it. A kill sends
// SIGTERM to the command's process group and SIGKILL when the kill policy's
// grace period (3 s by default) ends. It returns once the agent has the
// terminal update.
func RunCommandExecutor(ctx context.Context, logger *log.Logger) error {
	cfg, err := execclient.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	if logger == nil {
		logger = log.New(os.Stderr, "", log.LstdFlags)
	}
	cfg.Logger = logger
	ce := &commandExecutor{log: logger, shutdownGrace: cfg.ShutdownGracePeriod, done: make(chan struct{})}
	ce.client = execclient.New(cfg)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- ce.client.Run(ctx, ce) }()
	select {
	case <-ce.done:
		// The agent acknowledges the terminal update once it has it; do not
		// exit before, or it might be lost.
		deadline := time.After(30 * time.Second)
		for {
			if _, unacked := ce.client.Unacknowledged(); len(unacked) == 0 {
				return nil
			}
			select {
			case <-deadline:
				return errors.New("the agent did not acknowledge the task's terminal update within 30s")
			case err := <-errc:
				return err
			case <-time.After(20 * time.Millisecond):
			}
		}
	case err := <-errc:
		// No agent anymore (or SHUTDOWN before any task): the command goes
		// with us.
		ce.killNow()
		if errors.Is(err, execclient.ErrShutdown) {
			return nil
		}
		return err
	}
}

type commandExecutor struct {
	client        *execclient.Client
	log           *log.Logger
	shutdownGrace time.Duration

	mu           sync.Mutex
	fwInfo       *mesospb.FrameworkInfo
	task         *mesospb.TaskInfo
	cmd          *exec.Cmd
	killed       bool
	killDeadline time.Time
	escalate     *time.Timer
	doneOnce     sync.Once
	done         chan struct{}
}

func (ce *commandExecutor) Disconnected(err error) {
	ce.log.Printf("disconnected from the agent: %v", err)
}

func (ce *commandExecutor) Event(ctx context.Context, ev *executorpb.Event) {
	ce.log.Printf("Received %s event", ev.GetType())
	switch ev.GetType() {
	case executorpb.Event_SUBSCRIBED:
		ce.mu.Lock()
		ce.fwInfo = ev.GetSubscribed().GetFrameworkInfo()
		ce.mu.Unlock()
	case executorpb.Event_LAUNCH:
		ce.launch(ctx, ev.GetLaunch().GetTask())
	case executorpb.Event_KILL:
		grace := defaultKillGracePeriod
		ce.mu.Lock()
		if g := ce.task.GetKillPolicy().GetGracePeriod(); g != nil {
			grace = time.Duration(g.GetNanoseconds())
		}
		ce.mu.Unlock()
		if g := ev.GetKill().GetKillPolicy().GetGracePeriod(); g != nil {
			grace = time.Duration(g.GetNanoseconds())
		}
		ce.kill(ctx, grace)
	case executorpb.Event_SHUTDOWN:
		// Leave the agent time to see TASK_KILLED before it destroys the
		// container (Mesos: the grace period less 2 s).
		ce.mu.Lock()
		launched := ce.task != nil
		ce.mu.Unlock()
		if !launched {
			ce.finish()
			return
		}
		ce.kill(ctx, max(ce.shutdownGrace-2*time.Second, 0))
	case executorpb.Event_ERROR:
		ce.log.Printf("error from the agent: %s", ev.GetError().GetMessage())
	}
}

func (ce *commandExecutor) update(ctx context.Context, state mesospb.TaskState, msg string) {
	ce.mu.Lock()
	t := ce.task
	ce.mu.Unlock()
	st := &mesospb.TaskStatus{TaskId: t.GetTaskId(), State: state.Enum()}
	if msg != "" {
		st.Message = proto.String(msg)
	}
	if err := ce.client.Update(ctx, st); err != nil && !errors.Is(err, execclient.ErrPending) {
		ce.log.Printf("sending %s: %v", state, err)
	}
}

func (ce *commandExecutor) launch(ctx context.Context, t *mesospb.TaskInfo) {
	ce.mu.Lock()
	if ce.task != nil {
		ce.mu.Unlock()
		ce.log.Printf("ignoring task %s: the command executor runs one task (%s)", t.GetTaskId().GetValue(), ce.task.GetTaskId().GetValue())
		return
	}
	ce.task = t
	ce.mu.Unlock()
	ce.log.Printf("Starting task %s", t.GetTaskId().GetValue())
	ce.update(ctx, mesospb.TaskState_TASK_STARTING, "")
	env := os.Environ()
	if role := resources.AllocationRole(t.GetResources()); role != "" {
		env = append(env, "MESOS_ALLOCATION_ROLE="+role)
	}
	cmd, err := command(t.GetCommand(), env)
	if err == nil {
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		err = cmd.Start()
	}
	if err != nil {
		ce.update(ctx, mesospb.TaskState_TASK_FAILED, "Failed to launch the command: "+err.Error())
		ce.finish()
		return
	}
	ce.mu.Lock()
	ce.cmd = cmd
	ce.mu.Unlock()
	ce.log.Printf("Forked command at %d", cmd.Process.Pid)
	ce.update(ctx, mesospb.TaskState_TASK_RUNNING, "")
	go ce.wait(ctx, cmd)
}

func (ce *commandExecutor) wait(ctx context.Context, cmd *exec.Cmd) {
	err := cmd.Wait()
	pid := cmd.Process.Pid
	syscall.Kill(-pid, syscall.SIGKILL) // what the command left in its group
	ce.mu.Lock()
	killed := ce.killed
	if ce.escalate != nil {
		ce.escalate.Stop()
	}
	ce.mu.Unlock()
	var msg string
	state := mesospb.TaskState_TASK_FAILED
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		msg = "Command " + describeWaitStatus(ws)
		switch {
		case killed:
			state = mesospb.TaskState_TASK_KILLED
		case ws.Exited() && ws.ExitStatus() == 0:
			state = mesospb.TaskState_TASK_FINISHED
		}
	} else {
		msg = fmt.Sprintf("Failed to get exit status for Command: %v", err)
	}
	ce.log.Printf("%s (pid: %d)", msg, pid)
	ce.update(ctx, state, msg)
	ce.finish()
}

// kill: TASK_KILLING when the framework understands it, SIGTERM to the
// command's process group, SIGKILL when the grace period ends. A later kill
// may shorten the grace period, not lengthen it.
func (ce *commandExecutor) kill(ctx context.Context, grace time.Duration) {
	ce.mu.Lock()
	cmd := ce.cmd
	if cmd == nil {
		ce.mu.Unlock()
		return
	}
	pgid := cmd.Process.Pid
	deadline := time.Now().Add(grace)
	if ce.killed {
		if deadline.Before(ce.killDeadline) {
			ce.killDeadline = deadline
			ce.escalate.Reset(grace)
		}
		ce.mu.Unlock()
		return
	}
	ce.killed = true
	ce.killDeadline = deadline
	ce.escalate = time.AfterFunc(grace, func() {
		ce.log.Printf("Process %d did not terminate after %v, sending SIGKILL", pgid, grace)
		syscall.Kill(-pgid, syscall.SIGKILL)
	})
	killingState := false
	for _, c := range ce.fwInfo.GetCapabilities() {
		if c.GetType() == mesospb.FrameworkInfo_Capability_TASK_KILLING_STATE {
			killingState = true
		}
	}
	ce.mu.Unlock()
	if killingState {
		ce.update(ctx, mesospb.TaskState_TASK_KILLING, "")
	}
	ce.log.Printf("Sending SIGTERM to process group %d", pgid)
	syscall.Kill(-pgid, syscall.SIGTERM)
}

func (ce *commandExecutor) killNow() {
	ce.mu.Lock()
	cmd := ce.cmd
	ce.mu.Unlock()
	if cmd != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (ce *commandExecutor) finish() { ce.doneOnce.Do(func() { close(ce.done) }) }
