package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

const recordings = "../../../testdata/mesos-recordings/"

// exchange is one request and its answer in a recording.
type exchange struct {
	title        string
	method, path string
	header       http.Header
	body         string
	status       int
	respHeader   http.Header
	respBody     string
}

// readExchanges parses the request/response pairs of a recording file.
func readExchanges(t *testing.T, file string) []exchange {
	b, err := os.ReadFile(recordings + file)
	if err != nil {
		t.Fatal(err)
	}
	var out []exchange
	sections := strings.Split(string(b), "\n== [t+")
	for _, sec := range sections[1:] {
		title, rest, _ := strings.Cut(sec, "\n")
		if _, t, ok := strings.Cut(title, "] "); ok {
			title = t
		}
		req, resp, ok := strings.Cut(rest, "<<< RESPONSE")
		if !ok {
			continue
		}
		_, req, ok = strings.Cut(req, ">>> REQUEST\n")
		if !ok {
			continue
		}
		e := exchange{title: title}
		var body string
		e.header, body = readHTTPHead(req)
		first := e.header.Get(":line")
		f := strings.Fields(first)
		e.method, e.path = f[0], f[1]
		e.body = bodyOf(e.header, body)
		_, resp, _ = strings.Cut(resp, "\n")
		if i := strings.Index(resp, "HTTP/1.1 "); i >= 0 {
			resp = resp[i:]
		}
		e.respHeader, body = readHTTPHead(resp)
		e.status, _ = strconv.Atoi(strings.Fields(e.respHeader.Get(":line"))[1])
		e.respBody = bodyOf(e.respHeader, body)
		out = append(out, e)
	}
	return out
}

func readHTTPHead(s string) (http.Header, string) {
	h := http.Header{}
	r := bufio.NewReader(strings.NewReader(s))
	line, _ := r.ReadString('\n')
	h.Set(":line", strings.TrimSpace(line))
	for {
		line, err := r.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" || err != nil {
			break
		}
		k, v, _ := strings.Cut(line, ": ")
		h.Add(k, v)
	}
	rest, _ := io.ReadAll(r)
	return h, string(rest)
}

func bodyOf(h http.Header, s string) string {
	n, err := strconv.Atoi(h.Get("Content-Length"))
	if err != nil || n > len(s) {
		return ""
	}
	return s[:n]
}

// eventReader reads an executor's event stream.
type eventReader struct {
	resp   *http.Response
	events chan recordedEvent
}

type recordedEvent struct {
	raw []byte
	ev  *executorpb.Event
}

func subscribe(t *testing.T, url, body, accept string) *eventReader {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("SUBSCRIBE: %s %s", resp.Status, b)
	}
	er := &eventReader{resp: resp, events: make(chan recordedEvent, 100)}
	enc, _ := codec.FromContentType(resp.Header.Get("Content-Type"))
	go func() {
		defer close(er.events)
		r := recordio.NewReader(resp.Body, 0)
		for {
			rec, err := r.ReadRecord()
			if err != nil {
				return
			}
			ev := &executorpb.Event{}
			if err := codec.Unmarshal(enc, rec, ev); err != nil {
				t.Errorf("undecodable event %q: %v", rec, err)
				return
			}
			er.events <- recordedEvent{rec, ev}
		}
	}()
	t.Cleanup(func() { resp.Body.Close() })
	return er
}

