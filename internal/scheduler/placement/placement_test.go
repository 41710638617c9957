package placement

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

func agent(name string, cpus, mem float64) *Agent {
	return &Agent{ID: "S-" + name, Hostname: name, Role: "*", ResourceRole: "*", OfferIDs: []string{"O-" + name},
		CPUs: cpus, MemMB: mem, TotalCPUs: cpus, TotalMemMB: mem, Ports: []Range{{31000, 32000}}, ExecutorRunning: true,
		Labels: map[string]string{"kubernetes.io/hostname": name}}
}

func pod(name string, cpus, mem float64, ports ...podtask.PortRequest) *Pod {
	return &Pod{Pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}}, Demand: podtask.Demand{CPUs: cpus, MemMB: mem, Ports: ports}, Roles: []string{"*"}}
}

func TestManyPodsPerAgentBinPack(t *testing.T) {
	agents := []*Agent{agent("a", 4, 4096), agent("b", 4, 4096), agent("c", 4, 4096)}
	var pods []*Pod
	for i := 0; i < 8; i++ {
		pods = append(pods, pod(fmt.Sprint(i), 1, 512))
	}
	res := Place(pods, agents, Config{Strategy: BinPack})
	if len(res.Placements) != 8 {
		t.Fatalf("placed %d of 8: %v", len(res.Placements), res.Unplaced)
	}
	used := map[string]int{}
	for _, p := range res.Placements {
		used[p.Agent.Hostname]++
	}
	if len(used) != 2 {
		t.Fatalf("bin-pack should fill two agents, used %v", used)
	}
}

func TestSpread(t *testing.T) {
	agents := []*Agent{agent("a", 4, 4096), agent("b", 4, 4096), agent("c", 4, 4096)}
	res := Place([]*Pod{pod("1", 1, 512), pod("2", 1, 512), pod("3", 1, 512)}, agents, Config{Strategy: Spread})
	used := map[string]int{}
	for _, p := range res.Placements {
		used[p.Agent.Hostname]++
	}
	if len(used) != 3 {
		t.Fatalf("spread should use three agents, used %v", used)
	}
}

func TestExecutorResourcesTakenOncePerAgent(t *testing.T) {
	a := agent("a", 2, 2048)
	a.ExecutorRunning = false
	res := Place([]*Pod{pod("1", 0.5, 256), pod("2", 0.5, 256), pod("3", 0.5, 256)}, []*Agent{a}, Config{ExecutorCPUs: 0.5, ExecutorMemMB: 128})
	if len(res.Placements) != 3 || a.CPUs != 0 {
		t.Fatalf("placed %d, left %v cpus", len(res.Placements), a.CPUs)
	}
}

func TestReasons(t *testing.T) {
	big := pod("big", 100, 512)
	sel := pod("sel", 1, 1)
	sel.Pod.Spec.NodeSelector = map[string]string{"k8s.mesosphere.io/attribute-rack": "r9"}
	named := pod("named", 1, 1)
	named.Pod.Spec.NodeName = "elsewhere"
	fixed := pod("fixed", 1, 1, podtask.PortRequest{Container: "c", ContainerPort: 80, HostPort: 80})
	tainted := agent("t", 4, 4096)
	tainted.Taints = []corev1.Taint{{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule}}
	res := Place([]*Pod{big, sel, named, fixed}, []*Agent{agent("a", 4, 4096), tainted}, Config{})
	for p, want := range map[*Pod]string{
		big:   "1 Insufficient cpus, 1 agent(s) had untolerated taint",
		sel:   "2 agent(s) didn't match Pod's node affinity/selector",
		named: "2 agent(s) didn't match the requested node name",
		fixed: "1 agent(s) had untolerated taint {node.kubernetes.io/not-ready: }, 1 didn't have free ports for the requested pod ports",
	} {
		if !strings.HasPrefix(res.Unplaced[p], "0/2 agents are available: ") || !strings.Contains(res.Unplaced[p], want) {
			t.Errorf("%s: %q, want %q", p.Pod.Name, res.Unplaced[p], want)
		}
	}
}

func TestAffinityAndTolerations(t *testing.T) {
	a := agent("a", 4, 4096)
	a.Labels["k8s.mesosphere.io/attribute-zone"] = "west"
	a.Taints = []corev1.Taint{{Key: "dedicated", Value: "k8s", Effect: corev1.TaintEffectNoSchedule}}
	p := pod("p", 1, 1)
	p.Pod.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "k8s.mesosphere.io/attribute-zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"east"}}}},
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "k8s.mesosphere.io/attribute-zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"west"}}}},
		}}}}
	if res := Place([]*Pod{p}, []*Agent{a}, Config{}); len(res.Placements) != 0 {
		t.Fatalf("the taint is not tolerated")
	}
	p.Pod.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "k8s", Effect: corev1.TaintEffectNoSchedule}}
	if res := Place([]*Pod{p}, []*Agent{a}, Config{}); len(res.Placements) != 1 {
		t.Fatalf("tolerated and matching the second term: %v", res.Unplaced)
	}
}

func TestPortsNeverTwice(t *testing.T) {
	a := agent("a", 64, 65536)
	a.Ports = []Range{{31000, 31004}}
	var pods []*Pod
	for i := 0; i < 4; i++ {
		pods = append(pods, pod(fmt.Sprint(i), 0.1, 32, podtask.PortRequest{ContainerPort: 80}, podtask.PortRequest{ContainerPort: 81}))
	}
	res := Place(pods, []*Agent{a}, Config{})
	seen := map[int32]bool{}
	for _, p := range res.Placements {
		for _, hp := range p.HostPorts {
			if seen[hp] || hp < 31000 || hp > 31004 {
				t.Fatalf("port %d given twice or outside the offer", hp)
			}
			seen[hp] = true
		}
	}
	if len(res.Placements) != 2 {
		t.Fatalf("5 ports fit two pods of two ports, placed %d", len(res.Placements))
	}
}

func BenchmarkPlace1000Pods1000Agents(b *testing.B) {
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var agents []*Agent
		for j := 0; j < 1000; j++ {
			agents = append(agents, agent(fmt.Sprint(j), 8, 32768))
		}
		var pods []*Pod
		for j := 0; j < 1000; j++ {
			pods = append(pods, pod(fmt.Sprint(j), 0.1, 128))
		}
		b.StartTimer()
		Place(pods, agents, Config{})
	}
}
