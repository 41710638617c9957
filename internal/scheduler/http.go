package scheduler

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/k8sm/k8sm/internal/scheduler/podtask"
)

// Handler serves /healthz, /metrics and the debug endpoints of k8sm's
// scheduler.
func (s *Scheduler) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !s.Healthy() {
			http.Error(w, "not ready: caches not synced", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		var q, o, t int
		if !s.inLoop(r.Context(), func() { q, o, t = len(s.st.queue), len(s.st.offers), len(s.st.byTask) }) {
			http.Error(w, "scheduler busy", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		s.writeMetrics(w, q, o, t)
	})
	mux.HandleFunc("/debug/actions/requestExplicit", func(w http.ResponseWriter, r *http.Request) {
		if !s.inLoop(r.Context(), func() { s.reconcileExplicit(context.Background()) }) {
			http.Error(w, "scheduler busy", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/debug/actions/requestImplicit", func(w http.ResponseWriter, r *http.Request) {
		if !s.inLoop(r.Context(), func() { s.reconcileImplicit(context.Background()) }) {
			http.Error(w, "scheduler busy", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/debug/actions/kamikaze", func(w http.ResponseWriter, r *http.Request) {
		// As k8sm's: every executor is told "kamikaze"; those that run no
		// pod exit (the executor decides, so a pod launched meanwhile is
		// safe).
		var agents []string
		var execID string
		if !s.inLoop(r.Context(), func() {
			execID = s.executorID()
			for id, a := range s.st.agents {
				if a.alive {
					agents = append(agents, id)
				}
			}
		}) {
			http.Error(w, "scheduler busy", http.StatusServiceUnavailable)
			return
		}
		sort.Strings(agents)
		sent := 0
		for _, id := range agents {
			if err := s.mesos.Message(r.Context(), id, execID, []byte(podtask.KamikazeMessage)); err != nil {
				fmt.Fprintf(w, "agent %s: %v\n", id, err)
				continue
			}
			sent++
		}
		fmt.Fprintf(w, "kamikaze sent to executor %s on %d of %d agents; executors that run no pod exit\n", execID, sent, len(agents))
	})
	mux.HandleFunc("/debug/scheduler/podqueue", func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		ok := s.inLoop(r.Context(), func() {
			now := s.now()
			for _, q := range s.st.duePods(now.Add(100 * 365 * 24 * time.Hour)) {
				fmt.Fprintf(&buf, "%s attempts=%d due=%s %s\n", podKey(q.pod), q.attempts, q.due.Format(time.RFC3339), q.lastMsg)
			}
			for k, q := range s.st.queue {
				if q.invalid != "" {
					fmt.Fprintf(&buf, "%s invalid: %s\n", k, q.invalid)
				}
			}
		})
		if !ok {
			http.Error(w, "scheduler busy", http.StatusServiceUnavailable)
			return
		}
		w.Write(buf.Bytes())
	})
	mux.HandleFunc("/debug/scheduler/podstore", func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		ok := s.inLoop(r.Context(), func() {
			keys := make([]string, 0, len(s.st.tasks))
			for k := range s.st.tasks {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				t := s.st.tasks[k]
				fmt.Fprintf(&buf, "%s uid=%s task=%s bound=%v\n", k, t.podUID, t.id, t.bound)
			}
		})
		if !ok {
			http.Error(w, "scheduler busy", http.StatusServiceUnavailable)
			return
		}
		w.Write(buf.Bytes())
	})
	mux.HandleFunc("/debug/registry/tasks", func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		ok := s.inLoop(r.Context(), func() {
			ids := make([]string, 0, len(s.st.byTask))
			for id := range s.st.byTask {
				ids = append(ids, id)
			}
			sort.Strings(ids)
			fmt.Fprintf(&buf, "task_count=%d\n", len(ids))
			for _, id := range ids {
				t := s.st.byTask[id]
				fmt.Fprintf(&buf, "%s %s %s %s\n", id, t.podKey, t.state, t.offerID)
			}
		})
		if !ok {
			http.Error(w, "scheduler busy", http.StatusServiceUnavailable)
			return
		}
		w.Write(buf.Bytes())
	})
	return mux
}

// inLoop runs fn on the loop goroutine and waits for it (at most 10 s).
func (s *Scheduler) inLoop(ctx context.Context, fn func()) bool {
	done := make(chan struct{})
	select {
	case s.work <- func() { fn(); close(done) }:
	case <-time.After(10 * time.Second):
		return false
	case <-ctx.Done():
		return false
	}
	select {
	case <-done:
		return true
	case <-time.After(10 * time.Second):
		return false
	case <-ctx.Done():
		return false
	}
}
