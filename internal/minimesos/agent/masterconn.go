package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

// MasterAPIPath is the master's endpoint for agents (agentpb).
const MasterAPIPath = "/km/agent/api/v1"

func (a *Agent) masterURL() string { return "http://" + a.cfg.Master + MasterAPIPath }

type deferredCall struct{ call *agentpb.Call }

// errRemoved ends a session whose master removed the agent: register again
// at once, as a new agent.
var errRemoved = errors.New("the master removed this agent")

// registrationLoop keeps the agent registered: REGISTER, then serve the
// event stream; when it breaks (or the master refuses), register again
// with the checkpointed ID and what the agent runs, after a jittered
// exponential backoff from --registration_backoff_factor up to
// --registration_backoff_max.
func (a *Agent) registrationLoop(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		registered, err := a.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if registered {
			failures = 0
		}
		if errors.Is(err, errRemoved) {
			continue
		}
		failures++
		d := backoff(a.cfg.RegistrationBackoffFactor, a.cfg.RegistrationBackoffMax, failures)
		a.log.Printf("master %s: %v; registering again in %v", a.cfg.Master, err, d.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-a.clock.After(d):
		case <-a.regWake:
		}
	}
}

// backoff is the wait before attempt n+1: factor·2^(n-1) capped at max,
// jittered down to half of it so that many agents do not come back at
// once.
func backoff(factor, limit time.Duration, n int) time.Duration {
	d := factor
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	if d > limit {
		d = limit
	}
	return d/2 + time.Duration(rand.Int63n(int64(d/2)+1))
}

// registerCallLocked is REGISTER with the agent's ID (if it has one) and
// everything it runs: frameworks, custom executors and every task with its
// latest state, including tasks whose terminal update is not acknowledged.
func (a *Agent) registerCallLocked() *agentpb.Call {
	reg := &agentpb.Call_Register{
		AgentInfo: a.agentInfoLocked(),
		Endpoint:  proto.String(a.Endpoint()),
		Version:   proto.String(Version),
		Capabilities: []*mesospb.AgentInfo_Capability{
			{Type: mesospb.AgentInfo_Capability_MULTI_ROLE.Enum()},
		},
	}
	agentID := &mesospb.AgentID{Value: proto.String(a.agentID)}
	fwIDs := make([]string, 0, len(a.frameworks))
	for id := range a.frameworks {
		fwIDs = append(fwIDs, id)
	}
	sort.Strings(fwIDs)
	for _, id := range fwIDs {
		fw := a.frameworks[id]
		if fw.terminating {
			continue
		}
		reg.Frameworks = append(reg.Frameworks, fw.info)
		execIDs := make([]string, 0, len(fw.executors))
		for eid := range fw.executors {
			execIDs = append(execIDs, eid)
		}
		sort.Strings(execIDs)
		reported := map[string]bool{}
		addTasks := func(e *executor) {
			for _, tid := range sortedTaskIDs(e.tasks) {
				if reported[tid] {
					continue
				}
				reported[tid] = true
				reg.Tasks = append(reg.Tasks, a.taskMessageLocked(fw, e, e.tasks[tid].info, e.tasks[tid].state, agentID))
			}
		}
		for _, eid := range execIDs {
			e := fw.executors[eid]
			if !e.command {
				reg.Executors = append(reg.Executors, e.info)
			}
			addTasks(e)
		}
		for i := len(fw.completed) - 1; i >= 0; i-- {
			addTasks(fw.completed[i])
		}
	}
	// Tasks the agent only knows from their update streams (a refused
	// launch, a kill of an unknown task).
	for _, k := range a.sum.sortedKeys() {
		s := a.sum.streams[k]
		fw := a.frameworks[k.fw]
		if fw == nil || s.info == nil {
			continue
		}
		if e, _ := fw.findTask(k.task); e == nil {
			reg.Tasks = append(reg.Tasks, a.taskMessageLocked(fw, nil, s.info, s.latest.GetState(), agentID))
		}
	}
	call := &agentpb.Call{Type: agentpb.Call_REGISTER.Enum(), Register: reg}
	if a.agentID != "" {
		call.AgentId = agentID
	}
	return call
}

func (a *Agent) taskMessageLocked(fw *framework, e *executor, ti *mesospb.TaskInfo, state mesospb.TaskState, agentID *mesospb.AgentID) *mesospb.Task {
	t := &mesospb.Task{
		Name:        ti.Name,
		TaskId:      ti.TaskId,
		FrameworkId: &mesospb.FrameworkID{Value: proto.String(fw.id)},
		AgentId:     agentID,
		State:       state.Enum(),
		Resources:   ti.GetResources(),
		Labels:      ti.Labels,
		Discovery:   ti.Discovery,
		Container:   ti.Container,
		KillPolicy:  ti.KillPolicy,
	}
	if t.Name == nil {
		t.Name = proto.String(ti.GetTaskId().GetValue())
	}
	if e != nil && !e.command {
		t.ExecutorId = e.info.ExecutorId
	}
	if s := a.sum.stream(fw.id, ti.GetTaskId().GetValue()); s != nil {
		if s.latest != nil {
			t.Statuses = []*mesospb.TaskStatus{s.latest}
		}
		if len(s.pending) > 0 {
			t.StatusUpdateState = s.pending[0].State
			t.StatusUpdateUuid = s.pending[0].Uuid
		}
	}
	return t
}

