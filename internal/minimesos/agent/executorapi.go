package agent

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/uuid"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
	"github.com/k8sm/k8sm/internal/minimesos/eventstream"
)

type eventStream = eventstream.Stream

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, msg)
}

// validateExecutorCall is Mesos' executor::Call validation, with its
// messages (testdata/mesos-recordings/executor-session.txt).
func validateExecutorCall(c *executorpb.Call) string {
	if c.Type == nil {
		return "Expecting 'type' to be present"
	}
	switch c.GetType() {
	case executorpb.Call_SUBSCRIBE:
		if c.Subscribe == nil {
			return "Expecting 'subscribe' to be present"
		}
	case executorpb.Call_UPDATE:
		if c.Update == nil {
			return "Expecting 'update' to be present"
		}
		st := c.GetUpdate().GetStatus()
		if st.GetState() == mesospb.TaskState_TASK_STAGING {
			return fmt.Sprintf("Received TASK_STAGING from executor %s of framework %s which is not allowed", c.GetExecutorId().GetValue(), c.GetFrameworkId().GetValue())
		}
		if st.Uuid == nil {
			return "Expecting 'uuid' to be present"
		}
		if !uuid.Valid(st.GetUuid()) {
			return "Not a valid UUID"
		}
		if st.GetSource() != mesospb.TaskStatus_SOURCE_EXECUTOR {
			return "Received Call from executor " + c.GetExecutorId().GetValue() + " of framework " + c.GetFrameworkId().GetValue() + " with invalid source, expecting 'SOURCE_EXECUTOR'"
		}
		if id := st.GetExecutorId().GetValue(); id != "" && id != c.GetExecutorId().GetValue() {
			return "ExecutorID in Call: " + c.GetExecutorId().GetValue() + " does not match ExecutorID in TaskStatus: " + id
		}
	case executorpb.Call_MESSAGE:
		if c.Message == nil {
			return "Expecting 'message' to be present"
		}
	case executorpb.Call_HEARTBEAT:
	default:
		return "Unexpected call type " + c.GetType().String()
	}
	return ""
}

func (a *Agent) serveExecutorAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		httpError(w, http.StatusMethodNotAllowed, fmt.Sprintf("405 Method Not Allowed. Expecting one of { 'POST' }, but received '%s'.", r.Method))
		return
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		httpError(w, http.StatusBadRequest, "Expecting 'Content-Type' to be present")
		return
	}
	enc, ok := codec.FromContentType(ct)
	if !ok {
		httpError(w, http.StatusUnsupportedMediaType, "Expecting 'Content-Type' of application/json or application/x-protobuf")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		httpError(w, http.StatusBadRequest, "Failed to read the body: "+err.Error())
		return
	}
	call := &executorpb.Call{}
	if err := codec.Unmarshal(enc, body, call); err != nil {
		var se *codec.SyntaxError
		var ce *codec.ConversionError
		switch {
		case errors.As(err, &se):
			httpError(w, http.StatusBadRequest, "Failed to parse body into JSON: "+se.Err.Error())
		case errors.As(err, &ce):
			httpError(w, http.StatusBadRequest, "Failed to convert JSON into Call protobuf: "+ce.Reason)
		default:
			httpError(w, http.StatusBadRequest, "Failed to parse body into Call protobuf")
		}
		return
	}
	if call.GetType() == executorpb.Call_HEARTBEAT {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if msg := validateExecutorCall(call); msg != "" {
		httpError(w, http.StatusBadRequest, "Failed to validate Executor::Call: "+msg)
		return
	}
	a.mu.Lock()
	fw := a.frameworks[call.GetFrameworkId().GetValue()]
	if fw == nil {
		a.mu.Unlock()
		httpError(w, http.StatusBadRequest, "Framework cannot be found")
		return
	}
	e := fw.executors[call.GetExecutorId().GetValue()]
	if e == nil {
		a.mu.Unlock()
		httpError(w, http.StatusBadRequest, "Executor cannot be found")
		return
	}
	switch call.GetType() {
	case executorpb.Call_SUBSCRIBE:
		a.mu.Unlock()
		a.subscribeExecutor(w, r, enc, fw, e, call.GetSubscribe())
		return
	case executorpb.Call_UPDATE:
		if e.state == launching {
			a.mu.Unlock()
			httpError(w, http.StatusForbidden, "Executor is not subscribed")
			return
		}
		a.executorUpdateLocked(fw, e, call.GetUpdate().GetStatus())
		a.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	case executorpb.Call_MESSAGE:
		a.mu.Unlock()
		go a.sendToMaster(r.Context(), &agentpb.Call{
			Type: agentpb.Call_FRAMEWORK_MESSAGE.Enum(),
			FrameworkMessage: &agentpb.Call_FrameworkMessage{
				FrameworkId: call.GetFrameworkId(), ExecutorId: call.GetExecutorId(), Data: call.GetMessage().GetData(),
			},
		})
		w.WriteHeader(http.StatusAccepted)
	}
}

