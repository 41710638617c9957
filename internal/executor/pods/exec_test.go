package pods

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestExec(t *testing.T) {
	cfg := testConfig(t, &recorder{})
	c := sh("main", "sleep 300")
	c.Env = []corev1.EnvVar{{Name: "GREETING", Value: "hi"}}
	c.WorkingDir = t.TempDir()
	p := Start(cfg, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-exec"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{c, sh("done", "exit 0")}, RestartPolicy: corev1.RestartPolicyNever}})
	defer p.Terminate(time.Second)
	waitFor(t, "main running", func() bool { return p.Running("main") })
	ctx := context.Background()

	// The container's environment and directory; stdout, stderr and the
	// exit code apart.
	var out, errb bytes.Buffer
	code, err := p.Exec(ctx, "main", []string{"sh", "-c", "echo $GREETING; pwd; echo oops >&2; exit 3"}, nil, &out, &errb, false, nil)
	if err != nil || code != 3 || out.String() != "hi\n"+c.WorkingDir+"\n" || errb.String() != "oops\n" {
		t.Fatalf("exec: code %d err %v stdout %q stderr %q", code, err, out.String(), errb.String())
	}

	// stdin reaches the command.
	out.Reset()
	code, err = p.Exec(ctx, "main", []string{"cat"}, strings.NewReader("piped\n"), &out, &errb, false, nil)
	if err != nil || code != 0 || out.String() != "piped\n" {
		t.Fatalf("exec with stdin: code %d err %v stdout %q", code, err, out.String())
	}

	// A terminal: the command sees one, and its size.
	out.Reset()
	sizes := make(chan WinSize, 1)
	sizes <- WinSize{Cols: 100, Rows: 40}
	code, err = p.Exec(ctx, "main", []string{"sh", "-c", "tty; stty size"}, nil, &out, nil, true, sizes)
	if err != nil || code != 0 || !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "40 100") {
		t.Fatalf("exec with a tty: code %d err %v output %q", code, err, out.String())
	}

	// The request going away ends the command.
	cctx, cancel := context.WithCancel(ctx)
	doneCh := make(chan int)
	go func() {
		code, _ := p.Exec(cctx, "main", []string{"sleep", "300"}, nil, &out, &errb, false, nil)
		doneCh <- code
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case code := <-doneCh:
		if code != 128+9 {
			t.Errorf("a cancelled exec: code %d, want 137 (SIGKILL)", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled exec did not end")
	}

	for _, tc := range []struct {
		container string
		argv      []string
		want      string
	}{
		{"nope", []string{"true"}, `container "nope" is not in pod ns/p`},
		{"main", nil, "no command to run"},
		{"main", []string{"no-such-command-km"}, `"no-such-command-km" not found on the container's PATH`},
	} {
		if _, err := p.Exec(ctx, tc.container, tc.argv, nil, &out, &errb, false, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("exec %s %v: %v, want %q", tc.container, tc.argv, err, tc.want)
		}
	}
	waitFor(t, "done exited", func() bool { return !p.Running("done") })
	if _, err := p.Exec(ctx, "done", []string{"true"}, nil, &out, &errb, false, nil); err == nil || !strings.Contains(err.Error(), "is not running") {
		t.Errorf("exec in an exited container: %v", err)
	}
}

func TestPortAddr(t *testing.T) {
	cfg := testConfig(t, &recorder{})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-pa",
		Annotations: map[string]string{"k8s.mesosphere.io/port_TCP_8080": "31005"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{{ContainerPort: 8080}, {ContainerPort: 9090}}}}}}
	p := &Pod{cfg: cfg, spec: pod}
	for port, want := range map[int32]string{8080: "127.0.0.1:31005", 9090: "127.0.0.1:9090", 22: "127.0.0.1:22"} {
		if got := p.PortAddr(port); got != want {
			t.Errorf("PortAddr(%d) = %s, want %s", port, got, want)
		}
	}
}

func TestAttach(t *testing.T) {
	cfg := testConfig(t, &recorder{})
	c := sh("main", "while read l; do echo got $l; done; echo stdin closed; sleep 300")
	c.Stdin, c.StdinOnce = true, true
	p := Start(cfg, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-attach"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{c}}})
	defer p.Terminate(time.Second)
	waitFor(t, "main running", func() bool { return p.Running("main") })

	// The client sends a line and closes its stdin: with stdinOnce the
	// container's stdin closes too.
	pr, pw := io.Pipe()
	out := &syncWriter{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Attach(ctx, "main", pr, out, out, nil) }()
	waitFor(t, "attached", func() bool { pw.Write([]byte("hello\n")); return strings.Contains(out.String(), "got hello") })
	pw.Close()
	waitFor(t, "stdin closed after the client's", func() bool { return strings.Contains(out.String(), "stdin closed") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := p.Attach(context.Background(), "nope", nil, out, out, nil); err == nil || !strings.Contains(err.Error(), `container "nope" is not in pod ns/p`) {
		t.Errorf("attach to a missing container: %v", err)
	}
}

type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
