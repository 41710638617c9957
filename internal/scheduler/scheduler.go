package scheduler

import (
	"context"
	"fmt"
	"log"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/schedclient"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/mesos/uuid"
	"github.com/k8sm/k8sm/internal/scheduler/placement"
	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

// MesosAPI is what the scheduler needs of a Mesos scheduler client
// (schedclient.Client has it).
type MesosAPI interface {
	Accept(ctx context.Context, offers []string, ops []*mesospb.Offer_Operation, filters *mesospb.Filters) error
	Decline(ctx context.Context, offers []string, filters *mesospb.Filters) error
	Revive(ctx context.Context, roles ...string) error
	Suppress(ctx context.Context, roles ...string) error
	Kill(ctx context.Context, taskID, agentID string, grace time.Duration) error
	Acknowledge(ctx context.Context, st *mesospb.TaskStatus) error
	Reconcile(ctx context.Context, tasks []schedclient.ReconcileTask) error
	Message(ctx context.Context, agentID, executorID string, data []byte) error
	FrameworkID() string
}

// Scheduler is km's scheduler. Its state is owned by one loop goroutine;
// everything else (informers, the Mesos client, HTTP) hands work to it
// through do.
type Scheduler struct {
	cfg    Config
	client kubernetes.Interface
	mesos  MesosAPI
	// agentLister, if set, tells of agents that make no offers.
	agentLister AgentLister
	log         *log.Logger
	now         func() time.Time

	st   *state
	work chan func()
	// ordered carries the Mesos calls whose order matters (SUPPRESS and
	// REVIVE): one goroutine sends them one after another.
	ordered chan func(context.Context)
	kick    chan struct{}
	writes  chan func(context.Context) // apiserver writes, done by workers
	metrics *metrics

	recorder record.EventRecorder
	nodes    *nodeKeeper

	mu          sync.Mutex
	frameworkID string
	healthy     bool

	// onRunning, when set (benchmarks), is told when a pod's task runs.
	onRunning func(podKey string)
}

// New makes a scheduler. mesos is usually a *schedclient.Client whose
// handler is the scheduler itself (see Run in cmd).
func New(cfg Config, client kubernetes.Interface, mesos MesosAPI, logger *log.Logger) *Scheduler {
	if logger == nil {
		logger = log.Default()
	}
	broadcaster := record.NewBroadcaster()
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	s := &Scheduler{
		cfg: cfg, client: client, mesos: mesos, log: logger, now: time.Now,
		st:       newState(),
		work:     make(chan func(), 4096),
		ordered:  make(chan func(context.Context), 1024),
		kick:     make(chan struct{}, 1),
		writes:   make(chan func(context.Context), 1<<16),
		metrics:  newMetrics(),
		recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: cfg.SchedulerName}),
	}
	s.nodes = newNodeKeeper(s)
	return s
}

// SetMesos sets the Mesos client (it is made after the scheduler, whose
// Event method it calls).
func (s *Scheduler) SetMesos(m MesosAPI) { s.mesos = m }

// do runs fn on the loop goroutine.
func (s *Scheduler) do(fn func()) { s.work <- fn }

func (s *Scheduler) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Run starts the informers and the loop, and returns when ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	factory := informers.NewSharedInformerFactory(s.client, 0)
	podInf := factory.Core().V1().Pods().Informer()
	nodeInf := factory.Core().V1().Nodes().Informer()
	podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.podChanged(obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) { s.podChanged(obj.(*corev1.Pod)) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				s.do(func() { s.podDeleted(p) })
			}
		},
	})
	nodeInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { n := obj.(*corev1.Node); s.do(func() { s.st.nodes[n.Name] = n; s.st.dirty = true }) },
		UpdateFunc: func(_, obj any) { n := obj.(*corev1.Node); s.do(func() { s.st.nodes[n.Name] = n; s.st.dirty = true }) },
		DeleteFunc: func(obj any) {
			if n, ok := obj.(*corev1.Node); ok {
				s.do(func() { delete(s.st.nodes, n.Name) })
			}
		},
	})
	for i := 0; i < 16; i++ {
		go s.writer(ctx)
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case fn := <-s.ordered:
				fn(ctx)
			}
		}
	}()
	go s.nodes.run(ctx)
	go s.watchAgents(ctx)
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), podInf.HasSynced, nodeInf.HasSynced) {
		return ctx.Err()
	}
	s.mu.Lock()
	s.healthy = true
	s.mu.Unlock()
	s.loop(ctx)
	return nil
}

