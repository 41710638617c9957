package master

import (
	"net/http"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/recordio"
)

// streamBuffer is how many events may wait for a slow reader. A reader that
// falls this far behind is disconnected (it can resubscribe); the master
// never blocks on one client.
const streamBuffer = 1 << 14

// stream is one open RecordIO event stream (a framework's SUBSCRIBE or an
// agent's REGISTER). Events are encoded by the master under its lock and
// queued; the HTTP handler's goroutine writes them out.
type stream struct {
	id  string
	enc codec.Encoding

	mu     sync.Mutex
	ch     chan []byte
	closed bool
	// final is written after the queue drains, then the stream ends (the
	// ERROR of a failed-over framework).
	done chan struct{}
}

func newStream(enc codec.Encoding) *stream {
	return &stream{id: newUUID(), enc: enc, ch: make(chan []byte, streamBuffer), done: make(chan struct{})}
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
	select {
	case s.ch <- b:
		return true
	default:
		s.closed = true
		close(s.ch)
		return false
	}
}

// close ends the stream after the queued events are written.
func (s *stream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

func (s *stream) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// serve writes the stream's events to w until the stream closes or the
// client goes away; it returns true if the client went away first.
func (s *stream) serve(w http.ResponseWriter, r *http.Request) (clientGone bool) {
	defer close(s.done)
	flusher, _ := w.(http.Flusher)
	rw := recordio.NewWriter(w)
	for {
		select {
		case b, ok := <-s.ch:
			if !ok {
				return false
			}
			if err := rw.WriteRecord(b); err != nil {
				s.close()
				return true
			}
			// Write out everything already queued before flushing, so a
			// burst (OFFERS for many agents) costs one flush.
			for more := true; more; {
				select {
				case b, ok := <-s.ch:
					if !ok {
						if flusher != nil {
							flusher.Flush()
						}
						return false
					}
					if err := rw.WriteRecord(b); err != nil {
						s.close()
						return true
					}
				default:
					more = false
				}
			}
			if flusher != nil {
				flusher.Flush()
			}
		case <-r.Context().Done():
			s.close()
			return true
		}
	}
}
