package endpoints

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// ManagedBy is the endpointslice.kubernetes.io/managed-by value of
	// the EndpointSlices this controller owns.
	ManagedBy = "endpointslice.km.k8sm.io"
	// StockManagedBy marks the slices of the stock endpointslice
	// controller, which km's replaces in host-port mode.
	StockManagedBy = "endpointslice-controller.k8s.io"

	// LabelEndpointsManagedBy and EndpointsManagedBy mark the Endpoints
	// objects this controller writes (the stock controller writes
	// "endpoint-controller" there).
	LabelEndpointsManagedBy = "endpoints.kubernetes.io/managed-by"
	EndpointsManagedBy      = "km-endpoints-controller"
	stockEndpointsManagedBy = "endpoint-controller"

	// maxEndpointsAddresses is the most addresses an Endpoints object
	// holds (as upstream); the rest are only in the slices.
	maxEndpointsAddresses = 1000
	// DefaultMaxEndpointsPerSlice is the stock controller's default.
	DefaultMaxEndpointsPerSlice = 100
)

func podRef(pod *corev1.Pod) *corev1.ObjectReference {
	return &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
}

func nodeNameOf(pod *corev1.Pod) *string {
	if pod.Spec.NodeName == "" {
		return nil
	}
	n := pod.Spec.NodeName
	return &n
}

