// Package simagent runs many simulated Mesos agents in one process, for
// scheduler benchmarks on thousands of agents. Each registers with a km
// master over HTTP with the real agent protocol (agentpb), so that the
// master cannot tell it from `km mesos agent`: it answers pings, re-registers
// with its ID and tasks when the stream breaks, and reports every task it is
// given as TASK_RUNNING (SOURCE_EXECUTOR, with a uuid), every kill as
// TASK_KILLED, resending each task's updates in order until the framework
// acknowledges them, as the agent's status update manager does. It starts no
// process. The agents share one HTTP transport; each costs its event stream
// and a few goroutines.
package simagent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/uuid"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

// masterAPIPath is the master's endpoint for agents (agentpb).
const masterAPIPath = "/km/agent/api/v1"

// Config describes the simulated agents.
type Config struct {
	Master         string // host:port
	Count          int
	Resources      string // per agent, Mesos syntax
	Attributes     string
	HostnamePrefix string // agents are <prefix>1..N (default "sim-agent-")
	// RetryInterval resends updates the framework has not acknowledged
	// (default 5s).
	RetryInterval time.Duration
	Logger        *log.Logger // default: discard
}

// Pool is a set of simulated agents.
type Pool struct {
	cfg    Config
	res    resources.Resources
	attrs  []*mesospb.Attribute
	client *http.Client
	log    *log.Logger
	agents []*simAgent
	byName map[string]*simAgent
}

type taskKey struct{ fw, task string }

type simTask struct {
	info  *mesospb.TaskInfo
	exec  *mesospb.ExecutorID // nil for a command task
	state mesospb.TaskState
}

type simAgent struct {
	p    *Pool
	name string

	mu         sync.Mutex
	cancel     context.CancelFunc
	id         string
	frameworks map[string]*mesospb.FrameworkInfo
	executors  map[string]map[string]*mesospb.ExecutorInfo // framework → executor ID →
	tasks      map[taskKey]*simTask
	// queues hold each task's unacknowledged updates; only the head is
	// sent (and resent) until the framework acknowledges it.
	queues map[taskKey][]*mesospb.TaskStatus
}

// New checks the configuration (the resources and attributes in Mesos
// syntax).
func New(cfg Config) (*Pool, error) {
	if cfg.Master == "" {
		return nil, fmt.Errorf("--master is required: the host:port of the km mesos master")
	}
	if cfg.Count <= 0 {
		return nil, fmt.Errorf("--count=%d: the number of simulated agents must be at least 1", cfg.Count)
	}
	if cfg.HostnamePrefix == "" {
		cfg.HostnamePrefix = "sim-agent-"
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = log.New(io.Discard, "", 0)
	}
	res, err := resources.Parse(cfg.Resources, "*")
	if err != nil {
		return nil, fmt.Errorf("--resources=%q: %v", cfg.Resources, err)
	}
	if resources.Scalar(res, "cpus") <= 0 && resources.Scalar(res, "mem") <= 0 {
		return nil, fmt.Errorf("--resources=%q has neither cpus nor mem: the master would never offer such an agent; write e.g. cpus:8;mem:32768", cfg.Resources)
	}
	for _, r := range res {
		if r.GetRole() == "*" {
			r.Role = nil // as an agent writes unreserved resources
		}
	}
	attrs, err := resources.ParseAttributes(cfg.Attributes)
	if err != nil {
		return nil, fmt.Errorf("--attributes=%q: %v", cfg.Attributes, err)
	}
	tr := &http.Transport{
		Proxy:        nil,
		MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	}
	p := &Pool{cfg: cfg, res: res, attrs: attrs, client: &http.Client{Transport: tr}, log: cfg.Logger, byName: map[string]*simAgent{}}
	for i := 1; i <= cfg.Count; i++ {
		a := &simAgent{p: p, name: fmt.Sprintf("%s%d", cfg.HostnamePrefix, i)}
		a.reset()
		p.agents = append(p.agents, a)
		p.byName[a.name] = a
	}
	return p, nil
}

