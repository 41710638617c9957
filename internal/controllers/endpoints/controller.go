// Package endpoints is km's endpoints controller: it writes the Endpoints
// and EndpointSlices of services with selectors. In host-port mode (the
// default) a service's endpoints are HostIP:HostPort of its pods, with the
// host ports the scheduler assigned, because pods on Mesos agents share the
// agent's network; otherwise they are PodIP:ContainerPort, as in stock
// Kubernetes. Named, numbered and unnamed ports all work.
package endpoints

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

// ManagedBy marks the EndpointSlices this controller owns.
const ManagedBy = "endpointslice.km.k8sm.io"

// Controller keeps Endpoints and EndpointSlices in step with services and
// pods (kubernetes/sample-controller style: handlers enqueue service keys,
// workers sync one service at a time, errors requeue with rate limiting).
type Controller struct {
	client   kubernetes.Interface
	hostPort bool

	services corelisters.ServiceLister
	pods     corelisters.PodLister
	slices   discoverylisters.EndpointSliceLister
	synced   []cache.InformerSynced

	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
}

// New wires the controller to informers. hostPort selects HostIP:HostPort
// endpoints.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, hostPort bool) *Controller {
	svcInf := factory.Core().V1().Services()
	podInf := factory.Core().V1().Pods()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	c := &Controller{
		client:   client,
		hostPort: hostPort,
		services: svcInf.Lister(),
		pods:     podInf.Lister(),
		slices:   sliceInf.Lister(),
		synced:   []cache.InformerSynced{svcInf.Informer().HasSynced, podInf.Informer().HasSynced, sliceInf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "km-endpoints"}),
		recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "km-endpoints-controller"}),
	}
	svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueService,
		UpdateFunc: func(_, obj any) { c.enqueueService(obj) },
		DeleteFunc: c.enqueueService,
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueuePodServices,
		UpdateFunc: func(old, obj any) {
			c.enqueuePodServices(old)
			c.enqueuePodServices(obj)
		},
		DeleteFunc: c.enqueuePodServices,
	})
	sliceInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		// Someone changed or removed a slice of ours: put it right.
		UpdateFunc: func(_, obj any) { c.enqueueSliceService(obj) },
		DeleteFunc: c.enqueueSliceService,
	})
	return c
}

func (c *Controller) enqueueService(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) enqueueSliceService(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || s.Labels[discoveryv1.LabelManagedBy] != ManagedBy {
		return
	}
	if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
		c.queue.Add(s.Namespace + "/" + name)
	}
}

// enqueuePodServices enqueues the services whose selector matches a pod.
func (c *Controller) enqueuePodServices(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	svcs, err := c.services.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range svcs {
		if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(pod.Labels)) {
			c.queue.Add(s.Namespace + "/" + s.Name)
		}
	}
}

// Run syncs with workers until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	for i := 0; i < workers; i++ {
		go wait.UntilWithContext(ctx, c.worker, time.Second)
	}
	<-ctx.Done()
}

