package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/internal/mesos/codec"
	"github.com/k8sm/k8sm/internal/mesos/mesospb"
	"github.com/k8sm/k8sm/internal/mesos/resources"
	"github.com/k8sm/k8sm/internal/mesos/schedclient"
	"github.com/k8sm/k8sm/internal/mesos/schedulerpb"
	"github.com/k8sm/k8sm/internal/minimesos/agent"
	"github.com/k8sm/k8sm/internal/minimesos/master"
)

// framework is a test scheduler built on the protocol library's client.
type framework struct {
	t      *testing.T
	c      *schedclient.Client
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	events  []*schedulerpb.Event
	offers  map[string]*mesospb.Offer
	changed chan struct{}
	// autoAck acknowledges updates with a uuid.
	autoAck bool
}

func (c *cluster) framework(enc codec.Encoding, info *mesospb.FrameworkInfo) *framework {
	c.t.Helper()
	cl, err := schedclient.New(schedclient.Config{Masters: []string{c.addr}, Encoding: enc, FrameworkInfo: info,
		MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &framework{t: c.t, c: cl, cancel: cancel, done: make(chan error, 1), offers: map[string]*mesospb.Offer{}, changed: make(chan struct{}, 1), autoAck: true}
	go func() { f.done <- cl.Run(ctx, f) }()
	c.t.Cleanup(f.stop)
	f.waitEvent("SUBSCRIBED", func(e *schedulerpb.Event) bool { return e.GetType() == schedulerpb.Event_SUBSCRIBED })
	return f
}

func (f *framework) stop() {
	f.cancel()
	<-f.done
	f.done <- nil
}

func (f *framework) Event(ctx context.Context, ev *schedulerpb.Event) {
	f.mu.Lock()
	f.events = append(f.events, ev)
	switch ev.GetType() {
	case schedulerpb.Event_OFFERS:
		for _, o := range ev.GetOffers().GetOffers() {
			f.offers[o.GetId().GetValue()] = o
		}
	case schedulerpb.Event_RESCIND:
		delete(f.offers, ev.GetRescind().GetOfferId().GetValue())
	}
	ack := f.autoAck
	f.mu.Unlock()
	if ev.GetType() == schedulerpb.Event_UPDATE && ack && ev.GetUpdate().GetStatus().Uuid != nil {
		go f.c.Acknowledge(context.Background(), ev.GetUpdate().GetStatus())
	}
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *framework) Disconnected(err error) {
	f.mu.Lock()
	f.offers = map[string]*mesospb.Offer{}
	f.mu.Unlock()
}

// waitEvent waits for an event (seen before or after the call).
func (f *framework) waitEvent(what string, match func(*schedulerpb.Event) bool) *schedulerpb.Event {
	f.t.Helper()
	deadline := time.After(30 * time.Second)
	seen := 0
	for {
		f.mu.Lock()
		for ; seen < len(f.events); seen++ {
			if match(f.events[seen]) {
				ev := f.events[seen]
				f.mu.Unlock()
				return ev
			}
		}
		f.mu.Unlock()
		select {
		case <-f.changed:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			f.t.Fatalf("no %s within 30s", what)
		}
	}
}

func (f *framework) count(match func(*schedulerpb.Event) bool) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, e := range f.events {
		if match(e) {
			n++
		}
	}
	return n
}

// takeOffer waits for an offer and removes it from the held set.
func (f *framework) takeOffer() *mesospb.Offer {
	f.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		for id, o := range f.offers {
			delete(f.offers, id)
			f.mu.Unlock()
			return o
		}
		f.mu.Unlock()
		select {
		case <-f.changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
	f.t.Fatal("no offer within 30s")
	return nil
}

func (f *framework) heldOffers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.offers)
}

func taskState(id string, state mesospb.TaskState) func(*schedulerpb.Event) bool {
	return func(e *schedulerpb.Event) bool {
		st := e.GetUpdate().GetStatus()
		return e.GetType() == schedulerpb.Event_UPDATE && st.GetTaskId().GetValue() == id && st.GetState() == state
	}
}

