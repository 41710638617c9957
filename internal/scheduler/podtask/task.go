package podtask

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
)

// ExecutorConfig is what the scheduler launches on each agent to run pods:
// `km executor`. Its hash is part of the executor ID, so that agents run
// one executor per configuration and a changed configuration starts new
// executors for new pods instead of being refused (k8sm's "incompatible
// executor" dead end).
type ExecutorConfig struct {
	// Command runs the executor, e.g. "./km" (fetched into the sandbox) or
	// the path of km installed on the agents.
	Command string
	Args    []string
	URIs    []*mesospb.CommandInfo_URI
	Env     map[string]string
	CPUs    float64
	MemMB   float64
	// ShutdownGracePeriod is how long the agent waits after SHUTDOWN before
	// killing the executor's processes; pods need their own grace periods
	// within it.
	ShutdownGracePeriod time.Duration
}

// Info builds the ExecutorInfo for a framework; its ID is
// "km-executor-<hash of the configuration>".
func (c ExecutorConfig) Info(frameworkID, role string) *mesospb.ExecutorInfo {
	cmd := &mesospb.CommandInfo{
		Value:     proto.String(c.Command),
		Arguments: append([]string{c.Command}, c.Args...),
		Shell:     proto.Bool(false),
		Uris:      c.URIs,
	}
	if len(c.Env) > 0 {
		cmd.Environment = &mesospb.Environment{}
		keys := make([]string, 0, len(c.Env))
		for k := range c.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			cmd.Environment.Variables = append(cmd.Environment.Variables, &mesospb.Environment_Variable{
				Name: proto.String(k), Value: proto.String(c.Env[k]),
			})
		}
	}
	info := &mesospb.ExecutorInfo{
		Type:      mesospb.ExecutorInfo_CUSTOM.Enum(),
		Name:      proto.String("km executor"),
		Command:   cmd,
		Resources: []*mesospb.Resource{scalarRes("cpus", c.CPUs, role), scalarRes("mem", c.MemMB, role)},
	}
	if c.ShutdownGracePeriod > 0 {
		info.ShutdownGracePeriod = &mesospb.DurationInfo{Nanoseconds: proto.Int64(int64(c.ShutdownGracePeriod))}
	}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(info)
	sum := sha256.Sum256(b)
	info.ExecutorId = &mesospb.ExecutorID{Value: proto.String("km-executor-" + hex.EncodeToString(sum[:])[:12])}
	info.FrameworkId = &mesospb.FrameworkID{Value: proto.String(frameworkID)}
	return info
}

func scalarRes(name string, v float64, role string) *mesospb.Resource {
	r := &mesospb.Resource{
		Name:   proto.String(name),
		Type:   mesospb.Value_SCALAR.Enum(),
		Scalar: &mesospb.Value_Scalar{Value: proto.Float64(round3(v))},
		Role:   proto.String("*"),
	}
	if role != "" {
		r.AllocationInfo = &mesospb.Resource_AllocationInfo{Role: proto.String(role)}
		if role != "*" {
			// Resources reserved for the role (static reservations).
			r.Role = proto.String(role)
		}
	}
	return r
}

// Assignment is where a pod goes: the agent, its offers, the role the
// resources come from, and the host port of each of the demand's ports.
type Assignment struct {
	AgentID  string
	Hostname string
	OfferIDs []string
	// Role is the offer's allocation role; ResourceRole the role the
	// resources are reserved for ("*" when unreserved).
	Role         string
	ResourceRole string
	HostPorts    []int32
}

