package schedclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
)

// The client consumes what a real Mesos streamed, byte for byte, in both
// encodings: every event reaches the handler in order. When the stream
// ends, the handler is told and the client subscribes again as the
// framework Mesos named in SUBSCRIBED (failover), keeping the rest of the
// FrameworkInfo.
func TestRecordedStreams(t *testing.T) {
	for _, tc := range []struct {
		enc  codec.Encoding
		recs [][]byte
	}{
		{codec.JSON, jsonStream(t, "scheduler-json-session.txt", "PART A", "stream")},
		{codec.Protobuf, protoStream(t, "proto")},
	} {
		t.Run(tc.enc.String(), func(t *testing.T) {
			want := decodeAll(t, tc.enc, tc.recs)
			id := want[0].GetSubscribed().GetFrameworkId().GetValue()
			fm := newFakeMaster(t, tc.enc)
			fm.subscribe = func(n int, s *stream) {
				s.ok()
				if n == 0 {
					for _, rec := range tc.recs {
						s.sendRaw(rec)
					}
					return // Mesos ends the stream (here: TEARDOWN's)
				}
				s.sendRaw(tc.recs[0])
				s.hold()
			}
			r := startClient(t, testConfig(tc.enc, fm.addr()))
			for i, w := range want {
				if got := r.nextEvent(); !proto.Equal(got, w) {
					t.Fatalf("event %d:\n got %v\nwant %v", i, got, w)
				}
			}
			err := r.disconnected()
			if !strings.Contains(err.Error(), fmt.Sprintf("closed the event stream after %d events", len(want))) {
				t.Errorf("Disconnected(%v): the reason should say the master closed the stream", err)
			}
			if ev := r.nextEvent(); !proto.Equal(ev, want[0]) {
				t.Fatalf("after resubscribing: %v", ev)
			}
			subs := fm.waitSubscribes(2)
			first, again := subs[0].call, subs[1].call
			if first.FrameworkId != nil || first.GetSubscribe().GetFrameworkInfo().Id != nil {
				t.Errorf("first SUBSCRIBE of a new framework carries an ID: %v", first)
			}
			if again.GetFrameworkId().GetValue() != id || again.GetSubscribe().GetFrameworkInfo().GetId().GetValue() != id {
				t.Errorf("SUBSCRIBE after the drop is not a failover to %s: %v", id, again)
			}
			wantInfo := testInfo()
			wantInfo.Id = &mesospb.FrameworkID{Value: proto.String(id)}
			if !proto.Equal(again.GetSubscribe().GetFrameworkInfo(), wantInfo) {
				t.Errorf("FrameworkInfo changed on resubscription:\n got %v\nwant %v", again.GetSubscribe().GetFrameworkInfo(), wantInfo)
			}
			if r.c.FrameworkID() != id || r.c.StreamID() != "stream-2" || !r.c.Subscribed() {
				t.Errorf("FrameworkID %q StreamID %q Subscribed %v", r.c.FrameworkID(), r.c.StreamID(), r.c.Subscribed())
			}
		})
	}
}

// The SUBSCRIBE a fresh client sends is the one a real Mesos accepted.
func TestSubscribeMatchesRecording(t *testing.T) {
	want := recordedRequests(t, "scheduler-json-session.txt")["SUBSCRIBE (framework capabilities: MULTI_ROLE, PARTITION_AWARE) (long-lived streaming connection 'stream')"]
	if want == nil {
		t.Fatal("recorded SUBSCRIBE not found")
	}
	for _, enc := range []codec.Encoding{codec.JSON, codec.Protobuf} {
		t.Run(enc.String(), func(t *testing.T) {
			fm := newFakeMaster(t, enc)
			cfg := testConfig(enc, fm.addr())
			cfg.FrameworkInfo = want.GetSubscribe().GetFrameworkInfo()
			r := startClient(t, cfg)
			r.waitEvent(schedulerpb.Event_SUBSCRIBED)
			if got := fm.subscribes()[0].call; !sameCall(got, want) {
				t.Errorf("SUBSCRIBE\n got %v\nwant %v", got, want)
			}
		})
	}
}

// Calls go on their own connection to the master of the stream, with its
// Mesos-Stream-Id and the configured extra headers; SUBSCRIBE has no stream
// ID. A URL's path is kept.
func TestRequestHeadersAndConnections(t *testing.T) {
	for _, enc := range []codec.Encoding{codec.JSON, codec.Protobuf} {
		t.Run(enc.String(), func(t *testing.T) {
			fm := newFakeMaster(t, enc)
			fm.path = "/mesos/api/v1/scheduler"
			cfg := testConfig(enc, "http://"+fm.addr()+"/mesos/api/v1/scheduler")
			cfg.Header = http.Header{"Authorization": {"Basic a206c2VjcmV0"}, "X-Extra": {"1"}}
			r := startClient(t, cfg)
			r.waitEvent(schedulerpb.Event_SUBSCRIBED)
			if err := r.c.Revive(context.Background()); err != nil {
				t.Fatal(err)
			}
			reqs := fm.requests()
			sub, call := reqs[0], reqs[1]
			for _, q := range reqs {
				if q.header.Get("Authorization") != "Basic a206c2VjcmV0" || q.header.Get("X-Extra") != "1" {
					t.Errorf("%s lacks the configured headers: %v", q.call.GetType(), q.header)
				}
			}
			if sub.header.Get("Mesos-Stream-Id") != "" {
				t.Errorf("SUBSCRIBE carries Mesos-Stream-Id")
			}
			if call.header.Get("Mesos-Stream-Id") != "stream-1" || call.call.GetFrameworkId().GetValue() != "fw-1" {
				t.Errorf("REVIVE: Mesos-Stream-Id %q framework_id %q", call.header.Get("Mesos-Stream-Id"), call.call.GetFrameworkId().GetValue())
			}
			if sub.remote == call.remote {
				t.Errorf("the call went on the stream's connection (%s)", sub.remote)
			}
		})
	}
}