func commandTask(id string, o *mesospb.Offer, cmd string) *mesospb.TaskInfo {
	res, _ := resources.Parse("cpus:0.1;mem:32", "*")
	return &mesospb.TaskInfo{
		Name: proto.String(id), TaskId: &mesospb.TaskID{Value: proto.String(id)}, AgentId: o.AgentId,
		Resources: resources.WithAllocationRole(res, o.GetAllocationInfo().GetRole()),
		Command:   &mesospb.CommandInfo{Value: proto.String(cmd)},
	}
}

func fwInfo(name string, caps ...mesospb.FrameworkInfo_Capability_Type) *mesospb.FrameworkInfo {
	fi := &mesospb.FrameworkInfo{User: proto.String("root"), Name: proto.String(name), Roles: []string{"*"}}
	for _, c := range append([]mesospb.FrameworkInfo_Capability_Type{mesospb.FrameworkInfo_Capability_MULTI_ROLE}, caps...) {
		fi.Capabilities = append(fi.Capabilities, &mesospb.FrameworkInfo_Capability{Type: c.Enum()})
	}
	return fi
}

// TestConformance drives the master and a real agent with the protocol
// library's client in both encodings: offers, launch, updates and acks,
// reconciliation, kill, decline filters.
func TestConformance(t *testing.T) {
	for _, enc := range []codec.Encoding{codec.JSON, codec.Protobuf} {
		t.Run(enc.String(), func(t *testing.T) {
			c := newCluster(t, masterDefaults())
			c.addAgent("cpus:2;mem:1024;ports:[31000-31100]")
			f := c.framework(enc, fwInfo("conformance", mesospb.FrameworkInfo_Capability_TASK_KILLING_STATE))
			ctx := context.Background()

			// DECLINE with a filter while the agent is idle (freed resources
			// would break the filter early, as in Mesos): no offer for its
			// duration, then again.
			o := f.takeOffer()
			start := time.Now()
			if err := f.c.Decline(ctx, []string{o.GetId().GetValue()}, schedclient.Filters(1500*time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			o = f.takeOffer()
			if waited := time.Since(start); waited < 1400*time.Millisecond {
				t.Fatalf("offered again after %v despite a 1.5 s filter", waited)
			}

			// Two tasks from one offer.
			if err := f.c.Accept(ctx, []string{o.GetId().GetValue()}, []*mesospb.Offer_Operation{
				schedclient.LaunchOperation(commandTask("t-sleep", o, "sleep 60"), commandTask("t-echo", o, "echo hello")),
			}, schedclient.Filters(0)); err != nil {
				t.Fatal(err)
			}
			f.waitEvent("t-sleep RUNNING", taskState("t-sleep", mesospb.TaskState_TASK_RUNNING))
			fin := f.waitEvent("t-echo FINISHED", taskState("t-echo", mesospb.TaskState_TASK_FINISHED))
			if fin.GetUpdate().GetStatus().GetContainerStatus().GetExecutorPid() == 0 {
				t.Errorf("the agent adds the container status: %v", fin.GetUpdate().GetStatus())
			}

			// Explicit and implicit reconciliation.
			if err := f.c.Reconcile(ctx, []schedclient.ReconcileTask{{TaskID: "t-sleep"}, {TaskID: "nope", AgentID: o.GetAgentId().GetValue()}}); err != nil {
				t.Fatal(err)
			}
			rec := f.waitEvent("reconciled t-sleep", func(e *schedulerpb.Event) bool {
				st := e.GetUpdate().GetStatus()
				return st.GetTaskId().GetValue() == "t-sleep" && st.GetReason() == mesospb.TaskStatus_REASON_RECONCILIATION
			})
			if rec.GetUpdate().GetStatus().GetState() != mesospb.TaskState_TASK_RUNNING || rec.GetUpdate().GetStatus().Uuid != nil {
				t.Fatalf("reconciliation %v", rec)
			}
			f.waitEvent("nope LOST (not partition-aware)", taskState("nope", mesospb.TaskState_TASK_LOST))
			if err := f.c.Reconcile(ctx, nil); err != nil {
				t.Fatal(err)
			}
			f.waitEvent("implicit", func(e *schedulerpb.Event) bool {
				st := e.GetUpdate().GetStatus()
				return st.GetReason() == mesospb.TaskStatus_REASON_RECONCILIATION && st.GetMessage() == "Reconciliation: Latest task state"
			})

			// KILL: KILLING (the framework has the capability), then KILLED.
			if err := f.c.Kill(ctx, "t-sleep", o.GetAgentId().GetValue(), time.Second); err != nil {
				t.Fatal(err)
			}
			f.waitEvent("t-sleep KILLING", taskState("t-sleep", mesospb.TaskState_TASK_KILLING))
			killed := f.waitEvent("t-sleep KILLED", taskState("t-sleep", mesospb.TaskState_TASK_KILLED))
			if msg := killed.GetUpdate().GetStatus().GetMessage(); msg != "Command terminated with signal Terminated" {
				t.Fatalf("kill message %q", msg)
			}

		})
	}
}

func TestOfferTimeoutFailoverAndAgentLoss(t *testing.T) {
	cfg := masterDefaults()
	cfg.OfferTimeout = 300 * time.Millisecond
	cfg.AgentPingTimeout = 200 * time.Millisecond
	cfg.MaxAgentPingTimeouts = 3
	c := newCluster(t, cfg)
	toMaster := newLink(t, c.addr)
	ra := c.addAgent("cpus:2;mem:1024", func(cfg *agent.Config) { cfg.Master = toMaster.Addr() })
	info := fwInfo("failover")
	info.FailoverTimeout = proto.Float64(60)
	f := c.framework(codec.JSON, info)
	// Offer timeout: the held offer is rescinded.
	f.waitEvent("RESCIND", func(e *schedulerpb.Event) bool { return e.GetType() == schedulerpb.Event_RESCIND })

	// An offer may time out between taking and accepting it (a loaded
	// machine): then the launch is lost and tried again on a new offer.
	for attempt := 0; ; attempt++ {
		o := f.takeOffer()
		if err := f.c.Accept(context.Background(), []string{o.GetId().GetValue()}, []*mesospb.Offer_Operation{
			schedclient.LaunchOperation(commandTask("t-long", o, "sleep 60"))}, nil); err != nil {
			t.Fatal(err)
		}
		ev := f.waitEvent("RUNNING or LOST", func(e *schedulerpb.Event) bool {
			st := e.GetUpdate().GetStatus()
			return st.GetTaskId().GetValue() == "t-long" && (st.GetState() == mesospb.TaskState_TASK_RUNNING || st.GetReason() == mesospb.TaskStatus_REASON_INVALID_OFFERS)
		})
		if ev.GetUpdate().GetStatus().GetState() == mesospb.TaskState_TASK_RUNNING {
			break
		}
		if attempt == 5 {
			t.Fatal("every offer timed out before it could be accepted")
		}
		f.mu.Lock()
		f.events = nil // forget the lost attempt
		f.mu.Unlock()
	}

	// A second scheduler with the same framework ID takes over.
	info.Id = &mesospb.FrameworkID{Value: proto.String(f.c.FrameworkID())}
	g := c.framework(codec.Protobuf, info)
	f.waitEvent("Framework failed over", func(e *schedulerpb.Event) bool { return e.GetError().GetMessage() == "Framework failed over" })
	f.stop()
	if err := g.c.Reconcile(context.Background(), []schedclient.ReconcileTask{{TaskID: "t-long"}}); err != nil {
		t.Fatal(err)
	}
	g.waitEvent("task survived failover", func(e *schedulerpb.Event) bool {
		st := e.GetUpdate().GetStatus()
		return st.GetTaskId().GetValue() == "t-long" && st.GetState() == mesospb.TaskState_TASK_RUNNING
	})

	// The agent's machine dies without a word: nothing it sends arrives
	// any more (its processes end with it here; the master only sees
	// missed pings): TASK_LOST and FAILURE{agent_id}.
	toMaster.Cut()
	ra.stop()
	lost := g.waitEvent("TASK_LOST", taskState("t-long", mesospb.TaskState_TASK_LOST))
	if lost.GetUpdate().GetStatus().GetReason() != mesospb.TaskStatus_REASON_AGENT_REMOVED {
		t.Fatalf("got %v", lost)
	}
	g.waitEvent("FAILURE", func(e *schedulerpb.Event) bool {
		return e.GetType() == schedulerpb.Event_FAILURE && e.GetFailure().GetAgentId().GetValue() == ra.a.ID() && e.GetFailure().ExecutorId == nil
	})
}

// A custom executor that never subscribes: the agent destroys it after the
// registration timeout, its task fails, and the framework gets FAILURE.
// Its environment is the one Mesos gives executors.
func TestCustomExecutorEnvironmentAndRegistrationTimeout(t *testing.T) {
	c := newCluster(t, masterDefaults())
	ra := c.addAgent("cpus:2;mem:1024", func(cfg *agent.Config) { cfg.ExecutorRegistrationTimeout = time.Second })
	f := c.framework(codec.JSON, fwInfo("exec"))
	o := f.takeOffer()
	task := commandTask("t-shellexec", o, "")
	task.Command = nil
	task.Executor = &mesospb.ExecutorInfo{
		ExecutorId: &mesospb.ExecutorID{Value: proto.String("e-shell")},
		Command:    &mesospb.CommandInfo{Value: proto.String(`env | sort > "$MESOS_SANDBOX/env.txt"; sleep 30`)},
	}
	if err := f.c.Accept(context.Background(), []string{o.GetId().GetValue()}, []*mesospb.Offer_Operation{schedclient.LaunchOperation(task)}, nil); err != nil {
		t.Fatal(err)
	}
	failed := f.waitEvent("TASK_FAILED", taskState("t-shellexec", mesospb.TaskState_TASK_FAILED))
	if r := failed.GetUpdate().GetStatus().GetReason(); r != mesospb.TaskStatus_REASON_EXECUTOR_REGISTRATION_TIMEOUT {
		t.Fatalf("reason %v", r)
	}
	f.waitEvent("FAILURE{executor}", func(e *schedulerpb.Event) bool {
		return e.GetType() == schedulerpb.Event_FAILURE && e.GetFailure().GetExecutorId().GetValue() == "e-shell"
	})
	matches, _ := filepath.Glob(filepath.Join(ra.dir, "slaves", "*", "frameworks", "*", "executors", "e-shell", "runs", "latest", "env.txt"))
	if len(matches) != 1 {
		t.Fatalf("env.txt not in the sandbox: %v", matches)
	}
	b, _ := os.ReadFile(matches[0])
	env := string(b)
	for _, want := range []string{"MESOS_EXECUTOR_ID=e-shell", "MESOS_FRAMEWORK_ID=" + f.c.FrameworkID(), "MESOS_AGENT_ENDPOINT=" + ra.a.Endpoint(),
		"MESOS_SLAVE_ID=" + ra.a.ID(), "MESOS_CHECKPOINT=0", "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD=2secs", "MESOS_HTTP_COMMAND_EXECUTOR=0",
		"MESOS_SANDBOX=" + filepath.Dir(filepath.Dir(matches[0]))} {
		if !strings.Contains(env, want) && !strings.Contains(env, strings.TrimSuffix(want, filepath.Base(want))) {
			t.Errorf("executor environment lacks %s", want)
		}
	}
	// The destroyed executor left no process behind.
	if n := len(processesWithEnv("MESOS_EXECUTOR_ID=e-shell")); n != 0 {
		t.Fatalf("%d processes of the destroyed executor are alive", n)
	}
}

// processesWithEnv walks the process table for processes whose
// environment holds kv.
func processesWithEnv(kv string) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, v := range strings.Split(string(b), "\x00") {
			if v == kv {
				pid, _ := strconv.Atoi(e.Name())
				if syscall.Kill(pid, 0) == nil && !zombie(pid) {
					out = append(out, pid)
				}
			}
		}
	}
	return out
}

func zombie(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

var _ = master.Version
