package master

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

// fakeClock is advanced by the tests; the master's periodic work runs only
// when a test calls Tick.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type harness struct {
	t     *testing.T
	m     *Master
	srv   *httptest.Server
	clock *fakeClock
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	clock := &fakeClock{now: time.Unix(1_800_000_000, 0)}
	cfg.Clock = clock
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(func() {
		m.mu.Lock()
		m.st.closeAllStreams()
		m.mu.Unlock()
		srv.CloseClientConnections()
		srv.Close()
	})
	return &harness{t: t, m: m, srv: srv, clock: clock}
}

// tick advances the fake clock and runs the master's periodic work.
func (h *harness) tick(d time.Duration) {
	h.clock.Advance(d)
	h.m.Tick()
}

// post sends a raw request and returns status and body.
func (h *harness) post(path, contentType string, body []byte, headers map[string]string) (int, string, http.Header) {
	h.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.srv.URL+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// eventStream reads a RecordIO stream of events in the background.
type eventStream[E proto.Message] struct {
	t        *testing.T
	streamID string
	events   chan E
	// skipped holds events passed over by next, for later calls: tests
	// look for events by type, and Mesos does not order unrelated ones.
	skipped []E
	cancel  context.CancelFunc
	closed  chan struct{}
}

func openStream[E proto.Message](t *testing.T, url string, enc codec.Encoding, call proto.Message, newE func() E) (*eventStream[E], int, string) {
	t.Helper()
	body, err := codec.Marshal(enc, call)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", enc.MediaType())
	req.Header.Set("Accept", enc.MediaType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, resp.StatusCode, string(b)
	}
	s := &eventStream[E]{t: t, streamID: resp.Header.Get(streamIDHeader), events: make(chan E, 1000), cancel: cancel, closed: make(chan struct{})}
	go func() {
		defer close(s.closed)
		defer resp.Body.Close()
		r := recordio.NewReader(resp.Body, 0)
		for {
			rec, err := r.ReadRecord()
			if err != nil {
				return
			}
			ev := newE()
			if err := codec.Unmarshal(enc, rec, ev); err != nil {
				t.Errorf("undecodable event: %v", err)
				return
			}
			s.events <- ev
		}
	}()
	t.Cleanup(cancel)
	return s, http.StatusOK, ""
}

const waitTimeout = 10 * time.Second

// next returns the next event that matches keep; the others stay for
// later calls.
func (s *eventStream[E]) next(keep func(E) bool) E {
	s.t.Helper()
	for i, ev := range s.skipped {
		if keep == nil || keep(ev) {
			s.skipped = append(s.skipped[:i:i], s.skipped[i+1:]...)
			return ev
		}
	}
	deadline := time.After(waitTimeout)
	for {
		select {
		case ev := <-s.events:
			if keep == nil || keep(ev) {
				return ev
			}
			s.skipped = append(s.skipped, ev)
		case <-s.closed:
			// Drain what arrived before the close.
			select {
			case ev := <-s.events:
				if keep == nil || keep(ev) {
					return ev
				}
				s.skipped = append(s.skipped, ev)
				continue
			default:
			}
			s.t.Fatalf("stream closed while waiting for an event")
		case <-deadline:
			s.t.Fatalf("no matching event within %v", waitTimeout)
		}
	}
}

// none asserts that no matching event is queued now (the master works
// synchronously under the tests' fake clock, so what it sends is queued by
// the time the call that caused it returns; a short grace covers the
// stream's own goroutine).
func (s *eventStream[E]) none(keep func(E) bool) {
	s.t.Helper()
	for _, ev := range s.skipped {
		if keep == nil || keep(ev) {
			s.t.Fatalf("unexpected event: %v", ev)
		}
	}
	grace := time.After(200 * time.Millisecond)
	for {
		select {
		case ev := <-s.events:
			if keep == nil || keep(ev) {
				s.t.Fatalf("unexpected event: %v", ev)
			}
		case <-grace:
			return
		}
	}
}

func (s *eventStream[E]) waitClosed() {
	s.t.Helper()
	select {
	case <-s.closed:
	case <-time.After(waitTimeout):
		s.t.Fatalf("stream not closed within %v", waitTimeout)
	}
}

// ---------------------------------------------------------------------------
// A scheduler driven by hand.

type testScheduler struct {
	h      *harness
	enc    codec.Encoding
	id     string
	stream *eventStream[*schedulerpb.Event]
	info   *mesospb.FrameworkInfo
}

func frameworkInfo(name string, caps ...mesospb.FrameworkInfo_Capability_Type) *mesospb.FrameworkInfo {
	fi := &mesospb.FrameworkInfo{User: proto.String("root"), Name: proto.String(name)}
	for _, c := range caps {
		fi.Capabilities = append(fi.Capabilities, &mesospb.FrameworkInfo_Capability{Type: c.Enum()})
		if c == mesospb.FrameworkInfo_Capability_MULTI_ROLE {
			fi.Roles = []string{"*"}
		}
	}
	return fi
}

func (h *harness) subscribe(enc codec.Encoding, fi *mesospb.FrameworkInfo) *testScheduler {
	h.t.Helper()
	call := &schedulerpb.Call{Type: schedulerpb.Call_SUBSCRIBE.Enum(), Subscribe: &schedulerpb.Call_Subscribe{FrameworkInfo: fi}}
	if fi.Id != nil {
		call.FrameworkId = fi.Id
	}
	st, code, body := openStream(h.t, h.srv.URL+"/api/v1/scheduler", enc, call, func() *schedulerpb.Event { return &schedulerpb.Event{} })
	if code != http.StatusOK {
		h.t.Fatalf("SUBSCRIBE: %d %s", code, body)
	}
	s := &testScheduler{h: h, enc: enc, stream: st, info: fi}
	ev := st.next(nil)
	if ev.GetType() != schedulerpb.Event_SUBSCRIBED {
		h.t.Fatalf("first event %v", ev)
	}
	s.id = ev.GetSubscribed().GetFrameworkId().GetValue()
	fi.Id = fwID(s.id)
	return s
}

func (s *testScheduler) call(c *schedulerpb.Call) (int, string) {
	s.h.t.Helper()
	c.FrameworkId = fwID(s.id)
	b, err := codec.Marshal(s.enc, c)
	if err != nil {
		s.h.t.Fatal(err)
	}
	code, body, _ := s.h.post("/api/v1/scheduler", s.enc.MediaType(), b, map[string]string{streamIDHeader: s.stream.streamID})
	return code, body
}

func (s *testScheduler) mustCall(c *schedulerpb.Call) {
	s.h.t.Helper()
	code, body := s.call(c)
	if code != http.StatusAccepted && code != http.StatusOK {
		s.h.t.Fatalf("%v: %d %s", c.GetType(), code, body)
	}
}

func isType(t schedulerpb.Event_Type) func(*schedulerpb.Event) bool {
	return func(e *schedulerpb.Event) bool { return e.GetType() == t }
}

func (s *testScheduler) offers() []*mesospb.Offer {
	s.h.t.Helper()
	return s.stream.next(isType(schedulerpb.Event_OFFERS)).GetOffers().GetOffers()
}

func (s *testScheduler) update() *mesospb.TaskStatus {
	s.h.t.Helper()
	return s.stream.next(isType(schedulerpb.Event_UPDATE)).GetUpdate().GetStatus()
}

// ---------------------------------------------------------------------------
// An agent driven by hand (the agent side of agentpb).

type testAgent struct {
	h      *harness
	id     string
	stream *eventStream[*agentpb.Event]
	info   *mesospb.AgentInfo
}

func agentInfo(host, resources string) *mesospb.AgentInfo {
	res, err := parseTestResources(resources)
	if err != nil {
		panic(err)
	}
	return &mesospb.AgentInfo{Hostname: proto.String(host), Port: proto.Int32(5051), Resources: res}
}

func (h *harness) registerAgent(info *mesospb.AgentInfo, tasks ...*mesospb.Task) *testAgent {
	h.t.Helper()
	a, ev := h.tryRegisterAgent(info, tasks...)
	if ev.GetType() != agentpb.Event_REGISTERED {
		h.t.Fatalf("registration answered %v", ev)
	}
	return a
}

func (h *harness) tryRegisterAgent(info *mesospb.AgentInfo, tasks ...*mesospb.Task) (*testAgent, *agentpb.Event) {
	h.t.Helper()
	call := &agentpb.Call{
		Type:     agentpb.Call_REGISTER.Enum(),
		AgentId:  info.Id,
		Register: &agentpb.Call_Register{AgentInfo: info, Endpoint: proto.String("127.0.0.1:5051"), Tasks: tasks},
	}
	st, code, body := openStream(h.t, h.srv.URL+AgentAPIPath, codec.JSON, call, func() *agentpb.Event { return &agentpb.Event{} })
	if code != http.StatusOK {
		h.t.Fatalf("REGISTER: %d %s", code, body)
	}
	ev := st.next(nil)
	a := &testAgent{h: h, stream: st, info: info}
	if ev.GetType() == agentpb.Event_REGISTERED {
		a.id = ev.GetRegistered().GetAgentId().GetValue()
		info.Id = &mesospb.AgentID{Value: proto.String(a.id)}
	}
	return a, ev
}

func (a *testAgent) send(c *agentpb.Call) {
	a.h.t.Helper()
	c.AgentId = &mesospb.AgentID{Value: proto.String(a.id)}
	b, err := codec.MarshalJSON(c)
	if err != nil {
		a.h.t.Fatal(err)
	}
	code, body, _ := a.h.post(AgentAPIPath, codec.MediaTypeJSON, b, nil)
	if code != http.StatusAccepted {
		a.h.t.Fatalf("%v: %d %s", c.GetType(), code, body)
	}
}

// status sends a status update for a task as the agent's status update
// manager would, and returns its uuid.
func (a *testAgent) status(fw string, taskID string, state mesospb.TaskState) []byte {
	a.h.t.Helper()
	uuid := newUUIDBytes()
	a.send(&agentpb.Call{
		Type: agentpb.Call_STATUS_UPDATE.Enum(),
		StatusUpdate: &agentpb.Call_StatusUpdate{
			FrameworkId: fwID(fw),
			Status: &mesospb.TaskStatus{
				TaskId:     &mesospb.TaskID{Value: proto.String(taskID)},
				State:      state.Enum(),
				Source:     mesospb.TaskStatus_SOURCE_EXECUTOR.Enum(),
				AgentId:    &mesospb.AgentID{Value: proto.String(a.id)},
				ExecutorId: &mesospb.ExecutorID{Value: proto.String(taskID)},
				Uuid:       uuid,
			},
		},
	})
	return uuid
}

func (a *testAgent) next(t agentpb.Event_Type) *agentpb.Event {
	a.h.t.Helper()
	return a.stream.next(func(e *agentpb.Event) bool { return e.GetType() == t })
}

func (a *testAgent) pong() {
	a.send(&agentpb.Call{Type: agentpb.Call_PONG.Enum(), Pong: &agentpb.Call_Pong{}})
}

// ---------------------------------------------------------------------------

func commandTask(id, agentID, resources string) *mesospb.TaskInfo {
	res, err := parseTestResources(resources)
	if err != nil {
		panic(err)
	}
	return &mesospb.TaskInfo{
		Name:      proto.String("task " + id),
		TaskId:    &mesospb.TaskID{Value: proto.String(id)},
		AgentId:   &mesospb.AgentID{Value: proto.String(agentID)},
		Resources: res,
		Command:   &mesospb.CommandInfo{Value: proto.String("sleep 100")},
	}
}

func launch(offerIDs []*mesospb.OfferID, tasks ...*mesospb.TaskInfo) *schedulerpb.Call {
	return &schedulerpb.Call{
		Type: schedulerpb.Call_ACCEPT.Enum(),
		Accept: &schedulerpb.Call_Accept{
			OfferIds: offerIDs,
			Operations: []*mesospb.Offer_Operation{{
				Type:   mesospb.Offer_Operation_LAUNCH.Enum(),
				Launch: &mesospb.Offer_Operation_Launch{TaskInfos: tasks},
			}},
		},
	}
}

func offerIDs(offers ...*mesospb.Offer) []*mesospb.OfferID {
	var ids []*mesospb.OfferID
	for _, o := range offers {
		ids = append(ids, o.Id)
	}
	return ids
}

func ack(st *mesospb.TaskStatus) *schedulerpb.Call {
	return &schedulerpb.Call{
		Type: schedulerpb.Call_ACKNOWLEDGE.Enum(),
		Acknowledge: &schedulerpb.Call_Acknowledge{
			AgentId: st.AgentId, TaskId: st.TaskId, Uuid: st.Uuid,
		},
	}
}

func jsonOf(t *testing.T, v any) map[string]any {
	t.Helper()
	var out map[string]any
	b, _ := json.Marshal(v)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// testLogger discards the master's log unless -v: handlers may log after a
// test has ended, which testing.T.Log does not allow.
func testLogger(t *testing.T) *log.Logger {
	if testing.Verbose() {
		return log.New(os.Stderr, t.Name()+": ", log.Lmicroseconds)
	}
	return log.New(io.Discard, "", 0)
}
