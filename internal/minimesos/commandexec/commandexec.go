// Package commandexec is the built-in command executor of km's Mesos agent:
// it runs the CommandInfo of one task (as Mesos' mesos-executor does) and
// reports TASK_STARTING, TASK_RUNNING and a terminal state through the
// executor HTTP API.
package commandexec

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
)

// Run runs the command executor until its task has ended and the agent
// has acknowledged the terminal update (or the agent is gone).
func Run(ctx context.Context, logger *log.Logger) error {
	cfg, err := execclient.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	cfg.Logger = logger
	ce := &commandExecutor{client: execclient.New(cfg), log: logger, grace: cfg.ShutdownGracePeriod, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- ce.client.Run(ctx, ce) }()
	select {
	case <-ce.done:
		// Give the agent a moment to acknowledge the terminal update.
		deadline := time.After(5 * time.Second)
		for {
			_, unacked := ce.client.Unacknowledged()
			if len(unacked) == 0 {
				return nil
			}
			select {
			case <-deadline:
				return nil
			case <-time.After(50 * time.Millisecond):
			}
		}
	case err := <-errc:
		ce.killTask(0)
		return err
	}
}

type commandExecutor struct {
	client *execclient.Client
	log    *log.Logger
	grace  time.Duration

	mu           sync.Mutex
	task         *mesospb.TaskInfo
	cmd          *exec.Cmd
	killing      bool
	killingState bool
	doneOnce     sync.Once
	done         chan struct{}
}

func (ce *commandExecutor) Disconnected(err error) {
	ce.log.Printf("disconnected from the agent: %v", err)
}

func (ce *commandExecutor) Event(ctx context.Context, ev *executorpb.Event) {
	switch ev.GetType() {
	case executorpb.Event_SUBSCRIBED:
		for _, c := range ev.GetSubscribed().GetFrameworkInfo().GetCapabilities() {
			if c.GetType() == mesospb.FrameworkInfo_Capability_TASK_KILLING_STATE {
				ce.mu.Lock()
				ce.killingState = true
				ce.mu.Unlock()
			}
		}
	case executorpb.Event_LAUNCH:
		go ce.launch(ctx, ev.GetLaunch().GetTask())
	case executorpb.Event_KILL:
		grace := ce.grace
		if g := ev.GetKill().GetKillPolicy().GetGracePeriod(); g != nil {
			grace = time.Duration(g.GetNanoseconds())
		} else if g := ce.taskGrace(); g > 0 {
			grace = g
		}
		ce.killTask(grace)
	case executorpb.Event_SHUTDOWN:
		ce.killTask(ce.grace)
	case executorpb.Event_ERROR:
		ce.log.Printf("error from the agent: %s", ev.GetError().GetMessage())
	}
}

func (ce *commandExecutor) taskGrace() time.Duration {
	ce.mu.Lock()
	defer ce.mu.Unlock()
	if g := ce.task.GetKillPolicy().GetGracePeriod(); g != nil {
		return time.Duration(g.GetNanoseconds())
	}
	return 0
}

func (ce *commandExecutor) update(ctx context.Context, state mesospb.TaskState, msg string) {
	ce.mu.Lock()
	t := ce.task
	ce.mu.Unlock()
	st := &mesospb.TaskStatus{TaskId: t.GetTaskId(), State: state.Enum(), AgentId: t.GetAgentId()}
	if msg != "" {
		st.Message = proto.String(msg)
	}
	if err := ce.client.Update(ctx, st); err != nil {
		ce.log.Printf("sending %s: %v (resent when the agent is back)", state, err)
	}
}

func (ce *commandExecutor) launch(ctx context.Context, t *mesospb.TaskInfo) {
	ce.mu.Lock()
	if ce.task != nil {
		ce.mu.Unlock()
		return // the command executor runs one task
	}
	ce.task = t
	ce.mu.Unlock()
	ce.update(ctx, mesospb.TaskState_TASK_STARTING, "")
	ci := t.GetCommand()
	var cmd *exec.Cmd
	if ci.GetShell() {
		cmd = exec.Command("/bin/sh", "-c", ci.GetValue())
	} else {
		cmd = exec.Command(ci.GetValue())
		if len(ci.GetArguments()) > 0 {
			cmd.Args = ci.GetArguments()
		}
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = os.Environ()
	for _, v := range ci.GetEnvironment().GetVariables() {
		cmd.Env = append(cmd.Env, v.GetName()+"="+v.GetValue())
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		ce.update(ctx, mesospb.TaskState_TASK_FAILED, fmt.Sprintf("Failed to launch the command: %v", err))
		ce.finish()
		return
	}
	ce.mu.Lock()
	ce.cmd = cmd
	killed := ce.killing
	ce.mu.Unlock()
	if killed {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	ce.update(ctx, mesospb.TaskState_TASK_RUNNING, "")
	err := cmd.Wait()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the command's leftovers
	ce.mu.Lock()
	killing := ce.killing
	ce.mu.Unlock()
	var ee *exec.ExitError
	switch {
	case err == nil:
		ce.update(ctx, mesospb.TaskState_TASK_FINISHED, "Command exited with status 0")
	case errors.As(err, &ee):
		ws := ee.Sys().(syscall.WaitStatus)
		switch {
		case ws.Signaled() && killing:
			ce.update(ctx, mesospb.TaskState_TASK_KILLED, "Command terminated with signal "+signalName(ws.Signal()))
		case ws.Signaled():
			ce.update(ctx, mesospb.TaskState_TASK_FAILED, "Command terminated with signal "+signalName(ws.Signal()))
		case killing:
			ce.update(ctx, mesospb.TaskState_TASK_KILLED, fmt.Sprintf("Command exited with status %d", ws.ExitStatus()))
		default:
			ce.update(ctx, mesospb.TaskState_TASK_FAILED, fmt.Sprintf("Command exited with status %d", ws.ExitStatus()))
		}
	default:
		ce.update(ctx, mesospb.TaskState_TASK_FAILED, "Command failed: "+err.Error())
	}
	ce.finish()
}

// signalName spells signals as Mesos' strsignal does.
func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "Terminated"
	case syscall.SIGKILL:
		return "Killed"
	case syscall.SIGINT:
		return "Interrupt"
	}
	return s.String()
}

func (ce *commandExecutor) finish() { ce.doneOnce.Do(func() { close(ce.done) }) }

// killTask: TASK_KILLING when the framework understands it, SIGTERM to the
// command's process group, SIGKILL after the grace period.
func (ce *commandExecutor) killTask(grace time.Duration) {
	ce.mu.Lock()
	if ce.killing {
		ce.mu.Unlock()
		return
	}
	ce.killing = true
	cmd, t, killingState := ce.cmd, ce.task, ce.killingState
	ce.mu.Unlock()
	if t == nil {
		ce.finish()
		return
	}
	if killingState {
		ce.update(context.Background(), mesospb.TaskState_TASK_KILLING, "")
	}
	if cmd == nil || cmd.Process == nil {
		return // launch() kills it as soon as it starts
	}
	pgid := cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	if grace <= 0 {
		grace = 3 * time.Second
	}
	go func() {
		select {
		case <-ce.done:
		case <-time.After(grace):
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
}