// Build makes the Mesos task of a pod and the pod as the task carries it
// (TaskInfo.data: the v1 JSON of the pod with km's annotations, and in
// wildcard mode the host ports written into the containers). It also
// returns the annotations to put on the pod object when binding it.
func Build(pod *corev1.Pod, taskID string, d Demand, a Assignment, exec *mesospb.ExecutorInfo) (*mesospb.TaskInfo, map[string]string, error) {
	if len(a.HostPorts) != len(d.Ports) {
		return nil, nil, fmt.Errorf("internal error: %d host ports for %d port requests", len(a.HostPorts), len(d.Ports))
	}
	ann := map[string]string{
		AnnotationTaskID:      taskID,
		AnnotationAgentID:     a.AgentID,
		AnnotationExecutorID:  exec.GetExecutorId().GetValue(),
		AnnotationBindingHost: a.Hostname,
	}
	if len(a.OfferIDs) > 0 {
		ann[AnnotationOfferID] = a.OfferIDs[0]
	}
	for i, p := range d.Ports {
		hp := strconv.Itoa(int(a.HostPorts[i]))
		ann[PortAnnotation(p.Protocol, p.ContainerPort)] = hp
		if p.Name != "" {
			ann[PortNameAnnotation(p.Protocol, p.Name)] = hp
		}
	}

	carried := pod.DeepCopy()
	carried.APIVersion, carried.Kind = "v1", "Pod"
	if carried.Annotations == nil {
		carried.Annotations = map[string]string{}
	}
	for k, v := range ann {
		carried.Annotations[k] = v
	}
	carried.Spec.NodeName = a.Hostname
	for i, p := range d.Ports {
		for ci := range carried.Spec.Containers {
			c := &carried.Spec.Containers[ci]
			if c.Name != p.Container {
				continue
			}
			for pi := range c.Ports {
				if c.Ports[pi].ContainerPort == p.ContainerPort && protoName(c.Ports[pi].Protocol) == protoName(p.Protocol) {
					c.Ports[pi].HostPort = a.HostPorts[i]
				}
			}
		}
	}
	data, err := json.Marshal(carried)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}

	resRole := a.ResourceRole
	if resRole == "" {
		resRole = "*"
	}
	res := []*mesospb.Resource{scalarRes("cpus", d.CPUs, a.Role), scalarRes("mem", d.MemMB, a.Role)}
	for _, r := range res {
		r.Role = proto.String(resRole)
	}
	if len(a.HostPorts) > 0 {
		ports := append([]int32(nil), a.HostPorts...)
		sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
		rr := &mesospb.Value_Ranges{}
		for _, p := range ports {
			rr.Range = append(rr.Range, &mesospb.Value_Range{Begin: proto.Uint64(uint64(p)), End: proto.Uint64(uint64(p))})
		}
		pr := &mesospb.Resource{Name: proto.String("ports"), Type: mesospb.Value_RANGES.Enum(), Ranges: rr, Role: proto.String(resRole)}
		if a.Role != "" {
			pr.AllocationInfo = &mesospb.Resource_AllocationInfo{Role: proto.String(a.Role)}
		}
		res = append(res, pr)
	}
	task := &mesospb.TaskInfo{
		Name:      proto.String(pod.Name + "." + pod.Namespace + ".pod"),
		TaskId:    &mesospb.TaskID{Value: proto.String(taskID)},
		AgentId:   &mesospb.AgentID{Value: proto.String(a.AgentID)},
		Resources: res,
		Executor:  exec,
		Data:      data,
		Labels: &mesospb.Labels{Labels: []*mesospb.Label{
			{Key: proto.String("k8s.io/namespace"), Value: proto.String(pod.Namespace)},
			{Key: proto.String("k8s.io/name"), Value: proto.String(pod.Name)},
			{Key: proto.String("k8s.io/uid"), Value: proto.String(string(pod.UID))},
		}},
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		task.KillPolicy = &mesospb.KillPolicy{GracePeriod: &mesospb.DurationInfo{Nanoseconds: proto.Int64(*g * int64(time.Second))}}
	}
	return task, ann, nil
}

// PodFromTask decodes the pod a task carries.
func PodFromTask(data []byte) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := json.Unmarshal(data, pod); err != nil {
		return nil, fmt.Errorf("task data is not a v1 Pod in JSON: %w", err)
	}
	if pod.Name == "" {
		return nil, fmt.Errorf("task data holds a pod without a name")
	}
	return pod, nil
}

// KamikazeMessage is the framework message (Mesos MESSAGE) that tells an
// executor to exit if it runs no pod: k8sm's /debug/actions/kamikaze.
const KamikazeMessage = "kamikaze"
