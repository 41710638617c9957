package endpoints

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	core "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

// fixture follows kubernetes/sample-controller's tests: objects go into
// the fake clientset and the informers' indexers, Sync runs once, and the
// writes it made are compared.
type fixture struct {
	t        *testing.T
	client   *fake.Clientset
	factory  informers.SharedInformerFactory
	c        *Controller
	recorder *record.FakeRecorder
}

func newFixture(t *testing.T, hostPort bool, objs ...runtime.Object) *fixture {
	t.Helper()
	client := fake.NewClientset(objs...)
	factory := informers.NewSharedInformerFactory(client, 0)
	rec := record.NewFakeRecorder(100)
	c := New(client, factory, Options{HostPort: hostPort, Recorder: rec})
	f := &fixture{t: t, client: client, factory: factory, c: c, recorder: rec}
	for _, o := range objs {
		f.index(o)
	}
	return f
}

func (f *fixture) index(o runtime.Object) {
	f.t.Helper()
	var err error
	switch v := o.(type) {
	case *corev1.Service:
		err = f.factory.Core().V1().Services().Informer().GetIndexer().Add(v)
	case *corev1.Pod:
		err = f.factory.Core().V1().Pods().Informer().GetIndexer().Add(v)
	case *corev1.Endpoints:
		err = f.factory.Core().V1().Endpoints().Informer().GetIndexer().Add(v)
	case *discoveryv1.EndpointSlice:
		err = f.factory.Discovery().V1().EndpointSlices().Informer().GetIndexer().Add(v)
	default:
		f.t.Fatalf("cannot index %T", o)
	}
	if err != nil {
		f.t.Fatal(err)
	}
}

// sync runs one Sync and returns its writes as "verb resource name".
func (f *fixture) sync(name string) []string {
	f.t.Helper()
	f.client.ClearActions()
	if err := f.c.Sync(context.Background(), "ns/"+name); err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, a := range f.client.Actions() {
		switch a.GetVerb() {
		case "create", "update":
			obj := a.(interface{ GetObject() runtime.Object }).GetObject()
			out = append(out, fmt.Sprintf("%s %s %s", a.GetVerb(), a.GetResource().Resource, obj.(metav1.Object).GetName()))
		case "delete":
			out = append(out, fmt.Sprintf("delete %s %s", a.GetResource().Resource, a.(core.DeleteAction).GetName()))
		}
	}
	return out
}

// refresh copies what the fake apiserver holds into the indexers, as the
// informers would.
func (f *fixture) refresh() {
	f.t.Helper()
	ctx := context.Background()
	eps, _ := f.client.CoreV1().Endpoints("ns").List(ctx, metav1.ListOptions{})
	epIdx := f.factory.Core().V1().Endpoints().Informer().GetIndexer()
	for _, o := range epIdx.List() {
		epIdx.Delete(o)
	}
	for i := range eps.Items {
		epIdx.Add(&eps.Items[i])
	}
	sl, _ := f.client.DiscoveryV1().EndpointSlices("ns").List(ctx, metav1.ListOptions{})
	slIdx := f.factory.Discovery().V1().EndpointSlices().Informer().GetIndexer()
	for _, o := range slIdx.List() {
		slIdx.Delete(o)
	}
	for i := range sl.Items {
		slIdx.Add(&sl.Items[i])
	}
}

func (f *fixture) endpoints(name string) *corev1.Endpoints {
	f.t.Helper()
	ep, err := f.client.CoreV1().Endpoints("ns").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return ep
}

func (f *fixture) slices(svc string) []discoveryv1.EndpointSlice {
	sl, _ := f.client.DiscoveryV1().EndpointSlices("ns").List(context.Background(),
		metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	sort.Slice(sl.Items, func(i, j int) bool { return sl.Items[i].Name < sl.Items[j].Name })
	return sl.Items
}

func (f *fixture) events() []string {
	var out []string
	for {
		select {
		case e := <-f.recorder.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func service(name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name), Labels: map[string]string{"tier": "front"}},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: ports, ClusterIP: "10.96.0.10"},
	}
}

var (
	httpPort    = corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}
	metricsPort = corev1.ContainerPort{ContainerPort: 9090, Protocol: corev1.ProtocolTCP}
	dnsPort     = corev1.ContainerPort{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}
)

