package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func startAttachable(t *testing.T, spec Spec) (Container, Attachable) {
	t.Helper()
	dir := t.TempDir()
	spec.Env = []string{"PATH=" + os.Getenv("PATH")}
	spec.Dir, spec.LogPath = dir, filepath.Join(dir, "c.log")
	c, err := NewProcess("km-test").Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Signal(9); <-c.Done() })
	a, ok := c.(Attachable)
	if !ok {
		t.Fatal("a process container is not Attachable")
	}
	return c, a
}

// readUntil collects output until it holds want.
func readUntil(t *testing.T, out <-chan Chunk, want string) string {
	t.Helper()
	var got strings.Builder
	deadline := time.After(10 * time.Second)
	for !strings.Contains(got.String(), want) {
		select {
		case c, ok := <-out:
			if !ok {
				t.Fatalf("output ended before %q; got %q", want, got.String())
			}
			got.Write(c.Data)
		case <-deadline:
			t.Fatalf("no %q in the output; got %q", want, got.String())
		}
	}
	return got.String()
}

func TestAttachStdin(t *testing.T) {
	c, a := startAttachable(t, Spec{ID: "attach-stdin", Argv: []string{"sh", "-c", "while read l; do echo got $l; echo err $l >&2; done; echo eof"}, Stdin: true})
	in, out, stop := a.Attach()
	defer stop()
	if in == nil {
		t.Fatal("no stdin for a container with stdin")
	}
	in.Write([]byte("one\n"))
	readUntil(t, out, "got one")
	// A second client sees what comes after it attached.
	_, out2, stop2 := a.Attach()
	in.Write([]byte("two\n"))
	readUntil(t, out2, "got two")
	stop2()
	// stderr comes apart.
	in.Write([]byte("three\n"))
	for {
		ch := <-out
		if ch.Stderr && strings.Contains(string(ch.Data), "err three") {
			break
		}
	}
	// Closing stdin is the container's end of input.
	a.CloseStdin()
	readUntil(t, out, "eof")
	<-c.Done()
	if _, ok := <-out; ok {
		for range out {
		}
	}
	if b, _ := os.ReadFile(filepath.Join(filepath.Dir(c.(*process).log.path), "c.log")); !strings.Contains(string(b), "got one") {
		t.Errorf("the log lacks what attach saw: %q", b)
	}
}

func TestAttachNoStdin(t *testing.T) {
	_, a := startAttachable(t, Spec{ID: "attach-nostdin", Argv: []string{"sleep", "300"}})
	in, _, stop := a.Attach()
	defer stop()
	if in != nil {
		t.Fatal("stdin offered for a container without stdin")
	}
}

func TestAttachTTY(t *testing.T) {
	_, a := startAttachable(t, Spec{ID: "attach-tty", Argv: []string{"sh"}, Stdin: true, TTY: true})
	in, out, stop := a.Attach()
	defer stop()
	a.Resize(120, 50)
	in.Write([]byte("tty; stty size; echo $((6*7))\n"))
	got := readUntil(t, out, "42")
	if !strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "50 120") {
		t.Fatalf("a TTY container's output: %q", got)
	}
}
