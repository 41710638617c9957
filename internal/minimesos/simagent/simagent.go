// Package simagent runs many simulated Mesos agents in one process. Each
// registers with a km master over HTTP with the real agent protocol (the
// master cannot tell it from a real agent), answers pings, reports every
// task it is given as TASK_RUNNING and every kill as TASK_KILLED, and
// starts no process. It is for scheduler benchmarks on thousands of
// agents.
package simagent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
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

// Config describes the simulated agents.
type Config struct {
	Master         string // host:port
	Count          int
	Resources      string // per agent, Mesos syntax
	Attributes     string
	HostnamePrefix string // agents are <prefix>1..N
	// RetryInterval resends unacknowledged updates (5s).
	RetryInterval time.Duration
}

// Pool is a set of running simulated agents.
type Pool struct {
	cfg    Config
	res    resources.Resources
	attrs  []*mesospb.Attribute
	client *http.Client
	agents []*simAgent
}

type simAgent struct {
	p      *Pool
	name   string
	cancel context.CancelFunc

	mu      sync.Mutex
	id      string
	tasks   map[string]map[string]bool // framework -> task -> live
	pending map[string]*agentpb.Call   // uuid -> update not yet acknowledged
}

// New validates the configuration.
func New(cfg Config) (*Pool, error) {
	if cfg.Master == "" || cfg.Count <= 0 {
		return nil, fmt.Errorf("a master and a count of agents are needed")
	}
	if cfg.HostnamePrefix == "" {
		cfg.HostnamePrefix = "sim-agent-"
	}
	if cfg.RetryInterval <= 0 {
		cfg.RetryInterval = 5 * time.Second
	}
	res, err := resources.Parse(cfg.Resources, "*")
	if err != nil {
		return nil, fmt.Errorf("--resources: %v", err)
	}
	attrs, err := resources.ParseAttributes(cfg.Attributes)
	if err != nil {
		return nil, fmt.Errorf("--attributes: %v", err)
	}
	tr := &http.Transport{
		MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	}
	p := &Pool{cfg: cfg, res: res, attrs: attrs, client: &http.Client{Transport: tr}}
	for i := 1; i <= cfg.Count; i++ {
		p.agents = append(p.agents, &simAgent{p: p, name: fmt.Sprintf("%s%d", cfg.HostnamePrefix, i),
			tasks: map[string]map[string]bool{}, pending: map[string]*agentpb.Call{}})
	}
	return p, nil
}

// Run runs every agent until ctx ends.
func (p *Pool) Run(ctx context.Context) {
	var wg sync.WaitGroup
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

// Kill stops one agent as if its machine died: its connection closes and
// it answers nothing more.
func (p *Pool) Kill(name string) bool {
	for _, a := range p.agents {
		if a.name == name {
			a.mu.Lock()
			cancel := a.cancel
			a.mu.Unlock()
			if cancel != nil {
				cancel()
				return true
			}
		}
	}
	return false
}

// TasksOn counts the live tasks of one agent.
func (p *Pool) TasksOn(name string) int {
	for _, a := range p.agents {
		if a.name == name {
			a.mu.Lock()
			n := 0
			for _, ts := range a.tasks {
				for _, live := range ts {
					if live {
						n++
					}
				}
			}
			a.mu.Unlock()
			return n
		}
	}
	return 0
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

// RunningTasks counts the live tasks over all agents.
func (p *Pool) RunningTasks() int {
	n := 0
	for _, a := range p.agents {
		a.mu.Lock()
		for _, ts := range a.tasks {
			for _, live := range ts {
				if live {
					n++
				}
			}
		}
		a.mu.Unlock()
	}
	return n
}

func (a *simAgent) url() string { return "http://" + a.p.cfg.Master + "/km/agent/api/v1" }

func (a *simAgent) run(ctx context.Context) {
	// Spread the first registrations so thousands of agents do not arrive
	// in the same millisecond.
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(rand.Int63n(int64(time.Second)))):
	}
	go a.retryLoop(ctx)
	for ctx.Err() == nil {
		a.session(ctx)
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
	call := &agentpb.Call{Type: agentpb.Call_REGISTER.Enum(), Register: &agentpb.Call_Register{
		AgentInfo: info, Endpoint: proto.String("127.0.0.1:5051"), Version: proto.String("1.11.0-sim")}}
	if a.id != "" {
		call.AgentId = &mesospb.AgentID{Value: proto.String(a.id)}
		info.Id = call.AgentId
		for fw, ts := range a.tasks {
			for id, live := range ts {
				if live {
					call.Register.Tasks = append(call.Register.Tasks, &mesospb.Task{
						Name: proto.String(id), TaskId: &mesospb.TaskID{Value: proto.String(id)},
						FrameworkId: &mesospb.FrameworkID{Value: proto.String(fw)}, AgentId: call.AgentId,
						State: mesospb.TaskState_TASK_RUNNING.Enum(),
					})
				}
			}
		}
	}
	return call
}

func (a *simAgent) session(ctx context.Context) {
	body, _ := codec.Marshal(codec.Protobuf, a.registerCall())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.url(), bytes.NewReader(body))
	req.Header.Set("Content-Type", codec.MediaTypeProtobuf)
	req.Header.Set("Accept", codec.MediaTypeProtobuf)
	resp, err := a.p.client.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return
	}
	r := recordio.NewReader(resp.Body, 0)
	for {
		rec, err := r.ReadRecord()
		if err != nil {
			return
		}
		ev := &agentpb.Event{}
		if err := codec.Unmarshal(codec.Protobuf, rec, ev); err != nil {
			return
		}
		a.handle(ctx, ev)
	}
}

