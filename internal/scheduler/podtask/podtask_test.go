package podtask

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func container(name string, req, lim corev1.ResourceList, ports ...corev1.ContainerPort) corev1.Container {
	return corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}, Ports: ports}
}

func rl(cpu, mem string) corev1.ResourceList {
	out := corev1.ResourceList{}
	if cpu != "" {
		out[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		out[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	return out
}

func TestDemand(t *testing.T) {
	for _, c := range []struct {
		name      string
		spec      corev1.PodSpec
		cpus, mem float64
	}{
		{"defaults", corev1.PodSpec{Containers: []corev1.Container{container("a", nil, nil)}}, 0.25, 64},
		{"requests", corev1.PodSpec{Containers: []corev1.Container{container("a", rl("500m", "256Mi"), nil), container("b", rl("100m", "64Mi"), nil)}}, 0.6, 320},
		{"limits only", corev1.PodSpec{Containers: []corev1.Container{container("a", nil, rl("2", "1Gi"))}}, 2, 1024},
		{"init container larger", corev1.PodSpec{
			InitContainers: []corev1.Container{container("i", rl("3", "2Gi"), nil)},
			Containers:     []corev1.Container{container("a", rl("1", "1Gi"), nil)}}, 3, 2048},
		{"mesos minimum", corev1.PodSpec{Containers: []corev1.Container{container("a", rl("1m", "1Mi"), nil)}}, 0.01, 32},
		{"overhead", corev1.PodSpec{Overhead: rl("250m", "128Mi"), Containers: []corev1.Container{container("a", rl("1", "128Mi"), nil)}}, 1.25, 256},
	} {
		d, err := DemandOf(&corev1.Pod{Spec: c.spec}, Defaults{}, Wildcard)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if d.CPUs != c.cpus || d.MemMB != c.mem {
			t.Errorf("%s: %v cpus %v MB, want %v %v", c.name, d.CPUs, d.MemMB, c.cpus, c.mem)
		}
	}
}

func TestPortsByMapping(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{container("web", nil, nil,
		corev1.ContainerPort{Name: "http", ContainerPort: 8080},
		corev1.ContainerPort{ContainerPort: 9090, HostPort: 31500},
	)}}}
	d, _ := DemandOf(pod, Defaults{}, Wildcard)
	if len(d.Ports) != 2 {
		t.Fatalf("wildcard: every container port needs a host port, got %v", d.Ports)
	}
	d, _ = DemandOf(pod, Defaults{}, Fixed)
	if len(d.Ports) != 1 || d.Ports[0].HostPort != 31500 {
		t.Fatalf("fixed: only declared host ports, got %v", d.Ports)
	}
	pod.Spec.Containers = append(pod.Spec.Containers, container("side", nil, nil, corev1.ContainerPort{ContainerPort: 1, HostPort: 31500}))
	if _, err := DemandOf(pod, Defaults{}, Fixed); err == nil || !strings.Contains(err.Error(), "declared twice") {
		t.Fatalf("duplicate host port: %v", err)
	}
	pod.Labels = map[string]string{LabelPortMapping: "bogus"}
	if _, err := MappingOf(pod, Wildcard); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Fatalf("bad mapping: %v", err)
	}
}

func TestBuildCarriesThePodAndAnnotations(t *testing.T) {
	grace := int64(42)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "ns", UID: "u1"},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{container("web", nil, nil,
			corev1.ContainerPort{Name: "http", ContainerPort: 8080})}},
	}
	d, _ := DemandOf(pod, Defaults{}, Wildcard)
	exec := ExecutorConfig{Command: "./km", Args: []string{"executor"}, CPUs: 0.25, MemMB: 128}.Info("fw-1", "*")
	task, ann, err := Build(pod, "pod.abc", d, Assignment{AgentID: "S1", Hostname: "agent-1", OfferIDs: []string{"O1"}, Role: "*", HostPorts: []int32{31001}}, exec)
	if err != nil {
		t.Fatal(err)
	}
	if ann[PortAnnotation(corev1.ProtocolTCP, 8080)] != "31001" || ann[PortNameAnnotation(corev1.ProtocolTCP, "http")] != "31001" ||
		ann[AnnotationBindingHost] != "agent-1" || ann[AnnotationTaskID] != "pod.abc" {
		t.Fatalf("annotations %v", ann)
	}
	carried, err := PodFromTask(task.GetData())
	if err != nil {
		t.Fatal(err)
	}
	if carried.Spec.Containers[0].Ports[0].HostPort != 31001 || carried.Annotations[AnnotationAgentID] != "S1" || carried.Spec.NodeName != "agent-1" {
		t.Fatalf("carried pod %+v", carried)
	}
	if hp, ok := HostPortOf(carried, pod.Spec.Containers[0].Ports[0]); !ok || hp != 31001 {
		t.Fatalf("HostPortOf = %v %v", hp, ok)
	}
	if task.GetKillPolicy().GetGracePeriod().GetNanoseconds() != 42e9 {
		t.Fatalf("kill policy %v", task.GetKillPolicy())
	}
	// Same configuration, same executor ID; another, another.
	again := ExecutorConfig{Command: "./km", Args: []string{"executor"}, CPUs: 0.25, MemMB: 128}.Info("fw-1", "*")
	other := ExecutorConfig{Command: "./km", Args: []string{"executor", "--v=2"}, CPUs: 0.25, MemMB: 128}.Info("fw-1", "*")
	if again.GetExecutorId().GetValue() != exec.GetExecutorId().GetValue() || other.GetExecutorId().GetValue() == exec.GetExecutorId().GetValue() {
		t.Fatalf("executor IDs: %s %s %s", exec.GetExecutorId().GetValue(), again.GetExecutorId().GetValue(), other.GetExecutorId().GetValue())
	}
}
