package agent

import (
	"bytes"
	"context"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

// updateManager is Mesos' task status update manager, as a state machine
// with time passed in: per task a FIFO of updates of which only the head is
// in flight to the master, resent with exponential backoff (min → max)
// until the framework's acknowledgement of that uuid comes back; then the
// next one goes. Duplicates (by uuid) and updates after a terminal one are
// refused. It does no I/O: the agent sends what due returns and persists
// streams of checkpointing frameworks.
type updateManager struct {
	min, max time.Duration
	streams  map[streamKey]*updateStream
}

type streamKey struct{ fw, task string }

type updateStream struct {
	key     streamKey
	pending []*mesospb.TaskStatus
	// latest is the newest update received (the task's state for
	// re-registration), acknowledged or not.
	latest *mesospb.TaskStatus
	// seen holds the uuids received, so that a resent update is not taken
	// twice.
	seen       map[string]bool
	terminated bool // a terminal update was received
	inFlight   bool // the head went out and awaits its acknowledgement
	nextRetry  time.Time
	interval   time.Duration
	// file is where the stream is checkpointed ("" when the framework does
	// not checkpoint); info the task, for re-registration.
	file string
	info *mesospb.TaskInfo
}

// outgoing is an update to send to the master now.
type outgoing struct {
	fw string
	st *mesospb.TaskStatus
}

func newUpdateManager(min, max time.Duration) *updateManager {
	return &updateManager{min: min, max: max, streams: map[streamKey]*updateStream{}}
}

func (m *updateManager) stream(fw, task string) *updateStream {
	return m.streams[streamKey{fw, task}]
}

// add queues an update. It reports false, and why, for a duplicate or an
// update after the task's terminal one.
func (m *updateManager) add(fw string, st *mesospb.TaskStatus, file string) (bool, string) {
	k := streamKey{fw, st.GetTaskId().GetValue()}
	s := m.streams[k]
	if s == nil {
		s = &updateStream{key: k, seen: map[string]bool{}, file: file}
		m.streams[k] = s
	}
	if s.file == "" {
		s.file = file
	}
	id := string(st.GetUuid())
	if s.seen[id] {
		return false, "a duplicate of an update already received"
	}
	if s.terminated {
		return false, "the task already reached a terminal state (" + s.latest.GetState().String() + ")"
	}
	s.seen[id] = true
	s.pending = append(s.pending, st)
	s.latest = st
	if isTerminal(st.GetState()) {
		s.terminated = true
	}
	return true, ""
}

// attach records the task a stream is about.
func (m *updateManager) attach(fw, task string, info *mesospb.TaskInfo) {
	if s := m.stream(fw, task); s != nil && info != nil {
		s.info = info
	}
}

// ack takes the framework's acknowledgement of the head. It returns the
// acknowledged update and whether the stream is finished (its terminal
// update acknowledged: the stream is gone), or why the acknowledgement does
// not apply.
func (m *updateManager) ack(fw, task string, id []byte, now time.Time) (*mesospb.TaskStatus, bool, string) {
	s := m.stream(fw, task)
	if s == nil {
		return nil, false, "no updates of this task are pending"
	}
	if len(s.pending) == 0 || !bytes.Equal(s.pending[0].GetUuid(), id) {
		if s.seen[string(id)] {
			return nil, false, "a duplicate acknowledgement"
		}
		return nil, false, "it acknowledges no pending update"
	}
	head := s.pending[0]
	s.pending = s.pending[1:]
	s.inFlight = false
	s.interval = 0
	if len(s.pending) == 0 && s.terminated {
		delete(m.streams, s.key)
		return head, true, ""
	}
	return head, false, ""
}

// due returns the heads to send at now: those not sent yet and those whose
// retry time has come. Each returned head is marked in flight with its next
// retry after the current interval, which doubles up to max.
func (m *updateManager) due(now time.Time) []outgoing {
	var out []outgoing
	for _, k := range m.sortedKeys() {
		s := m.streams[k]
		if len(s.pending) == 0 {
			continue
		}
		if s.inFlight && now.Before(s.nextRetry) {
			continue
		}
		if !s.inFlight || s.interval == 0 {
			s.interval = m.min
		} else {
			s.interval *= 2
			if s.interval > m.max {
				s.interval = m.max
			}
		}
		s.inFlight = true
		s.nextRetry = now.Add(s.interval)
		out = append(out, outgoing{fw: k.fw, st: s.pending[0]})
	}
	return out
}

// next is when due has something again (zero and false when nothing is
// pending).
func (m *updateManager) next() (time.Time, bool) {
	var t time.Time
	found := false
	for _, s := range m.streams {
		if len(s.pending) == 0 {
			continue
		}
		at := s.nextRetry
		if !s.inFlight {
			at = time.Time{}
		}
		if !found || at.Before(t) {
			t, found = at, true
		}
	}
	return t, found
}

// resume makes every head due now with the backoff reset: after a
// (re-)registration the master may have lost them.
func (m *updateManager) resume() {
	for _, s := range m.streams {
		s.inFlight = false
		s.interval = 0
	}
}

// dropFramework forgets a framework's streams (it was shut down and cannot
// acknowledge anymore) and returns them.
func (m *updateManager) dropFramework(fw string) []*updateStream {
	var out []*updateStream
	for k, s := range m.streams {
		if k.fw == fw {
			out = append(out, s)
			delete(m.streams, k)
		}
	}
	return out
}

func (m *updateManager) hasFramework(fw string) bool {
	for k := range m.streams {
		if k.fw == fw {
			return true
		}
	}
	return false
}

func (m *updateManager) pendingCount() int {
	n := 0
	for _, s := range m.streams {
		n += len(s.pending)
	}
	return n
}

func (m *updateManager) sortedKeys() []streamKey {
	keys := make([]streamKey, 0, len(m.streams))
	for k := range m.streams {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].fw != keys[j].fw {
			return keys[i].fw < keys[j].fw
		}
		return keys[i].task < keys[j].task
	})
	return keys
}

