// Package runtime runs pod containers. The process runtime runs each
// container as a host process group (no image is pulled: the container's
// command runs as given), with its output in size-rotated log files, and
// its memory and CPU limits enforced with cgroups where the machine allows
// (v1 or v2). Other runtimes can be added behind the Runtime interface.
package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
)

// Spec is one container run.
type Spec struct {
	// ID names the run (unique per executor), e.g. <pod uid>-<name>-<n>.
	ID   string
	Argv []string
	Env  []string
	Dir  string
	// LogPath is where stdout and stderr go (rotated by size).
	LogPath     string
	MaxLogBytes int64
	// MemoryLimit in bytes and CPUMillis, 0 for none.
	MemoryLimit int64
	CPUMillis   int64
	// Stdin keeps the container's stdin open for attach; TTY gives the
	// container a terminal (stdout and stderr are then one stream).
	Stdin bool
	TTY   bool
	// PIDFile, if set, holds "<pid> <start time>" of the container's
	// process group while it runs, so that a later executor of the agent
	// can end what an executor that died left behind (TakePIDFile,
	// EndGroups). It is removed once the group has ended.
	PIDFile string
}

// Exit is how a container ended.
type Exit struct {
	Code      int
	Signal    syscall.Signal // 0 unless killed by a signal
	OOMKilled bool
	Err       error // could not even start
	At        time.Time
}

// ExitOf reads how a command ended from what (*exec.Cmd).Wait returned:
// its code, 128+N for signal N as shells report it, or 128 with Err when
// it could not be waited for. Output still held by a child after the
// command exited (exec.ErrWaitDelay) is not a failure of the command.
func ExitOf(err error) Exit {
	var ee *exec.ExitError
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay):
		return Exit{}
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return Exit{Code: 128 + int(ws.Signal()), Signal: ws.Signal()}
		}
		return Exit{Code: ee.ExitCode()}
	}
	return Exit{Code: 128, Err: err}
}

// Container is a running container.
type Container interface {
	PID() int
	// Signal signals the whole process group.
	Signal(sig syscall.Signal) error
	// Done is closed when the container ended; Exit tells how.
	Done() <-chan struct{}
	Exit() Exit
}

// Runtime starts containers.
type Runtime interface {
	Start(spec Spec) (Container, error)
	// Name is what pod status reports as the container runtime.
	Name() string
}

// ErrNoCommand: the process runtime cannot run an image's entrypoint.
var ErrNoCommand = errors.New("the container has no command: km's process runtime runs the container's command (and args) on the agent and pulls no image; set command")

// Process is the process runtime.
type Process struct {
	// CgroupRoot is where container cgroups go ("" to probe the machine).
	cgroups *cgroups
}

// NewProcess makes a process runtime; cgroupParent names km's cgroup (e.g.
// "km/<agent>"). Limits are enforced only where cgroups are writable.
func NewProcess(cgroupParent string) *Process {
	return &Process{cgroups: probeCgroups(cgroupParent)}
}

// Name reports the runtime.
func (p *Process) Name() string { return "km-process" }

// CgroupsEnforced tells whether memory limits are enforced here.
func (p *Process) CgroupsEnforced() bool { return p.cgroups != nil }

type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	exit Exit
	cg   *containerCgroup
	log  *rotatingLog
	fan  *fanout
	// stdin is the container's open stdin (the terminal's master for a
	// TTY container), nil when it has none or it was closed.
	stdinMu sync.Mutex
	stdin   io.WriteCloser
	term    *os.File
}

func (c *process) PID() int { return c.cmd.Process.Pid }

func (c *process) Signal(sig syscall.Signal) error { return syscall.Kill(-c.cmd.Process.Pid, sig) }

func (c *process) Done() <-chan struct{} { return c.done }

func (c *process) Exit() Exit { <-c.done; return c.exit }

