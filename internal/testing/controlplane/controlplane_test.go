package controlplane

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k8sm/k8sm/internal/testing/kmbinary"
)

// The harness starts a cluster that takes pods, restarts it on the same
// data, and leaves nothing running or listening after Stop.
func TestStartRestartStop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	cp := Start(t, Options{})
	ctx := context.Background()
	client := cp.Client()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "none"}}}}
	created, err := client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the cluster should take pods once Start returns: %v", err)
	}
	procs := append([]*proc(nil), cp.procs...)

	cp.Restart()
	got, err := client.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
	if err != nil || got.UID != created.UID {
		t.Fatalf("after a restart: %v, %v", got, err)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		default:
			t.Errorf("km %s of the first run is still running", p.name)
		}
	}
	if !strings.Contains(cp.Log(Etcd), "km etcd: stopped") {
		t.Errorf("etcd did not stop cleanly on SIGTERM:\n%s", cp.Log(Etcd))
	}

	cp.Stop()
	for _, port := range []int{cp.EtcdPort, cp.PeerPort, cp.APIPort, cp.CMPort} {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Errorf("port %d still taken after Stop: %v", port, err)
			continue
		}
		ln.Close()
	}
}

// Each component started on a port already in use fails at once with a
// message that names the port and the flag that changes it.
func TestPortInUseIsNamedWithItsFlag(t *testing.T) {
	km := kmbinary.Path(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	free := func() string { return strconv.Itoa(FreePort(t)) }
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	if out, err := exec.Command(km, "certs", "--cert-dir", certDir).CombinedOutput(); err != nil {
		t.Fatalf("km certs: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"etcd", "--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", "http://127.0.0.1:" + port, "--listen-peer-urls", "http://127.0.0.1:" + free()},
			"km etcd: port " + port + " on 127.0.0.1 is already in use (another etcd?); choose another with --listen-client-urls"},
		{[]string{"etcd", "--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", "http://127.0.0.1:" + free(), "--listen-peer-urls", "http://127.0.0.1:" + port},
			"km etcd: port " + port + " on 127.0.0.1 is already in use (another etcd?); choose another with --listen-peer-urls"},
		{[]string{"apiserver", "--cert-dir", certDir, "--secure-port", port},
			"km apiserver: port " + port + " on 127.0.0.1 is already in use (another apiserver?); choose another with --secure-port"},
		{[]string{"controller-manager", "--cert-dir", certDir, "--secure-port=" + port},
			"km controller-manager: port " + port + " on 127.0.0.1 is already in use (another controller-manager?); choose another with --secure-port"},
		{[]string{"mesos", "master", "--port", port}, "choose another port with --port"},
		{[]string{"mesos", "agent", "--master", "127.0.0.1:1", "--work_dir", filepath.Join(dir, "agent"), "--port", port}, "choose another address with --ip/--port"},
	} {
		start := time.Now()
		cmd := exec.Command(km, c.args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("km %s started on a port in use", strings.Join(c.args[:2], " "))
			continue
		}
		if !strings.Contains(string(out), port) || !strings.Contains(string(out), c.want) {
			t.Errorf("km %s: %q should name port %s and say %q", c.args[0], out, port, c.want)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("km %s took %v to refuse", c.args[0], d)
		}
	}
}