// executorUpdateLocked takes an executor's update into the status update
// manager, then tells the executor it is taken (ACKNOWLEDGED).
func (a *Agent) executorUpdateLocked(fw *framework, e *executor, st *mesospb.TaskStatus) {
	st = proto.Clone(st).(*mesospb.TaskStatus)
	if st.AgentId == nil {
		st.AgentId = &mesospb.AgentID{Value: proto.String(a.agentID)}
	}
	if st.Timestamp == nil {
		st.Timestamp = proto.Float64(float64(time.Now().UnixNano()) / 1e9)
	}
	// As Mesos, the agent adds what it knows of the container.
	st.ContainerStatus = &mesospb.ContainerStatus{
		ContainerId: &mesospb.ContainerID{Value: proto.String(e.containerID)},
		NetworkInfos: []*mesospb.NetworkInfo{{IpAddresses: []*mesospb.NetworkInfo_IPAddress{
			{Protocol: mesospb.NetworkInfo_IPv4.Enum(), IpAddress: proto.String(a.cfg.AdvertiseIP)}}}},
		ExecutorPid: proto.Uint32(uint32(e.pid)),
	}
	if t := e.tasks[st.GetTaskId().GetValue()]; t != nil {
		t.state, t.latest = st.GetState(), st
	}
	a.sum.enqueueLocked(fw.info.GetId().GetValue(), st)
	if e.stream != nil {
		e.stream.Send(&executorpb.Event{
			Type:         executorpb.Event_ACKNOWLEDGED.Enum(),
			Acknowledged: &executorpb.Event_Acknowledged{TaskId: st.TaskId, Uuid: st.Uuid},
		})
	}
}

// subscribeExecutor opens an executor's event stream: SUBSCRIBED, then the
// tasks queued for it.
func (a *Agent) subscribeExecutor(w http.ResponseWriter, r *http.Request, enc codec.Encoding, fw *framework, e *executor, sub *executorpb.Call_Subscribe) {
	accept, ok := codec.Negotiate(r.Header.Get("Accept"))
	if !ok {
		httpError(w, http.StatusNotAcceptable, "Expecting 'Accept' to allow application/json or application/x-protobuf")
		return
	}
	st := eventstream.New(accept)
	a.mu.Lock()
	if e.state >= terminating {
		a.mu.Unlock()
		httpError(w, http.StatusBadRequest, "Executor is terminating")
		return
	}
	if e.stream != nil {
		e.stream.Close() // a resubscription replaces the old stream
	}
	e.stream = st
	e.state = running
	st.Send(&executorpb.Event{
		Type: executorpb.Event_SUBSCRIBED.Enum(),
		Subscribed: &executorpb.Event_Subscribed{
			ExecutorInfo:  e.info,
			FrameworkInfo: fw.info,
			AgentInfo:     a.agentInfo(),
			ContainerId:   &mesospb.ContainerID{Value: proto.String(e.containerID)},
		},
	})
	// Updates the executor sent while disconnected that the agent never
	// got: take them now (by uuid, once).
	for _, up := range sub.GetUnacknowledgedUpdates() {
		if !a.sum.hasLocked(fw.info.GetId().GetValue(), up.GetStatus()) && uuid.Valid(up.GetStatus().GetUuid()) {
			a.executorUpdateLocked(fw, e, up.GetStatus())
		}
	}
	for _, q := range e.queued {
		a.deliverLocked(e, q)
	}
	e.queued = nil
	a.mu.Unlock()

	w.Header().Set("Content-Type", accept.MediaType())
	w.WriteHeader(http.StatusOK)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(a.cfg.ExecutorHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if !st.Send(&executorpb.Event{Type: executorpb.Event_HEARTBEAT.Enum()}) {
					return
				}
			}
		}
	}()
	st.Serve(w, r)
	close(done)
	a.mu.Lock()
	if e.stream == st {
		e.stream = nil
	}
	a.mu.Unlock()
}
