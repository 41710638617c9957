package pods

import (
	"context"
	"fmt"
	"io"

	"github.com/k8sm/k8sm/internal/executor/runtime"
)

// Attach connects a client to a running container, as `kubectl attach`
// and `kubectl run -it` ask the kubelet to: the container's output from
// now on, and its stdin if the container keeps one (stdin: true). With
// stdinOnce the container's stdin closes when the first client leaves.
// It returns when the client goes (ctx) or the container ends.
func (p *Pod) Attach(ctx context.Context, name string, stdin io.Reader, stdout, stderr io.Writer, resize <-chan WinSize) error {
	c, rc, err := p.runningContainer(name)
	if err != nil {
		return err
	}
	a, ok := rc.(runtime.Attachable)
	if !ok {
		return fmt.Errorf("the container runtime cannot attach to container %q", name)
	}
	in, out, stop := a.Attach()
	defer stop()
	if in != nil && stdin != nil {
		go func() {
			io.Copy(in, stdin)
			// The client closed its stdin: so does a stdinOnce container.
			if c.spec.StdinOnce {
				a.CloseStdin()
			}
		}()
		if c.spec.StdinOnce {
			defer a.CloseStdin()
		}
	}
	for {
		select {
		case sz, ok := <-resize:
			if !ok {
				resize = nil
				continue
			}
			a.Resize(sz.Cols, sz.Rows)
		case chunk, ok := <-out:
			if !ok {
				return nil // the container ended
			}
			w := stdout
			if chunk.Stderr && stderr != nil {
				w = stderr
			}
			if w != nil {
				if _, err := w.Write(chunk.Data); err != nil {
					return nil // the client went
				}
			}
		case <-ctx.Done():
			return nil
		}
	}
}