func (a *simAgent) reset() {
	a.frameworks = map[string]*mesospb.FrameworkInfo{}
	a.executors = map[string]map[string]*mesospb.ExecutorInfo{}
	a.tasks = map[taskKey]*simTask{}
	a.queues = map[taskKey][]*mesospb.TaskStatus{}
}

// Run runs every agent until ctx ends.
func (p *Pool) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		p.retryLoop(ctx)
	}()
	for _, a := range p.agents {
		actx, cancel := context.WithCancel(ctx)
		a.mu.Lock()
		a.cancel = cancel
		a.mu.Unlock()
		wg.Add(1)
		go func(a *simAgent) {
			defer wg.Done()
			a.run(actx)
		}(a)
	}
	wg.Wait()
}

// Kill stops one agent as if its machine died: its connection closes and it
// answers nothing more.
func (p *Pool) Kill(name string) bool {
	a := p.byName[name]
	if a == nil {
		return false
	}
	a.mu.Lock()
	cancel := a.cancel
	a.mu.Unlock()
	if cancel == nil {
		return false
	}
	cancel()
	return true
}

// TasksOn counts the live tasks of one agent.
func (p *Pool) TasksOn(name string) int {
	a := p.byName[name]
	if a == nil {
		return 0
	}
	return a.count(func(t *simTask) bool { return !terminal(t.state) })
}

// Registered counts the agents registered now.
func (p *Pool) Registered() int {
	n := 0
	for _, a := range p.agents {
		a.mu.Lock()
		if a.id != "" {
			n++
		}
		a.mu.Unlock()
	}
	return n
}

// RunningTasks counts the running tasks over all agents.
func (p *Pool) RunningTasks() int {
	n := 0
	for _, a := range p.agents {
		n += a.count(func(t *simTask) bool { return t.state == mesospb.TaskState_TASK_RUNNING })
	}
	return n
}

// PendingUpdates counts the updates the frameworks have not acknowledged.
func (p *Pool) PendingUpdates() int {
	n := 0
	for _, a := range p.agents {
		a.mu.Lock()
		for _, q := range a.queues {
			n += len(q)
		}
		a.mu.Unlock()
	}
	return n
}

func (a *simAgent) count(pred func(*simTask) bool) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, t := range a.tasks {
		if pred(t) {
			n++
		}
	}
	return n
}

func terminal(s mesospb.TaskState) bool {
	switch s {
	case mesospb.TaskState_TASK_FINISHED, mesospb.TaskState_TASK_FAILED, mesospb.TaskState_TASK_KILLED,
		mesospb.TaskState_TASK_ERROR, mesospb.TaskState_TASK_LOST, mesospb.TaskState_TASK_DROPPED, mesospb.TaskState_TASK_GONE:
		return true
	}
	return false
}

func (a *simAgent) url() string { return "http://" + a.p.cfg.Master + masterAPIPath }

func (a *simAgent) run(ctx context.Context) {
	// Spread the first registrations so that thousands of agents do not
	// arrive in the same millisecond.
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(rand.Int63n(int64(time.Second)))):
	}
	for ctx.Err() == nil {
		removed := a.session(ctx)
		if removed {
			continue // register again at once, as a new agent
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second + time.Duration(rand.Int63n(int64(time.Second)))):
		}
	}
}

