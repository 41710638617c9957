// Package podtask turns a Kubernetes pod into a Mesos task: what the pod
// demands (cpus, mem, host ports), which host ports it gets from an offer,
// and the TaskInfo whose data is the pod with km's annotations. It keeps
// k8sm's annotation names, so pods and tools written for k8sm read the same.
package podtask

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Annotations and labels km writes on pods (docs/k8sm-original.md §2.6).
const (
	Prefix = "k8s.mesosphere.io/"

	AnnotationTaskID      = Prefix + "taskId"
	AnnotationAgentID     = Prefix + "slaveId"
	AnnotationOfferID     = Prefix + "offerId"
	AnnotationExecutorID  = Prefix + "executorId"
	AnnotationBindingHost = Prefix + "bindingHost"
	// AnnotationRoles lists the Mesos roles a pod may take resources from,
	// in order of preference ("role1,role2"; "*" is unreserved).
	AnnotationRoles = Prefix + "roles"
	// LabelPortMapping (a label, as in k8sm; the annotation of the same
	// name is honoured too) selects "wildcard" or "fixed" host ports.
	LabelPortMapping = Prefix + "portMapping"
	// LabelAttributePrefix prefixes node labels made from agent
	// attributes.
	LabelAttributePrefix = Prefix + "attribute-"
)

// PortAnnotation names the annotation holding the host port of a container
// port: k8s.mesosphere.io/port_TCP_8080.
func PortAnnotation(protocol corev1.Protocol, containerPort int32) string {
	return fmt.Sprintf("%sport_%s_%d", Prefix, protoName(protocol), containerPort)
}

// PortNameAnnotation names the annotation holding the host port of a named
// container port: k8s.mesosphere.io/portName_TCP_http.
func PortNameAnnotation(protocol corev1.Protocol, name string) string {
	return fmt.Sprintf("%sportName_%s_%s", Prefix, protoName(protocol), name)
}

func protoName(p corev1.Protocol) string {
	if p == "" {
		return string(corev1.ProtocolTCP)
	}
	return string(p)
}

// HostPortOf finds the host port km assigned to a container port of a
// scheduled pod: the container's hostPort, else the port_ or portName_
// annotation. ok is false when the pod has none.
func HostPortOf(pod *corev1.Pod, cp corev1.ContainerPort) (int32, bool) {
	if cp.HostPort != 0 {
		return cp.HostPort, true
	}
	for _, key := range []string{PortAnnotation(cp.Protocol, cp.ContainerPort), PortNameAnnotation(cp.Protocol, cp.Name)} {
		if v, ok := pod.Annotations[key]; ok {
			if p, err := strconv.Atoi(v); err == nil && p > 0 && p < 65536 {
				return int32(p), true
			}
		}
	}
	return 0, false
}

// PortMapping is how container ports get host ports.
type PortMapping string

const (
	// Wildcard (the default) gives every container port a host port:
	// hostPort 0 takes any free port of the offer.
	Wildcard PortMapping = "wildcard"
	// Fixed is vanilla Kubernetes: only ports with a hostPort get one.
	Fixed PortMapping = "fixed"
)

// MappingOf reads a pod's port mapping (label, then annotation), falling
// back to def. An unknown value is an error that names it.
func MappingOf(pod *corev1.Pod, def PortMapping) (PortMapping, error) {
	v, ok := pod.Labels[LabelPortMapping]
	if !ok {
		v, ok = pod.Annotations[LabelPortMapping]
	}
	if !ok || v == "" {
		return def, nil
	}
	switch PortMapping(strings.ToLower(v)) {
	case Wildcard:
		return Wildcard, nil
	case Fixed:
		return Fixed, nil
	}
	return "", fmt.Errorf("%s=%q is not a port mapping: use %q or %q", LabelPortMapping, v, Wildcard, Fixed)
}

// RolesOf reads the Mesos roles a pod accepts, or def.
func RolesOf(pod *corev1.Pod, def []string) []string {
	v := strings.TrimSpace(pod.Annotations[AnnotationRoles])
	if v == "" {
		return def
	}
	var out []string
	for _, r := range strings.Split(v, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return def
	}
	return out
}