func (s *Scheduler) writer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-s.writes:
			w(ctx)
		}
	}
}

// write queues an apiserver write.
func (s *Scheduler) write(fn func(context.Context)) {
	select {
	case s.writes <- fn:
	default:
		go fn(context.Background()) // never drop a write
	}
}

// loop is the state machine: work items, and a tick for time-driven
// work (backoffs, offer TTL, reconciliation).
func (s *Scheduler) loop(ctx context.Context) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	reconcile := time.NewTicker(s.cfg.ReconcileInterval)
	defer reconcile.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case fn := <-s.work:
			fn()
			// Drain what is queued before scheduling: a burst of pod
			// events is matched in one pass.
			for more := true; more; {
				select {
				case fn := <-s.work:
					fn()
				default:
					more = false
				}
			}
		case <-s.kick:
		case <-tick.C:
			s.expireOffers(ctx)
		case <-reconcile.C:
			s.reconcileImplicit(ctx)
		}
		s.schedule(ctx)
	}
}

// ---------------------------------------------------------------------------
// Pods.

func (s *Scheduler) podChanged(p *corev1.Pod) {
	if p.Spec.SchedulerName != s.cfg.SchedulerName {
		return
	}
	s.do(func() { s.podChangedLocked(p) })
}

func (s *Scheduler) podChangedLocked(p *corev1.Pod) {
	st := s.st
	key := podKey(p)
	t := st.tasks[key]
	if t != nil && t.podUID != string(p.UID) {
		// Same name, new pod: the old task belongs to a pod that is gone.
		s.killTask(t, 0)
		s.forgetTask(t)
		t = nil
	}
	if p.DeletionTimestamp != nil {
		delete(st.queue, key)
		if t != nil && t.state != taskDone && !t.killing {
			grace := time.Duration(0)
			if p.DeletionGracePeriodSeconds != nil {
				grace = time.Duration(*p.DeletionGracePeriodSeconds) * time.Second
			}
			s.killTask(t, grace)
		}
		return
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		delete(st.queue, key)
		return
	}
	if t != nil {
		return // launched: updates of a running pod are the executor's
	}
	if p.Spec.NodeName != "" || p.Annotations[podtask.AnnotationBindingHost] != "" {
		// Bound by an earlier scheduler run: take its task back.
		if id := p.Annotations[podtask.AnnotationTaskID]; id != "" {
			nt := &task{id: id, podKey: key, podUID: string(p.UID), agentID: p.Annotations[podtask.AnnotationAgentID],
				hostname: p.Spec.NodeName, offerID: p.Annotations[podtask.AnnotationOfferID], state: taskRunning, bound: true, recovered: true}
			st.tasks[key] = nt
			st.byTask[id] = nt
		}
		return
	}
	q := st.queue[key]
	if q == nil {
		q = &queued{added: s.now(), due: s.now()}
		st.queue[key] = q
		s.metrics.podsQueued.Add(1)
		st.emptySince = time.Time{}
		if st.suppressed {
			st.suppressed = false
			s.orderedCall("REVIVE", func(ctx context.Context) error { return s.mesos.Revive(ctx, s.cfg.Roles...) })
		}
	}
	q.pod = p
	q.invalid = ""
	mapping, err := podtask.MappingOf(p, s.cfg.PortMapping)
	if err == nil {
		q.mapping = mapping
		q.demand, err = podtask.DemandOf(p, s.cfg.Defaults, mapping)
	}
	if err != nil {
		q.invalid = err.Error()
		s.unschedulable(q, "pod cannot run as it is: "+err.Error()+"; fix the pod spec")
		return
	}
	q.roles = podtask.RolesOf(p, s.cfg.DefaultPodRoles)
	if len(q.roles) == 0 {
		q.roles = s.cfg.Roles
	}
	if msg := s.portsNoAgentHas(q); msg != "" {
		// Say so at once (k8sm left such pods pending silently), and retry
		// rarely: agents with other ports may come.
		q.due = s.now().Add(s.cfg.MaxPodBackoff)
		s.unschedulable(q, msg)
		return
	}
	st.dirty = true
}

var ctx0 = context.Background()