// pod is a pod km's scheduler placed on the agent at hostIP, with km's
// annotations giving each container port in hostPorts its host port
// (0: no annotation, as if another scheduler had placed it).
func pod(name, hostIP string, ready bool, hostPorts map[corev1.ContainerPort]int32) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("uid-" + name),
			Labels: map[string]string{"app": "web"}, Annotations: map[string]string{}},
		Spec:   corev1.PodSpec{NodeName: "agent-" + hostIP, Containers: []corev1.Container{{Name: "c"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, HostIP: hostIP, PodIP: "10.1.0." + hostIP[strings.LastIndexByte(hostIP, '.')+1:]},
	}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	var cps []corev1.ContainerPort
	for cp := range hostPorts {
		cps = append(cps, cp)
	}
	sort.Slice(cps, func(i, j int) bool { return cps[i].ContainerPort < cps[j].ContainerPort })
	for _, cp := range cps {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, cp)
		if hp := hostPorts[cp]; hp != 0 {
			// The scheduler writes both annotations for named ports.
			p.Annotations[podtask.PortAnnotation(cp.Protocol, cp.ContainerPort)] = itoa(hp)
			if cp.Name != "" {
				p.Annotations[podtask.PortNameAnnotation(cp.Protocol, cp.Name)] = itoa(hp)
			}
		}
	}
	return p
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }

// describeEndpoints renders an Endpoints object as "ip(name:port,...)",
// not-ready addresses prefixed with "notready:".
func describeEndpoints(ep *corev1.Endpoints) string {
	var out []string
	for _, s := range ep.Subsets {
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, p.Name+":"+itoa(p.Port))
		}
		for _, a := range s.Addresses {
			out = append(out, a.IP+"("+strings.Join(ports, ",")+")")
		}
		for _, a := range s.NotReadyAddresses {
			out = append(out, "notready:"+a.IP+"("+strings.Join(ports, ",")+")")
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

// describeSlices renders slices the same way, with the conditions of
// endpoints that are not plainly ready.
func describeSlices(slices []discoveryv1.EndpointSlice) string {
	var out []string
	for _, s := range slices {
		var ports []string
		for _, p := range s.Ports {
			ports = append(ports, *p.Name+":"+strconv.Itoa(int(*p.Port)))
		}
		for _, e := range s.Endpoints {
			prefix := ""
			if !*e.Conditions.Ready {
				prefix = "notready:"
			}
			if *e.Conditions.Terminating {
				prefix += "terminating:"
			}
			if *e.Conditions.Serving && !*e.Conditions.Ready {
				prefix += "serving:"
			}
			out = append(out, prefix+e.Addresses[0]+"("+strings.Join(ports, ",")+")")
		}
	}
	sort.Strings(out)
	return strings.Join(out, " ")
}

func TestHostPortEndpoints(t *testing.T) {
	for _, c := range []struct {
		name  string
		svc   *corev1.Service
		pods  []*corev1.Pod
		want  string
		event []string // what the one warning event says, if any
	}{
		{name: "named target port",
			svc:  service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}),
			pods: []*corev1.Pod{pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001})},
			want: "192.0.2.1(web:31001)"},
		{name: "numbered target port",
			svc:  service("s", corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(8080)}),
			pods: []*corev1.Pod{pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001})},
			want: "192.0.2.1(:31001)"},
		{name: "unnamed service port without a target port",
			svc:  service("s", corev1.ServicePort{Port: 9090}),
			pods: []*corev1.Pod{pod("a", "192.0.2.2", true, map[corev1.ContainerPort]int32{metricsPort: 31500})},
			want: "192.0.2.2(:31500)"},
		{name: "multiple ports and protocols",
			svc: service("s",
				corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")},
				corev1.ServicePort{Name: "m", Port: 9090},
				corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromString("dns")}),
			pods: []*corev1.Pod{pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001, metricsPort: 31002, dnsPort: 31003})},
			want: "192.0.2.1(web:31001,m:31002,dns:31003)"},
		{name: "each pod with its own host ports, one not ready",
			svc: service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}),
			pods: []*corev1.Pod{
				pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001}),
				pod("b", "192.0.2.2", false, map[corev1.ContainerPort]int32{httpPort: 31007}),
				pod("c", "192.0.2.3", true, map[corev1.ContainerPort]int32{httpPort: 31001}),
			},
			want: "192.0.2.1(web:31001) 192.0.2.3(web:31001) notready:192.0.2.2(web:31007)"},
		{name: "pod without km's annotations",
			svc: service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}),
			pods: []*corev1.Pod{
				pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 0}),
				pod("b", "192.0.2.2", true, map[corev1.ContainerPort]int32{httpPort: 31002}),
			},
			want:  "192.0.2.2(web:31002)",
			event: []string{"pod a has no host port for container port 8080/TCP", "k8s.mesosphere.io/port_TCP_8080 or k8s.mesosphere.io/portName_TCP_http"}},
		{name: "target port the pod does not declare",
			svc:   service("s", corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(7777)}),
			pods:  []*corev1.Pod{pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001})},
			want:  "",
			event: []string{"pod a does not declare target port 7777/TCP of service port 80"}},
		{name: "one port of two resolves",
			svc: service("s",
				corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")},
				corev1.ServicePort{Name: "admin", Port: 81, TargetPort: intstr.FromString("admin")}),
			pods:  []*corev1.Pod{pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001})},
			want:  "192.0.2.1(web:31001)",
			event: []string{`pod a does not declare target port admin/TCP of service port "admin" (81)`}},
		{name: "pod not placed yet, and a finished pod",
			svc: service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}),
			pods: []*corev1.Pod{
				func() *corev1.Pod { p := pod("a", "192.0.2.1", false, nil); p.Status.HostIP = ""; return p }(),
				func() *corev1.Pod {
					p := pod("b", "192.0.2.2", false, map[corev1.ContainerPort]int32{httpPort: 31001})
					p.Status.Phase = corev1.PodSucceeded
					return p
				}(),
			},
			want: ""},
		{name: "loopback host address",
			svc: service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}),
			pods: []*corev1.Pod{
				pod("a", "127.0.1.1", true, map[corev1.ContainerPort]int32{httpPort: 31001}),
				pod("b", "192.0.2.9", true, map[corev1.ContainerPort]int32{httpPort: 31002}),
			},
			want:  "192.0.2.9(web:31002)",
			event: []string{`pod a has host IP 127.0.1.1 (node agent-127.0.1.1), which Kubernetes refuses`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := []runtime.Object{c.svc}
			for _, p := range c.pods {
				objs = append(objs, p)
			}
			f := newFixture(t, true, objs...)
			got := f.sync(c.svc.Name)
			// One slice per set of ports (pods on different agents
			// usually have different host ports).
			if len(got) < 2 || got[0] != "create endpoints s" {
				t.Fatalf("writes %q, want the Endpoints and slices created", got)
			}
			for _, w := range got[1:] {
				if !strings.HasPrefix(w, "create endpointslices s-km-") {
					t.Fatalf("writes %q, want the Endpoints and slices created", got)
				}
			}
			if d := describeEndpoints(f.endpoints("s")); d != c.want {
				t.Errorf("Endpoints %q, want %q", d, c.want)
			}
			slices := f.slices("s")
			if d := describeSlices(slices); d != c.want {
				t.Errorf("EndpointSlices %q, want %q", d, c.want)
			}
			for _, s := range slices {
				if s.Labels[discoveryv1.LabelManagedBy] != ManagedBy || s.Labels["tier"] != "front" ||
					len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != c.svc.UID || s.AddressType != discoveryv1.AddressTypeIPv4 {
					t.Errorf("slice %s: labels %v, owners %v, type %s", s.Name, s.Labels, s.OwnerReferences, s.AddressType)
				}
			}
			events := f.events()
			if c.event == nil && len(events) != 0 || c.event != nil && len(events) != 1 {
				t.Fatalf("events %q, want one saying %q", events, c.event)
			}
			for _, want := range c.event {
				if !strings.Contains(events[0], want) || !strings.HasPrefix(events[0], "Warning FailedToResolveEndpoints") {
					t.Errorf("event %q does not say %q", events[0], want)
				}
			}
			// A second sync over what the informers now hold writes
			// nothing and does not repeat the event.
			f.refresh()
			if got := f.sync(c.svc.Name); len(got) != 0 {
				t.Errorf("second sync wrote %q", got)
			}
			if e := f.events(); len(e) != 0 {
				t.Errorf("second sync repeated events %q", e)
			}
		})
	}
}