// A non-leading master answers 307 with a scheme-relative Location; the
// client goes there with the same request, headers included, remembers the
// leader, sends its calls there, and resubscribes there directly.
func TestRedirectToLeader(t *testing.T) {
	for _, enc := range []codec.Encoding{codec.JSON, codec.Protobuf} {
		t.Run(enc.String(), func(t *testing.T) {
			leader := newFakeMaster(t, enc)
			drop := make(chan struct{})
			leader.subscribe = func(n int, s *stream) {
				s.ok()
				s.send(subscribedEvent("fw-1", 15))
				if n == 0 {
					<-drop
					return
				}
				s.hold()
			}
			follower := newFakeMaster(t, enc)
			follower.subscribe = func(n int, s *stream) {
				s.w.Header().Set("Location", "//"+leader.addr()+"/api/v1/scheduler")
				s.w.WriteHeader(http.StatusTemporaryRedirect)
			}
			cfg := testConfig(enc, follower.addr())
			cfg.Header = http.Header{"Authorization": {"Basic a206c2VjcmV0"}}
			r := startClient(t, cfg)
			r.waitEvent(schedulerpb.Event_SUBSCRIBED)
			if l := r.c.Leader(); l == nil || l.String() != "http://"+leader.addr()+"/api/v1/scheduler" {
				t.Errorf("Leader() = %v, want the leader's URL with our scheme", l)
			}
			if h := leader.subscribes()[0].header.Get("Authorization"); h == "" {
				t.Errorf("the Authorization header was lost on the redirect")
			}
			if err := r.c.Suppress(context.Background(), "*"); err != nil {
				t.Fatal(err)
			}
			leader.waitRequests(1, isCall(schedulerpb.Call_SUPPRESS))
			close(drop)
			r.disconnected()
			r.waitEvent(schedulerpb.Event_SUBSCRIBED)
			if n := len(leader.subscribes()); n != 2 {
				t.Errorf("the leader got %d SUBSCRIBEs, want 2", n)
			}
			if n := len(follower.requests()); n != 1 {
				t.Errorf("the follower got %d requests, want only the first SUBSCRIBE (the leader is remembered)", n)
			}
		})
	}
}

// 503 (no leader elected yet, recovering) is retried with backoff; with
// several masters, the next is tried.
func TestServiceUnavailable(t *testing.T) {
	t.Run("same master", func(t *testing.T) {
		fm := newFakeMaster(t, codec.JSON)
		fm.subscribe = func(n int, s *stream) {
			if n < 2 {
				http.Error(s.w, "No leader elected", http.StatusServiceUnavailable)
				return
			}
			s.ok()
			s.send(subscribedEvent("fw-1", 15))
			s.hold()
		}
		r := startClient(t, testConfig(codec.JSON, fm.addr()))
		r.waitEvent(schedulerpb.Event_SUBSCRIBED)
		if n := len(fm.subscribes()); n != 3 {
			t.Errorf("%d SUBSCRIBEs, want 3", n)
		}
		if !strings.Contains(r.log.String(), "503 Service Unavailable: No leader elected") {
			t.Errorf("the log does not say why: %s", r.log)
		}
		r.noDisconnect()
	})
	t.Run("next master", func(t *testing.T) {
		recovering := newFakeMaster(t, codec.JSON)
		recovering.subscribe = func(n int, s *stream) {
			http.Error(s.w, "Master has not finished recovery", http.StatusServiceUnavailable)
		}
		good := newFakeMaster(t, codec.JSON)
		r := startClient(t, testConfig(codec.JSON, recovering.addr(), good.addr()))
		r.waitEvent(schedulerpb.Event_SUBSCRIBED)
		if l := r.c.Leader(); l == nil || l.Host != good.addr() {
			t.Errorf("Leader() = %v", l)
		}
	})
	t.Run("unreachable master", func(t *testing.T) {
		gone := newFakeMaster(t, codec.JSON)
		addr := gone.addr()
		gone.srv.Close()
		good := newFakeMaster(t, codec.JSON)
		r := startClient(t, testConfig(codec.JSON, addr, good.addr()))
		r.waitEvent(schedulerpb.Event_SUBSCRIBED)
	})
}

