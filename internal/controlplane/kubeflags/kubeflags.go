// Package kubeflags builds the flags of the upstream kube-apiserver and
// kube-controller-manager: km's defaults for every flag the user did not
// give, and km's own flags taken out first.
package kubeflags

import (
	"fmt"
	"net"
	"strings"

	"github.com/k8sm/k8sm/internal/controlplane/certs"
)

// Flag is one default flag.
type Flag struct{ Name, Value string }

// flagName returns the name of a "--name=value" or "--name" argument in its
// dashed form.
func flagName(arg string) string {
	if !strings.HasPrefix(arg, "-") {
		return ""
	}
	n := strings.TrimLeft(arg, "-")
	if i := strings.IndexByte(n, '='); i >= 0 {
		n = n[:i]
	}
	return strings.ReplaceAll(n, "_", "-")
}

// TakeFlag removes a km-only flag from args and returns its value (def if
// absent). Both "--name value" and "--name=value" are understood.
func TakeFlag(args []string, name, def string) ([]string, string, error) {
	out := make([]string, 0, len(args))
	val := def
	for i := 0; i < len(args); i++ {
		a := args[i]
		if flagName(a) != name {
			out = append(out, a)
			continue
		}
		if eq := strings.IndexByte(a, '='); eq >= 0 {
			val = a[eq+1:]
			continue
		}
		if i+1 >= len(args) {
			return nil, "", fmt.Errorf("--%s needs a value", name)
		}
		val = args[i+1]
		i++
	}
	return out, val, nil
}

// WithDefaults appends every default flag the user did not set.
func WithDefaults(args []string, defaults []Flag) []string {
	set := map[string]bool{}
	for _, a := range args {
		if n := flagName(a); n != "" {
			set[n] = true
		}
	}
	out := append([]string(nil), args...)
	for _, d := range defaults {
		if !set[d.Name] {
			out = append(out, "--"+d.Name+"="+d.Value)
		}
	}
	return out
}

// Lookup returns the value a flag has in args ("" when absent).
func Lookup(args []string, name string) string {
	for i, a := range args {
		if flagName(a) != name {
			continue
		}
		if eq := strings.IndexByte(a, '='); eq >= 0 {
			return a[eq+1:]
		}
		if i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// CheckPortFree fails at once when ip:port is taken, naming the flag that
// changes it.
func CheckPortFree(component, ip, port, flag string) error {
	if ip == "" || ip == "0.0.0.0" {
		ip = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
	if err != nil {
		return fmt.Errorf("km %s: port %s on %s is already in use (another %s?); choose another with %s", component, port, ip, component, flag)
	}
	return ln.Close()
}

// APIServerDefaults are the kube-apiserver flags km sets unless given.
func APIServerDefaults(f certs.Files) []Flag {
	return []Flag{
		{"etcd-servers", "http://127.0.0.1:2379"},
		{"bind-address", "127.0.0.1"},
		{"secure-port", "6443"},
		{"tls-cert-file", f.APIServerCert},
		{"tls-private-key-file", f.APIServerKey},
		{"client-ca-file", f.CACert},
		{"service-account-key-file", f.ServiceAccountPub},
		{"service-account-signing-key-file", f.ServiceAccountKey},
		{"service-account-issuer", "https://kubernetes.default.svc.cluster.local"},
		{"service-cluster-ip-range", "10.96.0.0/12"},
		{"authorization-mode", "RBAC"},
		{"allow-privileged", "true"},
		// The default reconciler refuses loopback advertise addresses
		// ("may not be in the loopback range").
		{"endpoint-reconciler-type", "none"},
		{"requestheader-client-ca-file", f.FrontProxyCACert},
		{"requestheader-allowed-names", "front-proxy-client"},
		{"requestheader-username-headers", "X-Remote-User"},
		{"requestheader-group-headers", "X-Remote-Group"},
		{"requestheader-extra-headers-prefix", "X-Remote-Extra-"},
		{"proxy-client-cert-file", f.FrontProxyClientCert},
		{"proxy-client-key-file", f.FrontProxyClientKey},
		// The apiserver reaches the executors' kubelet API (logs) with
		// the admin identity.
		{"kubelet-client-certificate", strings.TrimSuffix(f.Kubeconfigs["admin"], ".kubeconfig") + ".crt"},
		{"kubelet-client-key", strings.TrimSuffix(f.Kubeconfigs["admin"], ".kubeconfig") + ".key"},
		{"kubelet-preferred-address-types", "InternalIP,Hostname"},
	}
}

// ControllerManagerDefaults are the kube-controller-manager flags km sets
// unless given. hostPortEndpoints turns the stock endpoints controllers off
// (km's own write the endpoints instead).
func ControllerManagerDefaults(f certs.Files, hostPortEndpoints bool) []Flag {
	controllers := "*"
	if hostPortEndpoints {
		controllers = "*,-endpoints-controller,-endpointslice-controller"
	}
	kc := f.Kubeconfigs["controller-manager"]
	return []Flag{
		{"kubeconfig", kc},
		{"authentication-kubeconfig", kc},
		{"authorization-kubeconfig", kc},
		{"bind-address", "127.0.0.1"},
		{"secure-port", "10257"},
		{"service-account-private-key-file", f.ServiceAccountKey},
		{"root-ca-file", f.CACert},
		{"use-service-account-credentials", "true"},
		{"cluster-signing-cert-file", f.CACert},
		{"cluster-signing-key-file", f.CAKey},
		{"service-cluster-ip-range", "10.96.0.0/12"},
		{"controllers", controllers},
		{"leader-elect", "false"},
	}
}
