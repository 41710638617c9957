package kubeletapi

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"

	"github.com/k8sm/k8sm/internal/executor/pods"
)

// Streaming timeouts, the kubelet's defaults.
const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = 30 * time.Second
)

// Streamer is what exec and port-forward need of a pod, beyond Pod.
type Streamer interface {
	Exec(ctx context.Context, container string, argv []string, stdin io.Reader, stdout, stderr io.Writer, tty bool, resize <-chan pods.WinSize) (int, error)
	// PortAddr is where the pod's port answers (host:port).
	PortAddr(port int32) string
	Attach(ctx context.Context, container string, stdin io.Reader, stdout, stderr io.Writer, resize <-chan pods.WinSize) error
}

// exitError is a command's non-zero exit as the streaming library
// reports it (k8s.io/utils/exec.ExitError): kubectl exits with the code.
type exitError int

func (e exitError) Error() string   { return fmt.Sprintf("command terminated with exit code %d", int(e)) }
func (e exitError) String() string  { return e.Error() }
func (e exitError) Exited() bool    { return true }
func (e exitError) ExitStatus() int { return int(e) }

// streamer adapts the pods to the streaming library's interfaces.
type streamer struct{ pods Pods }

func (s streamer) find(namespacedName string) (Streamer, error) {
	ns, name, _ := strings.Cut(namespacedName, "/")
	p := s.pods.Find(ns, name)
	if p == nil {
		return nil, fmt.Errorf("pod %s/%s is not running on this node", ns, name)
	}
	st, ok := p.(Streamer)
	if !ok {
		return nil, fmt.Errorf("pod %s/%s cannot stream", ns, name)
	}
	return st, nil
}

func (s streamer) ExecInContainer(ctx context.Context, pod, _ string, container string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	p, err := s.find(pod)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	defer close(done)
	stdout, stderr := writers(out, errw)
	code, err := p.Exec(ctx, container, cmd, in, stdout, stderr, tty, sizes(resize, done))
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError(code)
	}
	return nil
}

func (s streamer) AttachContainer(ctx context.Context, pod, _ string, container string, in io.Reader, out, errw io.WriteCloser, _ bool, resize <-chan remotecommand.TerminalSize) error {
	p, err := s.find(pod)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	defer close(done)
	stdout, stderr := writers(out, errw)
	return p.Attach(ctx, container, in, stdout, stderr, sizes(resize, done))
}

// writers turns the streams a client asked for into writers (absent ones
// discard).
func writers(out, errw io.WriteCloser) (io.Writer, io.Writer) {
	var stdout, stderr io.Writer = io.Discard, io.Discard
	if out != nil {
		stdout = out
	}
	if errw != nil {
		stderr = errw
	}
	return stdout, stderr
}

// sizes passes terminal sizes on until done; nothing is sent after.
func sizes(resize <-chan remotecommand.TerminalSize, done <-chan struct{}) chan pods.WinSize {
	if resize == nil {
		return nil
	}
	ch := make(chan pods.WinSize)
	go func() {
		for {
			select {
			case sz, ok := <-resize:
				if !ok {
					return
				}
				select {
				case ch <- pods.WinSize{Cols: sz.Width, Rows: sz.Height}:
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	return ch
}

func (s streamer) PortForward(ctx context.Context, pod, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	p, err := s.find(pod)
	if err != nil {
		return err
	}
	addr := p.PortAddr(port)
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("port %d of pod %s (%s): %v", port, pod, addr, err)
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(conn, stream); conn.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(stream, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

// pathParts splits /exec/{ns}/{pod}/{container} and /portForward/{ns}/{pod}
// (and the kubelet's variants with the pod's uid before the container).
func pathParts(path, prefix string, n int) ([]string, bool) {
	parts := strings.Split(strings.TrimPrefix(path, prefix), "/")
	if len(parts) == n+1 && n == 3 {
		parts = []string{parts[0], parts[1], parts[3]} // {ns}/{pod}/{uid}/{container}
	}
	if len(parts) == n+1 && n == 2 {
		parts = parts[:2] // {ns}/{pod}/{uid}
	}
	if len(parts) != n {
		return nil, false
	}
	for _, p := range parts {
		if p == "" {
			return nil, false
		}
	}
	return parts, true
}

// streamTarget reads a streaming request's path and answers it with an
// error if the path is wrong or the pod is not here.
func streamTarget(w http.ResponseWriter, r *http.Request, ps Pods, prefix string, n int, usage string) ([]string, bool) {
	parts, ok := pathParts(r.URL.Path, prefix, n)
	if !ok {
		http.Error(w, "expected "+usage, http.StatusBadRequest)
		return nil, false
	}
	if ps.Find(parts[0], parts[1]) == nil {
		http.Error(w, fmt.Sprintf("pod %s/%s is not running on this node", parts[0], parts[1]), http.StatusNotFound)
		return nil, false
	}
	return parts, true
}

func serveExec(w http.ResponseWriter, r *http.Request, ps Pods) {
	parts, ok := streamTarget(w, r, ps, "/exec/", 3, "/exec/{namespace}/{pod}/{container}?command=...")
	if !ok {
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		http.Error(w, "no command: give one as command=...", http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, r, streamer{ps}, parts[0]+"/"+parts[1], "", parts[2], cmd, opts,
		streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func servePortForward(w http.ResponseWriter, r *http.Request, ps Pods) {
	parts, ok := streamTarget(w, r, ps, "/portForward/", 2, "/portForward/{namespace}/{pod}")
	if !ok {
		return
	}
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, r, streamer{ps}, parts[0]+"/"+parts[1], "", opts,
		streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

func serveAttach(w http.ResponseWriter, r *http.Request, ps Pods) {
	parts, ok := streamTarget(w, r, ps, "/attach/", 3, "/attach/{namespace}/{pod}/{container}")
	if !ok {
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommand.ServeAttach(w, r, streamer{ps}, parts[0]+"/"+parts[1], "", parts[2], opts,
		streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}
