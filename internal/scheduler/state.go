package scheduler

import (
	"math/rand"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

// queued is a pod waiting for a place.
type queued struct {
	pod     *corev1.Pod
	demand  podtask.Demand
	mapping podtask.PortMapping
	roles   []string
	// invalid: the pod cannot run as it is (its message says why); it
	// waits for an update.
	invalid  string
	added    time.Time
	attempts int
	due      time.Time
	lastMsg  string
}

type taskState int

const (
	taskLaunched taskState = iota // ACCEPT sent, no update yet
	taskRunning                   // STARTING or RUNNING
	taskDone                      // terminal
)

func (s taskState) String() string {
	return [...]string{"launched", "running", "done"}[s]
}

// task is the Mesos task of a pod.
type task struct {
	id       string
	podKey   string
	podUID   string
	agentID  string
	hostname string
	offerID  string
	state    taskState
	bound    bool
	killing  bool
	launched time.Time
	// recovered from pod annotations after a scheduler restart.
	recovered bool
}

// heldOffer is an offer the scheduler holds.
type heldOffer struct {
	offer    *mesospb.Offer
	received time.Time
}

// agentInfo is what the scheduler knows of an agent.
type agentInfo struct {
	id       string
	hostname string
	ip       string
	attrs    []*mesospb.Attribute
	// ports ever offered by the agent, to tell a hostPort no agent can
	// give from one that is merely busy.
	ports []resources.Range
	total resources.Resources
	// alive: Mesos reports it (offers came, no FAILURE since).
	alive bool
}

// state is the scheduler's state, owned by its loop goroutine.
type state struct {
	queue  map[string]*queued
	tasks  map[string]*task // by pod key
	byTask map[string]*task // by task ID
	offers map[string]*heldOffer
	agents map[string]*agentInfo
	// nodes by name: labels and taints, from the node informer.
	nodes map[string]*corev1.Node

	suppressed bool
	// emptySince is when the queue last became empty.
	emptySince time.Time
	dirty      bool
	rng        *rand.Rand
}

func newState() *state {
	return &state{
		queue: map[string]*queued{}, tasks: map[string]*task{}, byTask: map[string]*task{},
		offers: map[string]*heldOffer{}, agents: map[string]*agentInfo{}, nodes: map[string]*corev1.Node{},
		rng: rand.New(rand.NewSource(time.Now().UnixNano())),
	}
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

// backoff is the delay after n failed attempts: initial·2^(n-1), capped,
// with jitter of up to a quarter so that pods do not retry in lockstep.
func backoff(initial, max time.Duration, n int, rng *rand.Rand) time.Duration {
	d := initial
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	return d - time.Duration(rng.Int63n(int64(d)/4+1))
}

// duePods returns the queued pods whose backoff has passed, oldest first.
func (st *state) duePods(now time.Time) []*queued {
	var out []*queued
	for _, q := range st.queue {
		if q.invalid == "" && !now.Before(q.due) {
			out = append(out, q)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].added.Equal(out[j].added) {
			return out[i].added.Before(out[j].added)
		}
		return podKey(out[i].pod) < podKey(out[j].pod)
	})
	return out
}

// knownPorts is the union of the port ranges every agent ever offered.
func (st *state) knownPorts() []resources.Range {
	var out []resources.Range
	for _, a := range st.agents {
		out = resources.Union(out, a.ports)
	}
	return out
}
