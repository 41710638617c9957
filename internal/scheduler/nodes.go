package scheduler

import (
	"context"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/scheduler/podtask"
	"github.com/k8sm/k8sm/internal/version"
)

// attributeLabels are the node labels of an agent: its hostname and its
// text and scalar attributes as k8s.mesosphere.io/attribute-<name> (values
// Kubernetes refuses as labels are left out, as in k8sm).
func attributeLabels(hostname string, attrs []*mesospb.Attribute) map[string]string {
	out := map[string]string{
		"kubernetes.io/hostname": hostname,
		"kubernetes.io/os":       "linux",
		"kubernetes.io/arch":     runtime.GOARCH,
	}
	for _, a := range attrs {
		var v string
		switch a.GetType() {
		case mesospb.Value_TEXT:
			v = a.GetText().GetValue()
		case mesospb.Value_SCALAR:
			v = strconv.FormatFloat(a.GetScalar().GetValue(), 'G', -1, 64)
		default:
			continue
		}
		k := podtask.LabelAttributePrefix + a.GetName()
		if len(validation.IsQualifiedName(k)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
			continue
		}
		out[k] = v
	}
	return out
}

// nodeKeeper keeps one Node per agent: created when the agent is first
// seen, labelled with its attributes, with capacity from its resources, its
// Lease renewed while Mesos reports the agent, and NotReady when Mesos
// removes it, so that the stock node lifecycle controller behaves as in
// Kubernetes.
type nodeKeeper struct {
	s *Scheduler

	mu    sync.Mutex
	nodes map[string]*agentNode // by hostname
	kick  chan struct{}
}

type agentNode struct {
	agentID  string
	hostname string
	ip       string
	labels   map[string]string
	total    resources.Resources
	alive    bool
	synced   bool // the Node matches
	lostSent bool
}

func newNodeKeeper(s *Scheduler) *nodeKeeper {
	return &nodeKeeper{s: s, nodes: map[string]*agentNode{}, kick: make(chan struct{}, 1)}
}

func (k *nodeKeeper) poke() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// seen records an agent that Mesos offers.
func (k *nodeKeeper) seen(agentID, hostname, ip string, attrs []*mesospb.Attribute, total resources.Resources) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := k.nodes[hostname]
	labels := attributeLabels(hostname, attrs)
	if n == nil {
		n = &agentNode{hostname: hostname}
		k.nodes[hostname] = n
	}
	if !n.alive || n.agentID != agentID || n.ip != ip || !equalMaps(n.labels, labels) || resources.Scalar(total, "cpus") != resources.Scalar(n.total, "cpus") {
		n.synced = false
		k.poke()
	}
	n.agentID, n.ip, n.labels, n.total, n.alive, n.lostSent = agentID, ip, labels, total, true, false
}

// lost records an agent that Mesos removed.
func (k *nodeKeeper) lost(agentID, hostname string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := k.nodes[hostname]
	if n == nil {
		n = &agentNode{agentID: agentID, hostname: hostname}
		k.nodes[hostname] = n
	}
	if n.agentID == agentID {
		n.alive = false
		k.poke()
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func (k *nodeKeeper) run(ctx context.Context) {
	t := time.NewTicker(k.s.cfg.NodeRenewInterval)
	defer t.Stop()
	for {
		renew := false
		select {
		case <-ctx.Done():
			return
		case <-k.kick:
		case <-t.C:
			renew = true
		}
		k.mu.Lock()
		var work []agentNode
		for _, n := range k.nodes {
			if renew || !n.synced || (!n.alive && !n.lostSent) {
				work = append(work, *n)
			}
		}
		k.mu.Unlock()
		for _, n := range work {
			var err error
			if n.alive {
				err = k.ensure(ctx, n, renew)
			} else {
				err = k.markLost(ctx, n)
			}
			if err != nil {
				k.s.log.Printf("node %s: %v", n.hostname, err)
				continue
			}
			k.mu.Lock()
			if cur := k.nodes[n.hostname]; cur != nil {
				if n.alive {
					cur.synced = true
				} else {
					cur.lostSent = true
				}
			}
			k.mu.Unlock()
		}
	}
}

func (k *nodeKeeper) nodeStatus(n agentNode, ready corev1.ConditionStatus, reason, msg string) corev1.NodeStatus {
	now := metav1.Now()
	cpu := resources.Scalar(n.total, "cpus")
	mem := resources.Scalar(n.total, "mem")
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewMilliQuantity(int64(cpu*1000), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(int64(mem)*(1<<20), resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
	}
	st := corev1.NodeStatus{
		Capacity: capacity, Allocatable: capacity,
		Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now}},
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: n.hostname}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
		NodeInfo: corev1.NodeSystemInfo{
			KubeletVersion: version.Kubernetes, OperatingSystem: "linux", Architecture: runtime.GOARCH,
			ContainerRuntimeVersion: "km-process://" + version.KM, OSImage: "Mesos agent " + n.agentID,
		},
	}
	if n.ip != "" {
		st.Addresses = append([]corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.ip}}, st.Addresses...)
	}
	return st
}

// ensure creates or updates the Node of a live agent and renews its lease.
func (k *nodeKeeper) ensure(ctx context.Context, n agentNode, renew bool) error {
	nodes := k.s.client.CoreV1().Nodes()
	cur, err := nodes.Get(ctx, n.hostname, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cur, err = nodes.Create(ctx, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.hostname, Labels: n.labels,
				Annotations: map[string]string{podtask.AnnotationAgentID: n.agentID}},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return err
	}
	changed := cur.Annotations[podtask.AnnotationAgentID] != n.agentID
	labels := map[string]string{}
	for key, v := range cur.Labels {
		if !strings.HasPrefix(key, podtask.LabelAttributePrefix) {
			labels[key] = v
		}
	}
	for key, v := range n.labels {
		labels[key] = v
	}
	if !equalMaps(labels, cur.Labels) || changed {
		cur = cur.DeepCopy()
		cur.Labels = labels
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		cur.Annotations[podtask.AnnotationAgentID] = n.agentID
		if cur, err = nodes.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	ready := false
	for _, c := range cur.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if !ready || renew || len(cur.Status.Capacity) == 0 {
		cur = cur.DeepCopy()
		cur.Status = k.nodeStatus(n, corev1.ConditionTrue, "MesosAgentReady", "Mesos reports the agent ready")
		if _, err := nodes.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	return k.renewLease(ctx, cur)
}

func (k *nodeKeeper) renewLease(ctx context.Context, node *corev1.Node) error {
	leases := k.s.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(k.s.cfg.NodeLeaseDuration.Seconds())
	holder := node.Name
	l, err := leases.Get(ctx, node.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: node.Name, Namespace: corev1.NamespaceNodeLease,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &secs, RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l = l.DeepCopy()
	l.Spec.RenewTime, l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds = &now, &holder, &secs
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// markLost sets the Node of a removed agent NotReady (Unknown) at once,
// rather than after the lifecycle controller's grace period.
func (k *nodeKeeper) markLost(ctx context.Context, n agentNode) error {
	nodes := k.s.client.CoreV1().Nodes()
	cur, err := nodes.Get(ctx, n.hostname, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	cur = cur.DeepCopy()
	st := k.nodeStatus(n, corev1.ConditionUnknown, "MesosAgentRemoved", "Mesos removed the agent (it stopped answering the master)")
	cur.Status.Conditions = st.Conditions
	_, err = nodes.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	return err
}
