package schedclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// recordedEvents are the scheduler events a real Mesos 1.11 streamed in
// the JSON session (testdata/mesos-recordings).
func recordedEvents(t *testing.T) []*schedulerpb.Event {
	t.Helper()
	f, err := os.Open("../../../testdata/mesos-recordings/scheduler-json-session.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile(`^\d+\\n(\{.*\})$`)
	var out []*schedulerpb.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			ev := &schedulerpb.Event{}
			if err := codec.UnmarshalJSON([]byte(m[1]), ev); err != nil {
				t.Fatal(err)
			}
			out = append(out, ev)
		}
	}
	if len(out) < 20 {
		t.Fatalf("only %d recorded events", len(out))
	}
	return out
}

// fakeMaster records the calls it gets and streams what the test gives it.
type fakeMaster struct {
	t   *testing.T
	enc codec.Encoding
	srv *httptest.Server

	mu         sync.Mutex
	calls      []*schedulerpb.Call
	headers    []http.Header
	subscribes int
	// streamFn serves the n-th SUBSCRIBE (0-based).
	streamFn func(n int, w http.ResponseWriter, rw *recordio.Writer, flush func())
	callCode int
}

func newFakeMaster(t *testing.T, enc codec.Encoding) *fakeMaster {
	fm := &fakeMaster{t: t, enc: enc, callCode: http.StatusAccepted}
	fm.srv = httptest.NewServer(http.HandlerFunc(fm.serve))
	t.Cleanup(func() { fm.srv.CloseClientConnections(); fm.srv.Close() })
	return fm
}

func (fm *fakeMaster) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/scheduler" {
		fm.t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
		http.Error(w, "bad", 400)
		return
	}
	if r.Header.Get("Content-Type") != fm.enc.MediaType() || r.Header.Get("Accept") != fm.enc.MediaType() {
		fm.t.Errorf("Content-Type %q Accept %q, want %s", r.Header.Get("Content-Type"), r.Header.Get("Accept"), fm.enc.MediaType())
	}
	body, _ := io.ReadAll(r.Body)
	call := &schedulerpb.Call{}
	if err := codec.Unmarshal(fm.enc, body, call); err != nil {
		fm.t.Errorf("undecodable call: %v", err)
		http.Error(w, err.Error(), 400)
		return
	}
	fm.mu.Lock()
	fm.calls = append(fm.calls, call)
	fm.headers = append(fm.headers, r.Header.Clone())
	n := fm.subscribes
	if call.GetType() == schedulerpb.Call_SUBSCRIBE {
		fm.subscribes++
	}
	code := fm.callCode
	fm.mu.Unlock()
	if call.GetType() != schedulerpb.Call_SUBSCRIBE {
		if r.Header.Get("Mesos-Stream-Id") != "stream-1" {
			http.Error(w, "The stream ID included in this request didn't match", 400)
			return
		}
		w.WriteHeader(code)
		if code != http.StatusAccepted {
			io.WriteString(w, "Framework is not subscribed")
		}
		return
	}
	if r.Header.Get("Mesos-Stream-Id") != "" {
		fm.t.Errorf("SUBSCRIBE carries a stream id")
	}
	w.Header().Set("Mesos-Stream-Id", "stream-1")
	w.Header().Set("Content-Type", fm.enc.MediaType())
	w.WriteHeader(200)
	flusher := w.(http.Flusher)
	fm.streamFn(n, w, recordio.NewWriter(w), flusher.Flush)
}

func (fm *fakeMaster) send(rw *recordio.Writer, flush func(), ev *schedulerpb.Event) {
	b, err := codec.Marshal(fm.enc, ev)
	if err != nil {
		fm.t.Fatal(err)
	}
	rw.WriteRecord(b)
	flush()
}

func (fm *fakeMaster) callsOf(t schedulerpb.Call_Type) []*schedulerpb.Call {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	var out []*schedulerpb.Call
	for _, c := range fm.calls {
		if c.GetType() == t {
			out = append(out, c)
		}
	}
	return out
}

func subscribed(id string, hb float64) *schedulerpb.Event {
	return &schedulerpb.Event{Type: schedulerpb.Event_SUBSCRIBED.Enum(), Subscribed: &schedulerpb.Event_Subscribed{
		FrameworkId: &mesospb.FrameworkID{Value: proto.String(id)}, HeartbeatIntervalSeconds: proto.Float64(hb)}}
}

