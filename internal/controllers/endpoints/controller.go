// Package endpoints is km's endpoints controller. It writes the Endpoints
// and EndpointSlices of services with selectors, in place of the stock
// endpoints and endpointslice controllers.
//
// In host-port mode (km's default) a service's endpoints are
// HostIP:HostPort of its pods: pods on Mesos agents share the agent's
// network, and km's scheduler gives each container port a host port from
// the agent's offered ports (the hostPort, or k8sm's annotations
// k8s.mesosphere.io/port_<PROTO>_<containerPort> and
// portName_<PROTO>_<name>). Otherwise they are PodIP:ContainerPort, as in
// stock Kubernetes. Named, numbered and unnamed ports all work; a port that
// cannot be resolved on a pod is reported as an event on the service.
//
// The controller is in the kubernetes/sample-controller style: informer
// handlers only enqueue service keys, workers sync one service at a time
// from the listers, and errors requeue with rate limiting.
package endpoints

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	"k8s.io/klog/v2"
)

// Options of the controller.
type Options struct {
	// HostPort selects HostIP:HostPort endpoints; false gives the stock
	// PodIP:ContainerPort. (km controller-manager runs the stock
	// controllers themselves when --host-port-endpoints=false; this mode
	// is for embedding the controller elsewhere.)
	HostPort bool
	// MaxEndpointsPerSlice caps one EndpointSlice (default 100, the
	// stock controller's).
	MaxEndpointsPerSlice int
	// Recorder receives the events on services; nil records them through
	// the apiserver.
	Recorder record.EventRecorder
}

// Controller keeps Endpoints and EndpointSlices in step with services and
// pods.
type Controller struct {
	client kubernetes.Interface
	opts   Options

	services  corelisters.ServiceLister
	pods      corelisters.PodLister
	endpoints corelisters.EndpointsLister
	slices    discoverylisters.EndpointSliceLister
	synced    []cache.InformerSynced

	queue       workqueue.TypedRateLimitingInterface[string]
	recorder    record.EventRecorder
	broadcaster record.EventBroadcaster

	// reported holds the problems last reported per service, so that a
	// service's events say what changed instead of repeating on every
	// pod update.
	mu       sync.Mutex
	reported map[string]string
}

// New wires the controller to the informers of factory (start the factory
// after New, then Run).
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, opts Options) *Controller {
	svcInf := factory.Core().V1().Services()
	podInf := factory.Core().V1().Pods()
	epInf := factory.Core().V1().Endpoints()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	c := &Controller{
		client:    client,
		opts:      opts,
		services:  svcInf.Lister(),
		pods:      podInf.Lister(),
		endpoints: epInf.Lister(),
		slices:    sliceInf.Lister(),
		synced: []cache.InformerSynced{svcInf.Informer().HasSynced, podInf.Informer().HasSynced,
			epInf.Informer().HasSynced, sliceInf.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "km-endpoints"}),
		recorder: opts.Recorder,
		reported: map[string]string{},
	}
	if c.recorder == nil {
		c.broadcaster = record.NewBroadcaster()
		c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
		c.recorder = c.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "km-endpoints-controller"})
	}
	svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueService,
		UpdateFunc: func(_, obj any) { c.enqueueService(obj) },
		DeleteFunc: c.enqueueService,
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.enqueuePodServices(obj) },
		UpdateFunc: c.podUpdated,
		DeleteFunc: func(obj any) { c.enqueuePodServices(obj) },
	})
	epInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		// Ours, left behind by a service deleted while km was down, or
		// changed by someone else: sync (delete or put right).
		AddFunc:    c.enqueueOwnEndpoints,
		UpdateFunc: func(_, obj any) { c.enqueueOwnEndpoints(obj) },
		// A deleted Endpoints object of a live service is made again.
		DeleteFunc: c.enqueueService,
	})
	sliceInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		// Ours changed by someone else, or the stock controller's left
		// from before km took over: sync the service.
		AddFunc:    c.enqueueSliceService,
		UpdateFunc: func(_, obj any) { c.enqueueSliceService(obj) },
		DeleteFunc: c.enqueueSliceService,
	})
	return c
}