// portsNoAgentHas reports a fixed hostPort outside every port range any
// agent offers.
func (s *Scheduler) portsNoAgentHas(q *queued) string {
	known := s.st.knownPorts()
	if len(known) == 0 {
		return "" // no agent seen yet
	}
	for _, p := range q.demand.Ports {
		if p.HostPort != 0 && !resources.InRanges(uint64(p.HostPort), known) {
			return fmt.Sprintf("hostPort %d of container %q is outside the ports offered by every agent (%s); leave hostPort empty or use a port in that range",
				p.HostPort, p.Container, trimBrackets(resources.RangesString(known)))
		}
	}
	return ""
}

func trimBrackets(s string) string {
	if len(s) >= 2 && s[0] == '[' {
		return s[1 : len(s)-1]
	}
	return s
}

func (s *Scheduler) podDeleted(p *corev1.Pod) {
	key := podKey(p)
	delete(s.st.queue, key)
	if t := s.st.tasks[key]; t != nil && t.podUID == string(p.UID) {
		if t.state != taskDone {
			s.killTask(t, 0)
		}
		s.forgetTask(t)
	}
}

func (s *Scheduler) forgetTask(t *task) {
	if s.st.tasks[t.podKey] == t {
		delete(s.st.tasks, t.podKey)
	}
	delete(s.st.byTask, t.id)
}

func (s *Scheduler) killTask(t *task, grace time.Duration) {
	t.killing = true
	id, agent := t.id, t.agentID
	s.metrics.kills.Add(1)
	s.call(ctx0, "KILL", func(ctx context.Context) error { return s.mesos.Kill(ctx, id, agent, grace) })
}

// suppressAfter is how long the queue stays empty before offers are
// suppressed.
const suppressAfter = 2 * time.Second

// orderedCall sends a Mesos call after the ordered calls before it.
func (s *Scheduler) orderedCall(what string, fn func(context.Context) error) {
	s.ordered <- func(ctx context.Context) {
		if err := fn(ctx); err != nil {
			s.log.Printf("%s: %v", what, err)
		}
	}
}

// call sends a Mesos call off the loop goroutine, logging failures.
func (s *Scheduler) call(ctx context.Context, what string, fn func(context.Context) error) {
	go func() {
		if err := fn(ctx); err != nil {
			s.log.Printf("%s: %v", what, err)
		}
	}()
}

// unschedulable reports a pod that found no place: a FailedScheduling
// event and PodScheduled=False (Unschedulable), as kube-scheduler writes
// them, once per distinct message.
func (s *Scheduler) unschedulable(q *queued, msg string) {
	if q.lastMsg == msg {
		return
	}
	q.lastMsg = msg
	pod := q.pod
	s.metrics.failedScheduling.Add(1)
	s.recorder.Event(pod, corev1.EventTypeWarning, "FailedScheduling", msg)
	s.write(func(ctx context.Context) {
		cur, err := s.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil || cur.UID != pod.UID || cur.Spec.NodeName != "" {
			return
		}
		cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: msg, LastTransitionTime: metav1.Now()}
		replaced := false
		for i, c := range cur.Status.Conditions {
			if c.Type == corev1.PodScheduled {
				if c.Message == msg && c.Status == corev1.ConditionFalse {
					return
				}
				cur.Status.Conditions[i] = cond
				replaced = true
			}
		}
		if !replaced {
			cur.Status.Conditions = append(cur.Status.Conditions, cond)
		}
		if _, err := s.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			s.log.Printf("cannot mark pod %s/%s unschedulable: %v", pod.Namespace, pod.Name, err)
		}
	})
}

// ---------------------------------------------------------------------------
// Scheduling.

