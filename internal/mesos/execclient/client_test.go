package execclient

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
)

const recordings = "../../../testdata/mesos-recordings/"

// The executor's environment exactly as a real Mesos 1.11 agent set it
// (executor-environment.txt, section (b)).
func recordedEnv(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(recordings + "executor-environment.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	env := map[string]string{}
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "--- env.txt"):
			in = true
		case in && (strings.HasPrefix(l, "---") || l == ""):
			in = false
		case in:
			k, v, _ := strings.Cut(l, "=")
			env[k] = v
		}
	}
	if env["MESOS_EXECUTOR_ID"] != "e-shell" {
		t.Fatalf("recording not parsed: %v", env)
	}
	return env
}

func TestConfigFromRecordedEnvironment(t *testing.T) {
	env := recordedEnv(t)
	cfg, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AgentURL != "http://127.0.0.1:5051/api/v1/executor" || cfg.ExecutorID != "e-shell" ||
		cfg.FrameworkID != "d9097ce5-55bd-48f9-a8ba-fe84abe1c220-0010" || cfg.AgentID != "d9097ce5-55bd-48f9-a8ba-fe84abe1c220-S0" ||
		cfg.Checkpoint || cfg.ShutdownGracePeriod != 5*time.Second || !strings.HasSuffix(cfg.Sandbox, "a2d378a0-6075-4560-8b61-d43d807dc06e") {
		t.Fatalf("config %+v", cfg)
	}
	for k, v := range map[string]string{
		"MESOS_CHECKPOINT":                     "yes",
		"MESOS_RECOVERY_TIMEOUT":               "15 minutes",
		"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "5",
		"MESOS_AGENT_ENDPOINT":                 "http://x/",
		"MESOS_FRAMEWORK_ID":                   "",
	} {
		bad := map[string]string{}
		for kk, vv := range env {
			bad[kk] = vv
		}
		bad[k] = v
		if _, err := ConfigFromEnv(func(k string) string { return bad[k] }); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: error %v should name the variable", k, v, err)
		}
	}
	env["MESOS_CHECKPOINT"] = "1"
	env["MESOS_RECOVERY_TIMEOUT"] = "15mins"
	env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = "2secs"
	cfg, err = ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil || !cfg.Checkpoint || cfg.RecoveryTimeout != 15*time.Minute || cfg.SubscriptionBackoffMax != 2*time.Second {
		t.Fatalf("%+v %v", cfg, err)
	}
}