// Start runs the container's command in a process group of its own.
func (p *Process) Start(spec Spec) (Container, error) {
	if len(spec.Argv) == 0 {
		return nil, ErrNoCommand
	}
	if spec.Dir != "" {
		if err := os.MkdirAll(spec.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("working dir %s: %v", spec.Dir, err)
		}
	}
	lg, err := openRotatingLog(spec.LogPath, spec.MaxLogBytes)
	if err != nil {
		return nil, fmt.Errorf("log file: %v", err)
	}
	path := spec.Argv[0]
	if !strings.Contains(path, "/") {
		lp, err := lookPath(path, spec.Env)
		if err != nil {
			lg.Close()
			return nil, fmt.Errorf("executable %q not found in the container's PATH: %v", path, err)
		}
		path = lp
	}
	fan := newFanout()
	stdout := io.MultiWriter(lg.stream("stdout"), fanWriter{fan, false})
	cmd := &exec.Cmd{Path: path, Args: spec.Argv, Env: spec.Env, Dir: spec.Dir, Stdout: stdout,
		Stderr: io.MultiWriter(lg.stream("stderr"), fanWriter{fan, true})}
	var stdin io.WriteCloser
	if !spec.TTY {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if spec.Stdin {
			if stdin, err = cmd.StdinPipe(); err != nil {
				lg.Close()
				return nil, err
			}
		}
	}
	var cg *containerCgroup
	if p.cgroups != nil && (spec.MemoryLimit > 0 || spec.CPUMillis > 0) {
		cg, err = p.cgroups.create(spec.ID, spec.MemoryLimit, spec.CPUMillis)
		if err != nil {
			lg.Close()
			return nil, err
		}
	}
	var term *os.File
	var termCopied chan struct{}
	if spec.TTY {
		// The container leads a session of its own on the terminal (its
		// process group is its pid, as with Setpgid).
		cmd.Stdout, cmd.Stderr = nil, nil
		term, err = pty.Start(cmd)
		if err == nil {
			stdin = term
			termCopied = make(chan struct{})
			go func() { io.Copy(stdout, term); close(termCopied) }()
		}
	} else {
		err = cmd.Start()
	}
	if err != nil {
		lg.Close()
		if cg != nil {
			cg.remove()
		}
		return nil, fmt.Errorf("starting %q: %v", spec.Argv[0], err)
	}
	if cg != nil {
		// The child is put in its cgroup right after it starts; what it
		// forks inherits it. (A fork in the first instant would escape; the
		// limit still holds for the container's main process.)
		cg.add(cmd.Process.Pid)
	}
	if spec.PIDFile != "" {
		if err := writePIDFile(spec.PIDFile, cmd.Process.Pid); err != nil {
			// Not fatal: only the cleanup after a crashed executor needs it.
			fmt.Fprintf(os.Stderr, "km executor: %v (this container is not ended if the executor dies)\n", err)
		}
	}
	c := &process{cmd: cmd, done: make(chan struct{}), cg: cg, log: lg, fan: fan, stdin: stdin, term: term}
	go func() {
		err := cmd.Wait()
		if term != nil {
			select {
			case <-termCopied: // EIO once the terminal's last user is gone
			case <-time.After(2 * time.Second):
			}
			term.Close()
		}
		c.exit = ExitOf(err)
		c.exit.At = time.Now()
		// Whatever the container left in its group ends with it.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if cg != nil {
			c.exit.OOMKilled = cg.oomKilled()
			cg.killAll()
			cg.remove()
		}
		fan.close()
		lg.Close()
		if spec.PIDFile != "" {
			os.Remove(spec.PIDFile)
		}
		close(c.done)
	}()
	return c, nil
}

func lookPath(file string, env []string) (string, error) {
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			path = kv[5:]
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, file)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// ---------------------------------------------------------------------------
// Logs.

// rotatingLog writes a container's output to path in the CRI log format
// ("<RFC3339Nano time> <stdout|stderr> <F|P> <line>"), moving it to
// path.1 when it grows past max (one old file is kept).
type rotatingLog struct {
	mu   sync.Mutex
	path string
	max  int64
	f    *os.File
	size int64
}

func openRotatingLog(path string, max int64) (*rotatingLog, error) {
	if max <= 0 {
		max = 10 << 20
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	st, _ := f.Stat()
	return &rotatingLog{path: path, max: max, f: f, size: st.Size()}, nil
}

// lineWriter prefixes each line of one stream.
type lineWriter struct {
	l      *rotatingLog
	stream string
	mu     sync.Mutex
	buf    []byte
}

func (l *rotatingLog) stream(name string) *lineWriter { return &lineWriter{l: l, stream: name} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := indexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i], "F")
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 16<<10 {
		// A very long line without newline goes out as a partial.
		w.emit(w.buf, "P")
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

func (w *lineWriter) emit(line []byte, tag string) {
	rec := make([]byte, 0, len(line)+48)
	rec = time.Now().UTC().AppendFormat(rec, time.RFC3339Nano)
	rec = append(rec, ' ')
	rec = append(rec, w.stream...)
	rec = append(rec, ' ')
	rec = append(rec, tag...)
	rec = append(rec, ' ')
	rec = append(rec, line...)
	rec = append(rec, '\n')
	w.l.write(rec)
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

func (l *rotatingLog) write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.size+int64(len(p)) > l.max && l.size > 0 {
		l.f.Close()
		os.Rename(l.path, l.path+".1")
		f, err := os.OpenFile(l.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return 0, err
		}
		l.f, l.size = f, 0
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	return n, err
}

func (l *rotatingLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

var _ io.Writer = (*lineWriter)(nil)