// The host port comes from the container's hostPort first, then the
// port_ annotation, then the portName_ one.
func TestHostPortSources(t *testing.T) {
	fixed := pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{{Name: "http", ContainerPort: 8080, HostPort: 31080}: 0})
	byName := pod("b", "192.0.2.2", true, map[corev1.ContainerPort]int32{httpPort: 0})
	byName.Annotations[podtask.PortNameAnnotation(corev1.ProtocolTCP, "http")] = "31090"
	both := pod("c", "192.0.2.3", true, map[corev1.ContainerPort]int32{httpPort: 0})
	both.Annotations[podtask.PortAnnotation(corev1.ProtocolTCP, 8080)] = "31100"
	both.Annotations[podtask.PortNameAnnotation(corev1.ProtocolTCP, "http")] = "31999"
	hostNet := pod("d", "192.0.2.4", true, map[corev1.ContainerPort]int32{httpPort: 0})
	hostNet.Spec.HostNetwork = true
	f := newFixture(t, true, service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}), fixed, byName, both, hostNet)
	f.sync("s")
	want := "192.0.2.1(web:31080) 192.0.2.2(web:31090) 192.0.2.3(web:31100) 192.0.2.4(web:8080)"
	if d := describeEndpoints(f.endpoints("s")); d != want {
		t.Fatalf("got %q, want %q", d, want)
	}
	if d := describeSlices(f.slices("s")); d != want {
		t.Fatalf("slices %q, want %q", d, want)
	}
}

// With host-port endpoints off, endpoints are PodIP:ContainerPort and a
// numbered target port needs no declaration (stock behaviour).
func TestPodIPMode(t *testing.T) {
	f := newFixture(t, false,
		service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}, corev1.ServicePort{Name: "raw", Port: 81, TargetPort: intstr.FromInt32(7777)}),
		pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001}))
	f.sync("s")
	if got := describeEndpoints(f.endpoints("s")); got != "10.1.0.1(web:8080,raw:7777)" {
		t.Fatalf("got %q", got)
	}
	if got := describeSlices(f.slices("s")); got != "10.1.0.1(web:8080,raw:7777)" {
		t.Fatalf("slices %q", got)
	}
}

// A pod that moves (replaced by a pod on another agent with another host
// port) replaces the old endpoint; the old slice goes.
func TestPodsThatMove(t *testing.T) {
	svc := service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")})
	old := pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001})
	f := newFixture(t, true, svc, old)
	first := f.sync("s")
	oldSlice := strings.TrimPrefix(first[1], "create endpointslices ")
	f.refresh()

	f.factory.Core().V1().Pods().Informer().GetIndexer().Delete(old)
	f.index(pod("a2", "192.0.2.3", true, map[corev1.ContainerPort]int32{httpPort: 31044}))
	got := f.sync("s")
	if len(got) != 3 || got[0] != "update endpoints s" || !strings.HasPrefix(got[1], "create endpointslices s-km-") || got[2] != "delete endpointslices "+oldSlice {
		t.Fatalf("writes %q", got)
	}
	if d := describeEndpoints(f.endpoints("s")); d != "192.0.2.3(web:31044)" {
		t.Fatalf("endpoints %q", d)
	}
	if d := describeSlices(f.slices("s")); d != "192.0.2.3(web:31044)" {
		t.Fatalf("slices %q", d)
	}

	// The same pod moving with the same host port updates in place.
	f.refresh()
	moved := pod("a2", "192.0.2.4", true, map[corev1.ContainerPort]int32{httpPort: 31044})
	f.factory.Core().V1().Pods().Informer().GetIndexer().Update(moved)
	got = f.sync("s")
	if len(got) != 2 || got[0] != "update endpoints s" || !strings.HasPrefix(got[1], "update endpointslices s-km-") {
		t.Fatalf("writes %q", got)
	}
	if d := describeSlices(f.slices("s")); d != "192.0.2.4(web:31044)" {
		t.Fatalf("slices %q", d)
	}

	// All pods gone: the Endpoints are empty, one empty slice says so.
	f.refresh()
	f.factory.Core().V1().Pods().Informer().GetIndexer().Delete(moved)
	f.sync("s")
	if ep := f.endpoints("s"); len(ep.Subsets) != 0 {
		t.Fatalf("subsets %v", ep.Subsets)
	}
	if s := f.slices("s"); len(s) != 1 || len(s[0].Endpoints) != 0 {
		t.Fatalf("slices %+v", s)
	}
}

