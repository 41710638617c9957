package pods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/creack/pty"

	"github.com/k8sm/k8sm/internal/executor/runtime"
	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

// WinSize is a terminal's size, for exec with a TTY.
type WinSize struct{ Cols, Rows uint16 }

// Exec runs a command in a running container's environment (its
// variables and working directory), as `kubectl exec` asks the kubelet
// to: stdin, stdout and stderr are the caller's, or one terminal when tty
// is set. It returns the command's exit code; err says why it could not
// run. The command ends with the request (ctx) or with the pod.
func (p *Pod) Exec(ctx context.Context, name string, argv []string, stdin io.Reader, stdout, stderr io.Writer, tty bool, resize <-chan WinSize) (int, error) {
	if len(argv) == 0 {
		return 0, errors.New("no command to run: give one after --")
	}
	c, _, err := p.runningContainer(name)
	if err != nil {
		return 0, err
	}
	env, _, err := Environment(p.spec, c.spec, p.cfg.HostIP, p.cfg.BaseEnv, p.cfg.Lookup)
	if err != nil {
		return 0, err
	}
	dir := p.workingDir(c)
	path, err := runtime.LookPath(argv[0], env)
	if err != nil {
		return 0, fmt.Errorf("%q not found on the container's PATH: km's process runtime runs the agent machine's commands", argv[0])
	}
	cmd := &exec.Cmd{Path: path, Args: argv, Env: env, Dir: dir}
	// The command ends with the request or the pod, whichever goes first.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.ctx.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	if tty {
		return execTTY(ctx, cmd, stdin, stdout, resize)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Output copying ends when every holder of the pipes is gone; a
	// daemon the command left behind must not hold the request forever.
	cmd.WaitDelay = 2 * time.Second
	var in io.WriteCloser
	if stdin != nil {
		if in, err = cmd.StdinPipe(); err != nil {
			return 0, err
		}
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("cannot run %q in container %q: %v", argv[0], name, err)
	}
	if in != nil {
		// Not waited for: the client may never close its stdin.
		go func() { io.Copy(in, stdin); in.Close() }()
	}
	stop := context.AfterFunc(ctx, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer stop()
	return exitCode(cmd.Wait())
}

func execTTY(ctx context.Context, cmd *exec.Cmd, stdin io.Reader, stdout io.Writer, resize <-chan WinSize) (int, error) {
	// pty.Start makes the command a session leader with the terminal as
	// its controlling one, as a shell expects.
	// A size already known is the terminal's from the start.
	var size *pty.Winsize
	select {
	case sz, ok := <-resize:
		if ok {
			size = &pty.Winsize{Cols: sz.Cols, Rows: sz.Rows}
		}
	default:
	}
	term, err := pty.StartWithSize(cmd, size)
	if err != nil {
		return 0, fmt.Errorf("cannot run %q on a terminal: %v", cmd.Args[0], err)
	}
	defer term.Close()
	stop := context.AfterFunc(ctx, func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	defer stop()
	ended := make(chan struct{})
	defer close(ended)
	if resize != nil {
		go func() {
			for {
				select {
				case sz, ok := <-resize:
					if !ok {
						return
					}
					pty.Setsize(term, &pty.Winsize{Cols: sz.Cols, Rows: sz.Rows})
				case <-ended:
					return
				}
			}
		}()
	}
	if stdin != nil {
		go io.Copy(term, stdin)
	}
	copied := make(chan struct{})
	go func() {
		io.Copy(stdout, term) // ends with EIO once the terminal's last user is gone
		close(copied)
	}()
	code, err := exitCode(cmd.Wait())
	select {
	case <-copied:
	case <-time.After(2 * time.Second):
	}
	return code, err
}

// exitCode is a command's exit code, or why it could not be waited for.
func exitCode(err error) (int, error) {
	e := runtime.ExitOf(err)
	if e.Err != nil {
		return 0, e.Err
	}
	return e.Code, nil
}

// PortAddr is where the pod's port answers on this agent: a container
// port with an assigned host port is reached there (the pod shares the
// agent's network in the process runtime), any other port as it is.
func (p *Pod) PortAddr(port int32) string {
	for _, c := range p.spec.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.ContainerPort == port {
				if hp, ok := podtask.HostPortOf(p.spec, cp); ok {
					port = hp
				}
			}
		}
	}
	return net.JoinHostPort(p.cfg.HostIP, strconv.Itoa(int(port)))
}