func TestDurations(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"5secs": 5 * time.Second, "15mins": 15 * time.Minute, "1.5hrs": 90 * time.Minute, "100ms": 100 * time.Millisecond,
		"10us": 10 * time.Microsecond, "3ns": 3, "1days": 24 * time.Hour, "2weeks": 14 * 24 * time.Hour,
	} {
		got, err := ParseDuration(s)
		if err != nil || got != want {
			t.Errorf("%s: %v %v", s, got, err)
		}
		if back, _ := ParseDuration(FormatDuration(want)); back != want {
			t.Errorf("format %v: %s", want, FormatDuration(want))
		}
	}
	if FormatDuration(5*time.Second) != "5secs" || FormatDuration(90*time.Minute) != "1.5hrs" {
		t.Errorf("format: %s %s", FormatDuration(5*time.Second), FormatDuration(90*time.Minute))
	}
	for _, bad := range []string{"", "5", "secs", "5 seconds", "1e999secs"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzDuration(f *testing.F) {
	for _, s := range []string{"5secs", "1.5hrs", "-3ms", "0ns", "1e3us"} {
		f.Add(s, int64(0))
	}
	f.Add("", int64(1234567891))
	f.Fuzz(func(t *testing.T, s string, n int64) {
		if d, err := ParseDuration(s); err == nil {
			FormatDuration(d)
		}
		d := time.Duration(n)
		if back, err := ParseDuration(FormatDuration(d)); err != nil || back != d {
			t.Fatalf("%d: %q -> %v %v", n, FormatDuration(d), back, err)
		}
	})
}

// recordedAgentEvents are what the real agent sent the executor.
func recordedAgentEvents(t *testing.T) []*executorpb.Event {
	t.Helper()
	b, err := os.ReadFile(recordings + "executor-session.txt")
	if err != nil {
		t.Fatal(err)
	}
	var out []*executorpb.Event
	for _, m := range regexp.MustCompile(`(?m)^\d+\\n(\{.*\})$`).FindAllSubmatch(b, -1) {
		ev := &executorpb.Event{}
		if err := codec.UnmarshalJSON(m[1], ev); err != nil {
			continue // the scheduler side's events are in the file too
		}
		if ev.Type != nil {
			out = append(out, ev)
		}
	}
	return out
}

type fakeAgent struct {
	t   *testing.T
	enc codec.Encoding
	srv *httptest.Server

	mu    sync.Mutex
	calls []*executorpb.Call
	// stream serves the n-th SUBSCRIBE.
	stream func(n int, send func(*executorpb.Event), done <-chan struct{})
	subs   int
	done   chan struct{}
}

func newFakeAgent(t *testing.T, enc codec.Encoding) *fakeAgent {
	fa := &fakeAgent{t: t, enc: enc, done: make(chan struct{})}
	fa.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/executor" || r.Method != http.MethodPost || r.Header.Get("Content-Type") != enc.MediaType() {
			t.Errorf("unexpected request %s %s %s", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		b, _ := io.ReadAll(r.Body)
		call := &executorpb.Call{}
		if err := codec.Unmarshal(enc, b, call); err != nil {
			t.Errorf("undecodable call: %v", err)
			w.WriteHeader(400)
			return
		}
		fa.mu.Lock()
		fa.calls = append(fa.calls, call)
		n := fa.subs
		if call.GetType() == executorpb.Call_SUBSCRIBE {
			fa.subs++
		}
		fa.mu.Unlock()
		if call.GetType() != executorpb.Call_SUBSCRIBE {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", enc.MediaType())
		w.WriteHeader(200)
		rw := recordio.NewWriter(w)
		flusher := w.(http.Flusher)
		fa.stream(n, func(ev *executorpb.Event) {
			b, _ := codec.Marshal(enc, ev)
			rw.WriteRecord(b)
			flusher.Flush()
		}, fa.done)
	}))
	t.Cleanup(func() { close(fa.done); fa.srv.CloseClientConnections(); fa.srv.Close() })
	return fa
}

