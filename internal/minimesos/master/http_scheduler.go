package master

import (
	"errors"
	"fmt"
	"github.com/k8sm/k8sm/internal/minimesos/eventstream"
	"io"
	"net/http"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// maxBodySize bounds request bodies (an ACCEPT of many tasks with pod
// specs stays far below it).
const maxBodySize = 64 << 20

// httpError answers as Mesos does: text/plain with the reason.
func httpError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, msg)
}

// readCall reads and decodes a POSTed call, answering the request itself
// (405, 400, 415) when that fails. what is "Call" or "agent Call".
func readCall(w http.ResponseWriter, r *http.Request, into interface {
	Reset()
}, decode func(codec.Encoding, []byte) error, what string) (codec.Encoding, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		httpError(w, http.StatusMethodNotAllowed, fmt.Sprintf("405 Method Not Allowed. Expecting one of { 'POST' }, but received '%s'.", r.Method))
		return 0, false
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		httpError(w, http.StatusBadRequest, "Expecting 'Content-Type' to be present")
		return 0, false
	}
	enc, ok := codec.FromContentType(ct)
	if !ok {
		httpError(w, http.StatusUnsupportedMediaType, "Expecting 'Content-Type' of application/json or application/x-protobuf")
		return 0, false
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodySize+1))
	if err != nil {
		httpError(w, http.StatusBadRequest, "Failed to read the request body: "+err.Error())
		return 0, false
	}
	if len(body) > maxBodySize {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("Request body exceeds %d bytes", maxBodySize))
		return 0, false
	}
	if err := decode(enc, body); err != nil {
		var se *codec.SyntaxError
		var ce *codec.ConversionError
		switch {
		case errors.As(err, &se):
			httpError(w, http.StatusBadRequest, "Failed to parse body into JSON: "+se.Err.Error())
		case errors.As(err, &ce):
			httpError(w, http.StatusBadRequest, "Failed to convert JSON into "+what+" protobuf: "+ce.Reason)
		default:
			httpError(w, http.StatusBadRequest, "Failed to parse body into "+what+" protobuf: "+err.Error())
		}
		return 0, false
	}
	return enc, true
}

// validateSchedulerCall is Mesos' scheduler::Call validation: the type, its
// payload, the framework ID, and the uuid of an acknowledgement.
func validateSchedulerCall(c *schedulerpb.Call) string {
	if c.Type == nil {
		return "Expecting 'type' to be present"
	}
	if c.GetType() != schedulerpb.Call_SUBSCRIBE && c.FrameworkId == nil {
		return "Expecting 'framework_id' to be present"
	}
	missing := func(name string) string { return "Expecting '" + name + "' to be present" }
	switch c.GetType() {
	case schedulerpb.Call_SUBSCRIBE:
		if c.Subscribe == nil {
			return missing("subscribe")
		}
		fi := c.GetSubscribe().GetFrameworkInfo()
		if c.FrameworkId != nil && fi.GetId().GetValue() != c.GetFrameworkId().GetValue() {
			return "'framework_id' differs from 'subscribe.framework_info.id'"
		}
		if c.FrameworkId == nil && fi.Id != nil {
			return "'framework_id' must be set to 'subscribe.framework_info.id' to re-subscribe"
		}
		roles := map[string]bool{fi.GetRole(): true}
		for _, r := range fi.GetRoles() {
			roles[r] = true
		}
		for _, r := range c.GetSubscribe().GetSuppressedRoles() {
			if !roles[r] {
				return "Suppressed role '" + r + "' is not contained in the list of roles"
			}
		}
	case schedulerpb.Call_ACCEPT:
		if c.Accept == nil {
			return missing("accept")
		}
	case schedulerpb.Call_DECLINE:
		if c.Decline == nil {
			return missing("decline")
		}
	case schedulerpb.Call_ACCEPT_INVERSE_OFFERS:
		if c.AcceptInverseOffers == nil {
			return missing("accept_inverse_offers")
		}
	case schedulerpb.Call_DECLINE_INVERSE_OFFERS:
		if c.DeclineInverseOffers == nil {
			return missing("decline_inverse_offers")
		}
	case schedulerpb.Call_KILL:
		if c.Kill == nil {
			return missing("kill")
		}
	case schedulerpb.Call_SHUTDOWN:
		if c.Shutdown == nil {
			return missing("shutdown")
		}
	case schedulerpb.Call_ACKNOWLEDGE:
		if c.Acknowledge == nil {
			return missing("acknowledge")
		}
		if !validUUID(c.GetAcknowledge().GetUuid()) {
			return "Not a valid UUID"
		}
	case schedulerpb.Call_ACKNOWLEDGE_OPERATION_STATUS:
		if c.AcknowledgeOperationStatus == nil {
			return missing("acknowledge_operation_status")
		}
	case schedulerpb.Call_RECONCILE:
		if c.Reconcile == nil {
			return missing("reconcile")
		}
	case schedulerpb.Call_RECONCILE_OPERATIONS:
		if c.ReconcileOperations == nil {
			return missing("reconcile_operations")
		}
	case schedulerpb.Call_MESSAGE:
		if c.Message == nil {
			return missing("message")
		}
	case schedulerpb.Call_REQUEST:
		if c.Request == nil {
			return missing("request")
		}
	case schedulerpb.Call_UPDATE_FRAMEWORK:
		if c.UpdateFramework == nil {
			return missing("update_framework")
		}
		if c.GetUpdateFramework().GetFrameworkInfo().GetId().GetValue() != c.GetFrameworkId().GetValue() {
			return "'framework_id' differs from 'update_framework.framework_info.id'"
		}
	}
	return ""
}

