package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
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

// registrationLoop keeps the agent registered: REGISTER, serve the event
// stream, and register again (with the checkpointed ID and what runs here)
// when it breaks, with jittered exponential backoff.
func (a *Agent) registrationLoop(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := a.registerOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		a.cfg.Logger.Printf("connection to master %s ended: %v; registering again", a.cfg.Master, err)
		if time.Since(start) > a.cfg.RegistrationBackoffMax {
			backoff = 500 * time.Millisecond
		}
		d := backoff/2 + time.Duration(rand.Int63n(int64(backoff/2)+1))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		case <-a.wake:
		}
		backoff *= 2
		if backoff > a.cfg.RegistrationBackoffMax {
			backoff = a.cfg.RegistrationBackoffMax
		}
	}
}

func (a *Agent) registerCall() *agentpb.Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	reg := &agentpb.Call_Register{
		AgentInfo: a.agentInfo(),
		Endpoint:  proto.String(a.Endpoint()),
		Version:   proto.String(Version),
		Capabilities: []*mesospb.AgentInfo_Capability{
			{Type: mesospb.AgentInfo_Capability_MULTI_ROLE.Enum()},
		},
	}
	for _, fw := range a.frameworks {
		reg.Frameworks = append(reg.Frameworks, fw.info)
		for _, e := range fw.executors {
			if !e.command {
				reg.Executors = append(reg.Executors, e.info)
			}
			for _, t := range e.tasks {
				reg.Tasks = append(reg.Tasks, t.toTask(fw.info, e))
			}
		}
	}
	call := &agentpb.Call{Type: agentpb.Call_REGISTER.Enum(), Register: reg}
	if a.agentID != "" {
		call.AgentId = &mesospb.AgentID{Value: proto.String(a.agentID)}
	}
	return call
}

func (a *Agent) registerOnce(ctx context.Context) error {
	body, err := codec.MarshalJSON(a.registerCall())
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, _ := http.NewRequestWithContext(sctx, http.MethodPost, a.masterURL(), bytes.NewReader(body))
	req.Header.Set("Content-Type", codec.MediaTypeJSON)
	req.Header.Set("Accept", codec.MediaTypeJSON)
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the master: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("master answered %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	// Missed pings make the connection dead; the timeout is set by
	// REGISTERED (ping timeout × max pings).
	watch := time.AfterFunc(5*time.Minute, cancel)
	defer watch.Stop()
	var deadAfter time.Duration = 5 * time.Minute
	r := recordio.NewReader(resp.Body, 0)
	defer func() {
		a.mu.Lock()
		a.registered = false
		a.mu.Unlock()
	}()
	for {
		rec, err := r.ReadRecord()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("the master closed the connection")
			}
			return err
		}
		watch.Reset(deadAfter)
		ev := &agentpb.Event{}
		if err := codec.UnmarshalJSON(rec, ev); err != nil {
			return fmt.Errorf("undecodable event from the master: %v", err)
		}
		switch ev.GetType() {
		case agentpb.Event_REGISTERED:
			reg := ev.GetRegistered()
			id := reg.GetAgentId().GetValue()
			if t := reg.GetPingTimeoutSeconds(); t > 0 {
				deadAfter = time.Duration(t*float64(time.Second)) * time.Duration(reg.GetMaxPingTimeouts()+1)
				watch.Reset(deadAfter)
			}
			a.mu.Lock()
			fresh := a.agentID != id
			a.agentID = id
			a.masterInfo = reg.GetMasterInfo()
			a.registered = true
			a.mu.Unlock()
			if fresh {
				a.saveAgentID(id)
			}
			a.cfg.Logger.Printf("registered with master %s as agent %s", a.cfg.Master, id)
			a.sum.resendAll()
		case agentpb.Event_SHUTDOWN:
			msg := ev.GetShutdown().GetMessage()
			a.cfg.Logger.Printf("the master told this agent to shut down: %s; killing every executor and registering as a new agent", msg)
			a.shutdownAll("the master removed this agent: " + msg)
			a.mu.Lock()
			a.agentID = ""
			a.frameworks = map[string]*framework{}
			a.mu.Unlock()
			a.sum.clear()
			a.forgetAgentID()
			return errors.New("removed by the master")
		case agentpb.Event_ERROR:
			return fmt.Errorf("master refused the registration: %s", ev.GetError().GetMessage())
		default:
			a.handleMasterEvent(ctx, ev)
		}
	}
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
		a.shutdownExecutor(s.GetFrameworkId().GetValue(), s.GetExecutorId().GetValue(), "the framework asked for it")
	case agentpb.Event_SHUTDOWN_FRAMEWORK:
		a.shutdownFramework(ev.GetShutdownFramework().GetFrameworkId().GetValue())
	case agentpb.Event_ACKNOWLEDGE:
		ack := ev.GetAcknowledge()
		a.sum.acknowledge(ack.GetFrameworkId().GetValue(), ack.GetTaskId().GetValue(), ack.GetUuid())
	case agentpb.Event_FRAMEWORK_MESSAGE:
		m := ev.GetFrameworkMessage()
		a.messageToExecutor(m.GetFrameworkId().GetValue(), m.GetExecutorId().GetValue(), m.GetData())
	case agentpb.Event_PING:
		go a.sendToMaster(ctx, &agentpb.Call{Type: agentpb.Call_PONG.Enum(), Pong: &agentpb.Call_Pong{Sequence: ev.GetPing().Sequence}})
	case agentpb.Event_UPDATE_FRAMEWORK:
		fi := ev.GetUpdateFramework().GetFrameworkInfo()
		a.mu.Lock()
		if fw := a.frameworks[fi.GetId().GetValue()]; fw != nil {
			fw.info = fi
		}
		a.mu.Unlock()
	}
}

// sendToMaster POSTs a call with the agent's ID. It reports whether the
// master took it.
func (a *Agent) sendToMaster(ctx context.Context, call *agentpb.Call) bool {
	a.mu.Lock()
	id, up := a.agentID, a.registered
	a.mu.Unlock()
	if !up || id == "" {
		return false
	}
	call.AgentId = &mesospb.AgentID{Value: proto.String(id)}
	body, err := codec.MarshalJSON(call)
	if err != nil {
		a.cfg.Logger.Printf("cannot encode %s: %v", call.GetType(), err)
		return false
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, a.masterURL(), bytes.NewReader(body))
	req.Header.Set("Content-Type", codec.MediaTypeJSON)
	resp, err := a.httpClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode == http.StatusNotFound {
		// The master does not know us (it restarted): register again.
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
	return resp.StatusCode == http.StatusAccepted
}