func (a *simAgent) handle(ctx context.Context, ev *agentpb.Event) {
	switch ev.GetType() {
	case agentpb.Event_REGISTERED:
		a.mu.Lock()
		a.id = ev.GetRegistered().GetAgentId().GetValue()
		a.mu.Unlock()
		a.resendAll(ctx)
	case agentpb.Event_SHUTDOWN:
		a.mu.Lock()
		a.id = ""
		a.tasks = map[string]map[string]bool{}
		a.pending = map[string]*agentpb.Call{}
		a.mu.Unlock()
	case agentpb.Event_RUN_TASK:
		rt := ev.GetRunTask()
		a.started(ctx, rt.GetFrameworkInfo().GetId().GetValue(), rt.GetTask())
	case agentpb.Event_RUN_TASK_GROUP:
		rg := ev.GetRunTaskGroup()
		for _, t := range rg.GetTaskGroup().GetTasks() {
			a.started(ctx, rg.GetFrameworkInfo().GetId().GetValue(), t)
		}
	case agentpb.Event_KILL_TASK:
		k := ev.GetKillTask()
		a.ended(ctx, k.GetFrameworkId().GetValue(), k.GetTaskId().GetValue(), mesospb.TaskState_TASK_KILLED, "Killed (simulated agent)")
	case agentpb.Event_SHUTDOWN_FRAMEWORK:
		fw := ev.GetShutdownFramework().GetFrameworkId().GetValue()
		a.mu.Lock()
		delete(a.tasks, fw)
		a.mu.Unlock()
	case agentpb.Event_ACKNOWLEDGE:
		a.mu.Lock()
		delete(a.pending, string(ev.GetAcknowledge().GetUuid()))
		a.mu.Unlock()
	case agentpb.Event_PING:
		go a.send(ctx, &agentpb.Call{Type: agentpb.Call_PONG.Enum(), Pong: &agentpb.Call_Pong{Sequence: ev.GetPing().Sequence}})
	}
}

func (a *simAgent) started(ctx context.Context, fw string, t *mesospb.TaskInfo) {
	a.mu.Lock()
	if a.tasks[fw] == nil {
		a.tasks[fw] = map[string]bool{}
	}
	a.tasks[fw][t.GetTaskId().GetValue()] = true
	a.mu.Unlock()
	a.update(ctx, fw, t.GetTaskId().GetValue(), t.GetExecutor().GetExecutorId(), mesospb.TaskState_TASK_RUNNING, "")
}

func (a *simAgent) ended(ctx context.Context, fw, taskID string, state mesospb.TaskState, msg string) {
	a.mu.Lock()
	live := a.tasks[fw][taskID]
	if live {
		a.tasks[fw][taskID] = false
	}
	a.mu.Unlock()
	if live {
		a.update(ctx, fw, taskID, nil, state, msg)
	}
}

func (a *simAgent) update(ctx context.Context, fw, taskID string, exec *mesospb.ExecutorID, state mesospb.TaskState, msg string) {
	a.mu.Lock()
	id := a.id
	a.mu.Unlock()
	u := uuid.New()
	st := &mesospb.TaskStatus{
		TaskId: &mesospb.TaskID{Value: proto.String(taskID)}, State: state.Enum(),
		Source: mesospb.TaskStatus_SOURCE_EXECUTOR.Enum(), AgentId: &mesospb.AgentID{Value: proto.String(id)},
		ExecutorId: exec, Uuid: u, Timestamp: proto.Float64(float64(time.Now().UnixNano()) / 1e9),
	}
	if msg != "" {
		st.Message = proto.String(msg)
	}
	call := &agentpb.Call{Type: agentpb.Call_STATUS_UPDATE.Enum(), StatusUpdate: &agentpb.Call_StatusUpdate{
		FrameworkId: &mesospb.FrameworkID{Value: proto.String(fw)}, Status: st}}
	a.mu.Lock()
	a.pending[string(u)] = call
	a.mu.Unlock()
	go a.send(ctx, call)
}

func (a *simAgent) resendAll(ctx context.Context) {
	a.mu.Lock()
	calls := make([]*agentpb.Call, 0, len(a.pending))
	for _, c := range a.pending {
		calls = append(calls, c)
	}
	a.mu.Unlock()
	for _, c := range calls {
		go a.send(ctx, c)
	}
}

func (a *simAgent) retryLoop(ctx context.Context) {
	t := time.NewTicker(a.p.cfg.RetryInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.resendAll(ctx)
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
	call.AgentId = &mesospb.AgentID{Value: proto.String(id)}
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