func (a *simAgent) registerCall() *agentpb.Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	info := &mesospb.AgentInfo{Hostname: proto.String(a.name), Port: proto.Int32(5051), Resources: a.p.res, Attributes: a.p.attrs}
	reg := &agentpb.Call_Register{AgentInfo: info, Endpoint: proto.String("127.0.0.1:5051"), Version: proto.String("1.11.0"),
		Capabilities: []*mesospb.AgentInfo_Capability{{Type: mesospb.AgentInfo_Capability_MULTI_ROLE.Enum()}}}
	call := &agentpb.Call{Type: agentpb.Call_REGISTER.Enum(), Register: reg}
	if a.id == "" {
		return call
	}
	call.AgentId = &mesospb.AgentID{Value: proto.String(a.id)}
	info.Id = call.AgentId
	for _, fw := range sortedKeys(a.frameworks) {
		reg.Frameworks = append(reg.Frameworks, a.frameworks[fw])
		for _, e := range sortedKeys(a.executors[fw]) {
			reg.Executors = append(reg.Executors, a.executors[fw][e])
		}
	}
	keys := make([]taskKey, 0, len(a.tasks))
	for k := range a.tasks {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].fw < keys[j].fw || keys[i].fw == keys[j].fw && keys[i].task < keys[j].task
	})
	for _, k := range keys {
		t := a.tasks[k]
		task := &mesospb.Task{
			Name: t.info.Name, TaskId: t.info.TaskId, FrameworkId: &mesospb.FrameworkID{Value: proto.String(k.fw)},
			ExecutorId: t.exec, AgentId: call.AgentId, State: t.state.Enum(), Resources: t.info.GetResources(),
		}
		if task.Name == nil {
			task.Name = proto.String(k.task)
		}
		if q := a.queues[k]; len(q) > 0 {
			task.StatusUpdateState, task.StatusUpdateUuid = q[0].State, q[0].Uuid
			task.Statuses = []*mesospb.TaskStatus{q[len(q)-1]}
		}
		reg.Tasks = append(reg.Tasks, task)
	}
	return call
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// session registers and serves the event stream until it ends. It reports
// whether the master removed the agent.
func (a *simAgent) session(ctx context.Context) bool {
	body, err := codec.Marshal(codec.Protobuf, a.registerCall())
	if err != nil {
		a.p.log.Printf("%s: cannot encode REGISTER: %v", a.name, err)
		return false
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.url(), bytes.NewReader(body))
	req.Header.Set("Content-Type", codec.MediaTypeProtobuf)
	req.Header.Set("Accept", codec.MediaTypeProtobuf)
	resp, err := a.p.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		a.p.log.Printf("%s: the master refused the registration with %s: %s", a.name, resp.Status, bytes.TrimSpace(b))
		return false
	}
	r := recordio.NewReader(resp.Body, 0)
	for {
		rec, err := r.ReadRecord()
		if err != nil {
			return false
		}
		ev := &agentpb.Event{}
		if err := codec.Unmarshal(codec.Protobuf, rec, ev); err != nil {
			return false
		}
		if ev.GetType() == agentpb.Event_SHUTDOWN {
			a.mu.Lock()
			a.id = ""
			a.reset()
			a.mu.Unlock()
			return true
		}
		a.handle(ctx, ev)
	}
}

