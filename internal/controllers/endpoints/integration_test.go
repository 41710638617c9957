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

	"github.com/k8sm/k8sm/internal/scheduler/podtask"
	"github.com/k8sm/k8sm/internal/testing/controlplane"
)

const kubectlPath = "/usr/bin/kubectl"

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
  - {name: metrics, port: 9090}
`

// standInForScheduler binds the RC's pods to agents and marks them running
// with km's host-port annotations, as km's scheduler and executor would.
func standInForScheduler(t *testing.T, client kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	var pods []corev1.Pod
	deadline := time.Now().Add(60 * time.Second)
	for {
		list, err := client.CoreV1().Pods("shop").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err == nil && len(list.Items) == 2 {
			pods = list.Items
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replication controller did not make 2 pods")
		}
		time.Sleep(200 * time.Millisecond)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	for i, p := range pods {
		// TEST-NET-1 (documentation) addresses: the apiserver refuses
		// loopback ones in endpoints, and no traffic goes anywhere here.
		host := fmt.Sprintf("192.0.2.%d", i+1)
		b := &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Annotations: map[string]string{
				podtask.PortNameAnnotation(corev1.ProtocolTCP, "http"): fmt.Sprint(31000 + i),
				podtask.PortAnnotation(corev1.ProtocolTCP, 8080):       fmt.Sprint(31000 + i),
				podtask.PortAnnotation(corev1.ProtocolTCP, 9090):       fmt.Sprint(31100 + i),
			}},
			Target: corev1.ObjectReference{Kind: "Node", Name: "agent-" + fmt.Sprint(i+1)},
		}
		if err := client.CoreV1().Pods("shop").Bind(ctx, b, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cur, err := client.CoreV1().Pods("shop").Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Status.Phase = corev1.PodRunning
		cur.Status.HostIP = host
		cur.Status.PodIP = fmt.Sprintf("10.1.0.%d", i+1)
		cur.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		if _, err := client.CoreV1().Pods("shop").UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// endpointsOf reads Endpoints and EndpointSlices as "ip:port" strings.
func endpointsOf(t *testing.T, client kubernetes.Interface) (eps, slices []string) {
	ctx := context.Background()
	if ep, err := client.CoreV1().Endpoints("shop").Get(ctx, "web", metav1.GetOptions{}); err == nil {
		for _, s := range ep.Subsets {
			for _, a := range s.Addresses {
				for _, p := range s.Ports {
					eps = append(eps, fmt.Sprintf("%s:%d", a.IP, p.Port))
				}
			}
		}
	}
	list, err := client.DiscoveryV1().EndpointSlices("shop").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=web"})
	if err == nil {
		for _, s := range list.Items {
			for _, e := range s.Endpoints {
				for _, p := range s.Ports {
					slices = append(slices, fmt.Sprintf("%s:%d", e.Addresses[0], *p.Port))
				}
			}
		}
	}
	sort.Strings(eps)
	sort.Strings(slices)
	return eps, slices
}

func waitEndpoints(t *testing.T, client kubernetes.Interface, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		eps, slices := endpointsOf(t, client)
		if strings.Join(eps, " ") == want && strings.Join(slices, " ") == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("endpoints %v, slices %v; want %s", eps, slices, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// The whole control plane as separate km processes, driven with the real
// kubectl: a replication controller makes its pods, the service's
// Endpoints and EndpointSlice hold HostIP:HostPort, a restart keeps every
// object, and with --host-port-endpoints=false they hold
// PodIP:ContainerPort.
func TestControlPlaneHostPortEndpoints(t *testing.T) {
	if _, err := os.Stat(kubectlPath); err != nil {
		t.Fatalf("this test drives the real kubectl at %s: %v", kubectlPath, err)
	}
	if testing.Short() {
		t.Skip("starts the control plane (slow)")
	}
	cp := controlplane.Start(t, controlplane.Options{})
	kc := cp.Kubeconfig()
	if out := kubectl(t, kc, "", "version"); !strings.Contains(out, "Server Version: v1.36.3") {
		t.Fatalf("kubectl version:\n%s", out)
	}
	kubectl(t, kc, manifests, "apply", "-f", "-")
	client := cp.Client()
	standInForScheduler(t, client)
	waitEndpoints(t, client, "192.0.2.1:31000 192.0.2.1:31100 192.0.2.2:31001 192.0.2.2:31101")
	if out := kubectl(t, kc, "", "-n", "shop", "get", "endpoints", "web"); !strings.Contains(out, "192.0.2.1:31000") {
		t.Fatalf("kubectl get endpoints:\n%s", out)
	}

	// Stop and start the three processes: every object is still there.
	cp.Stop()
	cp.StartAll()
	out := kubectl(t, kc, "", "-n", "shop", "get", "rc,svc,pods", "-o", "name")
	for _, want := range []string{"replicationcontroller/web", "service/web"} {
		if !strings.Contains(out, want) {
			t.Fatalf("after restart, %s is gone:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "pod/web-"); n != 2 {
		t.Fatalf("after restart, %d pods:\n%s", n, out)
	}
	waitEndpoints(t, client, "192.0.2.1:31000 192.0.2.1:31100 192.0.2.2:31001 192.0.2.2:31101")

	// Vanilla mode: PodIP:ContainerPort from the stock controllers.
	cp.RestartWith(controlplane.Options{ControllerManagerArgs: []string{"--host-port-endpoints=false"}})
	client = cp.Client()
	// Stock controllers manage slices of their own; km's stale ones are
	// not theirs, so read the Endpoints here.
	deadline := time.Now().Add(60 * time.Second)
	for {
		eps, _ := endpointsOf(t, client)
		if strings.Join(eps, " ") == "10.1.0.1:8080 10.1.0.1:9090 10.1.0.2:8080 10.1.0.2:9090" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vanilla endpoints %v", eps)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
