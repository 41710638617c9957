// Package controlplane starts km etcd, km apiserver and km controller-manager
// as child processes of the built km binary for tests: free loopback ports,
// a temporary data dir, readiness waited for with deadlines, ordered stop,
// restart on the same data. Processes die with the test binary.
package controlplane

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k8sm/k8sm/internal/testing/kmbinary"
)

// Options change the components' flags.
type Options struct {
	// ControllerManagerArgs are added to km controller-manager's flags.
	ControllerManagerArgs []string
	// NoControllerManager starts only etcd and the apiserver.
	NoControllerManager bool
}

// ControlPlane is a running etcd + apiserver (+ controller-manager).
type ControlPlane struct {
	t       testing.TB
	km      string
	Dir     string
	CertDir string
	opts    Options

	EtcdPort, PeerPort, APIPort, CMPort int

	mu    sync.Mutex
	procs []*proc // in start order
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Start starts a control plane and waits until it serves (readyz, and the
// default service account when the controller-manager runs).
func Start(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	dir := t.TempDir()
	cp := &ControlPlane{t: t, km: kmbinary.Path(t), Dir: dir, CertDir: filepath.Join(dir, "certs"), opts: opts,
		EtcdPort: FreePort(t), PeerPort: FreePort(t), APIPort: FreePort(t), CMPort: FreePort(t)}
	out, err := exec.Command(cp.km, "certs", "--cert-dir", cp.CertDir, "--apiserver-url", cp.URL()).CombinedOutput()
	if err != nil {
		t.Fatalf("km certs: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		cp.Stop()
		if t.Failed() {
			for _, name := range []string{"etcd", "apiserver", "controller-manager"} {
				if b, err := os.ReadFile(filepath.Join(dir, name+".log")); err == nil {
					t.Logf("--- km %s log (end) ---\n%s", name, tail(b, 4000))
				}
			}
		}
	})
	cp.StartAll()
	return cp
}

// URL of the apiserver.
func (cp *ControlPlane) URL() string { return "https://127.0.0.1:" + strconv.Itoa(cp.APIPort) }

// Kubeconfig is the admin kubeconfig.
func (cp *ControlPlane) Kubeconfig() string { return filepath.Join(cp.CertDir, "admin.kubeconfig") }

// Config is a client config for the admin.
func (cp *ControlPlane) Config() *rest.Config {
	cfg, err := clientcmd.BuildConfigFromFlags("", cp.Kubeconfig())
	if err != nil {
		cp.t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	cfg.WarningHandler = rest.NoWarnings{}
	return cfg
}

// Client is a clientset for the admin.
func (cp *ControlPlane) Client() kubernetes.Interface {
	return kubernetes.NewForConfigOrDie(cp.Config())
}

func (cp *ControlPlane) start(name string, args ...string) {
	cp.t.Helper()
	logPath := filepath.Join(cp.Dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		cp.t.Fatal(err)
	}
	cmd := exec.Command(cp.km, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// The component dies with the test binary, whatever happens.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		cp.t.Fatalf("starting km %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	cp.mu.Lock()
	cp.procs = append(cp.procs, p)
	cp.mu.Unlock()
}

// StartAll starts the components (again, after Stop) on the same data.
func (cp *ControlPlane) StartAll() {
	cp.t.Helper()
	cp.start("etcd", "etcd", "--data-dir", filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", cp.EtcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", cp.PeerPort))
	cp.start("apiserver", "apiserver", "--cert-dir", cp.CertDir,
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", cp.EtcdPort), fmt.Sprintf("--secure-port=%d", cp.APIPort))
	client := cp.Client()
	cp.waitFor("apiserver /readyz", 90*time.Second, func() bool {
		b, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background())
		return err == nil && string(b) == "ok"
	})
	if cp.opts.NoControllerManager {
		return
	}
	args := append([]string{"controller-manager", "--cert-dir", cp.CertDir,
		fmt.Sprintf("--master=%s", cp.URL()), fmt.Sprintf("--secure-port=%d", cp.CMPort)}, cp.opts.ControllerManagerArgs...)
	cp.start("controller-manager", args...)
	cp.waitFor("default service account", 90*time.Second, func() bool {
		_, err := client.CoreV1().ServiceAccounts("default").Get(context.Background(), "default", metav1.GetOptions{})
		return err == nil
	})
}

func (cp *ControlPlane) waitFor(what string, d time.Duration, cond func() bool) {
	cp.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		cp.mu.Lock()
		for _, p := range cp.procs {
			select {
			case <-p.done:
				b, _ := os.ReadFile(p.log)
				cp.mu.Unlock()
				cp.t.Fatalf("km %s exited while waiting for %s:\n%s", p.name, what, tail(b, 3000))
			default:
			}
		}
		cp.mu.Unlock()
		if time.Now().After(deadline) {
			cp.t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Stop stops the components in reverse order (controller-manager, then
// the apiserver, then etcd), SIGTERM first.
func (cp *ControlPlane) Stop() {
	cp.mu.Lock()
	procs := cp.procs
	cp.procs = nil
	cp.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// IsNotFound re-exports the apierrors check for tests.
func IsNotFound(err error) bool { return apierrors.IsNotFound(err) }

// RestartWith stops the components and starts them again on the same data
// with other options.
func (cp *ControlPlane) RestartWith(opts Options) {
	cp.t.Helper()
	cp.Stop()
	cp.opts = opts
	cp.StartAll()
}
