package endpoints

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/k8sm/k8sm/internal/scheduler/podtask"
	"github.com/k8sm/k8sm/internal/testing/controlplane"
)

const (
	kubectlPath = "/usr/bin/kubectl"
	// mirrorManagedBy marks the slices of the stock endpointslice
	// mirroring controller.
	mirrorManagedBy = "endpointslicemirroring-controller.k8s.io"
)

func kubectl(t *testing.T, kubeconfig string, stdin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(kubectlPath, append([]string{"--kubeconfig", kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The services: named and numbered target ports, a service whose only port
// has no name and no targetPort (k8sm needed names), one whose target port
// the pods do not declare, and one without a selector whose Endpoints are
// made by hand (the stock mirroring controller makes its slice).
const manifests = `
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {app: web}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: none
        command: ["sleep", "3600"]
        ports:
        - {name: http, containerPort: 8080}
        - {containerPort: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: metrics, port: 9090, targetPort: 9090}
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - port: 8080
---
apiVersion: v1
kind: Service
metadata: {name: wrong, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 7777
---
apiVersion: v1
kind: Service
metadata: {name: external, namespace: shop}
spec:
  ports:
  - port: 5432
---
apiVersion: v1
kind: Endpoints
metadata: {name: external, namespace: shop}
subsets:
- addresses: [{ip: 192.0.2.50}]
  ports: [{port: 5432}]
`

// standInForScheduler does what km's scheduler and executor would: Node
// objects for two agents, the RC's pods bound to them with km's host-port
// annotations, and their status running and ready.
func standInForScheduler(t *testing.T, client kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	for i := 1; i <= 2; i++ {
		name := fmt.Sprintf("agent-%d", i)
		if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The controller-manager's node controllers change new nodes too.
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			node, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("192.0.2.%d", i)}}
			node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue,
				LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now(), Reason: "KubeletReady"}}
			_, err = client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var pods []corev1.Pod
	waitUntil(t, "the replication controller's 2 pods", func() bool {
		list, err := client.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		pods = nil
		if err == nil {
			pods = list.Items
		}
		return len(pods) == 2
	})
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	for i, p := range pods {
		b := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Annotations: map[string]string{
				podtask.PortNameAnnotation(corev1.ProtocolTCP, "http"): fmt.Sprint(31000 + i),
				podtask.PortAnnotation(corev1.ProtocolTCP, 8080):       fmt.Sprint(31000 + i),
				podtask.PortAnnotation(corev1.ProtocolTCP, 9090):       fmt.Sprint(31100 + i),
			}},
			Target: corev1.ObjectReference{Kind: "Node", Name: fmt.Sprintf("agent-%d", i+1)},
		}
		if err := client.CoreV1().Pods("shop").Bind(ctx, b, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cur, err := client.CoreV1().Pods("shop").Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// TEST-NET-1 host addresses: the apiserver refuses loopback ones
		// in endpoints, and nothing connects to them here.
		cur.Status.Phase = corev1.PodRunning
		cur.Status.HostIP = fmt.Sprintf("192.0.2.%d", i+1)
		cur.Status.PodIP = fmt.Sprintf("10.1.0.%d", i+1)
		cur.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if _, err := client.CoreV1().Pods("shop").UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// endpointsOf reads a service's Endpoints and EndpointSlices as sorted
// "ip:port" lists; managers are the slices' managed-by labels.
func endpointsOf(client kubernetes.Interface, svc string) (eps, slices []string, managers map[string]bool) {
	ctx := context.Background()
	if ep, err := client.CoreV1().Endpoints("shop").Get(ctx, svc, metav1.GetOptions{}); err == nil {
		for _, s := range ep.Subsets {
			for _, a := range s.Addresses {
				for _, p := range s.Ports {
					eps = append(eps, fmt.Sprintf("%s:%d", a.IP, p.Port))
				}
			}
		}
	}
	managers = map[string]bool{}
	list, err := client.DiscoveryV1().EndpointSlices("shop").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err == nil {
		for _, s := range list.Items {
			managers[s.Labels[discoveryv1.LabelManagedBy]] = true
			for _, e := range s.Endpoints {
				for _, p := range s.Ports {
					slices = append(slices, fmt.Sprintf("%s:%d", e.Addresses[0], *p.Port))
				}
			}
		}
	}
	sort.Strings(eps)
	sort.Strings(slices)
	return eps, slices, managers
}

// waitEndpoints waits until a service's Endpoints and slices both hold
// want, and the slices are all of manager.
func waitEndpoints(t *testing.T, client kubernetes.Interface, svc, want, manager string) {
	t.Helper()
	var eps, slices []string
	var managers map[string]bool
	deadline := time.Now().Add(60 * time.Second)
	for {
		eps, slices, managers = endpointsOf(client, svc)
		if strings.Join(eps, " ") == want && strings.Join(slices, " ") == want && len(managers) == 1 && managers[manager] {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("service %s: endpoints %v, slices %v of %v; want %s from %s", svc, eps, slices, managers, want, manager)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 60s waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// snapshot maps every object of the namespace (and the namespace) to its
// UID.
func snapshot(t *testing.T, client kubernetes.Interface) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	ns, err := client.CoreV1().Namespaces().Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out["namespace/shop"] = string(ns.UID)
	rcs, _ := client.CoreV1().ReplicationControllers("shop").List(ctx, metav1.ListOptions{})
	for _, o := range rcs.Items {
		out["rc/"+o.Name] = string(o.UID)
	}
	svcs, _ := client.CoreV1().Services("shop").List(ctx, metav1.ListOptions{})
	for _, o := range svcs.Items {
		out["service/"+o.Name] = string(o.UID)
	}
	pods, _ := client.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{})
	for _, o := range pods.Items {
		out["pod/"+o.Name] = string(o.UID) + " on " + o.Spec.NodeName + " " + o.Annotations[podtask.PortAnnotation(corev1.ProtocolTCP, 8080)]
	}
	eps, _ := client.CoreV1().Endpoints("shop").List(ctx, metav1.ListOptions{})
	for _, o := range eps.Items {
		out["endpoints/"+o.Name] = string(o.UID)
	}
	sls, _ := client.DiscoveryV1().EndpointSlices("shop").List(ctx, metav1.ListOptions{})
	for _, o := range sls.Items {
		out["endpointslice/"+o.Name] = string(o.UID)
	}
	return out
}

// The control plane as three km processes, driven with the real kubectl:
// a replication controller makes its pods, the services' Endpoints and
// EndpointSlices hold HostIP:HostPort, a restart keeps every object, and
// with --host-port-endpoints=false they hold PodIP:ContainerPort from the
// stock controllers (and back again).
func TestControlPlaneHostPortEndpoints(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the control plane")
	}
	if _, err := os.Stat(kubectlPath); err != nil {
		t.Fatalf("this test drives the real kubectl at %s: %v", kubectlPath, err)
	}
	cp := controlplane.Start(t, controlplane.Options{})
	kc := cp.Kubeconfig()
	if out := kubectl(t, kc, "", "version"); !strings.Contains(out, "Server Version: v1.36.3") {
		t.Fatalf("kubectl version:\n%s", out)
	}
	kubectl(t, kc, manifests, "apply", "-f", "-")
	client := cp.Client()
	standInForScheduler(t, client)

	const hostPorts = "192.0.2.1:31000 192.0.2.1:31100 192.0.2.2:31001 192.0.2.2:31101"
	waitEndpoints(t, client, "web", hostPorts, ManagedBy)
	waitEndpoints(t, client, "plain", "192.0.2.1:31000 192.0.2.2:31001", ManagedBy)
	waitEndpoints(t, client, "wrong", "", ManagedBy)
	waitEndpoints(t, client, "external", "192.0.2.50:5432", mirrorManagedBy)
	if out := kubectl(t, kc, "", "-n", "shop", "get", "endpoints", "web"); !strings.Contains(out, "192.0.2.1:31000") {
		t.Fatalf("kubectl get endpoints:\n%s", out)
	}
	// One slice per agent: the pods' host ports differ.
	out := kubectl(t, kc, "", "-n", "shop", "get", "endpointslices", "-l", "kubernetes.io/service-name=plain", "--no-headers")
	var rows []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) >= 4 {
			rows = append(rows, strings.Join(f[1:4], " "))
		}
	}
	sort.Strings(rows)
	if strings.Join(rows, ", ") != "IPv4 31000 192.0.2.1, IPv4 31001 192.0.2.2" {
		t.Fatalf("kubectl get endpointslices:\n%s", out)
	}
	waitUntil(t, "the event on service wrong", func() bool {
		out := kubectl(t, kc, "", "-n", "shop", "get", "events", "--field-selector", "involvedObject.name=wrong,reason=FailedToResolveEndpoints", "-o", "jsonpath={.items[*].message}")
		return strings.Contains(out, "does not declare target port 7777/TCP of service port 80")
	})

	// Stop and start the three processes: every object is still there,
	// the same (UIDs), and the endpoints with them.
	before := snapshot(t, client)
	cp.Restart()
	waitEndpoints(t, client, "web", hostPorts, ManagedBy)
	after := snapshot(t, client)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("after a restart %s is %q, was %q", k, after[k], v)
		}
	}
	if len(after) != len(before) || len(before) < 10 {
		t.Errorf("objects before the restart %v, after %v", before, after)
	}
	out = kubectl(t, kc, "", "-n", "shop", "get", "rc,svc,pods", "-o", "name")
	for _, want := range []string{"replicationcontroller/web", "service/web", "service/plain", "service/wrong"} {
		if !strings.Contains(out, want) {
			t.Fatalf("after a restart kubectl does not list %s:\n%s", want, out)
		}
	}

	// Vanilla mode: the stock controllers write PodIP:ContainerPort, and
	// km's slices are gone (they would still send traffic to host ports).
	cp.RestartWith(controlplane.Options{ControllerManagerArgs: []string{"--host-port-endpoints=false"}})
	waitEndpoints(t, client, "web", "10.1.0.1:8080 10.1.0.1:9090 10.1.0.2:8080 10.1.0.2:9090", StockManagedBy)
	waitEndpoints(t, client, "plain", "10.1.0.1:8080 10.1.0.2:8080", StockManagedBy)

	waitEndpoints(t, client, "external", "192.0.2.50:5432", mirrorManagedBy)

	// And back, as an HA member (leader election): km's controller takes
	// a lease of its own and takes over from the stock slices.
	cp.RestartWith(controlplane.Options{ControllerManagerArgs: []string{"--leader-elect=true"}})
	waitEndpoints(t, client, "web", hostPorts, ManagedBy)
	waitEndpoints(t, client, "plain", "192.0.2.1:31000 192.0.2.2:31001", ManagedBy)
	waitEndpoints(t, client, "external", "192.0.2.50:5432", mirrorManagedBy)
	for _, lease := range []string{"kube-controller-manager", "km-endpoints-controller"} {
		l, err := client.CoordinationV1().Leases("kube-system").Get(context.Background(), lease, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			t.Errorf("lease %s: %v %v", lease, l, err)
		}
	}
}
