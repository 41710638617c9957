package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/uuid"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
	"github.com/k8sm/k8sm/internal/minimesos/eventstream"
)

const maxExecutorCallSize = 64 << 20

func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(msg)))
	w.WriteHeader(code)
	io.WriteString(w, msg)
}

// validateExecutorCall is Mesos' executor::Call validation
// (src/common/validation.cpp), in its order and with its messages
// (testdata/mesos-recordings/executor-session.txt).
func validateExecutorCall(c *executorpb.Call) string {
	if c.Type == nil {
		return "Expecting 'type' to be present"
	}
	if c.ExecutorId == nil {
		return "Expecting 'executor_id' to be present"
	}
	if c.FrameworkId == nil {
		return "Expecting 'framework_id' to be present"
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
		if st.Uuid == nil {
			return "Expecting 'uuid' to be present"
		}
		if !uuid.Valid(st.GetUuid()) {
			return "Not a valid UUID"
		}
		if st.ExecutorId != nil && st.GetExecutorId().GetValue() != c.GetExecutorId().GetValue() {
			return "ExecutorID in Call: " + c.GetExecutorId().GetValue() + " does not match ExecutorID in TaskStatus: " + st.GetExecutorId().GetValue()
		}
		if st.GetSource() != mesospb.TaskStatus_SOURCE_EXECUTOR {
			return "Received Call from executor " + c.GetExecutorId().GetValue() + " of framework " + c.GetFrameworkId().GetValue() + " with invalid source, expecting 'SOURCE_EXECUTOR'"
		}
		if st.GetState() == mesospb.TaskState_TASK_STAGING {
			return "Received TASK_STAGING from executor " + c.GetExecutorId().GetValue() + " of framework " + c.GetFrameworkId().GetValue() + " which is not allowed"
		}
	case executorpb.Call_MESSAGE:
		if c.Message == nil {
			return "Expecting 'message' to be present"
		}
	case executorpb.Call_HEARTBEAT:
	case executorpb.Call_UNKNOWN:
	}
	return ""
}

// jsonSyntaxMessage words a JSON syntax error as Mesos' parser (picojson)
// does: "syntax error at line 1 near: <rest of the line>".
func jsonSyntaxMessage(body []byte, err error) string {
	off := len(body)
	var se *json.SyntaxError
	if errors.As(err, &se) && se.Offset > 0 && int(se.Offset) <= len(body) {
		off = int(se.Offset) - 1
	}
	line := 1 + bytes.Count(body[:off], []byte("\n"))
	near := body[off:]
	if i := bytes.IndexByte(near, '\n'); i >= 0 {
		near = near[:i]
	}
	return fmt.Sprintf("syntax error at line %d near: %s", line, near)
}

// accepts tells whether an Accept header allows a media type (a missing
// header allows everything).
func accepts(header, mediaType string) bool {
	if strings.TrimSpace(header) == "" {
		return true
	}
	major, _, _ := strings.Cut(mediaType, "/")
	for _, part := range strings.Split(header, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if q, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(q, 64); err != nil || v <= 0 {
				continue
			}
		}
		if mt == mediaType || mt == "*/*" || mt == major+"/*" {
			return true
		}
	}
	return false
}

