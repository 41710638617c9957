package schedclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
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

// ---------------------------------------------------------------------------
// The recordings of a real Apache Mesos 1.11 master
// (testdata/mesos-recordings/README.md), used as golden vectors.

const recordings = "../../../testdata/mesos-recordings"

func readLines(t testing.TB, name string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(recordings, name))
	if err != nil {
		t.Fatalf("golden recording missing: %v", err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

var (
	sectionLine   = regexp.MustCompile(`^== \[t\+[0-9.]+s\] (.*)$`)
	streamRecord  = regexp.MustCompile(`stream '([a-z0-9-]+)' RecordIO record`)
	jsonRecordRe  = regexp.MustCompile(`^(\d+)\\n(\{.*\})$`)
	protoRecordRe = regexp.MustCompile(`stream '([a-z0-9-]+)' RecordIO record: (\d+)\\n<`)
	hexRe         = regexp.MustCompile(`^hex: ([0-9a-f]+)$`)
)

// jsonStream returns the raw records Mesos sent on one stream of a JSON
// recording, as they were on the wire, from the first section onwards
// (partFrom) up to the end of that stream.
func jsonStream(t testing.TB, file, partFrom, stream string) [][]byte {
	t.Helper()
	var out [][]byte
	started, cur := partFrom == "", ""
	for _, l := range readLines(t, file) {
		if !started {
			started = strings.Contains(l, partFrom)
			continue
		}
		if m := streamRecord.FindStringSubmatch(l); m != nil {
			cur = m[1]
			continue
		}
		if strings.Contains(l, "stream '"+stream+"': END OF STREAM") {
			break
		}
		if m := jsonRecordRe.FindStringSubmatch(l); m != nil && cur == stream {
			if n, _ := strconv.Atoi(m[1]); n != len(m[2]) {
				t.Fatalf("%s: record length %d but %d bytes", file, n, len(m[2]))
			}
			out = append(out, []byte(m[2]))
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no records of stream %q", file, stream)
	}
	return out
}

// protoStream returns the raw protobuf records of one stream of the
// protobuf recording.
func protoStream(t testing.TB, stream string) [][]byte {
	t.Helper()
	lines := readLines(t, "scheduler-protobuf-session.txt")
	var out [][]byte
	for i := 0; i+1 < len(lines); i++ {
		m := protoRecordRe.FindStringSubmatch(lines[i])
		if m == nil || m[1] != stream {
			continue
		}
		h := hexRe.FindStringSubmatch(lines[i+1])
		if h == nil {
			t.Fatalf("line %d: no hex after the record header", i+2)
		}
		raw, err := hex.DecodeString(h[1])
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.Atoi(m[2]); n != len(raw) {
			t.Fatalf("line %d: length %d, %d bytes", i+2, n, len(raw))
		}
		out = append(out, raw)
	}
	if len(out) == 0 {
		t.Fatalf("no protobuf records of stream %q", stream)
	}
	return out
}

// recordedRequests maps the title of each section of a JSON recording to
// the JSON body the client sent in it (first occurrence of a title).
func recordedRequests(t testing.TB, file string) map[string]*schedulerpb.Call {
	t.Helper()
	out := map[string]*schedulerpb.Call{}
	title, inRequest := "", false
	for _, l := range readLines(t, file) {
		if m := sectionLine.FindStringSubmatch(l); m != nil {
			title, inRequest = m[1], false
			continue
		}
		if l == ">>> REQUEST" {
			inRequest = true
			continue
		}
		if inRequest && strings.HasPrefix(l, `{"`) {
			inRequest = false
			if _, dup := out[title]; dup {
				continue
			}
			call := &schedulerpb.Call{}
			if err := codec.UnmarshalJSON([]byte(l), call); err != nil {
				t.Fatalf("%s: recorded request of %q: %v", file, title, err)
			}
			out[title] = call
		}
	}
	return out
}

func decodeAll(t testing.TB, enc codec.Encoding, recs [][]byte) []*schedulerpb.Event {
	t.Helper()
	var out []*schedulerpb.Event
	for _, r := range recs {
		ev := &schedulerpb.Event{}
		if err := codec.Unmarshal(enc, r, ev); err != nil {
			t.Fatalf("recorded event does not decode: %v", err)
		}
		out = append(out, ev)
	}
	return out
}

// ---------------------------------------------------------------------------
// A fake master: it checks every request as Mesos would see it and serves
// the SUBSCRIBEs and calls as each test scripts them.

type request struct {
	n      int // 0-based index among all requests to this master
	method string
	path   string
	header http.Header
	remote string
	call   *schedulerpb.Call
}

type fakeMaster struct {
	t   *testing.T
	enc codec.Encoding
	srv *httptest.Server
	// path the scheduler API is served on.
	path string

	mu       sync.Mutex
	reqs     []*request
	subs     int    // SUBSCRIBEs so far
	streamID string // of the last 200 to SUBSCRIBE
	changed  chan struct{}
	quit     chan struct{}

	// subscribe serves the n-th SUBSCRIBE (0-based); default: SUBSCRIBED
	// as framework "fw-1" and a stream kept open.
	subscribe func(n int, s *stream)
	// call answers a call other than SUBSCRIBE; default 202.
	call func(r *request, w http.ResponseWriter)
}

func newFakeMaster(t *testing.T, enc codec.Encoding) *fakeMaster {
	fm := &fakeMaster{t: t, enc: enc, path: DefaultPath, changed: make(chan struct{}, 1), quit: make(chan struct{})}
	fm.subscribe = func(n int, s *stream) {
		s.ok()
		s.send(subscribedEvent("fw-1", 15))
		s.hold()
	}
	fm.call = func(r *request, w http.ResponseWriter) { w.WriteHeader(http.StatusAccepted) }
	fm.srv = httptest.NewServer(http.HandlerFunc(fm.serve))
	t.Cleanup(func() {
		close(fm.quit)
		fm.srv.CloseClientConnections()
		fm.srv.Close()
	})
	return fm
}

func (fm *fakeMaster) addr() string { return fm.srv.Listener.Addr().String() }

func (fm *fakeMaster) serve(w http.ResponseWriter, r *http.Request) {
	t := fm.t
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	req := &request{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), remote: r.RemoteAddr}
	fail := func(code int, format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		t.Errorf("fake master: %s", msg)
		http.Error(w, msg, code)
	}
	// What Mesos checks first (master/http.cpp), in its order.
	switch {
	case r.Method != http.MethodPost:
		fail(http.StatusMethodNotAllowed, "method %s, want POST", r.Method)
		return
	case r.URL.Path != fm.path:
		fail(http.StatusNotFound, "path %s, want %s", r.URL.Path, fm.path)
		return
	case r.Header.Get("Content-Type") != fm.enc.MediaType():
		fail(http.StatusUnsupportedMediaType, "Content-Type %q, want %q", r.Header.Get("Content-Type"), fm.enc.MediaType())
		return
	case r.Header.Get("Accept") != fm.enc.MediaType():
		fail(http.StatusNotAcceptable, "Accept %q, want %q", r.Header.Get("Accept"), fm.enc.MediaType())
		return
	}
	call := &schedulerpb.Call{}
	if err := codec.Unmarshal(fm.enc, body, call); err != nil {
		fail(http.StatusBadRequest, "body is not a %s Call: %v", fm.enc, err)
		return
	}
	req.call = call
	fm.mu.Lock()
	req.n = len(fm.reqs)
	fm.reqs = append(fm.reqs, req)
	n := fm.subs
	if call.GetType() == schedulerpb.Call_SUBSCRIBE {
		fm.subs++
	}
	streamID := fm.streamID
	fm.mu.Unlock()
	fm.notify()

	if call.GetType() != schedulerpb.Call_SUBSCRIBE {
		switch {
		case call.GetFrameworkId().GetValue() == "":
			fail(http.StatusBadRequest, "%s without framework_id", call.GetType())
		case r.Header.Get("Mesos-Stream-Id") != streamID:
			fail(http.StatusBadRequest, "%s with Mesos-Stream-Id %q, want %q", call.GetType(), r.Header.Get("Mesos-Stream-Id"), streamID)
		default:
			fm.call(req, w)
		}
		return
	}
	if r.Header.Get("Mesos-Stream-Id") != "" {
		fail(http.StatusBadRequest, "SUBSCRIBE with a Mesos-Stream-Id header")
		return
	}
	if id := call.GetSubscribe().GetFrameworkInfo().GetId().GetValue(); id != call.GetFrameworkId().GetValue() {
		fail(http.StatusBadRequest, "SUBSCRIBE with framework_info.id %q and framework_id %q", id, call.GetFrameworkId().GetValue())
		return
	}
	fm.subscribe(n, &stream{fm: fm, w: w, r: r, n: n})
}

func (fm *fakeMaster) notify() {
	select {
	case fm.changed <- struct{}{}:
	default:
	}
}

// requests returns the requests so far, SUBSCRIBEs included.
func (fm *fakeMaster) requests() []*request {
	fm.mu.Lock()
	defer fm.mu.Unlock()
	return append([]*request(nil), fm.reqs...)
}

func (fm *fakeMaster) subscribes() []*request {
	var out []*request
	for _, r := range fm.requests() {
		if r.call.GetType() == schedulerpb.Call_SUBSCRIBE {
			out = append(out, r)
		}
	}
	return out
}

// waitRequests waits until the master has had n requests matching match.
func (fm *fakeMaster) waitRequests(n int, match func(*request) bool) []*request {
	fm.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		var got []*request
		for _, r := range fm.requests() {
			if match == nil || match(r) {
				got = append(got, r)
			}
		}
		if len(got) >= n {
			return got
		}
		select {
		case <-fm.changed:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			fm.t.Fatalf("the fake master got %d matching requests within 5s, want %d", len(got), n)
		}
	}
}

func (fm *fakeMaster) waitSubscribes(n int) []*request {
	fm.t.Helper()
	return fm.waitRequests(n, isCall(schedulerpb.Call_SUBSCRIBE))
}

func isCall(t schedulerpb.Call_Type) func(*request) bool {
	return func(r *request) bool { return r.call.GetType() == t }
}

// stream is one SUBSCRIBE being answered.
type stream struct {
	fm *fakeMaster
	w  http.ResponseWriter
	r  *http.Request
	n  int
}

// ok answers 200 as Mesos does, with a fresh stream ID.
func (s *stream) ok() string {
	id := fmt.Sprintf("stream-%d", s.n+1)
	s.fm.mu.Lock()
	s.fm.streamID = id
	s.fm.mu.Unlock()
	s.w.Header().Set("Mesos-Stream-Id", id)
	s.w.Header().Set("Content-Type", s.fm.enc.MediaType())
	s.w.WriteHeader(http.StatusOK)
	s.flush()
	return id
}

func (s *stream) flush() { s.w.(http.Flusher).Flush() }

// send writes one event as a record.
func (s *stream) send(ev *schedulerpb.Event) {
	b, err := codec.Marshal(s.fm.enc, ev)
	if err != nil {
		s.fm.t.Errorf("fake master cannot encode %v: %v", ev, err)
		return
	}
	s.sendRaw(b)
}

// sendRaw writes rec framed as a record, as it is (recorded bytes).
func (s *stream) sendRaw(rec []byte) {
	s.write(recordio.Frame(rec))
}

// write writes bytes on the stream as they are (garbage).
func (s *stream) write(b []byte) {
	_, _ = s.w.Write(b)
	s.flush()
}

// hold keeps the stream open until the client goes away or the test ends.
func (s *stream) hold() {
	select {
	case <-s.r.Context().Done():
	case <-s.fm.quit:
	}
}

func subscribedEvent(id string, heartbeat float64) *schedulerpb.Event {
	return &schedulerpb.Event{Type: schedulerpb.Event_SUBSCRIBED.Enum(), Subscribed: &schedulerpb.Event_Subscribed{
		FrameworkId: &mesospb.FrameworkID{Value: proto.String(id)}, HeartbeatIntervalSeconds: proto.Float64(heartbeat)}}
}

func eventOf(t schedulerpb.Event_Type) *schedulerpb.Event {
	return &schedulerpb.Event{Type: t.Enum()}
}

func errorEvent(msg string) *schedulerpb.Event {
	return &schedulerpb.Event{Type: schedulerpb.Event_ERROR.Enum(), Error: &schedulerpb.Event_Error{Message: proto.String(msg)}}
}

// ---------------------------------------------------------------------------
// A running client and what its handler saw.

type running struct {
	t      *testing.T
	c      *Client
	events chan *schedulerpb.Event
	disc   chan error
	done   chan error
	cancel context.CancelFunc
	log    *syncBuffer
	// onEvent and onDisconnected, when set before start, run in the
	// handler before the event is queued.
	onEvent        func(*schedulerpb.Event)
	onDisconnected func(error)
}

func testInfo() *mesospb.FrameworkInfo {
	return &mesospb.FrameworkInfo{
		User: proto.String("root"), Name: proto.String("km-test"),
		Roles:           []string{"*"},
		FailoverTimeout: proto.Float64(3600),
		Checkpoint:      proto.Bool(true),
		Capabilities: []*mesospb.FrameworkInfo_Capability{
			{Type: mesospb.FrameworkInfo_Capability_MULTI_ROLE.Enum()},
			{Type: mesospb.FrameworkInfo_Capability_PARTITION_AWARE.Enum()},
		},
	}
}

// testConfig is a config for masters, with backoffs short enough for tests.
func testConfig(enc codec.Encoding, masters ...string) Config {
	return Config{
		Masters: masters, Encoding: enc, FrameworkInfo: testInfo(),
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		CallTimeout: 5 * time.Second,
	}
}

func newRunning(t *testing.T, cfg Config) *running {
	t.Helper()
	lb := &syncBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = log.New(lb, "", 0)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &running{t: t, c: c, events: make(chan *schedulerpb.Event, 1000), disc: make(chan error, 100), done: make(chan error, 1), log: lb}
}

func (r *running) start() *running {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.done <- r.c.Run(ctx, HandlerFuncs{
			OnEvent: func(ctx context.Context, ev *schedulerpb.Event) {
				if r.onEvent != nil {
					r.onEvent(ev)
				}
				r.events <- ev
			},
			OnDisconnected: func(err error) {
				if err == nil {
					r.t.Errorf("Disconnected(nil): the reason is missing")
				}
				if r.onDisconnected != nil {
					r.onDisconnected(err)
				}
				r.disc <- err
			},
		})
	}()
	r.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			r.t.Errorf("Run did not return within 5s of its context ending")
		}
	})
	return r
}