// schedule matches the due pods against the held offers in one pass and
// launches every pod that fits, one ACCEPT per agent.
func (s *Scheduler) schedule(ctx context.Context) {
	st := s.st
	now := s.now()
	if len(st.queue) == 0 {
		// Nothing waits: after a quiet moment (pods often come in
		// bursts), give the offers back and stop receiving them.
		if st.emptySince.IsZero() {
			st.emptySince = now
		}
		if !st.suppressed && now.Sub(st.emptySince) >= suppressAfter {
			s.declineAll(ctx, st.offers)
			st.suppressed = true
			s.orderedCall("SUPPRESS", func(ctx context.Context) error { return s.mesos.Suppress(ctx, s.cfg.Roles...) })
		}
		return
	}
	st.emptySince = time.Time{}
	if !st.dirty {
		// Wake for backoffs that expired.
		for _, q := range st.queue {
			if q.invalid == "" && !now.Before(q.due) && q.attempts > 0 {
				st.dirty = true
				break
			}
		}
	}
	if !st.dirty || len(st.offers) == 0 {
		return
	}
	st.dirty = false
	due := st.duePods(now)
	if len(due) == 0 {
		return
	}
	start := time.Now()
	agents, offersOf := s.placementAgents()
	pods := make([]*placement.Pod, len(due))
	byPod := make(map[*placement.Pod]*queued, len(due))
	for i, q := range due {
		pods[i] = &placement.Pod{Pod: q.pod, Demand: q.demand, Roles: q.roles}
		byPod[pods[i]] = q
	}
	res := placement.Place(pods, agents, placement.Config{Strategy: s.cfg.Strategy, ExecutorCPUs: s.cfg.Executor.CPUs, ExecutorMemMB: s.cfg.Executor.MemMB})
	s.metrics.placementSeconds.observe(time.Since(start).Seconds())

	// Launch, grouped by agent (and role).
	byAgent := map[*placement.Agent][]placement.Placement{}
	for _, p := range res.Placements {
		byAgent[p.Agent] = append(byAgent[p.Agent], p)
	}
	for a, ps := range byAgent {
		s.launch(ctx, a, offersOf[a], ps, byPod)
	}
	for p, why := range res.Unplaced {
		q := byPod[p]
		q.attempts++
		q.due = now.Add(backoff(s.cfg.InitialPodBackoff, s.cfg.MaxPodBackoff, q.attempts, st.rng))
		s.unschedulable(q, why)
	}
}

// placementAgents turns held offers into placement agents, one per agent
// and role, labelled from the agent's Node (attributes included) and
// tainted as the Node is.
func (s *Scheduler) placementAgents() ([]*placement.Agent, map[*placement.Agent][]string) {
	type key struct{ agent, role string }
	grouped := map[key][]*mesospb.Offer{}
	var keys []key
	for _, h := range s.st.offers {
		k := key{h.offer.GetAgentId().GetValue(), h.offer.GetAllocationInfo().GetRole()}
		if k.role == "" {
			k.role = "*"
		}
		if grouped[k] == nil {
			keys = append(keys, k)
		}
		grouped[k] = append(grouped[k], h.offer)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].agent+keys[i].role < keys[j].agent+keys[j].role })
	execID := s.executorID()
	var out []*placement.Agent
	offersOf := map[*placement.Agent][]string{}
	for _, k := range keys {
		offers := grouped[k]
		var res resources.Resources
		var ids []string
		running := false
		for _, o := range offers {
			res = resources.Add(res, o.GetResources())
			ids = append(ids, o.GetId().GetValue())
			for _, e := range o.GetExecutorIds() {
				if e.GetValue() == execID {
					running = true
				}
			}
		}
		o := offers[0]
		info := s.st.agents[k.agent]
		a := &placement.Agent{
			ID: k.agent, Hostname: o.GetHostname(), Role: k.role, ResourceRole: resourceRole(res),
			OfferIDs: ids, CPUs: resources.Scalar(res, "cpus"), MemMB: resources.Scalar(res, "mem"),
			ExecutorRunning: running, Labels: map[string]string{},
		}
		for _, r := range resources.Ports(res) {
			a.Ports = append(a.Ports, placement.Range{Begin: r.Begin, End: r.End})
		}
		if info != nil {
			a.TotalCPUs = resources.Scalar(info.total, "cpus")
			a.TotalMemMB = resources.Scalar(info.total, "mem")
		}
		for k, v := range attributeLabels(o.GetHostname(), o.GetAttributes()) {
			a.Labels[k] = v
		}
		if n := s.st.nodes[o.GetHostname()]; n != nil {
			for k, v := range n.Labels {
				a.Labels[k] = v
			}
			a.Taints = n.Spec.Taints
			if n.Spec.Unschedulable {
				a.Taints = append(a.Taints, corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule})
			}
		}
		out = append(out, a)
		offersOf[a] = ids
	}
	return out, offersOf
}

// resourceRole is the reservation role of resources ("*" if unreserved).
func resourceRole(rs resources.Resources) string {
	for _, r := range rs {
		if rr := resources.ReservationRole(r); rr != "*" {
			return rr
		}
	}
	return "*"
}

func (s *Scheduler) executorID() string {
	return s.cfg.Executor.Info(s.mesos.FrameworkID(), "*").GetExecutorId().GetValue()
}

