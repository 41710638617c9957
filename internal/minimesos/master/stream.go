package master

import (
	"net/http"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
)

// maxQueued is how many events may wait for a slow reader. A reader that
// falls this far behind is disconnected (it can resubscribe); the master
// never blocks on one client. The queue grows only as needed, so thousands
// of idle agent streams cost little.
const maxQueued = 1 << 16

// stream is one open RecordIO event stream (a framework's SUBSCRIBE or an
// agent's REGISTER). Events are encoded by the master under its lock and
// queued; the HTTP handler's goroutine writes them out.
type stream struct {
	id  string
	enc codec.Encoding

	mu     sync.Mutex
	queue  [][]byte
	closed bool
	notify chan struct{} // capacity 1: "the queue or closed changed"
	done   chan struct{}
}

func newStream(enc codec.Encoding) *stream {
	return &stream{id: newUUID(), enc: enc, notify: make(chan struct{}, 1), done: make(chan struct{})}
}

func (s *stream) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// send queues an event. It reports false when the stream is closed or its
// reader is too slow (the stream is then closed).
func (s *stream) send(ev proto.Message) bool {
	b, err := codec.Marshal(s.enc, ev)
	if err != nil {
		// A bug: the master built an event with a required field missing.
		panic("master built an invalid event: " + err.Error())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if len(s.queue) >= maxQueued {
		s.closed = true
		s.wake()
		return false
	}
	s.queue = append(s.queue, b)
	s.wake()
	return true
}

// close ends the stream after the queued events are written.
func (s *stream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.wake()
	}
}

func (s *stream) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// take returns the queued events and whether the stream is closed.
func (s *stream) take() ([][]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q, s.closed
}

// serve writes the stream's events to w until the stream closes or the
// client goes away; it returns true if the client went away first.
func (s *stream) serve(w http.ResponseWriter, r *http.Request) (clientGone bool) {
	defer close(s.done)
	flusher, _ := w.(http.Flusher)
	rw := recordio.NewWriter(w)
	for {
		batch, closed := s.take()
		for _, b := range batch {
			if err := rw.WriteRecord(b); err != nil {
				s.close()
				return true
			}
		}
		// One flush per batch: a burst (OFFERS for many agents) costs one.
		if len(batch) > 0 && flusher != nil {
			flusher.Flush()
		}
		if closed {
			return false
		}
		select {
		case <-s.notify:
		case <-r.Context().Done():
			s.close()
			return true
		}
	}
}