func (c *Controller) enqueueService(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

func unwrap(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func (c *Controller) enqueueOwnEndpoints(obj any) {
	if ep, ok := unwrap(obj).(*corev1.Endpoints); ok && ep.Labels[LabelEndpointsManagedBy] == EndpointsManagedBy {
		c.queue.Add(ep.Namespace + "/" + ep.Name)
	}
}

func (c *Controller) enqueueSliceService(obj any) {
	s, ok := unwrap(obj).(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	if m := s.Labels[discoveryv1.LabelManagedBy]; m != ManagedBy && m != StockManagedBy {
		return
	}
	if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
		c.queue.Add(s.Namespace + "/" + name)
	}
}

// podUpdated enqueues a pod's services when something endpoints are made
// of changed (the kubelet's status updates mostly change other things).
func (c *Controller) podUpdated(old, cur any) {
	o, ok1 := old.(*corev1.Pod)
	n, ok2 := cur.(*corev1.Pod)
	if !ok1 || !ok2 {
		c.enqueuePodServices(cur)
		return
	}
	if !labels.Equals(o.Labels, n.Labels) {
		c.enqueuePodServices(o)
		c.enqueuePodServices(n)
		return
	}
	if podProjection(o) != podProjection(n) {
		c.enqueuePodServices(n)
	}
}

// podProjection is what of a pod goes into endpoints.
func podProjection(p *corev1.Pod) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s|%v|%v|%v|%s|%s|%s|%v|%v|", p.Status.Phase, p.Status.HostIP, p.Status.PodIP,
		p.Status.HostIPs, p.Status.PodIPs, isPodReady(p), p.Spec.NodeName, p.Spec.Hostname, p.Spec.Subdomain,
		p.DeletionTimestamp != nil, p.Spec.HostNetwork)
	keys := make([]string, 0, len(p.Annotations))
	for k := range p.Annotations {
		if strings.HasPrefix(k, "k8s.mesosphere.io/port") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k + "=" + p.Annotations[k] + ",")
	}
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for _, ctr := range cs {
			fmt.Fprintf(&b, "%v", ctr.Ports)
		}
	}
	return b.String()
}

// enqueuePodServices enqueues the services whose selector matches a pod.
func (c *Controller) enqueuePodServices(obj any) {
	pod, ok := unwrap(obj).(*corev1.Pod)
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
	if c.broadcaster != nil {
		defer c.broadcaster.Shutdown()
	}
	klog.FromContext(ctx).Info("Starting km endpoints controller", "hostPortEndpoints", c.opts.HostPort)
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	if workers < 1 {
		workers = 1
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
	err := c.Sync(ctx, key)
	if err == nil {
		c.queue.Forget(key)
		return true
	}
	// A conflict or an "already exists" means the informers have not
	// seen our last write yet: try again shortly, quietly.
	if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
		utilruntime.HandleErrorWithContext(ctx, err, "Syncing the endpoints of a service", "service", key)
	}
	c.queue.AddRateLimited(key)
	return true
}

// Sync writes the Endpoints and EndpointSlices of one service (key is
// namespace/name).
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.forget(key)
		return c.deleteAll(ctx, ns, name)
	}
	if err != nil {
		return err
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName || len(svc.Spec.Selector) == 0 {
		// ExternalName services have no endpoints; services without a
		// selector have hand-made Endpoints, which the stock endpointslice
		// mirroring controller mirrors. Slices of ours go (the selector may
		// just have been removed); the Endpoints object is the user's now.
		c.forget(key)
		return c.deleteSlices(ctx, svc, nil)
	}
	pods, err := c.pods.Pods(ns).List(labels.SelectorFromSet(svc.Spec.Selector))
	if err != nil {
		return err
	}
	d := computeDesired(svc, pods, c.opts.HostPort)
	c.report(svc, d.problems)
	if err := c.writeEndpoints(ctx, svc, d); err != nil {
		return err
	}
	return c.writeSlices(ctx, svc, d)
}

// report records the problems of a service as a warning event when they
// change.
func (c *Controller) report(svc *corev1.Service, problems []string) {
	key := svc.Namespace + "/" + svc.Name
	msg := ""
	if len(problems) > 0 {
		shown := problems
		if len(shown) > 5 {
			shown = shown[:5]
		}
		msg = strings.Join(shown, "; ")
		if n := len(problems) - len(shown); n > 0 {
			msg += fmt.Sprintf("; and %d more", n)
		}
	}
	c.mu.Lock()
	last, seen := c.reported[key]
	c.reported[key] = msg
	c.mu.Unlock()
	if msg != "" && (!seen || last != msg) {
		c.recorder.Event(svc, corev1.EventTypeWarning, "FailedToResolveEndpoints", msg)
	}
}

func (c *Controller) forget(key string) {
	c.mu.Lock()
	delete(c.reported, key)
	c.mu.Unlock()
}

