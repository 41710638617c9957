package kubeflags

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/k8sm/k8sm/internal/controlplane/certs"
)

func TestTakeFlag(t *testing.T) {
	args, dir, err := TakeFlag([]string{"--v=2", "--cert-dir", "/c", "--secure-port=7443"}, "cert-dir", "km-certs")
	if err != nil || dir != "/c" || strings.Join(args, " ") != "--v=2 --secure-port=7443" {
		t.Fatalf("%v %q %v", args, dir, err)
	}
	if _, v, _ := TakeFlag([]string{"--cert_dir=/x"}, "cert-dir", ""); v != "/x" {
		t.Fatalf("underscore spelling: %q", v)
	}
	if _, _, err := TakeFlag([]string{"--cert-dir"}, "cert-dir", ""); err == nil {
		t.Fatal("missing value accepted")
	}
}

func TestTakeBoolFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want bool
		rest string
	}{
		{nil, true, ""},
		{[]string{"--host-port-endpoints=false", "--v=2"}, false, "--v=2"},
		{[]string{"-host_port_endpoints=false"}, false, ""}, // k8sm's spelling in its docs
		{[]string{"--host-port-endpoints", "--cert-dir", "/c"}, true, "--cert-dir /c"},
		{[]string{"--host-port-endpoints=0"}, false, ""},
	} {
		rest, v, err := TakeBoolFlag(c.args, "host-port-endpoints", true)
		if err != nil || v != c.want || strings.Join(rest, " ") != c.rest {
			t.Errorf("%q: %v, rest %q, %v", c.args, v, rest, err)
		}
	}
	if _, _, err := TakeBoolFlag([]string{"--host-port-endpoints=maybe"}, "host-port-endpoints", true); err == nil || !strings.Contains(err.Error(), "maybe") {
		t.Fatalf("bad value: %v", err)
	}
}

func TestAPIServerDefaults(t *testing.T) {
	f := certs.FilesIn("/c")
	args := []string{"--secure-port=7443"}
	out := WithDefaults(args, APIServerDefaults(f, args))
	if Lookup(out, "secure-port") != "7443" || Lookup(out, "bind-address") != "127.0.0.1" || Lookup(out, "tls-cert-file") != "/c/apiserver.crt" {
		t.Fatalf("defaults: %v", out)
	}
	// On loopback the "kubernetes" service's endpoint reconciler would
	// refuse the address: off, and the advertise address is the bind one.
	if Lookup(out, "endpoint-reconciler-type") != "none" || Lookup(out, "advertise-address") != "127.0.0.1" {
		t.Fatalf("loopback: %v", out)
	}
	args = []string{"--bind-address=0.0.0.0", "--advertise-address=192.0.2.10"}
	out = WithDefaults(args, APIServerDefaults(f, args))
	if Has(out, "endpoint-reconciler-type") || Lookup(out, "advertise-address") != "192.0.2.10" {
		t.Fatalf("routable: %v", out)
	}
}

func TestWithoutStockEndpoints(t *testing.T) {
	for in, want := range map[string]string{
		"":                        "*,-endpoints-controller,-endpointslice-controller",
		"*":                       "*,-endpoints-controller,-endpointslice-controller",
		"*,-endpoints-controller": "*,-endpoints-controller,-endpointslice-controller",
		"replicationcontroller":   "replicationcontroller,-endpoints-controller,-endpointslice-controller",
	} {
		args := []string{"--v=1"}
		if in != "" {
			args = append(args, "--controllers", in)
		}
		out, err := WithoutStockEndpoints(WithDefaults(args, ControllerManagerDefaults(certs.FilesIn("/c"))))
		if err != nil || Lookup(out, "controllers") != want || Lookup(out, "v") != "1" {
			t.Errorf("--controllers=%q: %v %v", in, out, err)
		}
	}
	if _, err := WithoutStockEndpoints([]string{"--controllers=*,endpointslice-controller"}); err == nil || !strings.Contains(err.Error(), "--host-port-endpoints=false") {
		t.Fatalf("explicit stock controller: %v", err)
	}
	if Lookup(WithDefaults(nil, ControllerManagerDefaults(certs.FilesIn("/c"))), "controllers") != "*" {
		t.Fatal("vanilla mode runs every stock controller")
	}
}

func TestCheckPortFree(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	err = CheckPortFree("apiserver", "127.0.0.1", port, "--secure-port")
	want := "km apiserver: port " + port + " on 127.0.0.1 is already in use (another apiserver?); choose another with --secure-port"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	ln.Close()
	if err := CheckPortFree("apiserver", "127.0.0.1", port, "--secure-port"); err != nil {
		t.Fatalf("free port: %v", err)
	}
}