// serveExecutorAPI is POST /api/v1/executor, answering as Mesos 1.11's
// agent does (src/slave/http.cpp Http::executor).
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
	body, err := io.ReadAll(io.LimitReader(r.Body, maxExecutorCallSize+1))
	if err != nil {
		httpError(w, http.StatusBadRequest, "Failed to read the request body: "+err.Error())
		return
	}
	if len(body) > maxExecutorCallSize {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body exceeds %d bytes", maxExecutorCallSize))
		return
	}
	call := &executorpb.Call{}
	if err := codec.Unmarshal(enc, body, call); err != nil {
		var se *codec.SyntaxError
		var ce *codec.ConversionError
		switch {
		case errors.As(err, &se):
			httpError(w, http.StatusBadRequest, "Failed to parse body into JSON: "+jsonSyntaxMessage(body, se.Err))
		case errors.As(err, &ce):
			httpError(w, http.StatusBadRequest, "Failed to convert JSON into Call protobuf: "+ce.Reason)
		default:
			httpError(w, http.StatusBadRequest, "Failed to parse body into Call protobuf")
		}
		return
	}
	if msg := validateExecutorCall(call); msg != "" {
		httpError(w, http.StatusBadRequest, "Failed to validate Executor::Call: "+msg)
		return
	}
	var accept codec.Encoding
	switch call.GetType() {
	case executorpb.Call_SUBSCRIBE:
		// Mesos' agent prefers JSON whenever the client takes it.
		switch h := r.Header.Get("Accept"); {
		case accepts(h, codec.MediaTypeJSON):
			accept = codec.JSON
		case accepts(h, codec.MediaTypeProtobuf):
			accept = codec.Protobuf
		default:
			httpError(w, http.StatusNotAcceptable, "Expecting 'Accept' to allow 'application/x-protobuf' or 'application/json'")
			return
		}
	case executorpb.Call_HEARTBEAT:
		// Accepted before any lookup: the executor library sends dummy IDs.
		w.WriteHeader(http.StatusAccepted)
		return
	default:
		a.mu.Lock()
		recovering := a.recovering
		a.mu.Unlock()
		if recovering {
			httpError(w, http.StatusServiceUnavailable, "Agent has not finished recovery")
			return
		}
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
	if e.state == registering && call.GetType() != executorpb.Call_SUBSCRIBE {
		a.mu.Unlock()
		httpError(w, http.StatusForbidden, "Executor is not subscribed")
		return
	}
	switch call.GetType() {
	case executorpb.Call_SUBSCRIBE:
		a.subscribeLocked(w, r, accept, fw, e, call.GetSubscribe()) // unlocks
	case executorpb.Call_UPDATE:
		a.executorUpdateLocked(fw, e, call.GetUpdate().GetStatus())
		a.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	case executorpb.Call_MESSAGE:
		a.metrics.validFrameworkMessages++
		connected := a.connected
		a.mu.Unlock()
		if connected {
			go a.callMaster(&agentpb.Call{
				Type: agentpb.Call_FRAMEWORK_MESSAGE.Enum(),
				FrameworkMessage: &agentpb.Call_FrameworkMessage{
					FrameworkId: call.GetFrameworkId(), ExecutorId: call.GetExecutorId(), Data: call.GetMessage().GetData(),
				},
			})
		} else {
			a.log.Printf("dropping a message of executor %s for its scheduler: the agent is not registered with a master", e.id)
		}
		w.WriteHeader(http.StatusAccepted)
	default:
		a.mu.Unlock()
		httpError(w, http.StatusNotImplemented, "")
	}
}

// executorUpdateLocked takes an executor's update: the agent fills in what
// Mesos fills in (agent ID, timestamp, container status), the status update
// manager takes it, and the executor gets ACKNOWLEDGED, which means the
// agent has it (not that the framework has).
func (a *Agent) executorUpdateLocked(fw *framework, e *executor, in *mesospb.TaskStatus) {
	if fw.terminating {
		a.log.Printf("ignoring %s of task %s: framework %s is shutting down", in.GetState(), in.GetTaskId().GetValue(), fw.id)
		return
	}
	st := proto.Clone(in).(*mesospb.TaskStatus)
	st.AgentId = &mesospb.AgentID{Value: proto.String(a.agentID)}
	if st.Timestamp == nil {
		st.Timestamp = proto.Float64(float64(a.clock.Now().UnixNano()) / 1e9)
	}
	cs := st.ContainerStatus
	if cs == nil {
		cs = &mesospb.ContainerStatus{}
		st.ContainerStatus = cs
	}
	if cs.ContainerId == nil {
		cs.ContainerId = &mesospb.ContainerID{Value: proto.String(e.containerID)}
	}
	if len(cs.NetworkInfos) == 0 {
		proto4 := mesospb.NetworkInfo_IPv4
		if ip := net.ParseIP(a.cfg.AdvertiseIP); ip != nil && ip.To4() == nil {
			proto4 = mesospb.NetworkInfo_IPv6
		}
		cs.NetworkInfos = []*mesospb.NetworkInfo{{IpAddresses: []*mesospb.NetworkInfo_IPAddress{
			{Protocol: proto4.Enum(), IpAddress: proto.String(a.cfg.AdvertiseIP)}}}}
	}
	if cs.ExecutorPid == nil && e.pid > 0 {
		cs.ExecutorPid = proto.Uint32(uint32(e.pid))
	}
	a.statusUpdateLocked(fw, st, e, nil)
	if e.stream != nil {
		e.stream.Send(&executorpb.Event{
			Type:         executorpb.Event_ACKNOWLEDGED.Enum(),
			Acknowledged: &executorpb.Event_Acknowledged{TaskId: st.TaskId, Uuid: st.Uuid},
		})
	}
}