func (er *eventReader) next(t *testing.T, want executorpb.Event_Type) recordedEvent {
	t.Helper()
	for {
		select {
		case e, ok := <-er.events:
			if !ok {
				t.Fatalf("the stream ended while waiting for %s", want)
			}
			if e.ev.GetType() == executorpb.Event_HEARTBEAT && want != executorpb.Event_HEARTBEAT {
				continue
			}
			if e.ev.GetType() != want {
				t.Fatalf("got %s (%s), want %s", e.ev.GetType(), e.raw, want)
			}
			return e
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
}

func post(t *testing.T, url, contentType, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The executor API answers exactly as the real Mesos 1.11 agent did in
// testdata/mesos-recordings/executor-session.txt: the recorded requests are
// replayed against km's agent, with the same framework, executor and task
// IDs, and the status codes and bodies compared. The agent's events
// (SUBSCRIBED, LAUNCH, ACKNOWLEDGED, MESSAGE, KILL, SHUTDOWN) and what it
// forwards to the master are checked along the way.
func TestExecutorAPIAsRecorded(t *testing.T) {
	const fwID = "d9097ce5-55bd-48f9-a8ba-fe84abe1c220-0010"
	m := newFakeMaster(t)
	m.autoAck = false
	a := startAgent(t, testConfig(t, m, t.TempDir()))
	waitFor(t, "registered", a.Registered)
	exchanges := readExchanges(t, "executor-session.txt")
	if len(exchanges) < 20 {
		t.Fatalf("parsed %d exchanges from the recording", len(exchanges))
	}

	// The executor process never subscribes: the test speaks for it.
	task := taskInfo("t-py", a.ID())
	task.Data = []byte("payload")
	task.Executor = &mesospb.ExecutorInfo{
		Type:       mesospb.ExecutorInfo_CUSTOM.Enum(),
		ExecutorId: &mesospb.ExecutorID{Value: proto.String("e-py")}, Name: proto.String("python-executor"),
		Command: &mesospb.CommandInfo{Value: proto.String("sleep 30")},
	}
	m.send(runTaskEvent(frameworkInfo(fwID), task))
	waitFor(t, "the executor started", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		fw := a.frameworks[fwID]
		return fw != nil && fw.executors["e-py"] != nil && fw.executors["e-py"].pid > 0
	})
	api := a.url("/api/v1/executor")
	running := `{"type": "UPDATE", "framework_id": {"value": "` + fwID + `"}, "executor_id": {"value": "e-py"}, "update": {"status": {"task_id": {"value": "t-py"}, "state": "TASK_RUNNING", "source": "SOURCE_EXECUTOR", "uuid": "8AxwNM3lTCCPgFrPNvYdGg=="}}}`
	if code, body := post(t, api, "application/json", running); code != 403 || body != "Executor is not subscribed" {
		t.Fatalf("UPDATE before SUBSCRIBE: %d %q", code, body)
	}
	if code, body := post(t, api, "application/json", strings.Replace(running, `"e-py"`, `"e-nope"`, 1)); code != 400 || body != "Executor cannot be found" {
		t.Fatalf("unknown executor: %d %q", code, body)
	}
	var subscribeBody string
	for _, e := range exchanges {
		if e.status == 200 && strings.Contains(e.body, `"e-py"`) {
			subscribeBody = e.body
			break
		}
	}
	req, _ := http.NewRequest(http.MethodPost, api, strings.NewReader(subscribeBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/html")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 406 {
		t.Fatalf("Accept: text/html: %v %v", resp, err)
	} else if b, _ := io.ReadAll(resp.Body); string(b) != "Expecting 'Accept' to allow 'application/x-protobuf' or 'application/json'" {
		t.Fatalf("406 body %q", b)
	}

	er := subscribe(t, api, subscribeBody, "application/json")
	if ct := er.resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("stream Content-Type %q", ct)
	}
	sub := er.next(t, executorpb.Event_SUBSCRIBED)
	s := sub.ev.GetSubscribed()
	if s.GetExecutorInfo().GetExecutorId().GetValue() != "e-py" || s.GetFrameworkInfo().GetId().GetValue() != fwID ||
		s.GetAgentInfo().GetId().GetValue() != a.ID() || s.GetContainerId().GetValue() == "" {
		t.Fatalf("SUBSCRIBED %s", sub.raw)
	}
	// Unreserved resources carry no role in AgentInfo, as Mesos writes it.
	var shape struct {
		Subscribed struct {
			AgentInfo struct {
				Resources []map[string]any `json:"resources"`
			} `json:"agent_info"`
		} `json:"subscribed"`
	}
	json.Unmarshal(sub.raw, &shape)
	for _, r := range shape.Subscribed.AgentInfo.Resources {
		if _, has := r["role"]; has {
			t.Errorf("agent_info resource with a role: %v", r)
		}
	}
	launch := er.next(t, executorpb.Event_LAUNCH)
	if launch.ev.GetLaunch().GetTask().GetTaskId().GetValue() != "t-py" || string(launch.ev.GetLaunch().GetTask().GetData()) != "payload" {
		t.Fatalf("LAUNCH %s", launch.raw)
	}

	replayed := 0
	for _, e := range exchanges {
		if e.path != "/api/v1/executor" || e.status == 200 || strings.Contains(e.body, "e-py-kill") {
			continue
		}
		req, _ := http.NewRequest(e.method, a.url(e.path), strings.NewReader(e.body))
		for _, k := range []string{"Content-Type", "Accept"} {
			if v := e.header.Get(k); v != "" {
				req.Header.Set(k, v)
			}
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		replayed++
		if resp.StatusCode != e.status || string(b) != e.respBody {
			t.Errorf("%s: got %d %q, Mesos answered %d %q", e.title, resp.StatusCode, b, e.status, e.respBody)
		}
		if allow := e.respHeader.Get("Allow"); allow != "" && resp.Header.Get("Allow") != allow {
			t.Errorf("%s: Allow %q, want %q", e.title, resp.Header.Get("Allow"), allow)
		}
		if ct := e.respHeader.Get("Content-Type"); e.status >= 400 && resp.Header.Get("Content-Type") != ct {
			t.Errorf("%s: Content-Type %q, want %q", e.title, resp.Header.Get("Content-Type"), ct)
		}
		if e.status == 202 && strings.Contains(e.body, `"UPDATE"`) {
			call := &executorpb.Call{}
			codec.UnmarshalJSON([]byte(e.body), call)
			ack := er.next(t, executorpb.Event_ACKNOWLEDGED)
			if !bytes.Equal(ack.ev.GetAcknowledged().GetUuid(), call.GetUpdate().GetStatus().GetUuid()) {
				t.Errorf("%s: ACKNOWLEDGED %s", e.title, ack.raw)
			}
		}
	}
	if replayed < 15 {
		t.Fatalf("replayed only %d recorded calls", replayed)
	}

	// What the master gets: the executor's update with what the agent
	// fills in (agent ID, timestamp, container status), not executor_id.
	up := m.waitUpdate(t, "t-py", mesospb.TaskState_TASK_RUNNING)
	if up.GetMessage() != "running from pyexec" || up.GetSource() != mesospb.TaskStatus_SOURCE_EXECUTOR || up.GetAgentId().GetValue() != a.ID() ||
		up.Timestamp == nil || up.ExecutorId != nil || up.GetContainerStatus().GetContainerId().GetValue() != s.GetContainerId().GetValue() ||
		up.GetContainerStatus().GetExecutorPid() == 0 || up.GetContainerStatus().GetNetworkInfos()[0].GetIpAddresses()[0].GetIpAddress() != "127.0.0.1" {
		t.Errorf("forwarded update %v", up)
	}
	msg, _ := m.waitCall(t, "FRAMEWORK_MESSAGE", func(c *agentpb.Call) bool { return c.GetType() == agentpb.Call_FRAMEWORK_MESSAGE })
	if string(msg.GetFrameworkMessage().GetData()) != "from-executor" || msg.GetFrameworkMessage().GetExecutorId().GetValue() != "e-py" {
		t.Errorf("framework message %v", msg)
	}
	// The unacknowledged RUNNING is resent (same uuid) and FINISHED waits
	// behind it.
	waitFor(t, "TASK_RUNNING resent", func() bool { return len(m.updates("t-py")) >= 3 })
	for _, u := range m.updates("t-py") {
		if !bytes.Equal(u.GetUuid(), up.GetUuid()) {
			t.Fatalf("an update went out before the one ahead of it was acknowledged: %v", u)
		}
	}
	m.send(ackEvent(fwID, up))
	m.waitUpdate(t, "t-py", mesospb.TaskState_TASK_FINISHED)

	// Scheduler → executor: MESSAGE; the kill path; SHUTDOWN.
	m.send(&agentpb.Event{Type: agentpb.Event_FRAMEWORK_MESSAGE.Enum(), FrameworkMessage: &agentpb.Event_FrameworkMessage{
		FrameworkId: &mesospb.FrameworkID{Value: proto.String(fwID)}, ExecutorId: &mesospb.ExecutorID{Value: proto.String("e-py")}, Data: []byte("from-scheduler")}})
	if got := er.next(t, executorpb.Event_MESSAGE); string(got.raw) != `{"type":"MESSAGE","message":{"data":"ZnJvbS1zY2hlZHVsZXI="}}` {
		t.Errorf("MESSAGE %s", got.raw)
	}
	m.send(&agentpb.Event{Type: agentpb.Event_SHUTDOWN_EXECUTOR.Enum(), ShutdownExecutor: &agentpb.Event_ShutdownExecutor{
		FrameworkId: &mesospb.FrameworkID{Value: proto.String(fwID)}, ExecutorId: &mesospb.ExecutorID{Value: proto.String("e-py")}}})
	if got := er.next(t, executorpb.Event_SHUTDOWN); string(got.raw) != `{"type":"SHUTDOWN"}` {
		t.Errorf("SHUTDOWN %s", got.raw)
	}
	// sleep ignores the SHUTDOWN event: after the grace period (1 s) its
	// process group is killed; the master hears EXECUTOR_EXITED with the
	// wait status.
	exited, _ := m.waitCall(t, "EXECUTOR_EXITED", func(c *agentpb.Call) bool { return c.GetType() == agentpb.Call_EXECUTOR_EXITED })
	if exited.GetExecutorExited().GetStatus() != 9 {
		t.Errorf("EXECUTOR_EXITED %v: want the wait status of SIGKILL (9)", exited)
	}
}

// The operator endpoints: /health as the recording shows it, /state in the
// shape of agent-state.json, /metrics/snapshot.
func TestOperatorEndpoints(t *testing.T) {
	m := newFakeMaster(t)
	a := startAgent(t, testConfig(t, m, t.TempDir()))
	waitFor(t, "registered", a.Registered)
	task := taskInfo("t-sleep", a.ID())
	task.Command = &mesospb.CommandInfo{Value: proto.String("sleep 100")}
	m.send(runTaskEvent(frameworkInfo("fw"), task))
	m.waitUpdate(t, "t-sleep", mesospb.TaskState_TASK_RUNNING)

	resp, err := http.Get(a.url("/health"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || len(b) != 0 || resp.Header.Get("Content-Length") != "0" {
		t.Fatalf("/health: %d %q %v", resp.StatusCode, b, resp.Header)
	}

	var recorded, got map[string]any
	rb, _ := os.ReadFile(recordings + "agent-state.json")
	json.Unmarshal(rb, &recorded)
	resp, err = http.Get(a.url("/state"))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&got)
	for k := range recorded {
		if _, ok := got[k]; !ok {
			t.Errorf("/state lacks %q", k)
		}
	}
	if got["id"] != a.ID() || got["hostname"] != "agent-1" || got["pid"] != "slave(1)@"+a.Endpoint() {
		t.Errorf("/state: %v %v %v", got["id"], got["hostname"], got["pid"])
	}
	if r := got["resources"].(map[string]any); r["cpus"] != 2.0 || r["ports"] != "[31000-31100]" {
		t.Errorf("resources %v", r)
	}
	if at := got["attributes"].(map[string]any); at["rack"] != "r1" || at["zone"] != "a" {
		t.Errorf("attributes %v", at)
	}
	recEx := recorded["frameworks"].([]any)[0].(map[string]any)["executors"].([]any)[0].(map[string]any)
	ex := got["frameworks"].([]any)[0].(map[string]any)["executors"].([]any)[0].(map[string]any)
	for k := range recEx {
		if _, ok := ex[k]; !ok {
			t.Errorf("/state executor lacks %q", k)
		}
	}
	if ex["id"] != "t-sleep" || ex["source"] != "t-sleep" || ex["name"] != "Command Executor (Task: t-sleep) (Command: sh -c 'sleep 100')" {
		t.Errorf("executor %v %v %v", ex["id"], ex["source"], ex["name"])
	}
	if r := ex["resources"].(map[string]any); r["cpus"] != 0.2 || r["mem"] != 64.0 {
		t.Errorf("command executor resources %v (task + 0.1 cpus, 32 MB as Mesos)", r)
	}
	recTask := recEx["tasks"].([]any)[0].(map[string]any)
	tk := ex["tasks"].([]any)[0].(map[string]any)
	for k := range recTask {
		if _, ok := tk[k]; !ok {
			t.Errorf("/state task lacks %q", k)
		}
	}
	if tk["state"] != "TASK_RUNNING" || tk["executor_id"] != "" || tk["slave_id"] != a.ID() {
		t.Errorf("task %v", tk)
	}

	resp, err = http.Get(a.url("/metrics/snapshot"))
	if err != nil {
		t.Fatal(err)
	}
	var metrics map[string]float64
	json.NewDecoder(resp.Body).Decode(&metrics)
	if metrics["slave/registered"] != 1 || metrics["slave/tasks_running"] != 1 || metrics["slave/executors_running"] != 1 || metrics["slave/cpus_total"] != 2 {
		t.Errorf("metrics %v", metrics)
	}
}
