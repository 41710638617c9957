// Package controlplane starts a Kubernetes control plane for tests: km etcd,
// km apiserver and km controller-manager as child processes of the km
// binary (see package kmbinary), on free loopback ports, with their data
// and certificates in the test's temporary directory.
//
//	cp := controlplane.Start(t, controlplane.Options{})
//	client := cp.Client()                  // client-go, as the admin
//	exec.Command("kubectl", "--kubeconfig", cp.Kubeconfig(), ...)
//	cp.Restart()                           // stop all, start again on the same data
//
// Start returns once the cluster can take pods: the apiserver's /readyz is
// ok and the controller-manager has made the default service account
// (about 5 s after it starts). Every wait has a deadline, and a component
// that exits while waited for fails the test with the end of its log.
//
// The processes stop when the test ends, failed or not (t.Cleanup: SIGTERM
// in the reverse order of start, SIGKILL after 20 s), and die with the test
// binary if it is killed or times out (Pdeathsig). Pdeathsig follows the OS
// thread that started the process: do not call Start, StartAll or Restart
// from a goroutine that locked its thread (runtime.LockOSThread) and ends.
// Logs are in Dir (<component>.log); their ends are printed when the test
// fails.
//
// Tests that use it need only client-go: the control plane runs in the km
// binary, so test binaries do not link k8s.io/kubernetes.
package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k8sm/k8sm/internal/testing/kmbinary"
)

// Options change the components' flags.
type Options struct {
	// APIServerArgs are added to km apiserver's flags.
	APIServerArgs []string
	// ControllerManagerArgs are added to km controller-manager's flags,
	// e.g. "--host-port-endpoints=false".
	ControllerManagerArgs []string
	// NoControllerManager starts only etcd and the apiserver (then
	// nothing makes service accounts, and pods are refused).
	NoControllerManager bool
	// ReadyTimeout bounds each wait for a component (default 90 s).
	ReadyTimeout time.Duration
}

// Component names, as in Log.
const (
	Etcd              = "etcd"
	APIServer         = "apiserver"
	ControllerManager = "controller-manager"
)