// Not-ready pods are not-ready addresses; terminating pods are left out
// of Endpoints and kept in slices as terminating (serving while ready),
// as the stock controllers do; publishNotReadyAddresses makes all ready.
func TestReadinessAndTermination(t *testing.T) {
	now := metav1.NewTime(time.Now())
	term := pod("c", "192.0.2.3", true, map[corev1.ContainerPort]int32{httpPort: 31003})
	term.DeletionTimestamp = &now
	pods := []runtime.Object{
		pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001}),
		pod("b", "192.0.2.2", false, map[corev1.ContainerPort]int32{httpPort: 31002}),
		term,
	}
	svc := service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")})
	f := newFixture(t, true, append([]runtime.Object{svc}, pods...)...)
	f.sync("s")
	if d := describeEndpoints(f.endpoints("s")); d != "192.0.2.1(web:31001) notready:192.0.2.2(web:31002)" {
		t.Fatalf("endpoints %q", d)
	}
	if d := describeSlices(f.slices("s")); d != "192.0.2.1(web:31001) notready:192.0.2.2(web:31002) notready:terminating:serving:192.0.2.3(web:31003)" {
		t.Fatalf("slices %q", d)
	}

	svc = svc.DeepCopy()
	svc.Spec.PublishNotReadyAddresses = true
	f = newFixture(t, true, append([]runtime.Object{svc}, pods...)...)
	f.sync("s")
	if d := describeEndpoints(f.endpoints("s")); d != "192.0.2.1(web:31001) 192.0.2.2(web:31002) 192.0.2.3(web:31003)" {
		t.Fatalf("publishNotReadyAddresses: endpoints %q", d)
	}
}

// Slices the stock endpointslice controller left (from a run with
// --host-port-endpoints=false) are deleted, and a stock Endpoints object
// is taken over; slices of other managers stay.
func TestTakesOverFromStockControllers(t *testing.T) {
	svc := service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")})
	stockSlice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "s-abcde", Namespace: "ns",
		Labels: map[string]string{discoveryv1.LabelServiceName: "s", discoveryv1.LabelManagedBy: StockManagedBy}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}}}}
	otherSlice := stockSlice.DeepCopy()
	otherSlice.Name, otherSlice.Labels[discoveryv1.LabelManagedBy] = "s-mine", "someone-else"
	stockEndpoints := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns",
		Labels:      map[string]string{LabelEndpointsManagedBy: stockEndpointsManagedBy},
		Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: "2026-01-01T00:00:00Z"}},
		Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "10.1.0.1"}}, Ports: []corev1.EndpointPort{{Name: "web", Port: 8080}}}}}
	f := newFixture(t, true, svc, pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001}), stockSlice, otherSlice, stockEndpoints)
	got := f.sync("s")
	if len(got) != 3 || got[0] != "update endpoints s" || got[2] != "delete endpointslices s-abcde" {
		t.Fatalf("writes %q", got)
	}
	ep := f.endpoints("s")
	if describeEndpoints(ep) != "192.0.2.1(web:31001)" || ep.Labels[LabelEndpointsManagedBy] != EndpointsManagedBy || ep.Annotations[corev1.EndpointsLastChangeTriggerTime] != "" {
		t.Fatalf("endpoints %+v", ep)
	}
	if names := f.slices("s"); len(names) != 2 || names[1].Name != "s-mine" {
		t.Fatalf("slices %v", names)
	}
}