func (a *simAgent) handle(ctx context.Context, ev *agentpb.Event) {
	switch ev.GetType() {
	case agentpb.Event_REGISTERED:
		a.mu.Lock()
		a.id = ev.GetRegistered().GetAgentId().GetValue()
		heads := a.headsLocked()
		a.mu.Unlock()
		a.sendAll(ctx, heads)
	case agentpb.Event_ERROR:
		a.p.log.Printf("%s: the master refused the registration: %s", a.name, ev.GetError().GetMessage())
	case agentpb.Event_RUN_TASK:
		rt := ev.GetRunTask()
		a.started(ctx, rt.GetFrameworkInfo(), rt.GetTask().GetExecutor(), []*mesospb.TaskInfo{rt.GetTask()})
	case agentpb.Event_RUN_TASK_GROUP:
		rg := ev.GetRunTaskGroup()
		a.started(ctx, rg.GetFrameworkInfo(), rg.GetExecutorInfo(), rg.GetTaskGroup().GetTasks())
	case agentpb.Event_KILL_TASK:
		k := ev.GetKillTask()
		a.killed(ctx, k.GetFrameworkId().GetValue(), func(key taskKey, _ *simTask) bool { return key.task == k.GetTaskId().GetValue() })
	case agentpb.Event_SHUTDOWN_EXECUTOR:
		s := ev.GetShutdownExecutor()
		fw, exec := s.GetFrameworkId().GetValue(), s.GetExecutorId().GetValue()
		// A well-behaved executor kills its tasks, then exits.
		a.killed(ctx, fw, func(key taskKey, t *simTask) bool {
			return t.exec.GetValue() == exec || t.exec == nil && key.task == exec
		})
		a.mu.Lock()
		_, custom := a.executors[fw][exec]
		delete(a.executors[fw], exec)
		a.mu.Unlock()
		if custom {
			go a.send(ctx, &agentpb.Call{Type: agentpb.Call_EXECUTOR_EXITED.Enum(), ExecutorExited: &agentpb.Call_ExecutorExited{
				FrameworkId: s.FrameworkId, ExecutorId: s.ExecutorId, Status: proto.Int32(0)}})
		}
	case agentpb.Event_SHUTDOWN_FRAMEWORK:
		fw := ev.GetShutdownFramework().GetFrameworkId().GetValue()
		a.mu.Lock()
		for k := range a.tasks {
			if k.fw == fw {
				delete(a.tasks, k)
				delete(a.queues, k)
			}
		}
		delete(a.frameworks, fw)
		delete(a.executors, fw)
		a.mu.Unlock()
	case agentpb.Event_ACKNOWLEDGE:
		ack := ev.GetAcknowledge()
		k := taskKey{ack.GetFrameworkId().GetValue(), ack.GetTaskId().GetValue()}
		a.mu.Lock()
		var next *mesospb.TaskStatus
		if q := a.queues[k]; len(q) > 0 && bytes.Equal(q[0].GetUuid(), ack.GetUuid()) {
			q = q[1:]
			if len(q) == 0 {
				delete(a.queues, k)
				if t := a.tasks[k]; t != nil && terminal(t.state) {
					delete(a.tasks, k)
				}
			} else {
				a.queues[k] = q
				next = q[0]
			}
		}
		a.mu.Unlock()
		if next != nil {
			go a.send(ctx, updateCall(k.fw, next))
		}
	case agentpb.Event_PING:
		go a.send(ctx, &agentpb.Call{Type: agentpb.Call_PONG.Enum(), Pong: &agentpb.Call_Pong{Sequence: ev.GetPing().Sequence}})
	case agentpb.Event_UPDATE_FRAMEWORK:
		fi := ev.GetUpdateFramework().GetFrameworkInfo()
		a.mu.Lock()
		if _, ok := a.frameworks[fi.GetId().GetValue()]; ok {
			a.frameworks[fi.GetId().GetValue()] = fi
		}
		a.mu.Unlock()
	}
}

func (a *simAgent) started(ctx context.Context, fi *mesospb.FrameworkInfo, ei *mesospb.ExecutorInfo, tasks []*mesospb.TaskInfo) {
	fw := fi.GetId().GetValue()
	a.mu.Lock()
	a.frameworks[fw] = fi
	var exec *mesospb.ExecutorID
	if ei != nil {
		exec = ei.ExecutorId
		if a.executors[fw] == nil {
			a.executors[fw] = map[string]*mesospb.ExecutorInfo{}
		}
		if ei.FrameworkId == nil {
			ei = proto.Clone(ei).(*mesospb.ExecutorInfo)
			ei.FrameworkId = fi.GetId()
		}
		a.executors[fw][exec.GetValue()] = ei
	}
	var out []*agentpb.Call
	for _, t := range tasks {
		k := taskKey{fw, t.GetTaskId().GetValue()}
		a.tasks[k] = &simTask{info: t, exec: exec, state: mesospb.TaskState_TASK_RUNNING}
		if c := a.enqueueLocked(k, exec, mesospb.TaskState_TASK_RUNNING, ""); c != nil {
			out = append(out, c)
		}
	}
	a.mu.Unlock()
	a.sendAll(ctx, out)
}