// ControlPlane is a running etcd, apiserver and (unless told otherwise)
// controller-manager.
type ControlPlane struct {
	t    testing.TB
	km   string
	opts Options

	// Dir holds the components' data (etcd/), certificates (certs/) and
	// logs (<component>.log).
	Dir     string
	CertDir string
	// The loopback ports: etcd clients and peers, the apiserver, the
	// controller-manager's secure port.
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

// FreePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// errPortTaken: another process took one of the ports between FreePort
// and the component's start.
var errPortTaken = errors.New("port taken")

// Start starts a control plane and waits until it serves.
func Start(t testing.TB, opts Options) *ControlPlane {
	t.Helper()
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	dir := t.TempDir()
	cp := &ControlPlane{t: t, km: kmbinary.Path(t), Dir: dir, CertDir: filepath.Join(dir, "certs"), opts: opts}
	t.Cleanup(func() {
		cp.Stop()
		if t.Failed() {
			for _, name := range []string{Etcd, APIServer, ControllerManager} {
				if b, err := os.ReadFile(filepath.Join(dir, name+".log")); err == nil {
					t.Logf("--- end of km %s's log ---\n%s", name, tail(b, 4000))
				}
			}
		}
	})
	for attempt := 1; ; attempt++ {
		cp.EtcdPort, cp.PeerPort, cp.APIPort, cp.CMPort = FreePort(t), FreePort(t), FreePort(t), FreePort(t)
		out, err := exec.Command(cp.km, "certs", "--cert-dir", cp.CertDir, "--apiserver-url", cp.URL()).CombinedOutput()
		if err != nil {
			t.Fatalf("km certs: %v\n%s", err, out)
		}
		err = cp.startAll()
		if err == nil {
			return cp
		}
		cp.Stop()
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("%v; again on other ports", err)
		os.RemoveAll(filepath.Join(dir, "etcd"))
	}
}

// URL of the apiserver.
func (cp *ControlPlane) URL() string { return "https://127.0.0.1:" + strconv.Itoa(cp.APIPort) }

// EtcdURL is etcd's client URL.
func (cp *ControlPlane) EtcdURL() string { return "http://127.0.0.1:" + strconv.Itoa(cp.EtcdPort) }

// Kubeconfig is the path of the admin's kubeconfig (system:masters).
func (cp *ControlPlane) Kubeconfig() string { return cp.KubeconfigOf("admin") }

// KubeconfigOf is the kubeconfig of one of km certs' clients: admin,
// controller-manager, scheduler, executor.
func (cp *ControlPlane) KubeconfigOf(client string) string {
	return filepath.Join(cp.CertDir, client+".kubeconfig")
}

// Config is a client config for the admin, with high rate limits and
// deprecation warnings off.
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

// Log returns what a component has logged so far (all its runs).
func (cp *ControlPlane) Log(component string) string {
	b, _ := os.ReadFile(filepath.Join(cp.Dir, component+".log"))
	return string(b)
}

func (cp *ControlPlane) start(name string, args ...string) error {
	logPath := filepath.Join(cp.Dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== %s: km %s\n", time.Now().Format(time.RFC3339), strings.Join(args, " "))
	cmd := exec.Command(cp.km, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// The component dies with the test binary, whatever happens to it
	// (a panic, a timeout, SIGKILL): t.Cleanup would not run then.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting km %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	cp.mu.Lock()
	cp.procs = append(cp.procs, p)
	cp.mu.Unlock()
	return nil
}

// StartAll starts the components again after Stop, on the same data and
// ports, and waits until they serve.
func (cp *ControlPlane) StartAll() {
	cp.t.Helper()
	if err := cp.startAll(); err != nil {
		cp.t.Fatal(err)
	}
}

func (cp *ControlPlane) startAll() error {
	begin := time.Now()
	if err := cp.start(Etcd, "etcd", "--data-dir", filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls", cp.EtcdURL(),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", cp.PeerPort)); err != nil {
		return err
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	if err := cp.waitFor("etcd /health", func() bool {
		resp, err := hc.Get(cp.EtcdURL() + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return err
	}
	etcdReady := time.Since(begin)

	args := append([]string{"apiserver", "--cert-dir", cp.CertDir, "--etcd-servers=" + cp.EtcdURL(),
		fmt.Sprintf("--secure-port=%d", cp.APIPort)}, cp.opts.APIServerArgs...)
	if err := cp.start(APIServer, args...); err != nil {
		return err
	}
	client := cp.Client()
	if err := cp.waitFor("apiserver /readyz", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(b) == "ok"
	}); err != nil {
		return err
	}
	apiReady := time.Since(begin)
	if cp.opts.NoControllerManager {
		cp.t.Logf("control plane up in %v (etcd %v, apiserver %v)", apiReady.Round(time.Millisecond), etcdReady.Round(time.Millisecond), (apiReady - etcdReady).Round(time.Millisecond))
		return nil
	}

	args = append([]string{"controller-manager", "--cert-dir", cp.CertDir,
		"--master=" + cp.URL(), fmt.Sprintf("--secure-port=%d", cp.CMPort)}, cp.opts.ControllerManagerArgs...)
	if err := cp.start(ControllerManager, args...); err != nil {
		return err
	}
	// Its own health first: after a restart the default service account
	// is there before the controller-manager runs.
	insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := cp.waitFor("controller-manager /healthz", func() bool {
		resp, err := insecure.Get(fmt.Sprintf("https://127.0.0.1:%d/healthz", cp.CMPort))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}); err != nil {
		return err
	}
	// Pods are refused until the service account controller has made
	// the default service account.
	if err := cp.waitFor("the default service account", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil
	}); err != nil {
		return err
	}
	all := time.Since(begin)
	cp.t.Logf("control plane up in %v (etcd %v, apiserver %v, controller-manager and the default service account %v)",
		all.Round(time.Millisecond), etcdReady.Round(time.Millisecond), (apiReady - etcdReady).Round(time.Millisecond), (all - apiReady).Round(time.Millisecond))
	return nil
}

// waitFor polls cond until it holds, a component exits, or the deadline.
func (cp *ControlPlane) waitFor(what string, cond func() bool) error {
	deadline := time.Now().Add(cp.opts.ReadyTimeout)
	for !cond() {
		cp.mu.Lock()
		procs := append([]*proc(nil), cp.procs...)
		cp.mu.Unlock()
		for _, p := range procs {
			select {
			case <-p.done:
				b, _ := os.ReadFile(p.log)
				err := fmt.Errorf("km %s exited (%v) while waiting for %s:\n%s", p.name, p.cmd.ProcessState, what, tail(b, 3000))
				if strings.Contains(string(b), "already in use") {
					err = fmt.Errorf("%w: %v", errPortTaken, err)
				}
				return err
			default:
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v waiting for %s", cp.opts.ReadyTimeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Stop stops the components in the reverse order of their start
// (controller-manager, apiserver, etcd): SIGTERM, then SIGKILL after 20 s.
// Stopping a stopped control plane does nothing.
func (cp *ControlPlane) Stop() {
	cp.mu.Lock()
	procs := cp.procs
	cp.procs = nil
	cp.mu.Unlock()
	var took []string
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		begin := time.Now()
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			cp.t.Logf("km %s did not stop within 20s of SIGTERM; killing it", p.name)
			p.cmd.Process.Kill()
			<-p.done
		}
		took = append(took, fmt.Sprintf("%s %v", p.name, time.Since(begin).Round(time.Millisecond)))
	}
	if len(took) > 0 {
		cp.t.Logf("control plane stopped (%s)", strings.Join(took, ", "))
	}
}

// Restart stops the components and starts them again on the same data.
func (cp *ControlPlane) Restart() {
	cp.t.Helper()
	cp.RestartWith(cp.opts)
}

// RestartWith stops the components and starts them again on the same data
// with other options.
func (cp *ControlPlane) RestartWith(opts Options) {
	cp.t.Helper()
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	cp.Stop()
	cp.opts = opts
	cp.StartAll()
}