// launch sends one ACCEPT with the tasks of the pods placed on an agent,
// then binds the pods.
func (s *Scheduler) launch(ctx context.Context, a *placement.Agent, offerIDs []string, ps []placement.Placement, byPod map[*placement.Pod]*queued) {
	st := s.st
	exec := s.cfg.Executor.Info(s.mesos.FrameworkID(), a.Role)
	var infos []*mesospb.TaskInfo
	type binding struct {
		pod *corev1.Pod
		ann map[string]string
		t   *task
	}
	var binds []binding
	for _, p := range ps {
		q := byPod[p.Pod]
		taskID := "pod." + uuid.NewString()
		info, ann, err := podtask.Build(q.pod, taskID, q.demand, podtask.Assignment{
			AgentID: a.ID, Hostname: a.Hostname, OfferIDs: offerIDs, Role: a.Role, ResourceRole: a.ResourceRole, HostPorts: p.HostPorts,
		}, exec)
		if err != nil {
			s.unschedulable(q, err.Error())
			continue
		}
		infos = append(infos, info)
		key := podKey(q.pod)
		t := &task{id: taskID, podKey: key, podUID: string(q.pod.UID), agentID: a.ID, hostname: a.Hostname, offerID: offerIDs[0], launched: s.now()}
		st.tasks[key] = t
		st.byTask[taskID] = t
		delete(st.queue, key)
		s.metrics.queueWait.observe(s.now().Sub(q.added).Seconds())
		binds = append(binds, binding{q.pod, ann, t})
	}
	for _, id := range offerIDs {
		delete(st.offers, id)
	}
	if len(infos) == 0 {
		s.call(ctx, "DECLINE", func(ctx context.Context) error { return s.mesos.Decline(ctx, offerIDs, schedclient.Filters(0)) })
		return
	}
	s.metrics.podsPerOffer.observe(float64(len(infos)))
	s.metrics.launched.Add(int64(len(infos)))
	// What the tasks do not use goes back at once (no refusal): more pods
	// may be waiting for it.
	s.call(ctx, "ACCEPT", func(ctx context.Context) error {
		return s.mesos.Accept(ctx, offerIDs, []*mesospb.Offer_Operation{schedclient.LaunchOperation(infos...)}, schedclient.Filters(0))
	})
	for _, b := range binds {
		b := b
		s.write(func(ctx context.Context) { s.bind(ctx, b.pod, b.ann, b.t) })
	}
}

// bind binds a pod to its agent's node with km's annotations in one
// request (the apiserver copies a Binding's annotations onto the pod).
func (s *Scheduler) bind(ctx context.Context, pod *corev1.Pod, ann map[string]string, t *task) {
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID, Annotations: ann},
		Target:     corev1.ObjectReference{Kind: "Node", Name: t.hostname},
	}
	err := s.client.CoreV1().Pods(pod.Namespace).Bind(ctx, b, metav1.CreateOptions{})
	if err != nil {
		s.log.Printf("binding pod %s/%s to %s failed (%v); killing its task %s", pod.Namespace, pod.Name, t.hostname, err, t.id)
		s.do(func() {
			if s.st.byTask[t.id] == t {
				s.killTask(t, 0)
				s.forgetTask(t)
			}
		})
		return
	}
	s.metrics.bound.Add(1)
	s.do(func() { t.bound = true })
	s.recorder.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, t.hostname)
}

// ---------------------------------------------------------------------------
// Offers.

func (s *Scheduler) declineAll(ctx context.Context, offers map[string]*heldOffer) {
	var ids []string
	for id := range offers {
		ids = append(ids, id)
		delete(s.st.offers, id)
	}
	if len(ids) == 0 {
		return
	}
	s.metrics.offersDeclined.Add(int64(len(ids)))
	refuse := time.Duration(s.cfg.RefuseSeconds * float64(time.Second))
	s.call(ctx, "DECLINE", func(ctx context.Context) error { return s.mesos.Decline(ctx, ids, schedclient.Filters(refuse)) })
}

// expireOffers declines offers held longer than the offer TTL.
func (s *Scheduler) expireOffers(ctx context.Context) {
	now := s.now()
	old := map[string]*heldOffer{}
	for id, h := range s.st.offers {
		if now.Sub(h.received) >= s.cfg.OfferTTL {
			old[id] = h
		}
	}
	s.declineAll(ctx, old)
}

// ---------------------------------------------------------------------------
// Mesos events (the schedclient.Handler).

