package endpoints

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

// address is one pod's endpoint for one address family, with the ports
// that resolved on it. It is what both the Endpoints object and the
// EndpointSlices are made from.
type address struct {
	ip     string
	family discoveryv1.AddressType
	pod    *corev1.Pod

	// The conditions of the EndpointSlice API, computed as the stock
	// endpointslice controller does.
	ready, serving, terminating bool
	// inEndpoints: the Endpoints API has no "terminating", so terminating
	// pods are left out of it unless the service publishes not-ready
	// addresses (stock behaviour); slices carry them with their
	// conditions.
	inEndpoints bool
	hostname    string

	ports    []corev1.EndpointPort // in service port order
	portsKey string                // identifies the set of ports
}

// desired is what a service's endpoints should be.
type desired struct {
	families  []discoveryv1.AddressType // the service's, primary first
	addresses []address                 // sorted by pod name, then IP
	problems  []string                  // why pods or ports were left out
}

// serviceFamilies are the address families a service's endpoints use,
// primary first, as the stock controllers derive them.
func serviceFamilies(svc *corev1.Service) []discoveryv1.AddressType {
	var out []discoveryv1.AddressType
	add := func(t discoveryv1.AddressType) {
		for _, o := range out {
			if o == t {
				return
			}
		}
		out = append(out, t)
	}
	for _, f := range svc.Spec.IPFamilies {
		if f == corev1.IPv6Protocol {
			add(discoveryv1.AddressTypeIPv6)
		} else {
			add(discoveryv1.AddressTypeIPv4)
		}
	}
	if len(out) == 0 {
		for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
			if p := net.ParseIP(ip); p != nil {
				add(familyOf(p))
			}
		}
	}
	if len(out) == 0 {
		add(discoveryv1.AddressTypeIPv4)
	}
	return out
}

func familyOf(ip net.IP) discoveryv1.AddressType {
	if ip.To4() != nil {
		return discoveryv1.AddressTypeIPv4
	}
	return discoveryv1.AddressTypeIPv6
}

// computeDesired resolves every pod of a service (pods selected by its
// selector) into addresses. In host-port mode an address is the pod's
// host IP with the host ports the scheduler assigned; otherwise the pod
// IP with the container ports.
func computeDesired(svc *corev1.Service, pods []*corev1.Pod, hostPort bool) desired {
	d := desired{families: serviceFamilies(svc)}
	pods = append([]*corev1.Pod(nil), pods...)
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	headless := svc.Spec.ClusterIP == corev1.ClusterIPNone
	for _, pod := range pods {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		ips := podAddresses(pod, hostPort)
		if len(ips) == 0 {
			continue // not placed or not running yet
		}
		terminating := pod.DeletionTimestamp != nil
		podReady := isPodReady(pod)
		serving := svc.Spec.PublishNotReadyAddresses || podReady
		base := address{
			pod:         pod,
			serving:     serving,
			terminating: terminating,
			ready:       svc.Spec.PublishNotReadyAddresses || (serving && !terminating),
			inEndpoints: !terminating || svc.Spec.PublishNotReadyAddresses,
		}
		if pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && pod.Namespace == svc.Namespace {
			base.hostname = pod.Spec.Hostname
		}

		// Ports first: they do not depend on the address family.
		var keys []string
		var portProblems []string
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			port, problem := resolvePort(pod, sp, hostPort)
			if problem != "" {
				portProblems = append(portProblems, problem)
				continue
			}
			proto := protocolOf(sp.Protocol)
			base.ports = append(base.ports, corev1.EndpointPort{Name: sp.Name, Port: port, Protocol: proto, AppProtocol: sp.AppProtocol})
			keys = append(keys, sp.Name+"/"+string(proto)+"/"+strconv.Itoa(int(port)))
		}
		d.problems = append(d.problems, portProblems...)
		if len(svc.Spec.Ports) > 0 && len(base.ports) == 0 {
			continue // no port resolved: the pod cannot serve this service
		}
		if len(svc.Spec.Ports) == 0 && !headless {
			continue // only headless services may have endpoints without ports
		}
		base.portsKey = strings.Join(keys, ",")

		found := false
		var refused []string
		for _, fam := range d.families {
			ip, bad := pickAddress(ips, fam)
			if bad != "" {
				refused = append(refused, bad)
			}
			if ip == "" {
				continue
			}
			a := base
			a.ip, a.family = ip, fam
			d.addresses = append(d.addresses, a)
			found = true
		}
		if !found {
			what := "pod IP"
			if hostPort {
				what = "host IP"
			}
			if len(refused) > 0 {
				d.problems = append(d.problems, fmt.Sprintf("pod %s has %s %s (node %s), which Kubernetes refuses in endpoints (loopback, link-local and unspecified addresses); give the node a routable address", pod.Name, what, strings.Join(refused, ","), pod.Spec.NodeName))
			} else {
				d.problems = append(d.problems, fmt.Sprintf("pod %s has no %s %s of the service's family (%s)", pod.Name, what, strings.Join(ips, ","), d.families[0]))
			}
		}
	}
	return d
}

