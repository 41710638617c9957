package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

// fakeMaster is the master side of agentpb, recording what the agent sends:
// REGISTER gets REGISTERED (with the agent's own ID, or a new one) and an
// event stream the test writes to; other calls get 202.
type fakeMaster struct {
	t    *testing.T
	srv  *httptest.Server
	addr string

	mu         sync.Mutex
	calls      []*agentpb.Call
	streams    []*fakeStream
	nextID     int
	refuse     int    // answer REGISTER with this status (0: accept)
	refuseBody string // and this text
	shutdown   bool   // answer REGISTER with SHUTDOWN
	autoAck    bool   // acknowledge every status update at once
}

type fakeStream struct {
	reg    *agentpb.Call
	events chan *agentpb.Event
	closed chan struct{}
	once   sync.Once
}

func (s *fakeStream) close() { s.once.Do(func() { close(s.closed) }) }

func newFakeMaster(t *testing.T) *fakeMaster {
	m := &fakeMaster{t: t, autoAck: true}
	m.srv = httptest.NewServer(http.HandlerFunc(m.serve))
	m.addr = m.srv.Listener.Addr().String()
	t.Cleanup(func() {
		m.mu.Lock()
		for _, s := range m.streams {
			s.close()
		}
		m.mu.Unlock()
		m.srv.CloseClientConnections()
		m.srv.Close()
	})
	return m
}

func (m *fakeMaster) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != MasterAPIPath || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	enc, ok := codec.FromContentType(r.Header.Get("Content-Type"))
	body, _ := io.ReadAll(r.Body)
	call := &agentpb.Call{}
	if !ok || codec.Unmarshal(enc, body, call) != nil {
		http.Error(w, "bad call", http.StatusBadRequest)
		return
	}
	m.mu.Lock()
	m.calls = append(m.calls, call)
	if call.GetType() != agentpb.Call_REGISTER {
		var ack *agentpb.Event
		if call.GetType() == agentpb.Call_STATUS_UPDATE && m.autoAck {
			su := call.GetStatusUpdate()
			ack = &agentpb.Event{Type: agentpb.Event_ACKNOWLEDGE.Enum(), Acknowledge: &agentpb.Event_Acknowledge{
				FrameworkId: su.FrameworkId, TaskId: su.GetStatus().TaskId, Uuid: su.GetStatus().Uuid}}
		}
		m.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		if ack != nil {
			m.send(ack)
		}
		return
	}
	if m.refuse != 0 {
		code, text := m.refuse, m.refuseBody
		m.mu.Unlock()
		http.Error(w, text, code)
		return
	}
	s := &fakeStream{reg: call, events: make(chan *agentpb.Event, 1000), closed: make(chan struct{})}
	if m.shutdown {
		m.shutdown = false
		s.events <- &agentpb.Event{Type: agentpb.Event_SHUTDOWN.Enum(), Shutdown: &agentpb.Event_Shutdown{Message: proto.String("removed by the test")}}
		s.close()
	} else {
		id := call.GetAgentId().GetValue()
		if id == "" {
			m.nextID++
			id = "fake-S" + strconv.Itoa(m.nextID)
		}
		host, port, _ := net.SplitHostPort(m.addr)
		p, _ := strconv.Atoi(port)
		s.events <- &agentpb.Event{Type: agentpb.Event_REGISTERED.Enum(), Registered: &agentpb.Event_Registered{
			AgentId:            &mesospb.AgentID{Value: proto.String(id)},
			MasterInfo:         &mesospb.MasterInfo{Id: proto.String("fake-master"), Ip: proto.Uint32(16777343), Port: proto.Uint32(uint32(p)), Hostname: proto.String(host)},
			PingTimeoutSeconds: proto.Float64(15), MaxPingTimeouts: proto.Uint32(5),
		}}
	}
	m.streams = append(m.streams, s)
	m.mu.Unlock()

	accept, _ := codec.Negotiate(r.Header.Get("Accept"))
	w.Header().Set("Content-Type", accept.MediaType())
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	rw := recordio.NewWriter(w)
	for {
		select {
		case ev := <-s.events:
			b, err := codec.Marshal(accept, ev)
			if err != nil {
				m.t.Errorf("fake master: %v", err)
				return
			}
			if rw.WriteRecord(b) != nil {
				return
			}
			w.(http.Flusher).Flush()
		case <-s.closed:
			// Write what is queued (a SHUTDOWN), then end the stream.
			for {
				select {
				case ev := <-s.events:
					b, _ := codec.Marshal(accept, ev)
					rw.WriteRecord(b)
				default:
					w.(http.Flusher).Flush()
					return
				}
			}
		case <-r.Context().Done():
			return
		}
	}
}

// send writes an event on the newest registration stream.
func (m *fakeMaster) send(ev *agentpb.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.streams) == 0 {
		m.t.Errorf("fake master: no agent stream to send %s on", ev.GetType())
		return
	}
	m.streams[len(m.streams)-1].events <- ev
}

// breakStream ends the newest registration stream, as a master restart
// would.
func (m *fakeMaster) breakStream() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.streams); n > 0 {
		m.streams[n-1].close()
	}
}

func (m *fakeMaster) registrations() []*agentpb.Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*agentpb.Call
	for _, s := range m.streams {
		out = append(out, s.reg)
	}
	return out
}