// session registers once and serves the event stream until it ends. It
// reports whether the master registered the agent.
func (a *Agent) session(ctx context.Context) (bool, error) {
	a.mu.Lock()
	call := a.registerCallLocked()
	a.mu.Unlock()
	body, err := codec.MarshalJSON(call)
	if err != nil {
		return false, fmt.Errorf("cannot encode REGISTER: %v", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	a.cancelSession = cancel
	a.mu.Unlock()
	req, _ := http.NewRequestWithContext(sctx, http.MethodPost, a.masterURL(), bytes.NewReader(body))
	req.Header.Set("Content-Type", codec.MediaTypeJSON)
	req.Header.Set("Accept", codec.MediaTypeJSON)
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return false, fmt.Errorf("cannot reach the master: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return false, fmt.Errorf("the master refused the registration with %s: %s", resp.Status, bytes.TrimSpace(b))
	}
	enc, ok := codec.FromContentType(resp.Header.Get("Content-Type"))
	if !ok {
		enc = codec.JSON
	}
	defer func() {
		a.mu.Lock()
		a.connected = false
		a.mu.Unlock()
	}()
	// A master that stops pinging is gone: give up on the connection after
	// its ping timeouts (from REGISTERED; 75 s until then, Mesos' default).
	silence := 75 * time.Second
	watch := time.AfterFunc(silence, cancel)
	defer watch.Stop()
	r := recordio.NewReader(resp.Body, 0)
	registered := false
	for {
		rec, err := r.ReadRecord()
		if err != nil {
			if ctx.Err() == nil && sctx.Err() != nil {
				a.mu.Lock()
				reset := a.resetSession
				a.resetSession = false
				a.mu.Unlock()
				if reset {
					return registered, errors.New("the master does not know this agent")
				}
				return registered, fmt.Errorf("no word from the master for %v", silence)
			}
			if errors.Is(err, io.EOF) {
				return registered, errors.New("the master closed the connection")
			}
			return registered, fmt.Errorf("the connection to the master broke: %w", err)
		}
		watch.Reset(silence)
		ev := &agentpb.Event{}
		if err := codec.Unmarshal(enc, rec, ev); err != nil {
			return registered, fmt.Errorf("undecodable event from the master: %v", err)
		}
		switch ev.GetType() {
		case agentpb.Event_REGISTERED:
			reg := ev.GetRegistered()
			if t := reg.GetPingTimeoutSeconds(); t > 0 {
				n := max(reg.GetMaxPingTimeouts(), 1)
				silence = time.Duration(t*float64(time.Second)) * time.Duration(n+1)
				watch.Reset(silence)
			}
			registered = true
			a.registered(reg)
		case agentpb.Event_SHUTDOWN:
			a.log.Printf("the master removed this agent (%s): killing every executor and registering as a new agent", ev.GetShutdown().GetMessage())
			a.removedByMaster()
			return registered, errRemoved
		case agentpb.Event_ERROR:
			return registered, fmt.Errorf("the master refused the registration: %s", ev.GetError().GetMessage())
		default:
			if !registered {
				return false, fmt.Errorf("the master sent %s before REGISTERED", ev.GetType())
			}
			a.handleMasterEvent(ctx, ev)
		}
	}
}

// registered takes REGISTERED: the ID is checkpointed (a restarted agent
// comes back with it), unacknowledged updates are resent and deferred calls
// go out.
func (a *Agent) registered(reg *agentpb.Event_Registered) {
	id := reg.GetAgentId().GetValue()
	a.mu.Lock()
	if a.agentID != "" && a.agentID != id {
		a.log.Printf("the master gave this agent the new ID %s (it was %s)", id, a.agentID)
	}
	a.agentID = id
	a.masterInfo = reg.GetMasterInfo()
	a.connected = true
	a.checkpointAgentLocked()
	a.sum.resume()
	deferred := a.deferred
	a.deferred = nil
	var removed []*framework
	for _, fid := range reg.GetRemovedFrameworks() {
		if fw := a.frameworks[fid.GetValue()]; fw != nil {
			removed = append(removed, fw)
		}
	}
	for _, fw := range removed {
		a.shutdownFrameworkLocked(fw)
	}
	a.mu.Unlock()
	a.log.Printf("registered with master %s as agent %s", a.cfg.Master, id)
	a.kickUpdates()
	for _, d := range deferred {
		a.callMaster(d.call)
	}
}

// removedByMaster is the master's SHUTDOWN: every executor is shut down,
// the checkpointed ID and state are forgotten and the agent registers again
// as a new agent.
func (a *Agent) removedByMaster() {
	a.mu.Lock()
	var waits []chan struct{}
	longest := time.Duration(0)
	for _, fw := range a.frameworks {
		fw.terminating = true
		for _, e := range fw.executors {
			a.shutdownExecutorLocked(e)
			waits = append(waits, e.exited)
			longest = max(longest, a.grace(e.info))
		}
	}
	a.mu.Unlock()
	a.waitExited(waits, longest+5*time.Second)
	a.mu.Lock()
	a.frameworks = map[string]*framework{}
	a.sum = newUpdateManager(a.cfg.StatusUpdateRetryMin, a.cfg.StatusUpdateRetryMax)
	a.deferred = nil
	a.agentID = ""
	a.connected = false
	a.forgetCheckpointsLocked()
	a.mu.Unlock()
}

func (a *Agent) handleMasterEvent(ctx context.Context, ev *agentpb.Event) {
	switch ev.GetType() {
	case agentpb.Event_RUN_TASK:
		a.runTask(ev.GetRunTask().GetFrameworkInfo(), ev.GetRunTask().GetTask())
	case agentpb.Event_RUN_TASK_GROUP:
		rg := ev.GetRunTaskGroup()
		a.runTaskGroup(rg.GetFrameworkInfo(), rg.GetExecutorInfo(), rg.GetTaskGroup())
	case agentpb.Event_KILL_TASK:
		k := ev.GetKillTask()
		a.killTask(k.GetFrameworkId().GetValue(), k.GetTaskId().GetValue(), k.GetKillPolicy())
	case agentpb.Event_SHUTDOWN_EXECUTOR:
		s := ev.GetShutdownExecutor()
		a.shutdownExecutor(s.GetFrameworkId().GetValue(), s.GetExecutorId().GetValue())
	case agentpb.Event_SHUTDOWN_FRAMEWORK:
		a.shutdownFramework(ev.GetShutdownFramework().GetFrameworkId().GetValue())
	case agentpb.Event_ACKNOWLEDGE:
		ack := ev.GetAcknowledge()
		a.acknowledge(ack.GetFrameworkId().GetValue(), ack.GetTaskId().GetValue(), ack.GetUuid())
	case agentpb.Event_FRAMEWORK_MESSAGE:
		m := ev.GetFrameworkMessage()
		a.messageToExecutor(m.GetFrameworkId().GetValue(), m.GetExecutorId().GetValue(), m.GetData())
	case agentpb.Event_PING:
		seq := ev.GetPing().Sequence
		go a.callMaster(&agentpb.Call{Type: agentpb.Call_PONG.Enum(), Pong: &agentpb.Call_Pong{Sequence: seq}})
	case agentpb.Event_UPDATE_FRAMEWORK:
		fi := ev.GetUpdateFramework().GetFrameworkInfo()
		a.mu.Lock()
		if fw := a.frameworks[fi.GetId().GetValue()]; fw != nil {
			fw.info = fi
			a.checkpointFrameworkLocked(fw)
		}
		a.mu.Unlock()
	default:
		a.log.Printf("ignoring an event of unknown type %s from the master", ev.GetType())
	}
}

// callMaster POSTs a call with the agent's ID and reports whether the
// master took it (202). A 404 means the master does not know the agent (it
// restarted): register again now.
func (a *Agent) callMaster(call *agentpb.Call) bool {
	a.mu.Lock()
	id := a.agentID
	a.mu.Unlock()
	if id == "" {
		return false
	}
	call.AgentId = &mesospb.AgentID{Value: proto.String(id)}
	body, err := codec.MarshalJSON(call)
	if err != nil {
		a.log.Printf("cannot encode %s: %v", call.GetType(), err)
		return false
	}
	req, _ := http.NewRequest(http.MethodPost, a.masterURL(), bytes.NewReader(body))
	req.Header.Set("Content-Type", codec.MediaTypeJSON)
	resp, err := a.client.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	switch {
	case resp.StatusCode == http.StatusAccepted:
		return true
	case resp.StatusCode == http.StatusNotFound:
		a.log.Printf("the master does not know this agent (%s): registering again", bytes.TrimSpace(b))
		a.wakeRegistration()
	default:
		a.log.Printf("the master refused %s with %s: %s", call.GetType(), resp.Status, bytes.TrimSpace(b))
	}
	return false
}

func executorExitedCall(fw, execID string, status int) *agentpb.Call {
	return &agentpb.Call{
		Type: agentpb.Call_EXECUTOR_EXITED.Enum(),
		ExecutorExited: &agentpb.Call_ExecutorExited{
			FrameworkId: &mesospb.FrameworkID{Value: proto.String(fw)},
			ExecutorId:  &mesospb.ExecutorID{Value: proto.String(execID)},
			Status:      proto.Int32(int32(status)),
		},
	}
}