func (c *Controller) worker(ctx context.Context) {
	for c.processNext(ctx) {
	}
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.Sync(ctx, key); err != nil {
		utilruntime.HandleError(fmt.Errorf("syncing endpoints of %s: %w", key, err))
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// endpoint is one address with its ports, before grouping.
type endpoint struct {
	ip       string
	ready    bool
	pod      *corev1.Pod
	ports    []corev1.EndpointPort
	portsKey string
}

// Sync writes the Endpoints and EndpointSlices of one service.
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// Endpoints and slices go with the service (owner references and
		// the same name): delete what is left.
		c.client.CoreV1().Endpoints(ns).Delete(ctx, name, metav1.DeleteOptions{})
		return c.deleteSlices(ctx, ns, name, nil)
	}
	if err != nil {
		return err
	}
	if len(svc.Spec.Selector) == 0 {
		// Services without selectors have hand-made endpoints; the
		// endpointslice mirroring controller mirrors them.
		return nil
	}
	pods, err := c.pods.Pods(ns).List(labels.SelectorFromSet(svc.Spec.Selector))
	if err != nil {
		return err
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	var eps []endpoint
	var problems []string
	for _, pod := range pods {
		ep, problem, ok := c.endpointFor(svc, pod)
		if problem != "" {
			problems = append(problems, problem)
		}
		if ok {
			eps = append(eps, ep)
		}
	}
	if len(problems) > 0 {
		c.recorder.Event(svc, corev1.EventTypeWarning, "FailedToResolveEndpoints", strings.Join(problems, "; "))
	}
	if err := c.writeEndpoints(ctx, svc, eps); err != nil {
		return err
	}
	return c.writeSlices(ctx, svc, eps)
}

// endpointFor resolves a pod's address and the ports of every service
// port. problem explains a pod that cannot be an endpoint.
func (c *Controller) endpointFor(svc *corev1.Service, pod *corev1.Pod) (endpoint, string, bool) {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed || pod.DeletionTimestamp != nil && !svc.Spec.PublishNotReadyAddresses {
		return endpoint{}, "", false
	}
	ip := pod.Status.PodIP
	if c.hostPort {
		ip = pod.Status.HostIP
	}
	if ip == "" {
		return endpoint{}, "", false // not running yet
	}
	if parsed := net.ParseIP(ip); parsed == nil || parsed.IsLoopback() || parsed.IsUnspecified() || parsed.IsLinkLocalUnicast() {
		// The apiserver refuses such addresses in Endpoints and
		// EndpointSlices; one bad pod must not block the others.
		return endpoint{}, fmt.Sprintf("pod %s has address %q (on agent %s), which Kubernetes does not accept in endpoints (loopback, link-local and unspecified addresses are refused); give the agent a routable address (km mesos agent --advertise_ip)", pod.Name, ip, pod.Spec.NodeName), false
	}
	ep := endpoint{ip: ip, pod: pod, ready: podReady(pod) || svc.Spec.PublishNotReadyAddresses}
	var keys []string
	for _, sp := range svc.Spec.Ports {
		port, ok := c.resolvePort(pod, sp)
		if !ok {
			return endpoint{}, fmt.Sprintf("pod %s does not declare target port %s of service port %s; declare it in the pod's container ports", pod.Name, sp.TargetPort.String(), portLabel(sp)), false
		}
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		ep.ports = append(ep.ports, corev1.EndpointPort{Name: sp.Name, Port: port, Protocol: proto, AppProtocol: sp.AppProtocol})
		keys = append(keys, sp.Name+"/"+string(proto)+"/"+strconv.Itoa(int(port)))
	}
	ep.portsKey = strings.Join(keys, ",")
	return ep, "", true
}

func portLabel(sp corev1.ServicePort) string {
	if sp.Name != "" {
		return fmt.Sprintf("%q (%d)", sp.Name, sp.Port)
	}
	return strconv.Itoa(int(sp.Port))
}

// resolvePort finds the endpoint port of a service port on a pod: the
// container port the targetPort names or numbers, then, in host-port mode,
// the host port assigned to it.
func (c *Controller) resolvePort(pod *corev1.Pod, sp corev1.ServicePort) (int32, bool) {
	tp := sp.TargetPort
	if (tp.Type == intstr.Int && tp.IntVal == 0) || (tp.Type == intstr.String && tp.StrVal == "") {
		tp = intstr.FromInt32(sp.Port) // an unset targetPort means the port
	}
	proto := sp.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	var found *corev1.ContainerPort
	for ci := range pod.Spec.Containers {
		for pi := range pod.Spec.Containers[ci].Ports {
			cp := &pod.Spec.Containers[ci].Ports[pi]
			cpProto := cp.Protocol
			if cpProto == "" {
				cpProto = corev1.ProtocolTCP
			}
			if cpProto != proto {
				continue
			}
			if (tp.Type == intstr.String && cp.Name == tp.StrVal) || (tp.Type == intstr.Int && cp.ContainerPort == tp.IntVal) {
				found = cp
			}
		}
	}
	if !c.hostPort {
		if found != nil {
			return found.ContainerPort, true
		}
		// Stock behaviour: a number needs no declaration, a name does.
		return tp.IntVal, tp.Type == intstr.Int
	}
	if found == nil {
		return 0, false
	}
	return podtask.HostPortOf(pod, *found)
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func nodeNameOf(pod *corev1.Pod) *string {
	if pod.Spec.NodeName == "" {
		return nil
	}
	n := pod.Spec.NodeName
	return &n
}

func ownerRef(svc *corev1.Service) []metav1.OwnerReference {
	t := true
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: &t, BlockOwnerDeletion: &t}}
}