// objectLabels are the labels of a service's Endpoints and slices: the
// service's own, plus the headless marker kube-proxy filters on.
func objectLabels(svc *corev1.Service, extra map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range svc.Labels {
		out[k] = v
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		out[corev1.IsHeadlessService] = ""
	} else {
		delete(out, corev1.IsHeadlessService)
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// buildEndpoints makes the Endpoints object of a service from its
// addresses in the primary family: one subset per distinct set of ports
// (in host-port mode pods on different agents usually have different host
// ports), ready and not-ready addresses apart, at most 1000 addresses.
func buildEndpoints(svc *corev1.Service, d desired) (*corev1.Endpoints, bool) {
	groups := map[string]*corev1.EndpointSubset{}
	var keys []string
	for _, a := range d.addresses {
		if !a.inEndpoints || a.family != d.families[0] {
			continue
		}
		g := groups[a.portsKey]
		if g == nil {
			g = &corev1.EndpointSubset{Ports: append([]corev1.EndpointPort(nil), a.ports...)}
			groups[a.portsKey] = g
			keys = append(keys, a.portsKey)
		}
		ea := corev1.EndpointAddress{IP: a.ip, Hostname: a.hostname, NodeName: nodeNameOf(a.pod), TargetRef: podRef(a.pod)}
		// Endpoints has no "serving": ready, or published regardless.
		if a.ready {
			g.Addresses = append(g.Addresses, ea)
		} else {
			g.NotReadyAddresses = append(g.NotReadyAddresses, ea)
		}
	}
	sort.Strings(keys)
	subsets := []corev1.EndpointSubset{}
	for _, k := range keys {
		g := groups[k]
		sortAddresses(g.Addresses)
		sortAddresses(g.NotReadyAddresses)
		subsets = append(subsets, *g)
	}
	truncated := truncate(subsets, maxEndpointsAddresses)
	ep := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{
			Name: svc.Name, Namespace: svc.Namespace,
			Labels: objectLabels(svc, map[string]string{LabelEndpointsManagedBy: EndpointsManagedBy}),
		},
		Subsets: subsets,
	}
	if len(ep.Subsets) == 0 {
		ep.Subsets = nil
	}
	return ep, truncated
}

func sortAddresses(a []corev1.EndpointAddress) {
	sort.Slice(a, func(i, j int) bool {
		if a[i].IP != a[j].IP {
			return a[i].IP < a[j].IP
		}
		return a[i].TargetRef.Name < a[j].TargetRef.Name
	})
}

// truncate keeps at most max addresses, ready ones first, as upstream does
// for services too large for one Endpoints object.
func truncate(subsets []corev1.EndpointSubset, max int) bool {
	total := 0
	for _, s := range subsets {
		total += len(s.Addresses) + len(s.NotReadyAddresses)
	}
	if total <= max {
		return false
	}
	left := max
	for i := range subsets {
		if len(subsets[i].Addresses) > left {
			subsets[i].Addresses = subsets[i].Addresses[:left]
		}
		left -= len(subsets[i].Addresses)
	}
	for i := range subsets {
		if len(subsets[i].NotReadyAddresses) > left {
			subsets[i].NotReadyAddresses = subsets[i].NotReadyAddresses[:left]
		}
		left -= len(subsets[i].NotReadyAddresses)
	}
	return true
}

// sliceGroupName names the slices of one address family and set of ports:
// <service>-km-<hash>-<n>, so that a sync finds the same names again.
func sliceGroupName(svc string, fam discoveryv1.AddressType, portsKey string) string {
	sum := sha256.Sum256([]byte(string(fam) + "|" + portsKey))
	return svc + "-km-" + hex.EncodeToString(sum[:])[:10]
}

// buildSlices makes the EndpointSlices of a service: per address family
// and set of ports, chunks of at most maxPerSlice endpoints. A service
// without endpoints gets one empty slice of its primary family, which
// says "no endpoints" to consumers that wait for a slice.
func buildSlices(svc *corev1.Service, d desired, maxPerSlice int) []*discoveryv1.EndpointSlice {
	type group struct {
		fam   discoveryv1.AddressType
		key   string
		ports []corev1.EndpointPort
		eps   []discoveryv1.Endpoint
	}
	groups := map[string]*group{}
	var order []string
	for _, a := range d.addresses {
		gk := string(a.family) + "|" + a.portsKey
		g := groups[gk]
		if g == nil {
			g = &group{fam: a.family, key: a.portsKey, ports: a.ports}
			groups[gk] = g
			order = append(order, gk)
		}
		ready, serving, terminating := a.ready, a.serving, a.terminating
		e := discoveryv1.Endpoint{
			Addresses:  []string{a.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
			NodeName:   nodeNameOf(a.pod),
			TargetRef:  podRef(a.pod),
		}
		if a.hostname != "" {
			h := a.hostname
			e.Hostname = &h
		}
		g.eps = append(g.eps, e)
	}
	if len(order) == 0 {
		gk := string(d.families[0]) + "|"
		groups[gk] = &group{fam: d.families[0]}
		order = append(order, gk)
	}
	sort.Strings(order)
	if maxPerSlice <= 0 {
		maxPerSlice = DefaultMaxEndpointsPerSlice
	}
	labels := objectLabels(svc, map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: ManagedBy})
	t := true
	owner := []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: &t, BlockOwnerDeletion: &t}}
	var out []*discoveryv1.EndpointSlice
	for _, gk := range order {
		g := groups[gk]
		var ports []discoveryv1.EndpointPort
		for _, p := range g.ports {
			p := p
			ports = append(ports, discoveryv1.EndpointPort{Name: &p.Name, Port: &p.Port, Protocol: &p.Protocol, AppProtocol: p.AppProtocol})
		}
		base := sliceGroupName(svc.Name, g.fam, g.key)
		for n := 0; n == 0 || n*maxPerSlice < len(g.eps); n++ {
			end := min((n+1)*maxPerSlice, len(g.eps))
			var eps []discoveryv1.Endpoint
			if n*maxPerSlice < end {
				eps = g.eps[n*maxPerSlice : end]
			}
			s := &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{
					Name: fmt.Sprintf("%s-%d", base, n), Namespace: svc.Namespace,
					Labels: copyMap(labels), OwnerReferences: owner,
				},
				AddressType: g.fam,
				Endpoints:   eps,
				Ports:       ports,
			}
			out = append(out, s)
		}
	}
	return out
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