// Masters that redirect to each other are given up on after a few hops.
func TestRedirectLoop(t *testing.T) {
	a, b := newFakeMaster(t, codec.JSON), newFakeMaster(t, codec.JSON)
	a.subscribe = func(n int, s *stream) {
		s.w.Header().Set("Location", "//"+b.addr()+"/api/v1/scheduler")
		s.w.WriteHeader(http.StatusTemporaryRedirect)
	}
	b.subscribe = func(n int, s *stream) {
		s.w.Header().Set("Location", "//"+a.addr()+"/api/v1/scheduler")
		s.w.WriteHeader(http.StatusTemporaryRedirect)
	}
	good := newFakeMaster(t, codec.JSON)
	r := startClient(t, testConfig(codec.JSON, a.addr(), good.addr()))
	r.waitEvent(schedulerpb.Event_SUBSCRIBED)
	if na, nb := len(a.subscribes()), len(b.subscribes()); na+nb != 6 {
		t.Errorf("%d+%d SUBSCRIBEs to the looping masters, want the first and 5 redirects", na, nb)
	}
	if l := r.c.Leader(); l == nil || l.Host != good.addr() {
		t.Errorf("Leader() = %v, want the master that answered", l)
	}
	// When no master answers, the log says why.
	r2 := startClient(t, testConfig(codec.JSON, a.addr(), b.addr()))
	waitFor(t, "the loop in the log", func() bool {
		return strings.Contains(r2.log.String(), "no Mesos master took SUBSCRIBE: more than 5 redirects between Mesos masters")
	})
}

// A dropped connection (here in the middle of a record) ends the
// subscription: the handler is told, calls fail fast until the next
// SUBSCRIBED, which is a failover to the same framework.
func TestDroppedConnection(t *testing.T) {
	for _, enc := range []codec.Encoding{codec.JSON, codec.Protobuf} {
		t.Run(enc.String(), func(t *testing.T) {
			fm := newFakeMaster(t, enc)
			fm.subscribe = func(n int, s *stream) {
				s.ok()
				s.send(subscribedEvent(fmt.Sprintf("fw-%d", n+1), 15))
				if n == 0 {
					s.write([]byte("100\n{partial"))
					return
				}
				s.hold()
			}
			r := newRunning(t, testConfig(enc, fm.addr()))
			var callErr error
			r.onDisconnected = func(error) { callErr = r.c.Revive(context.Background()) }
			subscribedErr := make(chan error, 2)
			r.onEvent = func(ev *schedulerpb.Event) {
				if ev.GetType() == schedulerpb.Event_SUBSCRIBED {
					// Calls work from SUBSCRIBED on (to reconcile at once).
					subscribedErr <- r.c.Reconcile(context.Background(), nil)
				}
			}
			r.start()
			if ev := r.nextEvent(); ev.GetSubscribed().GetFrameworkId().GetValue() != "fw-1" {
				t.Fatalf("first event %v", ev)
			}
			err := r.disconnected()
			if !strings.Contains(err.Error(), "broke off in the middle of event 2") {
				t.Errorf("Disconnected(%v)", err)
			}
			if !errors.Is(callErr, ErrNotSubscribed) || !IsNotSubscribed(callErr) {
				t.Errorf("a call while disconnected: %v, want ErrNotSubscribed", callErr)
			}
			r.waitEvent(schedulerpb.Event_SUBSCRIBED)
			for i := 0; i < 2; i++ {
				if err := <-subscribedErr; err != nil {
					t.Errorf("RECONCILE from the SUBSCRIBED handler: %v", err)
				}
			}
			again := fm.subscribes()[1].call
			if again.GetFrameworkId().GetValue() != "fw-1" || again.GetSubscribe().GetFrameworkInfo().GetId().GetValue() != "fw-1" {
				t.Errorf("resubscription %v, want a failover of fw-1", again)
			}
			// The master may give another ID; the client follows it.
			if r.c.FrameworkID() != "fw-2" {
				t.Errorf("FrameworkID() = %q", r.c.FrameworkID())
			}
			for _, q := range fm.requests() {
				if q.call.GetType() == schedulerpb.Call_REVIVE {
					t.Errorf("a call made while disconnected reached the master")
				}
			}
		})
	}
}

// A master that stops sending heartbeats is given up on after
// MissedHeartbeats of the announced interval, and the client resubscribes.
func TestMissedHeartbeats(t *testing.T) {
	fm := newFakeMaster(t, codec.JSON)
	fm.subscribe = func(n int, s *stream) {
		s.ok()
		s.send(subscribedEvent("fw-1", 0.02)) // 5 × 20ms
		s.send(eventOf(schedulerpb.Event_HEARTBEAT))
		s.hold() // and then silence
	}
	r := startClient(t, testConfig(codec.JSON, fm.addr()))
	r.waitEvent(schedulerpb.Event_HEARTBEAT)
	start := time.Now()
	err := r.disconnected()
	if !strings.Contains(err.Error(), "(5 missed heartbeats): the connection is dead") {
		t.Errorf("Disconnected(%v)", err)
	}
	if waited := time.Since(start); waited < 90*time.Millisecond {
		t.Errorf("declared dead after %v, before 5 heartbeat intervals of 20ms", waited)
	}
	r.waitEvent(schedulerpb.Event_SUBSCRIBED)
	if got := fm.subscribes()[1].call.GetFrameworkId().GetValue(); got != "fw-1" {
		t.Errorf("resubscribed as %q", got)
	}
}