func (m *fakeMaster) snapshot() []*agentpb.Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*agentpb.Call(nil), m.calls...)
}

// waitCall waits for a call matching pred and returns it with its index
// among all calls.
func (m *fakeMaster) waitCall(t testing.TB, what string, pred func(*agentpb.Call) bool) (*agentpb.Call, int) {
	t.Helper()
	var c *agentpb.Call
	var i int
	waitFor(t, what, func() bool {
		for j, x := range m.snapshot() {
			if pred(x) {
				c, i = x, j
				return true
			}
		}
		return false
	})
	return c, i
}

func (m *fakeMaster) waitRegistrations(t testing.TB, n int) []*agentpb.Call {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d registrations", n), func() bool { return len(m.registrations()) >= n })
	return m.registrations()
}

// updates lists the STATUS_UPDATE calls of a task, in arrival order.
func (m *fakeMaster) updates(taskID string) []*mesospb.TaskStatus {
	var out []*mesospb.TaskStatus
	for _, c := range m.snapshot() {
		if c.GetType() == agentpb.Call_STATUS_UPDATE && c.GetStatusUpdate().GetStatus().GetTaskId().GetValue() == taskID {
			out = append(out, c.GetStatusUpdate().GetStatus())
		}
	}
	return out
}

func (m *fakeMaster) waitUpdate(t testing.TB, taskID string, state mesospb.TaskState) *mesospb.TaskStatus {
	t.Helper()
	c, _ := m.waitCall(t, taskID+" "+state.String(), isUpdate(taskID, state))
	return c.GetStatusUpdate().GetStatus()
}

func isUpdate(taskID string, state mesospb.TaskState) func(*agentpb.Call) bool {
	return func(c *agentpb.Call) bool {
		st := c.GetStatusUpdate().GetStatus()
		return c.GetType() == agentpb.Call_STATUS_UPDATE && st.GetTaskId().GetValue() == taskID && st.GetState() == state
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testAgent is an agent serving on a free loopback port.
type testAgent struct {
	*Agent
	dir    string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func testConfig(t testing.TB, m *fakeMaster, dir string) Config {
	return Config{
		Master: m.addr, IP: "127.0.0.1", Port: freePort(t), Hostname: "agent-1",
		Resources: "cpus:2;mem:1024;disk:4096;ports:[31000-31100]", Attributes: "rack:r1;zone:a",
		WorkDir: dir, KMBinary: testBinary(t),
		ExecutorShutdownGracePeriod: time.Second, StatusUpdateRetryMin: 200 * time.Millisecond,
		RegistrationBackoffFactor: 20 * time.Millisecond, RegistrationBackoffMax: 200 * time.Millisecond,
		Logger: testLogger(t, "agent"),
	}
}

func startAgent(t *testing.T, cfg Config) *testAgent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.Port)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, dir: a.cfg.WorkDir, cancel: cancel, done: make(chan error, 1)}
	go func() { ta.done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() { ta.stop(t) })
	return ta
}

// stop stops the agent and checks that no process of it is left.
func (ta *testAgent) stop(t testing.TB) {
	ta.once.Do(func() { ta.stopOnce(t) })
}

func (ta *testAgent) stopOnce(t testing.TB) {
	ta.cancel()
	select {
	case <-ta.done:
	case <-time.After(30 * time.Second):
		t.Errorf("the agent did not stop")
	}
	var left []int
	for _, pid := range markedProcesses(OwnerEnv + "=" + ta.dir) {
		if !zombie(pid) {
			left = append(left, pid)
		}
	}
	if len(left) > 0 {
		t.Errorf("processes %v of the agent outlived it", left)
	}
}

func (ta *testAgent) url(path string) string { return "http://" + ta.Endpoint() + path }

func frameworkInfo(id string, caps ...mesospb.FrameworkInfo_Capability_Type) *mesospb.FrameworkInfo {
	fi := &mesospb.FrameworkInfo{User: proto.String("root"), Name: proto.String("test"), Id: &mesospb.FrameworkID{Value: proto.String(id)}}
	for _, c := range caps {
		fi.Capabilities = append(fi.Capabilities, &mesospb.FrameworkInfo_Capability{Type: c.Enum()})
	}
	return fi
}

func taskInfo(id, agentID string) *mesospb.TaskInfo {
	keep, _ := resources.Parse("cpus:0.1;mem:32", "*")
	return &mesospb.TaskInfo{Name: proto.String("task " + id), TaskId: &mesospb.TaskID{Value: proto.String(id)},
		AgentId: &mesospb.AgentID{Value: proto.String(agentID)}, Resources: keep}
}

func runTaskEvent(fi *mesospb.FrameworkInfo, t *mesospb.TaskInfo) *agentpb.Event {
	return &agentpb.Event{Type: agentpb.Event_RUN_TASK.Enum(), RunTask: &agentpb.Event_RunTask{FrameworkInfo: fi, Task: t}}
}

func ackEvent(fw string, st *mesospb.TaskStatus) *agentpb.Event {
	return &agentpb.Event{Type: agentpb.Event_ACKNOWLEDGE.Enum(), Acknowledge: &agentpb.Event_Acknowledge{
		FrameworkId: &mesospb.FrameworkID{Value: proto.String(fw)}, TaskId: st.TaskId, Uuid: st.Uuid}}
}

// lockedBuffer collects log output written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
