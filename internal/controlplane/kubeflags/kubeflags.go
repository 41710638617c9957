// Package kubeflags builds the flags of the upstream kube-apiserver and
// kube-controller-manager that km runs: km's own flags are taken out first,
// then km's defaults are added for every flag the user did not give.
// Everything else passes through to the upstream component unchanged.
package kubeflags

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/k8sm/k8sm/internal/controlplane/certs"
)

// Flag is one default flag.
type Flag struct{ Name, Value string }

// flagName returns the name of a "--name=value", "--name" or "-name"
// argument in its dashed form ("" for a non-flag argument).
func flagName(arg string) string {
	if !strings.HasPrefix(arg, "-") || arg == "-" || arg == "--" {
		return ""
	}
	n := strings.TrimLeft(arg, "-")
	if i := strings.IndexByte(n, '='); i >= 0 {
		n = n[:i]
	}
	return strings.ReplaceAll(n, "_", "-")
}

// TakeFlag removes a km-only flag with a value from args and returns the
// value (def if absent; the last one wins). "--name value", "--name=value"
// and the k8sm spellings "-name" and "--name_with_underscores" work.
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

// TakeBoolFlag removes a km-only boolean flag from args: "--name" alone
// is true, "--name=false" false (as with every Go and Kubernetes boolean
// flag, the value must follow "=").
func TakeBoolFlag(args []string, name string, def bool) ([]string, bool, error) {
	out := make([]string, 0, len(args))
	val := def
	for _, a := range args {
		if flagName(a) != name {
			out = append(out, a)
			continue
		}
		eq := strings.IndexByte(a, '=')
		if eq < 0 {
			val = true
			continue
		}
		b, err := strconv.ParseBool(a[eq+1:])
		if err != nil {
			return nil, false, fmt.Errorf("--%s=%s: not a boolean (use true or false)", name, a[eq+1:])
		}
		val = b
	}
	return out, val, nil
}

// WithDefaults appends every default flag the user did not set.
func WithDefaults(args []string, defaults []Flag) []string {
	out := append([]string(nil), args...)
	for _, d := range defaults {
		if !Has(args, d.Name) {
			out = append(out, "--"+d.Name+"="+d.Value)
		}
	}
	return out
}

// Has says whether args set a flag.
func Has(args []string, name string) bool {
	for _, a := range args {
		if flagName(a) == name {
			return true
		}
	}
	return false
}

// Lookup returns the value a flag has in args ("" when absent; the last
// one wins, as with pflag).
func Lookup(args []string, name string) string {
	v := ""
	for i, a := range args {
		if flagName(a) != name {
			continue
		}
		if eq := strings.IndexByte(a, '='); eq >= 0 {
			v = a[eq+1:]
		} else if i+1 < len(args) {
			v = args[i+1]
		}
	}
	return v
}

// Set replaces every occurrence of a flag by --name=value.
func Set(args []string, name, value string) []string {
	out := make([]string, 0, len(args)+1)
	for i := 0; i < len(args); i++ {
		a := args[i]
		if flagName(a) != name {
			out = append(out, a)
			continue
		}
		if !strings.Contains(a, "=") && i+1 < len(args) {
			i++ // drop the separate value too
		}
	}
	return append(out, "--"+name+"="+value)
}

// CheckPortFree fails at once when ip:port cannot be listened on, naming
// the port and the flag that changes it, so that a second apiserver does
// not fail later with a buried bind error (or, worse, half-start).
func CheckPortFree(component, ip, port, flag string) error {
	if ip == "" {
		ip = "0.0.0.0"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, port))
	if err == nil {
		return ln.Close()
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("km %s: port %s on %s is already in use (another %s?); choose another with %s", component, port, ip, component, flag)
	}
	return fmt.Errorf("km %s: cannot listen on port %s of %s (%v); choose another with %s", component, port, ip, err, flag)
}

func isLoopback(s string) bool {
	ip := net.ParseIP(s)
	return ip != nil && ip.IsLoopback()
}