// A deleted service's Endpoints (if a controller made them) and slices
// go; hand-made Endpoints stay.
func TestServiceDeleted(t *testing.T) {
	ours := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns", Labels: map[string]string{LabelEndpointsManagedBy: EndpointsManagedBy}}}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "s-km-x-0", Namespace: "ns",
		Labels: map[string]string{discoveryv1.LabelServiceName: "s", discoveryv1.LabelManagedBy: ManagedBy}}, AddressType: discoveryv1.AddressTypeIPv4}
	handMade := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "h", Namespace: "ns"}}
	f := newFixture(t, true, ours, slice, handMade)
	if got := f.sync("s"); strings.Join(got, ",") != "delete endpoints s,delete endpointslices s-km-x-0" {
		t.Fatalf("writes %q", got)
	}
	if got := f.sync("h"); len(got) != 0 {
		t.Fatalf("hand-made endpoints: writes %q", got)
	}
}

// Services without a selector keep their hand-made Endpoints (the stock
// mirroring controller makes their slices); ExternalName services get
// nothing; slices of ours left from a removed selector go.
func TestServicesWithoutSelectors(t *testing.T) {
	noSel := service("s", corev1.ServicePort{Port: 80})
	noSel.Spec.Selector = nil
	ext := service("x", corev1.ServicePort{Port: 80})
	ext.Spec.Type, ext.Spec.ExternalName = corev1.ServiceTypeExternalName, "example.com"
	leftover := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "s-km-x-0", Namespace: "ns",
		Labels: map[string]string{discoveryv1.LabelServiceName: "s", discoveryv1.LabelManagedBy: ManagedBy}}, AddressType: discoveryv1.AddressTypeIPv4}
	handMade := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns"},
		Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "192.0.2.50"}}, Ports: []corev1.EndpointPort{{Port: 80}}}}}
	f := newFixture(t, true, noSel, ext, leftover, handMade, pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001}))
	if got := f.sync("s"); strings.Join(got, ",") != "delete endpointslices s-km-x-0" {
		t.Fatalf("selectorless service: writes %q", got)
	}
	if got := f.sync("x"); len(got) != 0 {
		t.Fatalf("ExternalName service: writes %q", got)
	}
}

// A headless service without ports gets addresses without ports, and the
// headless label kube-proxy filters on; hostnames go to DNS.
func TestHeadlessService(t *testing.T) {
	svc := service("s")
	svc.Spec.ClusterIP = corev1.ClusterIPNone
	p := pod("a", "192.0.2.1", true, nil)
	p.Spec.Hostname, p.Spec.Subdomain = "web-0", "s"
	f := newFixture(t, true, svc, p)
	f.sync("s")
	ep := f.endpoints("s")
	if len(ep.Subsets) != 1 || len(ep.Subsets[0].Ports) != 0 || ep.Subsets[0].Addresses[0].Hostname != "web-0" {
		t.Fatalf("endpoints %+v", ep.Subsets)
	}
	if _, ok := ep.Labels[corev1.IsHeadlessService]; !ok {
		t.Fatalf("labels %v", ep.Labels)
	}
	s := f.slices("s")
	if len(s) != 1 || len(s[0].Endpoints) != 1 || *s[0].Endpoints[0].Hostname != "web-0" {
		t.Fatalf("slices %+v", s)
	}
	if _, ok := s[0].Labels[corev1.IsHeadlessService]; !ok {
		t.Fatalf("slice labels %v", s[0].Labels)
	}
}

