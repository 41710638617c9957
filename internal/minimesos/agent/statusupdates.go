package agent

import (
	"bytes"
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/minimesos/agentpb"
)

// statusUpdateManager forwards status updates to the master as Mesos'
// task status update manager does: per task a FIFO with only the head in
// flight, retried with exponential backoff until the framework's
// acknowledgement comes back; the next update goes only after that.
// Its state is guarded by the agent's mutex.
type statusUpdateManager struct {
	a       *Agent
	streams map[streamKey]*updateStream
	kick    chan struct{}
}

type streamKey struct{ fw, task string }

type updateStream struct {
	pending []*mesospb.TaskStatus
	// sentAt is when the head was last sent (zero: not yet); nextRetry
	// grows from the minimum to the maximum interval.
	sentAt  time.Time
	backoff time.Duration
}

func newStatusUpdateManager(a *Agent) *statusUpdateManager {
	return &statusUpdateManager{a: a, streams: map[streamKey]*updateStream{}, kick: make(chan struct{}, 1)}
}

func (m *statusUpdateManager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// enqueueLocked adds an update (with its uuid) to its task's stream.
func (m *statusUpdateManager) enqueueLocked(fw string, st *mesospb.TaskStatus) {
	k := streamKey{fw, st.GetTaskId().GetValue()}
	s := m.streams[k]
	if s == nil {
		s = &updateStream{}
		m.streams[k] = s
	}
	s.pending = append(s.pending, st)
	m.poke()
}

// hasLocked tells whether an update (by uuid) is already queued.
func (m *statusUpdateManager) hasLocked(fw string, st *mesospb.TaskStatus) bool {
	s := m.streams[streamKey{fw, st.GetTaskId().GetValue()}]
	if s == nil {
		return false
	}
	for _, p := range s.pending {
		if bytes.Equal(p.GetUuid(), st.GetUuid()) {
			return true
		}
	}
	return false
}

// acknowledge pops the head of a task's stream if the uuid matches and lets
// the next update go.
func (m *statusUpdateManager) acknowledge(fw, taskID string, uuid []byte) {
	a := m.a
	a.mu.Lock()
	defer a.mu.Unlock()
	k := streamKey{fw, taskID}
	s := m.streams[k]
	if s == nil || len(s.pending) == 0 || !bytes.Equal(s.pending[0].GetUuid(), uuid) {
		return // a duplicate or stale acknowledgement
	}
	head := s.pending[0]
	s.pending = s.pending[1:]
	s.sentAt, s.backoff = time.Time{}, 0
	if len(s.pending) == 0 {
		delete(m.streams, k)
		if isTerminal(head.GetState()) {
			// The framework knows the task ended: forget it.
			if f := a.frameworks[fw]; f != nil {
				for _, e := range f.executors {
					if t := e.tasks[taskID]; t != nil && isTerminal(t.state) {
						delete(e.tasks, taskID)
					}
				}
			}
		}
	}
	m.poke()
}

// resendAll makes every head go out again now (after a re-registration).
func (m *statusUpdateManager) resendAll() {
	m.a.mu.Lock()
	for _, s := range m.streams {
		s.sentAt = time.Time{}
	}
	m.a.mu.Unlock()
	m.poke()
}

func (m *statusUpdateManager) clear() {
	m.a.mu.Lock()
	m.streams = map[streamKey]*updateStream{}
	m.a.mu.Unlock()
}

func (m *statusUpdateManager) dropFrameworkLocked(fw string) {
	for k := range m.streams {
		if k.fw == fw {
			delete(m.streams, k)
		}
	}
}

// run sends heads that are due, until ctx ends.
func (m *statusUpdateManager) run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kick:
		}
		m.sendDue(ctx)
	}
}

func (m *statusUpdateManager) sendDue(ctx context.Context) {
	a := m.a
	now := time.Now()
	type out struct {
		fw string
		st *mesospb.TaskStatus
		s  *updateStream
	}
	var due []out
	a.mu.Lock()
	if !a.registered {
		a.mu.Unlock()
		return
	}
	for k, s := range m.streams {
		if len(s.pending) == 0 {
			continue
		}
		if !s.sentAt.IsZero() && now.Sub(s.sentAt) < s.backoff {
			continue
		}
		if s.backoff == 0 {
			s.backoff = a.cfg.StatusUpdateRetryMin
		} else if !s.sentAt.IsZero() {
			s.backoff *= 2
			if s.backoff > a.cfg.StatusUpdateRetryMax {
				s.backoff = a.cfg.StatusUpdateRetryMax
			}
		}
		s.sentAt = now
		due = append(due, out{k.fw, proto.Clone(s.pending[0]).(*mesospb.TaskStatus), s})
	}
	a.mu.Unlock()
	for _, d := range due {
		ok := a.sendToMaster(ctx, &agentpb.Call{
			Type: agentpb.Call_STATUS_UPDATE.Enum(),
			StatusUpdate: &agentpb.Call_StatusUpdate{
				FrameworkId: &mesospb.FrameworkID{Value: proto.String(d.fw)},
				Status:      d.st,
			},
		})
		if !ok {
			// Not taken: try again at the next round, not after a backoff.
			a.mu.Lock()
			d.s.sentAt = time.Time{}
			a.mu.Unlock()
		}
	}
}