// deleteAll removes the endpoints of a deleted service: the Endpoints
// object if a controller made it (ours or the stock one's; hand-made ones
// are the user's), and our slices (their owner reference would take them
// too, with the garbage collector).
func (c *Controller) deleteAll(ctx context.Context, ns, name string) error {
	if ep, err := c.endpoints.Endpoints(ns).Get(name); err == nil {
		if m := ep.Labels[LabelEndpointsManagedBy]; m == EndpointsManagedBy || m == stockEndpointsManagedBy {
			err := c.client.CoreV1().Endpoints(ns).Delete(ctx, name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	return c.deleteSlices(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, nil)
}

func (c *Controller) writeEndpoints(ctx context.Context, svc *corev1.Service, d desired) error {
	want, truncated := buildEndpoints(svc, d)
	cur, err := c.endpoints.Endpoints(svc.Namespace).Get(svc.Name)
	if apierrors.IsNotFound(err) {
		if truncated {
			want.Annotations = map[string]string{corev1.EndpointsOverCapacity: "truncated"}
		}
		_, err = c.client.CoreV1().Endpoints(svc.Namespace).Create(ctx, want, metav1.CreateOptions{})
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil // the namespace goes, and its endpoints with it
		}
		return err
	}
	if err != nil {
		return err
	}
	overCap := cur.Annotations[corev1.EndpointsOverCapacity] == "truncated"
	if apiequality.Semantic.DeepEqual(cur.Subsets, want.Subsets) && apiequality.Semantic.DeepEqual(cur.Labels, want.Labels) && overCap == truncated {
		return nil
	}
	next := cur.DeepCopy()
	next.Subsets, next.Labels = want.Subsets, want.Labels
	if truncated {
		if next.Annotations == nil {
			next.Annotations = map[string]string{}
		}
		next.Annotations[corev1.EndpointsOverCapacity] = "truncated"
	} else {
		delete(next.Annotations, corev1.EndpointsOverCapacity)
	}
	// The stock controller's trigger-time annotation is not ours to keep.
	delete(next.Annotations, corev1.EndpointsLastChangeTriggerTime)
	_, err = c.client.CoreV1().Endpoints(svc.Namespace).Update(ctx, next, metav1.UpdateOptions{})
	return err
}

func (c *Controller) writeSlices(ctx context.Context, svc *corev1.Service, d desired) error {
	keep := map[string]bool{}
	for _, want := range buildSlices(svc, d, c.opts.MaxEndpointsPerSlice) {
		keep[want.Name] = true
		cur, err := c.slices.EndpointSlices(svc.Namespace).Get(want.Name)
		if apierrors.IsNotFound(err) {
			_, err = c.client.DiscoveryV1().EndpointSlices(svc.Namespace).Create(ctx, want, metav1.CreateOptions{})
			if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if cur.AddressType == want.AddressType &&
			apiequality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) &&
			apiequality.Semantic.DeepEqual(cur.Ports, want.Ports) &&
			apiequality.Semantic.DeepEqual(cur.Labels, want.Labels) &&
			apiequality.Semantic.DeepEqual(cur.OwnerReferences, want.OwnerReferences) {
			continue
		}
		if cur.AddressType != want.AddressType {
			// Immutable; names include the family, so only a slice made
			// by someone else can be here.
			if err := c.deleteSlice(ctx, cur); err != nil {
				return err
			}
			return fmt.Errorf("replaced endpoint slice %s/%s of another address type", cur.Namespace, cur.Name)
		}
		next := cur.DeepCopy()
		next.Endpoints, next.Ports, next.Labels, next.OwnerReferences = want.Endpoints, want.Ports, want.Labels, want.OwnerReferences
		if _, err := c.client.DiscoveryV1().EndpointSlices(svc.Namespace).Update(ctx, next, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	return c.deleteSlices(ctx, svc, keep)
}

// deleteSlices deletes the slices of a service that are not in keep and
// were made by this controller or by the stock endpointslice controller,
// which km's replaces (left from a run with --host-port-endpoints=false,
// they would send traffic to pod IPs).
func (c *Controller) deleteSlices(ctx context.Context, svc *corev1.Service, keep map[string]bool) error {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.Name})
	slices, err := c.slices.EndpointSlices(svc.Namespace).List(sel)
	if err != nil {
		return err
	}
	for _, s := range slices {
		m := s.Labels[discoveryv1.LabelManagedBy]
		if keep[s.Name] || (m != ManagedBy && m != StockManagedBy) || s.DeletionTimestamp != nil {
			continue
		}
		if err := c.deleteSlice(ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func (c *Controller) deleteSlice(ctx context.Context, s *discoveryv1.EndpointSlice) error {
	err := c.client.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// DeleteOwnSlices deletes every EndpointSlice this controller made, in all
// namespaces. km controller-manager calls it when it runs the stock
// controllers (--host-port-endpoints=false): they leave slices of another
// manager alone, and consumers would still send traffic to the host ports
// in them.
func DeleteOwnSlices(ctx context.Context, client kubernetes.Interface) (int, error) {
	sel := labels.SelectorFromSet(labels.Set{discoveryv1.LabelManagedBy: ManagedBy}).String()
	list, err := client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range list.Items {
		err := client.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return n, err
		}
		n++
	}
	return n, nil
}
