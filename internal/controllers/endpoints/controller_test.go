package endpoints

import (
	"context"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

type fixture struct {
	t       *testing.T
	client  *fake.Clientset
	factory informers.SharedInformerFactory
	c       *Controller
}

func newFixture(t *testing.T, hostPort bool) *fixture {
	client := fake.NewSimpleClientset()
	f := informers.NewSharedInformerFactory(client, 0)
	c := New(client, f, hostPort)
	c.recorder = record.NewFakeRecorder(100)
	return &fixture{t: t, client: client, factory: f, c: c}
}

func (f *fixture) add(objs ...any) {
	for _, o := range objs {
		var err error
		switch v := o.(type) {
		case *corev1.Service:
			err = f.factory.Core().V1().Services().Informer().GetIndexer().Add(v)
		case *corev1.Pod:
			err = f.factory.Core().V1().Pods().Informer().GetIndexer().Add(v)
		}
		if err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) sync(name string) (*corev1.Endpoints, []discoveryv1.EndpointSlice) {
	f.t.Helper()
	if err := f.c.Sync(context.Background(), "ns/"+name); err != nil {
		f.t.Fatal(err)
	}
	ep, err := f.client.CoreV1().Endpoints("ns").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	sl, _ := f.client.DiscoveryV1().EndpointSlices("ns").List(context.Background(), metav1.ListOptions{})
	return ep, sl.Items
}

func service(name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: "svc-uid"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: ports}}
}

// pod is a scheduled, running pod on agent host with km's annotations for
// the given container port -> host port map.
func pod(name, hostIP, podIP string, ready bool, ports map[corev1.ContainerPort]int32) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{"app": "web"}, Annotations: map[string]string{}},
		Spec:       corev1.PodSpec{NodeName: "agent-" + hostIP, Containers: []corev1.Container{{Name: "c"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, HostIP: hostIP, PodIP: podIP},
	}
	p.UID = types.UID("uid-" + name)
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	for cp, hp := range ports {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, cp)
		if hp != 0 {
			p.Annotations[podtask.PortAnnotation(cp.Protocol, cp.ContainerPort)] = itoa(hp)
			if cp.Name != "" {
				p.Annotations[podtask.PortNameAnnotation(cp.Protocol, cp.Name)] = itoa(hp)
			}
		}
	}
	return p
}

func itoa(i int32) string { return strconv.Itoa(int(i)) }

func addrs(ss []corev1.EndpointSubset) string {
	var out []string
	for _, s := range ss {
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
	return strings.Join(out, " ")
}

func TestHostPortEndpoints(t *testing.T) {
	http := corev1.ContainerPort{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}
	metrics := corev1.ContainerPort{ContainerPort: 9090, Protocol: corev1.ProtocolTCP}
	for _, c := range []struct {
		name string
		svc  *corev1.Service
		pods []*corev1.Pod
		want string
	}{
		{"named target port",
			service("s1", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}),
			[]*corev1.Pod{pod("a", "192.0.2.1", "", true, map[corev1.ContainerPort]int32{http: 31001})},
			"192.0.2.1(web:31001)"},
		{"numbered target port",
			service("s2", corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(8080)}),
			[]*corev1.Pod{pod("a", "192.0.2.1", "", true, map[corev1.ContainerPort]int32{http: 31001})},
			"192.0.2.1(:31001)"},
		{"unnamed port, no target port",
			service("s3", corev1.ServicePort{Port: 9090}),
			[]*corev1.Pod{pod("a", "192.0.2.2", "", true, map[corev1.ContainerPort]int32{metrics: 31500})},
			"192.0.2.2(:31500)"},
		{"multiple ports",
			service("s4", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}, corev1.ServicePort{Name: "m", Port: 9090}),
			[]*corev1.Pod{pod("a", "192.0.2.1", "", true, map[corev1.ContainerPort]int32{http: 31001, metrics: 31002})},
			"192.0.2.1(web:31001,m:31002)"},
		{"different host ports per pod and a not-ready pod",
			service("s5", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}),
			[]*corev1.Pod{
				pod("a", "192.0.2.1", "", true, map[corev1.ContainerPort]int32{http: 31001}),
				pod("b", "192.0.2.2", "", false, map[corev1.ContainerPort]int32{http: 31007}),
			},
			"192.0.2.1(web:31001) notready:192.0.2.2(web:31007)"},
		{"pod without km annotations",
			service("s6", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}),
			[]*corev1.Pod{pod("a", "192.0.2.1", "", true, map[corev1.ContainerPort]int32{http: 0})},
			""},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, true)
			f.add(c.svc)
			for _, p := range c.pods {
				f.add(p)
			}
			ep, slices := f.sync(c.svc.Name)
			if got := addrs(ep.Subsets); got != c.want {
				t.Fatalf("endpoints %q, want %q", got, c.want)
			}
			n := 0
			for _, s := range slices {
				if s.Labels[discoveryv1.LabelServiceName] != c.svc.Name || s.Labels[discoveryv1.LabelManagedBy] != ManagedBy {
					t.Fatalf("slice labels %v", s.Labels)
				}
				n += len(s.Endpoints)
			}
			if want := strings.Count(c.want, "("); n != want {
				t.Fatalf("%d endpoints in slices, want %d", n, want)
			}
		})
	}
}