type recorder struct {
	mu     sync.Mutex
	events []*schedulerpb.Event
	discon []error
	ch     chan struct{}
}

func newRecorder() *recorder { return &recorder{ch: make(chan struct{}, 1000)} }

func (r *recorder) Event(_ context.Context, ev *schedulerpb.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *recorder) Disconnected(err error) {
	r.mu.Lock()
	r.discon = append(r.discon, err)
	r.mu.Unlock()
	r.ch <- struct{}{}
}

func (r *recorder) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func info() *mesospb.FrameworkInfo {
	return &mesospb.FrameworkInfo{User: proto.String("root"), Name: proto.String("km")}
}

func TestSubscribeRecordedStreamAndCalls(t *testing.T) {
	recorded := recordedEvents(t)
	for _, enc := range []codec.Encoding{codec.JSON, codec.Protobuf} {
		t.Run(enc.String(), func(t *testing.T) {
			fm := newFakeMaster(t, enc)
			done := make(chan struct{})
			fm.streamFn = func(n int, w http.ResponseWriter, rw *recordio.Writer, flush func()) {
				for _, ev := range recorded {
					fm.send(rw, flush, ev)
				}
				<-done
			}
			defer close(done)
			c, err := New(Config{Masters: []string{fm.srv.Listener.Addr().String()}, Encoding: enc, FrameworkInfo: info()})
			if err != nil {
				t.Fatal(err)
			}
			rec := newRecorder()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go c.Run(ctx, rec)
			rec.waitFor(t, "all recorded events", func() bool { return len(rec.events) == len(recorded) })
			for i, ev := range rec.events {
				if !proto.Equal(ev, recorded[i]) {
					t.Fatalf("event %d differs", i)
				}
			}
			lastID := ""
			for _, ev := range recorded {
				if ev.GetType() == schedulerpb.Event_SUBSCRIBED {
					lastID = ev.GetSubscribed().GetFrameworkId().GetValue()
				}
			}
			if c.FrameworkID() != lastID {
				t.Fatalf("framework id %q", c.FrameworkID())
			}
			// Every call carries the stream id and framework id.
			st := recorded[5].GetUpdate().GetStatus()
			for _, call := range []func() error{
				func() error { return c.Acknowledge(ctx, st) },
				func() error { return c.Decline(ctx, []string{"O1"}, Filters(time.Hour)) },
				func() error { return c.Revive(ctx) },
				func() error { return c.Suppress(ctx, "*") },
				func() error { return c.Kill(ctx, "t1", "S1", 30*time.Second) },
				func() error { return c.Reconcile(ctx, []ReconcileTask{{TaskID: "t1"}}) },
				func() error { return c.Message(ctx, "S1", "e1", []byte("hi")) },
				func() error { return c.Shutdown(ctx, "S1", "e1") },
				func() error { return c.Accept(ctx, []string{"O2"}, []*mesospb.Offer_Operation{LaunchOperation()}, nil) },
				func() error { return c.Teardown(ctx) },
			} {
				if err := call(); err != nil {
					t.Fatal(err)
				}
			}
			acks := fm.callsOf(schedulerpb.Call_ACKNOWLEDGE)
			if len(acks) != 1 || string(acks[0].GetAcknowledge().GetUuid()) != string(st.GetUuid()) || acks[0].GetFrameworkId().GetValue() != c.FrameworkID() {
				t.Fatalf("ack %v", acks)
			}
			if d := fm.callsOf(schedulerpb.Call_DECLINE); d[0].GetDecline().GetFilters().GetRefuseSeconds() != 3600 {
				t.Fatalf("decline %v", d)
			}
			if k := fm.callsOf(schedulerpb.Call_KILL); k[0].GetKill().GetKillPolicy().GetGracePeriod().GetNanoseconds() != 30e9 {
				t.Fatalf("kill %v", k)
			}
			// A refused call surfaces the master's answer.
			fm.mu.Lock()
			fm.callCode = http.StatusForbidden
			fm.mu.Unlock()
			err = c.Revive(ctx)
			var se *StatusError
			if !errors.As(err, &se) || se.Code != 403 || !strings.Contains(se.Error(), "Framework is not subscribed") {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestRedirectToLeader(t *testing.T) {
	fm := newFakeMaster(t, codec.JSON)
	done := make(chan struct{})
	defer close(done)
	fm.streamFn = func(n int, w http.ResponseWriter, rw *recordio.Writer, flush func()) {
		fm.send(rw, flush, subscribed("fw-1", 15))
		<-done
	}
	// The first master is not the leader: it redirects, scheme-relative,
	// as Mesos does.
	follower := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "//"+fm.srv.Listener.Addr().String()+"/api/v1/scheduler")
		w.WriteHeader(http.StatusTemporaryRedirect)
	}))
	defer follower.Close()
	c, _ := New(Config{Masters: []string{follower.Listener.Addr().String()}, FrameworkInfo: info()})
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx, rec)
	rec.waitFor(t, "SUBSCRIBED via the leader", func() bool { return len(rec.events) == 1 })
	if c.Leader().Host != fm.srv.Listener.Addr().String() {
		t.Fatalf("leader %v", c.Leader())
	}
	if err := c.Revive(ctx); err != nil {
		t.Fatalf("calls go to the leader: %v", err)
	}
}

