package kubeflags

import (
	"strings"
	"testing"

	"github.com/k8sm/k8sm/internal/controlplane/certs"
)

func TestFlags(t *testing.T) {
	args, dir, err := TakeFlag([]string{"--v=2", "--cert-dir", "/c", "--secure-port=7443"}, "cert-dir", "km-certs")
	if err != nil || dir != "/c" || strings.Join(args, " ") != "--v=2 --secure-port=7443" {
		t.Fatalf("%v %q %v", args, dir, err)
	}
	if _, v, _ := TakeFlag([]string{"--host_port_endpoints=false"}, "host-port-endpoints", "true"); v != "false" {
		t.Fatalf("underscore spelling: %q", v)
	}
	if _, _, err := TakeFlag([]string{"--cert-dir"}, "cert-dir", ""); err == nil {
		t.Fatal("missing value accepted")
	}
	out := WithDefaults([]string{"--secure-port=7443"}, APIServerDefaults(certs.FilesIn("/c")))
	if Lookup(out, "secure-port") != "7443" || Lookup(out, "bind-address") != "127.0.0.1" || Lookup(out, "tls-cert-file") != "/c/apiserver.crt" {
		t.Fatalf("defaults: %v", out)
	}
	cm := WithDefaults(nil, ControllerManagerDefaults(certs.FilesIn("/c"), true))
	if Lookup(cm, "controllers") != "*,-endpoints-controller,-endpointslice-controller" {
		t.Fatalf("host-port mode keeps the stock endpoints controllers off: %v", Lookup(cm, "controllers"))
	}
	if Lookup(WithDefaults(nil, ControllerManagerDefaults(certs.FilesIn("/c"), false)), "controllers") != "*" {
		t.Fatal("vanilla mode runs every stock controller")
	}
}
