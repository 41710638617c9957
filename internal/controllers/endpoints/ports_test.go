package endpoints

import (
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/k8sm/k8sm/internal/testing/kmbinary"
)

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
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	if out, err := exec.Command(km, "certs", "--cert-dir", certDir).CombinedOutput(); err != nil {
		t.Fatalf("km certs: %v\n%s", err, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"etcd", "--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", "http://127.0.0.1:" + port}, "choose another with --listen-client-urls"},
		{[]string{"apiserver", "--cert-dir", certDir, "--secure-port", port}, "choose another with --secure-port"},
		{[]string{"controller-manager", "--cert-dir", certDir, "--secure-port=" + port}, "choose another with --secure-port"},
		{[]string{"mesos", "master", "--port", port}, "choose another port with --port"},
		{[]string{"mesos", "agent", "--master", "127.0.0.1:1", "--work_dir", filepath.Join(dir, "agent"), "--port", port}, "choose another address with --ip/--port"},
	} {
		start := time.Now()
		out, err := exec.Command(km, c.args...).CombinedOutput()
		if err == nil {
			t.Errorf("km %s started on a port in use", c.args[0])
			continue
		}
		if !strings.Contains(string(out), port) || !strings.Contains(string(out), c.want) {
			t.Errorf("km %s: %q should name port %s and say %q", c.args[0], out, port, c.want)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("km %s took %v to refuse", c.args[0], d)
		}
	}
}