func TestReconnectAfterDropAndMissedHeartbeats(t *testing.T) {
	fm := newFakeMaster(t, codec.JSON)
	done := make(chan struct{})
	defer close(done)
	fm.streamFn = func(n int, w http.ResponseWriter, rw *recordio.Writer, flush func()) {
		switch n {
		case 0:
			// SUBSCRIBED, then the connection drops.
			fm.send(rw, flush, subscribed("fw-1", 15))
		case 1:
			// Heartbeats every 50 ms are announced, then none come.
			fm.send(rw, flush, subscribed("fw-1", 0.05))
			<-done
		default:
			fm.send(rw, flush, subscribed("fw-1", 15))
			<-done
		}
	}
	c, _ := New(Config{Masters: []string{fm.srv.URL}, FrameworkInfo: info(), MinBackoff: 10 * time.Millisecond, MaxBackoff: 20 * time.Millisecond})
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx, rec)
	rec.waitFor(t, "three subscriptions", func() bool { return len(rec.events) >= 3 })
	rec.mu.Lock()
	if len(rec.discon) < 2 || !strings.Contains(fmt.Sprint(rec.discon[1]), "missed heartbeats") {
		t.Fatalf("disconnects %v", rec.discon)
	}
	rec.mu.Unlock()
	subs := fm.callsOf(schedulerpb.Call_SUBSCRIBE)
	if subs[0].FrameworkId != nil {
		t.Fatalf("first subscription has no ID")
	}
	for _, s := range subs[1:] {
		if s.GetFrameworkId().GetValue() != "fw-1" || s.GetSubscribe().GetFrameworkInfo().GetId().GetValue() != "fw-1" {
			t.Fatalf("resubscription must fail over with the ID: %v", s)
		}
	}
}

func TestFatalAndGarbage(t *testing.T) {
	fm := newFakeMaster(t, codec.JSON)
	fm.streamFn = func(n int, w http.ResponseWriter, rw *recordio.Writer, flush func()) {
		if n == 0 {
			w.Write([]byte("garbage\n"))
			flush()
			return
		}
		fm.send(rw, flush, &schedulerpb.Event{Type: schedulerpb.Event_ERROR.Enum(), Error: &schedulerpb.Event_Error{Message: proto.String("Framework has been removed")}})
	}
	c, _ := New(Config{Masters: []string{fm.srv.URL}, FrameworkInfo: info(), MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	err := c.Run(context.Background(), newRecorder())
	var fe *FatalError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), "new framework ID") {
		t.Fatalf("got %v", err)
	}

	// A 400 to SUBSCRIBE is a configuration error, not a retry loop.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Failed to validate scheduler::Call: bad role", 400)
	}))
	defer bad.Close()
	c, _ = New(Config{Masters: []string{bad.URL}, FrameworkInfo: info()})
	if err := c.Run(context.Background(), newRecorder()); err == nil || !strings.Contains(err.Error(), "bad role") {
		t.Fatalf("got %v", err)
	}
	if err := c.Revive(context.Background()); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("calls before SUBSCRIBED: %v", err)
	}
	if _, err := New(Config{Masters: []string{"::bad"}, FrameworkInfo: info()}); err == nil {
		t.Fatal("bad master address accepted")
	}
}