func (fa *fakeAgent) callsOf(typ executorpb.Call_Type) []*executorpb.Call {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	var out []*executorpb.Call
	for _, c := range fa.calls {
		if c.GetType() == typ {
			out = append(out, c)
		}
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testConfig(fa *fakeAgent, enc codec.Encoding, checkpoint bool) Config {
	return Config{FrameworkID: "fw-1", ExecutorID: "e-py", AgentID: "S0", AgentURL: fa.srv.URL + "/api/v1/executor",
		Checkpoint: checkpoint, RecoveryTimeout: 2 * time.Second, SubscriptionBackoffMax: 20 * time.Millisecond, Encoding: enc}
}

func TestRecordedSessionAndResubscribe(t *testing.T) {
	recorded := recordedAgentEvents(t)
	var subscribedEv, launchEv *executorpb.Event
	for _, ev := range recorded {
		switch ev.GetType() {
		case executorpb.Event_SUBSCRIBED:
			subscribedEv = ev
		case executorpb.Event_LAUNCH:
			if launchEv == nil {
				launchEv = ev
			}
		}
	}
	if subscribedEv == nil || launchEv == nil {
		t.Fatal("recording lacks SUBSCRIBED or LAUNCH")
	}
	for _, enc := range []codec.Encoding{codec.JSON, codec.Protobuf} {
		t.Run(enc.String(), func(t *testing.T) {
			fa := newFakeAgent(t, enc)
			fa.stream = func(n int, send func(*executorpb.Event), done <-chan struct{}) {
				send(subscribedEv)
				if n == 0 {
					send(launchEv)
					// The first connection drops once the executor sent two
					// updates; the agent acknowledges only the first.
					waitUntil(t, "two updates", func() bool { return len(fa.callsOf(executorpb.Call_UPDATE)) == 2 })
					first := fa.callsOf(executorpb.Call_UPDATE)[0].GetUpdate().GetStatus()
					send(&executorpb.Event{Type: executorpb.Event_ACKNOWLEDGED.Enum(), Acknowledged: &executorpb.Event_Acknowledged{TaskId: first.TaskId, Uuid: first.Uuid}})
					return
				}
				<-done
			}
			c := New(testConfig(fa, enc, true))
			var mu sync.Mutex
			var got []executorpb.Event_Type
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go c.Run(ctx, HandlerFuncs{OnEvent: func(ctx context.Context, ev *executorpb.Event) {
				mu.Lock()
				got = append(got, ev.GetType())
				mu.Unlock()
				if ev.GetType() == executorpb.Event_LAUNCH {
					id := ev.GetLaunch().GetTask().GetTaskId()
					go func() {
						c.Update(ctx, &mesospb.TaskStatus{TaskId: id, State: mesospb.TaskState_TASK_RUNNING.Enum()})
						c.Update(ctx, &mesospb.TaskStatus{TaskId: id, State: mesospb.TaskState_TASK_FINISHED.Enum()})
					}()
				}
			}})
			waitUntil(t, "resubscription", func() bool { return len(fa.callsOf(executorpb.Call_SUBSCRIBE)) == 2 })
			subs := fa.callsOf(executorpb.Call_SUBSCRIBE)
			if n := len(subs[0].GetSubscribe().GetUnacknowledgedUpdates()); n != 0 {
				t.Fatalf("first SUBSCRIBE carries %d updates", n)
			}
			// The acknowledged RUNNING is gone (and with it the task);
			// the FINISHED update is resent.
			re := subs[1].GetSubscribe()
			if len(re.GetUnacknowledgedUpdates()) != 1 || re.GetUnacknowledgedUpdates()[0].GetStatus().GetState() != mesospb.TaskState_TASK_FINISHED {
				t.Fatalf("resubscribe updates %v", re.GetUnacknowledgedUpdates())
			}
			if len(re.GetUnacknowledgedTasks()) != 0 {
				t.Fatalf("an acknowledged task is not resent: %v", re.GetUnacknowledgedTasks())
			}
			st := fa.callsOf(executorpb.Call_UPDATE)[0].GetUpdate().GetStatus()
			if len(st.GetUuid()) != 16 || st.GetSource() != mesospb.TaskStatus_SOURCE_EXECUTOR || st.GetExecutorId().GetValue() != "e-py" ||
				st.GetAgentId().GetValue() != "S0" || st.Timestamp == nil {
				t.Fatalf("update %v", st)
			}
		})
	}
}

func TestNoCheckpointNoReconnectAndRecoveryTimeout(t *testing.T) {
	fa := newFakeAgent(t, codec.JSON)
	fa.stream = func(n int, send func(*executorpb.Event), done <-chan struct{}) {
		send(&executorpb.Event{Type: executorpb.Event_SUBSCRIBED.Enum(), Subscribed: &executorpb.Event_Subscribed{
			ExecutorInfo:  &mesospb.ExecutorInfo{ExecutorId: &mesospb.ExecutorID{Value: proto.String("e-py")}},
			FrameworkInfo: &mesospb.FrameworkInfo{User: proto.String("u"), Name: proto.String("n")},
			AgentInfo:     &mesospb.AgentInfo{Hostname: proto.String("h")},
		}})
	}
	err := New(testConfig(fa, codec.JSON, false)).Run(context.Background(), HandlerFuncs{})
	if !errors.Is(err, ErrAgentGone) || !strings.Contains(err.Error(), "does not checkpoint") {
		t.Fatalf("got %v", err)
	}
	if n := len(fa.callsOf(executorpb.Call_SUBSCRIBE)); n != 1 {
		t.Fatalf("%d subscriptions without checkpointing", n)
	}
	// Checkpointing, but the agent never comes back: give up after the
	// recovery timeout.
	fa.srv.Close()
	cfg := testConfig(fa, codec.JSON, true)
	cfg.RecoveryTimeout = 200 * time.Millisecond
	start := time.Now()
	err = New(cfg).Run(context.Background(), HandlerFuncs{})
	if !errors.Is(err, ErrAgentGone) || !strings.Contains(err.Error(), "recovery timeout") || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("got %v after %v", err, time.Since(start))
	}
}

func TestGarbageOnTheStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.Write([]byte("x\n{}"))
	}))
	defer srv.Close()
	cfg := Config{FrameworkID: "f", ExecutorID: "e", AgentURL: srv.URL + "/api/v1/executor"}
	err := New(cfg).Run(context.Background(), HandlerFuncs{})
	if err == nil || !strings.Contains(err.Error(), "malformed stream") {
		t.Fatalf("got %v", err)
	}
}