// Event handles an event of the Mesos subscription.
func (s *Scheduler) Event(ctx context.Context, ev *schedulerpb.Event) {
	switch ev.GetType() {
	case schedulerpb.Event_SUBSCRIBED:
		id := ev.GetSubscribed().GetFrameworkId().GetValue()
		// Store the framework ID before anything is launched with it, so
		// that a restarted scheduler fails over to the same framework.
		if err := saveFrameworkID(ctx, s.client, id); err != nil {
			s.log.Printf("cannot store the framework ID %s: %v (a restarted scheduler would register a new framework)", id, err)
		}
		s.mu.Lock()
		s.frameworkID = id
		s.mu.Unlock()
		s.log.Printf("subscribed to Mesos as framework %s", id)
		// A new subscription starts unsuppressed (unless told otherwise).
		s.do(func() { s.st.suppressed = false; s.st.emptySince = time.Time{}; s.reconcileExplicit(ctx) })
	case schedulerpb.Event_OFFERS:
		offers := ev.GetOffers().GetOffers()
		s.metrics.offersReceived.Add(int64(len(offers)))
		s.do(func() { s.offersArrived(offers) })
	case schedulerpb.Event_RESCIND:
		id := ev.GetRescind().GetOfferId().GetValue()
		s.do(func() { delete(s.st.offers, id) })
	case schedulerpb.Event_UPDATE:
		st := ev.GetUpdate().GetStatus()
		s.metrics.countUpdate(st)
		if st.Uuid != nil {
			s.call(ctx, "ACKNOWLEDGE", func(ctx context.Context) error { return s.mesos.Acknowledge(ctx, st) })
		}
		s.do(func() { s.statusUpdate(ctx, st) })
	case schedulerpb.Event_FAILURE:
		if f := ev.GetFailure(); f.ExecutorId == nil && f.AgentId != nil {
			id := f.GetAgentId().GetValue()
			s.do(func() { s.agentLost(id) })
		}
	case schedulerpb.Event_ERROR:
		s.log.Printf("Mesos master: ERROR %s", ev.GetError().GetMessage())
	}
}

// Disconnected: held offers are void.
func (s *Scheduler) Disconnected(err error) {
	s.log.Printf("disconnected from Mesos: %v", err)
	s.do(func() { s.st.offers = map[string]*heldOffer{} })
}

func (s *Scheduler) offersArrived(offers []*mesospb.Offer) {
	st := s.st
	now := s.now()
	for _, o := range offers {
		st.offers[o.GetId().GetValue()] = &heldOffer{offer: o, received: now}
		a := st.agents[o.GetAgentId().GetValue()]
		if a == nil {
			a = &agentInfo{id: o.GetAgentId().GetValue()}
			st.agents[a.id] = a
		}
		a.hostname = o.GetHostname()
		a.attrs = o.GetAttributes()
		a.ip = o.GetUrl().GetAddress().GetIp()
		a.alive = true
		a.ports = resources.Union(a.ports, resources.Ports(o.GetResources()))
		plain := resources.WithAllocationRole(o.GetResources(), "")
		if resources.Scalar(plain, "cpus") > resources.Scalar(a.total, "cpus") || resources.Scalar(plain, "mem") > resources.Scalar(a.total, "mem") {
			a.total = plain
		}
		s.nodes.seen(a.id, a.hostname, a.ip, a.attrs, a.total)
	}
	// New offers cut backoffs short: waiting pods try them at once.
	for _, q := range st.queue {
		if q.invalid == "" && q.lastMsg != "" && !q.due.IsZero() {
			q.due = now
		}
	}
	st.dirty = true
}

func (s *Scheduler) agentLost(agentID string) {
	a := s.st.agents[agentID]
	if a == nil {
		// Not offered to this scheduler run (e.g. after a restart): find
		// its Node by the agent ID it carries.
		for name, n := range s.st.nodes {
			if n.Annotations[podtask.AnnotationAgentID] == agentID {
				a = &agentInfo{id: agentID, hostname: name}
				s.st.agents[agentID] = a
			}
		}
		if a == nil {
			return
		}
	}
	a.alive = false
	for id, h := range s.st.offers {
		if h.offer.GetAgentId().GetValue() == agentID {
			delete(s.st.offers, id)
		}
	}
	s.nodes.lost(agentID, a.hostname)
}

