package execclient

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/executorpb"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
)

// fakeAgent is an executor API endpoint on loopback that checks every request
// the client makes (method, path, headers, a body that decodes in the
// client's encoding) and serves scripted event streams.
type fakeAgent struct {
	t        *testing.T
	enc      codec.Encoding
	wantAuth string // expected Authorization header ("" = none)
	srv      *httptest.Server
	done     chan struct{} // closed when the test ends

	// subscribe serves the n-th SUBSCRIBE (from 0) after the 200 and its
	// headers; the response ends (cleanly) when it returns. Nil: SUBSCRIBED,
	// then the stream stays open until the client goes away.
	subscribe func(n int, s *agentStream)
	// answer answers the other calls; nil: 202 Accepted.
	answer func(call *executorpb.Call) (int, string)

	mu    sync.Mutex
	calls []*executorpb.Call // every call decoded, in arrival order
	subs  int
}

func newFakeAgent(t *testing.T, enc codec.Encoding) *fakeAgent {
	fa := &fakeAgent{t: t, enc: enc, done: make(chan struct{})}
	fa.srv = httptest.NewServer(http.HandlerFunc(fa.serve))
	t.Cleanup(func() {
		close(fa.done)
		fa.srv.CloseClientConnections()
		fa.srv.Close()
	})
	return fa
}

func (fa *fakeAgent) url() string { return fa.srv.URL + "/api/v1/executor" }

func (fa *fakeAgent) serve(w http.ResponseWriter, r *http.Request) {
	t := fa.t
	mt := fa.enc.MediaType()
	if r.Method != http.MethodPost || r.URL.Path != "/api/v1/executor" || r.Header.Get("Content-Type") != mt ||
		r.Header.Get("Accept") != mt || r.Header.Get("Authorization") != fa.wantAuth {
		t.Errorf("request %s %s, Content-Type %q, Accept %q, Authorization %q; want POST /api/v1/executor, %s, %s, %q",
			r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Accept"), r.Header.Get("Authorization"), mt, mt, fa.wantAuth)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Errorf("reading a request body: %v", err)
		return
	}
	call := &executorpb.Call{}
	if err := codec.Unmarshal(fa.enc, body, call); err != nil {
		t.Errorf("the client sent a body that is not a %s Call: %v: %q", fa.enc, err, body)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if call.GetFrameworkId().GetValue() == "" || call.GetExecutorId().GetValue() == "" {
		t.Errorf("call without framework or executor ID: %v", call)
	}
	fa.mu.Lock()
	fa.calls = append(fa.calls, call)
	n := fa.subs
	if call.GetType() == executorpb.Call_SUBSCRIBE {
		fa.subs++
	}
	fa.mu.Unlock()

	if call.GetType() != executorpb.Call_SUBSCRIBE {
		code, text := http.StatusAccepted, ""
		if fa.answer != nil {
			code, text = fa.answer(call)
		}
		w.WriteHeader(code)
		io.WriteString(w, text)
		return
	}
	if call.Subscribe == nil {
		t.Errorf("SUBSCRIBE without 'subscribe' (the agent answers 400): %v", call)
	}
	s := &agentStream{fa: fa, w: w, r: r, rw: recordio.NewWriter(w)}
	w.Header().Set("Content-Type", mt)
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	if fa.subscribe == nil {
		s.send(subscribedEvent())
		s.hold()
		return
	}
	fa.subscribe(n, s)
}

// callsOf returns the calls of one type received so far.
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

// agentStream is one SUBSCRIBE response being written.
type agentStream struct {
	fa *fakeAgent
	w  http.ResponseWriter
	r  *http.Request
	rw *recordio.Writer
}

// send writes one event in the stream's encoding.
func (s *agentStream) send(ev *executorpb.Event) {
	b, err := codec.Marshal(s.fa.enc, ev)
	if err != nil {
		s.fa.t.Errorf("encoding %v: %v", ev, err)
		return
	}
	s.raw(recordio.Frame(b))
}

// sendRecorded writes a recorded (JSON) event: verbatim in JSON, converted
// in protobuf.
func (s *agentStream) sendRecorded(rec []byte) {
	if s.fa.enc == codec.JSON {
		s.raw(recordio.Frame(rec))
		return
	}
	s.send(recordedEvent(s.fa.t, rec))
}

// raw writes bytes as they are, in one chunk.
func (s *agentStream) raw(b []byte) {
	s.w.Write(b)
	s.w.(http.Flusher).Flush()
}

// cut drops the connection abruptly, with no end of the chunked body.
func (s *agentStream) cut() {
	conn, buf, err := s.w.(http.Hijacker).Hijack()
	if err != nil {
		s.fa.t.Errorf("hijack: %v", err)
		return
	}
	buf.Flush()
	conn.Close()
}

// hold keeps the stream open until the client goes away or the test ends.
func (s *agentStream) hold() {
	select {
	case <-s.r.Context().Done():
	case <-s.fa.done:
	}
}

// waitFor waits for a condition the client's goroutines make true.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// waitForAgent is waitFor from the fake agent's goroutines: it reports
// false instead of failing the test when the test ends first.
func (s *agentStream) waitFor(cond func() bool) bool {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-s.r.Context().Done():
			return false
		case <-s.fa.done:
			return false
		}
	}
	return true
}

// fakeClock jumps forward by every wait at once, so that recovery timeouts
// of minutes pass in no real time, and remembers the waits.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 22, 9, 10, 57, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func (c *fakeClock) recorded() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}