func startClient(t *testing.T, cfg Config) *running {
	t.Helper()
	return newRunning(t, cfg).start()
}

func (r *running) nextEvent() *schedulerpb.Event {
	r.t.Helper()
	select {
	case ev := <-r.events:
		return ev
	case <-time.After(5 * time.Second):
		r.t.Fatalf("no event within 5s")
		return nil
	}
}

// waitEvent skips events until one of type et.
func (r *running) waitEvent(et schedulerpb.Event_Type) *schedulerpb.Event {
	r.t.Helper()
	for {
		if ev := r.nextEvent(); ev.GetType() == et {
			return ev
		}
	}
}

func (r *running) disconnected() error {
	r.t.Helper()
	select {
	case err := <-r.disc:
		return err
	case <-time.After(5 * time.Second):
		r.t.Fatalf("no Disconnected within 5s")
		return nil
	}
}

// result waits for Run to return.
func (r *running) result() error {
	r.t.Helper()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(5 * time.Second):
		r.t.Fatalf("Run did not return within 5s")
		return nil
	}
}

// noDisconnect checks that no Disconnected was reported so far.
func (r *running) noDisconnect() {
	r.t.Helper()
	select {
	case err := <-r.disc:
		r.t.Fatalf("unexpected Disconnected: %v", err)
	default:
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds, failing after 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// A fake clock: timers fire when the test advances it.

type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	clk *fakeClock
	c   chan time.Time
	at  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) NewTimer(d time.Duration) Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{clk: f, c: make(chan time.Time, 1), at: f.now.Add(d)}
	if d <= 0 {
		t.c <- f.now
	} else {
		f.timers = append(f.timers, t)
	}
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	f := t.clk
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.timers {
		if x == t {
			f.timers = append(f.timers[:i], f.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Advance moves time on, firing the timers due.
func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	kept := f.timers[:0]
	for _, t := range f.timers {
		if !t.at.After(f.now) {
			t.c <- f.now
		} else {
			kept = append(kept, t)
		}
	}
	f.timers = kept
}

// deadlines are the times the pending timers fire at, from now.
func (f *fakeClock) deadlines() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for _, t := range f.timers {
		out = append(out, t.at.Sub(f.now))
	}
	return out
}

// waitTimer waits until a timer is pending that fires exactly d from now.
func (f *fakeClock) waitTimer(t *testing.T, d time.Duration) {
	t.Helper()
	waitFor(t, fmt.Sprintf("a timer of %v (pending: %v)", d, f.deadlines()), func() bool {
		for _, x := range f.deadlines() {
			if x == d {
				return true
			}
		}
		return false
	})
}