// Large services are cut into slices of at most MaxEndpointsPerSlice, and
// Endpoints hold at most 1000 addresses, marked over capacity.
func TestLargeService(t *testing.T) {
	objs := []runtime.Object{service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")})}
	for i := 0; i < 1100; i++ {
		p := pod(fmt.Sprintf("p%04d", i), fmt.Sprintf("192.0.%d.%d", 2+i/250, 1+i%250), true, map[corev1.ContainerPort]int32{httpPort: 31001})
		objs = append(objs, p)
	}
	f := newFixture(t, true, objs...)
	f.c.opts.MaxEndpointsPerSlice = 500
	f.sync("s")
	slices := f.slices("s")
	if len(slices) != 3 || len(slices[0].Endpoints) != 500 || len(slices[2].Endpoints) != 100 {
		t.Fatalf("%d slices", len(slices))
	}
	ep := f.endpoints("s")
	if n := len(ep.Subsets[0].Addresses); n != 1000 || ep.Annotations[corev1.EndpointsOverCapacity] != "truncated" {
		t.Fatalf("%d addresses, annotations %v", n, ep.Annotations)
	}
}

// A service of an IPv6 cluster gets IPv6 host addresses.
func TestIPv6(t *testing.T) {
	svc := service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")})
	svc.Spec.ClusterIP, svc.Spec.IPFamilies = "fd00::10", []corev1.IPFamily{corev1.IPv6Protocol}
	p := pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001})
	p.Status.HostIPs = []corev1.HostIP{{IP: "192.0.2.1"}, {IP: "2001:db8::1"}}
	f := newFixture(t, true, svc, p)
	f.sync("s")
	s := f.slices("s")
	if len(s) != 1 || s[0].AddressType != discoveryv1.AddressTypeIPv6 || describeSlices(s) != "2001:db8::1(web:31001)" {
		t.Fatalf("slices %+v", s)
	}
}

// Pod updates that do not change endpoints (most of the kubelet's) do not
// queue the service.
func TestPodUpdatesThatMatter(t *testing.T) {
	f := newFixture(t, true, service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}))
	old := pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001})
	restarted := old.DeepCopy()
	restarted.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", RestartCount: 3}}
	f.c.podUpdated(old, restarted)
	if n := f.c.queue.Len(); n != 0 {
		t.Fatalf("an unrelated status change queued %d services", n)
	}
	notReady := old.DeepCopy()
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	f.c.podUpdated(old, notReady)
	if n := f.c.queue.Len(); n != 1 {
		t.Fatalf("a readiness change queued %d services", n)
	}
	relabelled := old.DeepCopy()
	relabelled.Labels = map[string]string{"app": "other"}
	f.c.podUpdated(old, relabelled)
	if n := f.c.queue.Len(); n != 1 { // the same key, queued once
		t.Fatalf("queue %d", n)
	}
}

// The controller running on informers: a service and pods created
// through the API get their endpoints, and follow a pod that moves.
func TestRunOnInformers(t *testing.T) {
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	c := New(client, factory, Options{HostPort: true, Recorder: record.NewFakeRecorder(100)})
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	go c.Run(ctx, 2)
	defer func() { cancel(); factory.Shutdown() }()

	svc := service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")})
	p := pod("a", "192.0.2.1", true, map[corev1.ContainerPort]int32{httpPort: 31001})
	if _, err := client.CoreV1().Services("ns").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Pods("ns").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		ep, err := client.CoreV1().Endpoints("ns").Get(ctx, "s", metav1.GetOptions{})
		return err == nil && describeEndpoints(ep) == "192.0.2.1(web:31001)"
	})
	p = p.DeepCopy()
	p.Status.HostIP = "192.0.2.7"
	if _, err := client.CoreV1().Pods("ns").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		sl, _ := client.DiscoveryV1().EndpointSlices("ns").List(ctx, metav1.ListOptions{})
		return describeSlices(sl.Items) == "192.0.2.7(web:31001)"
	})
	// Someone deletes the Endpoints: they come back.
	if err := client.CoreV1().Endpoints("ns").Delete(ctx, "s", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		ep, err := client.CoreV1().Endpoints("ns").Get(ctx, "s", metav1.GetOptions{})
		return err == nil && describeEndpoints(ep) == "192.0.2.7(web:31001)"
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDeleteOwnSlices(t *testing.T) {
	mk := func(ns, name, by string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelManagedBy: by}}, AddressType: discoveryv1.AddressTypeIPv4}
	}
	client := fake.NewClientset(mk("a", "s1", ManagedBy), mk("b", "s2", ManagedBy), mk("a", "s3", StockManagedBy))
	n, err := DeleteOwnSlices(context.Background(), client)
	if err != nil || n != 2 {
		t.Fatalf("deleted %d: %v", n, err)
	}
	left, _ := client.DiscoveryV1().EndpointSlices("").List(context.Background(), metav1.ListOptions{})
	if len(left.Items) != 1 || left.Items[0].Name != "s3" {
		t.Fatalf("left %v", left.Items)
	}
}