// podAddresses are the IPs a pod is reached at: its node's (host-port
// mode: pods share the Mesos agent's network) or its own.
func podAddresses(pod *corev1.Pod, hostPort bool) []string {
	var out []string
	if hostPort {
		for _, h := range pod.Status.HostIPs {
			out = append(out, h.IP)
		}
		if len(out) == 0 && pod.Status.HostIP != "" {
			out = append(out, pod.Status.HostIP)
		}
		return out
	}
	for _, p := range pod.Status.PodIPs {
		out = append(out, p.IP)
	}
	if len(out) == 0 && pod.Status.PodIP != "" {
		out = append(out, pod.Status.PodIP)
	}
	return out
}

// pickAddress returns the first of ips in family fam that the apiserver
// accepts in endpoints; refused lists the ones of that family it would
// refuse.
func pickAddress(ips []string, fam discoveryv1.AddressType) (ip, refused string) {
	var bad []string
	for _, s := range ips {
		p := net.ParseIP(s)
		if p == nil || familyOf(p) != fam {
			continue
		}
		if p.IsLoopback() || p.IsUnspecified() || p.IsLinkLocalUnicast() || p.IsLinkLocalMulticast() {
			bad = append(bad, s)
			continue
		}
		return p.String(), ""
	}
	return "", strings.Join(bad, ",")
}

func protocolOf(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// findContainerPort finds the first container port (of the containers,
// then of the sidecars, as the stock controllers search) that matches.
func findContainerPort(pod *corev1.Pod, proto corev1.Protocol, match func(corev1.ContainerPort) bool) (corev1.ContainerPort, bool) {
	search := func(cs []corev1.Container, sidecarsOnly bool) (corev1.ContainerPort, bool) {
		for _, c := range cs {
			if sidecarsOnly && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				continue
			}
			for _, cp := range c.Ports {
				if protocolOf(cp.Protocol) == proto && match(cp) {
					return cp, true
				}
			}
		}
		return corev1.ContainerPort{}, false
	}
	if cp, ok := search(pod.Spec.Containers, false); ok {
		return cp, true
	}
	return search(pod.Spec.InitContainers, true)
}

// resolvePort finds the port a service port reaches on a pod. A target
// port is a container port's name or number (unset means the service
// port's number). In host-port mode the endpoint port is the host port the
// scheduler assigned to that container port: its hostPort, else km's
// port_<PROTO>_<containerPort> annotation, else the portName_<PROTO>_<name>
// one. problem says, for the service's events, why a port did not
// resolve.
func resolvePort(pod *corev1.Pod, sp *corev1.ServicePort, hostPort bool) (int32, string) {
	tp := sp.TargetPort
	if (tp.Type == intstr.Int && tp.IntVal == 0) || (tp.Type == intstr.String && tp.StrVal == "") {
		tp = intstr.FromInt32(sp.Port)
	}
	proto := protocolOf(sp.Protocol)
	var cp corev1.ContainerPort
	var ok bool
	if tp.Type == intstr.String {
		cp, ok = findContainerPort(pod, proto, func(c corev1.ContainerPort) bool { return c.Name == tp.StrVal })
	} else {
		cp, ok = findContainerPort(pod, proto, func(c corev1.ContainerPort) bool { return c.ContainerPort == tp.IntVal })
	}
	if !ok {
		// A numbered target port needs no declaration when the number is
		// the port itself: on the pod's own IP (stock behaviour), or on
		// the host's network.
		if tp.Type == intstr.Int && (!hostPort || pod.Spec.HostNetwork) {
			return tp.IntVal, ""
		}
		return 0, fmt.Sprintf("pod %s does not declare target port %s/%s of service port %s; add it to the pod's container ports", pod.Name, tp.String(), proto, portLabel(sp))
	}
	if !hostPort {
		return cp.ContainerPort, ""
	}
	if pod.Spec.HostNetwork && cp.HostPort == 0 {
		return cp.ContainerPort, ""
	}
	if hp, ok := podtask.HostPortOf(pod, cp); ok {
		return hp, ""
	}
	ann := podtask.PortAnnotation(proto, cp.ContainerPort)
	if cp.Name != "" {
		ann += " or " + podtask.PortNameAnnotation(proto, cp.Name)
	}
	return 0, fmt.Sprintf("pod %s has no host port for container port %d/%s (service port %s): no hostPort and no %s annotation; km's scheduler assigns them when it places a pod, so the pod was placed by another scheduler or not yet", pod.Name, cp.ContainerPort, proto, portLabel(sp), ann)
}

func portLabel(sp *corev1.ServicePort) string {
	if sp.Name != "" {
		return fmt.Sprintf("%q (%d)", sp.Name, sp.Port)
	}
	return strconv.Itoa(int(sp.Port))
}

func isPodReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