// The watchdog counts only time spent waiting for the master: bytes reset
// it, and a handler busy with an event is not a dead master.
func TestWatchdog(t *testing.T) {
	clk := newFakeClock()
	dead := make(chan time.Duration, 1)
	wd := newWatchdog(clk, 5*time.Second, func(d time.Duration) { dead <- d })
	defer wd.stop()
	isDead := func() bool {
		select {
		case <-dead:
			return true
		default:
			return false
		}
	}

	// Not waiting: the period passes many times over, nothing happens.
	clk.waitTimer(t, 5*time.Second)
	for i := 0; i < 3; i++ {
		clk.Advance(5 * time.Second)
		clk.waitTimer(t, 5*time.Second)
	}
	if isDead() {
		t.Fatal("dead while not waiting on the master")
	}

	// Waiting: a wait shorter than the period is fine, and bytes end it.
	wd.waiting()
	clk.Advance(4 * time.Second)
	clk.waitTimer(t, time.Second)
	wd.busy()
	wd.waiting()
	clk.Advance(time.Second) // the old timer fires, 1s into the new wait
	clk.waitTimer(t, 4*time.Second)
	if isDead() {
		t.Fatal("dead after 4s + 1s of waiting interrupted by bytes")
	}

	// A shorter period (SUBSCRIBED) takes effect at once.
	wd.setPeriod(2 * time.Second)
	clk.waitTimer(t, time.Second)
	clk.Advance(time.Second)
	select {
	case d := <-dead:
		if d != 2*time.Second {
			t.Errorf("dead after %v of waiting, want 2s", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not declared dead after the whole period without bytes")
	}
}

// With the fake clock through the whole client: a handler that takes
// longer than the allowance does not make the stream dead; silence does.
func TestSlowHandlerIsNotADeadMaster(t *testing.T) {
	clk := newFakeClock()
	fm := newFakeMaster(t, codec.Protobuf)
	next := make(chan *schedulerpb.Event)
	fm.subscribe = func(n int, s *stream) {
		s.ok()
		s.send(subscribedEvent("fw-1", 1)) // allowance 5s
		for {
			select {
			case ev := <-next:
				s.send(ev)
			case <-s.r.Context().Done():
				return
			case <-fm.quit:
				return
			}
		}
	}
	cfg := testConfig(codec.Protobuf, fm.addr())
	cfg.Clock = clk
	r := newRunning(t, cfg)
	release, holding := make(chan struct{}), make(chan struct{})
	r.onEvent = func(ev *schedulerpb.Event) {
		if ev.GetType() == schedulerpb.Event_OFFERS {
			close(holding)
			<-release
		}
	}
	r.start()
	r.waitEvent(schedulerpb.Event_SUBSCRIBED)
	clk.waitTimer(t, 5*time.Second) // the watchdog runs on the announced interval
	next <- eventOf(schedulerpb.Event_HEARTBEAT)
	r.waitEvent(schedulerpb.Event_HEARTBEAT)

	// The handler sits on OFFERS for a minute of clock time.
	next <- &schedulerpb.Event{Type: schedulerpb.Event_OFFERS.Enum(), Offers: &schedulerpb.Event_Offers{}}
	select {
	case <-holding:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not get OFFERS")
	}
	for i := 0; i < 12; i++ {
		clk.Advance(5 * time.Second)
	}
	close(release)
	r.waitEvent(schedulerpb.Event_OFFERS)
	next <- eventOf(schedulerpb.Event_HEARTBEAT)
	r.waitEvent(schedulerpb.Event_HEARTBEAT)
	r.noDisconnect()

	// Now silence: 5s of clock time without a byte kills the stream.
	var err error
	advanceUntil(t, clk, "Disconnected", func() bool {
		select {
		case err = <-r.disc:
			return true
		default:
			return false
		}
	})
	if !strings.Contains(err.Error(), "nothing from the Mesos master at "+fm.addr()+" for ") || !strings.Contains(err.Error(), "(5 missed heartbeats)") {
		t.Errorf("Disconnected(%v)", err)
	}
	// The backoff runs on the clock too.
	advanceUntil(t, clk, "a second SUBSCRIBE", func() bool { return len(fm.subscribes()) == 2 })
}

// advanceUntil moves the clock on a second at a time until cond holds: the
// client's goroutines react to each step on their own time, so a single
// jump could land before they wait.
func advanceUntil(t *testing.T, clk *fakeClock, what string, cond func() bool) {
	t.Helper()
	waitFor(t, what, func() bool {
		if cond() {
			return true
		}
		clk.Advance(time.Second)
		return false
	})
}

// A master that takes SUBSCRIBE but answers nothing (no headers), or
// answers 200 and then sends nothing (not even SUBSCRIBED), is given up on
// after the default allowance (5 × 15s).
func TestSilentMaster(t *testing.T) {
	for _, headers := range []bool{false, true} {
		t.Run(fmt.Sprintf("headers=%v", headers), func(t *testing.T) {
			clk := newFakeClock()
			fm := newFakeMaster(t, codec.JSON)
			fm.subscribe = func(n int, s *stream) {
				if n == 0 {
					if headers {
						s.ok()
					}
					s.hold()
					return
				}
				s.ok()
				s.send(subscribedEvent("fw-1", 15))
				s.hold()
			}
			cfg := testConfig(codec.JSON, fm.addr())
			cfg.Clock = clk
			r := startClient(t, cfg)
			fm.waitSubscribes(1)
			start := clk.Now()
			advanceUntil(t, clk, "a second SUBSCRIBE", func() bool { return len(fm.subscribes()) == 2 })
			if waited := clk.Now().Sub(start); waited < 75*time.Second {
				t.Errorf("given up after %v of silence", waited)
			}
			r.waitEvent(schedulerpb.Event_SUBSCRIBED)
			if !strings.Contains(r.log.String(), "no answer to SUBSCRIBE from the Mesos master at "+fm.addr()+" for 1m1") {
				t.Errorf("log: %s", r.log)
			}
			r.noDisconnect() // it never was connected
		})
	}
}

// An event of a type this schema does not know (a newer master) reaches
// the handler (as UNKNOWN from JSON, whose decoder drops the name; with its
// number from protobuf), and the stream goes on.
func TestUnknownEventType(t *testing.T) {
	for _, tc := range []struct {
		enc codec.Encoding
		rec []byte
	}{
		{codec.JSON, []byte(`{"type":"SOMETHING_NEW","something_new":{"x":1}}`)},
		{codec.Protobuf, []byte{0x08, 99, 0xfa, 0x06, 0x00}}, // type=99, field 111 empty
	} {
		t.Run(tc.enc.String(), func(t *testing.T) {
			fm := newFakeMaster(t, tc.enc)
			fm.subscribe = func(n int, s *stream) {
				s.ok()
				s.send(subscribedEvent("fw-1", 15))
				s.sendRaw(tc.rec)
				s.send(eventOf(schedulerpb.Event_HEARTBEAT))
				s.hold()
			}
			r := startClient(t, testConfig(tc.enc, fm.addr()))
			r.waitEvent(schedulerpb.Event_SUBSCRIBED)
			if ev := r.nextEvent(); schedulerpb.Event_Type_name[int32(ev.GetType())] != "UNKNOWN" && schedulerpb.Event_Type_name[int32(ev.GetType())] != "" {
				t.Errorf("got %v, want an event of a type the schema does not know", ev)
			}
			r.waitEvent(schedulerpb.Event_HEARTBEAT)
			r.noDisconnect()
		})
	}
}

// ERROR "Framework failed over" (recorded): another scheduler took the
// framework; the handler sees the ERROR, is told of the disconnection, and
// Run ends rather than taking the framework back.
func TestErrorFailedOver(t *testing.T) {
	recorded := []byte(`{"type":"ERROR","error":{"message":"Framework failed over"}}`)
	fm := newFakeMaster(t, codec.JSON)
	fm.subscribe = func(n int, s *stream) {
		s.ok()
		s.send(subscribedEvent("fw-1", 15))
		s.sendRaw(recorded)
	}
	r := startClient(t, testConfig(codec.JSON, fm.addr()))
	r.waitEvent(schedulerpb.Event_SUBSCRIBED)
	if ev := r.nextEvent(); ev.GetError().GetMessage() != "Framework failed over" {
		t.Fatalf("got %v", ev)
	}
	err := r.result()
	var ee *ErrorEvent
	if !errors.Is(err, ErrFailedOver) || !errors.As(err, &ee) || !ee.Subscribed || ee.FrameworkID != "fw-1" {
		t.Fatalf("Run returned %v", err)
	}
	if !strings.Contains(err.Error(), "another scheduler subscribed as framework fw-1") {
		t.Errorf("the error does not say what happened: %v", err)
	}
	if d := r.disconnected(); !errors.Is(d, ErrFailedOver) {
		t.Errorf("Disconnected(%v)", d)
	}
	if n := len(fm.subscribes()); n != 1 {
		t.Errorf("%d SUBSCRIBEs: the client resubscribed after failing over", n)
	}
}

// ERROR "Framework has been removed" in answer to a failover (recorded):
// the ID is dead, and Run says to start as a new framework.
func TestErrorFrameworkRemoved(t *testing.T) {
	recorded := []byte(`{"type":"ERROR","error":{"message":"Framework has been removed"}}`)
	fm := newFakeMaster(t, codec.JSON)
	fm.subscribe = func(n int, s *stream) {
		s.ok()
		s.sendRaw(recorded)
	}
	cfg := testConfig(codec.JSON, fm.addr())
	cfg.FrameworkInfo.Id = &mesospb.FrameworkID{Value: proto.String("old-id")}
	r := startClient(t, cfg)
	if ev := r.nextEvent(); ev.GetType() != schedulerpb.Event_ERROR {
		t.Fatalf("got %v", ev)
	}
	err := r.result()
	if !errors.Is(err, ErrFrameworkRemoved) || errors.Is(err, ErrFailedOver) {
		t.Fatalf("Run returned %v", err)
	}
	for _, want := range []string{"framework old-id", "forget the stored framework ID"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	if got := fm.subscribes()[0].call.GetFrameworkId().GetValue(); got != "old-id" {
		t.Errorf("the first SUBSCRIBE is not a failover of the configured ID: %q", got)
	}
	r.noDisconnect()
}

// An ERROR instead of SUBSCRIBED (recorded: a MULTI_ROLE framework with the
// old role field) is a refused subscription: Run ends with the reason.
func TestErrorRefusesSubscription(t *testing.T) {
	lines := readLines(t, "scheduler-errors.txt")
	var rec []byte
	for _, l := range lines {
		if m := jsonRecordRe.FindStringSubmatch(l); m != nil && strings.Contains(m[2], "must not be set when the framework is MULTI_ROLE capable") {
			rec = []byte(m[2])
		}
	}
	if rec == nil {
		t.Fatal("recorded ERROR not found")
	}
	fm := newFakeMaster(t, codec.JSON)
	fm.subscribe = func(n int, s *stream) {
		s.ok()
		s.sendRaw(rec)
	}
	r := startClient(t, testConfig(codec.JSON, fm.addr()))
	err := r.result()
	var ee *ErrorEvent
	if !errors.As(err, &ee) || ee.Subscribed || !strings.Contains(err.Error(), "refused to subscribe framework (new framework) with ERROR \"'FrameworkInfo.role' must not be set") {
		t.Fatalf("Run returned %v", err)
	}
}

// Bad bytes on the stream are an error that says what was wrong, then the
// client subscribes again; nothing panics.
func TestBadStreams(t *testing.T) {
	offers := jsonStream(t, "scheduler-json-session.txt", "PART A", "stream")[2]
	cases := []struct {
		name    string
		enc     codec.Encoding
		max     int
		garbage []byte // after SUBSCRIBED (or instead, when first)
		first   bool
		want    string
	}{
		{name: "not recordio", enc: codec.JSON, garbage: []byte("hello world\n"), want: `is not RecordIO-framed events (recordio: malformed stream at byte 106: record length contains 'h'`},
		{name: "undecodable json", enc: codec.JSON, garbage: []byte("5\n{nope"), want: "event 2 from the Mesos master at ADDR: not a json scheduler Event: syntax error"},
		{name: "undecodable protobuf", enc: codec.Protobuf, garbage: []byte("3\n\x08\xff\xff"), want: "event 2 from the Mesos master at ADDR: not a protobuf scheduler Event: body is not a valid mesos.v1.scheduler.Event protobuf"},
		{name: "wrong json type", enc: codec.JSON, garbage: recordFrame([]byte(`{"type":"UPDATE","update":1}`)), want: `event 2 from the Mesos master at ADDR: not a json scheduler Event`},
		{name: "payload missing", enc: codec.JSON, garbage: []byte("17\n{\"type\":\"OFFERS\"}"), want: `a OFFERS event without its "offers" field`},
		{name: "record too large", enc: codec.JSON, max: 500, garbage: recordFrame(offers), want: "record of 943 bytes exceeds the limit of 500 bytes"},
		{name: "heartbeat first", enc: codec.JSON, first: true, garbage: []byte("20\n{\"type\":\"HEARTBEAT\"}"), want: "began the stream with HEARTBEAT, where a subscription begins with SUBSCRIBED or ERROR"},
		{name: "empty framework id", enc: codec.JSON, first: true, garbage: recordFrame([]byte(`{"type":"SUBSCRIBED","subscribed":{"framework_id":{}}}`)), want: `not a json scheduler Event: Missing required fields: subscribed.framework_id.value`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fm := newFakeMaster(t, tc.enc)
			fm.subscribe = func(n int, s *stream) {
				s.ok()
				if n == 0 {
					if !tc.first {
						s.send(subscribedEvent("fw-1", 15))
					}
					s.write(tc.garbage)
					s.hold()
					return
				}
				s.send(subscribedEvent("fw-1", 15))
				s.hold()
			}
			cfg := testConfig(tc.enc, fm.addr())
			cfg.MaxRecordSize = tc.max
			r := startClient(t, cfg)
			want := strings.ReplaceAll(tc.want, "ADDR", fm.addr())
			if tc.first {
				waitFor(t, "the error in the log", func() bool { return strings.Contains(r.log.String(), want) })
				r.waitEvent(schedulerpb.Event_SUBSCRIBED)
				r.noDisconnect()
			} else {
				r.waitEvent(schedulerpb.Event_SUBSCRIBED)
				if err := r.disconnected(); !strings.Contains(err.Error(), want) {
					t.Errorf("Disconnected(%v)\nwant it to contain %s", err, want)
				}
				r.waitEvent(schedulerpb.Event_SUBSCRIBED)
			}
			if n := len(fm.subscribes()); n != 2 {
				t.Errorf("%d SUBSCRIBEs, want 2", n)
			}
		})
	}
}

func recordFrame(rec []byte) []byte { return append([]byte(fmt.Sprintf("%d\n", len(rec))), rec...) }

// A 4xx answer to SUBSCRIBE is a configuration error: Run ends at once
// with the master's words instead of looping; so is an answer no Mesos
// master gives (a proxy's redirect, a 202).
func TestSubscribeRefused(t *testing.T) {
	cases := []struct {
		code int
		body string
		want string
	}{
		{400, "Failed to convert JSON into Call protobuf: Missing required fields: subscribe.framework_info.user", "answered SUBSCRIBE with 400 Bad Request: Failed to convert JSON"},
		{401, "", "answered SUBSCRIBE with 401 Unauthorized (the master wants HTTP authentication: put an Authorization header"},
		{403, "Forbidden", "answered SUBSCRIBE with 403 Forbidden: Forbidden (the principal is not allowed"},
		{404, "", "404 Not Found (no Mesos v1 scheduler API at this address"},
		{415, "Expecting 'Content-Type' of application/json or application/x-protobuf", "415 Unsupported Media Type: Expecting 'Content-Type'"},
		{302, "", "302 Found (a redirect this client does not follow"},
		{202, "", "202 Accepted (a Mesos master answers SUBSCRIBE with 200"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			fm := newFakeMaster(t, codec.JSON)
			fm.subscribe = func(n int, s *stream) {
				s.w.WriteHeader(tc.code)
				fmt.Fprint(s.w, tc.body)
			}
			r := startClient(t, testConfig(codec.JSON, fm.addr()))
			err := r.result()
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tc.code || se.Body != tc.body || se.Call != schedulerpb.Call_SUBSCRIBE {
				t.Fatalf("Run returned %#v", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "fix the configuration") {
				t.Errorf("%v\nwant it to contain %q", err, tc.want)
			}
			if n := len(fm.subscribes()); n != 1 {
				t.Errorf("%d SUBSCRIBEs, want 1", n)
			}
		})
	}
}

// A 200 that is not a Mesos event stream ends Run: asking again would get
// the same.
func TestNotAMesosStream(t *testing.T) {
	cases := []struct {
		name string
		hdr  func(h http.Header)
		want string
	}{
		{"wrong content type", func(h http.Header) {
			h.Set("Content-Type", "text/html")
			h.Set("Mesos-Stream-Id", "x")
		}, `answered SUBSCRIBE with Content-Type "text/html" where "application/x-protobuf" was asked for`},
		{"no stream id", func(h http.Header) { h.Set("Content-Type", "application/x-protobuf") }, "without a Mesos-Stream-Id header"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fm := newFakeMaster(t, codec.Protobuf)
			fm.subscribe = func(n int, s *stream) {
				tc.hdr(s.w.Header())
				s.w.WriteHeader(http.StatusOK)
			}
			r := startClient(t, testConfig(codec.Protobuf, fm.addr()))
			if err := r.result(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run returned %v, want %q", err, tc.want)
			}
		})
	}
}

// Run ends with nil when its context does, without Disconnected, and a
// second Run at the same time is refused.
func TestRunLifecycle(t *testing.T) {
	fm := newFakeMaster(t, codec.JSON)
	r := startClient(t, testConfig(codec.JSON, fm.addr()))
	r.waitEvent(schedulerpb.Event_SUBSCRIBED)
	if err := r.c.Run(context.Background(), HandlerFuncs{}); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v", err)
	}
	if err := r.c.Run(context.Background(), nil); err == nil {
		t.Errorf("Run(nil handler) = nil")
	}
	r.cancel()
	if err := r.result(); err != nil {
		t.Errorf("Run returned %v after its context ended, want nil", err)
	}
	r.noDisconnect()
	if r.c.Subscribed() || r.c.StreamID() != "" {
		t.Errorf("still subscribed after Run ended")
	}
}