func TestUndeclaredTargetPortIsReported(t *testing.T) {
	f := newFixture(t, true)
	f.add(service("s", corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(7777)}),
		pod("a", "192.0.2.1", "", true, map[corev1.ContainerPort]int32{{ContainerPort: 8080}: 31001}))
	ep, _ := f.sync("s")
	if len(ep.Subsets) != 0 {
		t.Fatalf("got %v", ep.Subsets)
	}
	ev := <-f.c.recorder.(*record.FakeRecorder).Events
	if !strings.Contains(ev, "does not declare target port 7777") {
		t.Fatalf("event %q", ev)
	}
}

func TestVanillaModeUsesPodIPs(t *testing.T) {
	f := newFixture(t, false)
	f.add(service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}, corev1.ServicePort{Name: "raw", Port: 81, TargetPort: intstr.FromInt32(7777)}),
		pod("a", "192.0.2.1", "10.1.0.5", true, map[corev1.ContainerPort]int32{{Name: "http", ContainerPort: 8080}: 31001}))
	ep, _ := f.sync("s")
	if got := addrs(ep.Subsets); got != "10.1.0.5(web:8080,raw:7777)" {
		t.Fatalf("got %q", got)
	}
}

// A pod that moves (new pod, other agent, other host port) replaces the
// old endpoint, and stale slices go away.
func TestPodsThatMove(t *testing.T) {
	f := newFixture(t, true)
	svc := service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")})
	http := corev1.ContainerPort{Name: "http", ContainerPort: 8080}
	f.add(svc, pod("a", "192.0.2.1", "", true, map[corev1.ContainerPort]int32{http: 31001}))
	f.sync("s")
	f.factory.Core().V1().Pods().Informer().GetIndexer().Delete(pod("a", "", "", true, nil))
	f.add(pod("a2", "192.0.2.3", "", true, map[corev1.ContainerPort]int32{http: 31044}))
	ep, slices := f.sync("s")
	if got := addrs(ep.Subsets); got != "192.0.2.3(web:31044)" {
		t.Fatalf("got %q", got)
	}
	if len(slices) != 1 || len(slices[0].Endpoints) != 1 || slices[0].Endpoints[0].Addresses[0] != "192.0.2.3" || *slices[0].Ports[0].Port != 31044 {
		t.Fatalf("slices %+v", slices)
	}
}

func TestLoopbackAddressesAreReportedNotWritten(t *testing.T) {
	f := newFixture(t, true)
	http := corev1.ContainerPort{Name: "http", ContainerPort: 8080}
	f.add(service("s", corev1.ServicePort{Name: "web", Port: 80, TargetPort: intstr.FromString("http")}),
		pod("a", "127.0.1.1", "", true, map[corev1.ContainerPort]int32{http: 31001}),
		pod("b", "192.0.2.9", "", true, map[corev1.ContainerPort]int32{http: 31002}))
	ep, _ := f.sync("s")
	if got := addrs(ep.Subsets); got != "192.0.2.9(web:31002)" {
		t.Fatalf("got %q", got)
	}
	ev := <-f.c.recorder.(*record.FakeRecorder).Events
	if !strings.Contains(ev, `pod a has address "127.0.1.1"`) {
		t.Fatalf("event %q", ev)
	}
}
