package pods

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

// Lookup reads the ConfigMaps and Secrets env vars refer to.
type Lookup interface {
	ConfigMap(namespace, name string) (*corev1.ConfigMap, error)
	Secret(namespace, name string) (*corev1.Secret, error)
}

// ConfigError is an environment that cannot be built (a missing
// ConfigMap key...): the kubelet's CreateContainerConfigError.
type ConfigError struct{ Msg string }

func (e *ConfigError) Error() string { return e.Msg }

// expand replaces $(VAR) with vars[VAR] as Kubernetes does: undefined
// references stay verbatim, $$ is a literal $, an unterminated $( stays.
func expand(s string, vars func(string) (string, bool)) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// HostPortEnv are the variables that give a container its host ports:
// KM_HOST_PORT_<PROTO>_<containerPort> and, for named ports,
// KM_HOST_PORT_<NAME> (upper case, '-' as '_'); PORT is the first one.
func HostPortEnv(pod *corev1.Pod, c *corev1.Container) map[string]string {
	out := map[string]string{}
	first := ""
	for _, p := range c.Ports {
		hp, ok := podtask.HostPortOf(pod, p)
		if !ok {
			continue
		}
		v := strconv.Itoa(int(hp))
		proto := string(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		out[fmt.Sprintf("KM_HOST_PORT_%s_%d", proto, p.ContainerPort)] = v
		if p.Name != "" {
			out["KM_HOST_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))] = v
		}
		if first == "" {
			first = v
		}
	}
	if first != "" {
		out["PORT"] = first
	}
	return out
}

// Environment builds a container's environment as the kubelet does:
// base (km's and the agent's markers), envFrom, then env in order with
// $(VAR) expansion and valueFrom, and the host port variables.
func Environment(pod *corev1.Pod, c *corev1.Container, hostIP string, base map[string]string, lk Lookup) ([]string, map[string]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	keys := make([]string, 0, len(base))
	for k := range base {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set(k, base[k])
	}
	for k, v := range HostPortEnv(pod, c) {
		set(k, v)
	}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm, err := lk.ConfigMap(pod.Namespace, ef.ConfigMapRef.Name)
			if err != nil {
				if ef.ConfigMapRef.Optional != nil && *ef.ConfigMapRef.Optional {
					continue
				}
				return nil, nil, &ConfigError{fmt.Sprintf("configmap %q not found", ef.ConfigMapRef.Name)}
			}
			for k, v := range cm.Data {
				set(ef.Prefix+k, v)
			}
		case ef.SecretRef != nil:
			s, err := lk.Secret(pod.Namespace, ef.SecretRef.Name)
			if err != nil {
				if ef.SecretRef.Optional != nil && *ef.SecretRef.Optional {
					continue
				}
				return nil, nil, &ConfigError{fmt.Sprintf("secret %q not found", ef.SecretRef.Name)}
			}
			for k, v := range s.Data {
				set(ef.Prefix+k, string(v))
			}
		}
	}
	lookup := func(name string) (string, bool) { v, ok := vars[name]; return v, ok }
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expand(e.Value, lookup))
			continue
		}
		v, err := valueFrom(pod, c, hostIP, e, lk)
		if err != nil {
			return nil, nil, err
		}
		if v != nil {
			set(e.Name, *v)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vars[k])
	}
	return out, vars, nil
}

func valueFrom(pod *corev1.Pod, c *corev1.Container, hostIP string, e corev1.EnvVar, lk Lookup) (*string, error) {
	src := e.ValueFrom
	str := func(s string) (*string, error) { return &s, nil }
	switch {
	case src.FieldRef != nil:
		path := src.FieldRef.FieldPath
		switch {
		case path == "metadata.name":
			return str(pod.Name)
		case path == "metadata.namespace":
			return str(pod.Namespace)
		case path == "metadata.uid":
			return str(string(pod.UID))
		case path == "spec.nodeName":
			return str(pod.Spec.NodeName)
		case path == "spec.serviceAccountName":
			return str(pod.Spec.ServiceAccountName)
		case path == "status.hostIP", path == "status.podIP", path == "status.hostIPs", path == "status.podIPs":
			// The pod shares the agent's network in the process runtime.
			return str(hostIP)
		case strings.HasPrefix(path, "metadata.labels['") && strings.HasSuffix(path, "']"):
			return str(pod.Labels[path[len("metadata.labels['"):len(path)-2]])
		case strings.HasPrefix(path, "metadata.annotations['") && strings.HasSuffix(path, "']"):
			return str(pod.Annotations[path[len("metadata.annotations['"):len(path)-2]])
		}
		return nil, &ConfigError{fmt.Sprintf("env %s: fieldRef %q is not supported", e.Name, path)}
	case src.ResourceFieldRef != nil:
		ref := src.ResourceFieldRef
		target := c
		if ref.ContainerName != "" {
			for i := range pod.Spec.Containers {
				if pod.Spec.Containers[i].Name == ref.ContainerName {
					target = &pod.Spec.Containers[i]
				}
			}
		}
		var q resource.Quantity
		var ok bool
		switch ref.Resource {
		case "limits.cpu":
			q, ok = target.Resources.Limits[corev1.ResourceCPU]
		case "limits.memory":
			q, ok = target.Resources.Limits[corev1.ResourceMemory]
		case "requests.cpu":
			q, ok = target.Resources.Requests[corev1.ResourceCPU]
		case "requests.memory":
			q, ok = target.Resources.Requests[corev1.ResourceMemory]
		default:
			return nil, &ConfigError{fmt.Sprintf("env %s: resourceFieldRef %q is not supported", e.Name, ref.Resource)}
		}
		if !ok {
			return str("0")
		}
		div := ref.Divisor
		if div.IsZero() {
			div = resource.MustParse("1")
		}
		// Round up, as the kubelet does.
		v := (q.MilliValue() + div.MilliValue() - 1) / div.MilliValue()
		return str(strconv.FormatInt(v, 10))
	case src.ConfigMapKeyRef != nil:
		ref := src.ConfigMapKeyRef
		optional := ref.Optional != nil && *ref.Optional
		cm, err := lk.ConfigMap(pod.Namespace, ref.Name)
		if err != nil {
			if optional {
				return nil, nil
			}
			return nil, &ConfigError{fmt.Sprintf("env %s: configmap %q not found", e.Name, ref.Name)}
		}
		v, ok := cm.Data[ref.Key]
		if !ok {
			if optional {
				return nil, nil
			}
			return nil, &ConfigError{fmt.Sprintf("env %s: key %q not found in configmap %q", e.Name, ref.Key, ref.Name)}
		}
		return str(v)
	case src.SecretKeyRef != nil:
		ref := src.SecretKeyRef
		optional := ref.Optional != nil && *ref.Optional
		s, err := lk.Secret(pod.Namespace, ref.Name)
		if err != nil {
			if optional {
				return nil, nil
			}
			return nil, &ConfigError{fmt.Sprintf("env %s: secret %q not found", e.Name, ref.Name)}
		}
		v, ok := s.Data[ref.Key]
		if !ok {
			if optional {
				return nil, nil
			}
			return nil, &ConfigError{fmt.Sprintf("env %s: key %q not found in secret %q", e.Name, ref.Key, ref.Name)}
		}
		return str(string(v))
	}
	return nil, nil
}

// Command is the container's argv: command and args with $(VAR) expanded.
func Command(c *corev1.Container, vars map[string]string) []string {
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	var out []string
	for _, s := range c.Command {
		out = append(out, expand(s, lookup))
	}
	for _, s := range c.Args {
		out = append(out, expand(s, lookup))
	}
	return out
}