// forwardUpdates sends due heads to the master while the agent is
// registered, until ctx ends.
func (a *Agent) forwardUpdates(ctx context.Context) {
	for {
		a.mu.Lock()
		var out []outgoing
		connected := a.connected
		if connected {
			out = a.sum.due(a.clock.Now())
		}
		next, pending := a.sum.next()
		a.mu.Unlock()
		for _, o := range out {
			a.callMaster(statusUpdateCall(o.fw, o.st))
		}
		var timer <-chan time.Time
		if connected && pending {
			timer = a.clock.After(max(next.Sub(a.clock.Now()), time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-a.sumKick:
		case <-timer:
		}
	}
}

// flushUpdates sends, once, every head that has not gone out yet, within
// limit: on the way out, so that the master hears at once how the tasks of
// the shut down executors ended.
func (a *Agent) flushUpdates(limit time.Duration) {
	a.mu.Lock()
	var out []outgoing
	if a.connected {
		for _, k := range a.sum.sortedKeys() {
			if s := a.sum.streams[k]; len(s.pending) > 0 && !s.inFlight {
				out = append(out, outgoing{k.fw, s.pending[0]})
			}
		}
	}
	a.mu.Unlock()
	deadline := time.Now().Add(limit)
	for _, o := range out {
		if time.Now().After(deadline) {
			return
		}
		a.callMaster(statusUpdateCall(o.fw, o.st))
	}
}

func statusUpdateCall(fw string, st *mesospb.TaskStatus) *agentpb.Call {
	return &agentpb.Call{
		Type: agentpb.Call_STATUS_UPDATE.Enum(),
		StatusUpdate: &agentpb.Call_StatusUpdate{
			FrameworkId: &mesospb.FrameworkID{Value: proto.String(fw)},
			Status:      st,
		},
	}
}