func (a *simAgent) killed(ctx context.Context, fw string, match func(taskKey, *simTask) bool) {
	a.mu.Lock()
	var out []*agentpb.Call
	for k, t := range a.tasks {
		if k.fw != fw || terminal(t.state) || !match(k, t) {
			continue
		}
		t.state = mesospb.TaskState_TASK_KILLED
		if c := a.enqueueLocked(k, t.exec, mesospb.TaskState_TASK_KILLED, "Killed (simulated agent)"); c != nil {
			out = append(out, c)
		}
	}
	a.mu.Unlock()
	a.sendAll(ctx, out)
}

// enqueueLocked queues an executor's update; it returns the call to send
// now when the update is the head of its task's queue.
func (a *simAgent) enqueueLocked(k taskKey, exec *mesospb.ExecutorID, state mesospb.TaskState, msg string) *agentpb.Call {
	st := &mesospb.TaskStatus{
		TaskId: &mesospb.TaskID{Value: proto.String(k.task)}, State: state.Enum(),
		Source: mesospb.TaskStatus_SOURCE_EXECUTOR.Enum(), AgentId: &mesospb.AgentID{Value: proto.String(a.id)},
		ExecutorId: exec, Uuid: uuid.New(), Timestamp: proto.Float64(float64(time.Now().UnixNano()) / 1e9),
	}
	if msg != "" {
		st.Message = proto.String(msg)
	}
	a.queues[k] = append(a.queues[k], st)
	if len(a.queues[k]) == 1 {
		return updateCall(k.fw, st)
	}
	return nil
}

func updateCall(fw string, st *mesospb.TaskStatus) *agentpb.Call {
	return &agentpb.Call{Type: agentpb.Call_STATUS_UPDATE.Enum(), StatusUpdate: &agentpb.Call_StatusUpdate{
		FrameworkId: &mesospb.FrameworkID{Value: proto.String(fw)}, Status: st}}
}

func (a *simAgent) headsLocked() []*agentpb.Call {
	out := make([]*agentpb.Call, 0, len(a.queues))
	for k, q := range a.queues {
		out = append(out, updateCall(k.fw, q[0]))
	}
	return out
}

func (a *simAgent) sendAll(ctx context.Context, calls []*agentpb.Call) {
	if len(calls) == 0 {
		return
	}
	go func() {
		for _, c := range calls {
			a.send(ctx, c)
		}
	}()
}

// retryLoop resends, every RetryInterval, the head of every task's queue
// of every agent until the framework acknowledges it. One loop for the
// pool (with a few senders) keeps thousands of idle agents cheap.
func (p *Pool) retryLoop(ctx context.Context) {
	t := time.NewTicker(p.cfg.RetryInterval)
	defer t.Stop()
	type job struct {
		a    *simAgent
		call *agentpb.Call
	}
	jobs := make(chan job)
	for i := 0; i < 16; i++ {
		go func() {
			for j := range jobs {
				j.a.send(ctx, j.call)
			}
		}()
	}
	defer close(jobs)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, a := range p.agents {
			a.mu.Lock()
			heads := a.headsLocked()
			a.mu.Unlock()
			for _, c := range heads {
				select {
				case jobs <- job{a, c}:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

func (a *simAgent) send(ctx context.Context, call *agentpb.Call) {
	a.mu.Lock()
	id := a.id
	a.mu.Unlock()
	if id == "" {
		return
	}
	call = proto.Clone(call).(*agentpb.Call)
	call.AgentId = &mesospb.AgentID{Value: proto.String(id)}
	if su := call.GetStatusUpdate(); su != nil {
		su.Status.AgentId = call.AgentId
	}
	body, err := codec.Marshal(codec.Protobuf, call)
	if err != nil {
		return
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.url(), bytes.NewReader(body))
	req.Header.Set("Content-Type", codec.MediaTypeProtobuf)
	resp, err := a.p.client.Do(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}