const streamIDHeader = "Mesos-Stream-Id"

func (m *Master) serveScheduler(w http.ResponseWriter, r *http.Request) {
	call := &schedulerpb.Call{}
	_, ok := readCall(w, r, call, func(enc codec.Encoding, b []byte) error { return codec.Unmarshal(enc, b, call) }, "Call")
	if !ok {
		return
	}
	if msg := validateSchedulerCall(call); msg != "" {
		if call.GetType() == schedulerpb.Call_UNKNOWN && call.Type != nil {
			httpError(w, http.StatusNotImplemented, "Received 'UNKNOWN' call")
			return
		}
		httpError(w, http.StatusBadRequest, "Failed to validate scheduler::Call: "+msg)
		return
	}
	if call.GetType() == schedulerpb.Call_SUBSCRIBE {
		m.subscribe(w, r, call)
		return
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.st
	fw := s.frameworks[call.GetFrameworkId().GetValue()]
	if fw == nil {
		httpError(w, http.StatusBadRequest, "Framework cannot be found")
		return
	}
	sid := r.Header.Get(streamIDHeader)
	if sid == "" {
		httpError(w, http.StatusBadRequest, "All non-subscribe calls should include the 'Mesos-Stream-Id' header")
		return
	}
	if fw.stream == nil {
		httpError(w, http.StatusForbidden, "Framework is not subscribed")
		return
	}
	if sid != fw.stream.ID {
		httpError(w, http.StatusBadRequest, fmt.Sprintf("The stream ID '%s' included in this request didn't match the stream ID currently associated with framework ID %s", sid, fw.id))
		return
	}
	s.metrics.countCall(call.GetType())
	switch call.GetType() {
	case schedulerpb.Call_TEARDOWN:
		s.removeFramework(fw)
	case schedulerpb.Call_ACCEPT:
		s.accept(fw, call.GetAccept())
	case schedulerpb.Call_DECLINE:
		s.decline(fw, call.GetDecline().GetOfferIds(), call.GetDecline().GetFilters())
	case schedulerpb.Call_REVIVE:
		s.revive(fw, call.GetRevive().GetRoles())
	case schedulerpb.Call_SUPPRESS:
		s.suppress(fw, call.GetSuppress().GetRoles())
	case schedulerpb.Call_KILL:
		s.kill(fw, call.GetKill())
	case schedulerpb.Call_SHUTDOWN:
		s.shutdownExecutor(fw, call.GetShutdown())
	case schedulerpb.Call_ACKNOWLEDGE:
		s.acknowledge(fw, call.GetAcknowledge())
	case schedulerpb.Call_RECONCILE:
		s.reconcile(fw, call.GetReconcile().GetTasks())
	case schedulerpb.Call_MESSAGE:
		s.frameworkToExecutor(fw, call.GetMessage())
	case schedulerpb.Call_UPDATE_FRAMEWORK:
		if msg := s.updateFramework(fw, call.GetUpdateFramework()); msg != "" {
			httpError(w, http.StatusBadRequest, msg)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	case schedulerpb.Call_REQUEST, schedulerpb.Call_ACCEPT_INVERSE_OFFERS, schedulerpb.Call_DECLINE_INVERSE_OFFERS,
		schedulerpb.Call_ACKNOWLEDGE_OPERATION_STATUS, schedulerpb.Call_RECONCILE_OPERATIONS:
		// Accepted and ignored: km's master has no maintenance schedules,
		// requests or offer operations with feedback.
	}
	w.WriteHeader(http.StatusAccepted)
}

// subscribe opens a framework's event stream and serves it until it ends.
func (m *Master) subscribe(w http.ResponseWriter, r *http.Request, call *schedulerpb.Call) {
	if r.Header.Get(streamIDHeader) != "" {
		httpError(w, http.StatusBadRequest, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
		return
	}
	enc, ok := codec.Negotiate(r.Header.Get("Accept"))
	if !ok {
		httpError(w, http.StatusNotAcceptable, "Expecting 'Accept' to allow application/json or application/x-protobuf")
		return
	}
	st := eventstream.New(enc)
	m.mu.Lock()
	first, ok := m.st.subscribe(call, st)
	var fw *framework
	if ok {
		fw = m.st.frameworks[call.GetSubscribe().GetFrameworkInfo().GetId().GetValue()]
		if fw == nil || fw.stream != st {
			// New framework: find it by stream.
			for _, f := range m.st.frameworks {
				if f.stream == st {
					fw = f
				}
			}
		}
		// New resources for the newcomer at the next cycle; Mesos
		// allocates on subscription too.
		m.st.allocate(m.cfg.Clock.Now())
	} else {
		st.Send(first)
		st.Close()
	}
	m.mu.Unlock()

	w.Header().Set(streamIDHeader, st.ID)
	w.Header().Set("Content-Type", enc.MediaType())
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	st.Serve(w, r)
	if fw != nil {
		m.mu.Lock()
		m.st.disconnectFramework(fw, st)
		m.mu.Unlock()
	}
}