// APIServerDefaults are the kube-apiserver flags km sets unless args
// give them.
func APIServerDefaults(f certs.Files, args []string) []Flag {
	bind := Lookup(args, "bind-address")
	if bind == "" {
		bind = "127.0.0.1"
	}
	flags := []Flag{
		{"etcd-servers", "http://127.0.0.1:2379"},
		{"bind-address", bind},
		{"secure-port", "6443"},
		{"tls-cert-file", f.APIServerCert},
		{"tls-private-key-file", f.APIServerKey},
		{"client-ca-file", f.CACert},
		{"service-account-key-file", f.ServiceAccountPub},
		{"service-account-signing-key-file", f.ServiceAccountKey},
		{"service-account-issuer", "https://kubernetes.default.svc.cluster.local"},
		{"service-cluster-ip-range", "10.96.0.0/12"},
		{"authorization-mode", "Node,RBAC"},
		{"allow-privileged", "true"},
		{"requestheader-client-ca-file", f.FrontProxyCACert},
		{"requestheader-allowed-names", "front-proxy-client"},
		{"requestheader-username-headers", "X-Remote-User"},
		{"requestheader-group-headers", "X-Remote-Group"},
		{"requestheader-extra-headers-prefix", "X-Remote-Extra-"},
		{"proxy-client-cert-file", f.FrontProxyClientCert},
		{"proxy-client-key-file", f.FrontProxyClientKey},
		// The apiserver reaches the executors' kubelet API (logs, exec)
		// with a client certificate of the cluster CA.
		{"kubelet-client-certificate", f.ClientCert("apiserver-kubelet-client")},
		{"kubelet-client-key", f.ClientKey("apiserver-kubelet-client")},
		{"kubelet-preferred-address-types", "InternalIP,Hostname"},
	}
	if isLoopback(bind) && !Has(args, "advertise-address") {
		// An apiserver on loopback only: the "kubernetes" service's
		// endpoint would be a loopback address, which the endpoint
		// reconciler refuses ("may not be in the loopback range"), and
		// guessing a host address breaks on machines without a default
		// route. Advertise the bind address and let nothing reconcile.
		flags = append(flags, Flag{"advertise-address", bind}, Flag{"endpoint-reconciler-type", "none"})
	}
	return flags
}

// ControllerManagerDefaults are the kube-controller-manager flags km sets
// unless given.
func ControllerManagerDefaults(f certs.Files) []Flag {
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
		{"controllers", "*"},
		// One controller-manager is the usual km cluster; HA pairs pass
		// --leader-elect=true.
		{"leader-elect", "false"},
	}
}

// StockEndpointsControllers are the upstream controllers km's endpoints
// controller replaces in host-port mode.
var StockEndpointsControllers = []string{"endpoints-controller", "endpointslice-controller"}

// WithoutStockEndpoints rewrites the --controllers flag of args so that
// the stock endpoints and endpointslice controllers stay off whatever the
// user asked for: both writing a service's endpoints would fight for
// ever. It fails when the user named one of them explicitly.
func WithoutStockEndpoints(args []string) ([]string, error) {
	list := Lookup(args, "controllers")
	if list == "" {
		list = "*"
	}
	var kept []string
	for _, c := range strings.Split(list, ",") {
		c = strings.TrimSpace(c)
		name := strings.TrimPrefix(c, "-")
		stock := false
		for _, s := range StockEndpointsControllers {
			stock = stock || name == s
		}
		if !stock {
			if c != "" {
				kept = append(kept, c)
			}
			continue
		}
		if !strings.HasPrefix(c, "-") {
			return nil, fmt.Errorf("--controllers=%s turns on the stock %s, which km's endpoints controller replaces when --host-port-endpoints=true; remove it, or run with --host-port-endpoints=false", list, name)
		}
	}
	for _, s := range StockEndpointsControllers {
		kept = append(kept, "-"+s)
	}
	return Set(args, "controllers", strings.Join(kept, ",")), nil
}
