package master

import (
	"sort"
	"time"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
	"github.com/k8sm/k8sm/internal/minimesos/eventstream"
)

// state is everything the master knows. Every method runs with Master.mu
// held; none blocks (events are queued on streams).
type state struct {
	m   *Master
	cfg *Config

	frameworkSeq int
	offerSeq     int
	agentSeq     int

	frameworks          map[string]*framework
	completedFrameworks []*framework
	removedFrameworks   map[string]bool

	agents map[string]*agent
	// recovered holds agents admitted before a master restart that have not
	// re-registered yet, with the time after which they count as
	// unreachable (--agent_reregister_timeout).
	recovered map[string]time.Time
	// unreachable holds removed agents (by ID) and when they were removed.
	unreachable map[string]time.Time

	offers map[string]*offer

	// agentCursor rotates the order in which agents are allocated so that
	// no agent is always offered first.
	agentCursor int

	metrics metrics
}

type framework struct {
	id   string
	info *mesospb.FrameworkInfo

	roles          []string
	suppressed     map[string]bool
	partitionAware bool
	multiRole      bool
	killingState   bool

	stream         *eventstream.Stream // nil while disconnected
	lastHeartbeat  time.Time
	registeredAt   time.Time
	reregisteredAt time.Time
	disconnectedAt time.Time
	unregisteredAt time.Time

	offers map[string]*offer
	// tasks the master knows for this framework (not yet terminal and
	// acknowledged), by task ID.
	tasks          map[string]*task
	completedTasks []*mesospb.Task
	// executors by agent ID, then executor ID.
	executors map[string]map[string]*mesospb.ExecutorInfo
	filters   map[filterKey]*filter
	// allocated is what the framework holds (offers, tasks, executors), for
	// DRF.
	allocated resourceSums
}

type filterKey struct{ role, agent string }

type filter struct {
	refused resources.Resources
	expires time.Time
}

type task struct {
	t     *mesospb.Task
	fw    *framework
	agent string
	role  string
	// resources the task holds on its agent, freed by a terminal update.
	res resources.Resources
	// latest is the latest status (what reconciliation reports).
	latest *mesospb.TaskStatus
	// terminalReceived: resources already freed; the task is removed when
	// the terminal update is acknowledged.
	terminalReceived bool
	unreachable      bool
}

type agent struct {
	id       string
	info     *mesospb.AgentInfo
	endpoint string
	version  string
	caps     []*mesospb.AgentInfo_Capability

	total resources.Resources
	// free is what can still be offered: total minus offers, tasks and
	// executors.
	free resources.Resources

	stream       *eventstream.Stream
	pingSeq      uint64
	lastPing     time.Time
	lastPong     time.Time
	missedPings  int
	registeredAt time.Time
	reregistered time.Time

	// tasks on the agent by framework ID then task ID.
	tasks map[string]map[string]*task
	// executors by framework ID then executor ID, with the resources they
	// hold.
	executors map[string]map[string]*executor
	// frameworks whose FrameworkInfo the agent knows (sent with tasks).
	frameworks map[string]bool
}

type executor struct {
	info *mesospb.ExecutorInfo
	res  resources.Resources
	role string
}

type offer struct {
	id      string
	fw      *framework
	agent   *agent
	role    string
	res     resources.Resources
	created time.Time
}

func newState(m *Master) *state {
	return &state{
		m:                 m,
		cfg:               &m.cfg,
		frameworks:        map[string]*framework{},
		removedFrameworks: map[string]bool{},
		agents:            map[string]*agent{},
		recovered:         map[string]time.Time{},
		unreachable:       map[string]time.Time{},
		offers:            map[string]*offer{},
	}
}

func (s *state) now() time.Time { return s.cfg.Clock.Now() }

// tick is the periodic work.
func (s *state) tick(now time.Time) {
	s.expireFilters(now)
	s.expireOffers(now)
	s.expireFrameworks(now)
	s.checkAgents(now)
	s.expireRecoveredAgents(now)
	s.heartbeat(now)
	s.allocate(now)
}

func (s *state) heartbeat(now time.Time) {
	for _, fw := range s.frameworks {
		if fw.stream != nil && now.Sub(fw.lastHeartbeat) >= s.cfg.HeartbeatInterval {
			fw.lastHeartbeat = now
			s.sendFramework(fw, schedEvent(schedulerpb.Event_HEARTBEAT))
		}
	}
}

func (s *state) closeAllStreams() {
	for _, fw := range s.frameworks {
		if fw.stream != nil {
			fw.stream.Close()
		}
	}
	for _, a := range s.agents {
		if a.stream != nil {
			a.stream.Close()
		}
	}
}

// sendFramework queues an event for a framework; a framework that is not
// connected misses it (Mesos drops events for disconnected frameworks; the
// agents retry status updates).
func (s *state) sendFramework(fw *framework, ev *schedulerpb.Event) {
	if fw.stream == nil {
		return
	}
	if !fw.stream.Send(ev) {
		s.disconnectFramework(fw, fw.stream)
	}
}

func (s *state) sendAgent(a *agent, ev *agentpb.Event) bool {
	if a.stream == nil {
		return false
	}
	if !a.stream.Send(ev) {
		a.stream = nil
		return false
	}
	return true
}

// sortedFrameworkIDs and sortedAgentIDs give deterministic iteration.
func (s *state) sortedAgentIDs() []string {
	ids := make([]string, 0, len(s.agents))
	for id := range s.agents {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (s *state) sortedFrameworkIDs() []string {
	ids := make([]string, 0, len(s.frameworks))
	for id := range s.frameworks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func isTerminal(st mesospb.TaskState) bool {
	switch st {
	case mesospb.TaskState_TASK_FINISHED, mesospb.TaskState_TASK_FAILED, mesospb.TaskState_TASK_KILLED,
		mesospb.TaskState_TASK_ERROR, mesospb.TaskState_TASK_DROPPED, mesospb.TaskState_TASK_GONE,
		mesospb.TaskState_TASK_LOST:
		// LOST counts as terminal for resources, as in the Mesos master.
		return true
	}
	return false
}