// writeEndpoints writes the Endpoints object: one subset per distinct set
// of ports (in host-port mode pods may have different host ports), ready
// and not-ready addresses apart.
func (c *Controller) writeEndpoints(ctx context.Context, svc *corev1.Service, eps []endpoint) error {
	groups := map[string]*corev1.EndpointSubset{}
	var order []string
	for _, ep := range eps {
		g := groups[ep.portsKey]
		if g == nil {
			g = &corev1.EndpointSubset{Ports: ep.ports}
			groups[ep.portsKey] = g
			order = append(order, ep.portsKey)
		}
		addr := corev1.EndpointAddress{IP: ep.ip, NodeName: nodeNameOf(ep.pod),
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ep.pod.Namespace, Name: ep.pod.Name, UID: ep.pod.UID}}
		if ep.ready {
			g.Addresses = append(g.Addresses, addr)
		} else {
			g.NotReadyAddresses = append(g.NotReadyAddresses, addr)
		}
	}
	sort.Strings(order)
	var subsets []corev1.EndpointSubset
	for _, k := range order {
		subsets = append(subsets, *groups[k])
	}
	want := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace, Labels: svc.Labels},
		Subsets:    subsets,
	}
	cur, err := c.client.CoreV1().Endpoints(svc.Namespace).Get(ctx, svc.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = c.client.CoreV1().Endpoints(svc.Namespace).Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if reflect.DeepEqual(cur.Subsets, want.Subsets) && reflect.DeepEqual(cur.Labels, want.Labels) {
		return nil
	}
	cur = cur.DeepCopy()
	cur.Subsets, cur.Labels = want.Subsets, want.Labels
	_, err = c.client.CoreV1().Endpoints(svc.Namespace).Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

// writeSlices writes one EndpointSlice per distinct set of ports, named
// after the service and a hash of the ports, and deletes the others.
func (c *Controller) writeSlices(ctx context.Context, svc *corev1.Service, eps []endpoint) error {
	bySet := map[string][]endpoint{}
	for _, ep := range eps {
		bySet[ep.portsKey] = append(bySet[ep.portsKey], ep)
	}
	if len(bySet) == 0 {
		// An empty slice still says "this service has no endpoints".
		bySet[""] = nil
	}
	keep := map[string]bool{}
	for key, group := range bySet {
		sum := sha256.Sum256([]byte(key))
		name := svc.Name + "-km-" + hex.EncodeToString(sum[:])[:8]
		keep[name] = true
		want := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: svc.Namespace, OwnerReferences: ownerRef(svc),
				Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: ManagedBy},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
		}
		if len(group) > 0 {
			for _, p := range group[0].ports {
				p := p
				want.Ports = append(want.Ports, discoveryv1.EndpointPort{Name: &p.Name, Port: &p.Port, Protocol: &p.Protocol, AppProtocol: p.AppProtocol})
			}
		}
		for _, ep := range group {
			ready := ep.ready
			serving := ep.ready
			terminating := ep.pod.DeletionTimestamp != nil
			want.Endpoints = append(want.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{ep.ip},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
				NodeName:   nodeNameOf(ep.pod),
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ep.pod.Namespace, Name: ep.pod.Name, UID: ep.pod.UID},
			})
		}
		cur, err := c.client.DiscoveryV1().EndpointSlices(svc.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			if _, err := c.client.DiscoveryV1().EndpointSlices(svc.Namespace).Create(ctx, want, metav1.CreateOptions{}); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if reflect.DeepEqual(cur.Endpoints, want.Endpoints) && reflect.DeepEqual(cur.Ports, want.Ports) && reflect.DeepEqual(cur.Labels, want.Labels) {
			continue
		}
		cur = cur.DeepCopy()
		cur.Endpoints, cur.Ports, cur.Labels, cur.OwnerReferences = want.Endpoints, want.Ports, want.Labels, want.OwnerReferences
		if _, err := c.client.DiscoveryV1().EndpointSlices(svc.Namespace).Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	return c.deleteSlices(ctx, svc.Namespace, svc.Name, keep)
}

// deleteSlices deletes this controller's slices of a service not in keep.
func (c *Controller) deleteSlices(ctx context.Context, ns, svc string, keep map[string]bool) error {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc, discoveryv1.LabelManagedBy: ManagedBy})
	slices, err := c.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return err
	}
	for _, s := range slices.Items {
		if !keep[s.Name] {
			if err := c.client.DiscoveryV1().EndpointSlices(ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}