// statusUpdate follows a task's state to its pod.
func (s *Scheduler) statusUpdate(ctx context.Context, st *mesospb.TaskStatus) {
	id := st.GetTaskId().GetValue()
	t := s.st.byTask[id]
	state := st.GetState()
	if t == nil {
		switch state {
		case mesospb.TaskState_TASK_STAGING, mesospb.TaskState_TASK_STARTING, mesospb.TaskState_TASK_RUNNING, mesospb.TaskState_TASK_KILLING:
			// A task no pod accounts for: kill it (orphans are what k8sm's
			// users fought).
			agent := st.GetAgentId().GetValue()
			s.log.Printf("task %s on agent %s belongs to no pod; killing it", id, agent)
			s.call(ctx, "KILL", func(ctx context.Context) error { return s.mesos.Kill(ctx, id, agent, 0) })
		}
		return
	}
	switch state {
	case mesospb.TaskState_TASK_STAGING, mesospb.TaskState_TASK_STARTING, mesospb.TaskState_TASK_RUNNING, mesospb.TaskState_TASK_KILLING:
		if state != mesospb.TaskState_TASK_STAGING && t.state == taskLaunched {
			t.state = taskRunning
			if state == mesospb.TaskState_TASK_RUNNING && !t.launched.IsZero() {
				s.metrics.launchToRunning.observe(s.now().Sub(t.launched).Seconds())
			}
			if s.onRunning != nil && state == mesospb.TaskState_TASK_RUNNING {
				s.onRunning(t.podKey)
			}
		}
		return
	case mesospb.TaskState_TASK_UNREACHABLE, mesospb.TaskState_TASK_UNKNOWN, mesospb.TaskState_TASK_GONE_BY_OPERATOR:
		return // may come back; the Node goes NotReady meanwhile
	}
	// Terminal.
	prev := t.state
	t.state = taskDone
	s.forgetTask(t)
	namespace, name := splitKey(t.podKey)
	reason := st.GetReason()
	// A pod that never got bound is scheduled again, if it was refused
	// before it ran.
	if !t.bound && prev == taskLaunched && !t.killing && (state == mesospb.TaskState_TASK_ERROR || state == mesospb.TaskState_TASK_DROPPED ||
		state == mesospb.TaskState_TASK_LOST && reason == mesospb.TaskStatus_REASON_INVALID_OFFERS) {
		s.log.Printf("task %s of pod %s was refused (%s, %s: %s); scheduling the pod again", id, t.podKey, state, reason, st.GetMessage())
		s.write(func(ctx context.Context) {
			if p, err := s.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{}); err == nil && string(p.UID) == t.podUID && p.Spec.NodeName == "" {
				s.do(func() { s.podChangedLocked(p) })
			}
		})
		return
	}
	s.write(func(ctx context.Context) { s.taskEnded(ctx, t, st) })
}

func splitKey(k string) (string, string) {
	for i := 0; i < len(k); i++ {
		if k[i] == '/' {
			return k[:i], k[i+1:]
		}
	}
	return "", k
}

// taskEnded finishes the pod of an ended task: a pod being deleted is
// removed for good (no kubelet will confirm it); a pod whose task was
// lost, failed or killed without its pod being deleted is marked Failed
// with the Mesos reason, so its controller replaces it.
func (s *Scheduler) taskEnded(ctx context.Context, t *task, st *mesospb.TaskStatus) {
	namespace, name := splitKey(t.podKey)
	pods := s.client.CoreV1().Pods(namespace)
	p, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil || string(p.UID) != t.podUID {
		return
	}
	if p.DeletionTimestamp != nil {
		zero := int64(0)
		uid := p.UID
		if err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
			s.log.Printf("cannot remove deleted pod %s after its task ended: %v", t.podKey, err)
		}
		return
	}
	if st.GetState() == mesospb.TaskState_TASK_FINISHED || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return // the executor wrote the pod's final status
	}
	msg := fmt.Sprintf("Mesos task %s: %s (%s)", t.id, st.GetState(), st.GetReason())
	if m := st.GetMessage(); m != "" {
		msg += ": " + m
	}
	p = p.DeepCopy()
	p.Status.Phase = corev1.PodFailed
	p.Status.Reason = mesosReason(st)
	p.Status.Message = msg
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady || p.Status.Conditions[i].Type == corev1.ContainersReady {
			p.Status.Conditions[i].Status = corev1.ConditionFalse
			p.Status.Conditions[i].Reason = "PodFailed"
			p.Status.Conditions[i].LastTransitionTime = metav1.Now()
		}
	}
	// The executor that would report the containers' ends is gone with
	// the task: as the kubelet does for containers it cannot find, they
	// are shown terminated with an unknown status, so that kubectl's
	// READY column does not keep counting them.
	for i := range p.Status.ContainerStatuses {
		cs := &p.Status.ContainerStatuses[i]
		if cs.State.Terminated != nil {
			continue
		}
		var started metav1.Time
		if cs.State.Running != nil {
			started = cs.State.Running.StartedAt
		}
		cs.Ready = false
		f := false
		cs.Started = &f
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 137, Reason: "ContainerStatusUnknown", StartedAt: started, FinishedAt: metav1.Now(),
			Message: "the container's state is unknown: its Mesos task ended (" + st.GetState().String() + ")",
		}}
	}
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		s.log.Printf("cannot mark pod %s failed: %v", t.podKey, err)
		return
	}
	s.recorder.Event(p, corev1.EventTypeWarning, p.Status.Reason, msg)
}

