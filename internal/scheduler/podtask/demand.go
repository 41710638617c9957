package podtask

import (
	"fmt"
	"math"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Defaults for containers that declare neither requests nor limits (k8sm's
// 0.25 cpu and 64 MB), and Mesos' minimums per task.
const (
	DefaultContainerCPUs  = 0.25
	DefaultContainerMemMB = 64.0
	minCPUs               = 0.01
	minMemMB              = 32.0
)

// Defaults configures what a container without requests or limits gets.
type Defaults struct {
	CPUs  float64
	MemMB float64
}

// Demand is what one pod needs from an agent.
type Demand struct {
	CPUs  float64
	MemMB float64
	// Ports are the container ports that need a host port, in pod order.
	Ports []PortRequest
}

// PortRequest is one container port that needs a host port: HostPort is
// the fixed port asked for, 0 for "any".
type PortRequest struct {
	Container     string
	Name          string
	Protocol      corev1.Protocol
	ContainerPort int32
	HostPort      int32
}

func (p PortRequest) String() string {
	if p.HostPort != 0 {
		return fmt.Sprintf("hostPort %d of container %q", p.HostPort, p.Container)
	}
	return fmt.Sprintf("port %d/%s of container %q", p.ContainerPort, protoName(p.Protocol), p.Container)
}

// DemandOf computes a pod's demand as Kubernetes schedules it: the larger
// of the sum of the containers' requests and the largest init container's
// request, plus the pod overhead. A container with no request takes its
// limit (the apiserver defaults requests to limits); one with neither takes
// the defaults. Ports follow the pod's port mapping.
func DemandOf(pod *corev1.Pod, def Defaults, mapping PortMapping) (Demand, error) {
	if def.CPUs <= 0 {
		def.CPUs = DefaultContainerCPUs
	}
	if def.MemMB <= 0 {
		def.MemMB = DefaultContainerMemMB
	}
	var d Demand
	for _, c := range pod.Spec.Containers {
		cpu, mem := containerDemand(c, def)
		d.CPUs += cpu
		d.MemMB += mem
	}
	for _, c := range pod.Spec.InitContainers {
		cpu, mem := containerDemand(c, def)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			// Sidecars run beside the containers.
			d.CPUs += cpu
			d.MemMB += mem
			continue
		}
		d.CPUs = math.Max(d.CPUs, cpu)
		d.MemMB = math.Max(d.MemMB, mem)
	}
	if q, ok := pod.Spec.Overhead[corev1.ResourceCPU]; ok {
		d.CPUs += float64(q.MilliValue()) / 1000
	}
	if q, ok := pod.Spec.Overhead[corev1.ResourceMemory]; ok {
		d.MemMB += megabytes(q)
	}
	d.CPUs = math.Max(round3(d.CPUs), minCPUs)
	d.MemMB = math.Max(round3(d.MemMB), minMemMB)

	seen := map[string]string{}
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.ContainerPort <= 0 || p.ContainerPort > 65535 {
				return d, fmt.Errorf("container %q declares port %d, which is not a TCP/UDP port (1-65535)", c.Name, p.ContainerPort)
			}
			if p.HostPort < 0 || p.HostPort > 65535 {
				return d, fmt.Errorf("container %q declares hostPort %d, which is not a port (1-65535)", c.Name, p.HostPort)
			}
			if p.HostPort == 0 && mapping == Fixed {
				continue
			}
			if p.HostPort != 0 {
				key := fmt.Sprintf("%s/%d", protoName(p.Protocol), p.HostPort)
				if other, dup := seen[key]; dup {
					return d, fmt.Errorf("hostPort %d/%s is declared twice (containers %q and %q); a host port can be used once per pod", p.HostPort, protoName(p.Protocol), other, c.Name)
				}
				seen[key] = c.Name
			}
			d.Ports = append(d.Ports, PortRequest{Container: c.Name, Name: p.Name, Protocol: p.Protocol, ContainerPort: p.ContainerPort, HostPort: p.HostPort})
		}
	}
	return d, nil
}

func containerDemand(c corev1.Container, def Defaults) (cpu, mem float64) {
	cpuQ, hasCPU := c.Resources.Requests[corev1.ResourceCPU]
	if !hasCPU {
		cpuQ, hasCPU = c.Resources.Limits[corev1.ResourceCPU]
	}
	memQ, hasMem := c.Resources.Requests[corev1.ResourceMemory]
	if !hasMem {
		memQ, hasMem = c.Resources.Limits[corev1.ResourceMemory]
	}
	if !hasCPU && !hasMem {
		return def.CPUs, def.MemMB
	}
	if hasCPU {
		cpu = float64(cpuQ.MilliValue()) / 1000
	}
	if hasMem {
		mem = megabytes(memQ)
	}
	return cpu, mem
}

// megabytes converts a quantity of bytes to Mesos' MB (MiB).
func megabytes(q resource.Quantity) float64 {
	return float64(q.Value()) / (1 << 20)
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// FixedHostPorts lists the fixed host ports a demand asks for, sorted.
func (d Demand) FixedHostPorts() []int32 {
	var out []int32
	for _, p := range d.Ports {
		if p.HostPort != 0 {
			out = append(out, p.HostPort)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