// subscribeLocked opens an executor's event stream: SUBSCRIBED, the updates
// it resends (taken once), TASK_LOST/DROPPED for tasks it never got, then
// its queued tasks. An executor that is being shut down (or whose
// framework or agent is) gets SHUTDOWN instead. It unlocks a.mu.
func (a *Agent) subscribeLocked(w http.ResponseWriter, r *http.Request, enc codec.Encoding, fw *framework, e *executor, sub *executorpb.Call_Subscribe) {
	st := eventstream.New(enc)
	if a.terminating || fw.terminating || e.state >= terminating {
		a.log.Printf("executor %s of framework %s subscribed while it is being shut down: sending SHUTDOWN", e.id, fw.id)
		st.Send(&executorpb.Event{Type: executorpb.Event_SHUTDOWN.Enum()})
		st.Close()
		a.mu.Unlock()
		w.Header().Set("Content-Type", enc.MediaType())
		w.WriteHeader(http.StatusOK)
		st.Serve(w, r)
		return
	}
	if e.stream != nil {
		a.log.Printf("executor %s of framework %s subscribed again: closing its earlier connection", e.id, fw.id)
		e.stream.Close()
	}
	e.stream = st
	e.state = running
	if e.regTimer != nil {
		e.regTimer.Stop()
	}
	st.Send(&executorpb.Event{
		Type: executorpb.Event_SUBSCRIBED.Enum(),
		Subscribed: &executorpb.Event_Subscribed{
			ExecutorInfo:  e.info,
			FrameworkInfo: fw.info,
			AgentInfo:     a.agentInfoLocked(),
			ContainerId:   &mesospb.ContainerID{Value: proto.String(e.containerID)},
		},
	})
	for _, up := range sub.GetUnacknowledgedUpdates() {
		s := up.GetStatus()
		if !uuid.Valid(s.GetUuid()) || s.GetState() == mesospb.TaskState_TASK_STAGING {
			a.log.Printf("executor %s resent an invalid update of task %s: ignored", e.id, s.GetTaskId().GetValue())
			continue
		}
		a.executorUpdateLocked(fw, e, s)
	}
	known := map[string]bool{}
	for _, t := range sub.GetUnacknowledgedTasks() {
		known[t.GetTaskId().GetValue()] = true
	}
	for _, id := range sortedTaskIDs(e.tasks) {
		t := e.tasks[id]
		if t.state == mesospb.TaskState_TASK_STAGING && !t.queued && !known[id] {
			// The LAUNCH never reached the executor (the agent restarted, or
			// the connection broke first).
			s := a.agentStatusLocked(t.info.TaskId, e.info.ExecutorId, fw.lostOr(mesospb.TaskState_TASK_DROPPED),
				mesospb.TaskStatus_REASON_AGENT_RESTARTED, "Task launched during agent restart")
			a.statusUpdateLocked(fw, s, e, nil)
		}
	}
	if !e.everSentTask && len(e.queue) == 0 {
		a.log.Printf("shutting down executor %s of framework %s: every task queued for it was killed before delivery", e.id, fw.id)
		a.shutdownExecutorLocked(e)
	} else {
		for _, item := range e.queue {
			a.deliverLocked(e, item)
		}
		e.queue = nil
	}
	if e.recovered {
		a.log.Printf("recovered executor %s of framework %s re-subscribed", e.id, fw.id)
		a.maybeEndRecoveryLocked()
	}
	interval := a.cfg.ExecutorHeartbeatInterval
	a.mu.Unlock()

	w.Header().Set("Content-Type", enc.MediaType())
	w.WriteHeader(http.StatusOK)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
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
		if e.state == running {
			a.log.Printf("executor %s of framework %s disconnected", e.id, fw.id)
		}
	}
	a.mu.Unlock()
}