// mesosReason names a pod's failure after the Mesos state (TaskLost,
// TaskFailed, TaskGone...).
func mesosReason(st *mesospb.TaskStatus) string {
	switch st.GetState() {
	case mesospb.TaskState_TASK_LOST:
		return "TaskLost"
	case mesospb.TaskState_TASK_FAILED:
		return "TaskFailed"
	case mesospb.TaskState_TASK_GONE:
		return "TaskGone"
	case mesospb.TaskState_TASK_KILLED:
		return "TaskKilled"
	case mesospb.TaskState_TASK_ERROR:
		return "TaskError"
	case mesospb.TaskState_TASK_DROPPED:
		return "TaskDropped"
	}
	return "MesosTaskEnded"
}

// ---------------------------------------------------------------------------
// Reconciliation.

// reconcileExplicit asks for the state of every task pods say exist (after
// each subscription).
func (s *Scheduler) reconcileExplicit(ctx context.Context) {
	var tasks []schedclient.ReconcileTask
	for _, t := range s.st.byTask {
		if t.state != taskDone {
			tasks = append(tasks, schedclient.ReconcileTask{TaskID: t.id, AgentID: t.agentID})
		}
	}
	sort.Slice(tasks, func(i, j int) bool { return tasks[i].TaskID < tasks[j].TaskID })
	s.metrics.reconciliations.Add(1)
	s.call(ctx, "RECONCILE", func(ctx context.Context) error {
		if len(tasks) == 0 {
			return nil
		}
		return s.mesos.Reconcile(ctx, tasks)
	})
}

func (s *Scheduler) reconcileImplicit(ctx context.Context) {
	s.metrics.reconciliations.Add(1)
	s.call(ctx, "RECONCILE", func(ctx context.Context) error { return s.mesos.Reconcile(ctx, nil) })
}

// ---------------------------------------------------------------------------
// Framework ID storage.

// FrameworkIDConfigMap holds the framework ID in kube-system.
const FrameworkIDConfigMap = "km-scheduler"

// LoadFrameworkID reads the stored framework ID ("" when none).
func LoadFrameworkID(ctx context.Context, client kubernetes.Interface) (string, error) {
	cm, err := client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, FrameworkIDConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return cm.Data["framework-id"], nil
}

func saveFrameworkID(ctx context.Context, client kubernetes.Interface, id string) error {
	cms := client.CoreV1().ConfigMaps(metav1.NamespaceSystem)
	cm, err := cms.Get(ctx, FrameworkIDConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: FrameworkIDConfigMap, Namespace: metav1.NamespaceSystem},
			Data: map[string]string{"framework-id": id}}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if cm.Data["framework-id"] == id {
		return nil
	}
	cm = cm.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data["framework-id"] = id
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}

// FrameworkInfo builds the FrameworkInfo the scheduler subscribes with.
func (c Config) FrameworkInfo(id, hostname string) *mesospb.FrameworkInfo {
	fi := &mesospb.FrameworkInfo{
		User:            proto.String(c.User),
		Name:            proto.String(c.FrameworkName),
		Roles:           c.Roles,
		FailoverTimeout: proto.Float64(c.FailoverTimeout.Seconds()),
		Checkpoint:      proto.Bool(true),
		Hostname:        proto.String(hostname),
		Capabilities: []*mesospb.FrameworkInfo_Capability{
			{Type: mesospb.FrameworkInfo_Capability_MULTI_ROLE.Enum()},
		},
	}
	if id != "" {
		fi.Id = &mesospb.FrameworkID{Value: proto.String(id)}
	}
	return fi
}

// Healthy is true once the scheduler's caches are synced.
func (s *Scheduler) Healthy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.healthy
}
