package master

import (
	"net/http"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
	"github.com/k8sm/k8sm/internal/minimesos/eventstream"
)

// AgentAPIPath is where km's agents talk to the master (agentpb).
const AgentAPIPath = "/km/agent/api/v1"

func validateAgentCall(c *agentpb.Call) string {
	missing := func(name string) string { return "Expecting '" + name + "' to be present" }
	if c.Type == nil {
		return missing("type")
	}
	if c.GetType() != agentpb.Call_REGISTER && c.AgentId == nil {
		return missing("agent_id")
	}
	switch c.GetType() {
	case agentpb.Call_REGISTER:
		if c.Register == nil {
			return missing("register")
		}
	case agentpb.Call_STATUS_UPDATE:
		if c.StatusUpdate == nil {
			return missing("status_update")
		}
		if !validUUID(c.GetStatusUpdate().GetStatus().GetUuid()) {
			return "status_update.status.uuid must be a valid UUID"
		}
	case agentpb.Call_EXECUTOR_EXITED:
		if c.ExecutorExited == nil {
			return missing("executor_exited")
		}
	case agentpb.Call_FRAMEWORK_MESSAGE:
		if c.FrameworkMessage == nil {
			return missing("framework_message")
		}
	case agentpb.Call_PONG:
	default:
		return "Unknown call type " + c.GetType().String()
	}
	return ""
}

func (m *Master) serveAgent(w http.ResponseWriter, r *http.Request) {
	call := &agentpb.Call{}
	if _, ok := readCall(w, r, call, func(enc codec.Encoding, b []byte) error { return codec.Unmarshal(enc, b, call) }, "agent Call"); !ok {
		return
	}
	if msg := validateAgentCall(call); msg != "" {
		httpError(w, http.StatusBadRequest, "Failed to validate agent Call: "+msg)
		return
	}
	if call.GetType() == agentpb.Call_REGISTER {
		m.registerAgent(w, r, call)
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.st
	a := s.agents[call.GetAgentId().GetValue()]
	if a == nil {
		// The agent must register (again) before anything else.
		httpError(w, http.StatusNotFound, "Agent "+call.GetAgentId().GetValue()+" is not registered; register first")
		return
	}
	switch call.GetType() {
	case agentpb.Call_STATUS_UPDATE:
		s.statusUpdate(a, call.GetStatusUpdate())
	case agentpb.Call_EXECUTOR_EXITED:
		s.executorExited(a, call.GetExecutorExited())
	case agentpb.Call_FRAMEWORK_MESSAGE:
		s.executorToFramework(a, call.GetFrameworkMessage())
	case agentpb.Call_PONG:
		s.pong(a)
	}
	w.WriteHeader(http.StatusAccepted)
}

func (m *Master) registerAgent(w http.ResponseWriter, r *http.Request, call *agentpb.Call) {
	enc, ok := codec.Negotiate(r.Header.Get("Accept"))
	if !ok {
		httpError(w, http.StatusNotAcceptable, "Expecting 'Accept' to allow application/json or application/x-protobuf")
		return
	}
	st := eventstream.New(enc)
	m.mu.Lock()
	refusal := m.st.register(call, st)
	var a *agent
	if refusal != nil {
		st.Send(refusal)
		st.Close()
	} else {
		for _, ag := range m.st.agents {
			if ag.stream == st {
				a = ag
			}
		}
	}
	m.mu.Unlock()

	w.Header().Set("Content-Type", enc.MediaType())
	w.WriteHeader(http.StatusOK)
	st.Serve(w, r)
	if a != nil {
		m.mu.Lock()
		m.st.agentStreamClosed(a, st)
		m.mu.Unlock()
	}
}
