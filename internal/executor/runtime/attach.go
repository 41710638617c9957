package runtime

import (
	"io"
	"os"
	"sync"

	"github.com/creack/pty"
)

// Chunk is a piece of a container's live output.
type Chunk struct {
	Stderr bool
	Data   []byte
}

// Attachable is a container one can attach to (kubectl attach, kubectl
// run -it): its stdin, if the container keeps one (stdin: true), and its
// output from now on.
type Attachable interface {
	// Attach subscribes to the output; stop ends the subscription. The
	// channel closes when the container ends. stdin is nil when the
	// container has none.
	Attach() (stdin io.Writer, out <-chan Chunk, stop func())
	// CloseStdin closes the container's stdin (stdinOnce).
	CloseStdin()
	// Resize sets the terminal size of a TTY container.
	Resize(cols, rows uint16)
}

// fanout hands the live output to every attached client. A client that
// does not keep up loses chunks rather than slow the container down: the
// log file has everything.
type fanout struct {
	mu     sync.Mutex
	subs   map[int]chan Chunk
	next   int
	closed bool
}

func newFanout() *fanout { return &fanout{subs: map[int]chan Chunk{}} }

func (f *fanout) write(stderr bool, p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.subs) == 0 {
		return
	}
	c := Chunk{Stderr: stderr, Data: append([]byte(nil), p...)}
	for _, ch := range f.subs {
		select {
		case ch <- c:
		default:
		}
	}
}

func (f *fanout) subscribe() (<-chan Chunk, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan Chunk, 256)
	if f.closed {
		close(ch)
		return ch, func() {}
	}
	id := f.next
	f.next++
	f.subs[id] = ch
	return ch, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, ok := f.subs[id]; ok {
			delete(f.subs, id)
			close(ch)
		}
	}
}

func (f *fanout) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for id, ch := range f.subs {
		delete(f.subs, id)
		close(ch)
	}
}

type fanWriter struct {
	f      *fanout
	stderr bool
}

func (w fanWriter) Write(p []byte) (int, error) { w.f.write(w.stderr, p); return len(p), nil }

func (c *process) Attach() (io.Writer, <-chan Chunk, func()) {
	out, stop := c.fan.subscribe()
	c.stdinMu.Lock()
	defer c.stdinMu.Unlock()
	if c.stdin == nil {
		return nil, out, stop
	}
	return stdinWriter{c}, out, stop
}

// stdinWriter writes to the container's stdin while it is open.
type stdinWriter struct{ c *process }

func (w stdinWriter) Write(p []byte) (int, error) {
	w.c.stdinMu.Lock()
	in := w.c.stdin
	w.c.stdinMu.Unlock()
	if in == nil {
		return 0, os.ErrClosed
	}
	return in.Write(p)
}

func (c *process) CloseStdin() {
	c.stdinMu.Lock()
	defer c.stdinMu.Unlock()
	if c.stdin != nil && c.term == nil {
		c.stdin.Close()
	}
	if c.term != nil {
		// A terminal's end of input is ^D, not a closed master (that
		// would hang the container up).
		c.term.Write([]byte{4})
	}
	c.stdin = nil
}

func (c *process) Resize(cols, rows uint16) {
	if c.term != nil {
		pty.Setsize(c.term, &pty.Winsize{Cols: cols, Rows: rows})
	}
}
