// Package eventstream is an open RecordIO stream of events (a framework's
// SUBSCRIBE, an agent's REGISTER, an executor's SUBSCRIBE): events are encoded
// and queued by their producer without blocking, and written out by the HTTP
// handler's goroutine.
package eventstream

import (
	"net/http"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
	"github.com/k8sm/k8sm/internal/mesos/uuid"
)

// maxQueued is how many events may wait for a slow reader. A reader that
// falls this far behind is disconnected (it can resubscribe); the master
// never blocks on one client. The queue grows only as needed, so thousands
// of idle agent streams cost little.
const maxQueued = 1 << 16

// stream is one open RecordIO event stream (a framework's SUBSCRIBE or an
// agent's REGISTER). Events are encoded by the master under its lock and
// queued; the HTTP handler's goroutine writes them out.
type Stream struct {
	ID  string
	Enc codec.Encoding

	mu     sync.Mutex
	queue  [][]byte
	closed bool
	Notify chan struct{} // capacity 1: "the queue or closed changed"
	done   chan struct{}
}

// New makes a stream in an encoding.
func New(enc codec.Encoding) *Stream {
	return &Stream{ID: uuid.NewString(), Enc: enc, Notify: make(chan struct{}, 1), done: make(chan struct{})}
}

func (s *Stream) wake() {
	select {
	case s.Notify <- struct{}{}:
	default:
	}
}

// Send queues an event. It reports false when the stream is closed or its
// reader is too slow (the stream is then closed).
func (s *Stream) Send(ev proto.Message) bool {
	b, err := codec.Marshal(s.Enc, ev)
	if err != nil {
		// A bug: an event with a required field missing.
		panic("invalid event: " + err.Error())
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

// Close ends the stream after the queued events are written.
func (s *Stream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.wake()
	}
}

func (s *Stream) IsClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Take returns the queued events and whether the stream is closed.
func (s *Stream) Take() ([][]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil
	return q, s.closed
}

// Serve writes the stream's events to w until the stream closes or the
// client goes away; it returns true if the client went away first.
func (s *Stream) Serve(w http.ResponseWriter, r *http.Request) (clientGone bool) {
	defer close(s.done)
	flusher, _ := w.(http.Flusher)
	rw := recordio.NewWriter(w)
	for {
		batch, closed := s.Take()
		for _, b := range batch {
			if err := rw.WriteRecord(b); err != nil {
				s.Close()
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
		case <-s.Notify:
		case <-r.Context().Done():
			s.Close()
			return true
		}
	}
}