func TestNewChecksConfig(t *testing.T) {
	ok := testConfig(codec.JSON, "127.0.0.1:5050")
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no masters", func(c *Config) { c.Masters = nil }, "no Mesos master given"},
		{"zk", func(c *Config) { c.Masters = []string{"zk://a:2181/mesos"} }, "ZooKeeper URL"},
		{"bad scheme", func(c *Config) { c.Masters = []string{"ftp://a"} }, `scheme "ftp"`},
		{"no info", func(c *Config) { c.FrameworkInfo = nil }, "FrameworkInfo is required"},
		{"no user", func(c *Config) { c.FrameworkInfo = &mesospb.FrameworkInfo{Name: proto.String("x")} }, "needs user and name"},
		{"encoding", func(c *Config) { c.Encoding = 7 }, "neither codec.JSON nor codec.Protobuf"},
		{"backoff", func(c *Config) { c.MinBackoff, c.MaxBackoff = time.Second, time.Millisecond }, "below MinBackoff"},
	}
	for _, tc := range cases {
		cfg := ok
		cfg.FrameworkInfo = testInfo()
		tc.mod(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	c, err := New(Config{Masters: []string{"m1"}, FrameworkInfo: testInfo(), HTTPClient: &http.Client{Timeout: 3 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	if c.cfg.CallTimeout != 3*time.Second || c.http.Timeout != 0 || c.cfg.Encoding != codec.JSON ||
		c.cfg.MissedHeartbeats != 5 || c.cfg.MinBackoff != time.Second || c.cfg.MaxBackoff != 15*time.Second {
		t.Errorf("defaults: %+v (stream timeout %v)", c.cfg, c.http.Timeout)
	}
	// The configured FrameworkInfo is copied, not kept.
	info := testInfo()
	c, _ = New(Config{Masters: []string{"m1"}, FrameworkInfo: info})
	info.Name = proto.String("changed")
	if c.subscribeCall().GetSubscribe().GetFrameworkInfo().GetName() != "km-test" {
		t.Errorf("the client shares the caller's FrameworkInfo")
	}
}

func TestParseMaster(t *testing.T) {
	cases := map[string]string{
		"127.0.0.1:5050":                    "http://127.0.0.1:5050/api/v1/scheduler",
		"master":                            "http://master:5050/api/v1/scheduler",
		"[::1]:5051":                        "http://[::1]:5051/api/v1/scheduler",
		"http://m:80":                       "http://m:80/api/v1/scheduler",
		"https://m":                         "https://m/api/v1/scheduler",
		"https://m:5050/":                   "https://m:5050/api/v1/scheduler",
		"http://u:p@m:5050/proxy/api?x=1#f": "http://m:5050/proxy/api",
	}
	for in, want := range cases {
		u, err := ParseMaster(in)
		if err != nil || u.String() != want {
			t.Errorf("ParseMaster(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, bad := range []string{"", "  ", "http://", "zk://h:2181/mesos", "ftp://h", "http://[::1"} {
		if u, err := ParseMaster(bad); err == nil {
			t.Errorf("ParseMaster(%q) = %v, want an error", bad, u)
		}
	}
}

func TestRedirectTarget(t *testing.T) {
	from, _ := ParseMaster("https://m1:5050")
	cases := map[string]string{
		"//m2:5050/api/v1/scheduler":       "https://m2:5050/api/v1/scheduler",
		"//m2:5050":                        "https://m2:5050/api/v1/scheduler",
		"https://m3:5050/api/v1/scheduler": "https://m3:5050/api/v1/scheduler",
	}
	for loc, want := range cases {
		u, err := redirectTarget(from, loc)
		if err != nil || u.String() != want {
			t.Errorf("redirectTarget(%q) = %v, %v; want %s", loc, u, err, want)
		}
	}
	for loc, want := range map[string]string{
		"":                   "without a Location",
		"http://m2:5050":     "from https",
		"ftp://m2":           "is not http(s)",
		"//:5050":            "names no host",
		"//m2:5050/%zz":      "not a URL",
		"/api/v1/scheduler2": "",
	} {
		u, err := redirectTarget(from, loc)
		if want == "" {
			// A path-only Location stays on the same master.
			if err != nil || u.Host != "m1:5050" {
				t.Errorf("redirectTarget(%q) = %v, %v", loc, u, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("redirectTarget(%q) = %v, %v; want %q", loc, u, err, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	c, err := New(Config{Masters: []string{"m"}, FrameworkInfo: testInfo(), MinBackoff: time.Second, MaxBackoff: 15 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for n, top := range []time.Duration{1, 2, 4, 8, 15, 15, 15} {
		top *= time.Second
		c.jitter = func(d time.Duration) time.Duration { return 0 }
		if lo := c.backoff(n); lo != top/2 {
			t.Errorf("backoff(%d) without jitter = %v, want %v", n, lo, top/2)
		}
		c.jitter = func(d time.Duration) time.Duration { return d }
		if hi := c.backoff(n); hi != top {
			t.Errorf("backoff(%d) with full jitter = %v, want %v", n, hi, top)
		}
	}
	c.jitter = func(d time.Duration) time.Duration { return time.Duration(0) }
	if d := c.backoff(1000); d != 7500*time.Millisecond {
		t.Errorf("backoff(1000) = %v", d)
	}
}

func TestHeartbeatPeriod(t *testing.T) {
	c, _ := New(Config{Masters: []string{"m"}, FrameworkInfo: testInfo(), MissedHeartbeats: 3})
	for in, want := range map[float64]time.Duration{
		0: 45 * time.Second, -1: 45 * time.Second, 2: 6 * time.Second, 1e30: 72 * time.Hour, 1e-12: 3 * time.Millisecond,
	} {
		if got := c.heartbeatPeriod(in); got != want {
			t.Errorf("heartbeatPeriod(%v) = %v, want %v", in, got, want)
		}
	}
	if got := c.heartbeatPeriod(nan()); got != 45*time.Second {
		t.Errorf("heartbeatPeriod(NaN) = %v", got)
	}
}

func nan() float64 { z := 0.0; return z / z }

// sameCall compares calls as Mesos reads them: an optional field that is
// unset equals one set to its default (Mesos' JSON carries the defaults).
func sameCall(a, b *schedulerpb.Call) bool {
	ja, err1 := codec.MarshalJSON(a)
	jb, err2 := codec.MarshalJSON(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
